#include "sink.h"

#include "fd.h"
#include "list.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* Retry period when the loop cannot wait for POLLOUT on the fd. */
#define RETRY_MS 100

static ssize_t sink_write(struct up_sink *s, const char *p, size_t n)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    switch (s->how) {
    case UP_SINK_SOCKET:
        return send(s->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    case UP_SINK_NOWAIT:
        return pwritev2(s->fd, &iov, 1, -1, RWF_NOWAIT);
    case UP_SINK_BLOCKING:
    case UP_SINK_PRIVATE:
    case UP_SINK_SHARED:
        break;
    }
    return write(s->fd, p, n);
}

/* Pick how to write the target without blocking and without changing its
 * file status flags, which belong to an open file description the shell or
 * systemd may share with us. */
static void choose(struct up_sink *s)
{
    struct stat st;
    s->fd = s->target;
    s->how = UP_SINK_BLOCKING;
    s->pipe = false;
    if (fstat(s->target, &st) < 0) {
        return; /* closed: every write fails at once */
    }
    if (S_ISSOCK(st.st_mode)) {
        s->how = UP_SINK_SOCKET; /* the flag is per call: nothing shared changes */
        return;
    }
    s->pipe = S_ISFIFO(st.st_mode);
    if (!s->pipe && !(S_ISCHR(st.st_mode) && isatty(s->target))) {
        return; /* a regular file or /dev/null: write(2) does not wait for a reader */
    }
    /* Opening /proc/self/fd/N gives a pipe or a terminal a new open file
     * description of the same pipe or device, whose O_NONBLOCK is ours
     * alone (checked on Linux 6.18; a socket refuses it with ENXIO). */
    char path[40];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", s->target);
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        s->fd = fd;
        s->how = UP_SINK_PRIVATE;
        return;
    }
    /* No /proc, or the pipe is another user's (the reopen checks the
     * inode's permissions): RWF_NOWAIT makes the one call non-blocking.
     * Where the kernel refuses it, flush falls back to UP_SINK_SHARED. */
    s->how = UP_SINK_NOWAIT;
}

static void on_writable(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_tick(struct up_loop *loop, struct up_timer *t);

int up_sink_init(struct up_sink *s, int target, size_t cap, uint64_t batch_ms, const char *notice,
                 up_sink_prefix_fn prefix)
{
    memset(s, 0, sizeof(*s));
    s->buf = malloc(cap);
    if (s->buf == NULL) {
        return -ENOMEM;
    }
    s->cap = cap;
    s->batch_ms = batch_ms;
    s->notice = notice;
    s->prefix = prefix;
    s->target = target;
    s->stale_fd = -1;
    s->op.cb = on_writable;
    s->tick.cb = on_tick;
    choose(s);
    return 0;
}

void up_sink_start(struct up_sink *s, struct up_loop *loop)
{
    s->loop = loop;
}

/* ---- the buffer ---- */

/* The line that stands for the dropped ones, newline included. */
static size_t format_notice(const struct up_sink *s, char *line, size_t cap)
{
    size_t n = s->prefix != NULL ? s->prefix(line, cap) : 0;
    int m = snprintf(line + n, cap - n, "%llu%s\n", (unsigned long long)s->unreported, s->notice);
    return m < 0 || (size_t)m >= cap - n ? 0 : n + (size_t)m;
}

/* Make room for need bytes at the end, moving the waiting bytes to the
 * front if that is enough. */
static bool has_room(struct up_sink *s, size_t need)
{
    if (s->cap - s->len >= need) {
        return true;
    }
    if (s->cap - (s->len - s->off) < need) {
        return false;
    }
    memmove(s->buf, s->buf + s->off, s->len - s->off);
    s->len -= s->off;
    s->off = 0;
    return true;
}

/* Buffer line (n bytes, no newline) and its newline, after the notice if
 * lines went missing before it: both, or nothing. n == 0 buffers the notice
 * alone. Returns false when it did not fit. */
static bool buffer_line(struct up_sink *s, const char *line, size_t n)
{
    char notice[160];
    size_t nn =
        s->unreported > 0 && s->notice != NULL ? format_notice(s, notice, sizeof(notice)) : 0;
    size_t total = nn + (n > 0 ? n + 1 : 0);
    if (total == 0 || !has_room(s, total)) {
        return false;
    }
    memcpy(s->buf + s->len, notice, nn);
    s->len += nn;
    if (nn > 0) {
        s->unreported = 0;
    }
    if (n > 0) {
        memcpy(s->buf + s->len, line, n);
        s->buf[s->len + n] = '\n';
        s->len += n + 1;
    }
    return true;
}

static void drop_lines(struct up_sink *s, uint64_t n)
{
    s->dropped += n;
    if (s->notice != NULL) {
        s->unreported += n;
    }
}

/* A write failed for good (EPIPE: no reader; EBADF; EIO; ENOSPC): what
 * waits is lost, and counted line by line. A notice among them is not a
 * line of its own: the lines it stood for go back to the unreported count.
 * Polling on would spin: such an fd reports POLLERR at once. */
static void discard_buffer(struct up_sink *s)
{
    size_t slen = s->notice != NULL ? strlen(s->notice) : 0;
    const char *p = s->buf + s->off;
    const char *end = s->buf + s->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            nl = end; /* the rest of a line cut by a partial write */
        }
        if (slen > 0 && (size_t)(nl - p) >= slen && memcmp(nl - slen, s->notice, slen) == 0) {
            const char *d = nl - slen;
            while (d > p && d[-1] >= '0' && d[-1] <= '9') {
                d--;
            }
            s->unreported += strtoull(d, NULL, 10);
        } else {
            drop_lines(s, 1);
        }
        p = nl < end ? nl + 1 : end;
    }
    s->off = s->len = 0;
}

