/*
 * loop-epoll: the epoll back end, for kernels or sandboxes without io_uring.
 * It gives the same completion semantics as the ring: an op is attempted
 * with the non-blocking syscall, and waits for readiness only on EAGAIN.
 *
 * Every fd is registered once, edge-triggered, for both directions
 * (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET). Edge triggering is safe here
 * because an op is always attempted after it is started: data that arrived
 * before the op was started is found by that attempt, and anything after it
 * raises a new edge. The one exception, up_loop_recv_drained(), waits without
 * an attempt only while no read-side event came since an attempt last found
 * the fd empty (rd_edge). Attempts run only from the run queue, in the dispatch
 * phase, so a callback never runs from inside the call that started its op.
 */
#include "loop-impl.h"

#include "fd.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Accepts per attempt before yielding to other work: a connection storm must
 * not starve the connections already accepted. */
#define ACCEPT_BATCH 64

struct ep_fd {
    struct up_op *rd; /* the read-side op waiting on this fd, or NULL */
    struct up_op *wr; /* the write-side op */
    bool registered;
    /* Bytes may be there: a read-side event came since an attempt last
     * found the fd empty. A wait_first op (up_loop_recv_drained()) then
     * attempts at once, as the edge that would wake it has passed. */
    bool rd_edge;
};

struct epoll_loop {
    struct up_loop base;
    int epfd; /* owned */
    struct ep_fd *fds;
    size_t nfds;
    /* Ops to attempt in the dispatch phase (op->next links them). */
    struct up_op *runq_head;
    struct up_op *runq_tail;
};

static struct epoll_loop *E(struct up_loop *loop)
{
    return (struct epoll_loop *)loop;
}

static bool is_write_side(const struct up_op *op)
{
    return op->kind == UP_OP_SEND || op->kind == UP_OP_SENDMSG ||
           (op->kind == UP_OP_POLL && (op->flags & POLLOUT) && !(op->flags & POLLIN));
}

/* Did this attempt find the fd empty? EAGAIN, or a stream recv that got
 * less than it asked for (what up_loop_recv_drained() is for). A poll or a
 * peek takes nothing, and a full read may have left bytes. */
static bool found_empty(const struct up_op *op, int res)
{
    bool reads = op->kind == UP_OP_RECV || op->kind == UP_OP_RECVMSG || op->kind == UP_OP_READ;
    if (!reads || (op->flags & MSG_PEEK)) {
        return false;
    }
    return res == -EAGAIN || (op->kind == UP_OP_RECV && res > 0 && (size_t)res < op->len);
}

static struct up_op **slot_of(struct epoll_loop *e, struct up_op *op)
{
    struct ep_fd *f = &e->fds[op->fd];
    return is_write_side(op) ? &f->wr : &f->rd;
}

/* Queue op for an attempt, once: an op both woken by an event and canceled
 * is attempted once, and the attempt sees the cancel. */
static void runq_push(struct epoll_loop *e, struct up_op *op)
{
    if (op->queued) {
        return;
    }
    op->queued = true;
    op->next = NULL;
    if (e->runq_tail != NULL) {
        e->runq_tail->next = op;
    } else {
        e->runq_head = op;
    }
    e->runq_tail = op;
}

static int ensure_fd(struct epoll_loop *e, int fd)
{
    if ((size_t)fd >= e->nfds) {
        size_t n = e->nfds ? e->nfds : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        struct ep_fd *f = realloc(e->fds, n * sizeof(*f));
        if (f == NULL) {
            return -ENOMEM;
        }
        memset(f + e->nfds, 0, (n - e->nfds) * sizeof(*f));
        e->fds = f;
        e->nfds = n;
    }
    struct ep_fd *f = &e->fds[fd];
    if (!f->registered) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.fd = fd};
        if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            return -errno;
        }
        f->registered = true;
    }
    return 0;
}

static int epoll_start(struct up_loop *loop, struct up_op *op)
{
    struct epoll_loop *e = E(loop);
    /* A first registration reports the fd's state as an event, but only
     * at the next wait: attempt anyway, as before any registration. */
    bool known = (size_t)op->fd < e->nfds && e->fds[op->fd].registered;
    int r = ensure_fd(e, op->fd);
    if (r < 0) {
        return r;
    }
    struct up_op **slot = slot_of(e, op);
    if (*slot != NULL) {
        /* One op per direction per fd: see loop.h. */
        return -EBUSY;
    }
    *slot = op;
    if (!(op->wait_first && known && !e->fds[op->fd].rd_edge)) {
        runq_push(e, op);
    }
    return 0;
}

static void epoll_cancel(struct up_loop *loop, struct up_op *op)
{
    /* The op waits in its slot; queue it so that the dispatch phase
     * delivers -ECANCELED. */
    runq_push(E(loop), op);
}

static void epoll_forget(struct up_loop *loop, int fd)
{
    struct epoll_loop *e = E(loop);
    if ((size_t)fd < e->nfds && e->fds[fd].registered) {
        (void)epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        memset(&e->fds[fd], 0, sizeof(e->fds[fd]));
    }
}

