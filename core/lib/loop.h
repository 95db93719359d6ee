/*
 * loop: the event loop of the master and of each worker, with an io_uring
 * back end and an epoll back end behind one completion-based API.
 *
 * The caller embeds a struct up_op in the object that owns the operation
 * (a connection, a channel, a listener) and starts it with up_loop_<op>().
 * When it completes, op->cb(loop, op, res, flags) runs from up_loop_run():
 * res is what the syscall returned (>= 0) or -errno, exactly cqe->res. A
 * callback never runs from inside the call that started the op, and if a
 * start call returns an error, the callback never runs.
 *
 * Ownership and lifetime:
 *   - fds are borrowed: the loop never closes one. Before closing an fd that
 *     has ops in flight, cancel them and wait for their callbacks (each gets
 *     res == -ECANCELED, or its real result if it won the race), then close
 *     it with up_loop_close() so the epoll back end forgets it.
 *   - buffers, iovecs and msghdrs passed in must stay valid until the
 *     callback ran.
 *   - an op is in flight from a successful start until its final callback:
 *     op->busy is true meanwhile. A multishot op (accept) calls back many
 *     times; UP_OP_F_MORE is set on each call after which it stays armed.
 *
 * MSG_DONTWAIT in an op's flags means what it means to the syscall on both
 * back ends: the op completes with -EAGAIN instead of waiting.
 *
 * Back end limits: per fd at most one read-side op (accept, recv, recvmsg,
 * read, poll for POLLIN) and one write-side op (send, sendmsg, poll for
 * POLLOUT) in flight at a time. Callers keep to this anyway: a connection
 * reads and writes in order.
 *
 * Timers live in user space (a binary heap) for both back ends: the wait for
 * completions carries the nearest deadline, so a timer costs no syscall.
 *
 * The loop never blocks except in up_loop_run_once()'s wait, and never logs.
 */
#ifndef UP_LOOP_H
#define UP_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct up_loop;
struct up_op;
struct up_timer;

enum up_backend {
    UP_BACKEND_AUTO = 0, /* io_uring if it can be set up, else epoll */
    UP_BACKEND_URING,
    UP_BACKEND_EPOLL,
};

#define UP_OP_F_MORE 0x1u /* multishot op stays armed after this callback */

