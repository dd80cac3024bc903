/* link_dlopen.c - which getpid calls does a hook in link_count_getpid.c see?
 *     link_dlopen MODE LIB N
 * MODE: "local" dlopen(LIB, RTLD_NOW | RTLD_LOCAL) (what Python does for an
 * extension module), "global" the same with RTLD_GLOBAL, "preload" the hook
 * came in by LD_PRELOAD (LIB is then only used to find the counter's owner).
 * Makes N getpid calls from this program, N from link_other.so and N from
 * inside the hook's own module, and prints the counter after each. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t link_other_getpid(int64_t n);

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s local|global|preload LIB N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int64_t n = strtoll(argv[3], NULL, 10);
    void *h;
    if (strcmp(mode, "local") == 0)
        h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    else if (strcmp(mode, "global") == 0)
        h = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    else if (strcmp(mode, "preload") == 0)
        h = dlopen(argv[2], RTLD_NOW | RTLD_NOLOAD);
    else {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
        return 2;
    }
    if (!h) {
        fprintf(stderr, "%s: %s\n", argv[0], dlerror());
        return 1;
    }
    int64_t *calls = dlsym(h, "link_getpid_calls");
    int64_t (*self)(int64_t) = (int64_t (*)(int64_t))dlsym(h, "link_self_getpid");
    if (!calls || !self) {
        fprintf(stderr, "%s: %s\n", argv[0], dlerror());
        return 1;
    }
    int64_t base = *calls, ok = 0;
    for (int64_t i = 0; i < n; i++)
        ok += getpid() > 0;
    int64_t from_program = *calls - base;
    ok += link_other_getpid(n);
    int64_t from_other = *calls - base - from_program;
    ok += self(n);
    int64_t from_self = *calls - base - from_program - from_other;
    printf("{\"mode\": \"%s\", \"n\": %lld, \"program\": %lld, \"other_library\": %lld, "
           "\"hook_module\": %lld, \"ok\": %lld}\n",
           mode, (long long)n, (long long)from_program, (long long)from_other, (long long)from_self,
           (long long)ok);
    return 0;
}
