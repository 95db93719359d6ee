/*
 * loop-uring: the io_uring back end. The only file that touches SQEs and
 * CQEs. user_data is always the struct up_op pointer (0 for cancel
 * requests, whose own completions carry nothing we need).
 *
 * Kernel behaviour relied on:
 *   - multishot accept (5.19): one SQE, one CQE per connection;
 *     IORING_CQE_F_MORE absent means the multishot ended and must be re-armed.
 *   - IORING_OP_RECV with MSG_PEEK passes the flag to sock_recvmsg (the data
 *     stays in the socket). Never combined with multishot recv, which would
 *     re-arm while the socket is non-empty and spin.
 *   - IORING_RECVSEND_POLL_FIRST (5.19) on a recv arms the poll without the
 *     first attempt; older kernels refuse it with EINVAL, and we drop it.
 *   - SCM_RIGHTS through IORING_OP_SENDMSG/RECVMSG works since the 5.12
 *     io-thread rework; it was refused before. We probe it at start and, where
 *     refused, run sendmsg/recvmsg as a POLL_ADD plus the plain syscall.
 */
#include "loop-impl.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct uring_loop {
    struct up_loop base;
    struct io_uring ring;
    bool single_accept; /* kernel without multishot accept: re-arm each time */
    bool no_poll_first; /* kernel before 5.19: recv refuses IORING_RECVSEND_POLL_FIRST */
    /* Cancels that found no free SQE (op->next links them): sent before
     * the next wait. A cancel dropped would leave its op in flight
     * forever, and whoever waits for that op (a close, an exit) with it. */
    struct up_op *cancels;
};

static struct uring_loop *U(struct up_loop *loop)
{
    return (struct uring_loop *)loop;
}

static struct io_uring_sqe *get_sqe(struct uring_loop *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        /* SQ full: flush it to the kernel and take a fresh slot. */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

/* sendmsg/recvmsg without ring cmsg support: wait for readiness first. */
static bool via_poll(const struct uring_loop *u, const struct up_op *op)
{
    return !u->base.ring_cmsg && (op->kind == UP_OP_SENDMSG || op->kind == UP_OP_RECVMSG);
}

static int prep(struct uring_loop *u, struct up_op *op)
{
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL) {
        return -EAGAIN;
    }
    switch (op->kind) {
    case UP_OP_ACCEPT:
        if (u->single_accept) {
            io_uring_prep_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        } else {
            io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        }
        break;
    case UP_OP_RECV:
        io_uring_prep_recv(sqe, op->fd, op->buf, op->len, op->flags);
        if (op->wait_first && !u->no_poll_first) {
            sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        }
        break;
    case UP_OP_SEND:
        io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->flags);
        break;
    case UP_OP_RECVMSG:
    case UP_OP_SENDMSG:
        if (via_poll(u, op)) {
            io_uring_prep_poll_add(sqe, op->fd, op->kind == UP_OP_SENDMSG ? POLLOUT : POLLIN);
        } else if (op->kind == UP_OP_RECVMSG) {
            io_uring_prep_recvmsg(sqe, op->fd, op->msg, (unsigned)op->flags);
        } else {
            io_uring_prep_sendmsg(sqe, op->fd, op->msg, (unsigned)op->flags);
        }
        break;
    case UP_OP_READ:
        /* offset -1: "current position", the only meaning for pipes,
         * signalfd and inotify fds. */
        io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, (uint64_t)-1);
        break;
    case UP_OP_POLL:
        io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->flags);
        break;
    case UP_OP_NONE:
        return -EINVAL;
    }
    io_uring_sqe_set_data(sqe, op);
    return 0;
}

static int uring_start(struct up_loop *loop, struct up_op *op)
{
    return prep(U(loop), op);
}

static void uring_cancel(struct up_loop *loop, struct up_op *op)
{
    struct uring_loop *u = U(loop);
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL) {
        /* The SQ is still full after a submit (the kernel refused it for
         * now): try again before the next wait. */
        op->next = u->cancels;
        u->cancels = op;
        return;
    }
    io_uring_prep_cancel(sqe, op, 0);
    io_uring_sqe_set_data(sqe, NULL);
}

/* op completed: it needs no cancel any more, and may be freed once its
 * callback ran, so it must leave the list first. */
