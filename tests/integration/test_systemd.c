/*
 * systemd: what a service manager gives up-run. Socket activation, with a
 * supervisor of the test's own that does what systemd does (it holds the
 * listening socket, passes it as fd 3 with LISTEN_FDS, LISTEN_PID set in
 * the child, LISTEN_FDNAMES): up-run serves on it, a restart refuses no
 * connection (they wait in the socket's queue), -l fd:NAME picks one of
 * several, and a bad passed fd is refused. And --user: bind as root, then
 * master and workers run as another user; root is refused without it.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/proc.h"
#include "../lib/testlib.h"

/* A listening TCP socket on 127.0.0.1; *ret_port gets its port. */
static int sd_listener(int *ret_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 512), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *ret_port = ntohs(a.sin_port);
    return fd;
}

/* What systemd does for a service with sockets: fds[0..n) become fds
 * 3..3+n, LISTEN_PID is the child's own pid (set after the fork), and the
 * names go to LISTEN_FDNAMES. argv[0] is a path; output into log. */
static pid_t sd_spawn(const int *fds, int n, const char *names, char *const argv[], const char *log)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid > 0) {
        ht_stop_at_fini(pid);
        return pid;
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int high[16];
    for (int i = 0; i < n; i++) {
        high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 100); /* out of the way of 3.. */
    }
    for (int i = 0; i < n; i++) {
        dup2(high[i], 3 + i); /* dup2 clears close-on-exec */
    }
    dup2(out, 1);
    dup2(out, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    char v[32];
    snprintf(v, sizeof(v), "%d", (int)getpid());
    setenv("LISTEN_PID", v, 1);
    snprintf(v, sizeof(v), "%d", n);
    setenv("LISTEN_FDS", v, 1);
    if (names != NULL) {
        setenv("LISTEN_FDNAMES", names, 1);
    }
    setenv("TMPDIR", ht_path(""), 1);
    unsetenv("XDG_RUNTIME_DIR");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    _exit(127);
}

/* GET / on port: 0 and the body checked, or -errno. */
static int sd_get(int port)
{
    struct up_test_resp r = {0};
    int ret = up_test_request(port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
    if (ret == 0 && (r.status != 200 || strcmp(r.body, "Hello World") != 0)) {
        ret = -EPROTO;
    }
    up_test_resp_free(&r);
    return ret;
}

/* Wait until port answers GET / (asserted within 10 s; log: the server's). */
static void sd_wait_serving(int port, const char *log)
{
    long long t0 = up_test_now_ms();
    while (sd_get(port) != 0) {
        cr_assert_lt(up_test_now_ms() - t0, 10000, "not serving:\n%s", up_test_file_tail(log));
        up_test_nap(20);
    }
}

/* The end of a restart loop: the last master stopped with 0, and the held
 * socket l closed. It may have been spawned after the clients ended: a
 * SIGTERM before it set up its signals would kill it (status 143), so it
 * is stopped once it serves. */
static void sd_stop_last(pid_t master, int port, int l, const char *log)
{
    sd_wait_serving(port, log);
    cr_assert_eq(up_test_stop(master, 10000), 0, "%s", up_test_file_tail(log));
    close(l);
}

struct prober {
    int port;
    int nap_ms; /* between requests */
    atomic_bool stop;
    atomic_int ok, failed;
    int last_error;
};

static void *probe(void *arg)
{
    struct prober *p = arg;
    while (!atomic_load(&p->stop)) {
        int r = sd_get(p->port);
        if (r == 0) {
            atomic_fetch_add(&p->ok, 1);
        } else {
            atomic_fetch_add(&p->failed, 1);
            p->last_error = r;
        }
        up_test_nap(p->nap_ms);
    }
    return NULL;
}

Test(systemd, a_passed_socket_serves_and_a_restart_refuses_nothing, .timeout = 90, .fini = ht_fini)
{
    int port;
    int l = sd_listener(&port);
    char *argv[] = {(char *)up_test_bin("up-run"),
                    "-n",
                    "2",
                    "-t",
                    "1s",
                    "--allow-root",
                    "--control",
                    (char *)ht_path("ctl.sock"),
                    (char *)up_test_bin("examples/hello.so"),
                    NULL};
    const char *log = ht_path("up-run.log");
    pid_t first = sd_spawn(&l, 1, "web", argv, log);
    sd_wait_serving(port, log);
    cr_assert_eq(up_test_file_contains(log, "listening on the 1 socket systemd passed"), 1);

    /* Restart under a steady stream of requests, as `systemctl restart`
     * does with the .socket unit holding the port. */
    struct prober p = {.port = port, .nap_ms = 5};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, probe, &p), 0);
    up_test_nap(300);
    cr_assert_eq(kill(first, SIGTERM), 0);
    cr_assert_eq(up_test_wait_exit(first, 10000), 0, "%s", up_test_file_tail(log));
    int before = atomic_load(&p.ok);
    pid_t second = sd_spawn(&l, 1, "web", argv, log);
    long long t0 = up_test_now_ms();
    while (atomic_load(&p.ok) < before + 50) {
        cr_assert_lt(up_test_now_ms() - t0, 15000, "the restarted master does not serve:\n%s",
                     up_test_file_tail(log));
        up_test_nap(20);
    }
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&p.failed), 0, "%d of %d requests failed across the restart (%s)",
                 atomic_load(&p.failed), atomic_load(&p.ok) + atomic_load(&p.failed),
                 strerror(-p.last_error));
    cr_assert_eq(up_test_stop(second, 10000), 0);
    close(l);
}

