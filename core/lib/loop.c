/*
 * loop: the part of the event loop common to both back ends: starting ops,
 * keeping the in-flight count, the timer heap, and the run loop. The back
 * ends build on it; choosing one is loop-new.c's, above them both.
 */
#include "loop-impl.h"

#include "fd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void up_loop_base_init(struct up_loop *loop, const struct up_loop_backend_ops *be,
                       enum up_backend backend)
{
    loop->be = be;
    loop->backend = backend;
    loop->now = monotonic_ms();
}

void up_loop_base_free(struct up_loop *loop)
{
    free(loop->heap);
}

void up_loop_free(struct up_loop *loop)
{
    if (loop != NULL) {
        loop->be->free(loop);
    }
}

enum up_backend up_loop_backend(const struct up_loop *loop)
{
    return loop->backend;
}

const char *up_loop_backend_name(const struct up_loop *loop)
{
    return loop->be->name;
}

bool up_loop_ring_cmsg(const struct up_loop *loop)
{
    return loop->ring_cmsg;
}

void up_loop_complete(struct up_loop *loop, struct up_op *op, int res, bool more)
{
    if (!more) {
        /* canceling stays set through the final callback, so that a
         * callback which re-arms its op can tell it was asked to stop even
         * when the op completed for another reason first. */
        op->busy = false;
        loop->pending--;
    }
    op->cb(loop, op, res, more ? UP_OP_F_MORE : 0);
}

static int start(struct up_loop *loop, struct up_op *op, enum up_op_kind kind, int fd, void *buf,
                 size_t len, struct msghdr *msg, int flags, bool wait_first)
{
    if (op->busy) {
        return -EBUSY;
    }
    if (fd < 0) {
        return -EBADF;
    }
    op->kind = kind;
    op->fd = fd;
    op->buf = buf;
    op->len = len;
    op->msg = msg;
    op->flags = flags;
    op->wait_first = wait_first;
    op->canceling = false;
    int r = loop->be->start(loop, op);
    if (r < 0) {
        return r;
    }
    op->busy = true;
    loop->pending++;
    return 0;
}

int up_loop_accept(struct up_loop *loop, struct up_op *op, int fd)
{
    return start(loop, op, UP_OP_ACCEPT, fd, NULL, 0, NULL, 0, false);
}

int up_loop_recv(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len, int flags)
{
    return start(loop, op, UP_OP_RECV, fd, buf, len, NULL, flags, false);
}

int up_loop_recv_drained(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len)
{
    return start(loop, op, UP_OP_RECV, fd, buf, len, NULL, 0, true);
}

int up_loop_send(struct up_loop *loop, struct up_op *op, int fd, const void *buf, size_t len,
                 int flags)
{
    /* The buffer is only read; the op struct keeps one pointer type. */
    return start(loop, op, UP_OP_SEND, fd, (void *)buf, len, NULL, flags | MSG_NOSIGNAL, false);
}

int up_loop_recvmsg(struct up_loop *loop, struct up_op *op, int fd, struct msghdr *msg, int flags)
{
    return start(loop, op, UP_OP_RECVMSG, fd, NULL, 0, msg, flags | MSG_CMSG_CLOEXEC, false);
}

int up_loop_sendmsg(struct up_loop *loop, struct up_op *op, int fd, struct msghdr *msg, int flags)
{
    return start(loop, op, UP_OP_SENDMSG, fd, NULL, 0, msg, flags | MSG_NOSIGNAL, false);
}

int up_loop_read(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len)
{
    return start(loop, op, UP_OP_READ, fd, buf, len, NULL, 0, false);
}

int up_loop_poll(struct up_loop *loop, struct up_op *op, int fd, uint32_t poll_mask)
{
    return start(loop, op, UP_OP_POLL, fd, NULL, 0, NULL, (int)poll_mask, false);
}

void up_loop_cancel(struct up_loop *loop, struct up_op *op)
{
    if (!op->busy || op->canceling) {
        return;
    }
    op->canceling = true;
    loop->be->cancel(loop, op);
}

