/* link_other.c - someone else's shared library that calls getpid: stands for
 * any code outside the module that defines a hook. */
#include <stdint.h>
#include <unistd.h>

int64_t link_other_getpid(int64_t n)
{
    int64_t ok = 0;
    for (int64_t i = 0; i < n; i++)
        ok += getpid() > 0;
    return ok;
}
