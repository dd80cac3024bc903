/* stack_overflow.c - one coroutine overflows its stack into its neighbour's, with and without a guard. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yf.h"

/* Usage: stack_overflow guard|guard-mprotect|noguard [stack_size [overflow_bytes [all|low]]]
 *
 * Slots of one scheduler are carved upward from an arena, each stack_size
 * bytes and aligned to it, with the guard in the lowest page. Coroutine A,
 * created first, gets the slot just below B's, so B's stack runs off its
 * bottom straight into the top of A's slot.
 *
 * Default sizes: 64 KiB stacks and an overflow of stack_size + 8192 bytes.
 * The runtime puts a 64-byte header at the top of each slot and lowers the
 * stack top below it by a cache colour of up to 4032 bytes, so a coroutine's
 * first frame starts 0.1 to 4.2 KiB below its slot top. B's big frame thus
 * ends 8 KiB plus that distance below B's slot base: 8.1 to 12.4 KiB down
 * into A's slot. A's 1 KiB array ends at most 4160 bytes below A's slot top
 * (measured over 300 runs, all 64 colours seen), so it lies entirely within
 * the overwritten part, whatever the colours: the control run changes all
 * 1024 bytes every time. The writes stop more than 50 KiB above the bottom
 * of A's slot, far from anything unmapped, so the control never faults.
 *
 * Touch "all" writes the whole frame with memset (as the diary's
 * `char buffer[kMaxBufferSize] = {0}` does); "low" writes only its lowest
 * LOW_BYTES, the way a function that fills only the start of a big local
 * array does. Built without -fstack-clash-protection, "low" jumps over the
 * guard: every byte touched lies below it, in A's slot, and nothing faults.
 * Besides A's array, the root compares all of A's slot above its guard page
 * with a copy taken while A was suspended, so corruption anywhere in it
 * counts (slot_bytes_changed). */

enum { VICTIM_BYTES = 1024, VICTIM_FILL = 0xa5, OVERFLOW_FILL = 0xb0, LOW_BYTES = 1024 };

static volatile unsigned char *victim;
static volatile uintptr_t buf_low;
static volatile unsigned char sink;

static uintptr_t slot_base(uintptr_t p, size_t stack_size)
{
    return p & ~(uintptr_t)(stack_size - 1);
}

static intptr_t body_a(void *arg)
{
    unsigned char arr[VICTIM_BYTES];

    (void)arg;
    memset(arr, VICTIM_FILL, sizeof arr);
    victim = arr;
    yf_co_yield();
    /* Never resumed in this program; the check keeps arr alive across the
     * yield so the compiler must keep it in this frame. */
    return arr[0] == VICTIM_FILL;
}

/* The frame size is only known at run time (a VLA), so the compiler can
 * neither shrink nor drop it; -fstack-clash-protection makes the prologue
 * probe it page by page from the top down. */
static __attribute__((noinline)) int big_frame(size_t n, int touch_all)
{
    unsigned char buf[n];
    volatile unsigned char *vp = buf;

    buf_low = (uintptr_t)buf;
    if (touch_all)
        memset(buf, OVERFLOW_FILL, n);
    else
        memset(buf, OVERFLOW_FILL, n < LOW_BYTES ? n : LOW_BYTES);
    sink = vp[0];
    return sink;
}

struct b_arg {
    size_t stack_size;
    size_t overflow;
    int touch_all;
};

static intptr_t body_b(void *arg)
{
    const struct b_arg *ba = arg;
    uintptr_t here = (uintptr_t)&ba;
    uint64_t id = yf_co_id(yf_co_current());

    /* Said before the overflow, so a crash test can check the runtime's
     * report names this very coroutine. */
    printf("{\"event\":\"overflowing\",\"id\":%" PRIu64 ",\"b_slot\":\"0x%" PRIxPTR "\"}\n",
           id, slot_base(here, ba->stack_size));
    fflush(stdout);
    return big_frame(ba->overflow, ba->touch_all);
}

