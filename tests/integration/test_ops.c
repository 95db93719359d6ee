/* Operating up-run: the metrics endpoint and health answer, systemd's
 * readiness protocol, and the pid file. */
#include "../lib/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Start `up-run -n 2 --backend=BACKEND EXTRA... APP` (up-run's own drain
 * timeout; app NULL: hello.so) with the environment env (may be NULL),
 * and wait until both workers are ready: generation 1 serves from the
 * first, and the metrics are checked for both. */
static void ops_start(const char *backend, const char *app, const char *const extra[],
                      const char *const env[])
{
    struct ma_status s;
    char be[32];
    const char *args[8] = {"-n", "2", be};
    snprintf(be, sizeof(be), "--backend=%s", backend);
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        args[i + 3] = extra[i];
    }
    for (int i = 0; env != NULL && env[i] != NULL; i++) {
        ma.env[i] = env[i];
    }
    ma.no_defaults = true;
    ma_start(backend, app != NULL ? app : up_test_bin("examples/hello.so"), args);
    ma_wait_workers(1, 2, &s);
}

BACKEND_TEST(ops, metrics_and_healthz, .timeout = 30, .fini = ht_fini)
{
    int mport = up_test_free_port();
    char maddr[32];
    snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", mport);
    const char *extra[] = {"--metrics", maddr, NULL};
    ops_start(backend, NULL, extra, NULL);
    struct up_test_resp r = {0};
    for (int i = 0; i < 3; i++) {
        ht_fetch(ma.port, "/", &r);
        cr_assert_eq(r.status, 200);
    }
    ht_fetch(mport, "/metrics", &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "# TYPE up_connections_handed_total counter"), "%s", r.body);
    /* The readiness probe's connections count too: at least our three. */
    const char *h = strstr(r.body, "\nup_connections_handed_total ");
    cr_assert_not_null(h, "%s", r.body);
    cr_assert_geq(atoi(h + strlen("\nup_connections_handed_total ")), 3, "%s", r.body);
    cr_assert(strstr(r.body, "\nup_workers_ready 2\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\nup_generation 1\n"), "%s", r.body);
    ht_fetch(mport, "/healthz", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    ht_fetch(mport, "/nothing", &r);
    cr_assert_eq(r.status, 404);
    up_test_resp_free(&r);
}

/* The value of the sample line that starts with prefix (name and labels),
 * or -1. */
static double ops_sample(const char *page, const char *prefix)
{
    char want[160];
    snprintf(want, sizeof(want), "\n%s ", prefix);
    const char *at = strstr(page, want);
    return at != NULL ? strtod(at + strlen(want), NULL) : -1;
}

/* What an operator alerts on: reload and handoff durations as histograms,
 * workers by generation and state, the master's fds and memory; every
 * sample as promtool reads it. */
