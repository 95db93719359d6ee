#include "log.h"

#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* Retry period when the loop cannot wait for POLLOUT on stderr. */
#define UP_LOG_RETRY_MS 100

static struct {
    char tag[64];
    enum up_log_level max;
    int journal;
} up_log_cfg = {"up", UP_LOG_INFO, 0};

/* How fd 2 is written in the non-blocking mode (chosen by its type). */
enum sink {
    SINK_BLOCKING, /* write(2) on fd 2: the default mode, a regular file, /dev/null */
    SINK_PRIVATE,  /* write(2) on our own O_NONBLOCK description of the pipe or tty */
    SINK_SOCKET,   /* send(MSG_DONTWAIT | MSG_NOSIGNAL) on fd 2: journald's stream */
    SINK_NOWAIT,   /* pwritev2(RWF_NOWAIT) on fd 2: a pipe we could not reopen */
    SINK_FD2,      /* fd 2 itself set O_NONBLOCK: the last resort */
};

/* The non-blocking mode's state: one per process, like fd 2 itself. */
static struct {
    bool async;
    enum sink sink;
    int fd;               /* owned until exit when SINK_PRIVATE; else fd 2 */
    struct up_loop *loop; /* borrowed; NULL before up_log_async(), after _end() */
    struct up_op op;      /* POLLOUT on fd while data waits */
    struct up_timer retry;
    bool poll_failed; /* the loop could not poll fd: retry by timer */
    char *buf;        /* owned until exit: whole lines waiting in [off, len) */
    size_t off, len;
    uint64_t dropped;    /* since start */
    uint64_t unreported; /* dropped since the last notice */
    bool replaced;       /* stderr replaced while op waited on the old one */
    int stale_fd;        /* ... and its private fd, closed once op is done */
} up_log_q = {.fd = STDERR_FILENO, .stale_fd = -1};

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

/* ---- writing fd 2 without blocking ---- */

static ssize_t sink_write(const char *p, size_t n)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    switch (up_log_q.sink) {
    case SINK_SOCKET:
        return send(up_log_q.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    case SINK_NOWAIT:
        return pwritev2(up_log_q.fd, &iov, 1, -1, RWF_NOWAIT);
    case SINK_BLOCKING:
    case SINK_PRIVATE:
    case SINK_FD2:
        break;
    }
    return write(up_log_q.fd, p, n);
}

/* Pick how to write fd 2 without blocking and without changing its file
 * status flags, which belong to the open file description the shell or
 * systemd shares with us. */
static void choose_sink(void)
{
    struct stat st;
    up_log_q.fd = STDERR_FILENO;
    up_log_q.sink = SINK_BLOCKING;
    if (fstat(STDERR_FILENO, &st) < 0) {
        return; /* fd 2 closed: every write fails at once */
    }
    if (S_ISSOCK(st.st_mode)) {
        up_log_q.sink = SINK_SOCKET; /* the flag is per call: nothing shared changes */
        return;
    }
    if (!S_ISFIFO(st.st_mode) && !(S_ISCHR(st.st_mode) && isatty(STDERR_FILENO))) {
        return; /* a regular file or /dev/null: write(2) does not wait for a reader */
    }
    /* Opening /proc/self/fd/2 gives a pipe or a terminal a new open file
     * description of the same pipe or device, whose O_NONBLOCK is ours
     * alone (checked on Linux 6.18; a socket refuses it with ENXIO). */
    int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        up_log_q.fd = fd;
        up_log_q.sink = SINK_PRIVATE;
        return;
    }
    /* No /proc, or the pipe is another user's (the reopen checks the
     * inode's permissions): RWF_NOWAIT makes the one call non-blocking.
     * Where the kernel refuses it, flush() falls back to SINK_FD2. */
    up_log_q.sink = SINK_NOWAIT;
}

