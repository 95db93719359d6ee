/*
 * production: what the world outside up-run does to it, on both back ends.
 *
 *   - a worker signalled by someone else (an operator, an OOM helper, a
 *     container runtime) drains on its own: it tells the master, which
 *     routes nothing more to it and starts a replacement; nothing bounces,
 *     and the master stops cleanly afterwards;
 *   - fork failing (a process limit) when a dead worker must be replaced:
 *     the master retries with its back-off, answers 503 with Retry-After
 *     after --queue-timeout instead of holding connections forever, says
 *     degraded in /healthz and status, and recovers by itself;
 *   - started with the standard streams closed: /dev/null holds fds 0-2 in
 *     the master and its workers (and a lone worker), never a socket.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"

#define PR_GET "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- a worker signalled by someone else ---- */

/* One worker, holding a keep-alive connection, gets SIGTERM from outside.
 * New requests must be answered at once by a replacement (before, the
 * master kept routing to the draining worker, which handed each one
 * straight back: tens of thousands of bounces a second and no answer).
 * The old worker hands its idle connection back at its own deadline and
 * exits by itself; the connection goes on with the replacement. Then the
 * client leaves and the master, given SIGTERM, exits 0 (it once crashed
 * here). */
BACKEND_TEST(production, worker_signalled_by_someone_else, .timeout = 60, .fini = ht_fini)
{
    static const char *const extra[] = {"-n", "1", NULL};
    ma.env[0] = "UP_DRAIN_TIMEOUT=3s"; /* the worker's own drain, when nobody asked */
    ma_start(backend, up_test_bin("examples/echo.so"), extra);
    struct ma_status s;
    ma_wait_workers(1, 1, &s);
    int held = ht_connect(ma.port);
    pid_t old = ht_get_pid(held, "the held connection");

    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(old, SIGTERM), 0);
    up_test_nap(50); /* the worker's notice is on its way */
    /* Fresh connections: answered by someone else than the old worker. */
    pid_t fresh = -1;
    for (int i = 0; i < 20; i++) {
        struct up_test_resp r = {0};
        int ret =
            up_test_request(ma.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        cr_assert_eq(ret, 0, "request %d after the SIGTERM: %s; log:\n%s", i, strerror(-ret),
                     ma_log_text());
        cr_assert_eq(r.status, 200, "request %d: status %d", i, r.status);
        const char *pid = up_test_resp_header(&r, "X-Up-Pid");
        fresh = pid != NULL ? (pid_t)atol(pid) : -1;
        cr_assert_neq(fresh, old, "request %d answered by the draining worker", i);
        up_test_resp_free(&r);
    }
    long long fresh_ms = up_test_now_ms() - t0;
    /* At once, not when the old worker's own deadline ends the bouncing. */
    cr_assert_lt(fresh_ms, 1500, "20 new requests took %lld ms; log:\n%s", fresh_ms, ma_log_text());
    ma_status(&s);
    long handed_back = s.handed_back;
    cr_assert_leq(handed_back, 10, "%ld hand-backs: connections bounced\n%s", handed_back, s.text);
    cr_assert_eq(up_test_wait_log(ma.log, "drains on its own", 5000), 0, "log:\n%s", ma_log_text());
    /* The old worker leaves by itself, its idle connection handed back. */
    long long gone_ms = proc_wait_gone(&old, 1, 10000);
    cr_assert_geq(gone_ms, 0, "the old worker is still there; log:\n%s", ma_log_text());
    pid_t now = ht_get_pid(held, "the held connection after its worker left");
    cr_assert_neq(now, old);
    /* Replaced once: when it said it drains, not again when it left. */
    ma_wait_workers_not(1, 1, &old, 1, &s);
    up_test_nap(300);
    ma_status(&s);
    cr_assert_eq(s.respawns, 1, "replaced more than once:\n%s", s.text);
    cr_assert_str_eq(s.health, "ok", "status:\n%s", s.text);
    cr_assert_eq(up_test_file_contains(ma.log, "killing it"), 0, "log:\n%s", ma_log_text());

    /* The client leaves; the master stops cleanly. */
    close(held);
    up_test_nap(200);
    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    int status = up_test_wait_exit(ma.pid, 10000);
    cr_assert_eq(status, 0, "up-run exited %d after SIGTERM; log:\n%s", status, ma_log_text());
    ma.pid = -1;
    fprintf(stderr,
            "[production] %s: worker %d SIGTERMed from outside: 20 new requests answered by "
            "%d within %lld ms; it left %lld ms later, its idle connection went on with %d; "
            "%ld hand-backs; master exit 0\n",
            backend, (int)old, (int)fresh, fresh_ms, gone_ms, (int)now, handed_back);
}

