/* dns.c - name lookups (getaddrinfo, gethostbyname, gethostbyname_r) from a
 * loop's coroutine run on a small pool of worker threads, so the loop keeps
 * running while libc's resolver blocks. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include "hooki.h"

/* ---- name lookups on worker threads ------------------------------------------------ */

/* A lookup the coroutine hands to a worker thread; it lives on the
 * coroutine's stack, which stays put while the coroutine waits on `efd`. */
struct job {
    struct job *next;
    int id;
    const char *node, *service;
    const struct addrinfo *hints;
    struct addrinfo **res;
    struct hostent *he;
    char *buf;
    size_t buflen;
    struct hostent **result;
    int *h_err;
    int rc, err;
    int efd;
};

#define MAX_WORKERS 8

static pthread_mutex_t jq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jq_cv = PTHREAD_COND_INITIALIZER;
static struct job *jq_head, *jq_tail;
static int workers, idle_workers;

static void run_job(struct job *j)
{
    errno = 0;
    if (j->id == H_getaddrinfo)
        j->rc = REAL(getaddrinfo)(j->node, j->service, j->hints, j->res);
    else
        j->rc = REAL(gethostbyname_r)(j->node, j->he, j->buf, j->buflen, j->result, j->h_err);
    j->err = errno;
}

static void *worker(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&jq_mu);
    for (;;) {
        while (!jq_head) {
            idle_workers++;
            pthread_cond_wait(&jq_cv, &jq_mu);
            idle_workers--;
        }
        struct job *j = jq_head;
        jq_head = j->next;
        if (!jq_head)
            jq_tail = NULL;
        pthread_mutex_unlock(&jq_mu);
        run_job(j);
        /* The coroutine may run (and its stack frame end) as soon as the
         * eventfd is written: read nothing from j afterwards. */
        eventfd_write(j->efd, 1);
        pthread_mutex_lock(&jq_mu);
    }
    return NULL;
}

/* Runs j on a worker and waits for it in the loop; runs it here (blocking
 * the thread, as libc would) when no worker or eventfd can be had. */
static void offload(struct job *j)
{
    j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->efd < 0) {
        run_job(j);
        return;
    }
    pthread_mutex_lock(&jq_mu);
    if (idle_workers == 0 && workers < MAX_WORKERS) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, worker, NULL) == 0)
            workers++;
        pthread_attr_destroy(&at);
    }
    if (workers == 0) {
        pthread_mutex_unlock(&jq_mu);
        CALL_OR_SYS(close, (j->efd), SYS_close, j->efd);
        run_job(j);
        return;
    }
    j->next = NULL;
    if (jq_tail)
        jq_tail->next = j;
    else
        jq_head = j;
    jq_tail = j;
    pthread_cond_signal(&jq_cv);
    pthread_mutex_unlock(&jq_mu);
    eventfd_t v;
    while (eventfd_read(j->efd, &v) != 0)
        yf_wait_fd(j->efd, YF_READ, -1);
    CALL_OR_SYS(close, (j->efd), SYS_close, j->efd);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    COUNT(getaddrinfo);
    if (!REAL(getaddrinfo))
        return EAI_SYSTEM;
    if (!yfh_in_loop())
        return REAL(getaddrinfo)(node, service, hints, res);
    int saved = errno;
    struct job j = {.id = H_getaddrinfo, .node = node, .service = service, .hints = hints, .res = res};
    offload(&j);
    /* getaddrinfo reports through its return value; errno matters only
     * for EAI_SYSTEM, and is otherwise the caller's, as before the call. */
    errno = j.rc == EAI_SYSTEM ? j.err : saved;
    return j.rc;
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop)
{
    COUNT(gethostbyname_r);
    if (!REAL(gethostbyname_r))
        return ENOSYS;
    if (!yfh_in_loop())
        return REAL(gethostbyname_r)(name, ret, buf, buflen, result, h_errnop);
    int saved = errno;
    struct job j = {.id = H_gethostbyname_r, .node = name, .he = ret, .buf = buf, .buflen = buflen,
                    .result = result, .h_err = h_errnop};
    offload(&j);
    errno = j.rc != 0 ? j.err : saved;
    return j.rc;
}

/* gethostbyname's result lives in static storage that the next call
 * overwrites; one such storage per thread, as glibc's is per process. */
static __thread struct hostent ghbn_ent;
static __thread char ghbn_buf[4096];

struct hostent *gethostbyname(const char *name)
{
    COUNT(gethostbyname);
    if (!yfh_in_loop())
        return REAL(gethostbyname) ? REAL(gethostbyname)(name) : NULL;
    int saved = errno;
    struct hostent *res = NULL;
    int herr = 0;
    struct job j = {.id = H_gethostbyname_r, .node = name, .he = &ghbn_ent, .buf = ghbn_buf,
                    .buflen = sizeof ghbn_buf, .result = &res, .h_err = &herr};
    if (!REAL(gethostbyname_r))
        return NULL;
    offload(&j);
    if (!res)
        h_errno = herr;
    errno = j.rc != 0 ? j.rc : saved;
    return res;
}
