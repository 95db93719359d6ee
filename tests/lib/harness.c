/*
 * harness: see harness.h.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HT_MAX_SEEN 128
#define HT_MAX_CLIENTS 64
#define HT_MAX_OWNED 16

struct ma ma = {.pid = -1};
struct wk wk = {.pid = -1};

/* What the harness holds for ht_fini(), besides ma and wk. */
static struct {
    char dir[64];            /* the temp dir, or "" */
    pid_t seen[HT_MAX_SEEN]; /* every worker pid `up-run status` listed */
    int nseen;
    int clients[HT_MAX_CLIENTS]; /* owned: ht_client()'s sockets; 0 when free */
    pid_t owned[HT_MAX_OWNED];   /* ht_stop_at_fini()'s pids */
    int nowned;
    pid_t load[LD_MAX]; /* up-load, or 0 */
    char load_out[LD_MAX][PATH_MAX];
    int log_rd; /* owned when log_rd_open: the read end of ma.log_stuck's FIFO */
    bool log_rd_open;
    /* The sampler thread and its figures. */
    pthread_t sampler_tid;
    bool sampler_running;
    atomic_bool sampler_stop;
    int sampler_period_ms;
    struct ma_sampler sampled;
} ht;

/* The log of the server a test drives, for the messages of the client
 * helpers: the master's, or the lone worker's when no master runs. */
static const char *ht_server_log(void)
{
    return ma.pid > 0 || wk.log[0] == '\0' ? up_test_file_tail(ma.log) : wk_log_text();
}

/* ---- the temp dir, files, teardown ---- */

const char *ht_path(const char *name)
{
    static char ring[8][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 8];

    if (ht.dir[0] == '\0') {
        strcpy(ht.dir, "/tmp/up-test-XXXXXX");
        cr_assert_not_null(mkdtemp(ht.dir), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, PATH_MAX, "%s/%s", ht.dir, name);
    return buf;
}

void ht_fini(void)
{
    ma_sampler_stop();
    for (int i = 0; i < HT_MAX_CLIENTS; i++) {
        if (ht.clients[i] > 0) {
            close(ht.clients[i]);
        }
    }
    for (int i = 0; i < LD_MAX; i++) {
        if (ht.load[i] > 0) {
            up_test_stop(ht.load[i], HT_STOP_MS);
        }
    }
    if (ma.pid > 0) {
        up_test_stop(ma.pid, HT_STOP_MS);
    }
    if (wk.pid > 0) {
        up_test_stop(wk.pid, HT_STOP_MS);
    }
    /* After the master: it must not need a reader to stop. */
    if (ht.log_rd_open) {
        close(ht.log_rd);
    }
    for (int i = 0; i < ht.nowned; i++) {
        if (up_test_alive(ht.owned[i])) {
            up_test_stop(ht.owned[i], 1000);
        }
    }
    /* Workers die with their master (and up_test_stop() killed its process
     * group); one that did not is killed here, if the pid still names a
     * worker and not a process that reused it. */
    for (int i = 0; i < ht.nseen; i++) {
        char comm[64];
        if (!proc_gone(ht.seen[i]) && proc_read(ht.seen[i], "comm", comm, sizeof(comm)) > 0 &&
            strstr(comm, "worker") != NULL) {
            kill(ht.seen[i], SIGKILL);
        }
        /* An --exec worker leads a process group of its own (up-workers
         * stay in the master's): what is left of one goes whole. */
        if (!proc_gone(ht.seen[i]) && getpgid(ht.seen[i]) == ht.seen[i]) {
            kill(-ht.seen[i], SIGKILL);
        }
    }
    up_test_remove_dir(ht.dir);
    memset(&ht, 0, sizeof(ht));
    ma = (struct ma){.pid = -1};
    wk = (struct wk){.pid = -1};
}

void ht_stop_at_fini(pid_t pid)
{
    cr_assert_lt(ht.nowned, HT_MAX_OWNED, "more than %d processes to stop", HT_MAX_OWNED);
    ht.owned[ht.nowned++] = pid;
}

void ht_install(const char *src, const char *dst)
{
    char buf[65536];
    const char *tmp = ht_path("install.tmp");
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    ssize_t n;

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

const char *ht_app(const char *example)
{
    static char path[PATH_MAX];
    const char *dir = ht_path("app");

    cr_assert(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/app.so", dir);
    ht_install(up_test_bin(example), path);
    return path;
}

char *ht_file_text(const char *path, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t len = 0;
    ssize_t n;

    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    do {
        char *b = realloc(buf, len + 65536 + 1);
        cr_assert_not_null(b);
        buf = b;
        n = read(fd, buf + len, 65536);
        len += n > 0 ? (size_t)n : 0;
    } while (n > 0);
    close(fd);
    buf[len] = '\0';
    if (ret_len != NULL) {
        *ret_len = len;
    }
    return buf;
}

void ht_overwrite(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len, "write %s: %s", path, strerror(errno));
    close(fd);
}

int ht_file_lines(const char *path, ...)
{
    const char *needles[8];
    int nneedles = 0;
    va_list ap;

    va_start(ap, path);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL && nneedles < 8;) {
        needles[nneedles++] = s;
    }
    va_end(ap);
    char *text = ht_file_text(path, NULL);
    char *save = NULL;
    int n = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        bool all = true;
        for (int i = 0; i < nneedles && all; i++) {
            all = strstr(line, needles[i]) != NULL;
        }
        n += all;
    }
    free(text);
    return n;
}

