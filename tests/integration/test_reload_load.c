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
 * Each test process starts one master and at most one up-load, kept in `rl`
 * so that the fini stops them by pid even after a failed assertion.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../lib/testlib.h"

#define RL_READY_MS 10000
#define RL_STOP_MS 5000
#define RL_SETTLE_MS 5000
#define RL_MAX_CLIENTS 4

struct rl {
    pid_t master; /* up-run, or -1 */
    pid_t load;   /* up-load, or -1 */
    int port;
    int clients[RL_MAX_CLIENTS]; /* keep-alive sockets the test holds, or -1 */
    char dir[64];                /* the temp dir, or "" */
    char log[PATH_MAX];          /* up-run's stderr */
    char load_out[PATH_MAX];     /* up-load's output */
};

static struct rl rl = {.master = -1, .load = -1, .clients = {-1, -1, -1, -1}};

/* Counters from up-load's summary line. */
struct rl_load {
    long requests, ok, connect_errors, resets, lost, bad, timeouts, idle_closes, pids;
    char line[512];
};

static void rl_fini(void)
{

    for (int i = 0; i < RL_MAX_CLIENTS; i++) {
        if (rl.clients[i] >= 0) {
            close(rl.clients[i]);
            rl.clients[i] = -1;
        }
    }
    if (rl.load > 0) {
        up_test_stop(rl.load, RL_STOP_MS);
        rl.load = -1;
    }
    if (rl.master > 0) {
        up_test_stop(rl.master, RL_STOP_MS);
        rl.master = -1;
    }
    up_test_remove_dir(rl.dir);
}

/* A path in the test's temp dir, created on first use. Static ring buffer,
 * like up_test_bin(). */
