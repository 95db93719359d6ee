/*
 * resources: the master under fd and buffer pressure, and what it costs.
 *
 *   - accept failing with EMFILE: the master backs off instead of spinning,
 *     says so in its log, and serves again once fds are free;
 *   - a worker whose channel is full (it blocks and reads nothing): the
 *     master routes to the other worker, and loses nothing;
 *   - idle Keep-Alive connections held by the workers cost the master
 *     neither memory nor fds.
 *
 * Each test runs on both back ends (BACKEND_TEST).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/harness.h"

/* ---- helpers of this file ---- */

/* The issue asks for 10,000 idle Keep-Alive connections; CI holds 2,000 to
 * stay fast, UP_TEST_LONG=1 the full count. */
#define RS_IDLE 2000
#define RS_IDLE_LONG 10000
/* The master's RSS may not pass this with the connections held. */
#define RS_MASTER_RSS_KIB 4096
/* accept_emfile: the master's fd limit while the test starves it. */
#define RS_MASTER_NOFILE 64
/* full_channel: how long worker A blocks, and how many connections are
 * sent meanwhile: more than twice what one channel holds (a SEQPACKET
 * socketpair takes about 280 CONN messages with an fd each before
 * sendmsg() says EAGAIN), so that round-robin alone cannot place them. */
#define RS_BLOCK_MS 3000
#define RS_BURST 1500

#define RS_GET "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
#define RS_GET_CLOSE "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

/* ---- accept failing with EMFILE ---- */

/* The CPU time the master spends while the test waits ms: a master that
 * waits on its ring spends almost none, one that spins a second per second. */
static double rs_master_cpu_over(int ms)
{
    double cpu0 = proc_cpu_s(ma.pid);
    up_test_nap(ms);
    double cpu1 = proc_cpu_s(ma.pid);
    cr_assert(cpu0 >= 0 && cpu1 >= 0, "the master died; log:\n%s", ma_log_text());
    return cpu1 - cpu0;
}

/* Start up-run as ma_start() does with `-n workers` and app, but with
 * RLIMIT_NOFILE at soft:hard from its first instruction, through
 * prlimit(1) (util-linux): up-run raises its soft limit to the hard one at
 * start, so a soft limit alone is no limit, and the hard one must be set
 * in the process itself. The workers inherit both. */
static void rs_start_limited(const char *backend, const char *app, int workers,
                             const char *const *extra, rlim_t soft, rlim_t hard)
{
    static char limit_arg[64];
    char nworkers[16];
    const char *args[32] = {"-n", nworkers};
    int n = 2;

    /* prlimit sets the limits, then execs up-run in the same process. */
    snprintf(limit_arg, sizeof(limit_arg), "--nofile=%llu:%llu", (unsigned long long)soft,
             (unsigned long long)hard);
    ma.wrap[0] = ht_util("prlimit");
    ma.wrap[1] = limit_arg;
    ma.wrap[2] = "--";
    snprintf(nworkers, sizeof(nworkers), "%d", workers);
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    ma_start(backend, app, args);
    fprintf(stderr, "[resources] (%s): up-run started with RLIMIT_NOFILE %llu:%llu\n", backend,
            (unsigned long long)soft, (unsigned long long)hard);
}

/* The master at a low fd limit (64, soft and hard: no raising it), more
 * idle clients than it can hold: it sizes its pending cap to the limit,
 * pauses accepting there instead of running into EMFILE, sheds the oldest
 * incomplete heads (408) to make room, never spins, and serves a good
 * request that arrives meanwhile. */