int up_loop_close(struct up_loop *loop, int fd)
{
    if (fd >= 0) {
        loop->be->forget(loop, fd);
    }
    return up_close(fd);
}

uint64_t up_loop_now(const struct up_loop *loop)
{
    return loop->now;
}

size_t up_loop_pending(const struct up_loop *loop)
{
    return loop->pending;
}

void up_loop_stop(struct up_loop *loop)
{
    loop->stopping = true;
}

/* ---- timers: a binary min-heap of armed timers ---- */

static void heap_set(struct up_loop *loop, size_t i, struct up_timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(struct up_loop *loop, size_t i)
{
    struct up_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->when <= t->when) {
            break;
        }
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct up_loop *loop, size_t i)
{
    struct up_timer *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->heap_len) {
            break;
        }
        if (c + 1 < loop->heap_len && loop->heap[c + 1]->when < loop->heap[c]->when) {
            c++;
        }
        if (t->when <= loop->heap[c]->when) {
            break;
        }
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

void up_timer_stop(struct up_loop *loop, struct up_timer *t)
{
    if (t->slot == 0) {
        return;
    }
    size_t i = t->slot - 1;
    t->slot = 0;
    struct up_timer *last = loop->heap[--loop->heap_len];
    if (last == t) {
        return;
    }
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->slot - 1);
}

void up_timer_start(struct up_loop *loop, struct up_timer *t, uint64_t ms)
{
    up_timer_stop(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct up_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (h == NULL) {
            /* Out of memory for the heap: abort rather than silently lose a
             * timeout, which would leave a connection or a drain hanging. */
            abort();
        }
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->when = loop->now + ms;
    t->seq = ++loop->timer_seq;
    loop->heap[loop->heap_len] = t;
    heap_up(loop, loop->heap_len++);
}

static int next_timeout_ms(const struct up_loop *loop)
{
    if (loop->heap_len == 0) {
        return -1;
    }
    uint64_t when = loop->heap[0]->when;
    if (when <= loop->now) {
        return 0;
    }
    uint64_t d = when - loop->now;
    return d > 60000 ? 60000 : (int)d;
}

static void run_timers(struct up_loop *loop)
{
    /* Timers armed by a callback wait for the next iteration, so that a
     * timer re-arming itself for "now" (0 ms, or a deadline already
     * passed) can starve neither the I/O nor the clock: loop->now does not
     * move in here, and `when <= now` alone would hold for it forever. An
     * older timer behind it in the heap waits one iteration too; the
     * next wait then does not block (next_timeout_ms() is 0). */
    uint64_t now = loop->now, last = loop->timer_seq;
    while (loop->heap_len > 0 && loop->heap[0]->when <= now && loop->heap[0]->seq <= last) {
        struct up_timer *t = loop->heap[0];
        up_timer_stop(loop, t);
        t->cb(loop, t);
    }
}

void up_loop_tick(struct up_loop *loop)
{
    loop->now = monotonic_ms();
}

int up_loop_run_once(struct up_loop *loop)
{
    int r = loop->be->wait(loop, next_timeout_ms(loop));
    up_loop_tick(loop);
    run_timers(loop);
    return r == -EINTR ? 0 : r;
}

static void drain_deadline(struct up_loop *loop, struct up_timer *t)
{
    (void)t;
    loop->stopping = true;
}

void up_loop_drain(struct up_loop *loop, uint64_t max_ms)
{
    struct up_timer t = {.cb = drain_deadline};
    up_timer_start(loop, &t, max_ms);
    loop->stopping = false;
    while (loop->pending > 0 && !loop->stopping) {
        if (up_loop_run_once(loop) < 0) {
            break;
        }
    }
    up_timer_stop(loop, &t);
}

int up_loop_run(struct up_loop *loop)
{
    loop->stopping = false;
    while (!loop->stopping) {
        int r = up_loop_run_once(loop);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}