static void drop_cancel(struct uring_loop *u, struct up_op *op)
{
    for (struct up_op **pp = &u->cancels; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            return;
        }
    }
}

/* Send the cancels that found no SQE (every op on the list is in flight). */
static void flush_cancels(struct uring_loop *u)
{
    struct up_op *list = u->cancels;
    u->cancels = NULL;
    while (list != NULL) {
        struct up_op *op = list;
        list = op->next;
        uring_cancel(&u->base, op);
    }
}

static void uring_forget(struct up_loop *loop, int fd)
{
    (void)loop;
    (void)fd;
}

/* The readiness half of a sendmsg/recvmsg run through POLL_ADD is done; do
 * the syscall now. Returns the result, or -EAGAIN to poll again. */
static int finish_via_poll(struct up_op *op, int res)
{
    if (res < 0) {
        return res;
    }
    ssize_t n;
    if (op->kind == UP_OP_SENDMSG) {
        n = sendmsg(op->fd, op->msg, op->flags | MSG_DONTWAIT);
    } else {
        n = recvmsg(op->fd, op->msg, op->flags | MSG_DONTWAIT);
    }
    return n < 0 ? -errno : (int)n;
}

static void handle_cqe(struct uring_loop *u, struct up_op *op, int res, unsigned cflags)
{
    struct up_loop *loop = &u->base;
    if (via_poll(u, op) && res != -ECANCELED) {
        res = finish_via_poll(op, res);
        if (res == -EAGAIN && !op->canceling && !up_loop_op_nowait(op) && prep(u, op) == 0) {
            return;
        }
    }
    if (res == -EINVAL && op->kind == UP_OP_RECV && op->wait_first && !u->no_poll_first) {
        /* A kernel before 5.19 refuses the flag: try as a plain recv. */
        u->no_poll_first = true;
        if (prep(u, op) == 0) {
            return;
        }
    }
    if (op->kind == UP_OP_ACCEPT) {
        if (res == -EINVAL && !u->single_accept) {
            /* A kernel without multishot accept refuses the flag. */
            u->single_accept = true;
            if (prep(u, op) == 0) {
                return;
            }
        }
        bool more = (cflags & IORING_CQE_F_MORE) != 0;
        if (!more && res >= 0 && !op->canceling && prep(u, op) == 0) {
            /* Multishot ended (or single-shot mode): re-arm transparently
             * so the caller sees one continuous accept. */
            more = true;
        }
        if (!more && u->cancels != NULL) {
            drop_cancel(u, op);
        }
        up_loop_complete(loop, op, res, more);
        return;
    }
    if (u->cancels != NULL) {
        drop_cancel(u, op);
    }
    up_loop_complete(loop, op, res, false);
}

struct cqe_copy {
    struct up_op *op;
    int res;
    unsigned flags;
};

static int uring_wait(struct up_loop *loop, int timeout_ms)
{
    struct uring_loop *u = U(loop);
    struct io_uring_cqe *cqe = NULL;
    int r;
    if (u->cancels != NULL) {
        flush_cancels(u);
        if (u->cancels != NULL) {
            timeout_ms = timeout_ms < 0 || timeout_ms > 10 ? 10 : timeout_ms;
        }
    }
    if (timeout_ms < 0) {
        r = io_uring_submit_and_wait(&u->ring, 1);
    } else {
        struct __kernel_timespec ts = {
            .tv_sec = timeout_ms / 1000,
            .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
        };
        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
        return r;
    }
    up_loop_tick(loop);
    /* Copy a batch out and advance before running callbacks: a callback
     * may submit, and must never see the CQ ring mid-iteration. */
    for (;;) {
        struct io_uring_cqe *cqes[128];
        struct cqe_copy batch[128];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, 128);
        if (n == 0) {
            break;
        }
        for (unsigned i = 0; i < n; i++) {
            batch[i].op = io_uring_cqe_get_data(cqes[i]);
            batch[i].res = cqes[i]->res;
            batch[i].flags = cqes[i]->flags;
        }
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++) {
            if (batch[i].op != NULL) {
                handle_cqe(u, batch[i].op, batch[i].res, batch[i].flags);
            }
        }
        if (n < 128) {
            break;
        }
    }
    return 0;
}

