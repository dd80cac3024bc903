/* symbols.c - the real libc functions behind the hooks (dlsym RTLD_NEXT),
 * the call counters, the knobs of yfhook.h and the start-up. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hooki.h"

#if defined(YF_HOOK_LOG) && defined(YF_HOOK_ERRNO_EARLY)
#define VARIANT "log-early"
#elif defined(YF_HOOK_LOG)
#define VARIANT "log-late"
#else
#define VARIANT "default"
#endif

const char *const yfh_names[H_N + 1] = {
#define YF_HOOK_NAME(n) #n,
    YF_HOOKS(YF_HOOK_NAME)
#undef YF_HOOK_NAME
    NULL
};

void *yfh_reals[H_N];
uint64_t yfh_calls[H_N];
/* Set while this thread is inside dlsym: the hooks then fall back to the
 * raw system call instead of recursing into dlsym. */
static __thread int resolving;

__attribute__((noinline)) void *yfh_resolve(int id)
{
    if (resolving)
        return NULL;
    int saved = errno;
    resolving = 1;
    void *p = dlsym(RTLD_NEXT, yfh_names[id]);
    resolving = 0;
    __atomic_store_n(&yfh_reals[id], p, __ATOMIC_RELAXED);
    errno = saved;
    return p;
}

static int hook_id(const char *name)
{
    for (int i = 0; name && i < H_N; i++)
        if (strcmp(name, yfh_names[i]) == 0)
            return i;
    return -1;
}

int64_t yf_hook_calls(const char *name)
{
    int id = hook_id(name);
    if (id >= 0)
        return (int64_t)__atomic_load_n(&yfh_calls[id], __ATOMIC_RELAXED);
    errno = ENOENT;
    return -1;
}

void *yf_hook_real(const char *name)
{
    int id = hook_id(name);
    void *p = id >= 0 ? yfh_real(id) : NULL;
    if (!p)
        errno = ENOENT;
    return p;
}

const char *const *yf_hook_names(void) { return yfh_names; }
const char *yf_hook_variant(void) { return VARIANT; }

static int64_t connect_timeout_ms = -1;

int64_t yf_hook_connect_timeout(int64_t ms)
{
    return __atomic_exchange_n(&connect_timeout_ms, ms < 0 ? -1 : ms, __ATOMIC_RELAXED);
}

int64_t yfh_connect_timeout_ms(void)
{
    return __atomic_load_n(&connect_timeout_ms, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void hook_init(void)
{
    for (int i = 0; i < H_N; i++)
        yfh_real(i);
    const char *t = getenv("YF_HOOK_CONNECT_TIMEOUT_MS");
    if (t && *t)
        yf_hook_connect_timeout(strtoll(t, NULL, 10));
#ifdef YF_HOOK_LOG
    yfh_log_init();
#endif
}
