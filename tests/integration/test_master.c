/*
 * master: up-run and its workers, driven from outside as an operator drives
 * them: the port, signals, `up-run status|reload|stop` on the control socket,
 * /proc, and the master's log. Reloads, broken code, --watch and respawn
 * are in test_master_reload.c.
 *
 * Each test runs twice through BACKEND_TEST (UP_BACKEND=io_uring and
 * UP_BACKEND=epoll) and starts at most one master at a time, kept in the
 * harness's `ma` so that ht_fini() stops it by pid even after a failed
 * assertion, and kills any worker it learned of that outlived it.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "head.h"

/* ---- start, titles, routing ---- */

BACKEND_TEST(master, workers_start_and_answer, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    struct ma_status s;
    pid_t pids[2];
    char want[64];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_get(&r);
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);

    ma_wait_workers(1, 2, &s);
    cr_assert_eq(s.ngens, 1, "one generation expected:\n%s", s.text);
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", pids, 2), 2, "status:\n%s", s.text);
    cr_assert_neq(pids[0], pids[1], "status:\n%s", s.text);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(proc_ppid(pids[i]), ma.pid, "worker %d is not a child of the master %d",
                     (int)pids[i], (int)ma.pid);
    }
    snprintf(want, sizeof(want), "backend=%s", backend);
    cr_assert_not_null(strstr(s.text, want), "UP_BACKEND=%s not in effect:\n%s", backend, s.text);
}

