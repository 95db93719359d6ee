/*
 * faults: up-run when things break. A worker killed while connections it has
 * not taken yet wait in its channel (they go to another worker and are
 * answered; the one it was serving is closed, not passed on); a worker that
 * crashes in the middle of a request (only that request fails, promptly,
 * whether its connection was new or kept alive); an app that crashes right
 * after every start (the respawn back-off bounds the spawns, the master stays
 * responsive, and a reload to good code recovers; in suite long, the back-off
 * holds at its 10 s cap); reloads to every kind of broken code under load
 * (nothing fails, the good generation keeps serving, the log names each
 * failure); and a master killed with SIGKILL (the request in flight still
 * completes, then every worker exits and nothing is left).
 *
 * DESIGN.md sections 3-5 and 8. Each test runs twice through BACKEND_TEST
 * (UP_BACKEND=io_uring and epoll), starts one master and at most one up-load,
 * kept in `fa` so that the fini stops them by pid even after a failed
 * assertion, and kills any worker it learned of that outlived them. Every
 * test prints what it measured as "[faults] ..." lines on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/testlib.h"

#define FA_READY_MS 10000
#define FA_STOP_MS 5000
#define FA_MAX_SEEN 128
#define FA_MAX_FDS 64
#define FA_GET "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
#define FA_GET_KA "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- the master under test ---- */

struct fa {
    pid_t master; /* up-run, or -1 */
    pid_t load;   /* up-load, or -1 */
    int port;
    char dir[64]; /* the test's temp dir, or "" */
    char log[PATH_MAX];
    char ctl[PATH_MAX];
    char load_out[PATH_MAX];
    pid_t seen[FA_MAX_SEEN]; /* every worker pid learned, for the fini */
    int nseen;
    int fds[FA_MAX_FDS]; /* client sockets, closed by the fini */
    int nfds;
};

static struct fa fa = {.master = -1, .load = -1};

struct fa_worker {
    unsigned gen;
    pid_t pid;
    char state[16];
};

/* `up-run status`, parsed. */
struct fa_status {
    int code;        /* the command's exit status */
    long long took;  /* ms from spawning the command to its exit */
    unsigned active; /* the active generation, 0 if none */
    char text[8192];
    unsigned gens[16];
    char gen_state[16][16];
    int ngens;
    struct fa_worker workers[64];
    int nworkers;
    long pending, accepted, handed, rerouted, answered, reloads, reload_failures, respawns;
};