BACKEND_TEST(resources, low_fd_limit_pauses_and_sheds, .timeout = 60, .fini = ht_fini)
{
    static const char *const extra[] = {"--header-timeout", "30s", NULL};
    struct ma_status s;
    enum { EXTRA = 40 };

    ht_raise_nofile(1024);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 2, extra, RS_MASTER_NOFILE,
                     RS_MASTER_NOFILE);
    ma_wait_workers(1, 2, &s);
    int base = proc_fds(ma.pid);
    cr_assert(base > 0 && base < RS_MASTER_NOFILE - 8, "the master has %d fds already", base);
    cr_assert_eq(up_test_file_contains(ma.log, "fd limit 64:"), 1, "the limit not logged:\n%s",
                 ma_log_text());

    /* Idle clients that sent a few bytes of a head (so TCP_DEFER_ACCEPT
     * does not hold them back): more than the master's whole fd limit. */
    int n = RS_MASTER_NOFILE - base + EXTRA;
    int fds[RS_MASTER_NOFILE + EXTRA];
    for (int i = 0; i < n; i++) {
        fds[i] = ht_connect(ma.port);
        ht_send(fds[i], "GET / HTTP/1.1\r\n", 16);
    }
    int ret = up_test_wait_log(ma.log, "accepting paused", 5000);
    cr_assert_eq(ret, 0, "accepting never paused with %d idle clients; log:\n%s", n, ma_log_text());
    /* A good request that arrives while the master is full: slow heads
     * make way for it. */
    long long t0 = up_test_now_ms();
    int late = ht_connect(ma.port);
    ht_send(late, RS_GET_CLOSE, strlen(RS_GET_CLOSE));

    /* The full master must wait, not spin: measure its CPU over 2 s. */
    double cpu_s = rs_master_cpu_over(2000);
    int held = proc_fds(ma.pid);
    cr_assert_lt(cpu_s, 0.3, "the master used %.2f s of CPU in 2 s while full: it spins", cpu_s);
    cr_assert_leq(held, RS_MASTER_NOFILE, "the master holds %d fds", held);

    struct up_test_resp r = {0};
    ret = up_test_read_response(late, &r, 10000);
    long long late_ms = up_test_now_ms() - t0;
    close(late);
    cr_assert_eq(ret, 0, "the good request that came while full: %s; log:\n%s", strerror(-ret),
                 ma_log_text());
    cr_assert_eq(r.status, 200, "the good request that came while full got %d", r.status);
    up_test_resp_free(&r);
    cr_assert_eq(up_test_file_contains(ma.log, "answered 408 to the"), 1,
                 "no slow head was shed; log:\n%s", ma_log_text());
    fprintf(stderr,
            "[resources] low_fd_limit (%s): master fds %d of %d (base %d), %d idle clients; "
            "CPU %.2f s over 2 s while full; the good request answered after %lld ms\n",
            backend, held, RS_MASTER_NOFILE, base, n, cpu_s, late_ms);

    /* The idle clients leave: every request is served again, and the
     * master is back to its fds. */
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    ma_wait_serving(5000);
    int after = proc_fds_settled(ma.pid, base, 5000);
    cr_assert_eq(after, base, "the master has %d fds after recovering, %d before", after, base);
}

/* ---- workers at their fd limit ---- */

/* n connections to the master (fds, returned) and room for an answer on
 * each (*ret_a); rs_close_all() closes and frees both. */
static int *rs_open(int n, struct ht_answer **ret_a)
{
    int *fds = calloc((size_t)n, sizeof(int));
    *ret_a = calloc((size_t)n, sizeof(**ret_a));
    cr_assert(fds != NULL && *ret_a != NULL);
    for (int i = 0; i < n; i++) {
        fds[i] = ht_connect(ma.port);
    }
    return fds;
}

static void rs_close_all(int *fds, struct ht_answer *a, int n)
{
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    free(fds);
    free(a);
}

/* Send a keep-alive GET on each of fds[0..n), its answer to come in a[i]. */
static void rs_get_each(const int *fds, int n, struct ht_answer *a)
{
    for (int i = 0; i < n; i++) {
        ht_send(fds[i], RS_GET, strlen(RS_GET));
        a[i] = (struct ht_answer){0};
    }
}

/* The soft fd limit systemd gives a service (1024) with a generous hard
 * one: master and workers raise theirs to the hard limit at start, so two
 * workers hold 2,600 Keep-Alive connections, answer a second request on
 * each, and none is replaced. Before, a worker at 1024 took a dropped fd
 * for a broken channel, and the master killed it with its connections. */