/* The reload signal sent to the whole process group (`kill -USR2 --
 * -PGID`), or to every process named up (`pkill -USR2 up`, which the
 * titles "up master" and "up worker" match): the master reloads, and the
 * workers, which once died of it mid-request, ignore it and drain as the
 * reload asks. Under keep-alive load nothing is lost, three times over. */
BACKEND_TEST(production, the_reload_signal_to_the_whole_group_loses_nothing, .timeout = 60,
             .fini = ht_fini)
{
    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    const char *const load[] = {"--keepalive",   "8",           "--fresh", "0", "--seconds", "4",
                                "--expect-body", "Hello World", NULL};
    ld_start(0, load);
    for (int i = 0; i < 3; i++) {
        up_test_nap(1000);
        cr_assert_eq(kill(-ma.pid, SIGUSR2), 0);
    }
    struct ld_result res;
    ld_finish(0, 30000, &res);
    ld_report("production", backend, &res);
    ma_wait_log("generation 4 serving", 5000);
    cr_assert_eq(up_test_file_contains(ma.log, "exited unexpectedly"), 0, "%s", ma_log_text());
    cr_assert_eq(up_test_file_contains(ma.log, "SIGUSR2: ignored; a reload is the master's"), 1,
                 "%s", ma_log_text());
}

/* Every worker of the generation signalled at once, each holding idle
 * connections: replacements take over, and no connection is lost. A
 * connection routed to an old worker before the master heard of its drain
 * is served by it (it serves what it was sent until the master's DRAIN);
 * once the master heard, nothing new goes to either. */
BACKEND_TEST(production, all_workers_signalled_at_once, .timeout = 60, .fini = ht_fini)
{
    enum { HELD = 8 };
    ma.env[0] = "UP_DRAIN_TIMEOUT=1s";
    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);
    pid_t old[2];
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", old, 2), 2);
    int held[HELD];
    for (int i = 0; i < HELD; i++) {
        held[i] = ht_connect(ma.port);
        ht_get_pid(held[i], "a held connection");
    }
    kill(old[0], SIGTERM);
    kill(old[1], SIGTERM);
    int early = ht_connect(ma.port);
    ht_get_pid(early, "a new connection right after the signals");
    close(early);
    long long deadline = up_test_now_ms() + 5000;
    /* One line per worker: its respawn's line says "drains on its own"
     * too, and counting both let the first worker's two lines pass for
     * both workers while the second was still routed to. */
    while (ht_file_lines(ma.log, "drains on its own (signalled", NULL) < 2) {
        cr_assert_lt(up_test_now_ms(), deadline, "the master did not hear of both drains:\n%s",
                     ma_log_text());
        up_test_nap(10);
    }
    for (int i = 0; i < 10; i++) {
        int fd = ht_connect(ma.port);
        pid_t p = ht_get_pid(fd, "a new connection while both drain");
        cr_assert(!ht_pid_in(p, old, 2), "answered by a draining worker %d", (int)p);
        close(fd);
    }
    cr_assert_geq(proc_wait_gone(old, 2, 10000), 0, "the old workers stay; log:\n%s",
                  ma_log_text());
    for (int i = 0; i < HELD; i++) {
        pid_t p = ht_get_pid(held[i], "a held connection after both left");
        cr_assert(!ht_pid_in(p, old, 2));
        close(held[i]);
    }
    ma_status(&s);
    cr_assert_str_eq(s.health, "ok", "status:\n%s", s.text);
}

/* ---- fork failing ---- */

/* Uids no process of this machine runs as: their process counts are ours
 * alone to fill, one for each back end's run (they run at the same time). */
#define PR_UID_URING 65533
#define PR_UID_EPOLL 65532

/* up-run as a uid of its own with RLIMIT_NPROC 3 (itself, one worker, and
 * room for an io_uring io-wq thread). (Only root may start it so, and the
 * limit does not hold for root.) Processes of that uid started beside it
 * take the slots left, and one more: the worker killed next cannot be
 * replaced, since fork fails with EAGAIN, until they leave. */
