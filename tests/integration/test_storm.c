/*
 * storm: reloads at their worst. A SIGUSR2 every 50 ms for 20 s under a
 * checking load (suite `long`, run by `make test-long`), and the short
 * storms of suite `storm`: a 50 MB upload, a streamed answer and a request
 * longer than the drain timeout, each across a reload; idle connections
 * handed back at the very moment their clients send; and the cap on worker
 * processes, (max-draining + 1) x N, while held connections pin old
 * generations. What DESIGN.md promises (sections 5 and 8): no failed
 * request, no reset socket, no fd or process left behind, a master whose
 * memory does not grow.
 *
 * Each test runs twice through BACKEND_TEST (UP_BACKEND=io_uring, epoll).
 * Each test process starts one master, at most two up-loads and one sampler
 * thread (which watches the master's children and RSS), all kept in `st` so
 * that the fini stops them even after a failed assertion.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../lib/testlib.h"

#define ST_READY_MS 10000
#define ST_STOP_MS 5000
#define ST_MAX_CLIENTS 32
#define ST_MAX_LOADS 2
#define ST_MAX_PIDS 256

/* Watches the master from a thread of its own: how many children it has
 * (zombies included: an unreaped worker still counts against the cap) and
 * its VmRSS, every period_ms, keeping the maximum of each. It never
 * asserts; the test reads the figures after st_sampler_stop(). */
struct st_sampler {
    pthread_t tid;
    bool running;
    pid_t master;
    int period_ms;
    atomic_bool stop;
    long samples;
    int max_kids;
    long long max_kids_at; /* ms since the sampler started */
    char max_kids_desc[512];
    long max_rss_kb;
};

struct st {
    pid_t master;             /* up-run, or -1 */
    pid_t load[ST_MAX_LOADS]; /* up-load, or -1 */
    int port;
    int clients[ST_MAX_CLIENTS]; /* sockets the test holds; 0 when free */
    char dir[64];                /* the temp dir, or "" */
    char log[PATH_MAX];          /* up-run's stderr */
    char load_out[ST_MAX_LOADS][PATH_MAX];
    struct st_sampler sampler;
    char *big; /* the upload of slow_upload_across_reload, or NULL */
};

static struct st st = {.master = -1, .load = {-1, -1}};

/* Counters from up-load's summary line. */
struct st_load {
    long requests, ok, connect_errors, resets, lost, bad, timeouts, idle_closes, pids;
    char line[512];
};

/* ---- time ---- */

static long long st_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void st_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void st_sleep_until(long long at_ms)
{
    long long left = at_ms - st_now_ms();
    if (left > 0) {
        st_sleep_ms((long)left);
    }
}

/* ---- /proc ---- */

/* Read a small /proc file into buf (NUL-terminated). Returns the length or
 * -errno. */
static int st_read_proc(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    ssize_t n;

    if (fd < 0) {
        return -errno;
    }
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (int)len;
}

/* The children of pid (any state: zombies too), up to cap of them in pids.
 * Reads /proc/PID/task/PID/children, or scans every /proc/N/stat for the
 * ppid where the kernel has no children file. Returns how many there are,
 * or -errno. */
static int st_children(pid_t pid, pid_t *pids, int cap)
{
    char path[64];
    char buf[8192];
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    int len = st_read_proc(path, buf, sizeof(buf));
    if (len >= 0) {
        for (char *p = buf, *end; *p != '\0'; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p) {
                break;
            }
            if (n < cap) {
                pids[n] = (pid_t)v;
            }
            n++;
        }
        return n;
    }
    if (len != -ENOENT) {
        return len;
    }
    DIR *d = opendir("/proc");
    struct dirent *e;
    if (d == NULL) {
        return -errno;
    }
    while ((e = readdir(d)) != NULL) {
        char stat[512];
        char spath[300];
        int ppid = -1;
        char state;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        snprintf(spath, sizeof(spath), "/proc/%s/stat", e->d_name);
        if (st_read_proc(spath, stat, sizeof(stat)) <= 0) {
            continue;
        }
        /* pid (comm) state ppid ...: comm may hold spaces and parens. */
        char *rp = strrchr(stat, ')');
        if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || ppid != (int)pid) {
            continue;
        }
        if (n < cap) {
            pids[n] = (pid_t)atoi(e->d_name);
        }
        n++;
    }
    closedir(d);
    return n;
}

