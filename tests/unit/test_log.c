/*
 * log: lines relayed from another process, and the non-blocking mode on a
 * stderr pipe that nobody reads, then reads again. Each test runs in its own
 * process (Criterion forks), so fd 2 and the log's state are its own.
 */
#include <criterion/criterion.h>

#include "../lib/testlib.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINES 5000 /* ~100 bytes each: more than the pipe and the buffer */
#define PAD "the quick brown fox jumps over the lazy dog, the quick brown fox jumps"

/* Make fd 2 the write end of a new pipe (blocking, as a shell leaves it);
 * returns the read end, non-blocking. */
static int stderr_to_pipe(void)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    return p[0];
}

/* Everything readable from fd now, appended to buf (cap bytes, NUL kept). */
static size_t read_some(int fd, char *buf, size_t *len, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (*len + 1 < cap && (n = read(fd, buf + *len, cap - 1 - *len)) > 0) {
        *len += (size_t)n;
        got += (size_t)n;
    }
    buf[*len] = '\0';
    return got;
}

static void noop_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    (void)t;
}

/* Read the pipe while running the loop (which writes on POLLOUT) until
 * nothing more comes and the log waits for nothing. */
static void drain_pipe(struct up_loop *loop, int rd, char *buf, size_t *len, size_t cap)
{
    long long deadline = up_test_now_ms() + 5000;
    for (;;) {
        size_t got = read_some(rd, buf, len, cap);
        if (got == 0 && up_loop_pending(loop) == 0) {
            return;
        }
        cr_assert_lt(up_test_now_ms(), deadline, "the log never finished writing");
        struct up_timer t = {.cb = noop_timer};
        up_timer_start(loop, &t, 10);
        cr_assert_eq(up_loop_run_once(loop), 0);
        up_timer_stop(loop, &t);
    }
}

static void log_lines(int from, int to)
{
    for (int i = from; i < to; i++) {
        up_log(UP_LOG_INFO, "line %06d %s", i, PAD);
    }
}

Test(log, relay_passes_on_whole_lines, .timeout = 10)
{
    int rd = stderr_to_pipe();
    struct up_log_relay r = {0};
    char buf[8192];
    size_t len = 0;
    static char big[3000];

    up_log_relay(&r, "a\nbb", 4);
    up_log_relay(&r, "b\nc", 3);
    read_some(rd, buf, &len, sizeof(buf));
    cr_assert_str_eq(buf, "a\nbbb\n", "a line is passed on once its newline came");
    up_log_relay_end(&r);
    read_some(rd, buf, &len, sizeof(buf));
    cr_assert_str_eq(buf, "a\nbbb\nc\n", "the last line is passed on at EOF");

    /* A line longer than UP_LOG_LINE_MAX goes in pieces, each a line. */
    len = 0;
    memset(big, 'x', sizeof(big));
    up_log_relay(&r, big, sizeof(big));
    up_log_relay(&r, "\n", 1);
    read_some(rd, buf, &len, sizeof(buf));
    cr_assert_eq(len, sizeof(big) + 2);
    cr_assert_eq(buf[UP_LOG_LINE_MAX], '\n');
    cr_assert_eq(buf[len - 1], '\n');
    close(rd);
}

static void stuck_then_read(enum up_backend be)
{
    int rd = stderr_to_pipe();
    struct up_loop *loop = NULL;
    const char *why = NULL;
    int r = up_loop_new(be, 64, &loop, &why);
    if (r < 0 && be == UP_BACKEND_URING && getenv("UP_REQUIRE_IO_URING") == NULL) {
        cr_skip_test("io_uring unavailable: %s", why ? why : strerror(-r));
    }
    cr_assert_eq(r, 0);
    up_log_init("t");
    cr_assert_eq(up_log_async(loop), 0);

    /* Nobody reads: none of these calls may block (the .timeout says so). */
    log_lines(0, LINES);
    uint64_t dropped = up_log_lines_dropped();
    cr_assert_gt(dropped, 0, "%d lines of 100 bytes all fit?", LINES);
    cr_assert_lt(dropped, LINES);
    cr_assert_eq(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK, 0,
                 "fd 2's shared description was made non-blocking");

    size_t cap = 4 << 20, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    drain_pipe(loop, rd, buf, &len, cap);
    log_lines(LINES, LINES + 1); /* after the gap, and no second notice */
    drain_pipe(loop, rd, buf, &len, cap);

    /* In order, every line whole, one gap, and the notice right there with
     * the gap's size. */
    int next = 0, notices = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        unsigned long long n;
        int seq;
        if (sscanf(line, "t: warn: %llu log lines dropped: stderr was not writable", &n) == 1) {
            cr_assert_eq(n, dropped, "the notice says %llu, %llu were dropped", n,
                         (unsigned long long)dropped);
            cr_assert_eq(notices++, 0, "a second notice");
            next += (int)n;
            continue;
        }
        cr_assert_eq(sscanf(line, "t: info: line %d ", &seq), 1, "not a whole line: '%s'", line);
        cr_assert_eq(seq, next, "line %d came where %d belongs", seq, next);
        cr_assert_eq(strlen(line), strlen("t: info: line 000000 " PAD), "cut: '%s'", line);
        next++;
    }
    cr_assert_eq(notices, 1);
    cr_assert_eq(next, LINES + 1);
    cr_assert_eq(up_log_lines_dropped(), dropped);
    cr_assert_eq(fcntl(STDERR_FILENO, F_GETFL) & O_NONBLOCK, 0);
    free(buf);
    up_log_async_end();
    up_loop_drain(loop, 1000);
    up_loop_free(loop);
    close(rd);
}

Test(log, stuck_pipe_drops_whole_lines_and_says_how_many_epoll, .timeout = 10)
{
    stuck_then_read(UP_BACKEND_EPOLL);
}

Test(log, stuck_pipe_drops_whole_lines_and_says_how_many_io_uring, .timeout = 10)
{
    stuck_then_read(UP_BACKEND_URING);
}

Test(log, async_end_never_waits, .timeout = 10)
{
    int rd = stderr_to_pipe();
    struct up_loop *loop = NULL;
    cr_assert_eq(up_loop_new(UP_BACKEND_EPOLL, 64, &loop, NULL), 0);
    up_log_init("t");
    cr_assert_eq(up_log_async(loop), 0);
    log_lines(0, LINES);
    cr_assert_eq(up_loop_pending(loop), 1, "no wait for POLLOUT armed");
    up_log_async_end();
    up_loop_drain(loop, 1000);
    cr_assert_eq(up_loop_pending(loop), 0);
    up_loop_free(loop);
    /* Without a loop: one attempt per line, never a wait. */
    uint64_t before = up_log_lines_dropped();
    log_lines(0, 100);
    cr_assert_eq(up_log_lines_dropped(), before + 100);
    close(rd);
}

Test(log, broken_pipe_counts_lines_and_does_not_spin, .timeout = 10)
{
    int rd = stderr_to_pipe();
    struct up_loop *loop = NULL;
    signal(SIGPIPE, SIG_IGN);
    close(rd); /* the reader is gone: EPIPE from now on */
    cr_assert_eq(up_loop_new(UP_BACKEND_EPOLL, 64, &loop, NULL), 0);
    up_log_init("t");
    cr_assert_eq(up_log_async(loop), 0);
    log_lines(0, 10);
    cr_assert_eq(up_log_lines_dropped(), 10);
    /* POLLOUT on a broken pipe is always ready (POLLERR): no wait armed. */
    cr_assert_eq(up_loop_pending(loop), 0);
    up_log_async_end();
    up_loop_free(loop);
}
