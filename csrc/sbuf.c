/* sbuf.c - the socket buffer: a ring of fixed-size chunks with head, cursor
 * and tail positions, read into straight from sockets (reserve/commit, readv)
 * and written out with writev.
 *
 * Layout. The chunks in use sit in ring order in `ring`, starting at slot
 * `first`; chunk 0 holds the head at offset `head`. Position pos (an offset
 * from the head) lives in chunk (head + pos) >> shift at offset
 * (head + pos) & (cs - 1): positioning is O(1), a shift and a mask, as the
 * diary asked ("fast positioning, like an array"). Chunk memory never moves
 * once allocated; only the ring of pointers is reallocated when it fills, so
 * a pointer handed out by peek or reserve stays valid until its chunk is
 * freed (by consume or truncate under the memory policy, or yf_sbuf_free).
 *
 * Memory policy. A chunk emptied by consume is not freed at once: its pointer
 * moves to the back of the ring as a spare, so steady traffic runs without
 * malloc or free. The buffer holds at most `keep` chunks, where keep is the
 * largest demand (chunks spanned by head..tail plus the reservation) seen in
 * the current or the previous window of WINDOW consume calls, and never less
 * than the demand now. A burst raises keep at once (chunks are allocated as
 * writes and reservations need them); once the burst has been consumed, keep
 * falls back to the steady demand within two windows and the spares above it
 * are freed. Notebook 06 measures this. Memory is given back only in consume
 * and truncate: a buffer that is never consumed keeps what it holds.
 *
 * Copies. `copied` counts every byte the buffer memcpy's itself: write (in),
 * read (out), and peek when the range straddles chunks (into the scratch).
 * reserve/commit, recv, peekv and send move data without the buffer copying.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "yfi.h"

_Static_assert(sizeof(yf_iovec) == sizeof(struct iovec), "yf_iovec must be struct iovec");
_Static_assert(offsetof(yf_iovec, len) == offsetof(struct iovec, iov_len), "yf_iovec must be struct iovec");

#define CHUNK_MIN ((size_t)YF_SBUF_CHUNK_MIN)
#define CHUNK_MAX ((size_t)YF_SBUF_CHUNK_MAX)
#define RING_MIN 8
/* Consume calls per policy window (see the memory policy above). */
#define WINDOW 64
/* iovecs per readv/writev: 64 chunks of at least 64 bytes; more would only
 * lengthen the kernel's iovec copy for no gain at the sizes sockets move. */
#define IOV_BATCH 64
/* No single request may exceed this: it keeps every position sum below
 * SIZE_MAX without overflow checks on the hot paths. */
#define REQ_MAX YF_SBUF_REQ_MAX

struct yf_sbuf {
    char **ring;            /* chunk pointers; slots outside the used run are NULL */
    size_t ring_cap;        /* a power of two */
    size_t first;           /* ring slot of chunk 0 */
    size_t nchunks;         /* chunks allocated, in ring order from first */
    size_t head;            /* offset of the head in chunk 0; < cs */
    size_t size;            /* tail - head */
    size_t cursor;          /* cursor - head; <= size */
    size_t reserved;        /* bytes reserved past the tail, not yet committed */
    size_t cs;              /* chunk size, a power of two */
    unsigned shift;         /* log2(cs) */
    size_t max_size;        /* 0: no limit */
    size_t win_cur, win_prev; /* peak demand (chunks) of this and the last window */
    unsigned win_consumes;  /* consume calls in the current window */
    uint64_t truncated;     /* bytes dropped by truncate (for the counter invariant) */
    char *scratch;          /* take_msgs' copy space for messages across chunks */
    size_t scratch_len;
    yf_sbuf_stats st;
};

static size_t slot(const yf_sbuf *sb, size_t chunk)
{
    return (sb->first + chunk) & (sb->ring_cap - 1);
}

/* Chunk and offset of an absolute offset (from the start of chunk 0). */
static char *at(const yf_sbuf *sb, size_t abs)
{
    return sb->ring[slot(sb, abs >> sb->shift)] + (abs & (sb->cs - 1));
}

/* Chunks spanned by absolute offsets [0, end). */
static size_t chunks_for(const yf_sbuf *sb, size_t end)
{
    return (end + sb->cs - 1) >> sb->shift;
}

static size_t demand(const yf_sbuf *sb)
{
    return chunks_for(sb, sb->head + sb->size + sb->reserved);
}