/* " 123 456" for failure messages. */
static void st_pids_desc(const pid_t *pids, int n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && i < ST_MAX_PIDS && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, " %d", (int)pids[i]);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* VmRSS of pid in KiB, or -1. */
static long st_rss_kb(pid_t pid)
{
    char path[64];
    char buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (st_read_proc(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    const char *p = strstr(buf, "\nVmRSS:");
    return p != NULL ? strtol(p + 7, NULL, 10) : -1;
}

/* Open fds of pid. */
static int st_fds(pid_t pid)
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

/* When pid started, in ms of CLOCK_BOOTTIME (the clock of /proc/PID/stat's
 * starttime, at clock-tick resolution), or -1. */
static long long st_start_ms(pid_t pid)
{
    char path[64];
    char buf[1024];
    unsigned long long ticks = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (st_read_proc(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    /* Field 22; after "pid (comm)" comes field 3. */
    char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1) {
        return -1;
    }
    return (long long)(ticks * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static long long st_boottime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the sampler ---- */

static void *st_sampler_main(void *arg)
{
    struct st_sampler *s = arg;
    pid_t pids[ST_MAX_PIDS];
    long long start = st_now_ms();

    for (long i = 0; !atomic_load(&s->stop); i++) {
        st_sleep_until(start + i * s->period_ms);
        int n = st_children(s->master, pids, ST_MAX_PIDS);
        long rss = st_rss_kb(s->master);
        if (n < 0 || rss < 0) {
            continue; /* the master is gone: the test sees it */
        }
        s->samples++;
        if (rss > s->max_rss_kb) {
            s->max_rss_kb = rss;
        }
        if (n > s->max_kids) {
            s->max_kids = n;
            s->max_kids_at = st_now_ms() - start;
            st_pids_desc(pids, n, s->max_kids_desc, sizeof(s->max_kids_desc));
        }
    }
    return NULL;
}

static void st_sampler_start(int period_ms)
{
    struct st_sampler *s = &st.sampler;
    *s = (struct st_sampler){.master = st.master, .period_ms = period_ms};
    atomic_init(&s->stop, false);
    int r = pthread_create(&s->tid, NULL, st_sampler_main, s);
    cr_assert_eq(r, 0, "pthread_create: %s", strerror(r));
    s->running = true;
}

/* Stop and join the sampler: its figures are stable afterwards. */
static void st_sampler_stop(void)
{
    if (st.sampler.running) {
        atomic_store(&st.sampler.stop, true);
        pthread_join(st.sampler.tid, NULL);
        st.sampler.running = false;
    }
}

/* ---- the test's processes and files ---- */

static void st_fini(void)
{

    st_sampler_stop();
    for (int i = 0; i < ST_MAX_CLIENTS; i++) {
        if (st.clients[i] > 0) {
            close(st.clients[i]);
            st.clients[i] = 0;
        }
    }
    for (int i = 0; i < ST_MAX_LOADS; i++) {
        if (st.load[i] > 0) {
            up_test_stop(st.load[i], ST_STOP_MS);
            st.load[i] = -1;
        }
    }
    if (st.master > 0) {
        up_test_stop(st.master, ST_STOP_MS);
        st.master = -1;
    }
    free(st.big);
    st.big = NULL;
    up_test_remove_dir(st.dir);
}

/* A path in the test's temp dir, created on first use. Static ring buffer,
 * like up_test_bin(). */
static const char *st_path(const char *name)
{
    static char ring[4][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 4];

    if (st.dir[0] == '\0') {
        strcpy(st.dir, "/tmp/up-test-XXXXXX");
        cr_assert_not_null(mkdtemp(st.dir), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, PATH_MAX, "%s/%s", st.dir, name);
    return buf;
}

static const char *st_log_text(void)
{
    return up_test_file_tail(st.log);
}

/* A socket the test holds (closed by the fini if need be). */
static int st_client(void)
{
    int fd = up_test_connect(st.port);
    cr_assert_geq(fd, 0, "connect to %d: %s", st.port, strerror(-fd));
    for (int i = 0; i < ST_MAX_CLIENTS; i++) {
        if (st.clients[i] <= 0) {
            st.clients[i] = fd;
            return fd;
        }
    }
    cr_assert_fail("more than %d clients", ST_MAX_CLIENTS);
    return -1;
}

static void st_client_close(int fd)
{
    for (int i = 0; i < ST_MAX_CLIENTS; i++) {
        if (st.clients[i] == fd) {
            st.clients[i] = 0;
        }
    }
    close(fd);
}

/* ---- the master ---- */

/* A fresh connection with a one-shot GET of target: 0 and the answer in r,
 * or -errno. */
static int st_fresh(const char *target, struct up_test_resp *r)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", target);
    return up_test_request(st.port, req, r);
}

/* The target used to see who serves: slow.so answers it at once, echo.so
 * and hello.so ignore the query. */
#define ST_PROBE "/?ms=0"

/* Spawn `up-run -p PORT --control DIR/ctl.sock ARGS... app` with
 * UP_BACKEND=backend and env_extra (NULL-terminated, may be NULL), and wait
 * until it answers a request with a 200. args is NULL-terminated. */
static void st_start(const char *backend, const char *app, const char *const *args,
                     const char *const *env_extra)
{
    char port[16];
    char backend_env[64];
    char *envp[8] = {backend_env, "UP_ENV=", NULL};
    char *argv[32];
    size_t argc = 0;
    size_t envc = 2;
    const char *bin = up_test_bin("up-run");
    struct up_test_resp r = {0};
    int ret = -1;

    for (size_t i = 0; env_extra != NULL && env_extra[i] != NULL && envc + 1 < 8; i++) {
        envp[envc++] = (char *)env_extra[i];
    }
    envp[envc] = NULL;
    st.port = up_test_free_port();
    cr_assert_gt(st.port, 0, "no free port: %s", strerror(-st.port));
    snprintf(port, sizeof(port), "%d", st.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(st.log, sizeof(st.log), "%s", st_path("up-run.log"));
    argv[argc++] = (char *)bin;
    argv[argc++] = "-p";
    argv[argc++] = port;
    argv[argc++] = "--control";
    argv[argc++] = (char *)st_path("ctl.sock");
    for (size_t i = 0; args != NULL && args[i] != NULL && argc + 2 < 32; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc++] = (char *)app;
    argv[argc] = NULL;
    st.master = up_test_spawn(argv, envp, st.log);
    cr_assert_gt(st.master, 0, "spawn %s: %s", bin, strerror(-st.master));

    long long deadline = st_now_ms() + ST_READY_MS;
    for (;;) {
        ret = st_fresh(ST_PROBE, &r);
        if (ret == 0 && r.status == 200) {
            break;
        }
        cr_assert(up_test_alive(st.master), "up-run (%s) exited before it answered\nlog:\n%s",
                  backend, st_log_text());
        cr_assert_lt(st_now_ms(), deadline,
                     "up-run (%s) gave no 200 on port %d within %d ms (last: %s, status %d)\n"
                     "log:\n%s",
                     backend, st.port, ST_READY_MS, strerror(-ret), r.status, st_log_text());
        st_sleep_ms(10);
    }
    up_test_resp_free(&r);
}

static void st_reload(void)
{
    cr_assert_eq(kill(st.master, SIGUSR2), 0, "kill(master, SIGUSR2): %s", strerror(errno));
}

/* Send SIGUSR2 every period_ms for total_ms, calling between(i) (may be
 * NULL) before the i-th signal. Returns how many were sent and sets
 * *last_boot_ms (may be NULL) to CLOCK_BOOTTIME just before the last one.
 * Asserts that the master stays alive. */
static int st_reload_storm(int period_ms, int total_ms, void (*between)(int i),
                           long long *last_boot_ms)
{
    long long start = st_now_ms();
    int i = 0;

    for (; (long long)i * period_ms < total_ms; i++) {
        st_sleep_until(start + (long long)i * period_ms);
        cr_assert(up_test_alive(st.master), "the master died during reload %d\nlog:\n%s", i,
                  st_log_text());
        if (between != NULL) {
            between(i);
        }
        if (last_boot_ms != NULL) {
            *last_boot_ms = st_boottime_ms();
        }
        st_reload();
    }
    return i;
}

/* The workers of the first generation: once the master has exactly
 * `workers` children, they are them. Returns how many were stored. */
static int st_first_workers(int workers, pid_t *pids)
{
    long long deadline = st_now_ms() + ST_READY_MS;
    int n;
    while ((n = st_children(st.master, pids, ST_MAX_PIDS)) != workers) {
        cr_assert_lt(st_now_ms(), deadline, "the master has %d children, not %d\nlog:\n%s", n,
                     workers, st_log_text());
        st_sleep_ms(10);
    }
    return n;
}

static bool st_pid_in(long pid, const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        if ((long)pids[i] == pid) {
            return true;
        }
    }
    return false;
}

static long st_resp_pid(const struct up_test_resp *r)
{
    const char *p = up_test_resp_header(r, "X-Up-Pid");
    cr_assert_not_null(p, "no X-Up-Pid:\n%s", r->head);
    return atol(p);
}

static unsigned st_resp_gen(const struct up_test_resp *r)
{
    const char *g = up_test_resp_header(r, "X-Up-Generation");
    cr_assert_not_null(g, "no X-Up-Generation:\n%s", r->head);
    return (unsigned)strtoul(g, NULL, 10);
}

/* Wait until a fresh request is served by a pid outside old[0..n): the new
 * generation took over. Returns that pid. */
static long st_wait_switch(const pid_t *old, int n, int timeout_ms)
{
    struct up_test_resp r = {0};
    long long deadline = st_now_ms() + timeout_ms;
    long pid;

    for (;;) {
        int ret = st_fresh(ST_PROBE, &r);
        cr_assert_eq(ret, 0, "fresh request while waiting for the switch: %s\nlog:\n%s",
                     strerror(-ret), st_log_text());
        cr_assert_eq(r.status, 200, "fresh request: status %d:\n%s", r.status, r.head);
        pid = st_resp_pid(&r);
        if (!st_pid_in(pid, old, n)) {
            break;
        }
        cr_assert_lt(st_now_ms(), deadline,
                     "new connections still go to the old pid %ld %d ms after the reload\n"
                     "log:\n%s",
                     pid, timeout_ms, st_log_text());
        st_sleep_ms(5);
    }
    up_test_resp_free(&r);
    return pid;
}

/* The master's fd count once it is stable: the same over 5 samples 20 ms
 * apart (a connection being handed off holds an fd for a moment). */
static int st_fds_stable(int timeout_ms)
{
    long long deadline = st_now_ms() + timeout_ms;
    int last = st_fds(st.master);
    int same = 0;

    while (same < 5 && st_now_ms() < deadline) {
        st_sleep_ms(20);
        int n = st_fds(st.master);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

/* After a run: wait up to settle_ms for the master's children to come back
 * to `workers` and its fds to fds_before. Asserts only that the master is
 * alive and answers; the counts are returned for the caller to print and
 * assert. */
static void st_settle(int workers, int fds_before, int settle_ms, int *kids, int *fds, char *desc,
                      size_t cap)
{
    struct up_test_resp r = {0};
    pid_t pids[ST_MAX_PIDS];
    long long deadline;
    int ret;

    cr_assert(up_test_alive(st.master), "the master died\nlog:\n%s", st_log_text());
    ret = st_fresh(ST_PROBE, &r);
    cr_assert_eq(ret, 0, "the master does not answer after the run: %s\nlog:\n%s", strerror(-ret),
                 st_log_text());
    cr_assert_eq(r.status, 200, "status %d after the run:\n%s", r.status, r.head);
    up_test_resp_free(&r);

    deadline = st_now_ms() + settle_ms;
    while ((*kids = st_children(st.master, pids, ST_MAX_PIDS)) != workers &&
           st_now_ms() < deadline) {
        st_sleep_ms(20);
    }
    st_pids_desc(pids, *kids, desc, cap);
    long long fd_deadline = st_now_ms() + 5000;
    while ((*fds = st_fds_stable(5000)) != fds_before && st_now_ms() < fd_deadline) {
        st_sleep_ms(20);
    }
}

/* `up-run status` for this master, in text: returns the highest generation
 * it lists and sets *handed_back (may be NULL) to the connections workers
 * handed back so far. */
static unsigned st_status(char *text, size_t cap, long *handed_back)
{
    char *argv[] = {(char *)up_test_bin("up-run"), "status", "--control",
                    (char *)st_path("ctl.sock"), NULL};
    const char *out = st_path("status.out");
    pid_t pid = up_test_spawn(argv, NULL, out);
    cr_assert_gt(pid, 0, "spawn up-run status: %s", strerror(-pid));
    int status = up_test_wait_exit(pid, 5000);
    cr_assert_eq(status, 0, "up-run status exited %d:\n%s", status, up_test_file_tail(out));
    snprintf(text, cap, "%s", up_test_file_tail(out));
    unsigned max = 0;
    for (const char *p = text; (p = strstr(p, "generation ")) != NULL; p++) {
        unsigned g = (unsigned)strtoul(p + 11, NULL, 10);
        max = g > max ? g : max;
    }
    const char *hb = strstr(text, "handed_back=");
    if (handed_back != NULL) {
        *handed_back = hb != NULL ? atol(hb + 12) : -1;
    }
    return max;
}

/* ---- up-load ---- */

/* Spawn up-load number i on the master's port with the NULL-terminated
 * args. */
static void st_load_start(int i, const char *const *args)
{
    char port[16];
    char name[32];
    char *argv[32];
    size_t argc = 0;
    const char *bin = up_test_bin("tools/up-load");

    snprintf(port, sizeof(port), "%d", st.port);
    snprintf(name, sizeof(name), "up-load-%d.out", i);
    snprintf(st.load_out[i], sizeof(st.load_out[i]), "%s", st_path(name));
    argv[argc++] = (char *)bin;
    argv[argc++] = "--port";
    argv[argc++] = port;
    for (size_t k = 0; args[k] != NULL && argc + 1 < 32; k++) {
        argv[argc++] = (char *)args[k];
    }
    argv[argc] = NULL;
    st.load[i] = up_test_spawn(argv, NULL, st.load_out[i]);
    cr_assert_gt(st.load[i], 0, "spawn %s: %s", bin, strerror(-st.load[i]));
}

/* Wait for up-load number i, parse its summary, print it, and expect zero
 * failures (cr_expect: the checks on the master still run). */
static void st_load_finish(int i, const char *what, int timeout_ms, struct st_load *out)
{
    char text[8192];
    int status = up_test_wait_exit(st.load[i], timeout_ms);
    cr_assert_neq(status, -ETIMEDOUT, "up-load still runs %d ms after its end", timeout_ms);
    st.load[i] = -1;
    snprintf(text, sizeof(text), "%s", up_test_file_tail(st.load_out[i]));

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
    fprintf(stderr, "[storm] %s: %s\n", what, out->line);

    cr_expect(out->connect_errors == 0 && out->resets == 0 && out->lost == 0 && out->bad == 0 &&
                  out->timeouts == 0,
              "%s: requests failed across reloads: %s\nup-load output:\n%s\nup-run log:\n%s", what,
              out->line, text, st_log_text());
    cr_expect_eq(status, 0, "%s: up-load exited %d:\n%s", what, status, text);
    cr_expect_eq(out->ok, out->requests, "%s: %s", what, out->line);
}

/* The body echo.so gives to up-load's keep-alive GET of target: the same
 * request bytes, sent once here, so that up-load can check every answer
 * byte for byte with --expect-body. */
static char *st_learn_get_body(const char *target)
{
    char req[512];
    struct up_test_resp r = {0};
    int fd = st_client();

    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: up-load\r\n\r\n", target,
             st.port);
    int ret = up_test_send_all(fd, req, strlen(req));
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
    ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "no answer to the GET: %s", strerror(-ret));
    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_not_null(strstr(r.body, "method: GET"), "not echo's answer:\n%s", r.body);
    st_client_close(fd);
    char *body = strdup(r.body);
    cr_assert_not_null(body);
    up_test_resp_free(&r);
    return body;
}

/* ==== suite long: 20 s of SIGUSR2 every 50 ms ==== */

#define ST_N 2
#define ST_DEFAULT_MAX_DRAINING 4
#define ST_RSS_LIMIT_KB (16 * 1024)

static void st_long_storm(const char *backend, const char *timeout)
{
    if (getenv("UP_TEST_LONG") == NULL) {
        cr_skip_test("a 20 s reload storm: run with UP_TEST_LONG=1 (make test-long)");
    }
    up_test_exclusive_load();
    const char *args[] = {"-n", "2", timeout != NULL ? "-t" : NULL, timeout, NULL};
    const char *what = timeout != NULL ? timeout : "default 10m";
    const int cap = (ST_DEFAULT_MAX_DRAINING + 1) * ST_N;
    struct st_load get = {0};
    struct st_load post = {0};
    char label[128];
    char desc[1024];
    int kids;
    int fds;

    st_start(backend, up_test_bin("examples/echo.so"), args, NULL);
    char *get_body = st_learn_get_body("/storm?get");
    int fds_before = st_fds_stable(5000);
    long rss_before = st_rss_kb(st.master);

    /* 64 keep-alive + 2 fresh loops: GETs whose listing is checked byte for
     * byte on 16 of them, POSTs of 2000 random bytes echoed back on the
     * others. */
    const char *const load_get[] = {"--keepalive",   "16",     "--fresh", "0",
                                    "--seconds",     "20",     "--path",  "/storm?get",
                                    "--expect-body", get_body, NULL};
    const char *const load_post[] = {"--keepalive", "48",           "--fresh", "2", "--seconds",
                                     "20",          "--post-bytes", "2000",    NULL};
    st_sampler_start(50);
    st_load_start(0, load_get);
    st_load_start(1, load_post);
    long long t0 = st_now_ms();
    int reloads = st_reload_storm(50, 20000, NULL, NULL);
    long long storm_ms = st_now_ms() - t0;
    snprintf(label, sizeof(label), "%s -t %s GET", backend, what);
    st_load_finish(0, label, 30000, &get);
    snprintf(label, sizeof(label), "%s -t %s POST", backend, what);
    st_load_finish(1, label, 30000, &post);
    free(get_body);

    /* The clients closed their sockets when up-load ended: even with the
     * 10m timeout, old workers now hold nothing and exit. */
    long long settle_start = st_now_ms();
    st_settle(ST_N, fds_before, 15000, &kids, &fds, desc, sizeof(desc));
    long long settle_ms = st_now_ms() - settle_start;
    st_sampler_stop();
    const struct st_sampler *s = &st.sampler;
    fprintf(stderr,
            "[storm] %s -t %s: %d reloads in %lld ms; max %d worker processes (cap %d) at "
            "%lld ms:%s; master VmRSS %ld KiB before, max %ld KiB over %ld samples; settled "
            "in %lld ms to %d children, %d fds (%d before)\n",
            backend, what, reloads, storm_ms, s->max_kids, cap, s->max_kids_at, s->max_kids_desc,
            rss_before, s->max_rss_kb, s->samples, settle_ms, kids, fds, fds_before);

    cr_assert_gt(get.requests + post.requests, 2000, "only %ld + %ld requests in 20 s",
                 get.requests, post.requests);
    cr_assert_leq(s->max_kids, cap,
                  "%d worker processes during the storm, over (max-draining + 1) x N = %d "
                  "(at %lld ms:%s)\nlog:\n%s",
                  s->max_kids, cap, s->max_kids_at, s->max_kids_desc, st_log_text());
    cr_assert_lt(s->max_rss_kb, ST_RSS_LIMIT_KB, "the master's RSS reached %ld KiB (%ld before)",
                 s->max_rss_kb, rss_before);
    cr_assert_eq(kids, ST_N,
                 "%d children of the master 15 s after the storm, expected %d:%s\nlog:\n%s", kids,
                 ST_N, desc, st_log_text());
    cr_assert_eq(fds, fds_before, "the master holds %d fds after the storm, %d before\nlog:\n%s",
                 fds, fds_before, st_log_text());
}

/* The timeouts cover waiting for the other storms (up_test_exclusive_load),
 * the 20 s storm, up-load's last requests and 15 s of settling. */
BACKEND_TEST(long, reload_storm_2s, .timeout = 300, .fini = st_fini)
{
    st_long_storm(backend, "2s");
}

BACKEND_TEST(long, reload_storm_default_timeout, .timeout = 300, .fini = st_fini)
{
    st_long_storm(backend, NULL);
}

/* ==== suite storm ==== */

/* A 50 MB body, sent 1 MB every 50 ms with Content-Length, with a reload in
 * the middle: the old worker reads it all and echoes it intact. */
#define ST_BIG_LEN (50u * 1000 * 1000)
#define ST_BIG_CHUNK (1000u * 1000)

static uint64_t st_fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    }
    return h;
}

BACKEND_TEST(storm, slow_upload_across_reload, .timeout = 150, .fini = st_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "10s", NULL};
    static const char *const env[] = {"UP_BODY_LIMIT=67108864", NULL};
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char head[256];
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    st.big = malloc(ST_BIG_LEN);
    cr_assert_not_null(st.big);
    for (size_t i = 0; i < ST_BIG_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st.big[i] = (char)(x >> 56);
    }
    uint64_t sent_sum = st_fnv1a(st.big, ST_BIG_LEN);

    st_start(backend, up_test_bin("examples/echo.so"), args, env);
    int nold = st_first_workers(ST_N, old);
    int fd = st_client();
    int hl = snprintf(head, sizeof(head),
                      "POST /body HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %u\r\n\r\n",
                      ST_BIG_LEN);
    int ret = up_test_send_all(fd, head, (size_t)hl);
    cr_assert_eq(ret, 0, "send the head: %s", strerror(-ret));

    long long t0 = st_now_ms();
    long long reload_at = -1;
    long long switch_at = -1;
    unsigned nchunks = ST_BIG_LEN / ST_BIG_CHUNK;
    for (unsigned i = 0; i < nchunks; i++) {
        st_sleep_until(t0 + 50LL * i);
        ret = up_test_send_all(fd, st.big + (size_t)i * ST_BIG_CHUNK, ST_BIG_CHUNK);
        cr_assert_eq(ret, 0, "send MB %u of the body: %s\nlog:\n%s", i, strerror(-ret),
                     st_log_text());
        if (i == nchunks / 2) {
            st_reload();
            reload_at = st_now_ms() - t0;
        }
        /* Until the new generation serves, look once per chunk. */
        if (reload_at >= 0 && switch_at < 0) {
            struct up_test_resp f = {0};
            ret = st_fresh(ST_PROBE, &f);
            cr_assert_eq(ret, 0, "fresh request during the upload: %s\nlog:\n%s", strerror(-ret),
                         st_log_text());
            if (!st_pid_in(st_resp_pid(&f), old, nold)) {
                switch_at = st_now_ms() - t0;
            }
            up_test_resp_free(&f);
        }
    }
    long long sent_at = st_now_ms() - t0;
    ret = up_test_read_response(fd, &r, 30000);
    long long answered_at = st_now_ms() - t0;
    cr_assert_eq(ret, 0, "no echo of the 50 MB body: %s\nlog:\n%s", strerror(-ret), st_log_text());
    uint64_t got_sum = st_fnv1a(r.body, r.body_len);
    long pid = st_resp_pid(&r);
    unsigned gen = st_resp_gen(&r);
    fprintf(stderr,
            "[storm] %s slow_upload: reload at %lld ms, switch seen at %lld ms, body sent at %lld "
            "ms, echo of %zu bytes at %lld ms from pid %ld generation %u; fnv1a sent %016llx "
            "got %016llx\n",
            backend, reload_at, switch_at, sent_at, r.body_len, answered_at, pid, gen,
            (unsigned long long)sent_sum, (unsigned long long)got_sum);

    cr_assert_eq(r.status, 200, "status %d:\n%s\nlog:\n%s", r.status, r.head, st_log_text());
    cr_assert_eq(r.body_len, ST_BIG_LEN, "echoed %zu bytes, sent %u", r.body_len, ST_BIG_LEN);
    cr_assert_eq(got_sum, sent_sum, "the echoed body differs from the one sent");
    cr_assert_eq(memcmp(r.body, st.big, ST_BIG_LEN), 0, "the echoed body differs");
    cr_assert(switch_at >= 0 && switch_at < sent_at,
              "the new generation did not take over while the body was being sent (switch at "
              "%lld ms, body sent at %lld ms): the test proves nothing\nlog:\n%s",
              switch_at, sent_at, st_log_text());
    cr_assert_eq(gen, 1, "the upload was answered by generation %u, not 1:\n%s", gen, r.head);
    cr_assert(st_pid_in(pid, old, nold), "the upload was answered by pid %ld, not an old worker",
              pid);
    up_test_resp_free(&r);
}

/* /stream?chunks=30&ms=100: 3 s of chunks, a reload after 0.5 s. */
BACKEND_TEST(storm, streaming_response_across_reload, .timeout = 150, .fini = st_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "10s", NULL};
    static const char req[] = "GET /stream?chunks=30&ms=100 HTTP/1.1\r\nHost: t\r\n\r\n";
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char want[512];
    size_t wlen = 0;

    for (int i = 0; i < 30; i++) {
        wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen, "chunk %d\n", i);
    }
    st_start(backend, up_test_bin("examples/slow.so"), args, NULL);
    int nold = st_first_workers(ST_N, old);
    int fd = st_client();
    long long t0 = st_now_ms();
    int ret = up_test_send_all(fd, req, sizeof(req) - 1);
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
    st_sleep_until(t0 + 500);
    st_reload();
    long new_pid = st_wait_switch(old, nold, ST_READY_MS);
    long long switch_at = st_now_ms() - t0;
    ret = up_test_read_response(fd, &r, 15000);
    long long done_at = st_now_ms() - t0;
    cr_assert_eq(ret, 0, "the stream did not arrive whole: %s (%zu bytes of body)\nlog:\n%s",
                 strerror(-ret), r.body_len, st_log_text());
    long pid = st_resp_pid(&r);
    fprintf(stderr,
            "[storm] %s streaming: switch to pid %ld at %lld ms, stream of %zu bytes (%s) from "
            "pid %ld done at %lld ms\n",
            backend, new_pid, switch_at, r.body_len, r.chunked ? "chunked" : "not chunked", pid,
            done_at);

    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_eq(r.body_len, wlen, "%zu bytes of stream, expected %zu:\n%s", r.body_len, wlen,
                 r.body);
    cr_assert_str_eq(r.body, want, "the stream differs");
    cr_assert(st_pid_in(pid, old, nold), "the stream came from pid %ld, not an old worker", pid);
    cr_assert_lt(switch_at, done_at - 500,
                 "the switch (%lld ms) did not happen well before the stream ended (%lld ms): "
                 "the test proves nothing",
                 switch_at, done_at);
    up_test_resp_free(&r);
}