int ht_file_numbers(const char *path, const char *key, long *vals, int cap)
{
    char *text = ht_file_text(path, NULL);
    int n = 0;

    for (const char *p = strstr(text, key); p != NULL; p = strstr(p + 1, key)) {
        if (n < cap) {
            vals[n] = strtol(p + strlen(key), NULL, 10);
        }
        n++;
    }
    free(text);
    return n;
}

long ht_file_last_number(const char *path, const char *key, long dflt)
{
    char *text = ht_file_text(path, NULL);
    long v = dflt;

    for (const char *p = strstr(text, key); p != NULL; p = strstr(p + 1, key)) {
        v = strtol(p + strlen(key), NULL, 10);
    }
    free(text);
    return v;
}

/* ---- limits and tools ---- */

void ht_raise_nofile(rlim_t need)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0, "setrlimit: %s", strerror(errno));
    if (rl.rlim_cur < need) {
        cr_skip_test("RLIMIT_NOFILE hard limit %llu is below the %llu fds this test needs",
                     (unsigned long long)rl.rlim_cur, (unsigned long long)need);
    }
}

void ht_assert_burst_gone(pid_t pid, const char *who, const char *backend, int n, long base,
                          long min_peak, long max_after, const char *kept)
{
    long peak = up_test_status_kib(pid, "VmHWM:");
    /* The trim runs on a once-a-second timer a second after the burst:
     * 2.5 s on a quiet machine, and a loaded one (a whole suite beside it)
     * may run it later, so look again until 8 s. */
    long after = 0;
    long long end = up_test_now_ms() + 8000;
    up_test_nap(2500);
    while ((after = up_test_status_kib(pid, "VmRSS:")) - base > max_after && !up_test_sanitized() &&
           up_test_now_ms() < end) {
        up_test_nap(250);
    }
    fprintf(stderr, "[%s] %s: VmRSS %ld kB, %ld kB at the peak of a burst of %d, %ld kB after\n",
            who, backend, base, peak, n, after);
    if (!up_test_sanitized()) {
        cr_assert_geq(peak - base, min_peak, "the burst took %ld kB: did it come at once?",
                      peak - base);
        cr_assert_leq(after - base, max_after, "%ld kB of the burst still held (%s)", after - base,
                      kept);
    }
}

const char *const *ht_python_handoff(const char **ret_env)
{
    static char pythonpath[PATH_MAX], script[PATH_MAX];
    static const char *argv[] = {
        "--exec", "--protocol=handoff", "--", "/usr/bin/python3", script, "app:app", NULL};
    const char *src = getenv("UP_SRC_DIR") != NULL ? getenv("UP_SRC_DIR") : ".";
    if (access("/usr/bin/python3", X_OK) != 0) {
        cr_skip_test("python3 is not installed");
    }
    snprintf(pythonpath, sizeof(pythonpath), "PYTHONPATH=%s/examples/python", src);
    snprintf(script, sizeof(script), "%s/examples/python/up_wsgi.py", src);
    *ret_env = pythonpath;
    return argv;
}

const char *ht_program(const char *name, const char *package)
{
    static char ring[4][64];
    static unsigned next;
    static const char *const dirs[] = {"/usr/bin", "/bin", "/usr/sbin", "/sbin"};
    char *path = ring[next++ % 4];

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(ring[0]), "%s/%s", dirs[i], name);
        if (access(path, X_OK) == 0) {
            return path;
        }
    }
    cr_skip_test("%s is not installed (apt-get install %s)", name, package);
    return NULL;
}

const char *ht_util(const char *name)
{
    return ht_program(name, "util-linux");
}

/* ---- the master under test ---- */

/* Whether the "NAME=" of a is in the NULL-terminated list env. */
static bool ht_env_has(const char *const *env, const char *a)
{
    size_t len = strcspn(a, "=");
    for (int i = 0; env[i] != NULL; i++) {
        if (strncmp(env[i], a, len) == 0 && env[i][len] == '=') {
            return true;
        }
    }
    return false;
}

/* Make ma.log a FIFO, and hold its read end (non-blocking, read only by
 * ma_log_read()): with a reader open, the spawn's open for writing does
 * not wait. */