BACKEND_TEST(production, fork_failing_degrades_then_recovers, .timeout = 90, .fini = ht_fini)
{
    enum { LIMIT = 3, MAX_FILLERS = 8 };
    up_test_require_root();
    static char prlimit_bin[64], setpriv_bin[64], reuid[32], regid[32];
    snprintf(prlimit_bin, sizeof(prlimit_bin), "%s", ht_util("prlimit"));
    snprintf(setpriv_bin, sizeof(setpriv_bin), "%s", ht_util("setpriv"));
    uid_t uid = strcmp(backend, "io_uring") == 0 ? PR_UID_URING : PR_UID_EPOLL;
    snprintf(reuid, sizeof(reuid), "--reuid=%u", (unsigned)uid);
    snprintf(regid, sizeof(regid), "--regid=%u", (unsigned)uid);
    const char *const as_uid[] = {setpriv_bin, reuid, regid, "--clear-groups", "--"};
    ma.wrap[0] = prlimit_bin;
    ma.wrap[1] = "--nproc=3";
    ma.wrap[2] = "--";
    memcpy(ma.wrap + 3, as_uid, sizeof(as_uid));
    memcpy(ma.cmd_wrap, as_uid, sizeof(as_uid)); /* status asks as that uid too */
    /* The master's temp dir (snapshots, control socket) must be its. */
    cr_assert_eq(chown(ht_path(""), uid, uid), 0, "chown: %s", strerror(errno));
    char metrics[32];
    int mport = ht_metrics_addr(metrics, sizeof(metrics));
    const char *const extra[] = {"-n", "1", "--queue-timeout", "2s", "--metrics", metrics, NULL};
    ma.public_bins = true; /* that uid may not reach the build directory */
    ma_start(backend, up_test_public_bin("examples/echo.so"), extra);
    struct ma_status s;
    ma_wait_workers(1, 1, &s);
    pid_t worker;
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", &worker, 1), 1);

    /* Fill to the limit and one over, so that with the worker gone the
     * count is still at the limit even if a passing io-wq thread left. */
    char *filler_argv[] = {setpriv_bin, reuid, regid, "--clear-groups", "--", "sleep", "60", NULL};
    pid_t fillers[MAX_FILLERS];
    int nfillers = 0;
    while (proc_tasks_of(uid) < LIMIT + 2 && nfillers < MAX_FILLERS) {
        fillers[nfillers] = up_test_spawn(filler_argv, NULL, NULL);
        cr_assert_gt(fillers[nfillers], 0);
        ht_stop_at_fini(fillers[nfillers]);
        nfillers++;
        up_test_nap(50); /* until it runs as that uid */
    }
    cr_assert_eq(kill(worker, SIGKILL), 0);

    /* Degraded, and says so. */
    struct up_test_resp r = {0};
    long long tk = up_test_now_ms();
    do {
        up_test_resp_free(&r);
        up_test_nap(50);
        ht_fetch(mport, "/healthz", &r);
    } while (r.status != 503 && up_test_now_ms() - tk < 5000);
    cr_assert_eq(r.status, 503, "/healthz %d with no worker:\n%s", r.status, r.body);
    cr_assert_not_null(strstr(r.body, "no ready worker"), "%s", r.body);
    up_test_resp_free(&r);
    ma_status(&s);
    cr_assert_not_null(strstr(s.text, "health=degraded: no ready worker"), "status:\n%s", s.text);
    cr_assert_eq(up_test_file_contains(ma.log, "degraded: no ready worker"), 1, "log:\n%s",
                 ma_log_text());
    cr_assert_eq(up_test_wait_log(ma.log, "short: retrying in", 5000), 0,
                 "no retry of the failed respawn; log:\n%s", ma_log_text());

    /* A request waits --queue-timeout, then 503 with Retry-After. */
    long long t0 = up_test_now_ms();
    cr_assert_eq(up_test_request(ma.port, PR_GET, &r), 0, "log:\n%s", ma_log_text());
    long long waited = up_test_now_ms() - t0;
    cr_assert_eq(r.status, 503, "status %d with no worker", r.status);
    cr_assert_not_null(up_test_resp_header(&r, "Retry-After"), "%s", r.head);
    cr_assert(waited >= 1500 && waited < 4000, "503 after %lld ms (--queue-timeout 2s)", waited);
    up_test_resp_free(&r);

    /* The slots are free again: the next retry replaces the worker. */
    for (int i = 0; i < nfillers; i++) {
        up_test_stop(fillers[i], 1000);
    }
    long long t1 = up_test_now_ms();
    int status = 0;
    do {
        up_test_nap(100);
        cr_assert_eq(up_test_request(ma.port, PR_GET, &r), 0, "log:\n%s", ma_log_text());
        status = r.status;
        up_test_resp_free(&r);
    } while (status != 200 && up_test_now_ms() - t1 < 15000);
    long long back = up_test_now_ms() - t1;
    cr_assert_eq(status, 200, "no worker 15 s after fork works again; log:\n%s", ma_log_text());
    ht_fetch(mport, "/healthz", &r);
    cr_assert_eq(r.status, 200, "/healthz %d after recovery: %s", r.status, r.body);
    up_test_resp_free(&r);
    cr_assert_eq(up_test_file_contains(ma.log, "healthy again"), 1, "log:\n%s", ma_log_text());
    fprintf(stderr,
            "[production] fork failing (%s): /healthz 503 and status degraded; a request got 503 "
            "+ Retry-After after %lld ms; serving again %lld ms after fork works\n",
            backend, waited, back);
}

