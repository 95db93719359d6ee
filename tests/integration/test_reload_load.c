/*
 * reload: the master (up-run) with real workers, reloaded while clients hold
 * Keep-Alive sockets and while up-load hammers it. What DESIGN.md promises
 * (sections 5 and 8): a Keep-Alive socket stays on its old worker until the
 * drain deadline and then moves to the new generation without being closed
 * (at once with --migrate=idle); a reload, however often and however broken
 * the new code, never fails a request nor resets a socket; and the master
 * ends with as many workers and fds as it started with.
 *
 * Each test runs twice through BACKEND_TEST (UP_BACKEND=io_uring, epoll).
 * Each test process starts one master and at most one up-load through the
 * harness, whose ht_fini() stops them by pid even after a failed assertion.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/harness.h"

#define RL_SETTLE_MS 5000

/* One GET on the keep-alive socket fd; asserts a complete 200 that keeps the
 * connection open. what says which request, for the failure message. */
static void rl_keepalive_get(int fd, struct up_test_resp *r, const char *what)
{
    ht_get(fd, r, what);
    cr_assert_not_null(strstr(r->body, "method: GET"), "%s: not echo's answer:\n%s", what, r->body);
    const char *conn = up_test_resp_header(r, "Connection");
    cr_assert(conn == NULL || strcasecmp(conn, "close") != 0,
              "%s: the server announced a close on a keep-alive socket:\n%s", what, r->head);
}

/* ---- Keep-Alive sockets across a reload ---- */

/* The drain deadline: long enough that a slow start of the new generation
 * (a sanitized build on a busy machine) still leaves time to see the socket
 * stay on its old worker. The deadline counts from the switch, which comes
 * after the signal, so bounds measured from the signal are safe. */
#define RL_DRAIN_MS 3000

/* --migrate=deadline: an idle socket stays on its old worker, old code and
 * all, until the drain deadline, then moves without being closed. */
BACKEND_TEST(reload, keepalive_stays_until_the_deadline_with_migrate_deadline, .timeout = 30,
             .fini = ht_fini)
{
    static const char *const args[] = {"--migrate=deadline", "-n", "2", "-t", "3s", NULL};
    struct up_test_resp r = {0};
    char what[64];

    /* The log of a failure then tells when each worker heard of its drain
     * and what it did with the socket (a few lines: one client). */
    ma.env[0] = "UP_LOG=debug";
    ma_start(backend, up_test_bin("examples/echo.so"), args);
    int fd = ht_client(ma.port);
    rl_keepalive_get(fd, &r, "first request");
    long pid_a = ht_resp_pid(&r);
    cr_assert_eq(ht_resp_gen(&r), 1, "first answer not from generation 1:\n%s", r.head);

    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    ma_wait_generation(2, HT_READY_MS);
    long long switched = up_test_now_ms() - t0;

    /* Phase 1: the old socket stays on its worker until the deadline. */
    rl_keepalive_get(fd, &r, "request right after the switch");
    long long at = up_test_now_ms() - t0;
    cr_assert_lt(at, RL_DRAIN_MS - 100,
                 "the switch took %lld ms: too close to the %d ms deadline to check that the "
                 "socket stays on its old worker\nlog:\n%s",
                 switched, RL_DRAIN_MS, ma_log_text());
    cr_assert_eq(ht_resp_gen(&r), 1,
                 "%lld ms after the reload, before the %d ms drain deadline, the old socket was "
                 "answered by generation %u:\n%s",
                 at, RL_DRAIN_MS, ht_resp_gen(&r), r.head);
    cr_assert_eq(ht_resp_pid(&r), pid_a,
                 "the old socket moved from pid %ld to %ld before the deadline", pid_a,
                 (long)ht_resp_pid(&r));

    /* Phase 2: a request every 100 ms for 3 s on the same socket; after the
     * deadline the idle socket moves to generation 2, never closed. */
    long long first_new = -1;
    long new_pid = 0;
    int n = 0;
    for (long long next = up_test_now_ms(); up_test_now_ms() - t0 < switched + RL_DRAIN_MS + 1500;
         next += 100) {
        up_test_sleep_until(next);
        snprintf(what, sizeof(what), "request %d after the switch", ++n);
        rl_keepalive_get(fd, &r, what);
        long long now = up_test_now_ms() - t0;
        unsigned gen = ht_resp_gen(&r);
        long pid = ht_resp_pid(&r);
        if (first_new < 0 && gen == 1) {
            cr_assert_eq(pid, pid_a, "%s: generation 1 but pid %ld, not %ld", what, pid, pid_a);
            continue;
        }
        cr_assert_eq(gen, 2, "%s (%lld ms after the reload): generation %u:\n%s", what, now, gen,
                     r.head);
        cr_assert_neq(pid, pid_a, "%s: generation 2 from the old pid %ld", what, pid);
        if (first_new < 0) {
            first_new = now;
            new_pid = pid;
            cr_assert_geq(first_new, RL_DRAIN_MS - 100,
                          "the socket moved to generation 2 %lld ms after the reload, before "
                          "the %d ms drain deadline",
                          first_new, RL_DRAIN_MS);
        }
        cr_assert_eq(pid, new_pid, "%s: the socket moved again, from pid %ld to %ld", what, new_pid,
                     pid);
    }
    cr_assert_geq(first_new, 0,
                  "the socket was still on generation 1 (pid %ld) %lld ms after the reload, past "
                  "the %d ms drain deadline\nlog:\n%s",
                  pid_a, up_test_now_ms() - t0, RL_DRAIN_MS, ma_log_text());
    fprintf(stderr, "[reload] %s: switch after %lld ms, socket moved to pid %ld after %lld ms\n",
            backend, switched, new_pid, first_new);
    up_test_resp_free(&r);
}