BACKEND_TEST(resources, soft_fd_limit_raised_for_2600_keepalive, .timeout = 120, .fini = ht_fini)
{
    enum { N = 2600 };
    struct ma_status before, after;
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 8192) {
        cr_skip_test("hard RLIMIT_NOFILE %llu: this test needs 8192 (a systemd service has "
                     "524288)",
                     (unsigned long long)rl.rlim_max);
    }
    ht_raise_nofile(N + 256);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 2, NULL, 1024, rl.rlim_max);
    ma_wait_workers(1, 2, &before);
    pid_t pids[2];
    cr_assert_eq(ma_gen_pids(&before, 1, "ready", pids, 2), 2);

    struct ht_answer *a;
    long long t0 = up_test_now_ms();
    int *fds = rs_open(N, &a);
    for (int round = 1; round <= 2; round++) {
        rs_get_each(fds, N, a);
        int got = ht_collect(fds, N, a, t0, 30000);
        int ok = 0, other = 0, ended = 0;
        for (int i = 0; i < N; i++) {
            ok += a[i].status == 200;
            ended += a[i].status < 0;
            other = a[i].status > 0 && a[i].status != 200 ? a[i].status : other;
        }
        cr_assert_eq(ok, N,
                     "round %d: %d of %d connections answered 200 (%d answered, %d ended without "
                     "an answer, another status: %d); log:\n%s",
                     round, ok, N, got, ended, other, ma_log_text());
    }
    long long took = up_test_now_ms() - t0;
    ma_status(&after);
    pid_t now[2];
    cr_assert_eq(ma_gen_pids(&after, 1, "ready", now, 2), 2, "status:\n%s", after.text);
    cr_assert(ht_pid_in(pids[0], now, 2) && ht_pid_in(pids[1], now, 2),
              "a worker was replaced:\n%s\nlog:\n%s", after.text, ma_log_text());
    cr_assert_eq(after.respawns, 0, "status:\n%s", after.text);
    cr_assert_eq(up_test_file_contains(ma.log, "(raised from 1024)"), 1, "no raise logged:\n%s",
                 ma_log_text());
    fprintf(stderr,
            "[resources] soft fd limit 1024 (%s): %d keep-alive connections, 2 requests each, "
            "all 200 in %lld ms; workers kept: %d %d\n",
            backend, N, took, (int)pids[0], (int)pids[1]);
    rs_close_all(fds, a, N);
}

/* A worker at a hard fd limit it cannot raise: a connection whose fd the
 * kernel drops on its way in is declined, not taken for a broken channel.
 * The worker keeps every connection it holds and stays; the master routes
 * the declined one elsewhere (here: nowhere, so it waits in the queue),
 * reports degraded health, and once the worker has room again the waiting
 * requests are served. */
/* Every reload moves each idle Keep-Alive connection to the new
 * generation (--migrate=idle, the default): 1,500 of them on two workers,
 * through a master whose hard fd limit is 1,024 (a container's), all move
 * as the master can take them, none is lost, and each answers its next
 * request from the new code. */
BACKEND_TEST(resources, a_reload_moves_more_idle_connections_than_the_master_has_fds,
             .timeout = 120, .fini = ht_fini)
{
    enum { N = 1500 };
    ht_raise_nofile(N + 256);
    rs_start_limited(backend, up_test_bin("examples/echo.so"), 2, NULL, 1024, 1024);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);
    struct ht_answer *a;
    long long t0 = up_test_now_ms();
    int *fds = rs_open(N, &a);
    rs_get_each(fds, N, a);
    cr_assert_eq(ht_collect(fds, N, a, t0, 30000), N, "log:\n%s", ma_log_text());
    ma_status(&s);
    long back0 = s.handed_back;

    ma_signal(SIGUSR2);
    long long moved_ms = ma_wait_alone(30000, &s);
    cr_assert_str_eq(ma_gen_state(&s, 1), "", "generation 1 still holds connections:\n%s", s.text);
    cr_assert_eq(s.lost, 0, "%s\nlog:\n%s", s.text, ma_log_text());
    cr_assert_eq(s.handed_back - back0, N, "%s", s.text);
    pid_t now[2];
    cr_assert_eq(ma_gen_pids(&s, 2, "ready", now, 2), 2, "%s", s.text);

    long long t2 = up_test_now_ms();
    rs_get_each(fds, N, a);
    ht_collect(fds, N, a, t2, 30000);
    int ok = 0, elsewhere = 0;
    for (int i = 0; i < N; i++) {
        ok += a[i].status == 200;
        elsewhere += a[i].status == 200 && !ht_pid_in(a[i].pid, now, 2);
    }
    cr_assert_eq(ok, N, "%d of %d answered 200 after the reload; log:\n%s", ok, N, ma_log_text());
    cr_assert_eq(elsewhere, 0, "%d answered by a pid not of generation 2", elsewhere);
    fprintf(stderr,
            "[resources] %s: %d idle connections moved through a master at 1024 fds in %lld "
            "ms, 0 lost\n",
            backend, N, moved_ms);
    rs_close_all(fds, a, N);
}

