/*
 * master: up-run and its workers, driven from outside as an operator drives
 * them: the port, signals, `up-run status|reload|stop` on the control socket,
 * /proc, and the master's log. Reloads, broken code, --watch and respawn
 * are in test_master_reload.c; the helpers both files use are here, declared in the
 * block at the top of that file.
 *
 * Each test runs twice through BACKEND_TEST (UP_BACKEND=io_uring and
 * UP_BACKEND=epoll) and starts at most one master at a time, kept in `ma`
 * so that the fini stops it by pid even after a failed assertion, and kills
 * any worker it learned of that outlived it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/testlib.h"
#include "ma.h"
#include "head.h"

#define MA_READY_MS 10000
#define MA_STOP_MS 5000
#define MA_MAX_SEEN 64
#define MA_GET "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

/* ---- the master under test ---- */

/* `up-run status`, parsed. */

struct ma ma = {.pid = -1};

long long ma_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ma_nap(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Whether pid is gone: no /proc entry, or a zombie nobody reaped yet (an
 * orphan's reaper may be slow, and a zombie serves nothing). */
bool ma_pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n <= 0) {
        return true;
    }
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren == NULL || paren[2] == 'Z' || paren[2] == 'X';
}

/* The parent pid from /proc/pid/stat, or -1. */
static pid_t ma_ppid(pid_t pid)
{
    char path[64], buf[512];
    int ppid = -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    if (n > 0) {
        buf[n] = '\0';
        const char *paren = strrchr(buf, ')');
        if (paren == NULL || sscanf(paren + 2, "%*c %d", &ppid) != 1) {
            ppid = -1;
        }
    }
    return (pid_t)ppid;
}

/* A small /proc file (comm, cmdline) into buf; NULs stay. Returns its
 * length or -1. */