/* By default (--migrate=idle) an idle socket moves to the new generation
 * at once: the next request on it meets the new code. */
BACKEND_TEST(reload, keepalive_moves_at_once_by_default, .timeout = 30, .fini = ht_fini)
{
    static const char *const args[] = {"-n", "2", "-t", "10s", NULL};
    struct up_test_resp r = {0};
    char what[64];

    ma_start(backend, up_test_bin("examples/echo.so"), args);
    int fd = ht_client(ma.port);
    rl_keepalive_get(fd, &r, "first request");
    long pid_a = ht_resp_pid(&r);
    cr_assert_eq(ht_resp_gen(&r), 1, "first answer not from generation 1:\n%s", r.head);

    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    ma_wait_generation(2, HT_READY_MS);
    long long switched = up_test_now_ms();

    /* Handing back is asynchronous: allow 1 s, every request must succeed. */
    unsigned gen = 0;
    long pid = 0;
    for (int n = 1;; n++) {
        snprintf(what, sizeof(what), "request %d after the switch", n);
        rl_keepalive_get(fd, &r, what);
        gen = ht_resp_gen(&r);
        pid = ht_resp_pid(&r);
        if (gen == 2) {
            break;
        }
        cr_assert_eq(gen, 1, "%s: generation %u:\n%s", what, gen, r.head);
        cr_assert_eq(pid, pid_a, "%s: generation 1 but pid %ld, not %ld", what, pid, pid_a);
        cr_assert_lt(up_test_now_ms() - switched, 1000,
                     "the idle socket is still on generation 1 (pid %ld) "
                     "%lld ms after the switch\nlog:\n%s",
                     pid_a, up_test_now_ms() - switched, ma_log_text());
        up_test_nap(50);
    }
    cr_assert_neq(pid, pid_a, "generation 2 from the old pid %ld", pid);
    /* It stays there. */
    for (int n = 0; n < 3; n++) {
        rl_keepalive_get(fd, &r, "request after the move");
        cr_assert_eq(ht_resp_gen(&r), 2, "the socket went back to generation %u", ht_resp_gen(&r));
    }
    fprintf(stderr, "[reload] %s: switch after %lld ms, socket on generation 2 after %lld ms\n",
            backend, switched - t0, up_test_now_ms() - t0);
    up_test_resp_free(&r);
}

/* ---- under load ---- */

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, load_with_reload_every_100ms, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive",   "64",          "--fresh", "2",
                                       "--seconds",     "10",          "--path",  "/",
                                       "--expect-body", "Hello World", NULL};
    struct ld_result res;

    ma_start(backend, up_test_bin("examples/hello.so"), args);
    int fds_before = proc_fds_settled(ma.pid, -1, RL_SETTLE_MS);
    ld_start(0, load);
    int reloads = ma_reload_storm(100, 10000, NULL, NULL);
    ld_finish(0, 20000, &res);
    ld_report("reload", backend, &res);
    fprintf(stderr, "[reload] %s: %d reloads\n", backend, reloads);
    cr_assert_gt(res.requests, 1000, "only %ld requests in 10 s: %s", res.requests, res.line);
    ma_assert_settled(2, fds_before, RL_SETTLE_MS);
}

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, load_with_post_bodies_and_reload, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive", "64",           "--fresh", "2", "--seconds",
                                       "5",           "--post-bytes", "3000",    NULL};
    struct ld_result res;

    ma_start(backend, up_test_bin("examples/echo.so"), args);
    int fds_before = proc_fds_settled(ma.pid, -1, RL_SETTLE_MS);
    ld_start(0, load);
    int reloads = ma_reload_storm(100, 5000, NULL, NULL);
    ld_finish(0, 15000, &res);
    ld_report("reload", backend, &res);
    fprintf(stderr, "[reload] %s: %d reloads\n", backend, reloads);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    ma_assert_settled(2, fds_before, RL_SETTLE_MS);
}

/* Before reload i of the storm: a broken app (no_symbol, fail_init in turn)
 * on even i, hello back on odd i, so the last one is good. */
static char rl_app[PATH_MAX];

static void rl_swap_app(int i)
{
    static const char *const broken[] = {"examples/no_symbol.so", "examples/fail_init.so"};
    ht_install(up_test_bin(i % 2 == 0 ? broken[(i / 2) % 2] : "examples/hello.so"), rl_app);
}

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, failed_reload_under_load, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive",   "64",          "--fresh", "2",
                                       "--seconds",     "5",           "--path",  "/",
                                       "--expect-body", "Hello World", NULL};
    struct ld_result res;
    struct up_test_resp r = {0};

    snprintf(rl_app, sizeof(rl_app), "%s", ht_app("examples/hello.so"));
    ma_start(backend, rl_app, args);
    int fds_before = proc_fds_settled(ma.pid, -1, RL_SETTLE_MS);
    ld_start(0, load);
    int reloads = ma_reload_storm(200, 5000, rl_swap_app, NULL);
    ld_finish(0, 15000, &res);
    ld_report("reload", backend, &res);
    fprintf(stderr, "[reload] %s: %d reloads, half of them broken\n", backend, reloads);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    cr_assert_eq(up_test_file_contains(ma.log, "failed to start"), 1,
                 "the master did not log the failed reloads\nlog:\n%s", ma_log_text());
    ma_assert_settled(2, fds_before, RL_SETTLE_MS);
    cr_assert_eq(ma_fresh("/", &r), 0);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
}