/* Who gets the stop signal: up-run alone; its whole process group (its
 * workers too), as Ctrl-C, `kill -- -PGID` or a supervisor's group stop
 * send it; or up-run and then each of its children, as systemd's default
 * KillMode=control-group does (it reaches workers in process groups of
 * their own too). */
enum sd_kill { SD_MASTER, SD_GROUP, SD_CGROUP };

static void sd_kill_children(pid_t pid, int sig)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "re");
    long child;
    while (f != NULL && fscanf(f, "%ld", &child) == 1) {
        kill((pid_t)child, sig);
    }
    if (f != NULL) {
        fclose(f);
    }
}

/* `up-run -n 2 -t TIMEOUT --allow-root --control DIR/ctl.sock APP...` (app:
 * the arguments after these, NULL-terminated) into argv, for sd_spawn(),
 * and UP_BACKEND=backend for the masters it starts. */
#define SD_ARGV 24
static void sd_argv(char **argv, const char *timeout, const char *backend, const char *const *app)
{
    const char *const common[] = {
        up_test_bin("up-run"), "-n", "2", "-t", timeout, "--allow-root", "--control",
        ht_path("ctl.sock")};
    int n = 0;
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
        argv[n++] = (char *)common[i];
    }
    for (int i = 0; app[i] != NULL && n < SD_ARGV - 1; i++) {
        argv[n++] = (char *)app[i];
    }
    argv[n] = NULL;
    setenv("UP_BACKEND", backend, 1);
}

/* ROUNDS stops of `up-run -n 2 -t 1s ... APP...` (app: its arguments after
 * the common ones), each followed by a new one on the same held socket,
 * under CLIENTS threads that connect without a pause; asserts that no
 * request failed. */
static void sd_stops(const char *backend, enum sd_kill how, const char *const *app)
{
    enum { ROUNDS = 12, CLIENTS = 4 };
    up_test_exclusive_load(); /* four clients connecting without a pause */
    int port;
    int l = sd_listener(&port);
    char *argv[SD_ARGV];
    sd_argv(argv, "1s", backend, app);
    const char *log = ht_path("up-run.log");
    struct prober p[CLIENTS];
    pthread_t th[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        p[i] = (struct prober){.port = port};
    }
    pid_t master = sd_spawn(&l, 1, "web", argv, log);
    for (int i = 0; i < CLIENTS; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, probe, &p[i]), 0);
    }
    int stops = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int before = atomic_load(&p[0].ok);
        long long t0 = up_test_now_ms();
        while (atomic_load(&p[0].ok) < before + 50) {
            cr_assert_lt(up_test_now_ms() - t0, 15000, "round %d: not serving:\n%s", round,
                         up_test_file_tail(log));
            up_test_nap(10);
        }
        cr_assert_eq(kill(how == SD_GROUP ? -master : master, SIGTERM), 0);
        if (how == SD_CGROUP) {
            sd_kill_children(master, SIGTERM);
        }
        cr_assert_eq(up_test_wait_exit(master, 10000), 0, "%s", up_test_file_tail(log));
        stops++;
        master = sd_spawn(&l, 1, "web", argv, log);
    }
    int ok = 0, failed = 0, last = 0;
    for (int i = 0; i < CLIENTS; i++) {
        atomic_store(&p[i].stop, true);
    }
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        ok += atomic_load(&p[i].ok);
        failed += atomic_load(&p[i].failed);
        last = atomic_load(&p[i].failed) > 0 ? p[i].last_error : last;
    }
    cr_assert_eq(failed, 0, "%d of %d requests failed across %d stops (%s)", failed, ok + failed,
                 stops, strerror(-last));
    sd_stop_last(master, port, l, log);
}