/* The master's and its workers' titles, in comm and in cmdline. */
static void ma_assert_titles(const char *name)
{
    struct ma_status s;
    char want[64], buf[256];
    pid_t pids[2];
    pid_t kids[8];

    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    snprintf(want, sizeof(want), "%s master", name);
    cr_assert_gt(proc_read(ma.pid, "comm", buf, sizeof(buf)), 0);
    cr_assert_eq(strcmp(strtok(buf, "\n"), want), 0, "master comm '%s', expected '%s'", buf, want);
    cr_assert_gt(proc_read(ma.pid, "cmdline", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, want, "master cmdline '%s', expected '%s'", buf, want);

    snprintf(want, sizeof(want), "%s worker", name);
    int nchildren = proc_children(ma.pid, true, kids, 8);
    for (int i = 0; i < nchildren && i < 8; i++) {
        pid_t pid = kids[i];
        cr_assert(ht_pid_in(pid, pids, 2), "child %d of the master is not a ready worker:\n%s",
                  (int)pid, s.text);
        proc_read(pid, "comm", buf, sizeof(buf));
        cr_assert_eq(strcmp(strtok(buf, "\n"), want), 0, "worker %d comm '%s', expected '%s'",
                     (int)pid, buf, want);
        proc_read(pid, "cmdline", buf, sizeof(buf));
        cr_assert_str_eq(buf, want, "worker %d cmdline '%s', expected '%s'", (int)pid, buf, want);
    }
    cr_assert_eq(nchildren, 2, "the master has %d children, expected its 2 workers:\n%s", nchildren,
                 s.text);
}

BACKEND_TEST(master, titles, .timeout = 30, .fini = ht_fini)
{
    static const char *const named[] = {"-T", "myapp", NULL};

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_assert_titles("up");
    int status = up_test_stop(ma.pid, HT_STOP_MS);
    ma.pid = -1;
    cr_assert_eq(status, 0, "up-run exit status %d after SIGTERM", status);

    ma_start(backend, up_test_bin("examples/hello.so"), named);
    ma_assert_titles("myapp");
}

BACKEND_TEST(master, round_robin, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    pid_t ready[2];
    pid_t seen[8];

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", ready, 2);
    for (int i = 0; i < 8; i++) {
        seen[i] = ma_get_pid(NULL);
        cr_assert(ht_pid_in(seen[i], ready, 2), "request %d served by %d, not a worker:\n%s", i,
                  (int)seen[i], s.text);
    }
    cr_assert_neq(seen[0], seen[1], "two requests in a row went to pid %d", (int)seen[0]);
    for (int i = 2; i < 8; i++) {
        cr_assert_eq(seen[i], seen[i - 2],
                     "request %d went to %d, not %d: not strictly alternating (%d %d %d %d %d %d "
                     "%d %d)",
                     i, (int)seen[i], (int)seen[i - 2], (int)seen[0], (int)seen[1], (int)seen[2],
                     (int)seen[3], (int)seen[4], (int)seen[5], (int)seen[6], (int)seen[7]);
    }
}

BACKEND_TEST(master, ready_manual, .timeout = 30, .fini = ht_fini)
{
    static const char *const manual[] = {"--ready=manual", NULL};
    struct up_test_resp r = {0};

    /* The master listens before any worker runs: a request sent at once
     * waits in the master until the app called up_ready(), 300 ms after
     * its init. */
    long long t0 = up_test_now_ms();
    ma_spawn(backend, up_test_bin("examples/manual_ready.so"), manual);
    int ret = up_test_wait_ready(ma.pid, ma.port, HT_READY_MS);
    cr_assert_eq(ret, 0, "up-run not listening: %s; log:\n%s", strerror(-ret), ma_log_text());
    ma_get(&r);
    long long took = up_test_now_ms() - t0;
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    cr_assert_str_eq(r.body, "Hello World");
    cr_assert_not_null(up_test_resp_header(&r, "X-Up-Pid"), "head:\n%s", r.head);
    cr_assert_geq(took, 250, "answered %lld ms after start, before the app called up_ready()",
                  took);
    cr_assert_eq(up_test_file_contains(ma.log, "generation 1 serving"), 1, "log:\n%s",
                 ma_log_text());
    for (int i = 0; i < 5; i++) {
        ma_get(&r);
        cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    }
    up_test_resp_free(&r);
}

/* ---- a master that dies ---- */

BACKEND_TEST(master, master_sigkill_takes_workers, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    pid_t pids[2];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    cr_assert_eq(kill(ma.pid, SIGKILL), 0);
    long long t0 = up_test_now_ms();
    int status = up_test_wait_exit(ma.pid, 2000);
    cr_assert_eq(status, 128 + SIGKILL, "master exit status %d", status);
    ma.pid = -1;
    long long took = proc_wait_gone(pids, 2, 3000);
    long long measured = took >= 0 ? took : up_test_now_ms() - t0;
    cr_log_info("master_sigkill_takes_workers (%s): workers gone %lld ms after the master's "
                "SIGKILL",
                backend, measured);
    cr_assert_geq(took, 0, "workers %d and %d still alive 3 s after the master died; log:\n%s",
                  (int)pids[0], (int)pids[1], ma_log_text());
    cr_assert_leq(took, 1500, "workers took %lld ms to follow their master (limit 1500)", took);
}

/* ---- what the master answers itself ---- */

/* Read until the peer closes; assert that exactly the master's canned
 * answer for status arrived, within min_ms..max_ms of t0 (max_ms 0: any). */
static void ma_expect_answer(int fd, int status, long long t0, int min_ms, int max_ms)
{
    char want[UP_HEAD_ERROR_MAX];
    char buf[4096];
    size_t want_len = up_head_error_response(status, want, sizeof(want));
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    long long took = up_test_now_ms() - t0;

    cr_assert_gt(want_len, 0);
    cr_assert(end == 0 || end == ECONNRESET, "no close after the %d: %s (got %d bytes: %s)", status,
              strerror(end), n, buf);
    cr_assert_eq((size_t)n, want_len, "expected the master's %d, got %d bytes:\n%s\nlog:\n%s",
                 status, n, buf, ma_log_text());
    cr_assert_eq(memcmp(buf, want, want_len), 0, "expected:\n%s\ngot:\n%s", want, buf);
    cr_assert_not_null(strstr(buf, "\r\nConnection: close\r\n"), "%s", buf);
    if (end == ECONNRESET) {
        cr_log_warn("the %d came, but the connection ended with a reset, not a FIN", status);
    }
    cr_assert_geq(took, min_ms, "the %d came after %lld ms (expected >= %d)", status, took, min_ms);
    cr_assert(max_ms == 0 || took <= max_ms, "the %d came after %lld ms (expected <= %d)", status,
              took, max_ms);
}

BACKEND_TEST(master, master_answers_400_408_431, .timeout = 30, .fini = ht_fini)
{
    static const char *const fast[] = {"--header-timeout", "500ms", NULL};
    static const char partial[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    static const char garbage[] = "this is not http\r\n\r\n";
    struct ma_status before, after;
    char buf[256];
    int fd;

    ma_start(backend, up_test_bin("examples/hello.so"), fast);
    ma_wait_workers(1, 2, &before);

    fd = ht_connect(ma.port);
    ht_send(fd, garbage, sizeof(garbage) - 1);
    ma_expect_answer(fd, 400, up_test_now_ms(), 0, 0);
    close(fd);

    size_t big = 20 * 1024;
    char *raw = malloc(big + 64);
    cr_assert_not_null(raw);
    int n = snprintf(raw, 64, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(raw + n, 'a', big);
    memcpy(raw + n + big, "\r\n\r\n", 4);
    fd = ht_connect(ma.port);
    ht_send(fd, raw, (size_t)n + big + 4);
    free(raw);
    ma_expect_answer(fd, 431, up_test_now_ms(), 0, 0);
    close(fd);

    fd = ht_connect(ma.port);
    long long t0 = up_test_now_ms();
    ht_send(fd, partial, sizeof(partial) - 1);
    ma_expect_answer(fd, 408, t0, 400, 1500);
    close(fd);

    /* A client that sends nothing: TCP_DEFER_ACCEPT may hold it in the
     * kernel for about a second before the master sees it, then the header
     * timeout runs. It gets no bytes and a clean close. */
    fd = ht_connect(ma.port);
    t0 = up_test_now_ms();
    n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    long long took = up_test_now_ms() - t0;
    close(fd);
    cr_log_info("master_answers_400_408_431 (%s): a silent client was closed after %lld ms",
                backend, took);
    cr_assert_eq(end, 0, "silent client: %s instead of a clean EOF after %lld ms", strerror(end),
                 took);
    cr_assert_eq(n, 0, "silent client got %d bytes: %s", n, buf);
    cr_assert_geq(took, 400, "silent client closed after %lld ms, before the header timeout", took);

    /* The workers saw none of them; the master answered three. */
    ma_status(&after);
    cr_assert_eq(after.handed, before.handed, "a bad request reached a worker:\n%s\nthen\n%s",
                 before.text, after.text);
    cr_assert_eq(after.answered, before.answered + 3, "before:\n%s\nafter:\n%s", before.text,
                 after.text);
}

/* ---- the command line ---- */

Test(master, bad_cli_exits_2, .timeout = 30, .fini = ht_fini)
{
    struct {
        const char *args[4];
        const char *needle;
    } cases[] = {
        {{"--bogus-flag"}, "--bogus-flag"},
        {{"-p", "70000"}, "70000"},
        {{"-t", "10x"}, "10x"},
        {{"-n", "cpus+"}, "cpus+"},
        {{"--ready=maybe"}, "maybe"},
        {{"MISSING"}, "missing.so"},
    };
    const char *hello = up_test_bin("examples/hello.so");
    char ctl[PATH_MAX];
    char text[8192];

    snprintf(ctl, sizeof(ctl), "%s", ht_path("cli.sock"));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[8];
        int n = 0;
        args[n++] = "--control";
        args[n++] = ctl;
        bool missing = strcmp(cases[i].args[0], "MISSING") == 0;
        for (int k = 0; !missing && cases[i].args[k] != NULL; k++) {
            args[n++] = cases[i].args[k];
        }
        args[n++] = missing ? ht_path("missing.so") : hello;
        args[n] = NULL;
        int status = ma_run(args, NULL, 5000, text, sizeof(text));
        cr_assert_eq(status, 2, "case %zu (%s): exit status %d, expected 2; output:\n%s", i,
                     cases[i].needle, status, text);
        cr_assert_not_null(strstr(text, cases[i].needle),
                           "case %zu: the message does not name '%s':\n%s", i, cases[i].needle,
                           text);
        cr_assert_not_null(strstr(text, "Try 'up-run --help'"), "case %zu: no hint:\n%s", i, text);
    }
}

/* ---- stopping ---- */

/* Run another up-run that listens on listen (-l) with its control socket
 * at ctl (in the test's dir): it must fail to start (exit 3). Its output
 * goes to out. */
static void refused_on(const char *listen, const char *ctl, char *out, size_t cap)
{
    const char *const args[] = {"-l",        listen,       "--allow-root",
                                "--control", ht_path(ctl), up_test_bin("examples/echo.so"),
                                NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, cap), 3, "%s", out);
}

/* A second up-run started on a port a master serves (a forgotten
 * instance, old code, a copy with --control elsewhere as the first one's
 * error advises) fails at once and says why. It once bound beside the
 * first with SO_REUSEPORT and silently took a share of its connections. */
Test(master, a_second_master_on_the_same_port_fails_and_says_why, .timeout = 30, .fini = ht_fini)
{
    ma_start("auto", up_test_bin("examples/hello.so"), NULL);
    char addr[32], out[4096];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ma.port);
    refused_on(addr, "second.sock", out, sizeof(out));
    cr_assert_not_null(strstr(out, "Address already in use (another server listens there"), "%s",
                       out);
    cr_assert_not_null(strstr(out, "--reuseport shares a port"), "%s", out);
    /* Every connection is still the first master's. */
    for (int i = 0; i < 20; i++) {
        struct up_test_resp r = {0};
        cr_assert_eq(ma_fresh("/", &r), 0);
        cr_assert(strstr(r.body, "Hello World") != NULL, "answered by someone else: %s", r.head);
        up_test_resp_free(&r);
    }
    /* A unix socket path another server listens on: the same refusal,
     * with the tool that shows unix sockets (and no --reuseport, which
     * unix sockets do not have). It never accepts, so its backlog of one
     * is full after the first probes of up-run's wait: a probe that
     * blocked would hang there. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", ht_path("other.sock"));
    int other = ht_listener((struct sockaddr *)&un, sizeof(un), 1);
    char unix_addr[PATH_MAX];
    snprintf(unix_addr, sizeof(unix_addr), "unix:%s", un.sun_path);
    refused_on(unix_addr, "third.sock", out, sizeof(out));
    cr_assert_not_null(strstr(out, "Address already in use (another server listens there: `ss "
                                   "-lxp` shows which"),
                       "%s", out);
    cr_assert_null(strstr(out, "--reuseport"), "%s", out);
    close(other);
}

/* A supervisor that restarts up-run at once after a kill (systemd with
 * RestartSec=0, runit, a container's restart policy) finds the port and
 * the control socket still taken: the killed master's io_uring ring holds
 * its listeners until the kernel's exit work lets go, 5-12 ms after the
 * reap (listen.h). The new master exited 3 with "Address already in use";
 * it now waits for them, and a live server is still refused (above). */
Test(master, a_restart_right_after_a_kill_waits_for_its_addresses, .timeout = 60, .fini = ht_fini)
{
    const char *hello = up_test_bin("examples/hello.so");
    /* As it happens: killed, reaped, started again at once. */
    ma_start("io_uring", hello, NULL);
    pid_t old = ma.pid;
    ma_signal(SIGKILL);
    cr_assert_eq(up_test_wait_exit(old, 5000), 128 + SIGKILL);
    ma.same_port = true;
    ma_start("io_uring", hello, NULL);
    int status = up_test_stop(ma.pid, HT_STOP_MS);
    ma.pid = -1;
    cr_assert_eq(status, 0, "%s", ma_log_text());

    /* The same, with the kernel's few ms held for 300 at the port, 600 at
     * the control socket and 900 at the metrics port by listeners of the
     * test's own. */
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ma.port)};
    in.sin_addr.s_addr = htonl(INADDR_ANY);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%.*s", (int)sizeof(un.sun_path) - 1, ma.ctl);
    unlink(un.sun_path);
    char metrics[64];
    int mport = ht_metrics_addr(metrics, sizeof(metrics));
    struct sockaddr_in min = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mport)};
    min.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = ht_listener((struct sockaddr *)&in, sizeof(in), 8);
    int ctl = ht_listener((struct sockaddr *)&un, sizeof(un), 8);
    int met = ht_listener((struct sockaddr *)&min, sizeof(min), 8);
    const char *const extra[] = {"--metrics", metrics, NULL};
    ma_spawn("epoll", hello, extra);
    usleep(300 * 1000);
    cr_assert(up_test_alive(ma.pid), "gave up on a port taken for 300 ms:\n%s", ma_log_text());
    close(port);
    usleep(300 * 1000);
    cr_assert(up_test_alive(ma.pid), "gave up on a control socket taken for 600 ms:\n%s",
              ma_log_text());
    close(ctl);
    usleep(300 * 1000);
    cr_assert(up_test_alive(ma.pid), "gave up on a metrics port taken for 900 ms:\n%s",
              ma_log_text());
    close(met);
    ma_wait_serving(HT_READY_MS);
    cr_assert_eq(ht_metric(mport, "up_healthy"), 1);
    cr_assert_not_null(strstr(ma_log_text(), "was taken for"), "%s", ma_log_text());
    struct ma_status s;
    ma_status(&s); /* the control socket is the new master's */
    cr_assert_eq(s.ngens, 1, "%s", s.text);
}