/* -t 1s and a request of 2.5 s in flight at the deadline: finished, with
 * Connection: close, then closed cleanly. */
BACKEND_TEST(storm, long_request_past_deadline, .timeout = 150, .fini = st_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "1s", NULL};
    static const char quick[] = "GET /?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char slow[] = "GET /?ms=2500 HTTP/1.1\r\nHost: t\r\n\r\n";
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char rest[256];

    st_start(backend, up_test_bin("examples/slow.so"), args, NULL);
    int nold = st_first_workers(ST_N, old);
    int fd = st_client();
    /* A first answer puts the connection on its worker. */
    int ret = up_test_send_all(fd, quick, sizeof(quick) - 1);
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
    ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "first request: %s", strerror(-ret));
    cr_assert_eq(r.status, 200, "first request: status %d:\n%s", r.status, r.head);
    long pid_a = st_resp_pid(&r);

    long long t0 = st_now_ms();
    ret = up_test_send_all(fd, slow, sizeof(slow) - 1);
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
    st_sleep_until(t0 + 100);
    st_reload();
    st_wait_switch(old, nold, ST_READY_MS);
    long long switch_at = st_now_ms() - t0;
    ret = up_test_read_response(fd, &r, 10000);
    long long answered_at = st_now_ms() - t0;
    const char *conn = ret == 0 ? up_test_resp_header(&r, "Connection") : NULL;
    int n = ret == 0 ? up_test_read_until_close(fd, rest, sizeof(rest), 3000) : -1;
    int close_errno = errno;
    long long closed_at = st_now_ms() - t0;
    fprintf(stderr,
            "[storm] %s past_deadline: switch seen at %lld ms (deadline before %lld ms), answer "
            "(%s) at %lld ms, Connection: %s; then %d bytes and %s at %lld ms\n",
            backend, switch_at, switch_at + 1000, ret == 0 ? "complete" : strerror(-ret),
            answered_at, conn != NULL ? conn : "(none)", n,
            n < 0              ? "-"
            : close_errno == 0 ? "FIN"
                               : strerror(close_errno),
            closed_at);

    cr_assert_eq(ret, 0,
                 "the request in flight at the drain deadline got no whole answer: %s\n"
                 "log:\n%s",
                 strerror(-ret), st_log_text());
    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_str_eq(r.body, "slept 2500 ms\n");
    cr_assert_eq(st_resp_pid(&r), pid_a, "answered by pid %ld, not the old worker %ld",
                 st_resp_pid(&r), pid_a);
    cr_assert_lt(switch_at + 1000, answered_at,
                 "the deadline (before %lld ms) did not pass before the answer (%lld ms): the "
                 "test proves nothing",
                 switch_at + 1000, answered_at);
    cr_assert(conn != NULL && strcasecmp(conn, "close") == 0,
              "the answer finished past the drain deadline did not say Connection: close:\n%s",
              r.head);
    cr_assert_eq(n, 0, "%d bytes after the last answer: %s", n, rest);
    cr_assert_eq(close_errno, 0, "the connection ended with %s, not a clean close\nlog:\n%s",
                 strerror(close_errno), st_log_text());
    up_test_resp_free(&r);
}

