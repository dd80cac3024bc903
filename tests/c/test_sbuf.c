/* test_sbuf.c - the socket buffer: file-like calls, zero-copy peek, reserve
 * and commit, the max_size limit, the memory policy (grows, then gives back),
 * readv/writev over a socketpair, length-prefixed messages, and a random
 * walk against a flat array with yf_sbuf_check after every step. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "yf.h"
#include "check.h"

static void valid(const yf_sbuf *sb)
{
    char msg[256];
    if (yf_sbuf_check(sb, msg, sizeof msg) != 0) {
        fprintf(stderr, "yf_sbuf_check: %s\n", msg);
        exit(1);
    }
}

static yf_sbuf_stats stats(const yf_sbuf *sb)
{
    yf_sbuf_stats st;
    yf_sbuf_stats_get(sb, &st);
    return st;
}

static void test_new(void)
{
    CHECK_NULL(yf_sbuf_new(32, 0), EINVAL);
    CHECK_NULL(yf_sbuf_new(100, 0), EINVAL);
    CHECK_NULL(yf_sbuf_new((size_t)2 << 20, 0), EINVAL);
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    CHECK(sb && yf_sbuf_size(sb) == 0 && yf_sbuf_tell(sb) == 0);
    valid(sb);
    yf_sbuf_free(sb);
    yf_sbuf_free(NULL);
}

static void test_file_like(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    char in[300], out[300];
    for (int i = 0; i < 300; i++)
        in[i] = (char)i;
    CHECK(yf_sbuf_write(sb, in, 300) == 300);
    valid(sb);
    CHECK(yf_sbuf_size(sb) == 300 && stats(sb).chunks == 5);
    CHECK(yf_sbuf_seek(sb, 100, YF_SEEK_SET) == 100);
    CHECK(yf_sbuf_read(sb, out, 50) == 50 && memcmp(out, in + 100, 50) == 0);
    CHECK(yf_sbuf_tell(sb) == 150);
    CHECK(yf_sbuf_seek(sb, -10, YF_SEEK_CUR) == 140);
    CHECK(yf_sbuf_seek(sb, -1, YF_SEEK_END) == 299);
    CHECK(yf_sbuf_read(sb, out, 10) == 1 && out[0] == in[299]);
    CHECK(yf_sbuf_read(sb, out, 10) == 0);
    CHECK_ERR(yf_sbuf_seek(sb, -1, YF_SEEK_SET), EINVAL);
    CHECK_ERR(yf_sbuf_seek(sb, 1, YF_SEEK_END), EINVAL);
    CHECK_ERR(yf_sbuf_seek(sb, INT64_MAX, YF_SEEK_CUR), EINVAL);
    CHECK_ERR(yf_sbuf_seek(sb, 0, 7), EINVAL);
    CHECK(yf_sbuf_tell(sb) == 300);
    /* Truncation pulls the cursor back and keeps the rest. */
    CHECK(yf_sbuf_truncate(sb, 200) == 0 && yf_sbuf_tell(sb) == 200 && yf_sbuf_size(sb) == 200);
    CHECK_ERR(yf_sbuf_truncate(sb, 201), EINVAL);
    valid(sb);
    /* Consume drops what lies before the cursor; positions restart at 0. */
    CHECK(yf_sbuf_seek(sb, 130, YF_SEEK_SET) == 130);
    CHECK(yf_sbuf_consume(sb) == 130 && yf_sbuf_tell(sb) == 0 && yf_sbuf_size(sb) == 70);
    valid(sb);
    CHECK(yf_sbuf_read(sb, out, 70) == 70 && memcmp(out, in + 130, 70) == 0);
    yf_sbuf_stats st = stats(sb);
    CHECK(st.bytes_in == 300 && st.bytes_out == 130 && st.copied == 300 + 50 + 1 + 70);
    yf_sbuf_free(sb);
}