/* A reload or stop signal that comes while a start waits for a taken port
 * (up to 2 s, above), which then fails: the teardown read it, and a
 * reload there started a generation from options never set up ("cannot
 * copy (null)"), a stop logged a graceful stop. The start now fails as
 * what it is, alone. */
BACKEND_TEST(master, a_signal_to_a_start_that_fails_acts_on_nothing, .timeout = 30, .fini = ht_fini)
{
    const int sigs[] = {SIGHUP, SIGUSR2, SIGTERM};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        struct sockaddr_in in = {.sin_family = AF_INET};
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int held = ht_listener((struct sockaddr *)&in, sizeof(in), 8);
        socklen_t len = sizeof(in);
        cr_assert_eq(getsockname(held, (struct sockaddr *)&in, &len), 0);
        char addr[32];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(in.sin_port));
        const char *const extra[] = {"-l", addr, NULL};
        ma_spawn(backend, up_test_bin("examples/echo.so"), extra);
        ma_wait_log("event loop:", HT_READY_MS); /* its signals are its own from here */
        usleep(200 * 1000);
        ma_signal(sigs[i]);
        int status = up_test_wait_exit(ma.pid, 10000);
        ma.pid = -1;
        close(held);
        const char *log = ma_log_text();
        cr_assert_eq(status, 3, "signal %d: exit %d\n%s", sigs[i], status, log);
        cr_assert_not_null(strstr(log, "Address already in use"), "%s", log);
        cr_assert_null(strstr(log, "generation"), "signal %d:\n%s", sigs[i], log);
        cr_assert_null(strstr(log, "stopping"), "signal %d:\n%s", sigs[i], log);
    }
}

