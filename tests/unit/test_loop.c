/* The event loop, on both back ends: every op kind, cancel, timers. */
#include <criterion/criterion.h>

#include "../lib/testloop.h"
#include "fd.h"
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct rec {
    struct up_op op;
    int calls;
    int last_res;
    uint32_t last_flags;
    int accepted[8];
};

static void rec_cb(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    struct rec *r = (struct rec *)op;
    if (r->calls < 8 && op->kind == UP_OP_ACCEPT && res >= 0) {
        r->accepted[r->calls] = res;
    }
    r->calls++;
    r->last_res = res;
    r->last_flags = flags;
}

/* Set by a ONE_THREAD test: the loop comes from up_loop_new_one_thread(). */
static bool one_thread;

static struct up_loop *new_loop(enum up_backend be)
{
    return one_thread ? up_test_new_loop_one_thread(be) : up_test_new_loop(be);
}

static void noop_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    (void)t;
}

/* One iteration bounded by a 20 ms timer: for "nothing should happen". */
static void run_briefly(struct up_loop *loop)
{
    struct up_timer t = {.cb = noop_timer};
    up_timer_start(loop, &t, 20);
    cr_assert_eq(up_loop_run_once(loop), 0);
    up_timer_stop(loop, &t);
}

static void run_until(struct up_loop *loop, int *calls, int want)
{
    for (int i = 0; i < 1000 && *calls < want; i++) {
        cr_assert_eq(up_loop_run_once(loop), 0);
    }
    cr_assert_geq(*calls, want, "callback did not run");
}

static void recv_send(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct rec rx = {.op.cb = rec_cb}, tx = {.op.cb = rec_cb};
    char in[16] = {0};
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), 0), 0);
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), 0), -EBUSY);
    run_briefly(loop);
    cr_assert_eq(rx.calls, 0, "recv completed with no data");
    cr_assert_eq(up_loop_send(loop, &tx.op, sv[0], "hello", 5, 0), 0);
    cr_assert_eq(tx.calls, 0, "callback ran inside the start call");
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(tx.last_res, 5);
    cr_assert_eq(rx.last_res, 5);
    cr_assert_str_eq(in, "hello");
    cr_assert_eq(up_loop_pending(loop), 0);
    /* A peeked read leaves the bytes in the socket. */
    cr_assert_eq(send(sv[0], "abc", 3, 0), 3);
    rx.calls = 0;
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), MSG_PEEK), 0);
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(rx.last_res, 3);
    cr_assert_eq(recv(sv[1], in, sizeof(in), 0), 3);
    up_loop_close(loop, sv[0]);
    up_loop_close(loop, sv[1]);
    up_loop_free(loop);
}

/* MSG_DONTWAIT means -EAGAIN, not a wait, on both back ends: the master
 * relies on it to send a connection elsewhere when a channel is full. */
static void dontwait_gives_eagain(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct rec rx = {.op.cb = rec_cb};
    char in[4];
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), MSG_DONTWAIT), 0);
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(rx.last_res, -EAGAIN);
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_close(loop, sv[0]);
    up_loop_close(loop, sv[1]);
    up_loop_free(loop);
}

/* A drained recv waits for bytes rather than try first, yet finds bytes
 * that came while nothing waited (an edge the epoll back end saw pass), and
 * bytes a poll saw without taking them. */
static void recv_drained_finds_bytes_and_waits(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct rec rx = {.op.cb = rec_cb};
    char in[16] = {0};
    cr_assert_eq(send(sv[0], "ab", 2, 0), 2);
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), 0), 0);
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(rx.last_res, 2, "a short read: the socket is drained");

    /* Bytes while no op waits, the loop running: the edge passes. */
    cr_assert_eq(send(sv[0], "cd", 2, 0), 2);
    run_briefly(loop);
    cr_assert_eq(up_loop_recv_drained(loop, &rx.op, sv[1], in, sizeof(in)), 0);
    run_until(loop, &rx.calls, 2);
    cr_assert_eq(rx.last_res, 2);
    cr_assert_eq(memcmp(in, "cd", 2), 0);

    /* Nothing there: it waits, then takes what comes. */
    cr_assert_eq(up_loop_recv_drained(loop, &rx.op, sv[1], in, sizeof(in)), 0);
    run_briefly(loop);
    cr_assert_eq(rx.calls, 2, "a drained recv completed with no data");
    cr_assert_eq(send(sv[0], "ef", 2, 0), 2);
    run_until(loop, &rx.calls, 3);
    cr_assert_eq(rx.last_res, 2);
    cr_assert_eq(memcmp(in, "ef", 2), 0);

    /* A poll that saw bytes left them: a drained recv still finds them. */
    cr_assert_eq(send(sv[0], "gh", 2, 0), 2);
    cr_assert_eq(up_loop_poll(loop, &rx.op, sv[1], POLLIN), 0);
    run_until(loop, &rx.calls, 4);
    cr_assert(rx.last_res > 0 && (rx.last_res & POLLIN));
    cr_assert_eq(up_loop_recv_drained(loop, &rx.op, sv[1], in, sizeof(in)), 0);
    run_until(loop, &rx.calls, 5);
    cr_assert_eq(rx.last_res, 2);
    cr_assert_eq(memcmp(in, "gh", 2), 0);

    /* A read that filled its buffer left the rest: a drained recv (the
     * caller's hint wrong) still finds it, with no new bytes to wake it. */
    cr_assert_eq(send(sv[0], "0123456789abcdefXY", 18, 0), 18);
    run_briefly(loop);
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), 0), 0);
    run_until(loop, &rx.calls, 6);
    cr_assert_eq(rx.last_res, (int)sizeof(in));
    cr_assert_eq(up_loop_recv_drained(loop, &rx.op, sv[1], in, sizeof(in)), 0);
    run_until(loop, &rx.calls, 7);
    cr_assert_eq(rx.last_res, 2);
    cr_assert_eq(memcmp(in, "XY", 2), 0);
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_close(loop, sv[0]);
    up_loop_close(loop, sv[1]);
    up_loop_free(loop);
}

