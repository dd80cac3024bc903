/* msg_feeder.c - the other end of notebook 06's message stream: connects to
 * 127.0.0.1:PORT and writes N length-prefixed messages (4-byte little-endian
 * length, then the payload) of uniformly random size in [MIN, MAX], then
 * prints "messages payload_bytes checksum" (checksum = sum of len + first byte
 * + last byte, the consumers' fold) and exits.
 *
 * usage: msg_feeder PORT N SEED [MIN MAX]
 *
 * The whole stream is generated before connecting, so the consumer's clock,
 * which starts at accept, sees only the transfer: the feeder then does
 * nothing but write() in 256 KiB slices. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t state;

/* splitmix64: reproducible from SEED, fast enough to fill the stream. */
static uint64_t next(void)
{
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static long arg(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "msg_feeder: bad %s %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: msg_feeder PORT N SEED [MIN MAX]\n");
        return 2;
    }
    long port = arg(argv[1], "port"), n = arg(argv[2], "count");
    state = (uint64_t)arg(argv[3], "seed");
    long lo = argc == 6 ? arg(argv[4], "min") : 16, hi = argc == 6 ? arg(argv[5], "max") : 1024;
    if (port > 65535 || lo < 1 || hi < lo || hi > (1 << 24)) {
        fprintf(stderr, "msg_feeder: need PORT <= 65535 and 1 <= MIN <= MAX <= 16 MiB\n");
        return 2;
    }
    /* Payloads are slices of a random pool at random offsets. */
    enum { POOL = 1 << 16 };
    unsigned char *pool = malloc(POOL + (size_t)hi);
    size_t total = (size_t)n * (4 + (size_t)hi);
    unsigned char *stream = malloc(total ? total : 1);
    if (!pool || !stream) {
        perror("msg_feeder: malloc");
        return 1;
    }
    for (size_t i = 0; i < POOL + (size_t)hi; i++)
        pool[i] = (unsigned char)next();
    size_t at = 0;
    uint64_t bytes = 0, sum = 0;
    for (long i = 0; i < n; i++) {
        uint32_t len = (uint32_t)(lo + (long)(next() % (uint64_t)(hi - lo + 1)));
        const unsigned char *p = pool + next() % POOL;
        stream[at] = len & 255, stream[at + 1] = (len >> 8) & 255;
        stream[at + 2] = (len >> 16) & 255, stream[at + 3] = len >> 24;
        memcpy(stream + at + 4, p, len);
        at += 4 + len;
        bytes += len;
        sum += len + p[0] + p[len - 1];
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("msg_feeder: connect");
        return 1;
    }
    for (size_t off = 0; off < at;) {
        size_t k = at - off < (256 << 10) ? at - off : (256 << 10);
        ssize_t w = write(fd, stream + off, k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            perror("msg_feeder: write");
            return 1;
        }
        off += (size_t)w;
    }
    close(fd);
    printf("%ld %llu %llu\n", n, (unsigned long long)bytes, (unsigned long long)sum);
    return 0;
}