typedef void (*up_op_cb)(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
typedef void (*up_timer_cb)(struct up_loop *loop, struct up_timer *t);

enum up_op_kind {
    UP_OP_NONE = 0,
    UP_OP_ACCEPT,  /* multishot accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) */
    UP_OP_RECV,    /* recv(fd, buf, len, flags); MSG_PEEK allowed */
    UP_OP_SEND,    /* send(fd, buf, len, flags | MSG_NOSIGNAL) */
    UP_OP_RECVMSG, /* recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC) */
    UP_OP_SENDMSG, /* sendmsg(fd, msg, flags | MSG_NOSIGNAL) */
    UP_OP_READ,    /* read(fd, buf, len): signalfd, inotify, pipes */
    UP_OP_POLL,    /* one-shot poll; res = revents */
};

struct up_op {
    /* Set by the caller before starting the op. */
    up_op_cb cb;
    /* Everything below is the loop's. */
    enum up_op_kind kind;
    bool busy;      /* in flight: started, final callback not yet run */
    bool canceling; /* up_loop_cancel() was called; still set in the final
                     * callback: an op that re-arms itself must not then */
    int fd;         /* borrowed */
    int flags;      /* MSG_* flags, or the poll mask for UP_OP_POLL */
    void *buf;
    size_t len;
    struct msghdr *msg;
    bool wait_first;    /* up_loop_recv_drained(): wait for bytes, then try */
    bool queued;        /* epoll back end: on the run queue */
    struct up_op *next; /* epoll back end: run queue link */
};

struct up_timer {
    up_timer_cb cb; /* set by the caller */
    uint64_t when;  /* the loop's: deadline in up_loop_now() ms */
    uint64_t seq;   /* the loop's: which arming this is (see run_timers()) */
    size_t slot;    /* the loop's: heap index + 1; 0 = not armed */
};

/* Create a loop. backend AUTO tries io_uring and falls back to epoll when
 * the ring cannot be set up (ENOSYS, EPERM, EINVAL, or an opcode we need
 * missing); *ret_reason (may be NULL) then points to a static text saying why,
 * for the caller to log once. entries sizes the ring. Returns 0 with
 * *ret_loop set, or -errno (an explicit URING request that cannot be met
 * fails with that error). */
int up_loop_new(enum up_backend backend, unsigned entries, struct up_loop **ret_loop,
                const char **ret_reason);

/* up_loop_new() for a loop that the calling thread alone will ever start
 * ops on and run (a worker process): the ring may then defer its
 * completion work to our own wait (IORING_SETUP_SINGLE_ISSUER |
 * DEFER_TASKRUN, 6.1), which spares wakeups and interrupts; any other
 * thread's submit would fail. A library that hands its loop to a caller's
 * thread uses up_loop_new(). */
int up_loop_new_one_thread(enum up_backend backend, unsigned entries, struct up_loop **ret_loop,
                           const char **ret_reason);

/* Free the loop. Every op must have completed (see up_loop_pending()). */
void up_loop_free(struct up_loop *loop);

/* The back end in use, and its name ("io_uring" or "epoll"). */
enum up_backend up_loop_backend(const struct up_loop *loop);
const char *up_loop_backend_name(const struct up_loop *loop);

/* Parse "io_uring", "uring", "epoll" or "auto". Returns 0 or -EINVAL. */
int up_backend_parse(const char *text, enum up_backend *ret_backend);

/* What up_backend_parse() reads back: "auto", "io_uring" or "epoll". */
const char *up_backend_name(enum up_backend backend);

/* Whether the io_uring back end also does sendmsg/recvmsg with SCM_RIGHTS on
 * the ring (probed at start; false on kernels that refuse ancillary data
 * there, where sendmsg/recvmsg run as readiness + plain syscall instead). */
bool up_loop_ring_cmsg(const struct up_loop *loop);

/* Start ops. Each returns 0 (the callback will run) or -errno (it will not;
 * -EBUSY if op is already in flight). */
int up_loop_accept(struct up_loop *loop, struct up_op *op, int fd);
int up_loop_recv(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len, int flags);
int up_loop_send(struct up_loop *loop, struct up_op *op, int fd, const void *buf, size_t len,
                 int flags);
/* A recv on a stream socket whose last recv returned fewer bytes than it
 * asked for, so that it took all there was: wait for bytes before trying,
 * rather than try, fail with EAGAIN and then wait. A keep-alive connection
 * between requests is the case: it saves a failed receive per request
 * (io_uring: IORING_RECVSEND_POLL_FIRST; epoll: no attempt while no event
 * came since an attempt found the fd empty). Only a hint: bytes that are
 * there after all are still found. */
int up_loop_recv_drained(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len);
int up_loop_recvmsg(struct up_loop *loop, struct up_op *op, int fd, struct msghdr *msg, int flags);
int up_loop_sendmsg(struct up_loop *loop, struct up_op *op, int fd, struct msghdr *msg, int flags);
int up_loop_read(struct up_loop *loop, struct up_op *op, int fd, void *buf, size_t len);
int up_loop_poll(struct up_loop *loop, struct up_op *op, int fd, uint32_t poll_mask);

/* Ask an in-flight op to stop. Its callback still runs once more (with
 * -ECANCELED unless it completed first). No-op if op is not busy. */
void up_loop_cancel(struct up_loop *loop, struct up_op *op);

/* Close fd (ops on it must be done) after making the back end forget it:
 * the epoll back end must remove its registration first, because an fd
 * handed to another process keeps its open file description, and with it an
 * epoll registration that would report events for a reused fd number.
 * Returns -1, like up_close(). */
int up_loop_close(struct up_loop *loop, int fd);

/* Timers. Start (re)arms t to fire ms from now; stop disarms (harmless if
 * not armed). A timer fires once; re-arm it from its callback to repeat.
 * One armed from a timer callback fires in a later iteration, never in the
 * same one, even for 0 ms: the loop waits for I/O (without blocking) in
 * between. */
void up_timer_start(struct up_loop *loop, struct up_timer *t, uint64_t ms);
void up_timer_stop(struct up_loop *loop, struct up_timer *t);
static inline bool up_timer_armed(const struct up_timer *t)
{
    return t->slot != 0;
}

/* Monotonic milliseconds, updated once per loop iteration. */
uint64_t up_loop_now(const struct up_loop *loop);

/* Run one iteration: submit what was started, wait for at least one
 * completion or the nearest timer (or not at all if work is queued), then
 * run callbacks and expired timers. Returns 0 or -errno from the wait (EINTR
 * is returned as 0). */
int up_loop_run_once(struct up_loop *loop);

/* Run until up_loop_stop() is called. Returns 0 or -errno. */
int up_loop_run(struct up_loop *loop);
void up_loop_stop(struct up_loop *loop);

/* Ops in flight (debugging and teardown checks). */
size_t up_loop_pending(const struct up_loop *loop);

/* Teardown: run the loop until no op is in flight (after canceling them),
 * but at most max_ms, so that an op that never completes cannot hang an
 * exit. Blocks up to max_ms. */
void up_loop_drain(struct up_loop *loop, uint64_t max_ms);

#endif
