/* log.c - the failure log of the "log-late" and "log-early" variants
 * (YF_HOOK_LOG; see yfh_fail in hooki.h): a stand-in for the "external log
 * library" of the diary's 2016/04/26 entry. Empty in the shipped build. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "hooki.h"

#ifdef YF_HOOK_LOG

static int log_fd = -1;
static const char *log_level = "1";

/* Like many loggers it parses its level with strtol, whose documented usage
 * sets errno to 0 first, and it writes a line; on success neither touches
 * errno again, so errno leaves it as 0. */
void yfh_log(int id, int err)
{
    errno = 0;
    long level = strtol(log_level, NULL, 10);
    if (errno != 0 || level < 1 || log_fd < 0)
        return;
    char line[96];
    int n = snprintf(line, sizeof line, "yfhook: %s failed: errno %d\n", yfh_names[id], err);
    if (n > 0 && REAL(write))
        (void)REAL(write)(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* $YF_HOOK_LOG_LEVEL and $YF_HOOK_LOG (the file, default /dev/null). */
void yfh_log_init(void)
{
    const char *level = getenv("YF_HOOK_LOG_LEVEL");
    if (level && *level)
        log_level = level;
    const char *path = getenv("YF_HOOK_LOG");
    log_fd = (int)syscall(SYS_openat, AT_FDCWD, path && *path ? path : "/dev/null",
                          O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

#endif