static void ma_log_fifo(void)
{
    cr_assert_eq(mkfifo(ma.log, 0600), 0, "mkfifo %s: %s", ma.log, strerror(errno));
    ht.log_rd = open(ma.log, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    cr_assert_geq(ht.log_rd, 0, "open %s: %s", ma.log, strerror(errno));
    ht.log_rd_open = true;
}

int ma_log_read(const char *needle, int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    int out = open(ma.log, O_WRONLY | O_APPEND | O_CLOEXEC);
    char buf[65536];
    int ret = -ETIMEDOUT;

    cr_assert(ht.log_rd_open, "ma_log_read() without ma.log_stuck");
    cr_assert_geq(out, 0, "open %s: %s", ma.log, strerror(errno));
    while (up_test_now_ms() < deadline) {
        struct pollfd p = {.fd = ht.log_rd, .events = POLLIN};
        ssize_t n;
        poll(&p, 1, 50);
        while ((n = read(ht.log_rd, buf, sizeof(buf))) > 0) {
            cr_assert_eq(write(out, buf, (size_t)n), n, "write %s: %s", ma.log, strerror(errno));
        }
        if (up_test_file_contains(ma.log, needle) == 1) {
            ret = 0;
            break;
        }
    }
    close(out);
    return ret;
}

void ma_spawn(const char *backend, const char *app, const char *const *extra)
{
    char port[16];
    char backend_env[64];
    char tmpdir_env[PATH_MAX];
    const char *base[] = {backend_env, "UP_ENV=", tmpdir_env, "XDG_RUNTIME_DIR=", NULL};
    char *envp[8 + 4 + 1];
    char *argv[64];
    int e = 0;
    int n = 0;

    if (!ma.same_port) {
        ma.port = up_test_free_port();
    }
    cr_assert_gt(ma.port, 0, "no free port: %s", strerror(-ma.port));
    snprintf(port, sizeof(port), "%d", ma.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(tmpdir_env, sizeof(tmpdir_env), "TMPDIR=%s", ht_path(""));
    snprintf(ma.log, sizeof(ma.log), "%s", ht_path("master.log"));
    snprintf(ma.ctl, sizeof(ma.ctl), "%s", ma.default_control ? "" : ht_path("ctl.sock"));
    if (ma.log_stuck) {
        ma_log_fifo();
    }
    for (int i = 0; i < 8 && ma.env[i] != NULL; i++) {
        envp[e++] = (char *)ma.env[i];
    }
    for (int i = 0; base[i] != NULL; i++) {
        if (!ht_env_has(ma.env, base[i])) {
            envp[e++] = (char *)base[i];
        }
    }
    envp[e] = NULL;
    for (int i = 0; i < 12 && ma.wrap[i] != NULL; i++) {
        argv[n++] = (char *)ma.wrap[i];
    }
    argv[n++] = (char *)(ma.public_bins ? up_test_public_bin("up-run") : up_test_bin("up-run"));
    argv[n++] = "-p";
    argv[n++] = port;
    /* The tests run as root in CI: the app in them is ours. */
    argv[n++] = "--allow-root";
    if (!ma.no_defaults) {
        argv[n++] = "-n";
        argv[n++] = "2";
        argv[n++] = "-t";
        argv[n++] = "1s";
    }
    if (!ma.default_control) {
        argv[n++] = "--control";
        argv[n++] = ma.ctl;
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        cr_assert_lt(n, 62, "too many arguments for up-run");
        argv[n++] = (char *)extra[i];
    }
    if (app != NULL) {
        argv[n++] = (char *)app;
    }
    argv[n] = NULL;
    ma.pid = up_test_spawn(argv, envp, ma.log);
    cr_assert_gt(ma.pid, 0, "spawn up-run: %s", strerror(-ma.pid));
    if (ma.log_stuck) {
        /* What the FIFO gave so far, for ma_log_text() and the waits. */
        snprintf(ma.log, sizeof(ma.log), "%s", ht_path("master.read"));
        int fd = open(ma.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0, "open %s: %s", ma.log, strerror(errno));
        close(fd);
    }
}

/* HT_PROBE on a new connection, answered within timeout_ms: 0 or -errno. */
static int ma_probe(struct up_test_resp *r, int timeout_ms)
{
    static const char req[] = "GET " HT_PROBE " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    int fd = up_test_connect(ma.port);
    int ret = fd >= 0 ? up_test_send_all(fd, req, sizeof(req) - 1) : fd;

    if (ret == 0) {
        ret = up_test_read_response(fd, r, timeout_ms);
    }
    if (fd >= 0) {
        close(fd);
    }
    return ret;
}

void ma_wait_serving(int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    int ret;
    int status;

    do {
        struct up_test_resp r = {0};
        cr_assert(up_test_alive(ma.pid), "up-run exited before serving; log:\n%s", ma_log_text());
        ret = ma_probe(&r, 1000);
        status = r.status;
        up_test_resp_free(&r);
        if (ret == 0 && status == 200) {
            return;
        }
        up_test_nap(10);
    } while (up_test_now_ms() < deadline);
    cr_assert_fail("up-run not serving on %d within %d ms (last: %s, status %d); log:\n%s", ma.port,
                   timeout_ms, ret < 0 ? strerror(-ret) : "answered", status, ma_log_text());
}

void ma_start(const char *backend, const char *app, const char *const *extra)
{
    ma_spawn(backend, app, extra);
    ma_wait_serving(HT_READY_MS);
}

const char *ma_log_text(void)
{
    return up_test_file_tail(ma.log);
}

void ma_wait_log(const char *needle, int timeout_ms)
{
    int ret = up_test_wait_log(ma.log, needle, timeout_ms);
    cr_assert_eq(ret, 0, "no '%s' in the log within %d ms; log:\n%s", needle, timeout_ms,
                 ma_log_text());
}

long ma_log_number(const char *key, int timeout_ms)
{
    long v = -1;
    ma_wait_log(key, timeout_ms);
    ht_file_numbers(ma.log, key, &v, 1);
    return v;
}

void ma_signal(int sig)
{
    cr_assert_eq(kill(ma.pid, sig), 0, "kill(%d, %d): %s", (int)ma.pid, sig, strerror(errno));
}

int ma_reload_storm(int period_ms, int total_ms, void (*between)(int i),
                    long long *ret_last_boot_ms)
{
    long long start = up_test_now_ms();
    int i = 0;

    for (; (long long)i * period_ms < total_ms; i++) {
        up_test_sleep_until(start + (long long)i * period_ms);
        cr_assert(up_test_alive(ma.pid), "the master died during reload %d\nlog:\n%s", i,
                  ma_log_text());
        if (between != NULL) {
            between(i);
        }
        if (ret_last_boot_ms != NULL) {
            *ret_last_boot_ms = proc_boottime_ms();
        }
        ma_signal(SIGUSR2);
    }
    return i;
}

int ma_fresh(const char *target, struct up_test_resp *r)
{
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", target);
    return up_test_request(ma.port, req, r);
}

long long ma_requests(int n, const char *raw)
{
    long long slowest = 0;
    for (int i = 0; i < n; i++) {
        struct up_test_resp r = {0};
        long long t0 = up_test_now_ms();
        int ret = up_test_request(ma.port, raw, &r);
        long long took = up_test_now_ms() - t0;
        cr_assert(ret == 0 && r.status == 200, "request %d of %d: %s, status %d; log:\n%s", i + 1,
                  n, ret < 0 ? strerror(-ret) : "answered", r.status, ma_log_text());
        slowest = took > slowest ? took : slowest;
        up_test_resp_free(&r);
    }
    return slowest;
}

void ma_get(struct up_test_resp *r)
{
    int ret = ma_fresh("/", r);
    cr_assert_eq(ret, 0, "GET /: %s; log:\n%s", strerror(-ret), ma_log_text());
}

pid_t ma_get_pid(unsigned *ret_gen)
{
    struct up_test_resp r = {0};
    ma_get(&r);
    cr_assert_eq(r.status, 200, "status %d:\n%s%s", r.status, r.head, r.body);
    pid_t pid = ht_resp_pid(&r);
    if (ret_gen != NULL) {
        *ret_gen = ht_resp_gen(&r);
    }
    up_test_resp_free(&r);
    return pid;
}

void ma_wait_generation(unsigned gen, int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    struct up_test_resp r = {0};
    const char *got = NULL;

    for (;;) {
        ma_get(&r);
        cr_assert_eq(r.status, 200, "status %d:\n%s%s\nlog:\n%s", r.status, r.head, r.body,
                     ma_log_text());
        got = up_test_resp_header(&r, "X-Up-Generation");
        if (got != NULL && strtoul(got, NULL, 10) == gen) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "new connections still go to generation %s, not %u, %d ms after the "
                     "reload; log:\n%s",
                     got != NULL ? got : "(none)", gen, timeout_ms, ma_log_text());
        up_test_nap(5);
    }
    up_test_resp_free(&r);
}

pid_t ma_wait_switch(const pid_t *old, int n, int timeout_ms)
{
    struct up_test_resp r = {0};
    long long deadline = up_test_now_ms() + timeout_ms;
    pid_t pid;

    for (;;) {
        int ret = ma_fresh(HT_PROBE, &r);
        cr_assert_eq(ret, 0, "fresh request while waiting for the switch: %s\nlog:\n%s",
                     strerror(-ret), ma_log_text());
        cr_assert_eq(r.status, 200, "fresh request: status %d:\n%s", r.status, r.head);
        pid = ht_resp_pid(&r);
        if (!ht_pid_in(pid, old, n)) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "new connections still go to the old pid %d %d ms after the reload\n"
                     "log:\n%s",
                     (int)pid, timeout_ms, ma_log_text());
        up_test_nap(5);
    }
    up_test_resp_free(&r);
    return pid;
}