BACKEND_TEST(resources, worker_out_of_fds_declines_and_recovers, .timeout = 60, .fini = ht_fini)
{
    enum { LIMIT = 128, N = 150, CLOSE = 48 };
    static const char *const extra[] = {"--queue-timeout", "20s", NULL};
    struct ma_status s;
    ht_raise_nofile(1024);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 1, extra, LIMIT, LIMIT);
    ma_wait_workers(1, 1, &s);
    pid_t worker;
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", &worker, 1), 1);

    int fds[N];
    struct ht_answer a[N];
    for (int i = 0; i < N; i++) {
        fds[i] = ht_connect(ma.port);
    }
    rs_get_each(fds, N, a);
    /* The worker can hold fewer than N: some wait. */
    ht_collect(fds, N, a, up_test_now_ms(), 3000);
    int ok = 0, failed = 0;
    for (int i = 0; i < N; i++) {
        ok += a[i].status == 200;
        failed += a[i].done && a[i].status != 200;
    }
    cr_assert_eq(failed, 0, "%d connections failed while the worker was out of fds; log:\n%s",
                 failed, ma_log_text());
    cr_assert(ok > 0 && ok < N, "%d of %d answered: the worker's limit was not reached", ok, N);
    cr_assert_eq(up_test_wait_log(ma.log, "is out of fds", 5000), 0, "log:\n%s", ma_log_text());
    cr_assert(up_test_alive(ma.pid));
    ma_status(&s);
    pid_t still;
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", &still, 1), 1, "status:\n%s", s.text);
    cr_assert_eq(still, worker, "the worker was replaced:\n%s", s.text);
    cr_assert(strstr(s.text, "health=degraded") != NULL, "status does not say degraded:\n%s",
              s.text);

    /* Clients leave: room again, and every waiting request is served. */
    int closed = 0;
    for (int i = 0; i < N && closed < CLOSE; i++) {
        if (a[i].status == 200) {
            close(fds[i]);
            fds[i] = -1;
            a[i] = (struct ht_answer){.done = true}; /* not waited for */
            closed++;
        }
    }
    long long t0 = up_test_now_ms();
    ht_collect(fds, N, a, t0, 10000);
    long long waited = up_test_now_ms() - t0;
    int late_ok = 0;
    for (int i = 0; i < N; i++) {
        late_ok += a[i].status == 200;
    }
    cr_assert_eq(late_ok, N - CLOSE, "%d of %d answered after %d clients left; log:\n%s", late_ok,
                 N - CLOSE, CLOSE, ma_log_text());
    /* A second request on every connection still open. */
    int open_fds[N], n_open = 0;
    for (int i = 0; i < N; i++) {
        if (fds[i] >= 0) {
            open_fds[n_open++] = fds[i];
        }
    }
    rs_get_each(open_fds, n_open, a);
    ht_collect(open_fds, n_open, a, t0, 10000);
    for (int i = 0; i < n_open; i++) {
        cr_assert_eq(a[i].status, 200, "second request %d: status %d; log:\n%s", i, a[i].status,
                     ma_log_text());
    }
    ma_status(&s);
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", &still, 1), 1);
    cr_assert_eq(still, worker, "the worker was replaced:\n%s", s.text);
    cr_assert(strstr(s.text, "health=ok") != NULL, "not healthy again:\n%s", s.text);
    fprintf(stderr,
            "[resources] worker at fd limit %d (%s): %d of %d answered at first, none failed; "
            "the other %d answered %lld ms after %d clients left; worker %d kept\n",
            LIMIT, backend, ok, N, N - ok, waited, CLOSE, (int)worker);
    for (int i = 0; i < n_open; i++) {
        close(open_fds[i]);
    }
}

/* Take the master's fds up to limit (cap at most) with control-socket
 * clients that send nothing (it closes each after 2 s), into fill. Returns
 * how many. */
static int rs_fill_ctl(int *fill, int cap, int limit)
{
    int n = 0;
    while (n < cap && proc_fds(ma.pid) < limit) {
        int fd = ht_connect_unix(ma.ctl);
        if (fd < 0) {
            break;
        }
        fill[n++] = fd;
        up_test_nap(2);
    }
    return n;
}

/* The master out of fds (idle control-socket clients took them) when a
 * draining worker hands its idle connections back: the kernel drops those
 * fds (MSG_CTRUNC) and they are lost, but the channel goes on: every
 * hand-back is read and counted (taken, or lost), none is left unread,
 * and the worker is neither cut off nor killed. Before, the first dropped
 * fd ended the channel, and everything queued behind it went with it. */