/* ---- a worker that breaks the protocol ---- */

/* Start up-run with one fake-worker (tests/tools) in mode, breaking the
 * channel protocol on purpose: the master treats it as a trust boundary. */
static void pr_start_fake(const char *backend, const char *mode, const char *const *extra)
{
    static char bin[PATH_MAX + 16], env_mode[64];
    snprintf(bin, sizeof(bin), "UP_WORKER_BIN=%s", up_test_bin("tools/fake-worker"));
    snprintf(env_mode, sizeof(env_mode), "FAKE_MODE=%s", mode);
    ma.env[0] = bin;
    ma.env[1] = env_mode;
    ma_spawn(backend, up_test_bin("examples/hello.so"), extra);
    cr_assert_eq(up_test_wait_log(ma.log, "generation 1 serving", 10000), 0, "log:\n%s",
                 ma_log_text());
}

/* A worker that takes connections and never ACKs one holds the master's
 * copies of their fds: it gets at most UP_MW_MAX_UNACKED (512), the rest
 * wait for a worker and get 503 at --queue-timeout. */
BACKEND_TEST(production, worker_that_never_acks_is_bounded, .timeout = 60, .fini = ht_fini)
{
    enum { N = 600 };
    static const char *const extra[] = {"-n", "1", "--queue-timeout", "2s", NULL};
    ht_raise_nofile(N + 256);
    pr_start_fake(backend, "noack", extra);
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = ht_connect(ma.port);
        cr_assert_eq(up_test_send_all(fds[i], PR_GET, strlen(PR_GET)), 0);
    }
    /* The ones over the cap wait, then 503: watch them all for 6 s. */
    static struct ht_answer a[N];
    int got503 = 0;
    ht_collect(fds, N, a, up_test_now_ms(), 6000);
    for (int i = 0; i < N; i++) {
        got503 += a[i].status == 503;
    }
    long received = ht_file_last_number(ma.log, "fake: received ", 0);
    struct ma_status s;
    ma_status(&s);
    cr_assert_leq(received, 512, "the worker got %ld connections it never ACKed", received);
    cr_assert_geq(received, 400, "the worker got only %ld", received);
    cr_assert_eq(got503, N - received, "%d answered 503, %ld held by the worker", got503, received);
    fprintf(stderr,
            "[production] never-ACKing worker (%s): it holds %ld of %d, the other %d got 503\n",
            backend, received, N, got503);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
}

/* One malformed message can carry 8,192 unknown ids: 100 of them make a
 * few log lines, not 819,200; the worker is not killed for it. */
BACKEND_TEST(production, worker_flooding_bad_acks_is_rate_limited, .timeout = 60, .fini = ht_fini)
{
    static const char *const extra[] = {"-n", "1", NULL};
    pr_start_fake(backend, "badacks", extra);
    struct ma_status s;
    ma_wait_workers(1, 1, &s);
    up_test_nap(300);
    ma_status(&s);
    int lines = ht_file_lines(ma.log, "unknown conn ids", NULL);
    cr_assert(lines >= 1 && lines <= 5, "%d warning lines for 100 bad ACKs; log:\n%s", lines,
              ma_log_text());
    cr_assert_eq(ht_file_lines(ma.log, "killing it", NULL), 0, "log:\n%s", ma_log_text());
    pid_t w;
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", &w, 1), 1, "status:\n%s", s.text);
    fprintf(stderr, "[production] bad ACK flood (%s): %d warning lines\n", backend, lines);
}

/* A connection handed back by a worker that is not draining, or with more
 * bytes "already read" than a head may hold, is not taken: it is closed
 * and said so. The master goes on. */
