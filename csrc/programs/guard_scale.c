/* guard_scale.c - how many guarded coroutine stacks fit, and what they cost in mappings and memory. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "yf.h"
#include "lab/lab.h"

/* Usage: guard_scale mprotect|regions|noguard|malloc <count> [stack_size]
 *
 * Creates count live coroutines, each resumed once so it touches the top of
 * its stack and stays suspended, until done or the first failure. mprotect
 * guards split the arena into two mappings per stack, so they stop near
 * vm.max_map_count / 2; guard regions (MADV_GUARD_INSTALL) add no mapping.
 * malloc mode is the no-guard, no-runtime baseline: plain malloc'ed stacks
 * with their top 256 bytes written. */

enum { PROGRESS_MIN = 100000, TOUCH_BYTES = 256 };

static long read_long_file(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;

    if (f != NULL) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    long n = 0;
    int c;

    if (f == NULL)
        return -1;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    default: return "E?";
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: guard_scale mprotect|regions|noguard|malloc <count> [stack_size]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *mode, *guard = "none";
    size_t count, stack_size = 16384, created = 0, step, i;
    long maps_before, maps_after, rss_before, rss_after, max_map_count;
    double t0, t1, free_seconds = 0;
    unsigned flags = 0;
    int err = 0, use_malloc = 0;
    yf_sched *s = NULL;
    yf_counts cn;
    char **stacks = NULL;
    uint64_t arenas = 0;

    if (argc < 3)
        return usage();
    mode = argv[1];
    count = strtoull(argv[2], NULL, 0);
    if (argc > 3)
        stack_size = strtoull(argv[3], NULL, 0);
    if (strcmp(mode, "mprotect") == 0)
        flags = YF_SCHED_GUARD_MPROTECT;
    else if (strcmp(mode, "regions") == 0)
        flags = 0;
    else if (strcmp(mode, "noguard") == 0)
        flags = YF_SCHED_NOGUARD;
    else if (strcmp(mode, "malloc") == 0)
        use_malloc = 1;
    else
        return usage();
    step = count >= PROGRESS_MIN ? count / 10 : 0;
    max_map_count = read_long_file("/proc/sys/vm/max_map_count");

    if (use_malloc) {
        stacks = calloc(count ? count : 1, sizeof *stacks);
        if (stacks == NULL)
            return 2;
    } else {
        s = yf_sched_new(stack_size, flags);
        if (s == NULL) {
            fprintf(stderr, "guard_scale: yf_sched_new: %s\n", strerror(errno));
            return 2;
        }
        if (!(flags & YF_SCHED_NOGUARD))
            guard = yf_sched_guard_regions(s) ? "regions" : "mprotect";
        /* Default flags fall back to mprotect on kernels without guard
         * regions; measuring that under the name "regions" would mislead. */
        if (strcmp(mode, "regions") == 0 && strcmp(guard, "regions") != 0) {
            printf("{\"mode\":\"regions\",\"supported\":false,\"guard\":\"%s\"}\n", guard);
            return 3;
        }
    }

    maps_before = count_maps();
    rss_before = rss_bytes();
    t0 = now();
    for (i = 0; i < count; i++) {
        if (use_malloc) {
            stacks[i] = malloc(stack_size);
            if (stacks[i] == NULL) {
                err = errno;
                break;
            }
            memset(stacks[i] + stack_size - TOUCH_BYTES, 0, TOUCH_BYTES);
        } else {
            yf_co *co = yf_co_create(s, yf_demo_yield_n, (void *)(intptr_t)INT64_MAX);

            if (co == NULL || yf_co_resume(co) != 0) {
                err = errno;
                break;
            }
        }
        created++;
        if (step && created % step == 0)
            fprintf(stderr, "guard_scale: %s %zu/%zu (%.2f s)\n", mode, created, count, now() - t0);
    }
    t1 = now();
    maps_after = count_maps();
    rss_after = rss_bytes();

    if (s != NULL) {
        yf_sched_counts(s, &cn);
        arenas = cn.arenas;
        free_seconds = now();
        if (yf_sched_free(s) != 0)
            fprintf(stderr, "guard_scale: yf_sched_free: %s\n", strerror(errno));
        free_seconds = now() - free_seconds;
    } else {
        free_seconds = now();
        for (i = 0; i < created; i++)
            free(stacks[i]);
        free(stacks);
        free_seconds = now() - free_seconds;
    }

    printf("{\"mode\":\"%s\",\"guard\":\"%s\",\"supported\":true,\"stack_size\":%zu"
           ",\"requested\":%zu,\"created\":%zu,\"errno\":\"%s\",\"max_map_count\":%ld"
           ",\"maps_before\":%ld,\"maps_after\":%ld,\"maps_per_stack\":%.4f"
           ",\"rss_before\":%ld,\"rss_after\":%ld,\"rss_per_co\":%.1f,\"arenas\":%" PRIu64
           ",\"seconds\":%.6f,\"us_per_co\":%.4f,\"free_seconds\":%.6f}\n",
           mode, guard, stack_size, count, created, errno_name(err), max_map_count,
           maps_before, maps_after,
           created ? (double)(maps_after - maps_before) / created : 0.0,
           rss_before, rss_after,
           created ? (double)(rss_after - rss_before) / created : 0.0, arenas,
           t1 - t0, created ? (t1 - t0) * 1e6 / created : 0.0, free_seconds);
    return 0;
}