static void test_peek(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    char in[128], scratch[128];
    for (int i = 0; i < 128; i++)
        in[i] = (char)(i * 7);
    CHECK(yf_sbuf_write(sb, in, 128) == 128);
    uint64_t copied = stats(sb).copied;
    const void *p;
    CHECK(yf_sbuf_peek(sb, 64, &p, NULL) == 0 && memcmp(p, in, 64) == 0);
    CHECK(stats(sb).copied == copied);
    CHECK(yf_sbuf_seek(sb, 60, YF_SEEK_SET) == 60);
    CHECK_ERR(yf_sbuf_peek(sb, 8, &p, NULL), EINVAL);
    CHECK(yf_sbuf_peek(sb, 8, &p, scratch) == 8 && p == scratch && memcmp(p, in + 60, 8) == 0);
    CHECK(stats(sb).copied == copied + 8 && yf_sbuf_tell(sb) == 60);
    CHECK_ERR(yf_sbuf_peek(sb, 69, &p, scratch), ERANGE);
    yf_iovec iov[4];
    CHECK(yf_sbuf_peekv(sb, iov, 4, SIZE_MAX) == 2);
    CHECK(iov[0].len == 4 && iov[1].len == 64 && memcmp(iov[1].base, in + 64, 64) == 0);
    CHECK(yf_sbuf_peekv(sb, iov, 1, 2) == 1 && iov[0].len == 2);
    CHECK_ERR(yf_sbuf_peekv(sb, iov, -1, 2), EINVAL);
    yf_sbuf_free(sb);
}

static void test_reserve_commit(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    yf_iovec iov[8];
    CHECK(yf_sbuf_write(sb, "abc", 3) == 3);
    CHECK_ERR(yf_sbuf_reserve(sb, 200, iov, 3), EINVAL);
    int k = yf_sbuf_reserve(sb, 200, iov, 8);
    CHECK(k == 4 && iov[0].len == 61 && iov[1].len == 64 && iov[3].len == 200 - 61 - 128);
    valid(sb);
    for (int i = 0; i < k; i++)
        memset(iov[i].base, 'x', iov[i].len);
    uint64_t copied = stats(sb).copied;
    CHECK_ERR(yf_sbuf_commit(sb, 201), EINVAL);
    CHECK(yf_sbuf_commit(sb, 100) == 0 && yf_sbuf_size(sb) == 103);
    CHECK(stats(sb).copied == copied && stats(sb).bytes_in == 103);
    CHECK_ERR(yf_sbuf_commit(sb, 1), EINVAL);
    /* A write cancels an outstanding reservation. */
    CHECK(yf_sbuf_reserve(sb, 10, iov, 8) == 1);
    CHECK(yf_sbuf_write(sb, "z", 1) == 1);
    CHECK_ERR(yf_sbuf_commit(sb, 1), EINVAL);
    valid(sb);
    char out[104];
    CHECK(yf_sbuf_read(sb, out, 104) == 104 && memcmp(out, "abcx", 4) == 0 && out[102] == 'x' && out[103] == 'z');
    yf_sbuf_free(sb);
}

static void test_max_size(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 100);
    char in[100], out[100];
    memset(in, 'q', sizeof in);
    CHECK(yf_sbuf_write(sb, in, 90) == 90);
    CHECK_ERR(yf_sbuf_write(sb, in, 11), ENOBUFS);
    yf_iovec iov[4];
    CHECK_ERR(yf_sbuf_reserve(sb, 11, iov, 4), ENOBUFS);
    CHECK_ERR(yf_sbuf_write(sb, in, SIZE_MAX), ENOBUFS);
    valid(sb);
    CHECK(yf_sbuf_size(sb) == 90 && yf_sbuf_read(sb, out, 100) == 90 && memcmp(out, in, 90) == 0);
    CHECK(yf_sbuf_write(sb, in, 10) == 10);
    yf_sbuf_free(sb);
    sb = yf_sbuf_new(64, 0);
    CHECK_ERR(yf_sbuf_write(sb, in, SIZE_MAX), ENOMEM);
    CHECK_ERR(yf_sbuf_reserve(sb, SIZE_MAX / 2, iov, 4), ENOMEM);
    CHECK(yf_sbuf_size(sb) == 0);
    valid(sb);
    yf_sbuf_free(sb);
}

/* 200 writes of 500 bytes, each read back and consumed. */
static void steady(yf_sbuf *sb, const char *block, char *out)
{
    for (int i = 0; i < 200; i++) {
        CHECK(yf_sbuf_write(sb, block, 500) == 500);
        CHECK(yf_sbuf_read(sb, out, 500) == 500);
        yf_sbuf_consume(sb);
        valid(sb);
    }
}

/* Steady small traffic, a burst, steady again: capacity grows for the burst
 * and falls back to the steady level within two policy windows. */
