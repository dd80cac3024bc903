/* fdtable.c - what the hooks know about each fd number: whether calls on it
 * wait cooperatively, the caller's O_NONBLOCK wish, its socket timeouts. A
 * two-level table indexed by fd, filled lazily, never freed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hooki.h"

#define FD_CHUNK_BITS 12
#define FD_CHUNK (1u << FD_CHUNK_BITS)
#define FD_CHUNKS 1024u          /* 4M fd numbers */

static struct yfh_fd *fd_chunks[FD_CHUNKS];

struct yfh_fd *yfh_ent(int fd, int create)
{
    if (YF_UNLIKELY(fd < 0 || (unsigned)fd >= FD_CHUNK * FD_CHUNKS))
        return NULL;
    unsigned c = (unsigned)fd >> FD_CHUNK_BITS;
    struct yfh_fd *chunk = __atomic_load_n(&fd_chunks[c], __ATOMIC_ACQUIRE);
    if (YF_UNLIKELY(!chunk)) {
        if (!create)
            return NULL;
        int saved = errno;
        struct yfh_fd *fresh = calloc(FD_CHUNK, sizeof *fresh);
        errno = saved;
        if (!fresh)
            return NULL;
        /* Chunks are never freed: another thread may hold a pointer into one. */
        if (__atomic_compare_exchange_n(&fd_chunks[c], &chunk, fresh, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            chunk = fresh;
        else
            free(fresh);
    }
    return &chunk[fd & (FD_CHUNK - 1)];
}

void yfh_forget(int fd)
{
    struct yfh_fd *e = yfh_ent(fd, 0);
    if (e)
        memset(e, 0, sizeof *e);
}

void yfh_issued(int fd, int coop, int user_nb, int32_t rcv_ms, int32_t snd_ms)
{
    yfh_forget(fd);
    if (!coop)
        return;
    struct yfh_fd *e = yfh_ent(fd, 1);
    if (e) {
        e->kind = K_COOP;
        e->user_nb = (uint8_t)(user_nb != 0);
        e->rcv_ms = rcv_ms;
        e->snd_ms = snd_ms;
    }
}

/* Sockets and pipes can wait cooperatively (their kernel flag is set
 * non-blocking here and the caller's wish remembered); regular files,
 * directories and devices pass straight to libc. */
struct yfh_fd *yfh_track(int fd)
{
    struct yfh_fd *e = yfh_ent(fd, 1);
    if (YF_UNLIKELY(!e))
        return NULL;
    if (YF_LIKELY(e->kind == K_COOP))
        return e;
    if (e->kind == K_PASS)
        return NULL;
    int saved = errno;
    struct stat st;
    int fl;
    if (fstat(fd, &st) != 0 || (fl = REAL(fcntl)(fd, F_GETFL)) < 0) {
        /* A bad fd: the real call will say so. */
        errno = saved;
        return NULL;
    }
    if (!S_ISSOCK(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        e->kind = K_PASS;
        errno = saved;
        return NULL;
    }
    e->user_nb = (fl & O_NONBLOCK) != 0;
    if (!e->user_nb && REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        errno = saved;
        return NULL;
    }
    e->kind = K_COOP;
    errno = saved;
    return e;
}