static void on_writable(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_retry(struct up_loop *loop, struct up_timer *t);

int up_log_async(struct up_loop *loop)
{
    if (up_log_q.async) {
        return 0;
    }
    up_log_q.buf = malloc(UP_LOG_BUF_SIZE);
    if (up_log_q.buf == NULL) {
        return -ENOMEM;
    }
    choose_sink();
    up_log_q.op.cb = on_writable;
    up_log_q.retry.cb = on_retry;
    up_log_q.loop = loop;
    up_log_q.async = true;
    return 0;
}

/* ---- the buffer ---- */

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

/* The line that stands for the dropped ones, newline included. */
static size_t format_notice(char *line, size_t cap)
{
    size_t n = format_prefix(line, cap, UP_LOG_WARN);
    int m = snprintf(line + n, cap - n, "%llu" NOTICE_TEXT "\n",
                     (unsigned long long)up_log_q.unreported);
    return m < 0 || (size_t)m >= cap - n ? 0 : n + (size_t)m;
}

/* Make room for need bytes at the end, moving the waiting bytes to the
 * front if that is enough. */
static bool has_room(size_t need)
{
    if (UP_LOG_BUF_SIZE - up_log_q.len >= need) {
        return true;
    }
    if (UP_LOG_BUF_SIZE - (up_log_q.len - up_log_q.off) < need) {
        return false;
    }
    memmove(up_log_q.buf, up_log_q.buf + up_log_q.off, up_log_q.len - up_log_q.off);
    up_log_q.len -= up_log_q.off;
    up_log_q.off = 0;
    return true;
}

/* Buffer line (n bytes, no newline) and its newline, after the notice if
 * lines went missing before it: both, or nothing. n == 0 buffers the notice
 * alone. Returns false when it did not fit. */
static bool buffer_line(const char *line, size_t n)
{
    char notice[160];
    size_t nn = up_log_q.unreported > 0 ? format_notice(notice, sizeof(notice)) : 0;
    size_t total = nn + (n > 0 ? n + 1 : 0);
    if (total == 0 || !has_room(total)) {
        return false;
    }
    memcpy(up_log_q.buf + up_log_q.len, notice, nn);
    up_log_q.len += nn;
    if (nn > 0) {
        up_log_q.unreported = 0;
    }
    if (n > 0) {
        memcpy(up_log_q.buf + up_log_q.len, line, n);
        up_log_q.buf[up_log_q.len + n] = '\n';
        up_log_q.len += n + 1;
    }
    return true;
}

static void drop_lines(uint64_t n)
{
    up_log_q.dropped += n;
    up_log_q.unreported += n;
}

/* A write failed for good (EPIPE: no reader; EBADF; EIO): what waits is
 * lost, and counted line by line. A notice among them is not a line of its
 * own: the lines it stood for go back to the unreported count. Polling on
 * would spin: such an fd reports POLLERR at once. */
static void discard_buffer(void)
{
    size_t slen = strlen(NOTICE_TEXT);
    const char *p = up_log_q.buf + up_log_q.off;
    const char *end = up_log_q.buf + up_log_q.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            nl = end; /* the rest of a line cut by a partial write */
        }
        if ((size_t)(nl - p) >= slen && memcmp(nl - slen, NOTICE_TEXT, slen) == 0) {
            const char *d = nl - slen;
            while (d > p && d[-1] >= '0' && d[-1] <= '9') {
                d--;
            }
            up_log_q.unreported += strtoull(d, NULL, 10);
        } else {
            drop_lines(1);
        }
        p = nl < end ? nl + 1 : end;
    }
    up_log_q.off = up_log_q.len = 0;
}

/* Whether a wait for stderr is armed: stderr is known to be full. */
static bool waiting(void)
{
    return up_log_q.loop != NULL && (up_log_q.op.busy || up_timer_armed(&up_log_q.retry));
}

/* Wait for stderr to take more: POLLOUT on the loop, or a timer where the
 * fd cannot be polled. Without a loop (after _end) nothing waits. */
static void wait_writable(void)
{
    struct up_loop *loop = up_log_q.loop;
    if (loop == NULL || waiting()) {
        return;
    }
    if (!up_log_q.poll_failed && up_loop_poll(loop, &up_log_q.op, up_log_q.fd, POLLOUT) == 0) {
        return;
    }
    up_log_q.poll_failed = true;
    up_timer_start(loop, &up_log_q.retry, UP_LOG_RETRY_MS);
}

