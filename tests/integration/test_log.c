/*
 * log: up-run whose stderr is a pipe nobody reads (a log shipper that
 * stopped). The master must never block on it: every request is still
 * answered, `up-run status` answers, SIGUSR2 reloads, SIGTERM stops, and the
 * workers, whose stderr the master reads and passes on, never block either.
 * What could not be written is dropped in whole lines and counted (status,
 * metrics), and once the pipe is read again one line says how many.
 *
 * The pipe is a FIFO at the path ma_spawn() sends the master's stdout and
 * stderr to (ht_path("master.log")), made before the spawn; the test holds
 * its read end and reads it only when the test says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"

#define LG_READY_MS 10000
#define LG_GET "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
/* The master logs about 45 bytes per connection at UP_LOG=debug: 10000
 * connections are some 450 KiB, more than the pipe's 64 KiB and the
 * master's 256 KiB log buffer together. */
#define LG_DEBUG_REQUESTS 10000
#define LG_NOTICE " log lines dropped: stderr was not writable"

static struct {
    int rd;               /* owned: the read end of the master's stderr FIFO */
    char copy[PATH_MAX];  /* what was read from it so far */
    unsigned long status; /* "log: N lines dropped" in the last lg_status() */
} lg = {.rd = -1};

static void lg_fini(void)
{
    ht_fini(); /* stops the master first: it must not need the reader */
    if (lg.rd >= 0) {
        close(lg.rd);
        lg.rd = -1;
    }
}

/* Start up-run with stdout and stderr on a FIFO that nobody reads, and wait
 * until it serves. ma.log then names the file lg_read() copies the FIFO
 * into, so that failure messages show what was read. */
static void lg_start_stuck(const char *backend, const char *app, bool debug,
                           const char *const *extra)
{
    const char *fifo = ht_path("master.log");
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo %s: %s", fifo, strerror(errno));
    /* With a reader open, ma_spawn()'s open of the FIFO does not wait. */
    lg.rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    cr_assert_geq(lg.rd, 0, "open %s: %s", fifo, strerror(errno));
    if (debug) {
        setenv("UP_LOG", "debug", 1); /* this test's process only */
    }
    ma_spawn(backend, app, extra);
    cr_assert_str_eq(ma.log, fifo, "ma_spawn() no longer logs to %s", fifo);
    snprintf(lg.copy, sizeof(lg.copy), "%s", ht_path("stderr.txt"));
    snprintf(ma.log, sizeof(ma.log), "%s", lg.copy);
    int fd = open(lg.copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    ma_wait_serving(LG_READY_MS);
}

/* Read the FIFO into lg.copy until it contains needle. Returns 0 or
 * -ETIMEDOUT. */
static int lg_read(const char *needle, int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    int out = open(lg.copy, O_WRONLY | O_APPEND | O_CLOEXEC);
    char buf[65536];
    int ret = -ETIMEDOUT;

    cr_assert_geq(out, 0);
    while (up_test_now_ms() < deadline) {
        struct pollfd p = {.fd = lg.rd, .events = POLLIN};
        poll(&p, 1, 50);
        ssize_t n;
        while ((n = read(lg.rd, buf, sizeof(buf))) > 0) {
            cr_assert_eq(write(out, buf, (size_t)n), n);
        }
        if (up_test_file_contains(lg.copy, needle) == 1) {
            ret = 0;
            break;
        }
    }
    close(out);
    return ret;
}

/* `up-run status`, asserting it answers within 1 s; keeps the dropped-lines
 * count it shows in lg.status (0 without the line). */
static void lg_status(struct ma_status *s)
{
    long long t0 = up_test_now_ms();
    ma_status(s);
    long long took = up_test_now_ms() - t0;
    cr_assert_lt(took, 1000, "up-run status took %lld ms", took);
    lg.status = (unsigned long)s->dropped;
}

/* n requests, each on a new connection, each answered 200 within the
 * client's deadline (UP_TEST_TIMEOUT_MS). Returns the slowest, in ms. */
static long long lg_requests(int n, const char *raw)
{
    long long slowest = 0;
    for (int i = 0; i < n; i++) {
        struct up_test_resp r = {0};
        long long t0 = up_test_now_ms();
        int ret = up_test_request(ma.port, raw, &r);
        long long took = up_test_now_ms() - t0;
        cr_assert(ret == 0 && r.status == 200,
                  "request %d of %d: %s, status %d (the master blocked on its stderr?)", i + 1, n,
                  ret < 0 ? strerror(-ret) : "answered", r.status);
        slowest = took > slowest ? took : slowest;
        up_test_resp_free(&r);
    }
    return slowest;
}

/* The count in the first "N log lines dropped" line of the copy, or -1. */
static long lg_notice_count(char *text)
{
    char *at = strstr(text, LG_NOTICE);
    if (at == NULL) {
        return -1;
    }
    char *d = at;
    while (d > text && d[-1] >= '0' && d[-1] <= '9') {
        d--;
    }
    return strtol(d, NULL, 10);
}

/* Every line that came out is whole: it starts with a tag and a level (ours
 * and the workers' alike), or is one of the noisy app's complete lines. */
static void lg_assert_whole_lines(char *text)
{
    char *save = NULL;
    int lines = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        lines++;
        if (strncmp(line, "noisy ", 6) == 0) {
            size_t len = strlen(line);
            cr_assert(len > 8 && strcmp(line + len - 8, "lazy dog") == 0, "line %d is cut: '%s'",
                      lines, line);
            continue;
        }
        cr_assert(strstr(line, ": debug: ") != NULL || strstr(line, ": info: ") != NULL ||
                      strstr(line, ": warn: ") != NULL || strstr(line, ": error: ") != NULL,
                  "line %d is cut: '%s'", lines, line);
    }
    cr_assert_gt(lines, 100, "only %d lines came out", lines);
}

