/* loopdemo.c - coroutine bodies over the event loop that Python can start
 * (sleep, echo server, echo client, a timed fd wait, stop). Each returns a
 * non-negative result or -errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "../yfi.h"
#include "lab.h"

/* The client's and echo's per-message timeout: generous, because the peers
 * share two noisy cores with the test that drives them. */
#define DEMO_IO_TIMEOUT_MS 30000

intptr_t yf_demo_sleep(void *arg)
{
    uint64_t t0 = yfi_now_ns();
    if (yf_sleep_ms((int64_t)(intptr_t)arg) < 0)
        return -errno;
    return (intptr_t)(yfi_now_ns() - t0);
}

intptr_t yf_demo_echo(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    intptr_t total = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        /* Pass the EOF on, so the peer's reads end too. */
        if (r == 0)
            return shutdown(fd, SHUT_WR) < 0 ? -errno : total;
        if (r > 0) {
            if (yf_sendn(fd, buf, (size_t)r, DEMO_IO_TIMEOUT_MS) < 0)
                return -errno;
            total += r;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (yf_wait_fd(fd, YF_READ, -1) < 0)
                return -errno;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

/* The byte j of message i: differs between neighbouring messages and
 * positions, so a lost, repeated or reordered byte shows. */
static unsigned char pattern(uint64_t i, size_t j)
{
    return (unsigned char)(i * 131u + j * 7u + 1u);
}

intptr_t yf_demo_client(void *arg)
{
    uint64_t a = (uint64_t)(uintptr_t)arg;
    uint64_t field = (1ull << YF_DEMO_FD_BITS) - 1;
    int fd = (int)(a & field);
    uint64_t n = (a >> YF_DEMO_CLIENT_N_SHIFT) & ((1ull << (YF_DEMO_CLIENT_SIZE_SHIFT - YF_DEMO_CLIENT_N_SHIFT)) - 1);
    size_t size = (size_t)(a >> YF_DEMO_CLIENT_SIZE_SHIFT);
    if (size == 0 || size > YF_DEMO_MSG_MAX)
        return -EINVAL;
    char out[YF_DEMO_MSG_MAX], in[YF_DEMO_MSG_MAX];
    for (uint64_t i = 0; i < n; i++) {
        for (size_t j = 0; j < size; j++)
            out[j] = (char)pattern(i, j);
        if (yf_sendn(fd, out, size, DEMO_IO_TIMEOUT_MS) < 0 || yf_recvn(fd, in, size, DEMO_IO_TIMEOUT_MS) < 0)
            return -errno;
        if (memcmp(in, out, size) != 0)
            return -EBADMSG;
    }
    /* The server must now see EOF and send nothing more: one byte more
     * than it echoed would make this recvn succeed. */
    if (shutdown(fd, SHUT_WR) < 0)
        return -errno;
    if (yf_recvn(fd, in, 1, DEMO_IO_TIMEOUT_MS) >= 0 || errno != ECONNRESET)
        return -EBADMSG;
    return (intptr_t)n;
}

intptr_t yf_demo_wait(void *arg)
{
    uint64_t a = (uint64_t)(uintptr_t)arg;
    int fd = (int)(a & ((1ull << YF_DEMO_FD_BITS) - 1));
    unsigned events = (unsigned)(a >> YF_DEMO_WAIT_EVENTS_SHIFT) & ((1u << (YF_DEMO_WAIT_TIMEOUT_SHIFT - YF_DEMO_WAIT_EVENTS_SHIFT)) - 1);
    int64_t timeout_ms = (int64_t)(a >> YF_DEMO_WAIT_TIMEOUT_SHIFT) - 1;
    uint64_t t0 = yfi_now_ns();
    int r = yf_wait_fd(fd, events, timeout_ms);
    if (r < 0)
        return -errno;
    return (intptr_t)(((yfi_now_ns() - t0) << YF_DEMO_WAIT_EVENTS_BITS) | (unsigned)r);
}

intptr_t yf_demo_loop_stop(void *arg)
{
    if (yf_sleep_ms((int64_t)(intptr_t)arg) < 0)
        return -errno;
    yf_loop_stop(yf_loop_current());
    return 0;
}
