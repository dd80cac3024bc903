/* link_pull_main.c - is the getpid hook of a static archive in the program?
 *     link_pull_main N
 * Only link_other.so calls getpid; this program references the hook only
 * when built with -DLINK_ANCHOR. The counter is looked up at run time
 * (the program is linked with -rdynamic), so reading it pulls nothing in. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int64_t link_other_getpid(int64_t n);

#ifdef LINK_ANCHOR
extern int link_hook_anchor;
/* Referencing the anchor is what makes the linker pull the member in. */
int *volatile link_keep_hook = &link_hook_anchor;
#endif

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? strtoll(argv[1], NULL, 10) : 10;
    int64_t ok = link_other_getpid(n);
    int64_t *calls = dlsym(RTLD_DEFAULT, "link_getpid_calls");
    printf("{\"n\": %lld, \"ok\": %lld, \"hook_linked\": %d, \"hook_calls\": %lld}\n",
           (long long)n, (long long)ok, calls != NULL, calls ? (long long)*calls : -1LL);
    return 0;
}