/* Whether a wait is armed: the fd is known to be full. */
static bool waiting(const struct up_sink *s)
{
    return s->loop != NULL && (s->op.busy || (s->poll_failed && up_timer_armed(&s->tick)));
}

/* Wait for the fd to take more: POLLOUT on the loop, or a timer where the
 * fd cannot be polled. Without a loop (after _end) nothing waits. */
static void wait_writable(struct up_sink *s)
{
    if (s->loop == NULL || s->op.busy) {
        return;
    }
    if (!s->poll_failed && up_loop_poll(s->loop, &s->op, s->fd, POLLOUT) == 0) {
        up_timer_stop(s->loop, &s->tick); /* no batch flush while it waits */
        return;
    }
    s->poll_failed = true;
    if (!up_timer_armed(&s->tick)) {
        up_timer_start(s->loop, &s->tick, RETRY_MS);
    }
}

/* How much of [off, len) one write may take: for a pipe at most PIPE_BUF
 * bytes, ending after a newline, so that the write is atomic. */
static size_t chunk(const struct up_sink *s)
{
    size_t n = s->len - s->off;
    if (!s->pipe || n <= PIPE_BUF) {
        return n;
    }
    const char *p = s->buf + s->off;
    for (size_t i = PIPE_BUF; i > 0; i--) {
        if (p[i - 1] == '\n') {
            return i;
        }
    }
    return PIPE_BUF; /* one line longer than PIPE_BUF: no atomic write exists */
}

void up_sink_flush(struct up_sink *s)
{
    while (s->off < s->len || s->unreported > 0) {
        if (s->off == s->len && !buffer_line(s, NULL, 0)) {
            break;
        }
        ssize_t w = sink_write(s, s->buf + s->off, chunk(s));
        if (w > 0) {
            s->off += (size_t)w;
            if (s->unreported > 0) {
                (void)buffer_line(s, NULL, 0); /* the gap is at the end: say so */
            }
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && errno == EOPNOTSUPP && s->how == UP_SINK_NOWAIT) {
            /* A kernel without RWF_NOWAIT for this file: the last resort
             * changes the shared description, but never blocks. */
            int fl = fcntl(s->fd, F_GETFL);
            (void)fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
            s->how = UP_SINK_SHARED;
            continue;
        }
        if (w == 0 || errno == EAGAIN) {
            wait_writable(s);
            return;
        }
        discard_buffer(s);
        return;
    }
    s->off = s->len = 0;
}

static void on_writable(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_sink *s = up_container_of(op, struct up_sink, op);
    if (s->freed) {
        /* up_sink_free() left the fds to this last callback: the loop may
         * not watch an fd number once it is closed. */
        s->fd = up_loop_close(loop, s->fd);
        s->stale_fd = up_loop_close(loop, s->stale_fd);
        return;
    }
    if (s->replaced) {
        /* The target changed while this waited on the old fd: what waits
         * goes to the new one now. */
        s->replaced = false;
        if (s->stale_fd >= 0) {
            s->stale_fd = up_loop_close(loop, s->stale_fd);
        }
        if (s->loop != NULL) {
            up_sink_flush(s);
        }
        return;
    }
    if (op->canceling || s->loop == NULL) {
        return; /* up_sink_end() */
    }
    if (res < 0) {
        s->poll_failed = true; /* retried by timer from now on */
    }
    up_sink_flush(s);
}

static void on_tick(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    up_sink_flush(up_container_of(t, struct up_sink, tick));
}

void up_sink_put(struct up_sink *s, const char *line, size_t n)
{
    s->lines++;
    /* While a wait is armed the fd is known to be full: no syscall. */
    bool full = waiting(s);
    if (!buffer_line(s, line, n)) {
        if (full) {
            drop_lines(s, 1);
            return;
        }
        up_sink_flush(s); /* make room if we can */
        if (!buffer_line(s, line, n)) {
            drop_lines(s, 1);
            return;
        }
    }
    if (full) {
        return;
    }
    if (s->batch_ms == 0 || s->loop == NULL || s->len - s->off >= s->cap / 4) {
        up_sink_flush(s);
    } else if (!up_timer_armed(&s->tick)) {
        up_timer_start(s->loop, &s->tick, s->batch_ms);
    }
}

void up_sink_retarget(struct up_sink *s, int target)
{
    int old = s->how == UP_SINK_PRIVATE ? s->fd : -1;
    if (s->loop != NULL && s->op.busy) {
        /* Its poll is on the old fd: that fd goes once the op is done. */
        up_loop_cancel(s->loop, &s->op);
        s->stale_fd = old;
        s->replaced = true;
    } else if (old >= 0) {
        close(old);
    }
    s->poll_failed = false;
    s->target = target;
    choose(s);
    up_sink_flush(s);
}

void up_sink_end(struct up_sink *s)
{
    struct up_loop *loop = s->loop;
    if (loop == NULL) {
        return;
    }
    /* The op's last callback runs when the caller drains the loop. */
    up_loop_cancel(loop, &s->op);
    up_timer_stop(loop, &s->tick);
    s->loop = NULL;
    up_sink_flush(s);
}

void up_sink_free(struct up_sink *s)
{
    if (s->how != UP_SINK_PRIVATE) {
        s->fd = -1; /* the target: the caller's */
    }
    free(s->buf);
    s->buf = NULL;
    if (s->op.busy) {
        s->freed = true; /* the op's last callback closes our fds */
        return;
    }
    s->fd = up_close(s->fd);
    s->stale_fd = up_close(s->stale_fd);
}
