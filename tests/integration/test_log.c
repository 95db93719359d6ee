/*
 * log: up-run whose stderr is a pipe nobody reads (a log shipper that
 * stopped). The master must never block on it: every request is still
 * answered, `up-run status` answers, SIGUSR2 reloads, SIGTERM stops, and the
 * workers, whose stderr the master reads and passes on, never block either.
 * What could not be written is dropped in whole lines and counted (status,
 * metrics), and once the pipe is read again one line says how many.
 *
 * The pipe is the harness's ma.log_stuck: a FIFO that ma_spawn() sends the
 * master's stdout and stderr to, read only by ma_log_read(), into the file
 * ma.log then names.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/harness.h"

#define LG_GET "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
/* The master logs about 45 bytes per connection at UP_LOG=debug: 10000
 * connections are some 450 KiB, more than the pipe's 64 KiB and the
 * master's 256 KiB log buffer together. */
#define LG_DEBUG_REQUESTS 10000
#define LG_NOTICE " log lines dropped: stderr was not writable"

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

BACKEND_TEST(log, stuck_stderr_never_blocks_the_master, .timeout = 120, .fini = ht_fini)
{
    struct ma_status s;
    unsigned gen = 0;

    up_test_exclusive_load();
    ma.log_stuck = true;
    ma.env[0] = "UP_LOG=debug";
    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    long long slowest = ma_requests(LG_DEBUG_REQUESTS, LG_GET);
    ma_status(&s);
    cr_assert_lt(s.took, 1000, "up-run status took %lld ms", s.took);
    cr_assert_gt(s.dropped, 0, "no log line dropped after %d connections:\n%s", LG_DEBUG_REQUESTS,
                 s.text);
    long dropped = s.dropped;

    /* SIGUSR2 is read from the signalfd by the same loop. */
    ma_signal(SIGUSR2);
    ma_wait_workers(2, 2, &s);
    ma_get_pid(&gen);
    cr_assert_eq(gen, 2, "served by generation %u after the reload", gen);

    cr_assert_eq(ma_log_read(LG_NOTICE, 10000), 0, "no '%s' line once stderr was read; read:\n%s",
                 LG_NOTICE, ma_log_text());
    char *text = ht_file_text(ma.log, NULL);
    /* The count in the first "N log lines dropped" line, or -1. */
    char *at = strstr(text, LG_NOTICE);
    while (at != NULL && at > text && at[-1] >= '0' && at[-1] <= '9') {
        at--;
    }
    long notice = at != NULL ? strtol(at, NULL, 10) : -1;
    ma_status(&s);
    cr_assert_lt(s.took, 1000, "up-run status took %lld ms", s.took);
    cr_assert_eq(notice, s.dropped, "the line says %ld lines were dropped, status says %ld:\n%s",
                 notice, s.dropped, s.text);
    cr_assert_geq(notice, dropped);
    fprintf(stderr,
            "[log] %s: %d connections with stderr stuck, slowest %lld ms; %ld lines dropped "
            "then, %ld by the end\n",
            backend, LG_DEBUG_REQUESTS, slowest, dropped, notice);
    lg_assert_whole_lines(text);
    free(text);
}

BACKEND_TEST(log, workers_keep_serving_when_stderr_is_stuck, .timeout = 120, .fini = ht_fini)
{
    struct ma_status s;
    char metrics[32];
    int mport = ht_metrics_addr(metrics, sizeof(metrics));
    const char *const extra[] = {"--metrics", metrics, NULL};

    up_test_exclusive_load();
    ma.log_stuck = true;
    ma_start(backend, up_test_bin("examples/noisy.so"), extra);
    /* 20 lines of about 100 bytes a request: 500 requests are some 1 MiB
     * written by the workers into the pipes the master reads. */
    long long slowest =
        ma_requests(500, "GET /?lines=20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ma_status(&s);
    cr_assert_lt(s.took, 1000, "up-run status took %lld ms", s.took);
    cr_assert_gt(s.dropped, 0, "no log line dropped:\n%s", s.text);
    /* The metric counts the same lines (a few more may have come from the
     * workers' pipes since). */
    long metric = ht_metric(mport, "up_log_lines_dropped_total");
    cr_assert_geq(metric, s.dropped, "/metrics says %ld, status said %ld", metric, s.dropped);
    cr_assert_eq(ma_log_read(LG_NOTICE, 10000), 0, "no '%s' line once stderr was read; read:\n%s",
                 LG_NOTICE, ma_log_text());
    fprintf(stderr,
            "[log] %s: 500 noisy requests with stderr stuck, slowest %lld ms; %ld lines "
            "dropped\n",
            backend, slowest, s.dropped);
    char *text = ht_file_text(ma.log, NULL);
    lg_assert_whole_lines(text);
    free(text);
}

BACKEND_TEST(log, sigterm_with_stderr_stuck_exits, .timeout = 60, .fini = ht_fini)
{
    struct ma_status s;

    ma.log_stuck = true;
    ma.env[0] = "UP_LOG=debug";
    ma_start(backend, up_test_bin("examples/noisy.so"), NULL);
    ma_requests(200, "GET /?lines=20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ma_status(&s);
    cr_assert_lt(s.took, 1000, "up-run status took %lld ms", s.took);
    cr_assert_gt(s.dropped, 0, "stderr is not stuck yet:\n%s", s.text);

    /* The stop drains the idle workers at once; what the master still has
     * to log goes nowhere, and neither its last flush nor the teardown's
     * drains (up to 2 s each for ops still in flight) may wait for a
     * reader. */
    long long t0 = up_test_now_ms();
    ma_signal(SIGTERM);
    int status = up_test_wait_exit(ma.pid, 6000);
    long long took = up_test_now_ms() - t0;
    cr_assert_eq(status, 0, "up-run after SIGTERM with stderr stuck: %s (status %d)",
                 status == -ETIMEDOUT ? "still running after 6 s" : "exited", status);
    ma.pid = -1;
    cr_assert_lt(took, 1500, "up-run took %lld ms to stop: it waited for its stderr", took);
    fprintf(stderr, "[log] %s: SIGTERM with stderr stuck: exited in %lld ms\n", backend, took);
}