int ma_wait_children(int n, pid_t *pids, int cap)
{
    long long deadline = up_test_now_ms() + HT_READY_MS;
    int got;
    while ((got = proc_children(ma.pid, true, pids, cap)) != n) {
        cr_assert_lt(up_test_now_ms(), deadline, "the master has %d children, not %d\nlog:\n%s",
                     got, n, ma_log_text());
        up_test_nap(10);
    }
    return got;
}

void ma_settle(int workers, int fds_before, int timeout_ms, struct ma_settled *ret)
{
    struct up_test_resp r = {0};
    pid_t pids[256];

    cr_assert(up_test_alive(ma.pid), "the master died\nlog:\n%s", ma_log_text());
    int got = ma_fresh(HT_PROBE, &r);
    cr_assert_eq(got, 0, "the master does not answer after the run: %s\nlog:\n%s", strerror(-got),
                 ma_log_text());
    cr_assert_eq(r.status, 200, "status %d after the run:\n%s", r.status, r.head);
    up_test_resp_free(&r);

    long long deadline = up_test_now_ms() + timeout_ms;
    while ((ret->kids = proc_children(ma.pid, true, pids, 256)) != workers &&
           up_test_now_ms() < deadline) {
        up_test_nap(20);
    }
    proc_desc(pids, ret->kids < 256 ? ret->kids : 256, ret->desc, sizeof(ret->desc));
    ret->fds = proc_fds_settled(ma.pid, fds_before, 10000);
}