static void test_policy(void)
{
    yf_sbuf *sb = yf_sbuf_new(1024, 0);
    static char block[1 << 20];
    char out[512];
    steady(sb, block, out);
    yf_sbuf_stats before = stats(sb);
    CHECK(before.chunks <= 2);
    CHECK(yf_sbuf_write(sb, block, sizeof block) == (int64_t)sizeof block);
    CHECK(stats(sb).capacity >= sizeof block);
    while (yf_sbuf_size(sb) > 0) {
        CHECK(yf_sbuf_read(sb, out, 512) > 0);
        yf_sbuf_consume(sb);
    }
    steady(sb, block, out);
    yf_sbuf_stats after = stats(sb);
    CHECK(after.chunks <= before.chunks && after.high_water >= sizeof block);
    /* Steady traffic reuses its spares: no chunk churn between the windows. */
    uint64_t allocs = after.chunk_allocs;
    for (int i = 0; i < 200; i++) {
        CHECK(yf_sbuf_write(sb, block, 500) == 500);
        CHECK(yf_sbuf_read(sb, out, 500) == 500);
        yf_sbuf_consume(sb);
    }
    CHECK(stats(sb).chunk_allocs == allocs);
    yf_sbuf_free(sb);
}

static void test_sockets(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    yf_sbuf *in = yf_sbuf_new(64, 0), *out = yf_sbuf_new(128, 0);
    static char data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 13 + 1);
    CHECK(yf_sbuf_write(out, data, sizeof data) == (int64_t)sizeof data);
    size_t sent = 0;
    while (sent < sizeof data) {
        int64_t k = yf_sbuf_send(out, sv[0]);
        CHECK(k > 0);
        sent += (size_t)k;
        valid(out);
    }
    CHECK(yf_sbuf_size(out) == 0 && yf_sbuf_send(out, sv[0]) == 0);
    /* Nothing after the cursor: the send still drops what lies before it, as
     * when something is sent (found by tests/fuzz/fuzz_sbuf.py). */
    CHECK(yf_sbuf_write(out, data, 19) == 19);
    CHECK(yf_sbuf_seek(out, 0, YF_SEEK_END) == 19);
    CHECK(yf_sbuf_send(out, sv[0]) == 0);
    CHECK(yf_sbuf_size(out) == 0 && yf_sbuf_tell(out) == 0);
    valid(out);
    size_t got = 0;
    while (got < sizeof data) {
        int64_t k = yf_sbuf_recv(in, sv[1], 100000);
        CHECK(k > 0);
        got += (size_t)k;
        valid(in);
    }
    CHECK(stats(in).copied == 0);
    static char back[5000];
    CHECK(yf_sbuf_read(in, back, sizeof back) == (int64_t)sizeof back && memcmp(back, data, sizeof data) == 0);
    CHECK_ERR(yf_sbuf_recv(in, sv[1], 0), EINVAL);
    CHECK_ERR(yf_sbuf_recv(in, -1, 10), EBADF);
    valid(in);
    close(sv[0]);
    CHECK(yf_sbuf_recv(in, sv[1], 10) == 0);
    close(sv[1]);
    yf_sbuf_free(in);
    yf_sbuf_free(out);
}

static void put_msg(yf_sbuf *sb, const char *payload, uint32_t len)
{
    unsigned char h[4] = {len & 255, (len >> 8) & 255, (len >> 16) & 255, len >> 24};
    CHECK(yf_sbuf_write(sb, h, 4) == 4);
    CHECK(yf_sbuf_write(sb, payload, len) == len);
}

static void test_messages(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    char p[100];
    for (int i = 0; i < 100; i++)
        p[i] = (char)(i + 1);
    put_msg(sb, p, 10);
    put_msg(sb, p, 100);
    put_msg(sb, p, 0);
    CHECK(yf_sbuf_write(sb, "\x05\0\0\0" "ab", 6) == 6); /* incomplete */
    uint64_t sum = 0, bytes = 0;
    CHECK(yf_sbuf_take_msgs(sb, 1, 100, &sum, &bytes) == 1 && sum == 10 + 1 + 10 && bytes == 10);
    CHECK(yf_sbuf_take_msgs(sb, 10, 100, &sum, &bytes) == 2 && sum == 21 + 100 + 1 + 100 && bytes == 110);
    CHECK(yf_sbuf_size(sb) == 6 && yf_sbuf_tell(sb) == 0);
    CHECK(yf_sbuf_write(sb, "cde", 3) == 3);
    CHECK(yf_sbuf_take_msgs(sb, 10, 100, &sum, &bytes) == 1 && bytes == 115);
    put_msg(sb, p, 50);
    CHECK_ERR(yf_sbuf_take_msgs(sb, 10, 49, &sum, &bytes), EMSGSIZE);
    CHECK(yf_sbuf_size(sb) == 54 && yf_sbuf_tell(sb) == 0);
    CHECK_ERR(yf_sbuf_take_msgs(sb, -1, 49, &sum, &bytes), EINVAL);
    valid(sb);
    yf_sbuf_free(sb);
}