static ssize_t ma_proc_read(pid_t pid, const char *what, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0) {
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

void ma_fini(void)
{
    if (ma.pid > 0) {
        up_test_stop(ma.pid, MA_STOP_MS);
        ma.pid = -1;
    }
    /* Workers die with their master (and up_test_stop() killed its process
     * group); one that did not is killed here, if the pid still names a
     * worker and not a process that reused it. */
    for (int i = 0; i < ma.nseen; i++) {
        char comm[64];
        if (!ma_pid_gone(ma.seen[i]) && ma_proc_read(ma.seen[i], "comm", comm, sizeof(comm)) > 0 &&
            strstr(comm, "worker") != NULL) {
            kill(ma.seen[i], SIGKILL);
        }
    }
    ma.nseen = 0;
    memset(ma.env, 0, sizeof(ma.env));
    memset(ma.wrap, 0, sizeof(ma.wrap));
    memset(ma.cmd_wrap, 0, sizeof(ma.cmd_wrap));
    up_test_remove_dir(ma.dir);
}

/* A path in the test's temp dir, created on first use. Static ring buffer,
 * like up_test_bin(). */
const char *ma_path(const char *name)
{
    static char ring[8][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 8];

    if (ma.dir[0] == '\0') {
        strcpy(ma.dir, "/tmp/up-test-XXXXXX");
        cr_assert_not_null(mkdtemp(ma.dir), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, PATH_MAX, "%s/%s", ma.dir, name);
    return buf;
}

/* The end of a file (the last 6 KiB), for failure messages. */
static const char *ma_file_tail(const char *path)
{
    static char buf[6144];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
    off_t from = size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, from) : -1;

    buf[n > 0 ? n : 0] = '\0';
    if (fd >= 0) {
        close(fd);
    }
    return buf;
}

const char *ma_log_text(void)
{
    return ma_file_tail(ma.log);
}

/* Spawn `up-run -p PORT -n 2 -t 1s --control DIR/ctl.sock EXTRA... APP` with
 * UP_BACKEND=backend; extra (NULL-terminated, may be NULL) comes after the
 * defaults, so it may override them. Does not wait. */
void ma_spawn(const char *backend, const char *app, const char *const *extra)
{
    char port[16];
    char backend_env[64];
    char tmpdir_env[PATH_MAX];
    /* The master's private snapshot dir goes into the test's temp dir, so
     * that the fini removes it even after a SIGKILL. */
    char *envp[4 + 8] = {backend_env, tmpdir_env, "XDG_RUNTIME_DIR="};
    char *argv[48];
    int n = 0;

    for (int i = 0; i < 8 && ma.env[i] != NULL; i++) {
        envp[3 + i] = (char *)ma.env[i];
    }
    ma.port = up_test_free_port();
    cr_assert_gt(ma.port, 0, "no free port: %s", strerror(-ma.port));
    snprintf(port, sizeof(port), "%d", ma.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(tmpdir_env, sizeof(tmpdir_env), "TMPDIR=%s", ma_path(""));
    snprintf(ma.log, sizeof(ma.log), "%s", ma_path("master.log"));
    snprintf(ma.ctl, sizeof(ma.ctl), "%s", ma_path("ctl.sock"));
    for (int i = 0; i < 12 && ma.wrap[i] != NULL; i++) {
        argv[n++] = (char *)ma.wrap[i];
    }
    argv[n++] = (char *)up_test_bin("up-run");
    argv[n++] = "-p";
    argv[n++] = port;
    argv[n++] = "-n";
    argv[n++] = "2";
    argv[n++] = "-t";
    argv[n++] = "1s";
    argv[n++] = "--control";
    argv[n++] = ma.ctl;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 46; i++) {
        argv[n++] = (char *)extra[i];
    }
    argv[n++] = (char *)app;
    argv[n] = NULL;
    ma.pid = up_test_spawn(argv, envp, ma.log);
    cr_assert_gt(ma.pid, 0, "spawn up-run: %s", strerror(-ma.pid));
}

/* Wait until a request gets a 200: up-run routes only once a worker is
 * ready, and holds the connections that come before. */
void ma_wait_serving(int timeout_ms)
{
    long long deadline = ma_now_ms() + timeout_ms;
    int ret;
    int status;

    do {
        struct up_test_resp r = {0};
        cr_assert(up_test_alive(ma.pid), "up-run exited before serving; log:\n%s", ma_log_text());
        ret = up_test_request(ma.port, MA_GET, &r);
        status = r.status;
        up_test_resp_free(&r);
        if (ret == 0 && status == 200) {
            return;
        }
        ma_nap(20);
    } while (ma_now_ms() < deadline);
    cr_assert_fail("up-run not serving on %d within %d ms (last: %s, status %d); log:\n%s", ma.port,
                   timeout_ms, ret < 0 ? strerror(-ret) : "answered", status, ma_log_text());
}

void ma_start(const char *backend, const char *app, const char *const *extra)
{
    ma_spawn(backend, app, extra);
    ma_wait_serving(MA_READY_MS);
}

/* GET / on a new connection (Connection: close), asserting an answer. */
void ma_get(struct up_test_resp *r)
{
    int ret = up_test_request(ma.port, MA_GET, r);
    cr_assert_eq(ret, 0, "GET /: %s; log:\n%s", strerror(-ret), ma_log_text());
}

/* The X-Up-Pid of an echo answer, asserting a 200 that has one. */
pid_t ma_get_pid(unsigned *ret_gen)
{
    struct up_test_resp r = {0};
    ma_get(&r);
    cr_assert_eq(r.status, 200, "status %d:\n%s%s", r.status, r.head, r.body);
    const char *pid = up_test_resp_header(&r, "X-Up-Pid");
    const char *gen = up_test_resp_header(&r, "X-Up-Generation");
    cr_assert_not_null(pid, "no X-Up-Pid:\n%s", r.head);
    pid_t p = (pid_t)atol(pid);
    if (ret_gen != NULL) {
        cr_assert_not_null(gen, "no X-Up-Generation:\n%s", r.head);
        *ret_gen = (unsigned)atol(gen);
    }
    up_test_resp_free(&r);
    return p;
}

/* ---- up-run's commands ---- */

/* Run `up-run CMD --control CTL` with stdout and stderr into out (cap
 * bytes, NUL-terminated). Returns its exit status. */
int ma_cmd(const char *cmd, const char *ctl, char *out, size_t cap)
{
    const char *path = ma_path("cmd.out");
    char *argv[16];
    int n = 0;
    for (int i = 0; i < 8 && ma.cmd_wrap[i] != NULL; i++) {
        argv[n++] = (char *)ma.cmd_wrap[i];
    }
    argv[n++] = (char *)up_test_bin("up-run");
    argv[n++] = (char *)cmd;
    argv[n++] = "--control";
    argv[n++] = (char *)ctl;
    argv[n] = NULL;
    pid_t pid = up_test_spawn(argv, NULL, path);
    cr_assert_gt(pid, 0, "spawn up-run %s: %s", cmd, strerror(-pid));
    int status = up_test_wait_exit(pid, 5000);
    if (status == -ETIMEDOUT) {
        up_test_stop(pid, 1000);
    }
    cr_assert_geq(status, 0, "up-run %s did not finish within 5 s: %s", cmd, strerror(-status));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, out, cap - 1) : -1;
    out[got > 0 ? got : 0] = '\0';
    if (fd >= 0) {
        close(fd);
    }
    return status;
}