BACKEND_TEST(resources, handback_at_master_fd_limit_keeps_the_channel, .timeout = 60,
             .fini = ht_fini)
{
    enum { LIMIT = 64, IDLE = 10, FILL = 60 };
    /* The hand-back at the deadline, 1 s after the switch: time to fill. */
    static const char *const extra[] = {"--migrate=deadline", "-t", "1s", NULL};
    struct up_test_resp r = {0};
    ht_raise_nofile(1024);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 1, extra, LIMIT, LIMIT);
    int idle[IDLE];
    for (int i = 0; i < IDLE; i++) {
        idle[i] = ht_connect(ma.port);
        ht_send(idle[i], RS_GET, strlen(RS_GET));
        cr_assert_eq(up_test_read_response(idle[i], &r, 5000), 0);
        cr_assert_eq(r.status, 200);
    }
    struct ma_status s;
    ma_status(&s);
    long back0 = s.handed_back;
    ma_signal(SIGUSR2);
    cr_assert_eq(up_test_wait_log(ma.log, "generation 2 serving", 5000), 0, "log:\n%s",
                 ma_log_text());
    /* Before the drain deadline (1 s), take the master's fds: control
     * socket clients that send nothing (it closes them after 2 s). */
    int fill[FILL];
    int nfill = rs_fill_ctl(fill, FILL, LIMIT);
    int full = proc_fds(ma.pid);
    cr_assert_eq(up_test_wait_log(ma.log, "the master is out of fds", 5000), 0,
                 "no hand-back met the full master (%d fds of %d); log:\n%s", full, LIMIT,
                 ma_log_text());
    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    /* Generation 1 leaves by itself, every hand-back read. */
    ma_wait_alone(10000, &s);
    cr_assert_str_eq(ma_gen_state(&s, 1), "", "generation 1 is still there:\n%s", s.text);
    long back = s.handed_back >= 0 ? s.handed_back - back0 : -1;
    long lost = s.lost;
    cr_assert_eq(back + lost, IDLE, "%ld taken + %ld lost of %d handed back: some never read\n%s",
                 back, lost, IDLE, s.text);
    cr_assert_geq(lost, 1, "%s", s.text);
    cr_assert_eq(up_test_file_contains(ma.log, "killing it"), 0, "log:\n%s", ma_log_text());
    cr_assert_eq(up_test_file_contains(ma.log, "closing it"), 0, "log:\n%s", ma_log_text());
    /* The ones taken work on with generation 2; the lost ones were
     * closed, not left hanging. */
    int ok = 0, closed = 0;
    for (int i = 0; i < IDLE; i++) {
        int ret = up_test_send_all(idle[i], RS_GET, strlen(RS_GET));
        if (ret == 0) {
            ret = up_test_read_response(idle[i], &r, 5000);
        }
        ok += ret == 0 && r.status == 200;
        closed += ret == -EPIPE || ret == -ECONNRESET;
        close(idle[i]);
    }
    up_test_resp_free(&r);
    cr_assert_eq(ok, back, "%d answered, %ld taken", ok, back);
    cr_assert_eq(closed, lost, "%d closed, %ld lost", closed, lost);
    fprintf(stderr,
            "[resources] hand-back at the fd limit (%s): master at %d of %d fds; %ld taken and "
            "answered, %ld lost and closed; channel read to its end\n",
            backend, full, LIMIT, back, lost);
}

/* A reload when the master has no fd left (idle control-socket clients
 * took them): the generation's snapshot cannot be made, so the reload
 * fails, says why, and the running generation serves on; once fds are
 * free again the next reload starts, and the master holds one snapshot,
 * the new generation's. */
BACKEND_TEST(resources, reload_at_master_fd_limit_fails_then_recovers, .timeout = 60,
             .fini = ht_fini)
{
    enum { LIMIT = 64, FILL = 60 };
    ht_raise_nofile(1024);
    rs_start_limited(backend, up_test_bin("examples/echo.so"), 1, NULL, LIMIT, LIMIT);
    struct ma_status s;
    ma_wait_workers(1, 1, &s);
    int base = proc_fds(ma.pid);
    int fill[FILL];
    int nfill = rs_fill_ctl(fill, FILL, LIMIT);
    int full = proc_fds(ma.pid);
    ma_signal(SIGUSR2);
    cr_assert_eq(up_test_wait_log(ma.log, "generation 2 failed to start", 5000), 0,
                 "the reload at %d of %d fds did not fail; log:\n%s", full, LIMIT, ma_log_text());
    cr_assert_eq(up_test_file_contains(ma.log, "Too many open files"), 1,
                 "the failure does not say why; log:\n%s", ma_log_text());
    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
    ma_wait_generation(1, 5000);
    ma_signal(SIGUSR2);
    ma_wait_generation(3, 5000);
    ma_wait_workers(3, 1, &s);
    int after = proc_fds_settled(ma.pid, base, 5000);
    cr_assert_eq(after, base, "the master has %d fds after the reload, %d before", after, base);
    fprintf(stderr,
            "[resources] reload at the fd limit (%s): at %d of %d fds it failed and said why; "
            "with fds free generation 3 serves, master back to %d fds\n",
            backend, full, LIMIT, after);
}

/* The control and metrics servers out of fds: they back off as the
 * listeners do, instead of re-arming a failing accept at once and spinning
 * a core, and serve again once fds are free. */