/* An empty buffer without a reservation restarts at the beginning of its
 * chunk, so that the next messages straddle chunk boundaries as rarely as
 * possible. */
static void restart_if_empty(yf_sbuf *sb)
{
    if (sb->size == 0 && sb->reserved == 0)
        sb->head = 0;
}

static void note_demand(yf_sbuf *sb, size_t chunks)
{
    if (chunks > sb->win_cur)
        sb->win_cur = chunks;
}

yf_sbuf *yf_sbuf_new(size_t chunk_size, size_t max_size)
{
    if (chunk_size < CHUNK_MIN || chunk_size > CHUNK_MAX || (chunk_size & (chunk_size - 1))) {
        errno = EINVAL;
        return NULL;
    }
    yf_sbuf *sb = calloc(1, sizeof *sb);
    if (!sb)
        return NULL;
    sb->ring = calloc(RING_MIN, sizeof *sb->ring);
    if (!sb->ring) {
        free(sb);
        return NULL;
    }
    sb->ring_cap = RING_MIN;
    sb->cs = chunk_size;
    sb->shift = (unsigned)__builtin_ctzll(chunk_size);
    sb->max_size = max_size;
    return sb;
}

void yf_sbuf_free(yf_sbuf *sb)
{
    if (!sb)
        return;
    for (size_t i = 0; i < sb->nchunks; i++)
        free(sb->ring[slot(sb, i)]);
    free(sb->ring);
    free(sb->scratch);
    free(sb);
}

/* Grows the ring to a power of two >= want slots, unwrapping it so that
 * chunk 0 sits in slot 0. */
static int ring_grow(yf_sbuf *sb, size_t want)
{
    size_t cap = sb->ring_cap;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(char *)) {
            errno = ENOMEM;
            return -1;
        }
        cap *= 2;
    }
    char **r = calloc(cap, sizeof *r);
    if (!r)
        return -1;
    for (size_t i = 0; i < sb->nchunks; i++)
        r[i] = sb->ring[slot(sb, i)];
    free(sb->ring);
    sb->ring = r;
    sb->ring_cap = cap;
    sb->first = 0;
    return 0;
}

/* Makes chunks cover absolute offsets [0, end). The ring grows first, in
 * one allocation, so that an absurd size fails before any chunk is taken.
 * A failure gives back everything this call took (chunks, the larger ring,
 * the high-water mark and the demand it would have recorded): a reserve of
 * 16 GiB that fails at 1.4 GiB must not leave 1.4 GiB of spares behind. */
static int ensure(yf_sbuf *sb, size_t end)
{
    size_t want = chunks_for(sb, end);
    if (want <= sb->nchunks) {
        note_demand(sb, want);
        return 0;
    }
    size_t had = sb->nchunks, old_cap = sb->ring_cap;
    uint64_t old_hw = sb->st.high_water;
    if (want > sb->ring_cap && ring_grow(sb, want) != 0)
        return -1;
    while (sb->nchunks < want) {
        char *c = malloc(sb->cs);
        if (!c)
            goto fail;
        sb->ring[slot(sb, sb->nchunks)] = c;
        sb->nchunks++;
        sb->st.chunk_allocs++;
        uint64_t capa = (uint64_t)sb->nchunks * sb->cs;
        if (capa > sb->st.high_water)
            sb->st.high_water = capa;
    }
    note_demand(sb, want);
    return 0;
fail:
    while (sb->nchunks > had) {
        size_t i = slot(sb, --sb->nchunks);
        free(sb->ring[i]);
        sb->ring[i] = NULL;
        sb->st.chunk_frees++;
    }
    sb->st.high_water = old_hw;
    /* ring_grow left the ring unwrapped (chunk 0 in slot 0), so its first
     * old_cap slots hold every chunk; a failed shrink keeps the larger one. */
    if (sb->ring_cap > old_cap) {
        char **r = realloc(sb->ring, old_cap * sizeof *r);
        if (r) {
            sb->ring = r;
            sb->ring_cap = old_cap;
        }
    }
    errno = ENOMEM;
    return -1;
}

/* Frees spares beyond the policy's keep (from the back of the ring). */
static void trim(yf_sbuf *sb)
{
    size_t need = demand(sb);
    size_t keep = sb->win_cur > sb->win_prev ? sb->win_cur : sb->win_prev;
    if (keep < need)
        keep = need;
    while (sb->nchunks > keep) {
        size_t s = slot(sb, sb->nchunks - 1);
        free(sb->ring[s]);
        sb->ring[s] = NULL;
        sb->nchunks--;
        sb->st.chunk_frees++;
    }
}