static long ma_stat_field(const char *text, const char *key)
{
    const char *at = strstr(text, key);
    return at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
}

static void ma_remember(pid_t pid)
{
    for (int i = 0; i < ma.nseen; i++) {
        if (ma.seen[i] == pid) {
            return;
        }
    }
    if (ma.nseen < MA_MAX_SEEN) {
        ma.seen[ma.nseen++] = pid;
    }
}

/* `up-run status`, asserting that it answered, parsed into s. */
void ma_status(struct ma_status *s)
{
    char *save = NULL;
    char copy[sizeof(s->text)];
    unsigned gen = 0;

    memset(s, 0, sizeof(*s));
    s->code = ma_cmd("status", ma.ctl, s->text, sizeof(s->text));
    cr_assert_eq(s->code, 0, "up-run status exited %d:\n%s\nlog:\n%s", s->code, s->text,
                 ma_log_text());
    memcpy(copy, s->text, sizeof(copy));
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        struct ma_gen *g = &s->gens[s->ngens];
        struct ma_worker *w = &s->workers[s->nworkers];
        int pid;
        if (s->ngens < 16 && sscanf(line, "generation %u %15s", &g->id, g->state) == 2) {
            gen = g->id;
            s->ngens++;
        } else if (s->nworkers < 64 &&
                   sscanf(line, " worker #%*u pid=%d %15s", &pid, w->state) == 2) {
            w->gen = gen;
            w->pid = (pid_t)pid;
            ma_remember(w->pid);
            s->nworkers++;
        }
    }
    s->handed = ma_stat_field(s->text, " handed=");
    s->answered = ma_stat_field(s->text, "answered=");
    s->reloads = ma_stat_field(s->text, " reloads=");
    s->reload_failures = ma_stat_field(s->text, "reload_failures=");
    s->respawns = ma_stat_field(s->text, "respawns=");
}

/* The state of generation id ("" if it is not listed). */
const char *ma_gen_state(const struct ma_status *s, unsigned id)
{
    for (int i = 0; i < s->ngens; i++) {
        if (s->gens[i].id == id) {
            return s->gens[i].state;
        }
    }
    return "";
}

/* The pids of generation id's workers in state (NULL: any), up to cap. */
int ma_gen_pids(const struct ma_status *s, unsigned id, const char *state, pid_t *pids, int cap)
{
    int n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        const struct ma_worker *w = &s->workers[i];
        if (w->gen == id && (state == NULL || strcmp(w->state, state) == 0) && n < cap) {
            pids[n++] = w->pid;
        }
    }
    return n;
}

/* Wait until generation id is active with exactly n workers, all ready;
 * leaves that status in s. */
void ma_wait_workers(unsigned id, int n, struct ma_status *s)
{
    long long deadline = ma_now_ms() + MA_READY_MS;
    pid_t pids[64];

    for (;;) {
        ma_status(s);
        if (strcmp(ma_gen_state(s, id), "active") == 0 && ma_gen_pids(s, id, NULL, pids, 64) == n &&
            ma_gen_pids(s, id, "ready", pids, 64) == n) {
            return;
        }
        cr_assert_lt(ma_now_ms(), deadline,
                     "generation %u not active with %d ready workers within %d ms:\n%s\nlog:\n%s",
                     id, n, MA_READY_MS, s->text, ma_log_text());
        ma_nap(20);
    }
}

bool ma_pid_in(pid_t pid, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++) {
        if (set[i] == pid) {
            return true;
        }
    }
    return false;
}

/* Wait until every pid of the n is gone. Returns the ms it took, or -1 if
 * one was still there after timeout_ms. */