/* A stop that comes while the first generation starts (a restart in a
 * hurry, a deploy tool's stop right after its start): a request the master
 * already accepted waits for that generation and gets its answer (before:
 * a 503 one second into the stop, while the workers were a moment from
 * ready); a start that fails ends the wait at its --ready-timeout with a
 * 503, and the stop with it; so does the drain timeout, which operators
 * keep inside their container runtime's grace before SIGKILL. While it
 * waits, a new client is refused at once (the listener is closed), not
 * queued to be reset at the exit. */
static void stop_during_start(const char *backend, const char *app, const char *arg,
                              const char *ready, const char *drain, int want)
{
    const char *const extra[] = {
        "--ready=manual", "--ready-timeout", ready, "-t", drain, app, "--", arg, NULL};
    ma_spawn(backend, NULL, extra);
    ma_wait_log("starting generation 1", HT_READY_MS);
    int fd = ht_client(ma.port);
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    struct ma_status s = {0};
    for (long long end = up_test_now_ms() + 5000; s.accepted < 1;) {
        cr_assert_lt(up_test_now_ms(), end, "not accepted within 5 s:\n%s", s.text);
        ma_status(&s); /* the control socket serves from the start */
        up_test_nap(s.accepted < 1 ? 20 : 0);
    }
    ma_signal(SIGTERM);
    long long ms;
    int late = ma_wait_refused(1000, &ms);
    cr_assert_eq(late, -ECONNREFUSED, "%s: a connect %lld ms into the stop: %s\n%s", app, ms,
                 late == 0 ? "accepted" : strerror(-late), ma_log_text());
    struct up_test_resp r = {0};
    int ret = up_test_read_response(fd, &r, 10000);
    close(fd);
    int status = up_test_wait_exit(ma.pid, 10000);
    ma.pid = -1;
    const char *log = ma_log_text();
    cr_assert_eq(ret, 0, "%s: no answer: %s\n%s", app, strerror(-ret), log);
    cr_assert_eq(r.status, want, "%s: %s\n%s", app, r.head, log);
    cr_assert_eq(status, 0, "%s: exit %d\n%s", app, status, log);
    cr_assert_not_null(strstr(log, "1 accepted connections wait for the starting generation"), "%s",
                       log);
}

