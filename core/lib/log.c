#include "log.h"

#include "sink.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* The master's log buffer. 256 KiB is four times a pipe's default 64 KiB:
 * a reader that stalls for a moment (a log shipper restarting, journald
 * rotating) loses nothing, as it holds some 2000 lines, seconds of
 * UP_LOG=debug under load. And it is a fixed bound on the master's memory
 * (DESIGN.md invariant 5) whatever the reader does: past it, lines are
 * dropped and counted. */
#define UP_LOG_BUF_SIZE (256 * 1024)

/* What the line that stands for dropped lines says after their count. */
#define NOTICE_TEXT " log lines dropped: stderr was not writable"

static struct {
    char tag[64];
    enum up_log_level max;
    int journal;
} up_log_cfg = {"up", UP_LOG_INFO, 0};

/* The non-blocking mode's buffer: one per process, like fd 2 itself. */
static bool up_log_async_on;
static struct up_sink up_log_q;

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

uint64_t up_log_lines_dropped(void)
{
    return up_log_q.dropped;
}

static size_t format_prefix(char *line, size_t cap, enum up_log_level level)
{
    int n;
    if (up_log_cfg.journal) {
        n = snprintf(line, cap, "<%d>%s: ", (int)level, up_log_cfg.tag);
    } else {
        n = snprintf(line, cap, "%s: %s: ", up_log_cfg.tag, level_name(level));
    }
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* The start of the line that stands for dropped lines. */
static size_t notice_prefix(char *line, size_t cap)
{
    return format_prefix(line, cap, UP_LOG_WARN);
}

int up_log_async(struct up_loop *loop)
{
    if (up_log_async_on) {
        return 0;
    }
    int r = up_sink_init(&up_log_q, STDERR_FILENO, UP_LOG_BUF_SIZE, 0, NOTICE_TEXT, notice_prefix);
    if (r < 0) {
        return r;
    }
    up_sink_start(&up_log_q, loop);
    up_log_async_on = true;
    return 0;
}

void up_log_stderr_changed(void)
{
    if (up_log_async_on) {
        up_sink_retarget(&up_log_q, STDERR_FILENO);
    }
}

void up_log_async_end(void)
{
    if (up_log_async_on) {
        up_sink_end(&up_log_q);
    }
}

/* ---- lines ---- */

/* One line of n bytes, without its newline. */
static void put_line(const char *line, size_t n)
{
    if (!up_log_async_on) {
        /* One write per line: in a worker, stderr is a pipe shared by the
         * worker and whatever the app starts. */
        struct iovec iov[2] = {{.iov_base = (void *)line, .iov_len = n},
                               {.iov_base = "\n", .iov_len = 1}};
        ssize_t w = writev(STDERR_FILENO, iov, 2);
        (void)w;
        return;
    }
    up_sink_put(&up_log_q, line, n);
}

void up_vlog(enum up_log_level level, const char *fmt, va_list ap)
{
    if (!up_log_enabled(level)) {
        return;
    }
    char line[UP_LOG_LINE_MAX];
    size_t n = format_prefix(line, sizeof(line), level);
    /* One byte kept for the newline put_line() adds. */
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m < 0) {
        return;
    }
    size_t len = n + (size_t)m;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    put_line(line, len);
}

void up_log(enum up_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    up_vlog(level, fmt, ap);
    va_end(ap);
}

void up_log_relay(struct up_log_relay *r, const char *data, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl != NULL ? (size_t)(nl - data) + 1 : n;
        if (r->len == 0 && nl != NULL && take <= sizeof(r->part)) {
            put_line(data, take - 1); /* a whole line in the chunk: no copy */
        } else {
            if (take > sizeof(r->part) - r->len) {
                take = sizeof(r->part) - r->len;
            }
            memcpy(r->part + r->len, data, take);
            r->len += take;
            if (r->part[r->len - 1] == '\n') {
                put_line(r->part, r->len - 1);
                r->len = 0;
            } else if (r->len == sizeof(r->part)) {
                put_line(r->part, r->len); /* too long: passed on in pieces */
                r->len = 0;
            }
        }
        data += take;
        n -= take;
    }
}

void up_log_relay_end(struct up_log_relay *r)
{
    if (r->len > 0) {
        put_line(r->part, r->len);
        r->len = 0;
    }
}
