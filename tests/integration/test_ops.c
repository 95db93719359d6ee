/* Operating up-run: the metrics endpoint and health answer, systemd's
 * readiness protocol, and the pid file. */
#include <criterion/criterion.h>

#include "../lib/testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct {
    char dir[64];
    char log[128];
    pid_t pid;
    int port;
} ops = {.pid = -1};

static void ops_fini(void)
{
    if (ops.pid > 0) {
        up_test_stop(ops.pid, 5000);
        ops.pid = -1;
    }
}

static const char *ops_log(void)
{
    static char text[8192];
    FILE *f = fopen(ops.log, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    text[n] = '\0';
    if (f) {
        fclose(f);
    }
    return text;
}

/* Start up-run on a fresh port with extra arguments (NULL-terminated) and
 * env (may be NULL), and wait until it answers. */
static void ops_start(const char *backend, const char *const extra[], char *const env[])
{
    snprintf(ops.dir, sizeof(ops.dir), "/tmp/up-ops-XXXXXX");
    cr_assert_not_null(mkdtemp(ops.dir));
    snprintf(ops.log, sizeof(ops.log), "%s/stderr", ops.dir);
    ops.port = up_test_free_port();
    char port[16], ctl[128], be[32];
    snprintf(port, sizeof(port), "%d", ops.port);
    snprintf(ctl, sizeof(ctl), "%s/ctl.sock", ops.dir);
    snprintf(be, sizeof(be), "--backend=%s", backend);
    const char *argv[32] = {up_test_bin("up-run"), "-n", "2", "-p", port, "--control", ctl, be};
    int a = 8;
    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        argv[a++] = extra[i];
    }
    argv[a++] = up_test_bin("examples/hello.so");
    argv[a] = NULL;
    ops.pid = up_test_spawn((char *const *)argv, env, ops.log);
    cr_assert_gt(ops.pid, 0);
    cr_assert_eq(up_test_wait_ready(ops.pid, ops.port, 10000), 0, "up-run did not start:\n%s",
                 ops_log());
    /* The port accepts at once; a worker is ready when the log says so. */
    cr_assert_eq(up_test_wait_log(ops.log, "generation 1 serving", 10000), 0,
                 "no generation serving:\n%s", ops_log());
}

static void get(int port, const char *path, struct up_test_resp *r)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    int rc = up_test_request(port, req, r);
    cr_assert_eq(rc, 0, "GET %s on %d: %s\n%s", path, port, strerror(-rc), ops_log());
}

BACKEND_TEST(ops, metrics_and_healthz, .timeout = 30, .fini = ops_fini)
{
    int mport = up_test_free_port();
    char maddr[32];
    snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", mport);
    const char *extra[] = {"--metrics", maddr, NULL};
    ops_start(backend, extra, NULL);
    struct up_test_resp r = {0};
    for (int i = 0; i < 3; i++) {
        get(ops.port, "/", &r);
        cr_assert_eq(r.status, 200);
    }
    get(mport, "/metrics", &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "# TYPE up_connections_handed_total counter"), "%s", r.body);
    /* The readiness probe's connections count too: at least our three. */
    const char *h = strstr(r.body, "\nup_connections_handed_total ");
    cr_assert_not_null(h, "%s", r.body);
    cr_assert_geq(atoi(h + strlen("\nup_connections_handed_total ")), 3, "%s", r.body);
    cr_assert(strstr(r.body, "\nup_workers_ready 2\n"), "%s", r.body);
    cr_assert(strstr(r.body, "\nup_generation 1\n"), "%s", r.body);
    get(mport, "/healthz", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    get(mport, "/nothing", &r);
    cr_assert_eq(r.status, 404);
    up_test_resp_free(&r);
}

/* Read one datagram from the notify socket within timeout_ms into buf. */
static int notify_read(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1) {
        return -ETIMEDOUT;
    }
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0) {
        return -errno;
    }
    buf[n] = '\0';
    return (int)n;
}

/* Wait for a datagram containing want, skipping others (STATUS= updates). */
static void notify_expect(int fd, const char *want)
{
    char buf[512] = "";
    for (int i = 0; i < 10; i++) {
        int n = notify_read(fd, buf, sizeof(buf), 10000);
        cr_assert_gt(n, 0, "no '%s' from up-run: %s\nlog:\n%s", want, strerror(-n), ops_log());
        if (strstr(buf, want) != NULL) {
            return;
        }
    }
    cr_assert_fail("never got '%s'; last: %s", want, buf);
}

Test(ops, sd_notify_ready_reloading_stopping, .timeout = 30, .fini = ops_fini)
{
    char path[128], env[160];
    snprintf(path, sizeof(path), "/tmp/up-notify-%d.sock", (int)getpid());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%.100s", path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", path);
    char *envp[] = {env, NULL};
    ops_start("epoll", NULL, envp);
    notify_expect(fd, "READY=1");
    kill(ops.pid, SIGUSR2);
    notify_expect(fd, "RELOADING=1\nMONOTONIC_USEC=");
    notify_expect(fd, "READY=1");
    kill(ops.pid, SIGTERM);
    notify_expect(fd, "STOPPING=1");
    cr_assert_eq(up_test_wait_exit(ops.pid, 10000), 0, "log:\n%s", ops_log());
    ops.pid = -1;
    close(fd);
    unlink(path);
}

Test(ops, pidfile_written_and_removed, .timeout = 30, .fini = ops_fini)
{
    char pidfile[128];
    snprintf(pidfile, sizeof(pidfile), "/tmp/up-ops-pid-%d", (int)getpid());
    const char *extra[] = {"--pidfile", pidfile, NULL};
    ops_start("epoll", extra, NULL);
    FILE *f = fopen(pidfile, "r");
    cr_assert_not_null(f, "no pidfile %s", pidfile);
    int pid = 0;
    cr_assert_eq(fscanf(f, "%d", &pid), 1);
    fclose(f);
    cr_assert_eq(pid, ops.pid);
    int status = up_test_stop(ops.pid, 10000);
    ops.pid = -1;
    cr_assert_eq(status, 0, "exit status %d\n%s", status, ops_log());
    cr_assert_neq(access(pidfile, F_OK), 0, "pidfile left behind after a clean stop");
}