BACKEND_TEST(master, a_stop_during_the_first_start_serves_what_it_accepted, .timeout = 60,
             .fini = ht_fini)
{
    /* Ready 2.5 s after its start, well inside a 10 s --ready-timeout (a
     * start under the sanitizers on a busy machine may take a second). */
    const char *ready = up_test_bin("examples/manual_ready.so");
    stop_during_start(backend, ready, "2500", "10s", "15s", 200);
    cr_assert_not_null(strstr(ma_log_text(), "generation 1 serving"), "%s", ma_log_text());
    /* never_ready.so ignores its argument. */
    stop_during_start(backend, up_test_bin("examples/never_ready.so"), "0", "3s", "5s", 503);
    cr_assert_not_null(strstr(ma_log_text(), "no worker was ready within 3000 ms"), "%s",
                       ma_log_text());
    /* And what each was doing: never_ready.so's init returned, and the
     * worker waits in its loop. */
    cr_assert_not_null(strstr(ma_log_text(), "; worker #0 pid="), "%s", ma_log_text());
    cr_assert_not_null(strstr(ma_log_text(), " sleeping"), "%s", ma_log_text());
    stop_during_start(backend, ready, "2500", "10s", "1500ms", 503);
    cr_assert_not_null(strstr(ma_log_text(), "not taken by a worker in 1500 ms"), "%s",
                       ma_log_text());
}

/* How unshare(1) can give a hosts file of its own without it reaching the
 * rest of the machine: NULL when it cannot. A new mount namespace is made
 * private from / down, unless / is not a mount point (a chroot, such as a
 * fresh-machine CI's), where that fails: then it may stay as it is only if
 * no mount is shared, so that nothing mounted in it can propagate out. */
static const char *private_ns_option(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        _exit(unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
                  ? 0
                  : 1);
    }
    if (up_test_wait_exit(pid, 5000) == 0) {
        return "--propagation=private";
    }
    char *info = ht_file_text("/proc/self/mountinfo", NULL);
    bool shared = strstr(info, " shared:") != NULL;
    free(info);
    return shared ? NULL : "--propagation=unchanged";
}

/* A host name is every address it resolves to, as nginx binds them: on a
 * stock /etc/hosts localhost is ::1 and 127.0.0.1, and a master that
 * bound the first alone refused every client of the other (`curl
 * http://127.0.0.1:PORT`, a proxy, a health check). An address of the name
 * this host does not have (192.0.2.7 here; ::1 where IPv6 is off) is
 * skipped with a warning. Where one socket is all there is (--metrics),
 * such a name is refused, with the addresses it stands for. The name is
 * resolved in a mount namespace with a hosts file of the test's own. */