/* A stop lets the workers answer every connection it accepted, also those
 * the kernel accepted while the stop was on its way to the listener (an
 * io_uring multishot accept goes on until its cancel is processed): none
 * gets a 503 or a close. Clients that connect without a pause make such
 * accepts likely at every stop; the socket is held, so what comes after
 * the stop waits in its queue for the next master. */
BACKEND_TEST(systemd, stops_under_a_stream_of_connects_refuse_nothing, .timeout = 120,
             .fini = ht_fini)
{
    const char *const app[] = {up_test_bin("examples/hello.so"), NULL};
    sd_stops(backend, SD_MASTER, app);
}

/* The same with the signal sent to the whole process group: the workers
 * get it too, and tell the master they drain. They serve on what the
 * master sends until its stop drains them, so that what it accepted still
 * finds a worker (before, they handed it back and left: 503s and resets). */
BACKEND_TEST(systemd, group_stops_under_a_stream_of_connects_refuse_nothing, .timeout = 120,
             .fini = ht_fini)
{
    const char *const app[] = {up_test_bin("examples/hello.so"), NULL};
    sd_stops(backend, SD_GROUP, app);
}

/* Keep-alive clients across restarts on a held socket: from the stop on,
 * every answer says Connection: close, and an idle connection gets a grace
 * for a last request before it is closed, so no request is sent into a
 * close (before: 16 of ~380,000 lost in 6 restarts, "connection closed
 * with no response"). */
static void sd_ka_restarts(const char *backend, const char *const *app)
{
    int port;
    int l = sd_listener(&port);
    char *argv[SD_ARGV];
    sd_argv(argv, "2s", backend, app);
    const char *log = ht_path("up-run.log");
    pid_t master = sd_spawn(&l, 1, "web", argv, log);
    sd_wait_serving(port, log);
    ma.port = port; /* up-load's */
    const char *const load[] = {"--keepalive",   "8",           "--fresh", "0", "--seconds", "8",
                                "--expect-body", "Hello World", NULL};
    ld_start(0, load);
    for (int i = 0; i < 6; i++) {
        up_test_nap(1000);
        cr_assert_eq(kill(master, SIGTERM), 0);
        cr_assert_eq(up_test_wait_exit(master, 10000), 0, "%s", up_test_file_tail(log));
        master = sd_spawn(&l, 1, "web", argv, log);
    }
    struct ld_result res;
    ld_finish(0, 30000, &res);
    ld_report("systemd", backend, &res);
    cr_assert_eq(res.lost + res.resets, 0, "%s", res.line);
    sd_stop_last(master, port, l, log);
}

BACKEND_TEST(systemd, restarts_under_keep_alive_clients_lose_nothing, .timeout = 120,
             .fini = ht_fini)
{
    const char *const app[] = {up_test_bin("examples/hello.so"), NULL};
    sd_ka_restarts(backend, app);
}

/* The same with Python handoff workers (examples/python/up_wsgi.py). */
Test(systemd, restarts_under_keep_alive_clients_lose_nothing_with_handoff_workers, .timeout = 120,
     .fini = ht_fini)
{
    const char *env;
    const char *const *app = ht_python_handoff(&env);
    putenv((char *)env);
    sd_ka_restarts("auto", app);
}

/* And with workers of another language (the handoff protocol, in process
 * groups of their own) signalled one by one after the master, as a
 * cgroup-wide stop does: examples/python/up_wsgi.py serves on until the
 * master's DRAIN too. */