static long long fa_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fa_nap(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void fa_sleep_until(long long at_ms)
{
    long long left = at_ms - fa_now_ms();
    if (left > 0) {
        fa_nap((int)left);
    }
}

/* A small /proc/pid file into buf (NUL-terminated). Returns its length or -1. */
static ssize_t fa_proc_read(pid_t pid, const char *what, char *buf, size_t cap)
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

/* The state letter, ppid and process group of pid from /proc/pid/stat;
 * false if it is gone. */
static bool fa_proc_stat(pid_t pid, char *state, pid_t *ppid, pid_t *pgrp)
{
    char buf[512];
    int pp = -1;
    int pg = -1;
    if (fa_proc_read(pid, "stat", buf, sizeof(buf)) <= 0) {
        return false;
    }
    /* pid (comm) state ppid pgrp ...: comm may hold spaces and parens. */
    const char *paren = strrchr(buf, ')');
    if (paren == NULL || sscanf(paren + 1, " %c %d %d", state, &pp, &pg) != 3) {
        return false;
    }
    *ppid = (pid_t)pp;
    *pgrp = (pid_t)pg;
    return true;
}

/* Whether pid is gone: no /proc entry, or a zombie nobody reaped yet (an
 * orphan's reaper may be slow, and a zombie serves nothing). */
static bool fa_pid_gone(pid_t pid)
{
    char state = '?';
    pid_t ppid, pgrp;
    return !fa_proc_stat(pid, &state, &ppid, &pgrp) || state == 'Z' || state == 'X';
}

/* Live (not zombie) processes whose parent is ppid (ppid > 0) or whose
 * process group is pgrp (pgrp > 0), listed into desc for messages. */
static int fa_procs(pid_t ppid, pid_t pgrp, char *desc, size_t cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    size_t used = 0;

    cr_assert_not_null(d, "opendir /proc: %s", strerror(errno));
    desc[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atol(e->d_name);
        char state = '?';
        pid_t pp, pg;
        if (pid <= 0 || !fa_proc_stat(pid, &state, &pp, &pg) || state == 'Z' || state == 'X') {
            continue;
        }
        if ((ppid > 0 && pp == ppid) || (pgrp > 0 && pg == pgrp)) {
            n++;
            if (used < cap) {
                int w = snprintf(desc + used, cap - used, " %d(%c)", (int)pid, state);
                used += w > 0 ? (size_t)w : 0;
            }
        }
    }
    closedir(d);
    return n;
}

/* Open fds of pid. */
static int fa_fds(pid_t pid)
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

/* pid's fd count once it is stable, the same over 5 samples 20 ms apart (a
 * connection being handed off holds an fd for a moment), and equal to want
 * if want >= 0; gives up after 5 s and returns the last count. */
static int fa_fds_settled(pid_t pid, int want)
{
    long long deadline = fa_now_ms() + 5000;
    int last = fa_fds(pid);
    int same = 0;

    while ((same < 5 || (want >= 0 && last != want)) && fa_now_ms() < deadline) {
        fa_nap(20);
        int n = fa_fds(pid);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

static void fa_fini(void)
{
    for (int i = 0; i < fa.nfds; i++) {
        if (fa.fds[i] >= 0) {
            close(fa.fds[i]);
            fa.fds[i] = -1;
        }
    }
    fa.nfds = 0;
    if (fa.load > 0) {
        up_test_stop(fa.load, FA_STOP_MS);
        fa.load = -1;
    }
    if (fa.master > 0) {
        up_test_stop(fa.master, FA_STOP_MS);
        fa.master = -1;
    }
    /* Workers die with their master (and up_test_stop() killed its process
     * group); one that did not is killed here, if the pid still names a
     * worker and not a process that reused it. */
    for (int i = 0; i < fa.nseen; i++) {
        char comm[64];
        if (!fa_pid_gone(fa.seen[i]) && fa_proc_read(fa.seen[i], "comm", comm, sizeof(comm)) > 0 &&
            strstr(comm, "worker") != NULL) {
            kill(fa.seen[i], SIGKILL);
        }
    }
    fa.nseen = 0;
    up_test_remove_dir(fa.dir);
}

/* A path in the test's temp dir, created on first use. Static ring buffer,
 * like up_test_bin(). */
static const char *fa_path(const char *name)
{
    static char ring[8][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 8];

    if (fa.dir[0] == '\0') {
        strcpy(fa.dir, "/tmp/up-test-XXXXXX");
        cr_assert_not_null(mkdtemp(fa.dir), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, PATH_MAX, "%s/%s", fa.dir, name);
    return buf;
}

/* The end of a file (the last 6 KiB), for failure messages. */
static const char *fa_tail(const char *path)
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

static const char *fa_log_text(void)
{
    return fa_tail(fa.log);
}

/* The whole of a (small) file, malloc'd and NUL-terminated; the caller
 * frees it. */
static char *fa_slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert_geq(size, 0);
    char *buf = malloc((size_t)size + 1);
    cr_assert_not_null(buf);
    ssize_t n = pread(fd, buf, (size_t)size, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* How many lines of the log hold every one of the NULL-terminated needles. */
static int fa_log_count(const char *const *needles)
{
    char *text = fa_slurp(fa.log);
    char *save = NULL;
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        bool all = true;
        for (int i = 0; needles[i] != NULL && all; i++) {
            all = strstr(line, needles[i]) != NULL;
        }
        n += all;
    }
    free(text);
    return n;
}

static void fa_remember(pid_t pid)
{
    for (int i = 0; i < fa.nseen; i++) {
        if (fa.seen[i] == pid) {
            return;
        }
    }
    if (fa.nseen < FA_MAX_SEEN) {
        fa.seen[fa.nseen++] = pid;
    }
}

/* Install a copy of the build's example at dst the way a deploy does:
 * write a temp file beside it, then rename it over dst. */
static void fa_install(const char *example, const char *dst)
{
    char buf[65536];
    char tmp[PATH_MAX];
    const char *src = up_test_bin(example);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    cr_assert_geq(in, 0, "open %s: %s", src, strerror(errno));
    cr_assert_geq(out, 0, "open %s: %s", tmp, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        cr_assert_eq(write(out, buf, (size_t)n), n, "write %s: %s", tmp, strerror(errno));
    }
    cr_assert_eq(n, 0, "read %s: %s", src, strerror(errno));
    close(in);
    cr_assert_eq(close(out), 0);
    cr_assert_eq(rename(tmp, dst), 0, "rename to %s: %s", dst, strerror(errno));
}

/* Spawn `up-run -p PORT -n 2 -t 1s --control DIR/ctl.sock EXTRA... APP` with
 * UP_BACKEND=backend; extra (NULL-terminated, may be NULL) comes after the
 * defaults, so it may override them. Does not wait. */
static void fa_spawn(const char *backend, const char *app, const char *const *extra)
{
    char port[16];
    char backend_env[64];
    char tmpdir_env[PATH_MAX];
    /* The master's private snapshot dir goes into the test's temp dir, so
     * that the fini removes it even after a SIGKILL. */
    char *envp[] = {backend_env, tmpdir_env, "XDG_RUNTIME_DIR=", NULL};
    char *argv[32];
    int n = 0;

    fa.port = up_test_free_port();
    cr_assert_gt(fa.port, 0, "no free port: %s", strerror(-fa.port));
    snprintf(port, sizeof(port), "%d", fa.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(tmpdir_env, sizeof(tmpdir_env), "TMPDIR=%s", fa_path(""));
    snprintf(fa.log, sizeof(fa.log), "%s", fa_path("master.log"));
    snprintf(fa.ctl, sizeof(fa.ctl), "%s", fa_path("ctl.sock"));
    argv[n++] = (char *)up_test_bin("up-run");
    argv[n++] = "-p";
    argv[n++] = port;
    argv[n++] = "-n";
    argv[n++] = "2";
    argv[n++] = "-t";
    argv[n++] = "1s";
    argv[n++] = "--control";
    argv[n++] = fa.ctl;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 30; i++) {
        argv[n++] = (char *)extra[i];
    }
    argv[n++] = (char *)app;
    argv[n] = NULL;
    fa.master = up_test_spawn(argv, envp, fa.log);
    cr_assert_gt(fa.master, 0, "spawn up-run: %s", strerror(-fa.master));
}

/* Spawn up-run and wait until a request gets a 200. */
static void fa_start(const char *backend, const char *app, const char *const *extra)
{
    long long deadline;
    int ret;
    int status;

    fa_spawn(backend, app, extra);
    deadline = fa_now_ms() + FA_READY_MS;
    do {
        struct up_test_resp r = {0};
        cr_assert(up_test_alive(fa.master), "up-run exited before serving; log:\n%s",
                  fa_log_text());
        ret = up_test_request(fa.port, FA_GET, &r);
        status = r.status;
        up_test_resp_free(&r);
        if (ret == 0 && status == 200) {
            return;
        }
        fa_nap(20);
    } while (fa_now_ms() < deadline);
    cr_assert_fail("up-run not serving on %d within %d ms (last: %s, status %d); log:\n%s", fa.port,
                   FA_READY_MS, ret < 0 ? strerror(-ret) : "answered", status, fa_log_text());
}

/* ---- up-run's commands ---- */

/* Run `up-run CMD --control CTL` with its output into out (cap bytes,
 * NUL-terminated). Returns its exit status; *took gets the ms it ran. */
static int fa_cmd(const char *cmd, char *out, size_t cap, long long *took)
{
    const char *path = fa_path("cmd.out");
    char *argv[] = {(char *)up_test_bin("up-run"), (char *)cmd, "--control", fa.ctl, NULL};
    long long t0 = fa_now_ms();
    pid_t pid = up_test_spawn(argv, NULL, path);
    cr_assert_gt(pid, 0, "spawn up-run %s: %s", cmd, strerror(-pid));
    int status = up_test_wait_exit(pid, 5000);
    if (took != NULL) {
        *took = fa_now_ms() - t0;
    }
    if (status == -ETIMEDOUT) {
        up_test_stop(pid, 1000);
    }
    cr_assert_geq(status, 0, "up-run %s did not finish within 5 s: %s; log:\n%s", cmd,
                  strerror(-status), fa_log_text());
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, cap - 1) : -1;
    out[n > 0 ? n : 0] = '\0';
    if (fd >= 0) {
        close(fd);
    }
    return status;
}

static long fa_field(const char *text, const char *key)
{
    const char *at = strstr(text, key);
    return at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
}

/* `up-run status`, asserting that it answered, parsed into s. */
static void fa_status(struct fa_status *s)
{
    char *save = NULL;
    char copy[sizeof(s->text)];
    unsigned gen = 0;

    memset(s, 0, sizeof(*s));
    s->code = fa_cmd("status", s->text, sizeof(s->text), &s->took);
    cr_assert_eq(s->code, 0, "up-run status exited %d:\n%s\nlog:\n%s", s->code, s->text,
                 fa_log_text());
    memcpy(copy, s->text, sizeof(copy));
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        struct fa_worker *w = &s->workers[s->nworkers];
        unsigned id;
        char state[16];
        int pid;
        if (s->ngens < 16 && sscanf(line, "generation %u %15s", &id, state) == 2) {
            gen = id;
            s->gens[s->ngens] = id;
            snprintf(s->gen_state[s->ngens], sizeof(s->gen_state[0]), "%s", state);
            s->ngens++;
            if (strcmp(state, "active") == 0) {
                s->active = id;
            }
        } else if (s->nworkers < 64 &&
                   sscanf(line, " worker #%*u pid=%d %15s", &pid, w->state) == 2) {
            w->gen = gen;
            w->pid = (pid_t)pid;
            if (pid > 0) {
                fa_remember(w->pid);
            }
            s->nworkers++;
        }
    }
    s->pending = fa_field(s->text, " pending=");
    s->accepted = fa_field(s->text, "accepted=");
    s->handed = fa_field(s->text, " handed=");
    s->rerouted = fa_field(s->text, "rerouted=");
    s->answered = fa_field(s->text, "answered=");
    s->reloads = fa_field(s->text, " reloads=");
    s->reload_failures = fa_field(s->text, "reload_failures=");
    s->respawns = fa_field(s->text, "respawns=");
}

/* The pids of generation id's workers in state (NULL: any), up to cap. */
static int fa_gen_pids(const struct fa_status *s, unsigned id, const char *state, pid_t *pids,
                       int cap)
{
    int n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        const struct fa_worker *w = &s->workers[i];
        if (w->gen == id && (state == NULL || strcmp(w->state, state) == 0) && n < cap) {
            pids[n++] = w->pid;
        }
    }
    return n;
}

/* The state of generation id ("" if it is not listed). */
static const char *fa_gen_state_of(const struct fa_status *s, unsigned id)
{
    for (int i = 0; i < s->ngens; i++) {
        if (s->gens[i] == id) {
            return s->gen_state[i];
        }
    }
    return "";
}

static bool fa_pid_in(pid_t pid, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++) {
        if (set[i] == pid) {
            return true;
        }
    }
    return false;
}