Test(master, a_host_name_is_every_address_it_resolves_to, .timeout = 30, .fini = ht_fini)
{
    if (geteuid() != 0) {
        cr_skip_test("needs root, for a hosts file of its own (a mount namespace)");
    }
    if (access("/etc/hosts", F_OK) != 0) {
        cr_skip_test("no /etc/hosts to mount a hosts file of its own on");
    }
    const char *propagation = private_ns_option();
    if (propagation == NULL) {
        cr_skip_test("no private mount namespace here (/ is not a mount point, and mounts are "
                     "shared): a hosts file of its own would reach the whole machine");
    }
    char hosts[PATH_MAX], script[PATH_MAX + 64], name[64], warn[128], out[4096];
    snprintf(hosts, sizeof(hosts), "%s", ht_path("hosts"));
    FILE *f = fopen(hosts, "w");
    cr_assert_not_null(f);
    fputs("::1\tuphost\n127.0.0.1\tuphost\n192.0.2.7\tuphost\n"
          "192.0.2.8\tupnone\n192.0.2.9\tupnone\n",
          f);
    fclose(f);
    snprintf(script, sizeof(script), "mount --bind %s /etc/hosts && exec \"$@\"", hosts);
    const char *const wrap[] = {
        ht_util("unshare"), "-m", propagation, "--", "sh", "-c", script, "sh", NULL};
    memcpy(ma.wrap, wrap, sizeof(wrap));
    memcpy(ma.cmd_wrap, wrap, sizeof(wrap));
    ma.port = up_test_free_port();
    ma.same_port = true;
    snprintf(name, sizeof(name), "uphost:%d", ma.port);
    const char *const extra[] = {"-l", name, NULL};
    ma_start("auto", up_test_bin("examples/hello.so"), extra);

    struct up_test_resp r = {0};
    ht_fetch(ma.port, "/", &r); /* 127.0.0.1 */
    cr_assert_eq(r.status, 200, "%s", r.head);
    up_test_resp_free(&r);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)ma.port)};
    v6.sin6_addr = in6addr_loopback;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&v6, sizeof(v6)), 0, "[::1]:%d: %s\n%s", ma.port,
                 strerror(errno), ma_log_text());
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: uphost\r\nConnection: close\r\n\r\n");
    ht_read(fd, &r, "over ::1");
    cr_assert_eq(r.status, 200, "%s", r.head);
    up_test_resp_free(&r);
    close(fd);
    snprintf(warn, sizeof(warn), "%s (192.0.2.7) is not an address of this host", name);
    cr_assert_not_null(strstr(ma_log_text(), warn), "%s", ma_log_text());

    char port[16];
    snprintf(port, sizeof(port), "%d", up_test_free_port());
    snprintf(name, sizeof(name), "uphost:%d", up_test_free_port());
    const char *const args[] = {"-p",
                                port,
                                "--allow-root",
                                "--control",
                                ht_path("m.sock"),
                                "--metrics",
                                name,
                                up_test_bin("examples/hello.so"),
                                NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "is 3 addresses (::1, 127.0.0.1, 192.0.2.7)"), "%s", out);
    /* A name none of whose addresses is this host's. */
    snprintf(name, sizeof(name), "upnone:%s", port);
    refused_on(name, "n.sock", out, sizeof(out));
    cr_assert_not_null(strstr(out, "none of its addresses is this host's"), "%s", out);
}

/* Asked for, masters share a port (one per NUMA node, docs/SCALING.md):
 * both start, and the kernel spreads new connections between them. Both
 * bind the same address: a listener on 127.0.0.1 would take every
 * connection to it from one on 0.0.0.0 (the kernel looks up the exact
 * address first), sharing nothing. */
Test(master, with_reuseport_two_masters_share_a_port, .timeout = 30, .fini = ht_fini)
{
    const char *const extra[] = {"--reuseport", NULL};
    ma_start("auto", up_test_bin("examples/hello.so"), extra);
    char port[16];
    snprintf(port, sizeof(port), "%d", ma.port);
    char *const argv[] = {(char *)up_test_bin("up-run"),
                          "-p",
                          port,
                          "--allow-root",
                          "-n",
                          "1",
                          "--reuseport",
                          "--control",
                          (char *)ht_path("second.sock"),
                          (char *)up_test_bin("examples/echo.so"),
                          NULL};
    pid_t second = up_test_spawn(argv, NULL, ht_path("second.log"));
    cr_assert_gt(second, 0);
    ht_stop_at_fini(second);
    /* Hello alone answers until the second binds: count the first's
     * answers only from the second's first on. */
    int hello = 0, echo = 0;
    long long deadline = up_test_now_ms() + 10000;
    while ((hello == 0 || echo == 0) && up_test_now_ms() < deadline) {
        struct up_test_resp r = {0};
        if (ma_fresh("/", &r) == 0) {
            hello += echo > 0 && strstr(r.body, "Hello World") != NULL;
            echo += strstr(r.body, "method: GET") != NULL;
        }
        up_test_resp_free(&r);
    }
    cr_assert(hello > 0 && echo > 0, "hello %d, echo %d: not shared\n%s", hello, echo,
              up_test_file_tail(ht_path("second.log")));
    cr_assert_eq(up_test_stop(second, 10000), 0, "%s", up_test_file_tail(ht_path("second.log")));
}

/* A privileged port as an ordinary user: refused, with how to get it. */
Test(master, a_privileged_port_says_how_to_get_it, .timeout = 30, .fini = ht_fini)
{
    up_test_require_root();
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
    int start = 1024;
    if (f != NULL) {
        cr_assert_eq(fscanf(f, "%d", &start), 1);
        fclose(f);
    }
    if (start <= 1) {
        cr_skip_test("net.ipv4.ip_unprivileged_port_start is %d: no port is privileged", start);
    }
    static char setpriv[64], reuid[32], regid[32], ctl[64];
    snprintf(setpriv, sizeof(setpriv), "%s", ht_util("setpriv"));
    snprintf(reuid, sizeof(reuid), "--reuid=%u", (unsigned)UP_TEST_OTHER_UID);
    snprintf(regid, sizeof(regid), "--regid=%u", (unsigned)UP_TEST_OTHER_UID);
    snprintf(ctl, sizeof(ctl), "/tmp/up-test-%d-ctl.sock", (int)getpid());
    const char *const as_other[] = {setpriv, reuid, regid, "--clear-groups", "--", NULL};
    memcpy(ma.cmd_wrap, as_other, sizeof(as_other));
    ma.public_bins = true; /* that uid may not reach the build directory */
    char out[4096];
    const char *const args[] = {
        "-l", "127.0.0.1:1", "--control", ctl, up_test_public_bin("examples/hello.so"), NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "cannot listen on 127.0.0.1:1: Permission denied (a port below "
                                   "net.ipv4.ip_unprivileged_port_start"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "start up-run as root with --user NAME"), "%s", out);
}

