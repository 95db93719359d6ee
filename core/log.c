#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    char tag[64];
    enum up_log_level max;
    int journal;
} up_log_cfg = {"up", UP_LOG_INFO, 0};

static const char *level_name(enum up_log_level level)
{
    switch (level) {
    case UP_LOG_ERR:
        return "error";
    case UP_LOG_WARN:
        return "warn";
    case UP_LOG_INFO:
        return "info";
    case UP_LOG_DEBUG:
        return "debug";
    }
    return "?";
}

void up_log_init(const char *tag)
{
    up_log_set_tag(tag);
    const char *lvl = getenv("UP_LOG");
    if (lvl != NULL) {
        if (strcmp(lvl, "debug") == 0) {
            up_log_cfg.max = UP_LOG_DEBUG;
        } else if (strcmp(lvl, "warn") == 0) {
            up_log_cfg.max = UP_LOG_WARN;
        } else if (strcmp(lvl, "err") == 0 || strcmp(lvl, "error") == 0) {
            up_log_cfg.max = UP_LOG_ERR;
        }
    }
    up_log_cfg.journal = getenv("JOURNAL_STREAM") != NULL;
}

void up_log_set_tag(const char *tag)
{
    snprintf(up_log_cfg.tag, sizeof(up_log_cfg.tag), "%s", tag);
}

int up_log_enabled(enum up_log_level level)
{
    return level <= up_log_cfg.max;
}

void up_vlog(enum up_log_level level, const char *fmt, va_list ap)
{
    if (!up_log_enabled(level)) {
        return;
    }
    char line[2048];
    int n;
    if (up_log_cfg.journal) {
        n = snprintf(line, sizeof(line), "<%d>%s: ", (int)level, up_log_cfg.tag);
    } else {
        n = snprintf(line, sizeof(line), "%s: %s: ", up_log_cfg.tag, level_name(level));
    }
    if (n < 0) {
        return;
    }
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0) {
        return;
    }
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    /* One write per line: stderr is shared by the master and all workers. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void up_log(enum up_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    up_vlog(level, fmt, ap);
    va_end(ap);
}