static int usage(void)
{
    fprintf(stderr, "usage: stack_overflow guard|guard-mprotect|noguard"
                    " [stack_size [overflow_bytes [all|low]]]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct b_arg ba = { 65536, 0, 1 };
    unsigned flags;
    const char *mode, *guard_kind;
    yf_sched *s;
    yf_co *a, *b;
    uintptr_t a_slot, b_slot, victim_end;
    size_t changed = 0, slot_changed = 0, page, copy_len, i;
    unsigned char *copy;

    if (argc < 2)
        return usage();
    mode = argv[1];
    if (strcmp(mode, "guard") == 0)
        flags = 0;
    else if (strcmp(mode, "guard-mprotect") == 0)
        flags = YF_SCHED_GUARD_MPROTECT;
    else if (strcmp(mode, "noguard") == 0)
        flags = YF_SCHED_NOGUARD;
    else
        return usage();
    if (argc > 2)
        ba.stack_size = strtoull(argv[2], NULL, 0);
    ba.overflow = argc > 3 ? strtoull(argv[3], NULL, 0) : ba.stack_size + 8192;
    if (argc > 4) {
        if (strcmp(argv[4], "all") == 0)
            ba.touch_all = 1;
        else if (strcmp(argv[4], "low") == 0)
            ba.touch_all = 0;
        else
            return usage();
    }

    s = yf_sched_new(ba.stack_size, flags);
    if (s == NULL) {
        fprintf(stderr, "stack_overflow: yf_sched_new: %s\n", strerror(errno));
        return 2;
    }
    a = yf_co_create(s, body_a, NULL);
    b = yf_co_create(s, body_b, &ba);
    if (a == NULL || b == NULL) {
        fprintf(stderr, "stack_overflow: yf_co_create: %s\n", strerror(errno));
        return 2;
    }
    if (flags & YF_SCHED_NOGUARD)
        guard_kind = "none";
    else
        guard_kind = yf_sched_guard_regions(s) ? "regions" : "mprotect";

    if (yf_co_resume(a) != 0 || victim == NULL) {
        fprintf(stderr, "stack_overflow: resume A: %s\n", strerror(errno));
        return 2;
    }
    /* A's slot above its guard page, as A left it. */
    page = (size_t)sysconf(_SC_PAGESIZE);
    a_slot = slot_base((uintptr_t)victim, ba.stack_size);
    copy_len = ba.stack_size - page;
    copy = malloc(copy_len);
    if (copy == NULL)
        return 2;
    memcpy(copy, (void *)(a_slot + page), copy_len);

    yf_co_resume(b);

    /* Reached only when nothing faulted. A is never resumed again: its
     * saved context lies just below its array and may be smashed too. */
    for (i = 0; i < VICTIM_BYTES; i++)
        changed += victim[i] != VICTIM_FILL;
    for (i = 0; i < copy_len; i++)
        slot_changed += ((volatile unsigned char *)(a_slot + page))[i] != copy[i];
    b_slot = slot_base(buf_low + ba.overflow - 1, ba.stack_size);
    victim_end = (uintptr_t)victim + VICTIM_BYTES;
    printf("{\"mode\":\"%s\",\"guard\":\"%s\",\"touch\":\"%s\",\"stack_size\":%zu"
           ",\"overflow_bytes\":%zu,\"a_id\":%" PRIu64 ",\"b_id\":%" PRIu64
           ",\"adjacent\":%s,\"victim_top_gap\":%zu,\"reach_below_b_slot\":%" PRIdPTR
           ",\"victim_bytes\":%d,\"victim_bytes_changed\":%zu,\"slot_bytes_changed\":%zu"
           ",\"exit\":\"normal\""
           ",\"victim_addr\":\"%p\",\"frame_low_addr\":\"0x%" PRIxPTR "\"}\n",
           mode, guard_kind, ba.touch_all ? "all" : "low", ba.stack_size,
           ba.overflow, yf_co_id(a), yf_co_id(b),
           b_slot == a_slot + ba.stack_size ? "true" : "false",
           (size_t)(a_slot + ba.stack_size - victim_end),
           (intptr_t)(b_slot - buf_low),
           VICTIM_BYTES, changed, slot_changed, (void *)victim, buf_low);
    /* yf_sched_free is skipped on purpose: whatever the runtime keeps in A's
     * slot may be overwritten, and the point is that the process goes on. */
    return 0;
}
