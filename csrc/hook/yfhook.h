/* yfhook.h - what a program may ask the hook library (libyfhook.so, or the
 * hook objects linked in): counters, the real libc functions, knobs. */
#ifndef YFHOOK_H
#define YFHOOK_H

#include <stdint.h>

/* How many times the hook `name` ("recv", "getaddrinfo", ...) was entered in
 * this process, in any thread; -1 with ENOENT for a name that is not hooked. */
int64_t yf_hook_calls(const char *name);
/* The libc function the hook `name` stands in front of (dlsym RTLD_NEXT),
 * for benchmarks and controls; NULL with ENOENT. */
void *yf_hook_real(const char *name);
/* Names of the hooked functions, NULL-terminated. */
const char *const *yf_hook_names(void);
/* Bound on a cooperative connect() of a blocking socket when SO_SNDTIMEO is
 * not set (ms, < 0: none, the default; $YF_HOOK_CONNECT_TIMEOUT_MS sets it
 * at load time). Expiry gives ETIMEDOUT. Returns the previous value. */
int64_t yf_hook_connect_timeout(int64_t ms);
/* The variant this library was built as: "default", "log-late", "log-early". */
const char *yf_hook_variant(void);

#endif