static void pr_refused_hand_back(const char *backend, const char *mode, const char *needle)
{
    static const char *const extra[] = {"-n", "1", NULL};
    pr_start_fake(backend, mode, extra);
    int fd = ht_connect(ma.port);
    cr_assert_eq(up_test_send_all(fd, PR_GET, strlen(PR_GET)), 0);
    char buf[256];
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    close(fd);
    cr_assert(end == 0 || end == ECONNRESET, "%s: still open: %s", mode, strerror(end));
    cr_assert_eq(n, 0, "%s: %d bytes: %s", mode, n, buf);
    cr_assert_eq(up_test_wait_log(ma.log, needle, 5000), 0, "log:\n%s", ma_log_text());
    struct ma_status s;
    ma_status(&s);
    cr_assert(up_test_alive(ma.pid));
}

BACKEND_TEST(production, hand_back_while_not_draining_is_refused, .timeout = 60, .fini = ht_fini)
{
    pr_refused_hand_back(backend, "handback", "handed a connection back while not draining");
}

BACKEND_TEST(production, hand_back_with_a_huge_prefix_is_refused, .timeout = 60, .fini = ht_fini)
{
    pr_refused_hand_back(backend, "prefix", "over --max-head");
}

/* ---- started with its standard streams closed ---- */

/* What fd n of pid names ("/dev/null", "anon_inode:[io_uring]"...), in buf. */
static const char *pr_fd_target(pid_t pid, int n, char *buf, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, n);
    ssize_t len = readlink(link, buf, cap - 1);
    buf[len < 0 ? 0 : len] = '\0';
    return len < 0 ? "(closed)" : buf;
}

/* An init script's `<&- >&- 2>&-`: the first fds the master and its
 * workers open would take the numbers 0, 1 and 2, and a log line or an
 * app's printf() would go into the event ring, a listener or a client's
 * connection. They are held by /dev/null instead, and the server serves
 * and reloads as ever. */
BACKEND_TEST(production, closed_standard_streams_are_held_by_dev_null, .timeout = 60,
             .fini = ht_fini)
{
    struct ma_status s;
    pid_t w[2];
    char buf[128];
    ma.wrap[0] = "/bin/sh";
    ma.wrap[1] = "-c";
    ma.wrap[2] = "exec \"$@\" <&- >&- 2>&-";
    ma.wrap[3] = "sh";
    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    for (int round = 1; round <= 2; round++) {
        ma_wait_workers((unsigned)round, 2, &s);
        ma_gen_pids(&s, (unsigned)round, "ready", w, 2);
        for (int n = 0; n <= 2; n++) {
            cr_assert_str_eq(pr_fd_target(ma.pid, n, buf, sizeof(buf)), "/dev/null",
                             "the master's fd %d", n);
        }
        for (int i = 0; i < 2; i++) {
            /* fd 2 is the pipe the master relays the worker's lines from. */
            for (int n = 0; n <= 1; n++) {
                cr_assert_str_eq(pr_fd_target(w[i], n, buf, sizeof(buf)), "/dev/null",
                                 "generation %d, worker %d's fd %d", round, (int)w[i], n);
            }
            cr_assert_not_null(strstr(pr_fd_target(w[i], 2, buf, sizeof(buf)), "pipe:"),
                               "generation %d, worker %d's fd 2: %s", round, (int)w[i], buf);
        }
        ma_get_pid(NULL);
        if (round == 1) {
            ma_signal(SIGUSR2);
            ma_wait_generation(2, 5000);
        }
    }
}

/* The same for a lone worker: its own listener must not become fd 0. */
/* A lone up-worker started with fds 0-2 closed; no_dev: in a mount
 * namespace of its own with an empty /dev (a chroot without one). Each of
 * fds 0-2 must name want, and the worker serve. */