long long ma_wait_gone(const pid_t *pids, int n, int timeout_ms)
{
    long long t0 = ma_now_ms();
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            left += !ma_pid_gone(pids[i]);
        }
        long long took = ma_now_ms() - t0;
        if (left == 0) {
            return took;
        }
        if (took > timeout_ms) {
            return -1;
        }
        ma_nap(5);
    }
}

/* ---- start, titles, routing ---- */

BACKEND_TEST(master, workers_start_and_answer, .timeout = 30, .fini = ma_fini)
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
        cr_assert_eq(ma_ppid(pids[i]), ma.pid, "worker %d is not a child of the master %d",
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
    int nchildren = 0;
    DIR *d;
    struct dirent *e;

    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    snprintf(want, sizeof(want), "%s master", name);
    cr_assert_gt(ma_proc_read(ma.pid, "comm", buf, sizeof(buf)), 0);
    cr_assert_eq(strcmp(strtok(buf, "\n"), want), 0, "master comm '%s', expected '%s'", buf, want);
    cr_assert_gt(ma_proc_read(ma.pid, "cmdline", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, want, "master cmdline '%s', expected '%s'", buf, want);

    snprintf(want, sizeof(want), "%s worker", name);
    d = opendir("/proc");
    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atol(e->d_name);
        if (pid <= 0 || ma_ppid(pid) != ma.pid) {
            continue;
        }
        nchildren++;
        cr_assert(ma_pid_in(pid, pids, 2), "child %d of the master is not a ready worker:\n%s",
                  (int)pid, s.text);
        ma_proc_read(pid, "comm", buf, sizeof(buf));
        cr_assert_eq(strcmp(strtok(buf, "\n"), want), 0, "worker %d comm '%s', expected '%s'",
                     (int)pid, buf, want);
        ma_proc_read(pid, "cmdline", buf, sizeof(buf));
        cr_assert_str_eq(buf, want, "worker %d cmdline '%s', expected '%s'", (int)pid, buf, want);
    }
    closedir(d);
    cr_assert_eq(nchildren, 2, "the master has %d children, expected its 2 workers:\n%s", nchildren,
                 s.text);
}

BACKEND_TEST(master, titles, .timeout = 30, .fini = ma_fini)
{
    static const char *const named[] = {"-T", "myapp", NULL};

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_assert_titles("up");
    int status = up_test_stop(ma.pid, MA_STOP_MS);
    ma.pid = -1;
    cr_assert_eq(status, 0, "up-run exit status %d after SIGTERM", status);

    ma_start(backend, up_test_bin("examples/hello.so"), named);
    ma_assert_titles("myapp");
}