BACKEND_TEST(log, stuck_stderr_never_blocks_the_master, .timeout = 120, .fini = lg_fini)
{
    struct ma_status s;
    unsigned gen = 0;

    up_test_exclusive_load();
    lg_start_stuck(backend, up_test_bin("examples/echo.so"), true, NULL);
    long long slowest = lg_requests(LG_DEBUG_REQUESTS, LG_GET);
    lg_status(&s);
    cr_assert_gt(lg.status, 0, "no log line dropped after %d connections:\n%s", LG_DEBUG_REQUESTS,
                 s.text);
    unsigned long dropped = lg.status;

    /* SIGUSR2 is read from the signalfd by the same loop. */
    cr_assert_eq(kill(ma.pid, SIGUSR2), 0);
    ma_wait_workers(2, 2, &s);
    ma_get_pid(&gen);
    cr_assert_eq(gen, 2, "served by generation %u after the reload", gen);

    cr_assert_eq(lg_read(LG_NOTICE, 10000), 0, "no '%s' line once stderr was read; read:\n%s",
                 LG_NOTICE, ma_log_text());
    char *text = ht_file_text(lg.copy, NULL);
    long notice = lg_notice_count(text);
    lg_status(&s);
    cr_assert_eq((unsigned long)notice, lg.status,
                 "the line says %ld lines were dropped, status says %lu:\n%s", notice, lg.status,
                 s.text);
    cr_assert_geq((unsigned long)notice, dropped);
    fprintf(stderr,
            "[log] %s: %d connections with stderr stuck, slowest %lld ms; %lu lines dropped "
            "then, %ld by the end\n",
            backend, LG_DEBUG_REQUESTS, slowest, dropped, notice);
    lg_assert_whole_lines(text);
    free(text);
}

BACKEND_TEST(log, workers_keep_serving_when_stderr_is_stuck, .timeout = 120, .fini = lg_fini)
{
    struct ma_status s;
    struct up_test_resp r = {0};
    char metrics[32];
    int mport = up_test_free_port();
    cr_assert_gt(mport, 0);
    snprintf(metrics, sizeof(metrics), "127.0.0.1:%d", mport);
    const char *const extra[] = {"--metrics", metrics, NULL};

    up_test_exclusive_load();
    lg_start_stuck(backend, up_test_bin("examples/noisy.so"), false, extra);
    /* 20 lines of about 100 bytes a request: 500 requests are some 1 MiB
     * written by the workers into the pipes the master reads. */
    long long slowest =
        lg_requests(500, "GET /?lines=20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    lg_status(&s);
    cr_assert_gt(lg.status, 0, "no log line dropped:\n%s", s.text);
    /* The metric counts the same lines (a few more may have come from the
     * workers' pipes since). */
    int ret = up_test_request(mport, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    cr_assert_eq(ret, 0, "GET /metrics: %s", strerror(-ret));
    const char *at = strstr(r.body, "\nup_log_lines_dropped_total ");
    cr_assert_not_null(at, "no up_log_lines_dropped_total in /metrics:\n%s", r.body);
    unsigned long metric = strtoul(at + strlen("\nup_log_lines_dropped_total "), NULL, 10);
    cr_assert_geq(metric, lg.status, "/metrics says %lu, status said %lu", metric, lg.status);
    up_test_resp_free(&r);
    cr_assert_eq(lg_read(LG_NOTICE, 10000), 0, "no '%s' line once stderr was read; read:\n%s",
                 LG_NOTICE, ma_log_text());
    fprintf(stderr,
            "[log] %s: 500 noisy requests with stderr stuck, slowest %lld ms; %lu lines "
            "dropped\n",
            backend, slowest, lg.status);
    char *text = ht_file_text(lg.copy, NULL);
    lg_assert_whole_lines(text);
    free(text);
}

BACKEND_TEST(log, sigterm_with_stderr_stuck_exits, .timeout = 60, .fini = lg_fini)
{
    struct ma_status s;

    lg_start_stuck(backend, up_test_bin("examples/noisy.so"), true, NULL);
    lg_requests(200, "GET /?lines=20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    lg_status(&s);
    cr_assert_gt(lg.status, 0, "stderr is not stuck yet:\n%s", s.text);

    /* The stop drains the idle workers at once; what the master still has
     * to log goes nowhere, and neither its last flush nor the teardown's
     * drains (up to 2 s each for ops still in flight) may wait for a
     * reader. */
    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    int status = up_test_wait_exit(ma.pid, 6000);
    long long took = up_test_now_ms() - t0;
    cr_assert_eq(status, 0, "up-run after SIGTERM with stderr stuck: %s (status %d)",
                 status == -ETIMEDOUT ? "still running after 6 s" : "exited", status);
    ma.pid = -1;
    cr_assert_lt(took, 1500, "up-run took %lld ms to stop: it waited for its stderr", took);
    fprintf(stderr, "[log] %s: SIGTERM with stderr stuck: exited in %lld ms\n", backend, took);
}