void ma_assert_settled(int workers, int fds_before, int timeout_ms)
{
    struct ma_settled s;
    ma_settle(workers, fds_before, timeout_ms, &s);
    cr_assert_eq(s.kids, workers,
                 "%d children of the master %d ms after the run, expected %d:%s\nlog:\n%s", s.kids,
                 timeout_ms, workers, s.desc, ma_log_text());
    cr_assert_eq(s.fds, fds_before, "the master holds %d fds after the run, %d before\nlog:\n%s",
                 s.fds, fds_before, ma_log_text());
}

static void *ma_sampler_main(void *arg)
{
    struct ma_sampler *s = &ht.sampled;
    pid_t pids[256];
    pid_t master = *(pid_t *)arg;
    long long start = up_test_now_ms();

    for (long i = 0; !atomic_load(&ht.sampler_stop); i++) {
        up_test_sleep_until(start + i * ht.sampler_period_ms);
        int n = proc_children(master, true, pids, 256);
        long rss = up_test_status_kib(master, "VmRSS:");
        if (n < 0 || rss < 0) {
            continue; /* the master is gone: the test sees it */
        }
        s->samples++;
        s->max_rss_kib = rss > s->max_rss_kib ? rss : s->max_rss_kib;
        if (n > s->max_kids) {
            s->max_kids = n;
            s->max_kids_at = up_test_now_ms() - start;
            proc_desc(pids, n < 256 ? n : 256, s->max_kids_desc, sizeof(s->max_kids_desc));
        }
    }
    return NULL;
}

void ma_sampler_start(int period_ms)
{
    static pid_t master;
    master = ma.pid;
    ht.sampled = (struct ma_sampler){0};
    ht.sampler_period_ms = period_ms;
    atomic_init(&ht.sampler_stop, false);
    int r = pthread_create(&ht.sampler_tid, NULL, ma_sampler_main, &master);
    cr_assert_eq(r, 0, "pthread_create: %s", strerror(r));
    ht.sampler_running = true;
}

const struct ma_sampler *ma_sampler_stop(void)
{
    if (ht.sampler_running) {
        atomic_store(&ht.sampler_stop, true);
        pthread_join(ht.sampler_tid, NULL);
        ht.sampler_running = false;
    }
    return &ht.sampled;
}

/* ---- up-run's commands ---- */

int ma_run(const char *const *args, const char *const *env, int timeout_ms, char *out, size_t cap)
{
    const char *path = ht_path("run.out");
    char *argv[48];
    int n = 0;

    for (int i = 0; i < 12 && ma.cmd_wrap[i] != NULL; i++) {
        argv[n++] = (char *)ma.cmd_wrap[i];
    }
    argv[n++] = (char *)(ma.public_bins ? up_test_public_bin("up-run") : up_test_bin("up-run"));
    for (int i = 0; args[i] != NULL; i++) {
        cr_assert_lt(n, 46, "too many arguments for up-run");
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    pid_t pid = up_test_spawn(argv, (char *const *)env, path);
    cr_assert_gt(pid, 0, "spawn up-run %s: %s", args[0], strerror(-pid));
    int status = up_test_wait_exit(pid, timeout_ms);
    if (status == -ETIMEDOUT) {
        up_test_stop(pid, 1000);
    }
    snprintf(out, cap, "%s", up_test_file_tail(path));
    cr_assert_geq(status, 0, "up-run %s did not finish within %d ms: %s\n%s\nlog:\n%s", args[0],
                  timeout_ms, strerror(-status), out, ma_log_text());
    return status;
}

int ma_cmd(const char *cmd, const char *ctl, char *out, size_t cap, long long *ret_took)
{
    const char *args[] = {cmd, "--control", ctl, NULL};
    long long t0 = up_test_now_ms();
    int status = ma_run(args, NULL, 5000, out, cap);
    if (ret_took != NULL) {
        *ret_took = up_test_now_ms() - t0;
    }
    return status;
}

/* The number after "key=" in line[0..len), where key starts the line or
 * follows a blank; -1 if it is not there. */
static long ma_field(const char *line, size_t len, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = line; p + klen < line + len; p++) {
        if ((p == line || p[-1] == ' ') && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            return strtol(p + klen + 1, NULL, 10);
        }
    }
    return -1;
}