static void pr_lone_worker_closed_std(bool no_dev, const char *want)
{
    char buf[128], listen[32];
    int port = up_test_free_port();
    cr_assert_gt(port, 0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char bin[PATH_MAX], app[PATH_MAX]; /* made before the fork: the child only closes and execs */
    snprintf(bin, sizeof(bin), "%s", up_test_bin("up-worker"));
    snprintf(app, sizeof(app), "%s", up_test_bin("examples/echo.so"));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* /dev private first, so that the tmpfs on it stays in this
         * namespace (not "/": in a chroot it is no mount point). */
        if (no_dev &&
            (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/dev", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
             mount("tmpfs", "/dev", "tmpfs", 0, "size=64k") < 0)) {
            _exit(125);
        }
        close(0);
        close(1);
        close(2);
        execl(bin, "up-worker", "--listen", listen, app, (char *)NULL);
        _exit(127);
    }
    ht_stop_at_fini(pid);
    if (no_dev && up_test_wait_exit(pid, 300) == 125) {
        cr_skip_test("no mount namespace here: run as root");
    }
    cr_assert_eq(up_test_wait_ready(pid, port, HT_READY_MS), 0);
    for (int n = 0; n <= 2; n++) {
        /* The same file, not the same name: in a namespace of its own
         * (and a chroot) the name the kernel gives "/" differs. */
        char link[64];
        struct stat got, is;
        snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, n);
        cr_assert_eq(stat(link, &got), 0, "fd %d: %s", n, strerror(errno));
        cr_assert_eq(stat(want, &is), 0);
        cr_assert(got.st_dev == is.st_dev && got.st_ino == is.st_ino, "fd %d is %s, not %s", n,
                  pr_fd_target(pid, n, buf, sizeof(buf)), want);
    }
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_request(port, PR_GET, &r), 0);
    cr_assert_eq(r.status, 200);
    up_test_resp_free(&r);
}

Test(production, a_lone_worker_s_closed_standard_streams_are_held_by_dev_null, .timeout = 30,
     .fini = ht_fini)
{
    pr_lone_worker_closed_std(false, "/dev/null");
}

/* Without a /dev/null to open, an O_PATH fd of "/" holds each number. */
Test(production, without_dev_null_closed_standard_streams_are_held_by_the_root, .timeout = 30,
     .fini = ht_fini)
{
    pr_lone_worker_closed_std(true, "/");
}

/* ---- as a container's init ---- */

/* SIGKILL worker, one of master's two: the master sees it die and
 * replaces it within 5 s, and serves. */