/* Wait until generation id is active with exactly n workers, all ready and
 * none of them in not[] (nnot entries); leaves that status in s. */
static void fa_wait_workers(unsigned id, int n, const pid_t * not, int nnot, struct fa_status *s)
{
    long long deadline = fa_now_ms() + FA_READY_MS;
    pid_t pids[64];

    for (;;) {
        fa_status(s);
        int ready = fa_gen_pids(s, id, "ready", pids, 64);
        bool fresh = true;
        for (int i = 0; i < ready; i++) {
            fresh = fresh && !fa_pid_in(pids[i], not, nnot);
        }
        if (s->active == id && fa_gen_pids(s, id, NULL, pids, 64) == n && ready == n && fresh) {
            return;
        }
        cr_assert_lt(fa_now_ms(), deadline,
                     "generation %u not active with %d ready workers within %d ms:\n%s\nlog:\n%s",
                     id, n, FA_READY_MS, s->text, fa_log_text());
        fa_nap(20);
    }
}

/* Wait until every pid of the n is gone. Returns the ms it took, or -1 if
 * one was still there after timeout_ms. */
static long long fa_wait_gone(const pid_t *pids, int n, int timeout_ms)
{
    long long t0 = fa_now_ms();
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            left += !fa_pid_gone(pids[i]);
        }
        long long took = fa_now_ms() - t0;
        if (left == 0) {
            return took;
        }
        if (took > timeout_ms) {
            return -1;
        }
        fa_nap(5);
    }
}

/* ---- clients ---- */

/* A connection the test holds (closed by the fini if need be). */
static int fa_client(void)
{
    int fd = up_test_connect(fa.port);
    cr_assert_geq(fd, 0, "connect to %d: %s", fa.port, strerror(-fd));
    cr_assert_lt(fa.nfds, FA_MAX_FDS, "more than %d client sockets", FA_MAX_FDS);
    fa.fds[fa.nfds++] = fd;
    return fd;
}

static void fa_send(int fd, const char *raw)
{
    int ret = up_test_send_all(fd, raw, strlen(raw));
    cr_assert_eq(ret, 0, "send: %s; log:\n%s", strerror(-ret), fa_log_text());
}

static pid_t fa_resp_pid(const struct up_test_resp *r)
{
    const char *pid = up_test_resp_header(r, "X-Up-Pid");
    cr_assert_not_null(pid, "no X-Up-Pid:\n%s", r->head);
    return (pid_t)atol(pid);
}

/* One GET on the keep-alive socket fd: asserts a 200 "Hello World" that
 * keeps the connection open, and returns the pid that served it. */
static pid_t fa_keepalive_get(int fd, const char *what)
{
    struct up_test_resp r = {0};
    fa_send(fd, FA_GET_KA);
    int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "%s: no answer on the keep-alive socket: %s; log:\n%s", what,
                 strerror(-ret), fa_log_text());
    cr_assert_eq(r.status, 200, "%s: status %d:\n%s", what, r.status, r.head);
    cr_assert_str_eq(r.body, "Hello World", "%s: body %s", what, r.body);
    const char *conn = up_test_resp_header(&r, "Connection");
    cr_assert(conn == NULL || strcasecmp(conn, "close") != 0,
              "%s: the server announced a close on a keep-alive socket:\n%s", what, r.head);
    pid_t pid = fa_resp_pid(&r);
    up_test_resp_free(&r);
    return pid;
}

/* A fresh connection with GET /: asserts a 200 "Hello World" and returns
 * its X-Up-Pid (0 when the app sends none). */
static pid_t fa_fresh_get(const char *what)
{
    struct up_test_resp r = {0};
    int ret = up_test_request(fa.port, FA_GET, &r);
    cr_assert_eq(ret, 0, "%s: %s; log:\n%s", what, strerror(-ret), fa_log_text());
    cr_assert_eq(r.status, 200, "%s: status %d:\n%s%s\nlog:\n%s", what, r.status, r.head, r.body,
                 fa_log_text());
    cr_assert_str_eq(r.body, "Hello World", "%s: body %s", what, r.body);
    const char *pid = up_test_resp_header(&r, "X-Up-Pid");
    pid_t p = pid != NULL ? (pid_t)atol(pid) : 0;
    up_test_resp_free(&r);
    return p;
}

/* ---- 1. a worker killed with connections queued for it ---- */

/* How a request of the flood ended: ret (0 or -errno), status, server pid. */
struct fa_outcome {
    bool done;
    int ret;
    int status;
    pid_t pid;
    long long at; /* ms since the flood started */
};

static void fa_read_outcome(int fd, struct fa_outcome *o, long long t0, int timeout_ms)
{
    struct up_test_resp r = {0};
    o->ret = up_test_read_response(fd, &r, timeout_ms);
    o->status = r.status;
    const char *pid = o->ret == 0 ? up_test_resp_header(&r, "X-Up-Pid") : NULL;
    o->pid = pid != NULL ? (pid_t)atol(pid) : 0;
    o->at = fa_now_ms() - t0;
    o->done = true;
    up_test_resp_free(&r);
}

/*
 * Worker A blocks in its handler (block.so, /block): it reads nothing, so
 * the connections the master routes to it wait un-ACKed in its channel,
 * still owned by the master. Then A is SIGKILLed: every one of them must be
 * routed again and answered by B (or A's replacement). Only the /block
 * request itself, which A had taken, may fail.
 */