static void test_layout(void)
{
    yf_sbuf *sb = yf_sbuf_new(64, 0);
    char in[200] = {0};
    CHECK(yf_sbuf_write(sb, in, 200) == 200);
    CHECK(yf_sbuf_seek(sb, 70, YF_SEEK_SET) == 70);
    yf_sbuf_consume(sb);
    uint64_t info[6], addr[8];
    CHECK(yf_sbuf_layout(sb, info, addr, 8) == 4);
    CHECK(info[0] == 8 && info[1] == 1 && info[2] == 6 && info[3] == 64 && info[4] == 0 && info[5] == 4);
    yf_iovec iov[4];
    CHECK(yf_sbuf_peekv(sb, iov, 4, SIZE_MAX) == 3 && (uint64_t)(uintptr_t)iov[0].base == addr[0] + 6);
    yf_sbuf_free(sb);
}

/* A random walk against a flat array model. */
static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(uint64_t n)
{
    return xorshift64(&rng) % n;
}

static void test_random(void)
{
    enum { CAP = 1 << 16 };
    static unsigned char model[CAP], tmp[CAP], scratch[CAP];
    size_t msize = 0, mcur = 0;
    yf_sbuf *sb = yf_sbuf_new(64, CAP);
    for (int step = 0; step < 200000; step++) {
        size_t n = rnd(4) == 0 ? rnd(2000) : rnd(150);
        switch (rnd(8)) {
        case 0:
            for (size_t i = 0; i < n; i++)
                tmp[i] = (unsigned char)rnd(256);
            if (msize + n > CAP) {
                CHECK_ERR(yf_sbuf_write(sb, tmp, n), ENOBUFS);
            } else {
                CHECK(yf_sbuf_write(sb, tmp, n) == (int64_t)n);
                memcpy(model + msize, tmp, n);
                msize += n;
            }
            break;
        case 1: {
            size_t k = n < msize - mcur ? n : msize - mcur;
            CHECK(yf_sbuf_read(sb, tmp, n) == (int64_t)k && memcmp(tmp, model + mcur, k) == 0);
            mcur += k;
            break;
        }
        case 2: {
            const void *p;
            if (n > msize - mcur) {
                CHECK_ERR(yf_sbuf_peek(sb, n, &p, scratch), ERANGE);
            } else {
                CHECK(yf_sbuf_peek(sb, n, &p, scratch) >= 0 && (n == 0 || memcmp(p, model + mcur, n) == 0));
            }
            break;
        }
        case 3: {
            size_t pos = rnd(msize + 2);
            if (pos > msize) {
                CHECK_ERR(yf_sbuf_seek(sb, (int64_t)pos, YF_SEEK_SET), EINVAL);
            } else {
                CHECK(yf_sbuf_seek(sb, (int64_t)pos - (int64_t)msize, YF_SEEK_END) == (int64_t)pos);
                mcur = pos;
            }
            break;
        }
        case 4: {
            size_t dropped = yf_sbuf_consume(sb);
            CHECK(dropped == mcur);
            memmove(model, model + mcur, msize - mcur);
            msize -= mcur;
            mcur = 0;
            break;
        }
        case 5:
            if (rnd(4) == 0) {
                size_t t = rnd(msize + 1);
                CHECK(yf_sbuf_truncate(sb, t) == 0);
                msize = t;
                if (mcur > t)
                    mcur = t;
            }
            break;
        case 6: {
            yf_iovec iov[64];
            if (msize + n > CAP) {
                CHECK_ERR(yf_sbuf_reserve(sb, n, iov, 64), ENOBUFS);
                break;
            }
            int k = yf_sbuf_reserve(sb, n, iov, 64);
            CHECK(k >= 0);
            size_t c = rnd(n + 1), done = 0;
            for (int i = 0; i < k; i++)
                for (size_t j = 0; j < iov[i].len; j++, done++)
                    ((unsigned char *)iov[i].base)[j] = model[msize + done] = (unsigned char)rnd(256);
            CHECK(done == n && yf_sbuf_commit(sb, c) == 0);
            msize += c;
            break;
        }
        case 7: {
            yf_iovec iov[8];
            int k = yf_sbuf_peekv(sb, iov, 8, n);
            size_t at = mcur;
            for (int i = 0; i < k; i++) {
                CHECK(memcmp(iov[i].base, model + at, iov[i].len) == 0);
                at += iov[i].len;
            }
            break;
        }
        }
        CHECK(yf_sbuf_size(sb) == msize && yf_sbuf_tell(sb) == (int64_t)mcur);
        valid(sb);
    }
    yf_sbuf_free(sb);
}

