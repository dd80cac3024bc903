/* link_drive.h - the timed loops of link_drive.c, exported even from a
 * library built with -fvisibility=hidden. */
#ifndef LINK_DRIVE_H
#define LINK_DRIVE_H

#include <stdint.h>

#define LINK_API __attribute__((visibility("default")))

/* The switch loop exists in LINK_PLACEMENTS copies that differ only in
 * where their code lies (csrc/lab/placement.h). */
enum { LINK_PLACEMENTS = 8 };

/* ns per resume+yield round trip over n, by copy `placement` of the loop
 * and the coroutine body; *finished gets the coroutine's exit status (n
 * when it ran to its end, -1 otherwise). -1 with errno (EINVAL for a bad
 * placement). */
LINK_API double link_drive_switch(int placement, int64_t n, int64_t *finished);
/* ns per call of the exported yf_co_current over n calls. */
LINK_API double link_drive_call(int64_t n);
/* ns per close(-1) through the hooks and straight to libc, n of each;
 * built only with the hooks (-DLINK_HOOKS). 0, or -1 when the hooks do not
 * know close. */
LINK_API int link_drive_hooked(int64_t n, double *hooked_ns, double *real_ns);

#endif