BACKEND_TEST(faults, worker_killed_with_queued_connections, .timeout = 60, .fini = fa_fini)
{
    enum { FLOOD = 40 };
    struct fa_status s0, s1, s;
    struct fa_outcome out[FLOOD] = {0};
    int fds[FLOOD];
    pid_t pids[2];
    char raw[128];

    fa_start(backend, up_test_bin("examples/block.so"), NULL);
    fa_wait_workers(1, 2, NULL, 0, &s0);
    fa_gen_pids(&s0, 1, "ready", pids, 2);
    int fds_before = fa_fds_settled(fa.master, -1);

    /* A is whichever worker took /block: it says so on its stderr, which
     * the master passes through to its log. */
    int blk = fa_client();
    fa_send(blk, "GET /block?ms=8000 HTTP/1.1\r\nHost: t\r\n\r\n");
    int ret = up_test_wait_log(fa.log, "block: pid=", 5000);
    cr_assert_eq(ret, 0, "the /block request did not reach the app within 5 s; log:\n%s",
                 fa_log_text());
    const char *at = strstr(fa_log_text(), "block: pid=");
    cr_assert_not_null(at);
    pid_t a = (pid_t)atol(at + strlen("block: pid="));
    cr_assert(fa_pid_in(a, pids, 2), "pid %d blocked, not a worker:\n%s", (int)a, s0.text);
    pid_t b = pids[0] == a ? pids[1] : pids[0];
    /* What the master holds now: nothing, or the /block connection itself
     * if A had not ACKed it yet. */
    fa_status(&s1);

    /* The flood: round-robin sends every other connection to A. */
    long long t0 = fa_now_ms();
    for (int i = 0; i < FLOOD; i++) {
        fds[i] = fa_client();
        snprintf(raw, sizeof(raw), "GET /?i=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 i);
        fa_send(fds[i], raw);
    }

    /* Collect B's answers until every connection not answered is held by
     * the master (accepted, and un-ACKed in A's channel). */
    int answered = 0;
    long long deadline = fa_now_ms() + 8000;
    for (;;) {
        struct pollfd p[FLOOD];
        int idx[FLOOD];
        int np = 0;
        for (int i = 0; i < FLOOD; i++) {
            if (!out[i].done) {
                p[np] = (struct pollfd){.fd = fds[i], .events = POLLIN};
                idx[np++] = i;
            }
        }
        if (np > 0 && poll(p, (nfds_t)np, 50) > 0) {
            for (int k = 0; k < np; k++) {
                if (p[k].revents != 0) {
                    fa_read_outcome(fds[idx[k]], &out[idx[k]], t0, 2000);
                    answered++;
                }
            }
        }
        fa_status(&s);
        if (s.accepted - s1.accepted == FLOOD && s.pending - s1.pending == FLOOD - answered) {
            break;
        }
        cr_assert_lt(fa_now_ms(), deadline,
                     "after 8 s, %d of %d answered, yet the master holds %ld (accepted %ld):\n%s"
                     "\nlog:\n%s",
                     answered, FLOOD, s.pending, s.accepted - s1.accepted, s.text, fa_log_text());
    }
    int held = FLOOD - answered;
    for (int i = 0; i < FLOOD; i++) {
        if (out[i].done) {
            cr_assert_eq(out[i].ret, 0, "request %d before the kill: %s", i, strerror(-out[i].ret));
            cr_assert_eq(out[i].status, 200, "request %d before the kill: status %d", i,
                         out[i].status);
            cr_assert_eq(out[i].pid, b, "request %d answered by %d while %d was blocked", i,
                         (int)out[i].pid, (int)a);
        }
    }
    cr_assert_gt(held, 0,
                 "no connection waited for the blocked worker %d (all %d answered by %d): "
                 "nothing to re-route\n%s",
                 (int)a, FLOOD, (int)b, s.text);

    /* Kill A with `held` connections it has not taken. */
    cr_assert_eq(kill(a, SIGKILL), 0, "kill %d: %s", (int)a, strerror(errno));
    long long killed_at = fa_now_ms() - t0;
    int ok = answered;
    int lost = 0;
    char failures[2048] = "";
    size_t flen = 0;
    for (int i = 0; i < FLOOD; i++) {
        if (out[i].done) {
            continue;
        }
        fa_read_outcome(fds[i], &out[i], t0, UP_TEST_TIMEOUT_MS);
        if (out[i].ret == 0 && out[i].status == 200 && out[i].pid != a) {
            ok++;
        } else {
            lost++;
            if (flen < sizeof(failures)) {
                int w = snprintf(failures + flen, sizeof(failures) - flen,
                                 "  request %d: %s, status %d, pid %d, after %lld ms\n", i,
                                 out[i].ret < 0 ? strerror(-out[i].ret) : "answered", out[i].status,
                                 (int)out[i].pid, out[i].at);
                flen += w > 0 ? (size_t)w : 0;
            }
        }
    }
    long long last = 0;
    for (int i = 0; i < FLOOD; i++) {
        last = out[i].at > last ? out[i].at : last;
    }

    /* The /block request was A's own, half served: it dies with A, and its
     * socket must be closed, not handed to B (which would wait on it for a
     * request that A already read). */
    struct up_test_resp r = {0};
    int blk_ret = up_test_read_response(blk, &r, 3000);
    up_test_resp_free(&r);

    /* A is replaced, B stays. */
    pid_t gone[1] = {a};
    fa_wait_workers(1, 2, gone, 1, &s);
    long rerouted = s.rerouted - s1.rerouted;
    fprintf(stderr,
            "[faults] worker_killed_with_queued_connections (%s): flood=%d answered_before_kill=%d "
            "held_by_blocked_worker=%d killed_at=%lldms ok=%d lost=%d last_answer=%lldms "
            "rerouted=%ld respawns=%ld block_request=%s block_conn_acked_before_kill=%s\n",
            backend, FLOOD, answered, held, killed_at, ok, lost, last, rerouted, s.respawns,
            blk_ret == 0 ? "answered" : strerror(-blk_ret), s1.pending == 0 ? "yes" : "no");
    cr_assert_eq(lost, 0,
                 "%d of the %d connections queued for the killed worker %d were not answered:\n%s"
                 "status:\n%s\nlog:\n%s",
                 lost, held, (int)a, failures, s.text, fa_log_text());
    cr_assert_eq(ok, FLOOD);
    cr_assert_geq(rerouted, held,
                  "%d connections waited for the killed worker, but rerouted went up by %ld:\n%s",
                  held, rerouted, s.text);
    cr_assert_neq(blk_ret, 0, "the /block request was answered though its worker was killed");
    cr_assert_neq(blk_ret, -ETIMEDOUT,
                  "the /block connection was neither answered nor closed 3 s after its worker "
                  "was killed in the handler: the master still held it un-ACKed (pending=%ld "
                  "before the flood) and routed it again to a worker that waits for a request "
                  "already read:\n%s",
                  s1.pending, s.text);
    pid_t now[2];
    fa_gen_pids(&s, 1, "ready", now, 2);
    cr_assert(fa_pid_in(b, now, 2), "the surviving worker %d was replaced too:\n%s", (int)b,
              s.text);
    cr_assert_geq(s.respawns, 1, "%s", s.text);

    /* The master kept no fd of the connections it routed twice. */
    int fds_after = fa_fds_settled(fa.master, fds_before);
    cr_assert_eq(fds_after, fds_before, "the master holds %d fds, %d before the flood\nlog:\n%s",
                 fds_after, fds_before, fa_log_text());
}

/* ---- 5. a worker that crashes in the middle of a request ---- */

BACKEND_TEST(faults, crash_mid_request_fails_only_that_request, .timeout = 60, .fini = fa_fini)
{
    struct fa_status s0, s;
    struct up_test_resp r = {0};
    pid_t pids[2];
    int ka[4];
    pid_t ka_pid[4];
    char what[64];
    char buf[256];

    fa_start(backend, up_test_bin("examples/crash_on_request.so"), NULL);
    fa_wait_workers(1, 2, NULL, 0, &s0);
    fa_gen_pids(&s0, 1, "ready", pids, 2);
    int fds_before = fa_fds_settled(fa.master, -1);

    /* Four keep-alive sockets: round-robin puts two on each worker. */
    for (int i = 0; i < 4; i++) {
        ka[i] = fa_client();
        snprintf(what, sizeof(what), "keep-alive socket %d", i);
        ka_pid[i] = fa_keepalive_get(ka[i], what);
        cr_assert(fa_pid_in(ka_pid[i], pids, 2), "%s served by %d, not a worker:\n%s", what,
                  (int)ka_pid[i], s0.text);
    }
    pid_t a = ka_pid[0];
    pid_t b = pids[0] == a ? pids[1] : pids[0];
    int on_b = 0;
    for (int i = 0; i < 4; i++) {
        on_b += ka_pid[i] == b;
    }
    cr_assert_gt(on_b, 0, "no keep-alive socket on worker %d (all on %d)", (int)b, (int)a);

    /* /crash on A's socket: A dies in the handler. */
    fa_send(ka[0], "GET /crash HTTP/1.1\r\nHost: t\r\n\r\n");
    long long t0 = fa_now_ms();
    int crash_ret = up_test_read_response(ka[0], &r, UP_TEST_TIMEOUT_MS);
    cr_assert_neq(crash_ret, 0, "/crash was answered (status %d): the app did not crash", r.status);
    cr_assert_neq(crash_ret, -ETIMEDOUT,
                  "/crash: the socket of the crashed worker neither answered nor closed in 5 s");

    /* Everything else goes on: B's sockets at once, and new connections
     * while A is being replaced. */
    int b_requests = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 1; i < 4; i++) {
            if (ka_pid[i] != b) {
                continue;
            }
            snprintf(what, sizeof(what), "socket %d on %d after the crash", i, (int)b);
            pid_t p = fa_keepalive_get(ka[i], what);
            cr_assert_eq(p, b, "%s moved to %d", what, (int)p);
            b_requests++;
        }
    }
    for (int i = 0; i < 10; i++) {
        snprintf(what, sizeof(what), "fresh request %d after the crash", i);
        pid_t p = fa_fresh_get(what);
        cr_assert_neq(p, a, "%s answered by the crashed worker %d", what, (int)a);
    }

    /* A's other sockets died with it: closed, never answered. */
    int a_closed = 0;
    for (int i = 1; i < 4; i++) {
        if (ka_pid[i] == a) {
            int n = up_test_read_until_close(ka[i], buf, sizeof(buf), 3000);
            a_closed += n == 0 && (errno == 0 || errno == ECONNRESET);
        }
    }

    pid_t gone[1] = {a};
    fa_wait_workers(1, 2, gone, 1, &s);
    long long respawned = fa_now_ms() - t0;
    pid_t now[2];
    fa_gen_pids(&s, 1, "ready", now, 2);
    cr_assert(fa_pid_in(b, now, 2), "worker %d was replaced though only %d crashed:\n%s", (int)b,
              (int)a, s.text);
    pid_t fresh = now[0] == b ? now[1] : now[0];
    cr_assert_eq(s.respawns - s0.respawns, 1, "%s", s.text);
    /* (signal 11), or (status 1) under ASan, whose SEGV handler exits. */
    cr_assert_eq(up_test_file_contains(fa.log, "exited unexpectedly ("), 1,
                 "the crash is not in the log:\n%s", fa_log_text());

    /* B's sockets still work, and the replacement serves. */
    for (int i = 1; i < 4; i++) {
        if (ka_pid[i] == b) {
            cr_assert_eq(fa_keepalive_get(ka[i], "socket on B after the respawn"), b);
            b_requests++;
        }
    }
    bool fresh_served = false;
    for (int i = 0; i < 6 && !fresh_served; i++) {
        fresh_served = fa_fresh_get("request after the respawn") == fresh;
    }
    fprintf(stderr,
            "[faults] crash_mid_request_fails_only_that_request (%s): crashed=%d crash_request=%s "
            "survivor=%d keepalive_requests_ok=%d other_sockets_on_crashed_closed=%d "
            "replacement=%d ready_after=%lldms respawns=%ld\n",
            backend, (int)a, strerror(-crash_ret), (int)b, b_requests, a_closed, (int)fresh,
            respawned, s.respawns);
    cr_assert(fresh_served, "the replacement worker %d answers no request", (int)fresh);

    /* The same crash on the first request of a new connection: the worker
     * took the socket and read the request, so the connection is its own
     * and dies with it, closed at once. Routing it again would hand another
     * worker a socket whose request is gone: the client would wait for the
     * idle timeout. */
    struct fa_status s2;
    fa_status(&s2);
    int fc = fa_client();
    fa_send(fc, "GET /crash HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    long long t1 = fa_now_ms();
    int fresh_ret = up_test_read_response(fc, &r, 3000);
    long long fresh_took = fa_now_ms() - t1;
    for (int i = 0; i < 4; i++) {
        fa_fresh_get("request after the second crash");
    }
    pid_t before[2] = {now[0], now[1]};
    struct fa_status s3;
    long long deadline = fa_now_ms() + FA_READY_MS;
    for (;;) {
        fa_status(&s3);
        if (s3.respawns > s2.respawns) {
            break;
        }
        cr_assert_lt(fa_now_ms(), deadline, "no respawn after the second crash:\n%s\nlog:\n%s",
                     s3.text, fa_log_text());
        fa_nap(20);
    }
    fa_wait_workers(1, 2, NULL, 0, &s3);
    pid_t after[2];
    fa_gen_pids(&s3, 1, "ready", after, 2);
    fprintf(stderr,
            "[faults] crash_mid_request_fails_only_that_request (%s): /crash on a new "
            "connection: %s after %lld ms, rerouted %ld -> %ld, respawns=%ld\n",
            backend, fresh_ret == 0 ? "answered" : strerror(-fresh_ret), fresh_took, s2.rerouted,
            s3.rerouted, s3.respawns);
    cr_assert_neq(fresh_ret, 0, "/crash on a new connection was answered (status %d)", r.status);
    cr_assert_neq(fresh_ret, -ETIMEDOUT,
                  "/crash on a new connection: neither answered nor closed within 3 s of its "
                  "worker's crash (rerouted %ld -> %ld: the master routed the connection again "
                  "after its request was read)\nstatus:\n%s\nlog:\n%s",
                  s2.rerouted, s3.rerouted, s3.text, fa_log_text());
    cr_assert(!fa_pid_in(before[0], after, 2) || !fa_pid_in(before[1], after, 2),
              "no worker was replaced after the second crash:\n%s", s3.text);
    int fds_after = fa_fds_settled(fa.master, fds_before);
    cr_assert_eq(fds_after, fds_before, "the master holds %d fds after two crashes, %d before",
                 fds_after, fds_before);
    up_test_resp_free(&r);
}