/* --migrate=idle: 32 keep-alive loops sending back to back while a reload
 * every 100 ms hands their idle sockets back, at the moment they send. */
BACKEND_TEST(storm, keepalive_close_race, .timeout = 150, .fini = st_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"--migrate=idle", "-n", "2", "-t", "10s", NULL};
    struct st_load res = {0};
    char label[64];
    char desc[1024];
    char status[4096];
    long handed_back;
    int kids;
    int fds;

    st_start(backend, up_test_bin("examples/echo.so"), args, NULL);
    char *body = st_learn_get_body("/race");
    const char *const load[] = {"--keepalive", "32",    "--fresh",       "0",  "--seconds", "5",
                                "--path",      "/race", "--expect-body", body, NULL};
    int fds_before = st_fds_stable(5000);
    st_load_start(0, load);
    int reloads = st_reload_storm(100, 5000, NULL, NULL);
    snprintf(label, sizeof(label), "%s close_race", backend);
    st_load_finish(0, label, 15000, &res);
    free(body);
    st_status(status, sizeof(status), &handed_back);
    st_settle(ST_N, fds_before, 10000, &kids, &fds, desc, sizeof(desc));
    fprintf(stderr,
            "[storm] %s close_race: %d reloads, %ld connections handed back; %d children, %d "
            "fds (%d before)\n",
            backend, reloads, handed_back, kids, fds, fds_before);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    cr_assert_gt(handed_back, 0, "no connection was handed back: the race was not run\n%s", status);
    cr_assert_eq(kids, ST_N, "%d children of the master after the run, expected %d:%s\nlog:\n%s",
                 kids, ST_N, desc, st_log_text());
    cr_assert_eq(fds, fds_before, "the master holds %d fds after the run, %d before\nlog:\n%s", fds,
                 fds_before, st_log_text());
}