BACKEND_TEST(resources, control_and_metrics_back_off_at_emfile, .timeout = 60, .fini = ht_fini)
{
    enum { LIMIT = 64, FILL = 64 };
    char metrics[32];
    int mport = ht_metrics_addr(metrics, sizeof(metrics));
    const char *const extra[] = {"--metrics", metrics, NULL};
    ht_raise_nofile(1024);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 1, extra, LIMIT, LIMIT);
    /* Control-socket clients that send nothing take every fd (the master
     * drops each after 2 s); then one more of each kind waits. */
    int fill[FILL];
    int nfill = rs_fill_ctl(fill, FILL, LIMIT);
    int waiting_ctl = ht_connect_unix(ma.ctl);
    int waiting_metrics = up_test_connect(mport);
    cr_assert_geq(waiting_metrics, 0);
    static const char healthz[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    ht_send(waiting_metrics, healthz, strlen(healthz));
    double cpu_s = rs_master_cpu_over(1000);
    int full = proc_fds(ma.pid);
    cr_assert_lt(cpu_s, 0.2, "the master used %.2f s of CPU in 1 s at its fd limit: it spins",
                 cpu_s);
    /* The clients holding fds go (closed by the master at 2 s): the
     * waiting metrics request is answered. */
    struct up_test_resp r = {0};
    int ret = up_test_read_response(waiting_metrics, &r, 5000);
    cr_assert_eq(ret, 0, "the waiting /healthz: %s; log:\n%s", strerror(-ret), ma_log_text());
    cr_assert_eq(r.status, 200);
    up_test_resp_free(&r);
    fprintf(stderr,
            "[resources] control and metrics at EMFILE (%s): master %d of %d fds, CPU %.2f s "
            "over 1 s; the waiting /healthz answered afterwards\n",
            backend, full, LIMIT, cpu_s);
    close(waiting_metrics);
    if (waiting_ctl >= 0) {
        close(waiting_ctl);
    }
    for (int i = 0; i < nfill; i++) {
        close(fill[i]);
    }
}

/* ---- slow clients ---- */

/* One more byte of a head on each trickler still open (a lost one is
 * skipped: the master may have answered and closed it). */