/* ---- 2. a crash loop ---- */

/* The delays of the log's "respawning in N ms" lines, in order, up to cap;
 * returns how many lines there are. */
static int fa_respawn_delays(long *delays, int cap)
{
    char *text = fa_slurp(fa.log);
    const char *needle = "respawning in ";
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        if (n < cap) {
            delays[n] = strtol(p + strlen(needle), NULL, 10);
        }
        n++;
    }
    free(text);
    return n;
}

/* Start up-run -n 2 on DIR/app/app.so, a copy of crash_after.so (its path
 * into app), and wait until generation 1 is ready: its workers die 50 ms
 * later. */
static void fa_crash_loop_start(const char *backend, char *app, size_t cap)
{
    const char *dir = fa_path("app");

    cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    snprintf(app, cap, "%s/app.so", dir);
    fa_install("examples/crash_after.so", app);
    fa_spawn(backend, app, NULL);
    int ret = up_test_wait_log(fa.log, "generation 1 serving", FA_READY_MS);
    cr_assert_eq(ret, 0, "generation 1 never became ready; log:\n%s", fa_log_text());
}

/* The delays as "100,400,...", for messages. */
static const char *fa_delay_list(const long *delays, int n)
{
    static char list[512];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < n && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%ld", i ? "," : "", delays[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    return list;
}