Test(ops, metrics_operators_alert_on, .timeout = 60, .fini = ht_fini)
{
    int mport = up_test_free_port();
    char maddr[32], out[4096];
    snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", mport);
    const char *extra[] = {"--metrics", maddr, NULL};
    ops_start("auto", NULL, extra, NULL);
    struct up_test_resp r = {0};
    for (int i = 0; i < 5; i++) {
        ht_fetch(ma.port, "/", &r);
    }
    const char *reload[] = {"reload", "--control", ma.ctl, NULL};
    cr_assert_eq(ma_run(reload, NULL, 10000, out, sizeof(out)), 0, "%s", out);
    /* The reload answers when its first worker is ready: the second may
     * still be starting on a busy machine. */
    struct ma_status st;
    ma_wait_workers(2, 2, &st);
    double cpu_before = proc_cpu_s(ma.pid);
    ht_fetch(mport, "/metrics", &r);
    cr_assert_eq(r.status, 200);
    const char *page = r.body;
    cr_assert(strstr(page, "# TYPE up_handoff_duration_seconds histogram\n"), "%s", page);
    double handed = ops_sample(page, "up_connections_handed_total");
    cr_assert_geq(handed, 5, "%s", page);
    cr_assert_eq(ops_sample(page, "up_handoff_duration_seconds_count"), handed, "%s", page);
    cr_assert_eq(ops_sample(page, "up_handoff_duration_seconds_bucket{le=\"+Inf\"}"), handed);
    double sum = ops_sample(page, "up_handoff_duration_seconds_sum");
    cr_assert(sum > 0 && sum < handed, "handoffs took %g s in all", sum);
    /* The start and the reload. */
    cr_assert_eq(ops_sample(page, "up_reload_duration_seconds_count"), 2, "%s", page);
    cr_assert_eq(ops_sample(page, "up_workers{generation=\"2\",state=\"ready\"}"), 2, "%s", page);
    cr_assert_gt(ops_sample(page, "process_open_fds"), 5, "%s", page);
    cr_assert_gt(ops_sample(page, "process_resident_memory_bytes"), 100000, "%s", page);
    cr_assert_gt(ops_sample(page, "process_max_fds"), 0, "%s", page);
    cr_assert_gt(ops_sample(page, "process_start_time_seconds"), 1.7e9, "%s", page);
    /* The scheduler's count, as /proc/PID/task/N/schedstat has it a moment
     * before: not clock ticks, which miss most of the master's short
     * bursts. */
    double cpu = ops_sample(page, "process_cpu_seconds_total");
    cr_assert(cpu_before > 0 && cpu >= cpu_before - 0.001,
              "process_cpu_seconds_total %.4f s, but the master had run %.4f s before", cpu,
              cpu_before);

    if (access("/usr/bin/promtool", X_OK) != 0) {
        up_test_resp_free(&r);
        cr_skip_test("promtool is not installed (Debian package prometheus): the page was not "
                     "linted");
    }
    const char *file = ht_path("metrics.txt");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(page, f);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s > %s 2>&1", file, ht_path("lint"));
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "promtool check metrics:\n%s", up_test_file_tail(ht_path("lint")));
    up_test_resp_free(&r);
}

/* Wait for a datagram on the notify socket fd that holds want, skipping
 * others (STATUS= updates), each within 10 s. Returns the datagram. */
static const char *notify_expect(int fd, const char *want)
{
    static char buf[512];
    buf[0] = '\0';
    for (int i = 0; i < 10; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 10000), 1, "no '%s' from up-run\nlog:\n%s", want, ma_log_text());
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        cr_assert_gt(n, 0, "no '%s' from up-run: %s", want, strerror(errno));
        buf[n] = '\0';
        if (strstr(buf, want) != NULL) {
            return buf;
        }
    }
    cr_assert_fail("never got '%s'; last: %s", want, buf);
    return NULL;
}

Test(ops, sd_notify_ready_reloading_stopping, .timeout = 30, .fini = ht_fini)
{
    char path[128], env[160];
    snprintf(path, sizeof(path), "/tmp/up-notify-%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", path);
    const char *envp[] = {env, NULL};
    const char *app = ht_app("examples/hello.so");
    ops_start("epoll", app, NULL, envp);
    notify_expect(fd, "READY=1");
    kill(ma.pid, SIGUSR2);
    notify_expect(fd, "RELOADING=1\nMONOTONIC_USEC=");
    notify_expect(fd, "READY=1\nSTATUS=generation 2 serving");
    /* A failed reload: READY=1 all the same (systemd waits for it after
     * RELOADING=1), with the reason in STATUS=. */
    ht_install(up_test_bin("examples/fail_init.so"), app);
    kill(ma.pid, SIGUSR2);
    notify_expect(fd, "RELOADING=1\nMONOTONIC_USEC=");
    const char *got = notify_expect(fd, "READY=1\nSTATUS=reload failed: generation 3: ");
    cr_assert_not_null(strstr(got, "init failed (returned -1); generation 2 keeps serving"), "%s",
                       got);
    kill(ma.pid, SIGTERM);
    notify_expect(fd, "STOPPING=1");
    cr_assert_eq(up_test_wait_exit(ma.pid, 10000), 0, "log:\n%s", ma_log_text());
    ma.pid = -1;
    close(fd);
    unlink(path);
}