Test(systemd, cgroup_stops_with_handoff_workers_refuse_nothing, .timeout = 180, .fini = ht_fini)
{
    const char *env;
    const char *const *app = ht_python_handoff(&env);
    putenv((char *)env); /* for the masters sd_spawn() starts */
    sd_stops("auto", SD_CGROUP, app);
}

Test(systemd, listen_fd_name_picks_one_and_closes_the_rest, .timeout = 60, .fini = ht_fini)
{
    int pa, pb;
    int fds[2] = {sd_listener(&pa), sd_listener(&pb)};
    char *argv[] = {(char *)up_test_bin("up-run"),
                    "-n",
                    "1",
                    "--allow-root",
                    "-l",
                    "fd:admin",
                    "--control",
                    (char *)ht_path("ctl.sock"),
                    (char *)up_test_bin("examples/hello.so"),
                    NULL};
    const char *log = ht_path("up-run.log");
    pid_t pid = sd_spawn(fds, 2, "web:admin", argv, log);
    cr_assert_eq(up_test_wait_ready(pid, pb, 10000), 0, "%s", up_test_file_tail(log));
    cr_assert_eq(sd_get(pb), 0);
    cr_assert_eq(up_test_wait_log(
                     log, "closed 1 passed socket no --listen fd:NAME names (first: web)", 5000),
                 0, "%s", up_test_file_tail(log));
    cr_assert_eq(up_test_stop(pid, 10000), 0);
    close(fds[0]);
    close(fds[1]);
}

Test(systemd, what_cannot_be_served_is_refused_at_start, .timeout = 60, .fini = ht_fini)
{
    /* A regular file where a socket should be. */
    int file = open(ht_path("not-a-socket"), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(file, 0);
    char *argv[] = {(char *)up_test_bin("up-run"),
                    "--allow-root",
                    "--control",
                    (char *)ht_path("ctl.sock"),
                    (char *)up_test_bin("examples/hello.so"),
                    NULL};
    const char *log = ht_path("bad.log");
    pid_t pid = sd_spawn(&file, 1, NULL, argv, log);
    cr_assert_eq(up_test_wait_exit(pid, 10000), 3, "%s", up_test_file_tail(log));
    cr_assert_eq(up_test_file_contains(log, "passed fd 3 is not a socket"), 1, "%s",
                 up_test_file_tail(log));
    close(file);

    /* fd:NAME with nothing passed. */
    char out[4096];
    const char *args[] = {"-l",
                          "fd:web",
                          "--allow-root",
                          "--control",
                          ht_path("ctl2.sock"),
                          up_test_bin("examples/hello.so"),
                          NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "--listen fd:web: no socket of that name was passed"), "%s",
                       out);
}

/* A world-readable copy of the example app, where another user can read
 * it (the test's own dir is private). */
static const char *sd_public_app(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/up-test-pub.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(chmod(dir, 0755), 0);
    static char app[128];
    snprintf(app, sizeof(app), "%s/hello.so", dir);
    ht_install(up_test_bin("examples/hello.so"), app);
    cr_assert_eq(chmod(app, 0644), 0);
    return app;
}

static uid_t sd_uid_of(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    cr_assert_not_null(f);
    unsigned uid = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Uid: %*u %u", &uid) == 1) {
            break;
        }
    }
    fclose(f);
    return (uid_t)uid;
}