/*
 * crash_after.so inits fine (so generation 1 becomes ready and active) and
 * then dies 50 ms later, every time. For 6 s: the back-off keeps the spawns
 * few (100 ms doubling per death: 2 workers give 100, 400, 1600, 6400 ms),
 * the master answers `status` quickly, and it never runs more than its 2
 * workers. Then good code and `up-run reload` recover.
 */
BACKEND_TEST(faults, crash_loop_backs_off_and_reload_recovers, .timeout = 150, .fini = fa_fini)
{
    /* Not a storm, but it times the master's answers: a storm of another
     * test on the 2 cores would time the scheduler instead. The timeout
     * covers the wait. */
    up_test_exclusive_load();
    enum { OBSERVE_MS = 6000 };
    struct fa_status s;
    char desc[512];
    char out[1024];
    long delays[32];
    char app[PATH_MAX];

    fa_crash_loop_start(backend, app, sizeof(app));

    long long t0 = fa_now_ms();
    long long worst = 0;
    int polls = 0;
    int max_kids = 0;
    while (fa_now_ms() - t0 < OBSERVE_MS) {
        cr_assert(up_test_alive(fa.master), "the master died in the crash loop; log:\n%s",
                  fa_log_text());
        fa_status(&s);
        polls++;
        worst = s.took > worst ? s.took : worst;
        cr_assert_lt(s.took, 1000, "`up-run status` took %lld ms in the crash loop; log:\n%s",
                     s.took, fa_log_text());
        int kids = fa_procs(fa.master, 0, desc, sizeof(desc));
        max_kids = kids > max_kids ? kids : max_kids;
        cr_assert_leq(kids, 2, "the master runs %d children with -n 2:%s\n%s", kids, desc, s.text);
        fa_nap(250);
    }
    fa_status(&s);
    int lines = fa_respawn_delays(delays, 32);
    const char *list = fa_delay_list(delays, lines < 32 ? lines : 32);
    fprintf(stderr,
            "[faults] crash_loop_backs_off_and_reload_recovers (%s): in %d ms: respawn_lines=%d "
            "delays_ms=%s respawns=%ld status_polls=%d slowest_status=%lldms max_children=%d\n",
            backend, OBSERVE_MS, lines, list, s.respawns, polls, worst, max_kids);
    cr_assert_geq(lines, 3, "only %d respawn steps in %d ms: the workers are not respawned?\n%s",
                  lines, OBSERVE_MS, fa_log_text());
    cr_assert_leq(lines, 8, "%d respawn steps in %d ms: no back-off (delays %s)", lines, OBSERVE_MS,
                  list);
    cr_assert_eq(delays[0], 100, "the first back-off step is %ld ms, expected 100", delays[0]);
    for (int i = 1; i < lines && i < 32; i++) {
        cr_assert_gt(delays[i], delays[i - 1], "the back-off does not grow: %s", list);
        cr_assert_leq(delays[i], 10000, "a back-off step over 10 s: %s", list);
    }
    cr_assert_leq(s.respawns, 2L * lines, "%ld spawns for %d back-off steps of 2 workers:\n%s",
                  s.respawns, lines, s.text);
    cr_assert_str_eq(fa_gen_state_of(&s, 1), "active", "%s", s.text);

    /* Good code, `up-run reload`: served again within seconds. */
    fa_install("examples/hello.so", app);
    long long took;
    int code = fa_cmd("reload", out, sizeof(out), &took);
    cr_assert_eq(code, 0, "up-run reload exited %d:\n%s", code, out);
    long long r0 = fa_now_ms();
    struct up_test_resp r = {0};
    for (;;) {
        int got = up_test_request(fa.port, FA_GET, &r);
        if (got == 0 && r.status == 200 && up_test_resp_header(&r, "X-Up-Pid") == NULL) {
            break; /* hello's answer, not crash_after's */
        }
        cr_assert_lt(fa_now_ms() - r0, 5000,
                     "no answer from the fixed code 5 s after the reload (last: %s, status %d)"
                     "\nlog:\n%s",
                     got < 0 ? strerror(-got) : "answered", r.status, fa_log_text());
        fa_nap(20);
    }
    long long recovered = fa_now_ms() - r0;
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
    fa_wait_workers(2, 2, NULL, 0, &s);
    long respawns = s.respawns;
    for (int i = 0; i < 6; i++) {
        fa_fresh_get("request after the recovery");
    }
    fa_status(&s);
    cr_assert_eq(s.respawns, respawns, "workers still die after the fix:\n%s\nlog:\n%s", s.text,
                 fa_log_text());
    fprintf(stderr,
            "[faults] crash_loop_backs_off_and_reload_recovers (%s): serving %lld ms "
            "after `up-run reload`\n",
            backend, recovered);
}

/* ---- 3. reloads to broken code under load ---- */

struct fa_load {
    long requests, ok, connect_errors, resets, lost, bad, timeouts, idle_closes, pids;
    char line[512];
};