/* --max-draining 2 -n 2 -t 10m and a reload every 50 ms for 3 s, while 16
 * idle keep-alive connections pin old generations: 4 opened before the
 * storm, then one every 5th reload, so that most generations hold one and
 * cannot exit by themselves. Never more than (2 + 1) x 2 = 6 workers, the
 * latest reload wins, every held connection still works. */
#define ST_HELD 16
#define ST_HELD_BEFORE 4

static int st_held[ST_HELD];
static unsigned st_held_gen[ST_HELD]; /* the generation of its first answer */
static int st_nheld;

static void st_held_get(int fd, struct up_test_resp *r, const char *what)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    int ret = up_test_send_all(fd, req, sizeof(req) - 1);

    cr_assert_eq(ret, 0, "%s: send: %s\nlog:\n%s", what, strerror(-ret), st_log_text());
    ret = up_test_read_response(fd, r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "%s: no answer: %s\nlog:\n%s", what, strerror(-ret), st_log_text());
    cr_assert_eq(r->status, 200, "%s: status %d:\n%s", what, r->status, r->head);
    cr_assert_not_null(strstr(r->body, "method: GET"), "%s: not echo's answer:\n%s", what, r->body);
}

/* Open one more held connection and make one request on it. */
static void st_hold_one(void)
{
    struct up_test_resp r = {0};
    char what[64];
    int i = st_nheld;

    cr_assert_lt(i, ST_HELD);
    st_held[i] = st_client();
    snprintf(what, sizeof(what), "held connection %d, first request", i);
    st_held_get(st_held[i], &r, what);
    st_held_gen[i] = st_resp_gen(&r);
    st_nheld++;
    up_test_resp_free(&r);
}