Test(systemd, user_drops_master_and_workers_after_binding, .timeout = 60, .fini = ht_fini)
{
    up_test_require_root();
    char dir[64], out[8192], port[16], ctl_dir[64];
    const char *app = sd_public_app(dir, sizeof(dir));
    int p = up_test_free_port();
    snprintf(port, sizeof(port), "%d", p);
    snprintf(ctl_dir, sizeof(ctl_dir), "/tmp/up-%u", (unsigned)UP_TEST_OTHER_UID);
    /* nobody runs the workers: from copies it may reach (the build
     * directory may be under /root). */
    char *argv[] = {(char *)up_test_public_bin("up-run"),
                    "-p",
                    port,
                    "-n",
                    "2",
                    "--user",
                    "nobody",
                    (char *)app,
                    NULL};
    char *env[] = {"TMPDIR=/tmp", "XDG_RUNTIME_DIR=", NULL};
    const char *log = ht_path("up-run.log");
    pid_t pid = up_test_spawn(argv, env, log);
    ht_stop_at_fini(pid);
    cr_assert_eq(up_test_wait_ready(pid, p, 10000), 0, "%s", up_test_file_tail(log));
    cr_assert_eq(sd_get(p), 0);
    cr_assert_eq(up_test_file_contains(log, "running as nobody (uid 65534"), 1, "%s",
                 up_test_file_tail(log));
    cr_assert_eq(sd_uid_of(pid), UP_TEST_OTHER_UID, "the master still runs as root");
    pid_t kids[8];
    int n = proc_children(pid, false, kids, 8);
    cr_assert_eq(n, 2, "%d workers", n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(sd_uid_of(kids[i]), UP_TEST_OTHER_UID, "worker %d runs as root", kids[i]);
    }
    /* Root commands it through nobody's default socket with --user. */
    const char *args[] = {"status", "-p", port, "--user", "nobody", NULL};
    const char *cenv[] = {"XDG_RUNTIME_DIR=", NULL};
    cr_assert_eq(ma_run(args, cenv, 10000, out, sizeof(out)), 0, "%s", out);
    cr_assert_not_null(strstr(out, "generation 1 active workers=2"), "%s", out);
    cr_assert_eq(up_test_stop(pid, 10000), 0, "%s", up_test_file_tail(log));
    up_test_remove_dir(dir);
    char sock[96];
    snprintf(sock, sizeof(sock), "%s/%d.sock", ctl_dir, p);
    cr_assert_neq(access(sock, F_OK), 0, "the control socket is left behind");
}

/* An app --user may not read (under root's home, a private directory):
 * the start fails, saying whose access was missing. */
Test(systemd, an_app_the_user_may_not_read_says_whose_access, .timeout = 30, .fini = ht_fini)
{
    up_test_require_root();
    char port[16], out[4096];
    snprintf(port, sizeof(port), "%d", up_test_free_port());
    const char *app = ht_path("app.so"); /* in the test's 0700 directory */
    cr_assert_eq(symlink(up_test_bin("examples/echo.so"), app), 0, "%s", strerror(errno));
    const char *args[] = {"-p", port, "-n", "1", "--user", "nobody", app, NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "Permission denied (running as uid 65534: give that uid access"),
                       "%s", out);
}

Test(systemd, root_without_user_is_refused, .timeout = 30, .fini = ht_fini)
{
    up_test_require_root();
    char out[4096];
    const char *args[] = {up_test_bin("examples/hello.so"), NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "running as root, the workers would run the app as root: give "
                                   "--user NAME"),
                       "%s", out);
    const char *bad[] = {"--user", "no-such-user-here", up_test_bin("examples/hello.so"), NULL};
    cr_assert_eq(ma_run(bad, NULL, 10000, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--user: no user 'no-such-user-here'"), "%s", out);
}

/* The shipped units, as systemd reads them: no warning at all. */
Test(systemd, the_shipped_units_verify_clean, .timeout = 60, .fini = ht_fini)
{
    if (access("/usr/bin/systemd-analyze", X_OK) != 0) {
        cr_skip_test("systemd-analyze is not installed (Debian package systemd)");
    }
    const char *src = getenv("UP_SRC_DIR");
    cr_assert_not_null(src, "UP_SRC_DIR is not set (make test sets it)");
    char cmd[2048];
    const char *dir = ht_path("");
    /* An instance of each template, with the binary where this build has
     * it (verify checks that ExecStart= exists). */
    snprintf(cmd, sizeof(cmd),
             "cd %s && sed 's|/usr/local/bin/up-run|%s|g' %s/examples/systemd/up@.service "
             ">up@demo.service && cp %s/examples/systemd/up@.socket up@demo.socket && "
             "out=$(systemd-analyze verify --man=no %sup@demo.service %sup@demo.socket 2>&1) && "
             "test -z \"$out\" || { echo \"$out\"; exit 1; }",
             dir, up_test_bin("up-run"), src, src, dir, dir);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    const char *log = ht_path("verify.out");
    pid_t pid = up_test_spawn(argv, NULL, log);
    cr_assert_eq(up_test_wait_exit(pid, 30000), 0, "systemd-analyze verify:\n%s",
                 up_test_file_tail(log));
}