static void ma_remember(pid_t pid)
{
    for (int i = 0; i < ht.nseen; i++) {
        if (ht.seen[i] == pid) {
            return;
        }
    }
    if (pid > 0 && ht.nseen < HT_MAX_SEEN) {
        ht.seen[ht.nseen++] = pid;
    }
}

/* One line of the status into s. gen: the generation the worker lines
 * that follow belong to. */
static void ma_parse_line(struct ma_status *s, const char *line, size_t len, unsigned *gen)
{
    struct ma_gen *g = &s->gens[s->ngens];
    struct ma_worker *w = &s->workers[s->nworkers];
    const char *health = strstr(line, " health=");
    int pid;

    if (strncmp(line, "master ", 7) == 0 && health != NULL && health < line + len) {
        s->pending = ma_field(line, len, "pending");
        health += strlen(" health=");
        snprintf(s->health, sizeof(s->health), "%.*s", (int)(line + len - health), health);
    } else if (s->ngens < 16 && sscanf(line, "generation %u %15s", &g->id, g->state) == 2) {
        *gen = g->id;
        s->active = strcmp(g->state, "active") == 0 ? g->id : s->active;
        s->max_gen = g->id > s->max_gen ? g->id : s->max_gen;
        s->ngens++;
    } else if (s->nworkers < 64 && sscanf(line, " worker #%*u pid=%d %15s", &pid, w->state) == 2) {
        w->gen = *gen;
        w->pid = (pid_t)pid;
        w->conns = ma_field(line, len, "conns");
        s->conns += w->conns > 0 ? w->conns : 0;
        ma_remember(w->pid);
        s->nworkers++;
    } else if (strncmp(line, "accepted=", 9) == 0) {
        s->accepted = ma_field(line, len, "accepted");
        s->handed = ma_field(line, len, "handed");
        s->rerouted = ma_field(line, len, "rerouted");
        s->handed_back = ma_field(line, len, "handed_back");
        s->answered = ma_field(line, len, "answered");
        s->reloads = ma_field(line, len, "reloads");
        s->reload_failures = ma_field(line, len, "reload_failures");
        s->respawns = ma_field(line, len, "respawns");
        s->queue_timeouts = ma_field(line, len, "queue_timeouts");
        s->shed = ma_field(line, len, "shed");
        s->lost = ma_field(line, len, "lost");
    } else if (strncmp(line, "log: ", 5) == 0) {
        s->dropped = strtol(line + 5, NULL, 10);
    }
}

void ma_status(struct ma_status *s)
{
    unsigned gen = 0;

    memset(s, 0, sizeof(*s));
    s->pending = s->accepted = s->handed = s->rerouted = s->handed_back = s->answered = -1;
    s->reloads = s->reload_failures = s->respawns = s->queue_timeouts = s->shed = s->lost = -1;
    s->code = ma_cmd("status", ma.ctl, s->text, sizeof(s->text), &s->took);
    cr_assert_eq(s->code, 0, "up-run status exited %d:\n%s\nlog:\n%s", s->code, s->text,
                 ma_log_text());
    for (const char *line = s->text; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        ma_parse_line(s, line, len, &gen);
        line += len + (line[len] == '\n');
    }
}

const char *ma_gen_state(const struct ma_status *s, unsigned id)
{
    for (int i = 0; i < s->ngens; i++) {
        if (s->gens[i].id == id) {
            return s->gens[i].state;
        }
    }
    return "";
}

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

void ma_wait_workers_not(unsigned id, int n, const pid_t *not_pids, int nnot, struct ma_status *s)
{
    long long deadline = up_test_now_ms() + HT_READY_MS;
    pid_t pids[64];

    /* Right after ma_spawn() the master may not have made its control
     * socket yet: "status" would say nobody answers. */
    while (access(ma.ctl, F_OK) < 0 && up_test_now_ms() < deadline) {
        cr_assert(up_test_alive(ma.pid), "up-run exited before it listened on %s; log:\n%s", ma.ctl,
                  ma_log_text());
        up_test_nap(10);
    }
    for (;;) {
        ma_status(s);
        int ready = ma_gen_pids(s, id, "ready", pids, 64);
        bool fresh = true;
        for (int i = 0; i < ready; i++) {
            fresh = fresh && !ht_pid_in(pids[i], not_pids, nnot);
        }
        if (s->active == id && ma_gen_pids(s, id, NULL, pids, 64) == n && ready == n && fresh) {
            return;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "generation %u not active with %d ready workers within %d ms:\n%s\nlog:\n%s",
                     id, n, HT_READY_MS, s->text, ma_log_text());
        up_test_nap(20);
    }
}

