/* wait.c - the wait policy of the hooks: in the event loop from a loop's
 * coroutine, in poll (the thread blocks, as libc would) anywhere else. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <time.h>

#include "hooki.h"

int64_t yfh_left_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - yfh_now_ms();
    return left > 0 ? left : 0;
}

static int real_poll1(int fd, short events, int64_t timeout)
{
    struct pollfd p = {.fd = fd, .events = events};
    int t = timeout > INT32_MAX ? INT32_MAX : (int)timeout;
    int r = CALL_OR(poll, (&p, 1, t), yfh_raw_poll(&p, 1, t));
    if (r > 0 && (p.revents & POLLNVAL)) {
        errno = EBADF;
        return -1;
    }
    return r;
}

void yfh_pause_1ms(void)
{
    if (yfh_in_loop()) {
        yf_sleep_ms(1);
    } else {
        struct timespec ts = {0, 1000000};
        syscall(SYS_nanosleep, &ts, NULL);
    }
}

int yfh_wait_ready(int fd, unsigned ev, int64_t deadline)
{
    if (!yfh_in_loop())
        return real_poll1(fd, ev == YF_READ ? POLLIN : POLLOUT, yfh_left_ms(deadline));
    for (;;) {
        int w = yf_wait_fd(fd, ev, yfh_left_ms(deadline));
        if (w >= 0 || errno != EEXIST)
            return w;
        /* Another coroutine already waits on this fd in this direction and
         * the loop admits one waiter per fd and direction: the others check
         * again every millisecond until the first is done. */
        yf_sleep_ms(1);
        if (deadline >= 0 && yfh_now_ms() >= deadline)
            return 0;
    }
}