static void cancel_delivers_ecanceled(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct rec rx = {.op.cb = rec_cb};
    char in[4];
    cr_assert_eq(up_loop_recv(loop, &rx.op, sv[1], in, sizeof(in), 0), 0);
    run_briefly(loop);
    up_loop_cancel(loop, &rx.op);
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(rx.calls, 1);
    cr_assert_eq(rx.last_res, -ECANCELED);
    cr_assert_eq(rx.op.busy, false);
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_close(loop, sv[0]);
    up_loop_close(loop, sv[1]);
    up_loop_free(loop);
}

static void accept_multishot(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int port;
    int lfd = up_test_listener(&port);
    struct rec acc = {.op.cb = rec_cb};
    cr_assert_eq(up_loop_accept(loop, &acc.op, lfd), 0);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = up_test_dial(port);
    }
    run_until(loop, &acc.calls, 3);
    cr_assert_eq(acc.calls, 3);
    cr_assert(acc.last_flags & UP_OP_F_MORE, "accept did not stay armed");
    cr_assert(acc.op.busy);
    for (int i = 0; i < 3; i++) {
        cr_assert_geq(acc.accepted[i], 0);
        up_close(acc.accepted[i]);
        up_close(c[i]);
    }
    up_loop_cancel(loop, &acc.op);
    run_until(loop, &acc.calls, 4);
    cr_assert_eq(acc.last_res, -ECANCELED);
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_close(loop, lfd);
    up_loop_free(loop);
}

static void fd_through_sendmsg(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int sv[2], p[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } c_out, c_in;
    memset(&c_out, 0, sizeof(c_out));
    memset(&c_in, 0, sizeof(c_in));
    char byte = 'x', got = 0;
    struct iovec iov_out = {&byte, 1}, iov_in = {&got, 1};
    struct msghdr out = {.msg_iov = &iov_out,
                         .msg_iovlen = 1,
                         .msg_control = c_out.buf,
                         .msg_controllen = sizeof(c_out.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&out);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[1], sizeof(int));
    struct msghdr in = {.msg_iov = &iov_in,
                        .msg_iovlen = 1,
                        .msg_control = c_in.buf,
                        .msg_controllen = sizeof(c_in.buf)};
    struct rec tx = {.op.cb = rec_cb}, rx = {.op.cb = rec_cb};
    cr_assert_eq(up_loop_recvmsg(loop, &rx.op, sv[1], &in, 0), 0);
    cr_assert_eq(up_loop_sendmsg(loop, &tx.op, sv[0], &out, 0), 0);
    run_until(loop, &rx.calls, 1);
    cr_assert_eq(rx.last_res, 1);
    cr_assert_eq(got, 'x');
    struct cmsghdr *rc = CMSG_FIRSTHDR(&in);
    cr_assert_not_null(rc);
    int fd;
    memcpy(&fd, CMSG_DATA(rc), sizeof(int));
    cr_assert_eq(write(fd, "z", 1), 1);
    char z;
    cr_assert_eq(read(p[0], &z, 1), 1);
    up_close(fd);
    up_close(p[0]);
    up_close(p[1]);
    up_loop_close(loop, sv[0]);
    up_loop_close(loop, sv[1]);
    up_loop_free(loop);
}