BACKEND_TEST(master, sigterm_graceful_stop, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    struct ma_status s;
    pid_t pids[2];
    char buf[256];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    int fd = ht_connect(ma.port);
    ht_send(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27);
    int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "read: %s", strerror(-ret));
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    up_test_resp_free(&r);

    /* The connection is idle on a worker now. */
    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    int status = up_test_wait_exit(ma.pid, 5000);
    long long took = up_test_now_ms() - t0;
    cr_assert_neq(status, -ETIMEDOUT, "up-run still runs 5 s after SIGTERM; log:\n%s",
                  ma_log_text());
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after SIGTERM (%lld ms); log:\n%s", status, took,
                 ma_log_text());
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 2000);
    int end = errno;
    close(fd);
    cr_assert_eq(end, 0, "the idle client saw %s, not a clean EOF", strerror(end));
    cr_assert_eq(n, 0, "the idle client got %d bytes: %s", n, buf);
    cr_assert_geq(proc_wait_gone(pids, 2, 500), 0, "a worker outlived its master (%d, %d)",
                  (int)pids[0], (int)pids[1]);
}

/* While it drains, a stopping master refuses new connections at once (its
 * listener is closed) rather than leave them in a queue nobody serves until
 * it exits and resets them; the request it took goes on to its answer. */
BACKEND_TEST(master, a_draining_stop_refuses_new_connections_at_once, .timeout = 30,
             .fini = ht_fini)
{
    struct up_test_resp r = {0};
    const char *const extra[] = {"-t", "10s", NULL};

    ma_start(backend, up_test_bin("examples/slow.so"), extra);
    int busy = ht_connect(ma.port);
    ht_send_str(busy, "GET /?ms=2500 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    up_test_nap(300); /* on a worker, which sleeps */

    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    long long ms;
    int fd = ma_wait_refused(2000, &ms);
    cr_assert_neq(fd, 0, "2 s into the drain, a new connection is still accepted; log:\n%s",
                  ma_log_text());
    cr_assert_eq(fd, -ECONNREFUSED, "connect %lld ms into the drain: %s", ms, strerror(-fd));
    /* From then on, each is refused. */
    fd = up_test_connect(ma.port);
    cr_assert_eq(fd, -ECONNREFUSED, "connect after the listener closed: %s", strerror(-fd));
    int ret = up_test_read_response(busy, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "the request taken before the stop: %s; log:\n%s", strerror(-ret),
                 ma_log_text());
    cr_assert_eq(r.status, 200, "the request taken before the stop:\n%s%s", r.head, r.body);
    up_test_resp_free(&r);
    close(busy);
    cr_assert_eq(up_test_wait_exit(ma.pid, 8000), 0, "log:\n%s", ma_log_text());
    ma.pid = -1;
}

/* Ctrl-C drains; Ctrl-C again, for one who will not wait, stops at once:
 * a request still running is cut, and the master exits 0. */
BACKEND_TEST(master, a_second_sigint_stops_at_once, .timeout = 30, .fini = ht_fini)
{
    const char *const extra[] = {"-t", "20s", NULL};
    char buf[256];

    ma_start(backend, up_test_bin("examples/slow.so"), extra);
    int busy = ht_connect(ma.port);
    ht_send_str(busy, "GET /?ms=15000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    up_test_nap(300); /* on a worker, which sleeps */
    cr_assert_eq(kill(ma.pid, SIGINT), 0);
    ma_wait_log("SIGINT: stopping gracefully", 2000);
    up_test_nap(300);
    cr_assert_eq(kill(ma.pid, 0), 0, "the first SIGINT did not wait for the drain");
    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(ma.pid, SIGINT), 0);
    int status = up_test_wait_exit(ma.pid, 5000);
    long long took = up_test_now_ms() - t0;
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit %d after the second SIGINT; log:\n%s", status, ma_log_text());
    cr_assert_lt(took, 3000, "exited %lld ms after the second SIGINT", took);
    cr_assert_eq(up_test_file_contains(ma.log, "SIGINT again: stopping now"), 1, "log:\n%s",
                 ma_log_text());
    int n = up_test_read_until_close(busy, buf, sizeof(buf), 2000);
    cr_assert_leq(n, 0, "the cut request got an answer: %s", buf);
    close(busy);
}

/* A client that connected just before the stop gets its answer: a graceful
 * stop lets the workers take what the master accepted (for at most 1 s)
 * before it drains them; only a head that never completes is closed. */
BACKEND_TEST(master, sigterm_serves_what_it_accepted, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    struct ma_status s;
    char buf[256];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    int slow = ht_connect(ma.port);
    int never = ht_connect(ma.port);
    ht_send_str(slow, "GET / HTTP/1.1\r\nHost: t\r\n");
    ht_send_str(never, "GET / HTTP/1.1\r\n");
    up_test_nap(200); /* accepted (bytes came: TCP_DEFER_ACCEPT), its head awaited */

    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    up_test_nap(200);
    ht_send_str(slow, "\r\n");
    int ret = up_test_read_response(slow, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "the head completed 200 ms after SIGTERM: %s; log:\n%s", strerror(-ret),
                 ma_log_text());
    cr_assert_eq(r.status, 200, "the head completed 200 ms after SIGTERM:\n%s%s", r.head, r.body);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);

    int status = up_test_wait_exit(ma.pid, 8000);
    long long took = up_test_now_ms() - t0;
    cr_assert_neq(status, -ETIMEDOUT, "up-run still runs 8 s after SIGTERM; log:\n%s",
                  ma_log_text());
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after SIGTERM; log:\n%s", status, ma_log_text());
    cr_assert_geq(took, 1000, "exited %lld ms after SIGTERM: before the 1 s it gives a head", took);
    int n = up_test_read_until_close(never, buf, sizeof(buf), 2000);
    cr_assert_eq(n, 0, "the head that never completed got %d bytes: %s", n, buf);
    cr_assert(strstr(ma_log_text(), "1 accepted connections not taken by a worker in 1000 ms"),
              "log:\n%s", ma_log_text());
}

