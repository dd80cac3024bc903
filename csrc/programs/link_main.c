/* link_main.c - runs the loops of link_drive.c once and prints one JSON line:
 *     link_main N_SWITCH N_CALL [N_HOOKED]
 * (N_HOOKED only in builds with the hooks, -DLINK_HOOKS.) Each figure is the
 * best of PASSES passes: a run lasts milliseconds, and one preemption would
 * otherwise stand for the whole run. The round trip is the best over the
 * passes and every placement of its loop (link_drive.h), as each build's
 * code lies where its linker put it: "placement" names the fastest.
 * Exit 1 when the runtime fails or the coroutine did not run to its end. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_drive.h"

#define PASSES 3

static double least(double a, double b)
{
    return a < b ? a : b;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s N_SWITCH N_CALL [N_HOOKED]\n", argv[0]);
        return 2;
    }
    int64_t ns = strtoll(argv[1], NULL, 10), nc = strtoll(argv[2], NULL, 10);
    if (ns < 1 || nc < 1) {
        fprintf(stderr, "%s: counts must be >= 1\n", argv[0]);
        return 2;
    }
    int64_t finished = -1;
    double sw = 0, call = 0;
    int best = -1, whole = 1;
    for (int p = 0; p < PASSES && whole; p++)
        for (int k = 0; k < LINK_PLACEMENTS && whole; k++) {
            double t = link_drive_switch(k, ns, &finished);
            if (t < 0) {
                fprintf(stderr, "%s: runtime failed: %s\n", argv[0], strerror(errno));
                return 1;
            }
            whole = finished == ns;
            if (whole && (best < 0 || t < sw)) {
                sw = t;
                best = k;
            }
        }
    for (int p = 0; p < PASSES; p++) {
        double t = link_drive_call(nc);
        call = p ? least(call, t) : t;
    }
    printf("{\"switch_ns\": %.4f, \"placement\": %d, \"call_ns\": %.4f, \"n_switch\": %lld, \"finished\": %lld",
           sw, best, call, (long long)ns, (long long)finished);
#ifdef LINK_HOOKS
    int64_t nh = argc == 4 ? strtoll(argv[3], NULL, 10) : 0;
    double hooked = 0, real = 0, h, r;
    int ok = nh > 0;
    for (int p = 0; ok && p < PASSES; p++) {
        if (link_drive_hooked(nh, &h, &r) != 0) {
            ok = 0;
            break;
        }
        hooked = p ? least(hooked, h) : h;
        real = p ? least(real, r) : r;
    }
    if (ok)
        printf(", \"hooked_ns\": %.4f, \"real_ns\": %.4f", hooked, real);
#endif
    printf("}\n");
    return finished == ns ? 0 : 1;
}