static void pr_kill_and_see_replaced(pid_t master, pid_t worker)
{
    cr_assert_eq(kill(worker, SIGKILL), 0);
    ma_wait_log("exited unexpectedly (signal 9); respawning", 5000);
    long long deadline = up_test_now_ms() + 5000;
    pid_t now[2];
    while (proc_children(master, true, now, 2) != 2 || now[0] == worker || now[1] == worker) {
        cr_assert_lt(up_test_now_ms(), deadline, "not replaced:\n%s", ma_log_text());
        up_test_nap(10);
    }
    ma_requests(10, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
}

/* `docker run IMAGE up-run ...` makes the master pid 1 of its pid
 * namespace (tests/tools/pidns does what the runtime does: the namespace,
 * its own /proc, the signals passed on from outside). Its workers once
 * took their parent's pid 1 for their master's death and exited before
 * they were ready: such a container never started. Here the master
 * serves, replaces a worker killed from outside, reaps an orphan the
 * namespace hands it (the duty of any pid 1), reloads, refuses an upgrade
 * with the reason (its exit would end the namespace, the new master too)
 * and stops cleanly on the runtime's SIGTERM. */
BACKEND_TEST(production, as_a_container_s_init_it_serves_reloads_and_stops, .timeout = 60,
             .fini = ht_fini)
{
    up_test_require_root();
    const char *const wrap[] = {up_test_bin("tools/pidns"), "--", NULL};
    memcpy(ma.wrap, wrap, sizeof(wrap));
    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    pid_t master = (pid_t)ma_log_number("pidns: pid 1 is host pid ", 5000);
    cr_assert_gt(master, 1);
    pid_t kids[8];
    cr_assert_eq(proc_children(master, true, kids, 8), 2, "%s", ma_log_text());

    /* A worker killed from outside is replaced. */
    pr_kill_and_see_replaced(master, kids[0]);

    /* An orphan of the namespace is reparented to pid 1, which reaps it. */
    char target[16];
    snprintf(target, sizeof(target), "%d", (int)master);
    char *const orphan[] = {"/usr/bin/nsenter",   "-t", target, "-p", "--", "/bin/sh", "-c",
                            "sleep 0.2 & exit 0", NULL};
    pid_t ns = up_test_spawn(orphan, NULL, ht_path("nsenter.log"));
    cr_assert_gt(ns, 0);
    cr_assert_eq(up_test_wait_exit(ns, 5000), 0, "%s", up_test_file_tail(ht_path("nsenter.log")));
    up_test_nap(500); /* the sleep has ended */
    cr_assert_eq(proc_children(master, true, kids, 8), 2, "a zombie is left:\n%s", ma_log_text());

    ma_signal(SIGUSR2);
    ma_wait_generation(2, 10000);

    char out[2048];
    const char *const args[] = {"upgrade", "--control", ma.ctl, NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 1, "%s", out);
    cr_assert_not_null(strstr(out, "upgrade refused: this master is pid 1"), "%s", out);

    cr_assert_eq(up_test_stop(ma.pid, 10000), 0, "%s", ma_log_text());
    ma.pid = -1;
}

/* ---- the event loop ---- */

/* The first of the master and its workers (pids[0..n)) that does not run
 * its loop on want ("io_uring" or "epoll") alone, or -1. */
static int pr_off_loop(const pid_t *pids, int n, const char *want)
{
    bool uring = strcmp(want, "io_uring") == 0;
    for (int i = 0; i < n; i++) {
        if (proc_fds_of(pids[i], "anon_inode:[io_uring]") != (uring ? 1 : 0) ||
            proc_fds_of(pids[i], "anon_inode:[eventpoll]") != (uring ? 0 : 1)) {
            return i;
        }
    }
    return -1;
}

/* Asserts that the master and every worker run their loop on want, once
 * each worker has set its loop up (within 5 s: a worker not yet ready
 * has none yet). */
static void pr_assert_loops(const char *want)
{
    long long deadline = up_test_now_ms() + 5000;
    pid_t pids[9] = {ma.pid};
    int n, off;
    do {
        n = 1 + proc_children(ma.pid, false, pids + 1, 8);
        off = n > 1 ? pr_off_loop(pids, n, want) : 0;
        if (off >= 0) {
            up_test_nap(20);
        }
    } while (off >= 0 && up_test_now_ms() < deadline);
    cr_assert_gt(n, 1, "no workers:\n%s", ma_log_text());
    cr_assert_lt(off, 0, "%s (pid %d) is not on %s:\n%s", off == 0 ? "the master" : "a worker",
                 (int)pids[off < 0 ? 0 : off], want, ma_log_text());
}

/* Docker's default seccomp profile (and kernel.io_uring_disabled) refuse
 * io_uring_setup with EPERM. Under auto the master says so once and takes
 * epoll, and so do its workers through a reload, at once and without a
 * line each at every start (before, each worker tried io_uring itself and
 * logged the refusal). Asked for io_uring by name, up-run refuses to start
 * and says why. */
Test(production, io_uring_refused_by_seccomp_means_epoll_for_all, .timeout = 60, .fini = ht_fini)
{
    const char *const wrap[] = {up_test_bin("tools/noring"), "--", NULL};
    memcpy(ma.wrap, wrap, sizeof(wrap));
    ma_start("auto", up_test_bin("examples/hello.so"), NULL);
    ma_wait_log("event loop: epoll (io_uring unavailable: io_uring_setup refused (EPERM", 5000);
    pr_assert_loops("epoll");
    ma_signal(SIGUSR2);
    ma_wait_log("generation 2 serving", 10000);
    ma_requests(20, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    pr_assert_loops("epoll");
    cr_assert_eq(up_test_file_contains(ma.log, "using epoll"), 0,
                 "a worker tried io_uring again:\n%s", ma_log_text());

    char out[4096], port[16];
    snprintf(port, sizeof(port), "%d", up_test_free_port());
    memcpy(ma.cmd_wrap, wrap, sizeof(wrap));
    const char *const args[] = {
        "-p",       port,        "--allow-root",         "--backend",
        "io_uring", "--control", ht_path("strict.sock"), up_test_bin("examples/hello.so"),
        NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "cannot set up the event loop"), "%s", out);
    cr_assert_not_null(strstr(out, "io_uring_setup refused (EPERM"), "%s", out);
}

/* --backend is for the workers too, whatever UP_BACKEND they would
 * inherit (before, they took the environment's, and an operator who
 * turned io_uring off with the option still ran it in every worker). */
Test(production, the_backend_option_holds_for_the_workers, .timeout = 60, .fini = ht_fini)
{
    const char *const to_epoll[] = {"--backend", "epoll", NULL};
    ma_start("io_uring", up_test_bin("examples/hello.so"), to_epoll);
    pr_assert_loops("epoll");
    cr_assert_eq(up_test_stop(ma.pid, 10000), 0, "%s", ma_log_text());
    ma.pid = -1;

    up_test_require_io_uring();
    const char *const to_uring[] = {"--backend", "io_uring", NULL};
    ma_start("epoll", up_test_bin("examples/hello.so"), to_uring);
    pr_assert_loops("io_uring");
}

/* ---- what the parent left ---- */

/* Started with SIGCHLD ignored (a parent that set it and exec'd: the
 * disposition is inherited), the kernel reaped the workers itself: a
 * worker that died was never seen, listed as ready for ever, never
 * replaced. The master sets what it reads from its signalfd back to the
 * default. */
BACKEND_TEST(production, an_inherited_ignored_sigchld_still_sees_workers_die, .timeout = 30,
             .fini = ht_fini)
{
    ma.wrap[0] = "/usr/bin/perl";
    ma.wrap[1] = "-e";
    ma.wrap[2] = "$SIG{CHLD} = 'IGNORE'; exec @ARGV or die \"exec: $!\"";
    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    pid_t kids[2];
    cr_assert_eq(ma_wait_children(2, kids, 2), 2);
    pr_kill_and_see_replaced(ma.pid, kids[0]);
}

/* What examples/env.so says a process it starts gets: nothing blocked,
 * none of the signals the worker takes (nor SIGPIPE, nor SIGCHLD)
 * ignored. */
static void pr_assert_child_signals(const struct up_test_resp *r)
{
    const char *blk = up_test_resp_header(r, "X-Child-SigBlk");
    const char *ign = up_test_resp_header(r, "X-Child-SigIgn");
    cr_assert(blk != NULL && ign != NULL, "%s", r->head);
    cr_assert_str_eq(blk, "0000000000000000", "blocked in the app's child: %s", blk);
    unsigned long long ignored = strtoull(ign, NULL, 16);
    static const int sigs[] = {SIGPIPE, SIGTERM, SIGINT,  SIGQUIT,
                               SIGHUP,  SIGUSR1, SIGUSR2, SIGCHLD};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        cr_assert_eq(ignored & (1ULL << (sigs[i] - 1)), 0, "%s ignored in the app's child: %s",
                     strsignal(sigs[i]), ign);
    }
}