void ma_wait_workers(unsigned id, int n, struct ma_status *s)
{
    ma_wait_workers_not(id, n, NULL, 0, s);
}

long long ma_wait_alone(int timeout_ms, struct ma_status *s)
{
    long long t0 = up_test_now_ms();
    ma_status(s);
    while (s->ngens != 1 && up_test_now_ms() - t0 < timeout_ms) {
        up_test_nap(50);
        ma_status(s);
    }
    return up_test_now_ms() - t0;
}

int ma_wait_refused(int timeout_ms, long long *ret_ms)
{
    long long t0 = up_test_now_ms();
    int fd;
    while ((fd = up_test_connect(ma.port)) >= 0 || fd == -ECONNRESET) {
        if (fd >= 0) {
            close(fd);
            fd = 0;
        }
        if (up_test_now_ms() - t0 >= timeout_ms) {
            break;
        }
        up_test_nap(20);
    }
    *ret_ms = up_test_now_ms() - t0;
    return fd;
}

/* ---- a lone up-worker ---- */

void wk_spawn(const char *backend, const char *app, const char *const *env)
{
    char listen[32];
    char backend_env[64];
    char *envp[8] = {backend_env};
    const char *bin = up_test_bin("up-worker");

    for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
        cr_assert_lt(i + 2, 8, "too much environment for up-worker");
        envp[i + 1] = (char *)env[i];
    }
    wk.port = up_test_free_port();
    cr_assert_gt(wk.port, 0, "no free port: %s", strerror(-wk.port));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", wk.port);
    snprintf(backend_env, sizeof(backend_env), "UP_BACKEND=%s", backend);
    snprintf(wk.log, sizeof(wk.log), "%s", ht_path("worker.log"));
    char *argv[] = {(char *)bin, "--listen", listen, (char *)app, NULL};
    wk.pid = up_test_spawn(argv, envp, wk.log);
    cr_assert_gt(wk.pid, 0, "spawn %s: %s", bin, strerror(-wk.pid));
}

void wk_start(const char *backend, const char *example, const char *const *env)
{
    const char *app = example[0] == '/' ? example : up_test_bin(example);

    wk_spawn(backend, app, env);
    int ret = up_test_wait_ready(wk.pid, wk.port, HT_READY_MS);
    cr_assert_eq(ret, 0, "up-worker (%s, %s) not listening on %d: %s\nlog:\n%s", backend, app,
                 wk.port, strerror(-ret), wk_log_text());
}

const char *wk_log_text(void)
{
    return up_test_file_tail(wk.log);
}

/* ---- up-load ---- */

void ld_start(int i, const char *const *args)
{
    char port[16];
    char name[32];
    char *argv[40];
    int argc = 0;
    const char *bin = up_test_bin("tools/up-load");

    cr_assert(i >= 0 && i < LD_MAX && ht.load[i] <= 0, "up-load %d already runs", i);
    up_test_exclusive_load();
    snprintf(port, sizeof(port), "%d", ma.port);
    snprintf(name, sizeof(name), "up-load-%d.out", i);
    snprintf(ht.load_out[i], sizeof(ht.load_out[i]), "%s", ht_path(name));
    argv[argc++] = (char *)bin;
    argv[argc++] = "--port";
    argv[argc++] = port;
    for (int k = 0; args[k] != NULL; k++) {
        cr_assert_lt(argc, 39, "too many arguments for up-load");
        argv[argc++] = (char *)args[k];
    }
    argv[argc] = NULL;
    ht.load[i] = up_test_spawn(argv, NULL, ht.load_out[i]);
    cr_assert_gt(ht.load[i], 0, "spawn %s: %s", bin, strerror(-ht.load[i]));
}

void ld_finish(int i, int timeout_ms, struct ld_result *res)
{
    memset(res, 0, sizeof(*res));
    res->status = up_test_wait_exit(ht.load[i], timeout_ms);
    cr_assert_neq(res->status, -ETIMEDOUT, "up-load still runs %d ms after its end", timeout_ms);
    ht.load[i] = 0;
    snprintf(res->text, sizeof(res->text), "%s", up_test_file_tail(ht.load_out[i]));

    const char *line = strstr(res->text, "up-load: requests=");
    cr_assert_not_null(line, "no summary from up-load (exit %d):\n%s", res->status, res->text);
    snprintf(res->line, sizeof(res->line), "%.*s", (int)strcspn(line, "\n"), line);
    int n = sscanf(res->line,
                   "up-load: requests=%ld ok=%ld connect_errors=%ld resets=%ld lost=%ld bad=%ld "
                   "timeouts=%ld idle_closes=%ld pids=%ld",
                   &res->requests, &res->ok, &res->connect_errors, &res->resets, &res->lost,
                   &res->bad, &res->timeouts, &res->idle_closes, &res->pids);
    cr_assert_eq(n, 9, "cannot parse up-load's summary: %s", res->line);
}