/* Write what waits until it is all out or stderr would block. Partial
 * writes may cut a line in two, but nothing of ours comes between its
 * halves: up-run's children each write into a pipe of their own. */
static void flush(void)
{
    while (up_log_q.off < up_log_q.len || up_log_q.unreported > 0) {
        if (up_log_q.off == up_log_q.len && !buffer_line(NULL, 0)) {
            break;
        }
        ssize_t w = sink_write(up_log_q.buf + up_log_q.off, up_log_q.len - up_log_q.off);
        if (w > 0) {
            up_log_q.off += (size_t)w;
            if (up_log_q.unreported > 0) {
                (void)buffer_line(NULL, 0); /* the gap is at the end: say so */
            }
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && errno == EOPNOTSUPP && up_log_q.sink == SINK_NOWAIT) {
            /* A kernel without RWF_NOWAIT for this file: the last resort
             * changes the shared description, but never blocks. */
            int fl = fcntl(STDERR_FILENO, F_GETFL);
            (void)fcntl(STDERR_FILENO, F_SETFL, fl | O_NONBLOCK);
            up_log_q.sink = SINK_FD2;
            continue;
        }
        if (w == 0 || errno == EAGAIN) {
            wait_writable();
            return;
        }
        discard_buffer();
        return;
    }
    up_log_q.off = up_log_q.len = 0;
}

static void on_writable(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    if (up_log_q.replaced) {
        /* stderr was replaced while this waited on the old one: what
         * waits goes to the new one now. */
        up_log_q.replaced = false;
        if (up_log_q.stale_fd >= 0) {
            up_log_q.stale_fd = up_loop_close(loop, up_log_q.stale_fd);
        }
        if (up_log_q.loop != NULL) {
            flush();
        }
        return;
    }
    if (op->canceling || up_log_q.loop == NULL) {
        return; /* up_log_async_end() */
    }
    if (res < 0) {
        up_log_q.poll_failed = true; /* retried by timer from now on */
    }
    flush();
}

static void on_retry(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    (void)t;
    flush();
}

void up_log_stderr_changed(void)
{
    if (!up_log_q.async) {
        return;
    }
    int old = up_log_q.sink == SINK_PRIVATE ? up_log_q.fd : -1;
    if (up_log_q.loop != NULL && up_log_q.op.busy) {
        /* Its poll is on the old fd: that fd goes once the op is done. */
        up_loop_cancel(up_log_q.loop, &up_log_q.op);
        up_log_q.stale_fd = old;
        up_log_q.replaced = true;
    } else if (old >= 0) {
        close(old);
    }
    up_log_q.poll_failed = false;
    choose_sink();
    flush();
}

void up_log_async_end(void)
{
    struct up_loop *loop = up_log_q.loop;
    if (loop == NULL) {
        return;
    }
    /* The op's last callback runs when the caller drains the loop. */
    up_loop_cancel(loop, &up_log_q.op);
    up_timer_stop(loop, &up_log_q.retry);
    up_log_q.loop = NULL;
    flush();
}

/* ---- lines ---- */

/* One line of n bytes, without its newline. */
static void put_line(const char *line, size_t n)
{
    if (!up_log_q.async) {
        /* One write per line: in a worker, stderr is a pipe shared by the
         * worker and whatever the app starts. */
        struct iovec iov[2] = {{.iov_base = (void *)line, .iov_len = n},
                               {.iov_base = "\n", .iov_len = 1}};
        ssize_t w = writev(STDERR_FILENO, iov, 2);
        (void)w;
        return;
    }
    /* While a wait is armed stderr is known to be full: no syscall. */
    bool full = waiting();
    if (!buffer_line(line, n)) {
        if (full) {
            drop_lines(1);
            return;
        }
        flush(); /* no loop to wait on (after _end): make room if we can */
        if (!buffer_line(line, n)) {
            drop_lines(1);
            return;
        }
    }
    if (!full) {
        flush();
    }
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