/* Room for n more bytes past the tail, within max_size. */
static int room(const yf_sbuf *sb, size_t n)
{
    if (n > REQ_MAX) {
        errno = sb->max_size ? ENOBUFS : ENOMEM;
        return -1;
    }
    if (sb->max_size && n > sb->max_size - sb->size) {
        errno = ENOBUFS;
        return -1;
    }
    return 0;
}

/* Copies n bytes between the buffer at absolute offset abs and p. */
static void copy_out(const yf_sbuf *sb, size_t abs, char *p, size_t n)
{
    while (n) {
        size_t off = abs & (sb->cs - 1);
        size_t k = sb->cs - off < n ? sb->cs - off : n;
        memcpy(p, at(sb, abs), k);
        p += k, abs += k, n -= k;
    }
}

static void copy_in(yf_sbuf *sb, size_t abs, const char *p, size_t n)
{
    while (n) {
        size_t off = abs & (sb->cs - 1);
        size_t k = sb->cs - off < n ? sb->cs - off : n;
        memcpy(at(sb, abs), p, k);
        p += k, abs += k, n -= k;
    }
}

int64_t yf_sbuf_write(yf_sbuf *sb, const void *p, size_t n)
{
    if (room(sb, n) != 0)
        return -1;
    if (n && !p) {
        errno = EINVAL;
        return -1;
    }
    sb->reserved = 0;
    restart_if_empty(sb);
    size_t tail = sb->head + sb->size;
    if (ensure(sb, tail + n) != 0)
        return -1;
    copy_in(sb, tail, p, n);
    sb->size += n;
    sb->st.bytes_in += n;
    sb->st.copied += n;
    return (int64_t)n;
}

int64_t yf_sbuf_read(yf_sbuf *sb, void *p, size_t n)
{
    size_t avail = sb->size - sb->cursor;
    if (n > avail)
        n = avail;
    if (n && !p) {
        errno = EINVAL;
        return -1;
    }
    copy_out(sb, sb->head + sb->cursor, p, n);
    sb->cursor += n;
    sb->st.copied += n;
    return (int64_t)n;
}

int64_t yf_sbuf_peek(yf_sbuf *sb, size_t n, const void **p, void *scratch)
{
    if (n > sb->size - sb->cursor) {
        errno = ERANGE;
        return -1;
    }
    size_t abs = sb->head + sb->cursor;
    if (n == 0 || (abs & (sb->cs - 1)) + n <= sb->cs) {
        *p = n ? at(sb, abs) : NULL;
        return 0;
    }
    if (!scratch) {
        errno = EINVAL;
        return -1;
    }
    copy_out(sb, abs, scratch, n);
    sb->st.copied += n;
    *p = scratch;
    return (int64_t)n;
}

/* iovecs over absolute [abs, abs + n), at most max; returns the count. */
static int fill_iov(const yf_sbuf *sb, size_t abs, size_t n, yf_iovec *iov, int max)
{
    int k = 0;
    while (n && k < max) {
        size_t off = abs & (sb->cs - 1);
        size_t len = sb->cs - off < n ? sb->cs - off : n;
        iov[k].base = at(sb, abs);
        iov[k].len = len;
        k++, abs += len, n -= len;
    }
    return k;
}

int yf_sbuf_peekv(const yf_sbuf *sb, yf_iovec *iov, int max, size_t n)
{
    if (max < 0 || (max > 0 && !iov)) {
        errno = EINVAL;
        return -1;
    }
    size_t avail = sb->size - sb->cursor;
    return fill_iov(sb, sb->head + sb->cursor, n < avail ? n : avail, iov, max);
}

int64_t yf_sbuf_seek(yf_sbuf *sb, int64_t off, int whence)
{
    int64_t base;
    switch (whence) {
    case YF_SEEK_SET: base = 0; break;
    case YF_SEEK_CUR: base = (int64_t)sb->cursor; break;
    case YF_SEEK_END: base = (int64_t)sb->size; break;
    default: errno = EINVAL; return -1;
    }
    int64_t pos;
    if (__builtin_add_overflow(base, off, &pos) || pos < 0 || (uint64_t)pos > sb->size) {
        errno = EINVAL;
        return -1;
    }
    sb->cursor = (size_t)pos;
    return pos;
}

int64_t yf_sbuf_tell(const yf_sbuf *sb)
{
    return (int64_t)sb->cursor;
}

