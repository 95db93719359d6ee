/*
 * acceptor, alone on a real loop (both back ends) and a real listening
 * socket: pause/resume in any order with the cancel's completion, back-off
 * on EMFILE without spinning, and stop.
 */
#include <criterion/criterion.h>

#include "../lib/fdcount.h"
#include "../lib/testlib.h"
#include "../lib/testloop.h"
#include "acceptor.h"
#include "fd.h"
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct ac {
    struct up_acceptor a;
    int conns;
    int errors;
    int first_errors;
    int recovered;
    int stopped;
    int paused;
    int fds[64];
};

static void ac_conn(struct up_acceptor *a, int fd)
{
    struct ac *t = a->ctx;
    if (t->conns < 64) {
        t->fds[t->conns] = fd;
    } else {
        up_close(fd);
    }
    t->conns++;
}

static void ac_error(struct up_acceptor *a, int err, bool first)
{
    struct ac *t = a->ctx;
    (void)err;
    t->errors++;
    t->first_errors += first;
}

static void ac_recovered(struct up_acceptor *a)
{
    ((struct ac *)a->ctx)->recovered++;
}

static void ac_stopped(struct up_acceptor *a)
{
    ((struct ac *)a->ctx)->stopped++;
}

static void ac_paused(struct up_acceptor *a)
{
    struct ac *t = a->ctx;
    cr_assert(!up_acceptor_busy(a), "on_paused with an accept still in flight");
    t->paused++;
}

static const struct up_acceptor_cbs ac_cbs = {
    .on_conn = ac_conn,
    .on_error = ac_error,
    .on_recovered = ac_recovered,
    .on_stopped = ac_stopped,
    .on_paused = ac_paused,
};

static void teardown(struct up_loop *loop, struct ac *t, int lfd)
{
    up_acceptor_stop(&t->a);
    up_loop_drain(loop, 1000);
    cr_assert_eq(t->stopped, 1, "on_stopped ran %d times", t->stopped);
    cr_assert_eq(up_loop_pending(loop), 0);
    for (int i = 0; i < t->conns && i < 64; i++) {
        up_loop_close(loop, t->fds[i]);
    }
    up_loop_close(loop, lfd);
    up_loop_free(loop);
}

/* A pause whose cancel is still in flight when the resume comes: the
 * cancel's final completion must re-arm the accept, or the port goes
 * silent with connections in the backlog. */
static void resume_before_cancel_completes(enum up_backend be)
{
    struct up_loop *loop = up_test_new_loop(be);
    int port;
    int lfd = up_test_listener(&port);
    struct ac t = {0};
    up_acceptor_init(&t.a, loop, lfd, &ac_cbs, &t);
    cr_assert_eq(up_acceptor_start(&t.a), 0);
    int c1 = up_test_dial(port);
    up_test_run_for(loop, 2000, &t.conns, 1);
    cr_assert_eq(t.conns, 1);

    up_acceptor_pause(&t.a);
    up_acceptor_resume(&t.a); /* the cancel has not completed yet */
    int c2 = up_test_dial(port);
    up_test_run_for(loop, 2000, &t.conns, 2);
    cr_assert_eq(t.conns, 2, "the listener stayed silent after pause, resume, cancel");
    cr_assert_eq(t.paused, 0, "on_paused, but the accept was armed again");

    /* And the other order: the cancel completes while paused, which is
     * reported once: no accept can come now. */
    up_acceptor_pause(&t.a);
    cr_assert(up_acceptor_busy(&t.a), "the cancel ended within the pause");
    cr_assert(!up_acceptor_quiet(&t.a), "quiet with its cancel in flight");
    int dummy = 0;
    up_test_run_for(loop, 50, &dummy, -1);
    cr_assert_eq(t.paused, 1, "on_paused ran %d times", t.paused);
    cr_assert(!up_acceptor_busy(&t.a));
    cr_assert(up_acceptor_quiet(&t.a));
    int c3 = up_test_dial(port);
    up_test_run_for(loop, 100, &dummy, -1);
    cr_assert_eq(t.conns, 2, "accepted while paused");
    up_acceptor_resume(&t.a);
    up_test_run_for(loop, 2000, &t.conns, 3);
    cr_assert_eq(t.conns, 3, "the backlog was not taken after resume");
    cr_assert_eq(t.errors, 0);
    up_close(c1);
    up_close(c2);
    up_close(c3);
    teardown(loop, &t, lfd);
}