static void uring_free(struct up_loop *loop)
{
    struct uring_loop *u = U(loop);
    io_uring_queue_exit(&u->ring);
    up_loop_base_free(loop);
    free(u);
}

static const struct up_loop_backend_ops uring_ops = {
    .name = "io_uring",
    .start = uring_start,
    .cancel = uring_cancel,
    .forget = uring_forget,
    .wait = uring_wait,
    .free = uring_free,
};

/* Does IORING_OP_SENDMSG carry SCM_RIGHTS on this kernel? Send a pipe's fd
 * over a socketpair through the ring and see. */
static bool probe_ring_cmsg(struct io_uring *ring)
{
    int sv[2] = {-1, -1};
    int pfd[2] = {-1, -1};
    bool ok = false;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
        pipe2(pfd, O_CLOEXEC) < 0) {
        goto out;
    }
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c;
    memset(&c, 0, sizeof(c));
    char byte = 'p';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &pfd[0], sizeof(int));
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (sqe == NULL) {
        goto out;
    }
    io_uring_prep_sendmsg(sqe, sv[0], &msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, NULL);
    struct io_uring_cqe *cqe;
    if (io_uring_submit_and_wait(ring, 1) < 0 || io_uring_wait_cqe(ring, &cqe) < 0) {
        goto out;
    }
    ok = cqe->res == 1;
    io_uring_cqe_seen(ring, cqe);
out:
    up_close(sv[0]);
    up_close(sv[1]); /* closing the receiver drops the fd in flight */
    up_close(pfd[0]);
    up_close(pfd[1]);
    return ok;
}

static bool has_opcodes(struct io_uring *ring)
{
    static const int needed[] = {IORING_OP_ACCEPT,  IORING_OP_RECV,     IORING_OP_SEND,
                                 IORING_OP_READ,    IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL,
                                 IORING_OP_SENDMSG, IORING_OP_RECVMSG};
    struct io_uring_probe *p = io_uring_get_probe_ring(ring);
    if (p == NULL) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        ok = ok && io_uring_opcode_supported(p, needed[i]);
    }
    io_uring_free_probe(p);
    return ok;
}

int up_loop_uring_new(unsigned entries, bool one_thread, struct up_loop **ret_loop,
                      const char **ret_reason)
{
    struct uring_loop *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return -ENOMEM;
    }
    /* SUBMIT_ALL: one failing SQE must not hold back the rest of a batch.
     * COOP_TASKRUN: completions are reaped by our own wait anyway, so the
     * kernel need not interrupt us with IPIs. Older kernels refuse these
     * flags with EINVAL: retry without them. one_thread: the completion
     * work waits for our own wait instead (DEFER_TASKRUN, 6.1). */
    struct io_uring_params params = {.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN};
    int r = -EINVAL;
    if (one_thread) {
        struct io_uring_params one = {.flags = IORING_SETUP_SUBMIT_ALL |
                                               IORING_SETUP_SINGLE_ISSUER |
                                               IORING_SETUP_DEFER_TASKRUN};
        r = io_uring_queue_init_params(entries, &u->ring, &one);
    }
    if (r == -EINVAL) {
        r = io_uring_queue_init_params(entries, &u->ring, &params);
    }
    if (r == -EINVAL) {
        memset(&params, 0, sizeof(params));
        r = io_uring_queue_init_params(entries, &u->ring, &params);
    }
    if (r < 0) {
        *ret_reason = r == -EPERM    ? "io_uring_setup refused (EPERM: kernel.io_uring_disabled "
                                       "or a seccomp profile)"
                      : r == -ENOSYS ? "io_uring_setup not implemented (ENOSYS)"
                                     : "io_uring_setup failed";
        free(u);
        return r;
    }
    if (!has_opcodes(&u->ring)) {
        *ret_reason = "io_uring lacks an opcode up needs (kernel older than 5.6)";
        io_uring_queue_exit(&u->ring);
        free(u);
        return -EOPNOTSUPP;
    }
    up_loop_base_init(&u->base, &uring_ops, UP_BACKEND_URING);
    u->base.ring_cmsg = probe_ring_cmsg(&u->ring);
    *ret_loop = &u->base;
    return 0;
}