Test(ops, pidfile_written_and_removed, .timeout = 30, .fini = ht_fini)
{
    char pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "/tmp/up-ops-pid-%d", (int)getpid());
    const char *extra[] = {"--pidfile", pidfile, NULL};
    ops_start("epoll", NULL, extra, NULL);
    FILE *f = fopen(pidfile, "r");
    cr_assert_not_null(f, "no pidfile %s", pidfile);
    int pid = 0;
    cr_assert_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    cr_assert_eq(pid, ma.pid);
    int status = up_test_stop(ma.pid, 10000);
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit status %d\n%s", status, ma_log_text());
    cr_assert_neq(access(pidfile, F_OK), 0, "pidfile left behind after a clean stop");
}

/* ---- what other local users may do ---- */

/* The exit status of `up-run ARGS... hello.so` that is expected to refuse
 * to start, with its output in out. */
static int ops_start_refused(const char *const args[], const char *const env[], char *out,
                             size_t cap)
{
    const char *argv[24];
    int a = 0;
    for (int i = 0; args[i] != NULL && a < 20; i++) {
        argv[a++] = args[i];
    }
    argv[a++] = "-n";
    argv[a++] = "1";
    argv[a++] = "--allow-root";
    argv[a++] = up_test_bin("examples/hello.so");
    argv[a] = NULL;
    return ma_run(argv, env, 10000, out, cap);
}

/* The default control directory ($XDG_RUNTIME_DIR here; /tmp/up-UID follows
 * the same rule) must be this user's alone: another user who made it, or a
 * mode that lets others in, or a symlink, could hand the socket name to
 * someone else. The master refuses to start and says why; the client
 * refuses to connect. */
Test(ops, default_control_dir_not_private_is_refused, .timeout = 60, .fini = ht_fini)
{
    struct {
        const char *name;
        mode_t mode;
        bool other_user;
        bool link;
        const char *why;
    } cases[] = {
        {"wide", 0755, false, false, "has mode 0755"},
        {"link", 0700, false, true, "symbolic link"},
        {"theirs", 0700, true, false, "belongs to uid 65534"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].other_user && geteuid() != 0) {
            continue; /* only root can make a directory another user's */
        }
        char dir[128], env[160], port[16], out[4096];
        snprintf(dir, sizeof(dir), "%s", ht_path(cases[i].name));
        if (cases[i].link) {
            char target[160];
            snprintf(target, sizeof(target), "%s.target", dir);
            cr_assert_eq(mkdir(target, 0700), 0);
            cr_assert_eq(symlink(target, dir), 0);
        } else {
            cr_assert_eq(mkdir(dir, 0700), 0);
            cr_assert_eq(chmod(dir, cases[i].mode), 0);
        }
        if (cases[i].other_user) {
            cr_assert_eq(chown(dir, UP_TEST_OTHER_UID, UP_TEST_OTHER_UID), 0);
        }
        snprintf(env, sizeof(env), "XDG_RUNTIME_DIR=%s", dir);
        snprintf(port, sizeof(port), "%d", up_test_free_port());
        const char *envp[] = {env, NULL};
        const char *serve[] = {"-p", port, "--backend=epoll", NULL};
        int status = ops_start_refused(serve, envp, out, sizeof(out));
        cr_assert_eq(status, 3, "%s: exit %d, expected 3:\n%s", cases[i].name, status, out);
        cr_assert(strstr(out, cases[i].why) && strstr(out, dir), "%s: does not say why:\n%s",
                  cases[i].name, out);
        cr_assert_not_null(strstr(out, "--control"), "%s: no way out:\n%s", cases[i].name, out);
        char sock[192];
        snprintf(sock, sizeof(sock), "%s/up-%s.sock", dir, port);
        cr_assert_neq(access(sock, F_OK), 0, "%s: a socket was made in it", cases[i].name);

        const char *status_args[] = {"status", "-p", port, NULL};
        status = ma_run(status_args, envp, 10000, out, sizeof(out));
        cr_assert_eq(status, 1, "%s: up-run status exited %d:\n%s", cases[i].name, status, out);
        cr_assert_not_null(strstr(out, cases[i].why), "%s: the client does not say why:\n%s",
                           cases[i].name, out);
    }
}