BACKEND_TEST(master, round_robin, .timeout = 30, .fini = ma_fini)
{
    struct ma_status s;
    pid_t ready[2];
    pid_t seen[8];

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", ready, 2);
    for (int i = 0; i < 8; i++) {
        seen[i] = ma_get_pid(NULL);
        cr_assert(ma_pid_in(seen[i], ready, 2), "request %d served by %d, not a worker:\n%s", i,
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

BACKEND_TEST(master, ready_manual, .timeout = 30, .fini = ma_fini)
{
    static const char *const manual[] = {"--ready=manual", NULL};
    struct up_test_resp r = {0};

    /* The master listens before any worker runs: a request sent at once
     * waits in the master until the app called up_ready(), 300 ms after
     * its init. */
    long long t0 = ma_now_ms();
    ma_spawn(backend, up_test_bin("examples/manual_ready.so"), manual);
    int ret = up_test_wait_ready(ma.pid, ma.port, MA_READY_MS);
    cr_assert_eq(ret, 0, "up-run not listening: %s; log:\n%s", strerror(-ret), ma_log_text());
    ma_get(&r);
    long long took = ma_now_ms() - t0;
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

BACKEND_TEST(master, master_sigkill_takes_workers, .timeout = 30, .fini = ma_fini)
{
    struct ma_status s;
    pid_t pids[2];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    cr_assert_eq(kill(ma.pid, SIGKILL), 0);
    long long t0 = ma_now_ms();
    int status = up_test_wait_exit(ma.pid, 2000);
    cr_assert_eq(status, 128 + SIGKILL, "master exit status %d", status);
    ma.pid = -1;
    long long took = ma_wait_gone(pids, 2, 3000);
    long long measured = took >= 0 ? took : ma_now_ms() - t0;
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
    long long took = ma_now_ms() - t0;

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

static int ma_connect(void)
{
    int fd = up_test_connect(ma.port);
    cr_assert_geq(fd, 0, "connect to %d: %s", ma.port, strerror(-fd));
    return fd;
}

static void ma_send(int fd, const void *buf, size_t len)
{
    int ret = up_test_send_all(fd, buf, len);
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
}

BACKEND_TEST(master, master_answers_400_408_431, .timeout = 30, .fini = ma_fini)
{
    static const char *const fast[] = {"--header-timeout", "500ms", NULL};
    static const char partial[] = "GET / HTTP/1.1\r\nHost: x\r\n";
    static const char garbage[] = "this is not http\r\n\r\n";
    struct ma_status before, after;
    char buf[256];
    int fd;

    ma_start(backend, up_test_bin("examples/hello.so"), fast);
    ma_wait_workers(1, 2, &before);

    fd = ma_connect();
    ma_send(fd, garbage, sizeof(garbage) - 1);
    ma_expect_answer(fd, 400, ma_now_ms(), 0, 0);
    close(fd);

    size_t big = 20 * 1024;
    char *raw = malloc(big + 64);
    cr_assert_not_null(raw);
    int n = snprintf(raw, 64, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(raw + n, 'a', big);
    memcpy(raw + n + big, "\r\n\r\n", 4);
    fd = ma_connect();
    ma_send(fd, raw, (size_t)n + big + 4);
    free(raw);
    ma_expect_answer(fd, 431, ma_now_ms(), 0, 0);
    close(fd);

    fd = ma_connect();
    long long t0 = ma_now_ms();
    ma_send(fd, partial, sizeof(partial) - 1);
    ma_expect_answer(fd, 408, t0, 400, 1500);
    close(fd);

    /* A client that sends nothing: TCP_DEFER_ACCEPT may hold it in the
     * kernel for about a second before the master sees it, then the header
     * timeout runs. It gets no bytes and a clean close. */
    fd = ma_connect();
    t0 = ma_now_ms();
    n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    long long took = ma_now_ms() - t0;
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

Test(master, bad_cli_exits_2, .timeout = 30, .fini = ma_fini)
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
    const char *out = ma_path("cli.out");
    char ctl[PATH_MAX];

    snprintf(ctl, sizeof(ctl), "%s", ma_path("cli.sock"));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[16];
        int n = 0;
        argv[n++] = (char *)up_test_bin("up-run");
        argv[n++] = "--control";
        argv[n++] = ctl;
        bool missing = strcmp(cases[i].args[0], "MISSING") == 0;
        for (int k = 0; !missing && cases[i].args[k] != NULL; k++) {
            argv[n++] = (char *)cases[i].args[k];
        }
        argv[n++] = (char *)(missing ? ma_path("missing.so") : hello);
        argv[n] = NULL;
        pid_t pid = up_test_spawn(argv, NULL, out);
        cr_assert_gt(pid, 0, "spawn: %s", strerror(-pid));
        int status = up_test_wait_exit(pid, 5000);
        if (status == -ETIMEDOUT) {
            up_test_stop(pid, 1000);
        }
        const char *text = ma_file_tail(out);
        cr_assert_eq(status, 2, "case %zu (%s): exit status %d, expected 2; output:\n%s", i,
                     cases[i].needle, status, text);
        cr_assert_not_null(strstr(text, cases[i].needle),
                           "case %zu: the message does not name '%s':\n%s", i, cases[i].needle,
                           text);
        cr_assert_not_null(strstr(text, "Try 'up-run --help'"), "case %zu: no hint:\n%s", i, text);
    }
}

/* ---- stopping ---- */

BACKEND_TEST(master, sigterm_graceful_stop, .timeout = 30, .fini = ma_fini)
{
    struct up_test_resp r = {0};
    struct ma_status s;
    pid_t pids[2];
    char buf[256];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    int fd = ma_connect();
    ma_send(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27);
    int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "read: %s", strerror(-ret));
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    up_test_resp_free(&r);

    /* The connection is idle on a worker now. */
    long long t0 = ma_now_ms();
    cr_assert_eq(kill(ma.pid, SIGTERM), 0);
    int status = up_test_wait_exit(ma.pid, 5000);
    long long took = ma_now_ms() - t0;
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
    cr_assert_geq(ma_wait_gone(pids, 2, 500), 0, "a worker outlived its master (%d, %d)",
                  (int)pids[0], (int)pids[1]);
}