static void rs_trickle(int *fds, int n, int *sent)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: "
                               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && sent[i] < (int)sizeof(head) - 1) {
            if (send(fds[i], head + sent[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
                sent[i]++;
            } else if (errno != EAGAIN) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
}

/* 1,500 clients trickle a head at one byte a second into a master whose
 * fd limit is 1024, hard (it cannot raise it): they would hold every
 * pending slot until their header timeout. Near the cap the oldest
 * incomplete heads are answered 408 and closed, so 50 ordinary requests
 * that come after them are all answered 200 within 5 s. */
BACKEND_TEST(resources, slow_heads_do_not_starve_good_requests, .timeout = 90, .fini = ht_fini)
{
    enum { SLOW = 1500, GOOD = 50, LIMIT = 1024 };
    static const char *const extra[] = {"--header-timeout", "60s", NULL};
    up_test_exclusive_load();
    ht_raise_nofile(SLOW + GOOD + 256);
    rs_start_limited(backend, up_test_bin("examples/hello.so"), 2, extra, LIMIT, LIMIT);

    int *slow = calloc(SLOW, sizeof(int));
    int *sent = calloc(SLOW, sizeof(int));
    cr_assert(slow != NULL && sent != NULL);
    for (int i = 0; i < SLOW; i++) {
        slow[i] = ht_connect(ma.port);
    }
    rs_trickle(slow, SLOW, sent);
    long long next = up_test_now_ms() + 1000;
    /* Let them settle in: the master is full of slow heads by now. */
    while (up_test_now_ms() < next) {
        up_test_nap(50);
    }
    rs_trickle(slow, SLOW, sent);
    next += 1000;

    int good[GOOD];
    struct ht_answer a[GOOD] = {0};
    long long t0 = up_test_now_ms();
    for (int i = 0; i < GOOD; i++) {
        good[i] = ht_connect(ma.port);
        ht_send(good[i], RS_GET_CLOSE, strlen(RS_GET_CLOSE));
    }
    int done = 0;
    long long last = -1;
    while (done < GOOD && up_test_now_ms() - t0 < 5000) {
        if (up_test_now_ms() >= next) {
            rs_trickle(slow, SLOW, sent);
            next += 1000;
        }
        done = ht_collect(good, GOOD, a, t0, 100);
        last = up_test_now_ms() - t0;
    }
    int ok = 0;
    for (int i = 0; i < GOOD; i++) {
        ok += a[i].status == 200;
        close(good[i]);
    }
    struct ma_status s;
    ma_status(&s);
    long shed = s.shed;
    fprintf(stderr,
            "[resources] slow heads (%s): %d tricklers at fd limit %d; %d of %d good requests "
            "answered 200 within %lld ms; %ld slow heads shed\n",
            backend, SLOW, LIMIT, ok, GOOD, last, shed);
    cr_assert_eq(ok, GOOD, "%d of %d good requests answered 200 within 5 s; log:\n%s", ok, GOOD,
                 ma_log_text());
    cr_assert_gt(shed, 0, "status:\n%s", s.text);
    for (int i = 0; i < SLOW; i++) {
        if (slow[i] >= 0) {
            close(slow[i]);
        }
    }
    free(slow);
    free(sent);
}

/* ---- a full channel: route to another worker ---- */

BACKEND_TEST(resources, full_channel_tries_another_worker, .timeout = 60, .fini = ht_fini)
{
    char block_req[128];
    struct ma_status before, after;
    pid_t pids[2];

    up_test_exclusive_load();
    ht_raise_nofile(RS_BURST * 2 + 256);
    ma_start(backend, up_test_bin("examples/block.so"), NULL);
    ma_wait_workers(1, 2, &before);
    ma_gen_pids(&before, 1, "ready", pids, 2);

    /* Block one worker (A): it reads neither its connections nor its
     * channel for RS_BLOCK_MS. */
    snprintf(block_req, sizeof(block_req),
             "GET /block?ms=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", RS_BLOCK_MS);
    int bfd = ht_connect(ma.port);
    ht_send(bfd, block_req, strlen(block_req));
    pid_t a = (pid_t)ma_log_number("block: pid=", 5000);
    long long blocked_at = up_test_now_ms();
    cr_assert(a == pids[0] || a == pids[1], "the blocked pid %d is not a worker:\n%s", (int)a,
              before.text);
    pid_t b = a == pids[0] ? pids[1] : pids[0];

    /* The burst: each connection sends a whole request at once. */
    int *fds = calloc(RS_BURST, sizeof(*fds));
    struct ht_answer *c = calloc(RS_BURST, sizeof(*c));
    cr_assert(fds != NULL && c != NULL);
    long long t0 = up_test_now_ms();
    for (int i = 0; i < RS_BURST; i++) {
        fds[i] = ht_connect(ma.port);
        ht_send(fds[i], RS_GET_CLOSE, strlen(RS_GET_CLOSE));
    }
    long long sent_ms = up_test_now_ms() - t0;
    /* What B answers, it answers while A still sleeps. */
    long long a_wakes = blocked_at + RS_BLOCK_MS - t0;
    int quick = ht_collect(fds, RS_BURST, c, t0, (int)(a_wakes > 200 ? a_wakes - 200 : 0));
    int ended = ht_collect(fds, RS_BURST, c, t0, RS_BLOCK_MS + 10000);
    struct up_test_resp r = {0};
    int ret = up_test_read_response(bfd, &r, 5000);
    close(bfd);
    cr_assert_eq(ret, 0, "the blocking request: %s", strerror(-ret));
    cr_assert_eq(r.status, 200, "the blocking request got %d", r.status);
    up_test_resp_free(&r);

    int by_a = 0, by_b = 0, ok = 0, b_late = 0;
    long long b_last = 0, a_first = -1, last = 0;
    for (int i = 0; i < RS_BURST; i++) {
        ok += c[i].status == 200;
        if (c[i].pid == a) {
            by_a++;
            a_first = a_first < 0 || c[i].at < a_first ? c[i].at : a_first;
        } else if (c[i].pid == b) {
            by_b++;
            b_last = c[i].at > b_last ? c[i].at : b_last;
            b_late += c[i].at > a_wakes;
        }
        last = c[i].at > last ? c[i].at : last;
        close(fds[i]);
    }
    ma_status(&after);
    long rerouted = after.rerouted;
    fprintf(
        stderr,
        "[resources] full_channel (%s): %d connections sent in %lld ms while pid %d blocked "
        "%d ms; %d answered before it woke; pid %d (blocked) answered %d, first at %lld ms; "
        "pid %d answered %d, last at %lld ms; all %d ended by %lld ms, %d with 200; rerouted=%ld\n",
        backend, RS_BURST, sent_ms, (int)a, RS_BLOCK_MS, quick, (int)a, by_a, a_first, (int)b, by_b,
        b_last, ended, last, ok, rerouted);
    free(fds);
    free(c);
    cr_assert_eq(ended, RS_BURST, "%d of %d connections got no answer; log:\n%s", RS_BURST - ended,
                 RS_BURST, ma_log_text());
    cr_assert_eq(ok, RS_BURST, "%d of %d answers were not 200", RS_BURST - ok, RS_BURST);
    cr_assert_eq(by_a + by_b, RS_BURST, "answers from neither worker");
    /* Round-robin alone would give B half; a full channel sends the rest
     * of A's share to B too, while A sleeps. */
    cr_assert_gt(by_b, RS_BURST * 5 / 8,
                 "B answered %d of %d: the master did not route around A's full channel", by_b,
                 RS_BURST);
    cr_assert_eq(b_late, 0, "%d of B's answers came after A woke", b_late);
    cr_assert_geq(quick, by_b, "only %d answers came while A slept", quick);
    /* ACKs travel on their own: give the last ones a moment. */
    long long deadline = up_test_now_ms() + 3000;
    while (after.handed != before.handed + RS_BURST + 1 && up_test_now_ms() < deadline) {
        up_test_nap(50);
        ma_status(&after);
    }
    cr_assert_eq(after.handed, before.handed + RS_BURST + 1, "lost connections?\n%s\nthen\n%s",
                 before.text, after.text);
}

/* ---- idle Keep-Alive connections cost the master nothing ---- */

BACKEND_TEST(resources, idle_connections_memory_flat, .timeout = 120, .fini = ht_fini)
{
    int n = up_test_long() ? RS_IDLE_LONG : RS_IDLE;
    struct ma_status s;
    pid_t pids[2];
    int wbase[2], wheld[2];

    up_test_exclusive_load();
    ht_raise_nofile((rlim_t)n + 256);
    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    int base = proc_fds(ma.pid);
    long rss0 = up_test_status_kib(ma.pid, "VmRSS:");
    for (int i = 0; i < 2; i++) {
        wbase[i] = proc_fds(pids[i]);
    }

    int *fds = calloc((size_t)n, sizeof(*fds));
    cr_assert_not_null(fds);
    long long t0 = up_test_now_ms();
    for (int i = 0; i < n; i++) {
        struct up_test_resp r = {0};
        fds[i] = ht_connect(ma.port);
        ht_send(fds[i], RS_GET, strlen(RS_GET));
        int ret = up_test_read_response(fds[i], &r, UP_TEST_TIMEOUT_MS);
        cr_assert_eq(ret, 0, "connection %d: %s; log:\n%s", i, strerror(-ret), ma_log_text());
        cr_assert_eq(r.status, 200, "connection %d: status %d", i, r.status);
        up_test_resp_free(&r);
    }
    long long opened = up_test_now_ms() - t0;
    /* The master closes its copy of each fd once the worker ACKed it. */
    int held = proc_fds_settled(ma.pid, base, 3000);
    long rss1 = up_test_status_kib(ma.pid, "VmRSS:");
    long hwm = up_test_status_kib(ma.pid, "VmHWM:");
    for (int i = 0; i < 2; i++) {
        wheld[i] = proc_fds(pids[i]);
    }
    /* Still open: no worker closed an idle connection meanwhile. */
    for (int i = 0; i < n; i++) {
        char ch;
        ssize_t got = recv(fds[i], &ch, 1, MSG_DONTWAIT);
        cr_assert(got == -1 && errno == EAGAIN, "connection %d ended while held (%zd, %s)", i, got,
                  got < 0 ? strerror(errno) : "");
    }
    fprintf(stderr,
            "[resources] idle_connections (%s): %d Keep-Alive connections opened in %lld ms; "
            "master VmRSS %ld -> %ld KiB (HWM %ld), fds %d -> %d; worker fds %d -> %d and "
            "%d -> %d\n",
            backend, n, opened, rss0, rss1, hwm, base, held, wbase[0], wheld[0], wbase[1],
            wheld[1]);
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    free(fds);
    cr_assert_eq(held, base, "the master has %d fds with %d connections held by workers, %d before",
                 held, n, base);
    /* The RSS bound is the real build's: under ASan the shadow memory and
     * the quarantine (which keeps every freed per-connection struct
     * resident) put the master at ~10 MiB before the first connection. */
    if (!up_test_sanitized()) {
        cr_assert_leq(rss1, RS_MASTER_RSS_KIB, "the master's VmRSS is %ld KiB (limit %d)", rss1,
                      RS_MASTER_RSS_KIB);
    }
    cr_assert_geq(wheld[0] - wbase[0] + wheld[1] - wbase[1], n,
                  "the workers hold %d more fds for %d connections",
                  wheld[0] - wbase[0] + wheld[1] - wbase[1], n);
    for (int i = 0; i < 2; i++) {
        cr_assert_gt(wheld[i] - wbase[i], n / 4, "worker %d took only %d connections", (int)pids[i],
                     wheld[i] - wbase[i]);
    }
}