/* A "master" served by another user at the control path: the client checks
 * the peer's credentials and prints nothing of its answer. */
Test(ops, client_refuses_a_master_of_another_user, .timeout = 30, .fini = ht_fini)
{
    up_test_require_root();
    /* A shared directory like /tmp (root's, sticky, writable by all), which
     * an explicit --control may name. */
    char dir[128], sock[160], out[4096];
    snprintf(dir, sizeof(dir), "%s", ht_path("shared"));
    cr_assert_eq(chmod(ht_path(""), 0711), 0); /* the other user passes through */
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chmod(dir, 01777), 0);
    snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
    int ready[2];
    cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
    pid_t other = fork();
    cr_assert_geq(other, 0);
    if (other == 0) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", sock);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (up_test_become_other_user() < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            listen(fd, 8) < 0 || write(ready[1], "r", 1) != 1) {
            _exit(1);
        }
        for (;;) {
            int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
            char buf[64];
            static const char answer[] = "master pid=1 state=running SECRET-ANSWER\n";
            if (c >= 0 && read(c, buf, sizeof(buf)) >= 0) {
                (void)send(c, answer, sizeof(answer) - 1, MSG_NOSIGNAL);
            }
            close(c);
        }
    }
    ht_stop_at_fini(other);
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the other user's server did not start");
    close(ready[0]);
    static const char *const cmds[] = {"status", "reload"};
    for (size_t i = 0; i < 2; i++) {
        const char *args[] = {cmds[i], "--control", sock, NULL};
        int status = ma_run(args, NULL, 10000, out, sizeof(out));
        cr_assert_eq(status, 1, "up-run %s exited %d:\n%s", cmds[i], status, out);
        cr_assert_null(strstr(out, "SECRET"), "up-run %s printed the answer:\n%s", cmds[i], out);
        cr_assert_not_null(strstr(out, "uid 65534"), "up-run %s does not say why:\n%s", cmds[i],
                           out);
    }
}

/* connect() to a regular file fails with ECONNREFUSED just as to a stale
 * socket: the file must not be taken for one and removed. */
Test(ops, regular_file_at_a_socket_path_is_left_alone, .timeout = 30, .fini = ht_fini)
{
    char data[128], listen_arg[160], port[16], out[4096];
    static const char precious[] = "someone's data\n";
    snprintf(data, sizeof(data), "%s", ht_path("data"));
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    fputs(precious, f);
    fclose(f);
    snprintf(listen_arg, sizeof(listen_arg), "unix:%s", data);
    snprintf(port, sizeof(port), "%d", up_test_free_port());

    const char *as_listener[] = {"-l", listen_arg, "--control", ht_path("ctl.sock"), NULL};
    const char *as_control[] = {"-p", port, "--control", data, NULL};
    const char *const *cases[] = {as_listener, as_control};
    for (size_t i = 0; i < 2; i++) {
        int status = ops_start_refused(cases[i], NULL, out, sizeof(out));
        cr_assert_eq(status, 3, "case %zu: exit %d, expected 3:\n%s", i, status, out);
        cr_assert_not_null(strstr(out, data), "case %zu: the path is not named:\n%s", i, out);
        struct stat st;
        cr_assert_eq(lstat(data, &st), 0, "case %zu: the file is gone:\n%s", i, out);
        cr_assert(S_ISREG(st.st_mode) && st.st_size == (off_t)strlen(precious));
    }
    cr_assert_not_null(strstr(out, "regular file"), "what is there is not said:\n%s", out);
    const char *client[] = {"status", "--control", data, NULL};
    cr_assert_eq(ma_run(client, NULL, 10000, out, sizeof(out)), 1, "%s", out);
    cr_assert_not_null(strstr(out, "not a socket"), "%s", out);
    f = fopen(data, "r");
    char text[64] = "";
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(text, sizeof(text), f));
    fclose(f);
    cr_assert_str_eq(text, precious);
}