static void poll_and_read(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    struct rec pl = {.op.cb = rec_cb}, rd = {.op.cb = rec_cb};
    cr_assert_eq(up_loop_poll(loop, &pl.op, p[0], POLLIN), 0);
    run_briefly(loop);
    cr_assert_eq(pl.calls, 0);
    cr_assert_eq(write(p[1], "ab", 2), 2);
    run_until(loop, &pl.calls, 1);
    cr_assert(pl.last_res & POLLIN);
    char buf[4];
    cr_assert_eq(up_loop_read(loop, &rd.op, p[0], buf, sizeof(buf)), 0);
    run_until(loop, &rd.calls, 1);
    cr_assert_eq(rd.last_res, 2);
    up_loop_close(loop, p[0]);
    up_loop_close(loop, p[1]);
    up_loop_free(loop);
}

static int order[8];
static int norder;
struct tmr {
    struct up_timer t;
    int id;
};
static void tmr_cb(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    order[norder++] = ((struct tmr *)t)->id;
}

static void timers_fire_in_order(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    struct tmr t[4];
    norder = 0;
    for (int i = 0; i < 4; i++) {
        t[i] = (struct tmr){.t.cb = tmr_cb, .id = i};
    }
    up_timer_start(loop, &t[0].t, 30);
    up_timer_start(loop, &t[1].t, 10);
    up_timer_start(loop, &t[2].t, 20);
    up_timer_start(loop, &t[3].t, 15);
    up_timer_stop(loop, &t[3].t);
    cr_assert_not(up_timer_armed(&t[3].t));
    uint64_t start = up_loop_now(loop);
    while (norder < 3) {
        cr_assert_eq(up_loop_run_once(loop), 0);
        cr_assert_lt(up_loop_now(loop) - start, 2000);
    }
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 2);
    cr_assert_eq(order[2], 0);
    cr_assert_geq(up_loop_now(loop) - start, 30);
    up_loop_free(loop);
}

/* A timer that re-arms itself for "now" runs once per iteration: the
 * clock moves and I/O is looked at in between. It gives up after 1000 runs,
 * so that the old behaviour (running it again and again inside one
 * iteration, the clock standing still) fails here rather than hangs. */
struct again {
    struct up_timer t;
    int runs;
    uint64_t delay; /* re-arm with this many ms */
};

static void again_cb(struct up_loop *loop, struct up_timer *t)
{
    struct again *a = (struct again *)t;
    if (++a->runs < 1000) {
        up_timer_start(loop, t, a->delay);
    }
}

static void timer_rearmed_for_now_waits_for_the_next_iteration(enum up_backend be)
{
    struct up_loop *loop = new_loop(be);
    struct again a = {.t.cb = again_cb};
    struct again b = {.t.cb = again_cb};
    up_timer_start(loop, &a.t, 0);
    cr_assert_eq(up_loop_run_once(loop), 0);
    cr_assert_eq(a.runs, 1, "one iteration ran the timer %d times", a.runs);
    cr_assert_eq(up_loop_run_once(loop), 0);
    cr_assert_eq(a.runs, 2);
    /* Two such timers take turns; neither starves the other. */
    up_timer_start(loop, &b.t, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(up_loop_run_once(loop), 0);
    }
    cr_assert_eq(a.runs, 5);
    cr_assert_eq(b.runs, 3);
    up_timer_stop(loop, &a.t);
    up_timer_stop(loop, &b.t);
    up_loop_free(loop);
}

#define BOTH(name)                                                                                 \
    Test(loop, name##_io_uring, .timeout = 10)                                                     \
    {                                                                                              \
        name(UP_BACKEND_URING);                                                                    \
    }                                                                                              \
    Test(loop, name##_epoll, .timeout = 10)                                                        \
    {                                                                                              \
        name(UP_BACKEND_EPOLL);                                                                    \
    }

/* io_uring with SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them:
 * completions are reaped by the loop's own wait. */
#define ONE_THREAD(name)                                                                           \
    Test(loop, name##_io_uring_one_thread, .timeout = 10)                                          \
    {                                                                                              \
        one_thread = true;                                                                         \
        name(UP_BACKEND_URING);                                                                    \
    }

BOTH(recv_send)
BOTH(recv_drained_finds_bytes_and_waits)
ONE_THREAD(recv_send)
ONE_THREAD(recv_drained_finds_bytes_and_waits)
ONE_THREAD(cancel_delivers_ecanceled)
ONE_THREAD(accept_multishot)
ONE_THREAD(fd_through_sendmsg)
ONE_THREAD(timers_fire_in_order)
BOTH(dontwait_gives_eagain)
BOTH(cancel_delivers_ecanceled)
BOTH(accept_multishot)
BOTH(fd_through_sendmsg)
BOTH(poll_and_read)
BOTH(timers_fire_in_order)
BOTH(timer_rearmed_for_now_waits_for_the_next_iteration)
