/* hooki.h - internals of the hook library: hook ids, real functions, the fd table. */
#ifndef YF_HOOKI_H
#define YF_HOOKI_H

#include <stdint.h>

#include "yfhook.h"

/* Every interposed symbol, in one list: the ids, the names given to dlsym
 * and the call counters are generated from it, so they cannot disagree. */
#define YF_HOOKS(X)                                                                \
    X(socket) X(connect) X(accept) X(accept4) X(read) X(write) X(recv) X(send)     \
    X(recvfrom) X(sendto) X(recvmsg) X(sendmsg) X(readv) X(writev) X(close)        \
    X(shutdown) X(fcntl) X(fcntl64) X(ioctl) X(setsockopt) X(getsockopt) X(poll)   \
    X(select) X(sleep) X(usleep) X(nanosleep) X(getaddrinfo) X(gethostbyname)      \
    X(gethostbyname_r)

enum {
#define YF_HOOK_ID(n) H_##n,
    YF_HOOKS(YF_HOOK_ID)
#undef YF_HOOK_ID
    H_N
};

/* What the hooks know about one fd number. Zeroed when the number is
 * (re)issued by socket/accept or released by close. */
struct yfh_fd {
    uint8_t kind;        /* K_UNKNOWN, K_PASS (regular file, ...), K_COOP */
    uint8_t user_nb;     /* the caller's O_NONBLOCK wish (K_COOP: kernel flag is always set) */
    uint8_t sent;        /* a send since the last recv (forced-EAGAIN builds) */
    uint8_t pad;
    int32_t rcv_ms;      /* SO_RCVTIMEO in ms, 0: none */
    int32_t snd_ms;      /* SO_SNDTIMEO in ms, 0: none */
};

enum { K_UNKNOWN = 0, K_PASS = 1, K_COOP = 2 };

#endif