/* n connections, each with a GET (Connection: close), made while the master
 * is stopped, so that it finds them all at once when it goes on; every one
 * must be answered 200 (within timeout_ms), and is closed. what names the
 * burst in a failure. */
static void burst_of_gets(int n, int *fds, struct ht_answer *a, int timeout_ms, const char *what)
{
    static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    ma_signal(SIGSTOP);
    for (int i = 0; i < n; i++) {
        fds[i] = ht_connect(ma.port); /* the kernel's accept queue takes them */
        ht_send(fds[i], get, strlen(get));
        a[i] = (struct ht_answer){0};
    }
    usleep(50 * 1000);
    ma_signal(SIGCONT);
    cr_assert_eq(ht_collect(fds, n, a, up_test_now_ms(), timeout_ms), n, "%s; log:\n%s", what,
                 ma_log_text());
    for (int i = 0; i < n; i++) {
        cr_assert_eq(a[i].status, 200, "%s, connection %d: status %d; log:\n%s", what, i,
                     a[i].status, ma_log_text());
        close(fds[i]);
    }
}

/* A burst of new connections to one worker: those that wait behind a send
 * in flight go together in one CONNS (docs/PROTOCOL.md), and every one of
 * them is answered. The master is stopped while the burst comes, so that
 * it finds every head there at once and routes them in one turn: the first
 * goes alone, the rest wait behind it. */
BACKEND_TEST(master, a_burst_shares_messages_and_all_of_it_is_answered, .timeout = 60,
             .fini = ht_fini)
{
    enum { N = 48 };
    static const char *const extra[] = {"-n", "1", NULL};
    ma.env[0] = "UP_LOG=debug";
    ma_start(backend, up_test_bin("examples/hello.so"), extra);
    bool shared = false;
    for (int burst = 0; burst < 3 && !shared; burst++) {
        int fds[N];
        struct ht_answer a[N];
        char what[32];
        snprintf(what, sizeof(what), "burst %d", burst);
        burst_of_gets(N, fds, a, 10000, what);
        shared = up_test_file_contains(ma.log, "connections in one CONNS") == 1;
    }
    cr_assert(shared, "3 bursts of %d, and never a shared message; log:\n%s", N, ma_log_text());
}

/* A burst of new connections takes a peek buffer each, all at once (the
 * master stopped while they came, so that it accepts them in one turn).
 * Every one is answered; a second after, the master gives back the pages
 * of all but the few buffers it keeps, so that its memory does not stay at
 * the burst's height (pending.c). On io_uring: there the peeks of one turn
 * are all in flight together; epoll's are done one by one, each buffer
 * back before the next accept. */
Test(master, a_burst_leaves_no_memory_behind_io_uring, .timeout = 60, .fini = ht_fini)
{
    up_test_require_io_uring();
    const char *backend = "io_uring";
    enum { N = 400 };
    static const char *const extra[] = {"-n", "1", NULL};
    ht_raise_nofile(N + 64);
    ma_start(backend, up_test_bin("examples/hello.so"), extra);
    struct up_test_resp r = {0};
    ht_fetch(ma.port, "/", &r);
    cr_assert_eq(r.status, 200);
    up_test_resp_free(&r);
    long base = up_test_status_kib(ma.pid, "VmRSS:");
    static int fds[N];
    static struct ht_answer a[N];
    burst_of_gets(N, fds, a, 20000, "the burst");
    ht_assert_burst_gone(ma.pid, "master", backend, N, base, N * 4 / 2, 640,
                         "64 buffers kept: 256 kB");
}
