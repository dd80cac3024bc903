/* sbuf_stream.c - the timed message-stream kernel of notebook 06: the socket
 * buffer's batch parser (yf_sbuf_take_msgs) fed by readv from a socket, in
 * one C call so that Python's per-call cost stays out of the figure. */
#include <errno.h>

#include "../yfi.h"
#include "lab.h"

double yf_bench_sbuf_stream(int64_t n, yf_sbuf *sb, int fd, size_t recv_max, size_t max_len, uint64_t *sum,
                            uint64_t *bytes)
{
    if (n < 0 || recv_max == 0) {
        errno = EINVAL;
        return -1;
    }
    uint64_t t0 = yfi_now_ns();
    int64_t done = 0;
    for (;;) {
        int64_t k = yf_sbuf_take_msgs(sb, n - done, max_len, sum, bytes);
        if (k < 0)
            return -1;
        done += k;
        if (done == n)
            break;
        int64_t got = yf_sbuf_recv(sb, fd, recv_max);
        if (got < 0)
            return -1;
        if (got == 0) {
            errno = ECONNRESET;
            return -1;
        }
    }
    return (double)(yfi_now_ns() - t0);
}