static void fa_load_start(const char *const *args)
{
    char port[16];
    char *argv[32];
    size_t argc = 0;
    const char *bin = up_test_bin("tools/up-load");

    snprintf(port, sizeof(port), "%d", fa.port);
    snprintf(fa.load_out, sizeof(fa.load_out), "%s", fa_path("up-load.out"));
    argv[argc++] = (char *)bin;
    argv[argc++] = "--port";
    argv[argc++] = port;
    for (size_t i = 0; args[i] != NULL && argc + 1 < 32; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    fa.load = up_test_spawn(argv, NULL, fa.load_out);
    cr_assert_gt(fa.load, 0, "spawn %s: %s", bin, strerror(-fa.load));
}

/* Wait for up-load and parse its summary. Returns its exit status. */
static int fa_load_finish(int timeout_ms, struct fa_load *out, char *text, size_t cap)
{
    int status = up_test_wait_exit(fa.load, timeout_ms);
    cr_assert_neq(status, -ETIMEDOUT, "up-load still runs %d ms after its end", timeout_ms);
    fa.load = -1;
    snprintf(text, cap, "%s", fa_tail(fa.load_out));
    const char *line = strstr(text, "up-load: requests=");
    cr_assert_not_null(line, "no summary from up-load (exit %d):\n%s", status, text);
    snprintf(out->line, sizeof(out->line), "%.*s", (int)strcspn(line, "\n"), line);
    int n = sscanf(out->line,
                   "up-load: requests=%ld ok=%ld connect_errors=%ld resets=%ld lost=%ld bad=%ld "
                   "timeouts=%ld idle_closes=%ld pids=%ld",
                   &out->requests, &out->ok, &out->connect_errors, &out->resets, &out->lost,
                   &out->bad, &out->timeouts, &out->idle_closes, &out->pids);
    cr_assert_eq(n, 9, "cannot parse up-load's summary: %s", out->line);
    return status;
}

struct fa_broken {
    const char *example;
    const char *needle; /* what the log's "failed to start" line says */
    int times;
    long long worst_ms; /* the longest time from the reload to the failure */
};

/*
 * Under up-load, reload at most every 300 ms, alternating the good app with
 * each kind of broken one in turn: missing symbol, failing init, crash at
 * start, never ready (--ready=manual with a 1 s --ready-timeout; the good
 * app, manual_ready.so, calls up_ready() after 300 ms). Each reload waits
 * for its outcome before the next one, so that each broken kind fails for
 * its own reason rather than being superseded; a good reload must become
 * the active generation, a broken one must fail and leave the last good one
 * active. Not one request of the load may fail.
 */
BACKEND_TEST(faults, broken_reloads_under_load, .timeout = 150, .fini = fa_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"--ready=manual", "--ready-timeout", "1s", "-t", "2s", NULL};
    static const char *const load[] = {"--keepalive",   "32",          "--fresh", "2",
                                       "--seconds",     "8",           "--path",  "/",
                                       "--expect-body", "Hello World", NULL};
    struct fa_broken broken[] = {
        {"examples/no_symbol.so", "does not export the symbol up_app", 0, 0},
        {"examples/fail_init.so", "init failed", 0, 0},
        /* "killed by signal 11", or "exited with status 1" under ASan, whose
         * SEGV handler exits. */
        {"examples/crash_init.so", "before it was ready", 0, 0},
        {"examples/never_ready.so", "--ready-timeout", 0, 0},
    };
    enum { NBROKEN = sizeof(broken) / sizeof(broken[0]), PERIOD_MS = 300, STORM_MS = 5000 };
    struct fa_status s;
    struct fa_load res = {0};
    char text[8192];
    char app[PATH_MAX];

    snprintf(app, sizeof(app), "%s", fa_path("app.so"));
    fa_install("examples/manual_ready.so", app);
    fa_start(backend, app, args);
    fa_wait_workers(1, 2, NULL, 0, &s);
    unsigned good = 1;
    long failures = s.reload_failures;

    fa_load_start(load);
    long long t0 = fa_now_ms();
    long long next = t0;
    int reloads = 0;
    int goods = 0;
    long long worst_good = 0;
    char trace[1024] = "";
    size_t tlen = 0;
    for (int step = 0; fa_now_ms() - t0 < STORM_MS || step < 2 * NBROKEN; step++) {
        bool bad = step % 2 == 0;
        struct fa_broken *k = &broken[(step / 2) % NBROKEN];
        fa_sleep_until(next);
        cr_assert(up_test_alive(fa.master), "the master died at reload %d; log:\n%s", reloads,
                  fa_log_text());
        fa_install(bad ? k->example : "examples/manual_ready.so", app);
        long long at = fa_now_ms();
        next = at + PERIOD_MS;
        cr_assert_eq(kill(fa.master, SIGUSR2), 0);
        reloads++;
        /* The outcome, from the log (cheap to watch: a status command per
         * poll would compete with the load for the CPU): generation
         * 1 + reloads fails, or serves. */
        unsigned id = 1 + (unsigned)reloads;
        char needle[64];
        snprintf(needle, sizeof(needle), "generation %u %s", id,
                 bad ? "failed to start" : "serving");
        int ret = up_test_wait_log(fa.log, needle, 5000);
        if (ret != 0) {
            fa_status(&s);
        }
        cr_assert_eq(ret, 0, "reload %d (%s): no '%s' in the log within 5 s:\n%s\nlog:\n%s",
                     reloads, bad ? k->example : "good", needle, s.text, fa_log_text());
        long long took = fa_now_ms() - at;
        if (tlen < sizeof(trace)) {
            int w = snprintf(trace + tlen, sizeof(trace) - tlen, " %s@%lld+%lld",
                             bad ? k->example + strlen("examples/") : "good", at - t0, took);
            tlen += w > 0 ? (size_t)w : 0;
        }
        fa_status(&s);
        if (bad) {
            const char *const named[] = {needle, k->needle, NULL};
            cr_assert_eq(fa_log_count(named), 1, "the failure of %s does not say '%s':\n%s",
                         k->example, k->needle, fa_log_text());
            cr_assert_eq(s.reload_failures, failures + 1, "%s:\n%s", k->example, s.text);
            failures = s.reload_failures;
            k->times++;
            k->worst_ms = took > k->worst_ms ? took : k->worst_ms;
            pid_t pids[4];
            cr_assert_eq(s.active, good,
                         "after the failed reload to %s, generation %u is active, not the good "
                         "%u:\n%s",
                         k->example, s.active, good, s.text);
            cr_assert_geq(fa_gen_pids(&s, good, "ready", pids, 4), 1,
                          "the good generation %u has no ready worker after %s:\n%s", good,
                          k->example, s.text);
        } else {
            cr_assert_eq(s.active, id, "generation %u serves, but status says %u is active:\n%s",
                         id, s.active, s.text);
            good = id;
            goods++;
            worst_good = took > worst_good ? took : worst_good;
        }
    }
    long long storm = fa_now_ms() - t0;

    int status = fa_load_finish(20000, &res, text, sizeof(text));
    fprintf(stderr,
            "[faults] broken_reloads_under_load (%s): %d reloads in %lld ms (%d good, slowest "
            "switch %lld ms), failures: no_symbol=%d (%lld ms) fail_init=%d (%lld ms) "
            "crash_init=%d (%lld ms) never_ready=%d (%lld ms)\n",
            backend, reloads, storm, goods, worst_good, broken[0].times, broken[0].worst_ms,
            broken[1].times, broken[1].worst_ms, broken[2].times, broken[2].worst_ms,
            broken[3].times, broken[3].worst_ms);
    fprintf(stderr, "[faults] broken_reloads_under_load (%s): kind@start+outcome_ms:%s\n", backend,
            trace);
    fprintf(stderr, "[faults] broken_reloads_under_load (%s): %s\n", backend, res.line);
    cr_expect(res.connect_errors == 0 && res.resets == 0 && res.lost == 0 && res.bad == 0 &&
                  res.timeouts == 0 && res.ok == res.requests,
              "requests failed across broken reloads: %s\nup-load output:\n%s\nup-run log:\n%s",
              res.line, text, fa_log_text());
    cr_expect_eq(status, 0, "up-load exited %d:\n%s", status, text);
    cr_assert_gt(res.requests, 500, "only %ld requests: %s", res.requests, res.line);

    /* The log names each failure, once per broken reload. */
    for (size_t i = 0; i < NBROKEN; i++) {
        const char *const needles[] = {"failed to start", broken[i].needle, NULL};
        int n = fa_log_count(needles);
        cr_assert_eq(n, broken[i].times,
                     "%d reloads to %s, but %d log lines say 'failed to start' with '%s':\n%s",
                     broken[i].times, broken[i].example, n, broken[i].needle, fa_log_text());
    }
    fa_status(&s);
    cr_assert_eq(s.active, good, "%s", s.text);
    cr_assert_str_eq(fa_gen_state_of(&s, good), "active");
    cr_assert_eq(fa_fresh_get("after the storm") > 0, true);
}

/* ---- 4. the master killed ---- */

/*
 * SIGKILL the master while its workers hold two keep-alive sockets: one
 * idle, one with a streamed response in flight. The response still
 * completes; the idle socket is closed cleanly; then every worker exits,
 * within 3 s, and nothing of the master's is left running.
 */