static void on_alarm(int sig)
{
    (void)sig;
}

/* A signal during a recv that would block comes back as EINTR (Python runs
 * its handlers and retries), not a retry inside C that ignores Ctrl-C. */
static void test_recv_interrupted(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_alarm;           /* no SA_RESTART, as Python installs them */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, &old) == 0);
    struct itimerval it = {{0, 0}, {0, 50000}};
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    yf_sbuf *sb = yf_sbuf_new(4096, 0);
    CHECK_ERR(yf_sbuf_recv(sb, sv[0], 100), EINTR);
    valid(sb);
    CHECK(yf_sbuf_size(sb) == 0);
    CHECK(write(sv[1], "hi", 2) == 2);
    CHECK(yf_sbuf_recv(sb, sv[0], 100) == 2);
    valid(sb);
    CHECK(sigaction(SIGALRM, &old, NULL) == 0);
    yf_sbuf_free(sb);
    close(sv[0]);
    close(sv[1]);
}

/* send to a closed peer with SIGPIPE at its default action: EPIPE, alive,
 * and no SIGPIPE left pending; for a socket and for a pipe. */
static void test_send_no_sigpipe(void)
{
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    int sv[2], pp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(pipe(pp) == 0);
    close(sv[1]);
    close(pp[0]);
    int fds[2] = {sv[0], pp[1]};
    for (int i = 0; i < 2; i++) {
        yf_sbuf *sb = yf_sbuf_new(64, 0);
        CHECK(yf_sbuf_write(sb, "hello", 5) == 5);
        CHECK_ERR(yf_sbuf_send(sb, fds[i]), EPIPE);
        CHECK(yf_sbuf_size(sb) == 5);       /* nothing was lost */
        sigset_t pending;
        CHECK(sigpending(&pending) == 0 && !sigismember(&pending, SIGPIPE));
        valid(sb);
        yf_sbuf_free(sb);
    }
    close(sv[0]);
    close(pp[1]);
}

/* A reserve that runs out of memory part-way gives back every chunk it
 * took (and the larger ring); what the buffer held is intact. Runs in a
 * child under an address-space limit (not under ASan, whose shadow memory
 * needs terabytes of address space). */
#if !defined(__SANITIZE_ADDRESS__)
static void reserve_enomem_gives_back(void)
{
    yf_sbuf *sb = yf_sbuf_new(65536, 0);
    CHECK(yf_sbuf_write(sb, "kept", 4) == 4);
    yf_sbuf_stats a, b;
    yf_sbuf_stats_get(sb, &a);
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_AS, &rl) == 0);
    /* Room for some 64 KiB chunks, far from the 1 GiB asked for. */
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    CHECK(f && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    rl.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)64 << 20);
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    yf_iovec iov[20000];
    CHECK_ERR(yf_sbuf_reserve(sb, (size_t)1 << 30, iov, 20000), ENOMEM);
    yf_sbuf_stats_get(sb, &b);
    valid(sb);
    CHECK(b.chunk_allocs > a.chunk_allocs);       /* it did get some chunks first */
    CHECK(b.chunks == a.chunks && b.capacity == a.capacity && b.high_water == a.high_water);
    CHECK(b.chunk_allocs - b.chunk_frees == a.chunk_allocs - a.chunk_frees);
    char out[8];
    CHECK(yf_sbuf_read(sb, out, 8) == 4 && memcmp(out, "kept", 4) == 0);
    CHECK(yf_sbuf_write(sb, "more", 4) == 4);
    valid(sb);
    yf_sbuf_free(sb);
}
#endif

static void test_reserve_enomem_gives_back(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    if (skipped_under_qemu("test_reserve_enomem_gives_back",
                           "qemu-user accepts setrlimit(RLIMIT_AS) and applies nothing (the limit would bind "
                           "the emulator itself), so the 1 GiB reserve never runs out"))
        return;
    in_child(reserve_enomem_gives_back);
#endif
}

int main(void)
{
    test_new();
    test_file_like();
    test_peek();
    test_reserve_commit();
    test_max_size();
    test_policy();
    test_sockets();
    test_messages();
    test_layout();
    test_random();
    test_recv_interrupted();
    test_send_no_sigpipe();
    test_reserve_enomem_gives_back();
    puts("sbuf ok");
    return 0;
}