/* A process the app starts (system(), popen(), posix_spawn) once
 * inherited the worker's blocked TERM, INT, QUIT, HUP, USR1 and USR2 and
 * its ignored SIGPIPE: a helper the app then tried to stop with SIGTERM
 * ran on, and one writing into a closed pipe got EPIPE errors instead of
 * ending quietly. It now starts with nothing blocked and those at their
 * defaults (examples/env.so spawns cat /proc/self/status). The worker
 * still takes its signals: a SIGTERM from outside drains it. */
BACKEND_TEST(production, what_the_app_starts_inherits_no_blocked_or_ignored_signals, .timeout = 30,
             .fini = ht_fini)
{
    const char *const extra[] = {"-n", "1", NULL};
    ma_start(backend, up_test_bin("examples/env.so"), extra);
    struct up_test_resp r = {0};
    cr_assert_eq(ma_fresh("/", &r), 0);
    pr_assert_child_signals(&r);
    up_test_resp_free(&r);
    pid_t kids[1];
    cr_assert_eq(ma_wait_children(1, kids, 1), 1);
    cr_assert_eq(kill(kids[0], SIGTERM), 0);
    ma_wait_log("Terminated: draining once the master has heard", 5000);
    ma_wait_log("respawning", 5000);
}

/* A lone worker whose parent left its signals blocked and SIGCHLD ignored
 * (both survive exec): what the app starts gets neither, and the worker
 * still stops on SIGTERM. */
Test(production, a_lone_worker_clears_what_its_parent_left, .timeout = 30, .fini = ht_fini)
{
    int port = up_test_free_port();
    cr_assert_gt(port, 0);
    char listen[32], bin[PATH_MAX], app[PATH_MAX];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(bin, sizeof(bin), "%s", up_test_bin("up-worker"));
    snprintf(app, sizeof(app), "%s", up_test_bin("examples/env.so"));
    sigset_t block;
    sigemptyset(&block);
    static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaddset(&block, sigs[i]);
    }
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        signal(SIGCHLD, SIG_IGN);
        sigprocmask(SIG_BLOCK, &block, NULL);
        execl(bin, "up-worker", "--listen", listen, app, (char *)NULL);
        _exit(127);
    }
    ht_stop_at_fini(pid);
    cr_assert_eq(up_test_wait_ready(pid, port, HT_READY_MS), 0);
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_request(port, PR_GET, &r), 0);
    pr_assert_child_signals(&r);
    up_test_resp_free(&r);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(up_test_wait_exit(pid, 10000), 0);
}