/* One non-blocking attempt. Returns the result, or -EAGAIN. */
static int attempt(struct up_op *op)
{
    ssize_t n = -1;
    switch (op->kind) {
    case UP_OP_ACCEPT:
        n = accept4(op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        break;
    case UP_OP_RECV:
        n = recv(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT);
        break;
    case UP_OP_SEND:
        n = send(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT);
        break;
    case UP_OP_RECVMSG:
        n = recvmsg(op->fd, op->msg, op->flags | MSG_DONTWAIT);
        break;
    case UP_OP_SENDMSG:
        n = sendmsg(op->fd, op->msg, op->flags | MSG_DONTWAIT);
        break;
    case UP_OP_READ:
        n = read(op->fd, op->buf, op->len);
        break;
    case UP_OP_POLL: {
        struct pollfd p = {.fd = op->fd, .events = (short)op->flags};
        n = poll(&p, 1, 0);
        if (n > 0) {
            n = p.revents;
        } else if (n == 0) {
            errno = EAGAIN;
            n = -1;
        }
        break;
    }
    case UP_OP_NONE:
        errno = EINVAL;
        break;
    }
    if (n < 0) {
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
    return (int)n;
}

static void finish(struct epoll_loop *e, struct up_op *op, int res)
{
    *slot_of(e, op) = NULL;
    up_loop_complete(&e->base, op, res, false);
}

/* Accept until EAGAIN, an error, or the batch limit. */
static void run_accept(struct epoll_loop *e, struct up_op *op)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (op->canceling) {
            finish(e, op, -ECANCELED);
            return;
        }
        int fd = attempt(op);
        if (fd == -EAGAIN) {
            return;
        }
        if (fd < 0 && fd != -ECONNABORTED && fd != -EINTR) {
            /* Like a multishot accept on the ring, an error ends it. */
            finish(e, op, fd);
            return;
        }
        if (fd >= 0) {
            up_loop_complete(&e->base, op, fd, true);
        }
    }
    runq_push(e, op); /* more may be waiting: continue next iteration */
}

/* Attempt op; returns whether a callback ran. */
static bool run_op(struct epoll_loop *e, struct up_op *op)
{
    if (!op->busy || *slot_of(e, op) != op) {
        return false; /* cannot happen: kept as a guard against a stale entry */
    }
    if (op->kind == UP_OP_ACCEPT) {
        /* Counted as work: it may have called back, or queued itself. */
        run_accept(e, op);
        return true;
    }
    if (op->canceling) {
        finish(e, op, -ECANCELED);
        return true;
    }
    int res = attempt(op);
    if (found_empty(op, res)) {
        e->fds[op->fd].rd_edge = false; /* a later event sets it again */
    }
    if (res == -EINTR || (res == -EAGAIN && !up_loop_op_nowait(op))) {
        return false;
    }
    finish(e, op, res);
    return true;
}

static struct up_op *runq_pop(struct epoll_loop *e)
{
    struct up_op *op = e->runq_head;
    if (op != NULL) {
        e->runq_head = op->next;
        if (e->runq_head == NULL) {
            e->runq_tail = NULL;
        }
        op->queued = false;
    }
    return op;
}

/* Returns how many callbacks may have run. */
static size_t run_queue(struct epoll_loop *e)
{
    /* Only as many as are queued now: ops started by these callbacks run
     * in the next iteration, after a zero-timeout epoll_wait, so that fresh
     * events get their turn. */
    size_t n = 0;
    for (struct up_op *op = e->runq_head; op != NULL; op = op->next) {
        n++;
    }
    size_t ran = 0;
    while (n-- > 0) {
        struct up_op *op = runq_pop(e);
        if (op == NULL) {
            break;
        }
        ran += run_op(e, op);
    }
    return ran;
}

static void on_event(struct epoll_loop *e, const struct epoll_event *ev)
{
    int fd = ev->data.fd;
    if ((size_t)fd >= e->nfds) {
        return;
    }
    struct ep_fd *f = &e->fds[fd];
    /* Errors and hang-ups wake both sides: the attempt reports them. */
    if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        f->rd_edge = true;
        if (f->rd != NULL) {
            runq_push(e, f->rd);
        }
    }
    if (f->wr != NULL && (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
        runq_push(e, f->wr);
    }
}

static int epoll_wait_(struct up_loop *loop, int timeout_ms)
{
    struct epoll_loop *e = E(loop);
    /* Work done here may have completed what the caller waits for (or
     * armed a timer for now): then only poll, never block. */
    if (run_queue(e) > 0 || e->runq_head != NULL) {
        timeout_ms = 0;
    }
    struct epoll_event evs[256];
    int n = epoll_wait(e->epfd, evs, 256, timeout_ms);
    if (n < 0) {
        return errno == EINTR ? 0 : -errno;
    }
    up_loop_tick(loop);
    for (int i = 0; i < n; i++) {
        on_event(e, &evs[i]);
    }
    run_queue(e);
    return 0;
}

static void epoll_free(struct up_loop *loop)
{
    struct epoll_loop *e = E(loop);
    e->epfd = up_close(e->epfd);
    free(e->fds);
    up_loop_base_free(loop);
    free(e);
}

static const struct up_loop_backend_ops epoll_ops = {
    .name = "epoll",
    .start = epoll_start,
    .cancel = epoll_cancel,
    .forget = epoll_forget,
    .wait = epoll_wait_,
    .free = epoll_free,
};

int up_loop_epoll_new(unsigned entries, struct up_loop **ret_loop)
{
    (void)entries;
    struct epoll_loop *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -ENOMEM;
    }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) {
        int r = -errno;
        free(e);
        return r;
    }
    up_loop_base_init(&e->base, &epoll_ops, UP_BACKEND_EPOLL);
    *ret_loop = &e->base;
    return 0;
}