static void st_hold_every_5th(int i)
{
    if (i % 5 == 4 && st_nheld < ST_HELD) {
        st_hold_one();
    }
}

BACKEND_TEST(storm, process_cap, .timeout = 150, .fini = st_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"--max-draining", "2", "-n", "2", "-t", "10m", NULL};
    const int cap = (2 + 1) * ST_N;
    struct up_test_resp r = {0};
    char what[64];
    char status[4096];
    char first[256];
    char desc[256];

    st_start(backend, up_test_bin("examples/echo.so"), args, NULL);
    st_nheld = 0;
    for (int i = 0; i < ST_HELD_BEFORE; i++) {
        st_hold_one();
    }
    st_sampler_start(20);
    long long last_boot = 0;
    int reloads = st_reload_storm(50, 3000, st_hold_every_5th, &last_boot);
    long long last_mono = st_now_ms();
    cr_assert_eq(st_nheld, ST_HELD, "only %d held connections", st_nheld);

    /* The answer must come from a worker started after the last signal:
     * that reload, deferred or not, was carried out. */
    long long deadline = last_mono + 5000;
    long pid;
    unsigned gen;
    long long started;
    for (;;) {
        int ret = st_fresh(ST_PROBE, &r);
        cr_assert_eq(ret, 0, "fresh request after the storm: %s\nlog:\n%s", strerror(-ret),
                     st_log_text());
        cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
        pid = st_resp_pid(&r);
        gen = st_resp_gen(&r);
        started = st_start_ms((pid_t)pid);
        /* starttime has clock-tick resolution: allow one tick. */
        if (started >= last_boot - 1000 / sysconf(_SC_CLK_TCK)) {
            break;
        }
        cr_assert_lt(st_now_ms(), deadline,
                     "5 s after the last of %d reloads, new connections still go to generation %u "
                     "(pid %ld, started %lld ms before the last signal)\nlog:\n%s",
                     reloads, gen, pid, last_boot - started, st_log_text());
        st_sleep_ms(20);
    }
    long long served_after = st_now_ms() - last_mono;
    unsigned max_gen = st_status(status, sizeof(status), NULL);

    /* Every held connection still answers. */
    unsigned gens_seen[ST_HELD];
    for (int i = 0; i < ST_HELD; i++) {
        snprintf(what, sizeof(what), "held connection %d after the storm", i);
        st_held_get(st_held[i], &r, what);
        gens_seen[i] = st_resp_gen(&r);
    }
    st_sampler_stop();
    const struct st_sampler *s = &st.sampler;
    size_t u1 = 0;
    size_t u2 = 0;
    first[0] = '\0';
    desc[0] = '\0';
    for (int i = 0; i < ST_HELD; i++) {
        int w = snprintf(first + u1, sizeof(first) - u1, " %u", st_held_gen[i]);
        u1 += w > 0 && (size_t)w < sizeof(first) - u1 ? (size_t)w : 0;
        w = snprintf(desc + u2, sizeof(desc) - u2, " %u", gens_seen[i]);
        u2 += w > 0 && (size_t)w < sizeof(desc) - u2 ? (size_t)w : 0;
    }
    int deferred = up_test_file_contains(st.log, "deferred");
    int shed = up_test_file_contains(st.log, "hands back its idle") == 1 ||
               up_test_file_contains(st.log, "over --max-draining") == 1;
    fprintf(stderr,
            "[storm] %s process_cap: %d reloads; max %d worker processes (cap %d) at %lld ms:%s "
            "over %ld samples; generation %u (pid %ld) serves %lld ms after the last signal, "
            "status lists up to %u; held connections on generations%s, then%s; log: deferred "
            "%s, shed %s\n",
            backend, reloads, s->max_kids, cap, s->max_kids_at, s->max_kids_desc, s->samples, gen,
            pid, served_after, max_gen, first, desc, deferred == 1 ? "yes" : "no",
            shed ? "yes" : "no");

    cr_assert_leq(s->max_kids, cap,
                  "%d worker processes, over (max-draining + 1) x N = %d (at %lld ms:%s)\n"
                  "log:\n%s",
                  s->max_kids, cap, s->max_kids_at, s->max_kids_desc, st_log_text());
    cr_assert_eq(gen, max_gen, "new connections go to generation %u, the highest is %u:\n%s", gen,
                 max_gen, status);
    up_test_resp_free(&r);
    for (int i = 0; i < ST_HELD; i++) {
        st_client_close(st_held[i]);
    }
}
