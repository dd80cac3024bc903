/* guard_sign_bug.c - re-creates the 2015/07/09 guard-page sign bug and its fix (standalone). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The diary's yf_pagesize was an unsigned 32-bit integer; keeping that type
 * is the whole point of this program. */
static uint32_t pagesize;

#define mem_off(p, off) ((void *)((char *)(p) + (off)))

/* Unary minus on a uint32_t stays unsigned: -4096 becomes 2^32 - 4096, which
 * is then zero-extended to 64 bits when added to the pointer. */
#define s2m_buggy(s) mem_off(s, -pagesize)
/* The diary's fix: convert to signed first, then negate. */
#define s2m_fixed(s) mem_off(s, -(int32_t)pagesize)

enum { STACK_PAGES = 16 };

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    default: return "E?";
    }
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGKILL: return "SIGKILL";
    default: return "SIG?";
    }
}

/* 1 when any page of [p, p+len) is mapped (mincore fails with ENOMEM on
 * unmapped ranges). */
static int is_mapped(void *p, size_t len)
{
    unsigned char vec[1];
    size_t i;

    for (i = 0; i < len; i += pagesize) {
        if (mincore((char *)p + i, pagesize, vec) == 0)
            return 1;
    }
    return 0;
}

/* Maps guard + stack so that the 4 GiB above it is certainly unmapped: the
 * whole span is reserved first and the excess is given back, so the buggy
 * address cannot hit an unrelated mapping by chance and the output is the
 * same on every run. */
static char *map_stack_region(size_t region)
{
    size_t span = region + ((size_t)1 << 32) + pagesize;
    char *p;

    p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (munmap(p + region, span - region) != 0)
        return NULL;
    if (mprotect(p, region, PROT_READ | PROT_WRITE) != 0)
        return NULL;
    return p;
}

/* Forks a child that writes one byte at addr; returns "exit:<code>" or the
 * signal name that killed it, in buf. */
static void child_write(volatile char *addr, char *buf, size_t len)
{
    pid_t pid;
    int st;

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        addr[0] = 0x5a;
        _exit(addr[0] == 0x5a ? 0 : 3);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid) {
        snprintf(buf, len, "fork-failed");
        return;
    }
    if (WIFSIGNALED(st))
        snprintf(buf, len, "%s", signal_name(WTERMSIG(st)));
    else
        snprintf(buf, len, "exit:%d", WEXITSTATUS(st));
}

int main(void)
{
    size_t region;
    char *rb, *rf, *sb, *sf, *gb, *gf;
    int rc_b, err_b, rc_f, err_f, target_mapped;
    char child_b[32], child_f[32];

    pagesize = (uint32_t)sysconf(_SC_PAGESIZE);
    region = (size_t)pagesize * (STACK_PAGES + 1);

    /* Two independent guard+stack regions, one per macro, so that the child
     * writing into the buggy region's intended guard page sees no side effect
     * of the fixed one. The stack base s is one page above the region start:
     * the guard is meant to be the page just below it. */
    rb = map_stack_region(region);
    rf = map_stack_region(region);
    if (rb == NULL || rf == NULL) {
        fprintf(stderr, "guard_sign_bug: mmap: %s\n", strerror(errno));
        return 2;
    }
    sb = rb + pagesize;
    sf = rf + pagesize;

    gb = s2m_buggy(sb);
    gf = s2m_fixed(sf);

    target_mapped = is_mapped(gb, pagesize);
    errno = 0;
    rc_b = mprotect(gb, pagesize, PROT_NONE);
    err_b = rc_b == 0 ? 0 : errno;
    errno = 0;
    rc_f = mprotect(gf, pagesize, PROT_NONE);
    err_f = rc_f == 0 ? 0 : errno;

    /* Each child writes into the page the guard was meant to occupy: one
     * byte below the stack base, i.e. the first byte an overflow touches. */
    child_write(sf - 1, child_f, sizeof child_f);
    child_write(sb - 1, child_b, sizeof child_b);

    printf("{\"pagesize\":%" PRIu32 ",\"minus_pagesize_u32\":%" PRIu32
           ",\"buggy_offset\":%td,\"buggy_target_mapped\":%s"
           ",\"buggy_rc\":%d,\"buggy_errno\":\"%s\""
           ",\"fixed_offset\":%td,\"fixed_rc\":%d,\"fixed_errno\":\"%s\""
           ",\"fixed_child\":\"%s\",\"buggy_child\":\"%s\""
           ",\"buggy_stack_base\":\"%p\",\"buggy_guard\":\"%p\""
           ",\"fixed_stack_base\":\"%p\",\"fixed_guard\":\"%p\"}\n",
           pagesize, (uint32_t)-pagesize,
           gb - sb, target_mapped ? "true" : "false",
           rc_b, errno_name(err_b),
           gf - sf, rc_f, errno_name(err_f),
           child_f, child_b,
           (void *)sb, (void *)gb, (void *)sf, (void *)gf);
    return 0;
}