void ld_report(const char *tag, const char *what, const struct ld_result *res)
{
    fprintf(stderr, "[%s] %s: %s\n", tag, what, res->line);
    cr_expect(res->connect_errors == 0 && res->resets == 0 && res->lost == 0 && res->bad == 0 &&
                  res->timeouts == 0,
              "%s: requests failed: %s\nup-load output:\n%s\nup-run log:\n%s", what, res->line,
              res->text, ma_log_text());
    cr_expect_eq(res->status, 0, "%s: up-load exited %d:\n%s", what, res->status, res->text);
    cr_expect_eq(res->ok, res->requests, "%s: %s", what, res->line);
}

char *ld_echo_body(const char *target)
{
    char req[512];
    struct up_test_resp r = {0};
    int fd = ht_client(ma.port);

    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: up-load\r\n\r\n", target,
             ma.port);
    ht_send_str(fd, req);
    ht_read(fd, &r, "the GET to learn its body");
    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_not_null(strstr(r.body, "method: GET"), "not echo's answer:\n%s", r.body);
    ht_client_close(fd);
    char *body = strdup(r.body);
    cr_assert_not_null(body);
    up_test_resp_free(&r);
    return body;
}

/* ---- clients ---- */

int ht_connect(int port)
{
    int fd = up_test_connect(port);
    cr_assert_geq(fd, 0, "connect to %d: %s", port, strerror(-fd));
    return fd;
}

int ht_listener(const struct sockaddr *a, socklen_t len, int backlog)
{
    int fd = socket(a->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    if (a->sa_family != AF_UNIX) {
        cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
    }
    cr_assert_eq(bind(fd, a, len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(fd, backlog), 0, "listen: %s", strerror(errno));
    return fd;
}

int ht_client(int port)
{
    int fd = ht_connect(port);
    for (int i = 0; i < HT_MAX_CLIENTS; i++) {
        if (ht.clients[i] <= 0) {
            ht.clients[i] = fd;
            return fd;
        }
    }
    close(fd);
    cr_assert_fail("more than %d client sockets", HT_MAX_CLIENTS);
    return -1;
}

void ht_client_close(int fd)
{
    for (int i = 0; i < HT_MAX_CLIENTS; i++) {
        if (ht.clients[i] == fd) {
            ht.clients[i] = 0;
        }
    }
    close(fd);
}

void ht_send(int fd, const void *buf, size_t len)
{
    int ret = up_test_send_all(fd, buf, len);
    cr_assert_eq(ret, 0, "send: %s; log:\n%s", strerror(-ret), ht_server_log());
}

void ht_send_str(int fd, const char *s)
{
    ht_send(fd, s, strlen(s));
}

void ht_request(int port, const char *raw, struct up_test_resp *r)
{
    int ret = up_test_request(port, raw, r);
    cr_assert_eq(ret, 0, "request to %d: %s; log:\n%s", port, strerror(-ret), ht_server_log());
}

void ht_fetch(int port, const char *target, struct up_test_resp *r)
{
    char req[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", target);
    int ret = up_test_request(port, req, r);
    cr_assert_eq(ret, 0, "GET %s on %d: %s; log:\n%s", target, port, strerror(-ret),
                 ht_server_log());
}

int ht_metrics_addr(char *addr, size_t cap)
{
    int port = up_test_free_port();
    cr_assert_gt(port, 0, "no free port: %s", strerror(-port));
    snprintf(addr, cap, "127.0.0.1:%d", port);
    return port;
}

long ht_metric(int port, const char *name)
{
    struct up_test_resp r = {0};
    char needle[256];
    ht_fetch(port, "/metrics", &r);
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *at = strstr(r.body, needle);
    cr_assert_not_null(at, "no %s in /metrics:\n%s", name, r.body);
    long v = strtol(at + strlen(needle), NULL, 10);
    up_test_resp_free(&r);
    return v;
}

void ht_read(int fd, struct up_test_resp *r, const char *what)
{
    int ret = up_test_read_response(fd, r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "%s: no response: %s; log:\n%s", what, strerror(-ret), ht_server_log());
}

void ht_read_200(int fd, const char *what)
{
    struct up_test_resp r = {0};
    ht_read(fd, &r, what);
    cr_assert_eq(r.status, 200, "%s: status %d:\n%s", what, r.status, r.head);
    up_test_resp_free(&r);
}

void ht_get(int fd, struct up_test_resp *r, const char *what)
{
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    ht_read(fd, r, what);
    cr_assert_eq(r->status, 200, "%s: status %d:\n%s%s", what, r->status, r->head, r->body);
}

pid_t ht_get_pid(int fd, const char *what)
{
    struct up_test_resp r = {0};
    ht_get(fd, &r, what);
    pid_t pid = ht_resp_pid(&r);
    up_test_resp_free(&r);
    return pid;
}