Test(acceptor, resume_before_cancel_completes_io_uring, .timeout = 10)
{
    resume_before_cancel_completes(UP_BACKEND_URING);
}

Test(acceptor, resume_before_cancel_completes_epoll, .timeout = 10)
{
    resume_before_cancel_completes(UP_BACKEND_EPOLL);
}

/* Out of fds: one report per streak, retries at the back-off rate (not a
 * spin), and accepting resumes by itself when fds are free again. */
static void emfile_backs_off(enum up_backend be)
{
    struct up_loop *loop = up_test_new_loop(be);
    int port;
    int lfd = up_test_listener(&port);
    struct ac t = {0};
    up_acceptor_init(&t.a, loop, lfd, &ac_cbs, &t);
    int c1 = up_test_dial(port);
    /* The next fd this process would get is over the limit: accept fails. */
    struct rlimit saved;
    cr_assert_eq(up_test_fd_limit_reached(&saved), 0);
    (void)up_acceptor_start(&t.a);
    int dummy = 0;
    up_test_run_for(loop, 550, &dummy, -1);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    cr_assert_eq(t.conns, 0);
    cr_assert_eq(t.first_errors, 1, "one report per streak, got %d", t.first_errors);
    /* 550 ms at one retry per UP_ACCEPTOR_RETRY_MS: about 6, never a spin. */
    cr_assert(t.errors >= 2 && t.errors <= 8, "%d accept failures in 550 ms", t.errors);
    up_test_run_for(loop, 2000, &t.conns, 1);
    cr_assert_eq(t.conns, 1, "not accepting again after fds came back");
    cr_assert_eq(t.recovered, 1);
    up_close(c1);
    teardown(loop, &t, lfd);
}

Test(acceptor, emfile_backs_off_and_recovers_io_uring, .timeout = 10)
{
    emfile_backs_off(UP_BACKEND_URING);
}

Test(acceptor, emfile_backs_off_and_recovers_epoll, .timeout = 10)
{
    emfile_backs_off(UP_BACKEND_EPOLL);
}

/* Stop with nothing in flight reports at once; paused or backing off, no
 * timer of the acceptor is left behind. */
static void stop_any_time(enum up_backend be)
{
    struct up_loop *loop = up_test_new_loop(be);
    int port;
    int lfd = up_test_listener(&port);
    struct ac t = {0};
    up_acceptor_init(&t.a, loop, lfd, &ac_cbs, &t);
    cr_assert(!up_acceptor_quiet(&t.a));
    up_acceptor_stop(&t.a); /* never started */
    cr_assert_eq(t.stopped, 1);
    cr_assert(up_acceptor_quiet(&t.a));
    cr_assert(!up_timer_armed(&t.a.retry));

    struct ac u = {0};
    up_acceptor_init(&u.a, loop, lfd, &ac_cbs, &u);
    cr_assert_eq(up_acceptor_start(&u.a), 0);
    up_acceptor_pause(&u.a);
    up_acceptor_stop(&u.a); /* cancel in flight: reported from the loop */
    cr_assert_eq(u.stopped, 0);
    cr_assert(!up_acceptor_quiet(&u.a), "stopped with its cancel in flight");
    up_loop_drain(loop, 1000);
    cr_assert_eq(u.stopped, 1);
    cr_assert(up_acceptor_quiet(&u.a));
    cr_assert(!up_timer_armed(&u.a.retry));
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_close(loop, lfd);
    up_loop_free(loop);
}

Test(acceptor, stop_any_time_io_uring, .timeout = 10)
{
    stop_any_time(UP_BACKEND_URING);
}

Test(acceptor, stop_any_time_epoll, .timeout = 10)
{
    stop_any_time(UP_BACKEND_EPOLL);
}