size_t yf_sbuf_size(const yf_sbuf *sb)
{
    return sb->size;
}

int yf_sbuf_truncate(yf_sbuf *sb, size_t size)
{
    if (size > sb->size) {
        errno = EINVAL;
        return -1;
    }
    sb->truncated += sb->size - size;
    sb->size = size;
    if (sb->cursor > size)
        sb->cursor = size;
    sb->reserved = 0;
    restart_if_empty(sb);
    trim(sb);
    return 0;
}

size_t yf_sbuf_consume(yf_sbuf *sb)
{
    size_t n = sb->cursor;
    note_demand(sb, demand(sb));
    size_t abs = sb->head + n;
    size_t gone = abs >> sb->shift;
    /* Emptied chunks move to the back of the ring as spares; with a full
     * ring the destination slot is the source slot and the move is a no-op. */
    for (size_t i = 0; i < gone; i++) {
        size_t from = slot(sb, 0), to = slot(sb, sb->nchunks);
        char *c = sb->ring[from];
        sb->ring[from] = NULL;
        sb->ring[to] = c;
        sb->first = (sb->first + 1) & (sb->ring_cap - 1);
    }
    sb->head = abs & (sb->cs - 1);
    sb->size -= n;
    sb->cursor = 0;
    restart_if_empty(sb);
    sb->st.bytes_out += n;
    if (++sb->win_consumes >= WINDOW) {
        sb->win_prev = sb->win_cur;
        sb->win_cur = demand(sb);
        sb->win_consumes = 0;
    }
    trim(sb);
    return n;
}

int yf_sbuf_reserve(yf_sbuf *sb, size_t n, yf_iovec *iov, int max)
{
    if (room(sb, n) != 0)
        return -1;
    if (max < 0 || (n && !iov)) {
        errno = EINVAL;
        return -1;
    }
    sb->reserved = 0;
    restart_if_empty(sb);
    size_t tail = sb->head + sb->size;
    size_t off = tail & (sb->cs - 1);
    /* iovecs needed: the rest of the tail's chunk, then whole chunks. */
    size_t first_len = sb->cs - off;
    size_t need = n == 0 ? 0 : n <= first_len ? 1 : 1 + chunks_for(sb, n - first_len);
    if (need > (size_t)max) {
        errno = EINVAL;
        return -1;
    }
    if (ensure(sb, tail + n) != 0)
        return -1;
    sb->reserved = n;
    return fill_iov(sb, tail, n, iov, max);
}

int yf_sbuf_commit(yf_sbuf *sb, size_t n)
{
    if (n > sb->reserved) {
        errno = EINVAL;
        return -1;
    }
    sb->size += n;
    sb->reserved = 0;
    sb->st.bytes_in += n;
    restart_if_empty(sb);
    return 0;
}

int64_t yf_sbuf_recv(yf_sbuf *sb, int fd, size_t max)
{
    if (max == 0) {
        errno = EINVAL;
        return -1;
    }
    /* Clamp to what IOV_BATCH iovecs and max_size allow, so that a large
     * max reads what one readv can take instead of failing. */
    size_t off = (sb->head + sb->size) & (sb->cs - 1);
    size_t span = (sb->cs - off) + (size_t)(IOV_BATCH - 1) * sb->cs;
    if (max > span)
        max = span;
    if (sb->max_size && max > sb->max_size - sb->size) {
        max = sb->max_size - sb->size;
        if (max == 0) {
            errno = ENOBUFS;
            return -1;
        }
    }
    yf_iovec iov[IOV_BATCH];
    int k = yf_sbuf_reserve(sb, max, iov, IOV_BATCH);
    if (k < 0)
        return -1;
    /* EINTR is the caller's: Python must get back to run its signal
     * handlers (KeyboardInterrupt) before it retries. */
    ssize_t got = readv(fd, (struct iovec *)iov, k);
    if (got < 0) {
        int e = errno;
        sb->reserved = 0;
        restart_if_empty(sb);
        errno = e;
        return -1;
    }
    yf_sbuf_commit(sb, (size_t)got);
    return got;
}

int64_t yf_sbuf_send(yf_sbuf *sb, int fd)
{
    yf_iovec iov[IOV_BATCH];
    int k = yf_sbuf_peekv(sb, iov, IOV_BATCH, SIZE_MAX);
    if (k == 0) {
        /* Nothing to send; what lies before the cursor goes all the same. */
        yf_sbuf_consume(sb);
        return 0;
    }
    ssize_t put = yfi_writev_nosigpipe(fd, (struct iovec *)iov, k);
    if (put < 0)
        return -1;
    sb->cursor += (size_t)put;
    yf_sbuf_consume(sb);
    return put;
}