static pid_t ops_pidfile_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = -1;
    if (f != NULL) {
        if (fscanf(f, "%d", &pid) != 1) {
            pid = -1;
        }
        fclose(f);
    }
    return (pid_t)pid;
}

/* A second up-run that fails to start must leave the running master's
 * pidfile alone; only the master it names removes it. */
Test(ops, second_master_leaves_the_pidfile_alone, .timeout = 60, .fini = ht_fini)
{
    char pidfile[128], port[16], out[4096];
    snprintf(pidfile, sizeof(pidfile), "%s", ht_path("up.pid"));
    /* A stale pidfile (a pid that cannot exist) is replaced. */
    FILE *f = fopen(pidfile, "w");
    cr_assert_not_null(f);
    fputs("999999999\n", f);
    fclose(f);
    const char *extra[] = {"--pidfile", pidfile, NULL};
    ops_start("epoll", NULL, extra, NULL);
    cr_assert_eq(ops_pidfile_pid(pidfile), ma.pid, "the stale pidfile was not replaced");

    /* The same control socket: it answers, so the second one stops there. */
    snprintf(port, sizeof(port), "%d", up_test_free_port());
    const char *same_ctl[] = {"-p",        port,    "--control", ht_path("ctl.sock"),
                              "--pidfile", pidfile, NULL};
    int status = ops_start_refused(same_ctl, NULL, out, sizeof(out));
    cr_assert_eq(status, 3, "exit %d:\n%s", status, out);
    cr_assert_eq(ops_pidfile_pid(pidfile), ma.pid, "the pidfile changed:\n%s", out);

    /* Another control socket: the pidfile itself says a master runs. */
    const char *other_ctl[] = {"-p",        port,    "--control", ht_path("ctl2.sock"),
                               "--pidfile", pidfile, NULL};
    status = ops_start_refused(other_ctl, NULL, out, sizeof(out));
    cr_assert_eq(status, 3, "exit %d:\n%s", status, out);
    char names[64];
    snprintf(names, sizeof(names), "pid=%d", (int)ma.pid);
    cr_assert(strstr(out, pidfile) && strstr(out, names), "no reason given:\n%s", out);
    cr_assert_eq(ops_pidfile_pid(pidfile), ma.pid, "the pidfile changed:\n%s", out);

    status = up_test_stop(ma.pid, 10000);
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit status %d\n%s", status, ma_log_text());
    cr_assert_neq(access(pidfile, F_OK), 0, "pidfile left behind after a clean stop");
}

/* NOTIFY_SOCKET would let app code speak for the service to systemd, and
 * LISTEN_* describe the master's fds: workers see none of them, while the
 * master itself still notifies. */
Test(ops, workers_do_not_see_systemd_variables, .timeout = 30, .fini = ht_fini)
{
    char path[128], env[160];
    snprintf(path, sizeof(path), "%s", ht_path("notify.sock"));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", path);
    const char *envp[] = {env, "LISTEN_FDS=1", "LISTEN_PID=1", "LISTEN_FDNAMES=web", NULL};
    ops_start("epoll", up_test_bin("examples/env.so"), NULL, envp);
    notify_expect(fd, "READY=1");
    struct up_test_resp r = {0};
    ht_fetch(ma.port, "/", &r);
    cr_assert_eq(r.status, 200);
    static const char *const names[] = {"X-Env-NOTIFY_SOCKET", "X-Env-LISTEN_FDS",
                                        "X-Env-LISTEN_PID", "X-Env-LISTEN_FDNAMES"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = up_test_resp_header(&r, names[i]);
        cr_assert_not_null(v, "no %s:\n%s", names[i], r.head);
        cr_assert_str_eq(v, "(unset)", "a worker sees %s: %s", names[i] + 6, v);
    }
    up_test_resp_free(&r);
    close(fd);
}