BACKEND_TEST(faults, master_sigkill_inflight_completes_workers_exit, .timeout = 60, .fini = fa_fini)
{
    struct fa_status s;
    struct up_test_resp r = {0};
    pid_t pids[2];
    char buf[256];
    char desc[512];

    fa_start(backend, up_test_bin("examples/slow.so"), NULL);
    fa_wait_workers(1, 2, NULL, 0, &s);
    fa_gen_pids(&s, 1, "ready", pids, 2);

    /* Both sockets on their workers already: the master is out of their
     * data path before it dies. */
    int idle = fa_client();
    int busy = fa_client();
    pid_t idle_pid = 0, busy_pid = 0;
    for (int i = 0; i < 2; i++) {
        int fd = i == 0 ? idle : busy;
        fa_send(fd, "GET /?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
        cr_assert_eq(ret, 0, "warm-up request: %s", strerror(-ret));
        cr_assert_eq(r.status, 200, "%s", r.head);
        *(i == 0 ? &idle_pid : &busy_pid) = fa_resp_pid(&r);
    }

    /* Four chunks 400 ms apart: the first one proves the request is in the
     * app's hands, then the master dies with 1.2 s of it to go. */
    fa_send(busy, "GET /stream?chunks=4&ms=400 HTTP/1.1\r\nHost: t\r\n\r\n");
    struct pollfd p = {.fd = busy, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 5000), 1, "no first chunk within 5 s; log:\n%s", fa_log_text());

    cr_assert_eq(kill(fa.master, SIGKILL), 0);
    long long t0 = fa_now_ms();
    pid_t master = fa.master;
    int status = up_test_wait_exit(fa.master, 2000);
    cr_assert_eq(status, 128 + SIGKILL, "master exit status %d", status);
    fa.master = -1;

    /* The idle socket: closed cleanly at once, as there is no master to
     * hand it back to. */
    int n = up_test_read_until_close(idle, buf, sizeof(buf), 3000);
    int idle_end = errno;
    long long idle_at = fa_now_ms() - t0;

    /* The response in flight completes. */
    int ret = up_test_read_response(busy, &r, UP_TEST_TIMEOUT_MS);
    long long done_at = fa_now_ms() - t0;
    cr_assert_eq(ret, 0, "the response in flight did not complete after the master died: %s",
                 strerror(-ret));
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert_str_eq(r.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n", "the streamed body: %s",
                     r.body);
    const char *conn = up_test_resp_header(&r, "Connection");
    bool said_close = conn != NULL && strcasecmp(conn, "close") == 0;
    up_test_resp_free(&r);

    /* Then that socket is closed too, and the workers exit: all within
     * 3 s of the master's death. */
    long long left_ms = t0 + 3000 - fa_now_ms();
    int m = up_test_read_until_close(busy, buf, sizeof(buf), left_ms > 0 ? (int)left_ms : 0);
    int busy_end = errno;
    long long busy_at = fa_now_ms() - t0;
    left_ms = t0 + 3000 - fa_now_ms();
    long long took = fa_wait_gone(pids, 2, left_ms > 0 ? (int)left_ms : 0);
    long long gone_at = took >= 0 ? fa_now_ms() - t0 : -1;
    char left[512];
    int nleft = fa_procs(0, master, left, sizeof(left));
    if (took < 0) {
        /* Late: measure how late, for the report. */
        took = fa_wait_gone(pids, 2, 15000);
        gone_at = took >= 0 ? fa_now_ms() - t0 : -1;
    }
    fprintf(stderr,
            "[faults] master_sigkill_inflight_completes_workers_exit (%s): idle socket (pid %d): "
            "%s after %lld ms; in-flight response (pid %d) complete after %lld ms%s; then its "
            "socket: %s after %lld ms; workers gone after %lld ms (-1: not within 18 s); at "
            "3 s still running in the master's group: %d%s\n",
            backend, (int)idle_pid, idle_end == 0 ? "EOF" : strerror(idle_end), idle_at,
            (int)busy_pid, done_at, said_close ? " (Connection: close)" : "",
            busy_end == 0 ? "EOF" : strerror(busy_end), busy_at, gone_at, nleft, left);
    cr_assert_eq(idle_end, 0, "the idle socket saw %s, not a clean close, after the master died",
                 strerror(idle_end));
    cr_assert_eq(n, 0, "the idle socket got %d bytes: %s", n, buf);
    cr_assert_eq(busy_end, 0,
                 "the socket whose request completed was not closed cleanly (%s) %lld ms after "
                 "the master died: a worker without a master keeps an idle keep-alive socket",
                 busy_end == ETIMEDOUT ? "still open" : strerror(busy_end), busy_at);
    cr_assert_eq(m, 0, "the busy socket got %d more bytes: %s", m, buf);
    cr_assert_eq(nleft, 0,
                 "3 s after the master died, processes of its group still run:%s (all gone after "
                 "%lld ms)",
                 left, gone_at);
    cr_assert_eq(fa_procs(0, master, desc, sizeof(desc)), 0,
                 "processes of the dead master's group still run:%s", desc);
}

/* ---- long: the back-off stays at its cap ---- */

/*
 * The crash loop of crash_loop_backs_off_and_reload_recovers, watched past
 * the 10 s cap: as long as the workers keep dying at once, every step after
 * the cap is 10 s again. (A worker that stays up 10 s ends the streak; a
 * worker that dies 50 ms after a 10 s wait did not.) About 20 s per back
 * end: run with UP_TEST_LONG=1 (make test-long).
 */
BACKEND_TEST(long, faults_crash_loop_back_off_stays_at_cap, .timeout = 150, .fini = fa_fini)
{
    if (getenv("UP_TEST_LONG") == NULL) {
        cr_skip_test("a 20 s crash loop: run with UP_TEST_LONG=1 (make test-long)");
    }
    up_test_exclusive_load();
    enum { STEPS = 6 };
    long delays[32];
    char app[PATH_MAX];
    int lines = 0;

    /* 2 workers, each death one step: 100, 400, 1600, 6400, 10000, then
     * the 6th step comes about 19 s in. */
    fa_crash_loop_start(backend, app, sizeof(app));
    long long t0 = fa_now_ms();
    while ((lines = fa_respawn_delays(delays, 32)) < STEPS) {
        cr_assert(up_test_alive(fa.master), "the master died in the crash loop; log:\n%s",
                  fa_log_text());
        cr_assert_lt(fa_now_ms() - t0, 40000, "only %d back-off steps in 40 s: %s\nlog:\n%s", lines,
                     fa_delay_list(delays, lines < 32 ? lines : 32), fa_log_text());
        fa_nap(100);
    }
    const char *list = fa_delay_list(delays, lines < 32 ? lines : 32);
    fprintf(stderr,
            "[faults] faults_crash_loop_back_off_stays_at_cap (%s): %d steps in %lld ms: "
            "delays_ms=%s\n",
            backend, lines, fa_now_ms() - t0, list);
    for (int i = 1; i < lines && i < 32; i++) {
        cr_assert_geq(delays[i], delays[i - 1],
                      "the back-off fell from %ld to %ld ms at step %d while the workers still "
                      "die 50 ms after each start: %s",
                      delays[i - 1], delays[i], i + 1, list);
        cr_assert_leq(delays[i], 10000, "a back-off step over 10 s: %s", list);
    }
}