static const char *rl_path(const char *name)
{
    static char ring[4][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 4];

    if (rl.dir[0] == '\0') {
        strcpy(rl.dir, "/tmp/up-test-XXXXXX");
        cr_assert_not_null(mkdtemp(rl.dir), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, PATH_MAX, "%s/%s", rl.dir, name);
    return buf;
}

static const char *rl_log_text(void)
{
    return up_test_file_tail(rl.log);
}

static long long rl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rl_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Sleep until the monotonic clock reads at_ms. */
static void rl_sleep_until(long long at_ms)
{
    long long left = at_ms - rl_now_ms();
    if (left > 0) {
        rl_sleep_ms((long)left);
    }
}

/* ---- the master ---- */

/* A fresh connection with a one-shot request: 0 and the answer in r, or
 * -errno. */
static int rl_fresh(struct up_test_resp *r)
{
    return up_test_request(rl.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", r);
}

/* Spawn `up-run -p PORT --control DIR/ctl.sock ARGS... app` with
 * UP_BACKEND=backend and wait until it answers a request with a 200. args is
 * NULL-terminated. */
static void rl_start(const char *backend, const char *app, const char *const *args)
{
    char port[16];
    char backend_env[64];
    char *envp[] = {backend_env, NULL};
    char *argv[32];
    size_t argc = 0;
    const char *bin = up_test_bin("up-run");
    struct up_test_resp r = {0};
    int ret = -1;

    rl.port = up_test_free_port();
    cr_assert_gt(rl.port, 0, "no free port: %s", strerror(-rl.port));
    snprintf(port, sizeof(port), "%d", rl.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(rl.log, sizeof(rl.log), "%s", rl_path("up-run.log"));
    argv[argc++] = (char *)bin;
    argv[argc++] = "-p";
    argv[argc++] = port;
    argv[argc++] = "--control";
    argv[argc++] = (char *)rl_path("ctl.sock");
    for (size_t i = 0; args != NULL && args[i] != NULL && argc + 2 < 32; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc++] = (char *)app;
    argv[argc] = NULL;
    rl.master = up_test_spawn(argv, envp, rl.log);
    cr_assert_gt(rl.master, 0, "spawn %s: %s", bin, strerror(-rl.master));

    long long deadline = rl_now_ms() + RL_READY_MS;
    for (;;) {
        ret = rl_fresh(&r);
        if (ret == 0 && r.status == 200) {
            break;
        }
        cr_assert(up_test_alive(rl.master), "up-run (%s) exited before it answered\nlog:\n%s",
                  backend, rl_log_text());
        cr_assert_lt(rl_now_ms(), deadline,
                     "up-run (%s) gave no 200 on port %d within %d ms (last: %s, status %d)\n"
                     "log:\n%s",
                     backend, rl.port, RL_READY_MS, strerror(-ret), r.status, rl_log_text());
        rl_sleep_ms(10);
    }
    up_test_resp_free(&r);
}

static void rl_reload(void)
{
    cr_assert_eq(kill(rl.master, SIGUSR2), 0, "kill(master, SIGUSR2): %s", strerror(errno));
}

/* The generation and pid of an echo answer (asserted present). */
static unsigned rl_gen(const struct up_test_resp *r)
{
    const char *g = up_test_resp_header(r, "X-Up-Generation");
    cr_assert_not_null(g, "no X-Up-Generation:\n%s", r->head);
    return (unsigned)strtoul(g, NULL, 10);
}

static long rl_pid(const struct up_test_resp *r)
{
    const char *p = up_test_resp_header(r, "X-Up-Pid");
    cr_assert_not_null(p, "no X-Up-Pid:\n%s", r->head);
    return atol(p);
}

/* Wait until a fresh connection is answered by generation gen. */
static void rl_wait_fresh_gen(unsigned gen, int timeout_ms)
{
    struct up_test_resp r = {0};
    long long deadline = rl_now_ms() + timeout_ms;
    unsigned got = 0;

    for (;;) {
        int ret = rl_fresh(&r);
        cr_assert_eq(ret, 0, "fresh request while waiting for generation %u: %s\nlog:\n%s", gen,
                     strerror(-ret), rl_log_text());
        cr_assert_eq(r.status, 200, "fresh request: status %d:\n%s", r.status, r.head);
        got = rl_gen(&r);
        if (got == gen) {
            break;
        }
        cr_assert_lt(rl_now_ms(), deadline,
                     "new connections still go to generation %u %d ms after the reload\nlog:\n%s",
                     got, timeout_ms, rl_log_text());
        rl_sleep_ms(5);
    }
    up_test_resp_free(&r);
}

/* A keep-alive connection the test holds (closed by the fini if need be). */
static int rl_client(void)
{
    int fd = up_test_connect(rl.port);
    cr_assert_geq(fd, 0, "connect to %d: %s", rl.port, strerror(-fd));
    for (int i = 0; i < RL_MAX_CLIENTS; i++) {
        if (rl.clients[i] < 0) {
            rl.clients[i] = fd;
            return fd;
        }
    }
    cr_assert_fail("more than %d clients", RL_MAX_CLIENTS);
    return -1;
}

/* One GET on the keep-alive socket fd; asserts a complete 200 that keeps the
 * connection open. what says which request, for the failure message. */
static void rl_keepalive_get(int fd, struct up_test_resp *r, const char *what)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int ret = up_test_send_all(fd, req, sizeof(req) - 1);

    cr_assert_eq(ret, 0, "%s: send on the keep-alive socket: %s\nlog:\n%s", what, strerror(-ret),
                 rl_log_text());
    ret = up_test_read_response(fd, r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "%s: the keep-alive socket gave no answer: %s\nlog:\n%s", what,
                 strerror(-ret), rl_log_text());
    cr_assert_eq(r->status, 200, "%s: status %d:\n%s", what, r->status, r->head);
    cr_assert_not_null(strstr(r->body, "method: GET"), "%s: not echo's answer:\n%s", what, r->body);
    const char *conn = up_test_resp_header(r, "Connection");
    cr_assert(conn == NULL || strcasecmp(conn, "close") != 0,
              "%s: the server announced a close on a keep-alive socket:\n%s", what, r->head);
}

/* ---- what the master holds: workers and fds ---- */

/* Children of pid (any state, zombies included: an unreaped worker is a
 * leak too). Writes a listing into desc for failure messages. */
static int rl_children(pid_t pid, char *desc, size_t cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    size_t used = 0;

    cr_assert_not_null(d, "opendir /proc: %s", strerror(errno));
    desc[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        char path[300];
        char stat[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t len = read(fd, stat, sizeof(stat) - 1);
        close(fd);
        if (len <= 0) {
            continue;
        }
        stat[len] = '\0';
        /* pid (comm) state ppid ...: comm may hold spaces and parens. */
        char *rp = strrchr(stat, ')');
        char state = '?';
        int ppid = -1;
        if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || ppid != (int)pid) {
            continue;
        }
        n++;
        if (used < cap) {
            int w = snprintf(desc + used, cap - used, " %s(%c)", e->d_name, state);
            used += w > 0 ? (size_t)w : 0;
        }
    }
    closedir(d);
    return n;
}

/* Open fds of pid. */
static int rl_fds(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* The master's fd count once it is stable: the same over 5 samples 20 ms
 * apart (a connection being handed off holds an fd for a moment). */
static int rl_fds_stable(void)
{
    long long deadline = rl_now_ms() + RL_SETTLE_MS;
    int last = rl_fds(rl.master);
    int same = 0;

    while (same < 5 && rl_now_ms() < deadline) {
        rl_sleep_ms(20);
        int n = rl_fds(rl.master);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

/* After a run: the master still answers, its children are back to the
 * `workers` of one generation within RL_SETTLE_MS, and its fd count is back
 * to fds_before. */
static void rl_assert_settled(int workers, int fds_before)
{
    struct up_test_resp r = {0};
    char desc[1024];
    long long deadline;
    int kids;
    int fds;
    int ret;

    cr_assert(up_test_alive(rl.master), "the master died\nlog:\n%s", rl_log_text());
    ret = rl_fresh(&r);
    cr_assert_eq(ret, 0, "the master does not answer after the run: %s\nlog:\n%s", strerror(-ret),
                 rl_log_text());
    cr_assert_eq(r.status, 200, "status %d after the run:\n%s", r.status, r.head);
    up_test_resp_free(&r);

    deadline = rl_now_ms() + RL_SETTLE_MS;
    while ((kids = rl_children(rl.master, desc, sizeof(desc))) != workers &&
           rl_now_ms() < deadline) {
        rl_sleep_ms(20);
    }
    cr_assert_eq(kids, workers,
                 "%d children of the master %d s after the run, expected %d:%s\nlog:\n%s", kids,
                 RL_SETTLE_MS / 1000, workers, desc, rl_log_text());

    deadline = rl_now_ms() + RL_SETTLE_MS;
    while ((fds = rl_fds_stable()) != fds_before && rl_now_ms() < deadline) {
        rl_sleep_ms(20);
    }
    cr_assert_eq(fds, fds_before, "the master holds %d fds after the run, %d before\nlog:\n%s", fds,
                 fds_before, rl_log_text());
}

/* ---- up-load ---- */

/* Spawn up-load on the master's port with the NULL-terminated args. */
static void rl_load_start(const char *const *args)
{
    char port[16];
    char *argv[32];
    size_t argc = 0;
    const char *bin = up_test_bin("tools/up-load");

    snprintf(port, sizeof(port), "%d", rl.port);
    snprintf(rl.load_out, sizeof(rl.load_out), "%s", rl_path("up-load.out"));
    argv[argc++] = (char *)bin;
    argv[argc++] = "--port";
    argv[argc++] = port;
    for (size_t i = 0; args[i] != NULL && argc + 1 < 32; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    rl.load = up_test_spawn(argv, NULL, rl.load_out);
    cr_assert_gt(rl.load, 0, "spawn %s: %s", bin, strerror(-rl.load));
}

/* Wait for up-load, parse its summary, print it, and assert zero failures. */
static void rl_load_finish(const char *what, int timeout_ms, struct rl_load *out)
{
    char text[8192];
    int status = up_test_wait_exit(rl.load, timeout_ms);
    cr_assert_neq(status, -ETIMEDOUT, "up-load still runs %d ms after its end", timeout_ms);
    rl.load = -1;
    snprintf(text, sizeof(text), "%s", up_test_file_tail(rl.load_out));

    const char *line = strstr(text, "up-load: requests=");
    cr_assert_not_null(line, "no summary from up-load (exit %d):\n%s", status, text);
    size_t len = strcspn(line, "\n");
    snprintf(out->line, sizeof(out->line), "%.*s", (int)len, line);
    int n = sscanf(out->line,
                   "up-load: requests=%ld ok=%ld connect_errors=%ld resets=%ld lost=%ld bad=%ld "
                   "timeouts=%ld idle_closes=%ld pids=%ld",
                   &out->requests, &out->ok, &out->connect_errors, &out->resets, &out->lost,
                   &out->bad, &out->timeouts, &out->idle_closes, &out->pids);
    cr_assert_eq(n, 9, "cannot parse up-load's summary: %s", out->line);
    fprintf(stderr, "[reload] %s: %s\n", what, out->line);
    cr_log_info("%s: %s", what, out->line);

    /* cr_expect: a failed run still goes on to the checks on the master
     * (alive, workers, fds), so that one run shows all that went wrong. */
    cr_expect(out->connect_errors == 0 && out->resets == 0 && out->lost == 0 && out->bad == 0 &&
                  out->timeouts == 0,
              "%s: requests failed across reloads: %s\nup-load output:\n%s\nup-run log:\n%s", what,
              out->line, text, rl_log_text());
    cr_expect_eq(status, 0, "up-load exited %d:\n%s", status, text);
    cr_expect_eq(out->ok, out->requests, "%s: %s", what, out->line);
}

/* Send SIGUSR2 every period_ms for total_ms, calling between(i) (may be
 * NULL) before the i-th signal. Asserts that the master stays alive. */
static int rl_reload_storm(int period_ms, int total_ms, void (*between)(int i))
{
    long long start = rl_now_ms();
    int i = 0;

    for (; (long long)i * period_ms < total_ms; i++) {
        rl_sleep_until(start + (long long)i * period_ms);
        cr_assert(up_test_alive(rl.master), "the master died during reload %d\nlog:\n%s", i,
                  rl_log_text());
        if (between != NULL) {
            between(i);
        }
        rl_reload();
    }
    return i;
}

/* ---- Keep-Alive sockets across a reload ---- */

/* The drain deadline: long enough that a slow start of the new generation
 * (a sanitized build on a busy machine) still leaves time to see the socket
 * stay on its old worker. The deadline counts from the switch, which comes
 * after the signal, so bounds measured from the signal are safe. */
#define RL_DRAIN_MS 3000

BACKEND_TEST(reload, keepalive_survives_reload_default, .timeout = 30, .fini = rl_fini)
{
    static const char *const args[] = {"-n", "2", "-t", "3s", NULL};
    struct up_test_resp r = {0};
    char what[64];

    rl_start(backend, up_test_bin("examples/echo.so"), args);
    int fd = rl_client();
    rl_keepalive_get(fd, &r, "first request");
    long pid_a = rl_pid(&r);
    cr_assert_eq(rl_gen(&r), 1, "first answer not from generation 1:\n%s", r.head);

    long long t0 = rl_now_ms();
    rl_reload();
    rl_wait_fresh_gen(2, RL_READY_MS);
    long long switched = rl_now_ms() - t0;

    /* Phase 1: the old socket stays on its worker until the deadline. */
    rl_keepalive_get(fd, &r, "request right after the switch");
    long long at = rl_now_ms() - t0;
    cr_assert_lt(at, RL_DRAIN_MS - 100,
                 "the switch took %lld ms: too close to the %d ms deadline to check that the "
                 "socket stays on its old worker\nlog:\n%s",
                 switched, RL_DRAIN_MS, rl_log_text());
    cr_assert_eq(rl_gen(&r), 1,
                 "%lld ms after the reload, before the %d ms drain deadline, the old socket was "
                 "answered by generation %u:\n%s",
                 at, RL_DRAIN_MS, rl_gen(&r), r.head);
    cr_assert_eq(rl_pid(&r), pid_a, "the old socket moved from pid %ld to %ld before the deadline",
                 pid_a, rl_pid(&r));

    /* Phase 2: a request every 100 ms for 3 s on the same socket; after the
     * deadline the idle socket moves to generation 2, never closed. */
    long long first_new = -1;
    long new_pid = 0;
    int n = 0;
    for (long long next = rl_now_ms(); rl_now_ms() - t0 < switched + RL_DRAIN_MS + 1500;
         next += 100) {
        rl_sleep_until(next);
        snprintf(what, sizeof(what), "request %d after the switch", ++n);
        rl_keepalive_get(fd, &r, what);
        long long now = rl_now_ms() - t0;
        unsigned gen = rl_gen(&r);
        long pid = rl_pid(&r);
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
                  pid_a, rl_now_ms() - t0, RL_DRAIN_MS, rl_log_text());
    fprintf(stderr, "[reload] %s: switch after %lld ms, socket moved to pid %ld after %lld ms\n",
            backend, switched, new_pid, first_new);
    up_test_resp_free(&r);
}

BACKEND_TEST(reload, keepalive_migrate_idle, .timeout = 30, .fini = rl_fini)
{
    static const char *const args[] = {"--migrate=idle", "-n", "2", "-t", "10s", NULL};
    struct up_test_resp r = {0};
    char what[64];

    rl_start(backend, up_test_bin("examples/echo.so"), args);
    int fd = rl_client();
    rl_keepalive_get(fd, &r, "first request");
    long pid_a = rl_pid(&r);
    cr_assert_eq(rl_gen(&r), 1, "first answer not from generation 1:\n%s", r.head);

    long long t0 = rl_now_ms();
    rl_reload();
    rl_wait_fresh_gen(2, RL_READY_MS);
    long long switched = rl_now_ms();

    /* Handing back is asynchronous: allow 1 s, every request must succeed. */
    unsigned gen = 0;
    long pid = 0;
    for (int n = 1;; n++) {
        snprintf(what, sizeof(what), "request %d after the switch", n);
        rl_keepalive_get(fd, &r, what);
        gen = rl_gen(&r);
        pid = rl_pid(&r);
        if (gen == 2) {
            break;
        }
        cr_assert_eq(gen, 1, "%s: generation %u:\n%s", what, gen, r.head);
        cr_assert_eq(pid, pid_a, "%s: generation 1 but pid %ld, not %ld", what, pid, pid_a);
        cr_assert_lt(rl_now_ms() - switched, 1000,
                     "with --migrate=idle the idle socket is still on generation 1 (pid %ld) "
                     "%lld ms after the switch\nlog:\n%s",
                     pid_a, rl_now_ms() - switched, rl_log_text());
        rl_sleep_ms(50);
    }
    cr_assert_neq(pid, pid_a, "generation 2 from the old pid %ld", pid);
    /* It stays there. */
    for (int n = 0; n < 3; n++) {
        rl_keepalive_get(fd, &r, "request after the move");
        cr_assert_eq(rl_gen(&r), 2, "the socket went back to generation %u", rl_gen(&r));
    }
    fprintf(stderr, "[reload] %s: switch after %lld ms, socket on generation 2 after %lld ms\n",
            backend, switched - t0, rl_now_ms() - t0);
    up_test_resp_free(&r);
}

/* ---- under load ---- */

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, load_with_reload_every_100ms, .timeout = 150, .fini = rl_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive",   "64",          "--fresh", "2",
                                       "--seconds",     "10",          "--path",  "/",
                                       "--expect-body", "Hello World", NULL};
    struct rl_load res = {0};

    rl_start(backend, up_test_bin("examples/hello.so"), args);
    int fds_before = rl_fds_stable();
    rl_load_start(load);
    int reloads = rl_reload_storm(100, 10000, NULL);
    rl_load_finish(backend, 20000, &res);
    fprintf(stderr, "[reload] %s: %d reloads\n", backend, reloads);
    cr_assert_gt(res.requests, 1000, "only %ld requests in 10 s: %s", res.requests, res.line);
    rl_assert_settled(2, fds_before);
}

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, load_with_post_bodies_and_reload, .timeout = 150, .fini = rl_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive", "64",           "--fresh", "2", "--seconds",
                                       "5",           "--post-bytes", "3000",    NULL};
    struct rl_load res = {0};

    rl_start(backend, up_test_bin("examples/echo.so"), args);
    int fds_before = rl_fds_stable();
    rl_load_start(load);
    int reloads = rl_reload_storm(100, 5000, NULL);
    rl_load_finish(backend, 15000, &res);
    fprintf(stderr, "[reload] %s: %d reloads\n", backend, reloads);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    rl_assert_settled(2, fds_before);
}

/* Copy the build's example over path through a rename, so that a reload
 * sees either the old file or the new one, whole. */
static void rl_install(const char *example, const char *path)
{
    char buf[65536];
    char tmp[PATH_MAX];
    const char *src = up_test_bin(example);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    cr_assert_geq(in, 0, "open %s: %s", src, strerror(errno));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    cr_assert_geq(out, 0, "open %s: %s", tmp, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        cr_assert_eq(write(out, buf, (size_t)n), n, "write %s: %s", tmp, strerror(errno));
    }
    cr_assert_eq(n, 0, "read %s: %s", src, strerror(errno));
    close(in);
    close(out);
    cr_assert_eq(rename(tmp, path), 0, "rename %s: %s", tmp, strerror(errno));
}

/* Before reload i of the storm: a broken app (no_symbol, fail_init in turn)
 * on even i, hello back on odd i, so the last one is good. */
static void rl_swap_app(int i)
{
    static const char *const broken[] = {"examples/no_symbol.so", "examples/fail_init.so"};
    rl_install(i % 2 == 0 ? broken[(i / 2) % 2] : "examples/hello.so", rl_path("app.so"));
}

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(reload, failed_reload_under_load, .timeout = 150, .fini = rl_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive",   "64",          "--fresh", "2",
                                       "--seconds",     "5",           "--path",  "/",
                                       "--expect-body", "Hello World", NULL};
    struct rl_load res = {0};
    struct up_test_resp r = {0};
    char app[PATH_MAX];

    snprintf(app, sizeof(app), "%s", rl_path("app.so"));
    rl_install("examples/hello.so", app);
    rl_start(backend, app, args);
    int fds_before = rl_fds_stable();
    rl_load_start(load);
    int reloads = rl_reload_storm(200, 5000, rl_swap_app);
    rl_load_finish(backend, 15000, &res);
    fprintf(stderr, "[reload] %s: %d reloads, half of them broken\n", backend, reloads);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    cr_assert_eq(up_test_file_contains(rl.log, "failed to start"), 1,
                 "the master did not log the failed reloads\nlog:\n%s", rl_log_text());
    rl_assert_settled(2, fds_before);
    cr_assert_eq(rl_fresh(&r), 0);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
}
