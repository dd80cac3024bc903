/* link_count_getpid.c - a "hook" of getpid that counts the calls it sees and
 * forwards them to the next definition (libc's). Notebook 04 builds it into
 * a shared library (loaded by LD_PRELOAD or dlopen) and into a static
 * archive, to show which calls each way of loading actually catches. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>

int64_t link_getpid_calls;

/* A static link pulls an archive member only for a symbol someone
 * references: the program's reference to this anchor pulls the hook in. */
int link_hook_anchor;

pid_t getpid(void)
{
    static pid_t (*next)(void);
    if (!next)
        next = (pid_t (*)(void))dlsym(RTLD_NEXT, "getpid");
    link_getpid_calls++;
    return next ? next() : -1;
}

/* n calls made from inside this module, to tell "the hook exists" from
 * "the hook sees other modules' calls". Returns how many returned > 0. */
int64_t link_self_getpid(int64_t n)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++)
        ok += getpid() > 0;
    return ok;
}