void yf_sbuf_stats_get(const yf_sbuf *sb, yf_sbuf_stats *out)
{
    *out = sb->st;
    out->size = sb->size;
    out->chunks = sb->nchunks;
    out->capacity = (uint64_t)sb->nchunks * sb->cs;
}

size_t yf_sbuf_layout(const yf_sbuf *sb, uint64_t info[6], uint64_t *addr, size_t max)
{
    info[0] = sb->ring_cap;
    info[1] = sb->first;
    info[2] = sb->head;
    info[3] = sb->cs;
    info[4] = sb->reserved;
    info[5] = sb->nchunks;
    size_t n = sb->nchunks < max ? sb->nchunks : max;
    for (size_t i = 0; i < n; i++)
        addr[i] = (uint64_t)(uintptr_t)sb->ring[slot(sb, i)];
    return n;
}

static int fail(char *msg, size_t len, const char *fmt, ...)
{
    if (msg && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    errno = EINVAL;
    return -1;
}

int yf_sbuf_check(const yf_sbuf *sb, char *msg, size_t len)
{
    if (msg && len)
        msg[0] = 0;
    if (sb->cs < CHUNK_MIN || sb->cs > CHUNK_MAX || sb->cs != (size_t)1 << sb->shift)
        return fail(msg, len, "chunk size %zu / shift %u inconsistent", sb->cs, sb->shift);
    if (sb->ring_cap < RING_MIN || (sb->ring_cap & (sb->ring_cap - 1)))
        return fail(msg, len, "ring capacity %zu not a power of two >= %d", sb->ring_cap, RING_MIN);
    if (sb->nchunks > sb->ring_cap || sb->first >= sb->ring_cap)
        return fail(msg, len, "%zu chunks from slot %zu in a ring of %zu", sb->nchunks, sb->first, sb->ring_cap);
    if (sb->head >= sb->cs)
        return fail(msg, len, "head offset %zu not inside a %zu-byte chunk", sb->head, sb->cs);
    if (sb->cursor > sb->size)
        return fail(msg, len, "cursor %zu past the tail %zu", sb->cursor, sb->size);
    if (sb->max_size && sb->size > sb->max_size)
        return fail(msg, len, "size %zu over max_size %zu", sb->size, sb->max_size);
    if (sb->max_size && sb->reserved > sb->max_size - sb->size)
        return fail(msg, len, "reservation %zu past max_size %zu", sb->reserved, sb->max_size);
    if (sb->head + sb->size + sb->reserved > sb->nchunks * sb->cs)
        return fail(msg, len, "head %zu + size %zu + reserved %zu exceed %zu chunks", sb->head, sb->size,
                    sb->reserved, sb->nchunks);
    if (sb->size == 0 && sb->reserved == 0 && sb->cursor == 0 && sb->head != 0)
        return fail(msg, len, "empty buffer with head offset %zu", sb->head);
    for (size_t i = 0; i < sb->ring_cap; i++) {
        size_t rel = (i - sb->first) & (sb->ring_cap - 1);
        if ((rel < sb->nchunks) != (sb->ring[i] != NULL))
            return fail(msg, len, "ring slot %zu is %s but chunk index %zu of %zu", i,
                        sb->ring[i] ? "set" : "NULL", rel, sb->nchunks);
    }
    /* Distinct chunks: a pointer in two slots would alias data. Quadratic,
     * so only for the ring sizes tests use. */
    if (sb->nchunks <= 256)
        for (size_t i = 0; i < sb->nchunks; i++)
            for (size_t j = i + 1; j < sb->nchunks; j++)
                if (sb->ring[slot(sb, i)] == sb->ring[slot(sb, j)])
                    return fail(msg, len, "chunks %zu and %zu are the same memory", i, j);
    const yf_sbuf_stats *st = &sb->st;
    if (st->chunk_allocs - st->chunk_frees != sb->nchunks)
        return fail(msg, len, "%llu allocs - %llu frees != %zu chunks", (unsigned long long)st->chunk_allocs,
                    (unsigned long long)st->chunk_frees, sb->nchunks);
    if (st->high_water < (uint64_t)sb->nchunks * sb->cs)
        return fail(msg, len, "high water %llu below capacity", (unsigned long long)st->high_water);
    if (st->bytes_in - st->bytes_out - sb->truncated != sb->size)
        return fail(msg, len, "bytes in %llu - out %llu - truncated %llu != size %zu",
                    (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out,
                    (unsigned long long)sb->truncated, sb->size);
    size_t keep = sb->win_cur > sb->win_prev ? sb->win_cur : sb->win_prev;
    if (sb->nchunks > keep && sb->nchunks > demand(sb))
        return fail(msg, len, "%zu chunks held, policy keeps %zu", sb->nchunks, keep);
    return 0;
}

/* ---- length-prefixed messages -------------------------------------------- */

static int scratch_fit(yf_sbuf *sb, size_t n)
{
    if (sb->scratch_len >= n)
        return 0;
    char *p = realloc(sb->scratch, n);
    if (!p)
        return -1;
    sb->scratch = p;
    sb->scratch_len = n;
    return 0;
}

int64_t yf_sbuf_take_msgs(yf_sbuf *sb, int64_t n, size_t max_len, uint64_t *sum, uint64_t *bytes)
{
    if (n < 0 || max_len > REQ_MAX || !sum || !bytes) {
        errno = EINVAL;
        return -1;
    }
    if (scratch_fit(sb, max_len > 4 ? max_len : 4) != 0)
        return -1;
    int64_t k = 0;
    uint64_t s = *sum, b = *bytes;
    while (k < n && sb->size - sb->cursor >= 4) {
        const unsigned char *h;
        yf_sbuf_peek(sb, 4, (const void **)&h, sb->scratch);
        size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (len > max_len) {
            /* The messages before it are consumed and counted: returning
             * -1 now would lose their count. The next call reports it. */
            if (k > 0)
                break;
            errno = EMSGSIZE;
            return -1;
        }
        if (sb->size - sb->cursor - 4 < len)
            break;
        sb->cursor += 4;
        const unsigned char *m;
        yf_sbuf_peek(sb, len, (const void **)&m, sb->scratch);
        if (len)
            s += len + m[0] + m[len - 1];
        b += len;
        sb->cursor += len;
        k++;
    }
    *sum = s, *bytes = b;
    yf_sbuf_consume(sb);
    return k;
}

int64_t yf_sbuf_frames(yf_sbuf *sb, int64_t max, size_t max_len, const void **base, uint32_t *off,
                       uint32_t *len, size_t *span)
{
    if (max < 0 || max_len > UINT32_MAX || !base || !span || (max > 0 && (!off || !len))) {
        errno = EINVAL;
        return -1;
    }
    /* The previous batch is done with: its bytes go now, so the views the
     * caller gets below stay valid until the next consume. */
    yf_sbuf_consume(sb);
    *base = NULL;
    *span = 0;
    size_t region_end = 0;      /* absolute end of the chunk the batch lies in */
    size_t base_abs = 0;
    int64_t k = 0;
    while (k < max && sb->size - sb->cursor >= 4) {
        size_t abs = sb->head + sb->cursor;
        /* After the first message, the batch takes only what lies wholly in
         * its chunk: one contiguous region, offsets from one base. */
        if (k > 0 && abs + 4 > region_end)
            break;
        unsigned char hdr[4];
        const unsigned char *h;
        if (yf_sbuf_peek(sb, 4, (const void **)&h, hdr) < 0)
            return -1;
        size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
        if (n > max_len) {
            errno = EMSGSIZE;
            return k ? k : -1;
        }
        if (sb->size - sb->cursor - 4 < n)
            break;
        size_t pabs = abs + 4;
        if (k == 0) {
            if ((pabs & (sb->cs - 1)) + n <= sb->cs || n == 0) {
                base_abs = pabs;
                *base = n ? at(sb, pabs) : NULL;
                region_end = (pabs & ~(sb->cs - 1)) + sb->cs;
            } else {
                /* A payload across chunks is copied alone into scratch. */
                if (scratch_fit(sb, n) != 0)
                    return -1;
                copy_out(sb, pabs, sb->scratch, n);
                sb->st.copied += n;
                *base = sb->scratch;
                off[0] = 0;
                len[0] = (uint32_t)n;
                *span = n;
                sb->cursor += 4 + n;
                return 1;
            }
        } else if (pabs + n > region_end) {
            break;
        }
        off[k] = (uint32_t)(pabs - base_abs);
        len[k] = (uint32_t)n;
        *span = pabs + n - base_abs;
        sb->cursor += 4 + n;
        k++;
    }
    return k;
}
