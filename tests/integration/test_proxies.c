/*
 * proxies: up-run behind the load balancers operators put in front of it,
 * each from the distribution: nginx with `keepalive` upstream connections
 * and HAProxy with `http-reuse always`. Both keep a pool of connections
 * open to up-run and send request after request on them, so a pooled
 * connection is never idle for long.
 *
 * - Through the proxy, under load, with a reload every 100 ms: no request
 *   fails (a 502 is the proxy's word for a connection closed under it).
 * - After one reload the pooled connections answer from the new
 *   generation within a second: each moves, never closed, as its answer
 *   ends (--migrate=idle, the default). With the old default they stayed
 *   on the old code until the drain deadline (10 minutes).
 *
 * Each is skipped, saying why, when its package is missing (CI installs
 * both). The proxies are stopped by pid at the end (ht_fini()).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/conns.h"
#include "../lib/harness.h"

static void px_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* Start the proxy `name` in front of the master, on a free port of its own
 * (returned), and wait until it answers through to the app. */
static int px_start(const char *name)
{
    const char *bin = ht_program(name, name);
    int port = up_test_free_port();
    char conf[4096], path[PATH_MAX];
    const char *dir = ht_path(name);
    cr_assert_eq(mkdir(dir, 0755), 0, "%s: %s", dir, strerror(errno));
    pid_t pid;
    if (strcmp(name, "nginx") == 0) {
        /* One worker, so that its pool is one pool; its temp paths in the
         * test's directory, which only root may enter: run as root, its
         * worker stays root (`user root`), not nobody. */
        snprintf(conf, sizeof(conf),
                 "worker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n%s"
                 "events { worker_connections 1024; }\n"
                 "http {\n  access_log off;\n"
                 "  client_body_temp_path %s/cb;\n  proxy_temp_path %s/pt;\n"
                 "  fastcgi_temp_path %s/ft;\n  uwsgi_temp_path %s/ut;\n"
                 "  scgi_temp_path %s/st;\n"
                 "  upstream up { server 127.0.0.1:%d; keepalive 16; }\n"
                 "  server {\n    listen 127.0.0.1:%d;\n"
                 "    location / { proxy_pass http://up; proxy_http_version 1.1;\n"
                 "                 proxy_set_header Connection \"\"; }\n  }\n}\n",
                 dir, getuid() == 0 ? "user root;\n" : "", dir, dir, dir, dir, dir, ma.port, port);
        snprintf(path, sizeof(path), "%s/nginx.conf", dir);
        px_write(path, conf);
        char prefix[PATH_MAX], elog[PATH_MAX];
        snprintf(prefix, sizeof(prefix), "%s/", dir);
        snprintf(elog, sizeof(elog), "%s/error.log", dir);
        char *argv[] = {(char *)bin, "-p", prefix, "-c", path, "-e", elog, NULL};
        pid = up_test_spawn(argv, NULL, ht_path("nginx.out"));
    } else {
        snprintf(conf, sizeof(conf),
                 "global\n  maxconn 1000\n"
                 "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
                 "  timeout server 30s\n  timeout http-keep-alive 30s\n"
                 "  option http-keep-alive\n  http-reuse always\n"
                 "frontend f\n  bind 127.0.0.1:%d\n  default_backend b\n"
                 "backend b\n  server up 127.0.0.1:%d\n",
                 port, ma.port);
        snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
        px_write(path, conf);
        char *argv[] = {(char *)bin, "-db", "-f", path, NULL};
        pid = up_test_spawn(argv, NULL, ht_path("haproxy.out"));
    }
    cr_assert_gt(pid, 0, "spawn %s: %s", bin, strerror(-pid));
    ht_stop_at_fini(pid);
    cr_assert_eq(up_test_wait_ready(pid, port, 10000), 0, "%s did not start", name);
    struct up_test_resp r = {0};
    ht_fetch(port, "/", &r);
    cr_assert_eq(r.status, 200, "%s: %d\n%s", name, r.status, r.head);
    up_test_resp_free(&r);
    return port;
}

/* Wait until requests through the proxy (each on a new connection to it,
 * so that the proxy picks among its pool) are answered by generation gen,
 * within timeout_ms of now; then 20 more must be. Every answer a 200.
 * Returns how long the first took to come, in ms. */
static long long px_wait_generation(const char *name, int port, unsigned gen, int timeout_ms)
{
    long long t0 = up_test_now_ms();
    unsigned last = 0;
    for (;;) {
        struct up_test_resp r = {0};
        ht_fetch(port, "/", &r);
        cr_assert_eq(r.status, 200, "%s: %d\n%s", name, r.status, r.head);
        last = ht_resp_gen(&r);
        up_test_resp_free(&r);
        if (last == gen) {
            break;
        }
        cr_assert_lt(up_test_now_ms() - t0, timeout_ms,
                     "through %s, generation %u still answers %d ms after generation %u "
                     "took over:\n%s",
                     name, last, timeout_ms, gen, ma_log_text());
        up_test_nap(20);
    }
    long long took = up_test_now_ms() - t0;
    for (int i = 0; i < 20; i++) {
        struct up_test_resp r = {0};
        ht_fetch(port, "/", &r);
        cr_assert_eq(r.status, 200, "%s: %d\n%s", name, r.status, r.head);
        cr_assert_eq(ht_resp_gen(&r), gen, "through %s, generation %u answered again", name,
                     ht_resp_gen(&r));
        up_test_resp_free(&r);
    }
    return took;
}

static void px_run(const char *name, const char *backend)
{
    up_test_exclusive_load();
    /* A drain deadline far past the test: only the move can bring the
     * pooled connections to the new code in time. */
    static const char *const args[] = {"-n", "2", "-t", "60s", NULL};
    ma_start(backend, up_test_bin("examples/echo.so"), args);
    int port = px_start(name);
    char pport[16];
    snprintf(pport, sizeof(pport), "%d", port);

    /* Pooled connections in use, then one reload. */
    for (int i = 0; i < 20; i++) {
        struct up_test_resp r = {0};
        ht_fetch(port, "/", &r);
        cr_assert_eq(ht_resp_gen(&r), 1);
        up_test_resp_free(&r);
    }
    ma_signal(SIGUSR2);
    ma_wait_generation(2, HT_READY_MS);
    long long took = px_wait_generation(name, port, 2, 1000);

    /* Load with bodies through the proxy, and a reload every 100 ms. */
    const char *const load[] = {"--port",    pport, "--keepalive",  "32",   "--fresh", "2",
                                "--seconds", "5",   "--post-bytes", "3000", NULL};
    struct ld_result res;
    ld_start(0, load);
    int reloads = ma_reload_storm(100, 5000, NULL, NULL);
    ld_finish(0, 20000, &res);
    char what[64];
    snprintf(what, sizeof(what), "%s %s", name, backend);
    ld_report("proxies", what, &res);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    /* The storm's last generation alone (none starting, none draining),
     * and the pool on it. */
    struct ma_status s;
    ma_wait_alone(10000, &s);
    cr_assert_eq(s.ngens, 1, "the storm's generations did not settle:\n%s", s.text);
    px_wait_generation(name, port, s.active, 2000);
    fprintf(stderr,
            "[proxies] %s %s: pooled connections on the new generation %lld ms after a "
            "reload; %d reloads under load\n",
            name, backend, took, reloads);
}

BACKEND_TEST(proxies, nginx_keepalive_pool_loses_nothing_and_meets_new_code, .timeout = 150,
             .fini = ht_fini)
{
    px_run("nginx", backend);
}

BACKEND_TEST(proxies, haproxy_reused_connections_lose_nothing_and_meet_new_code, .timeout = 150,
             .fini = ht_fini)
{
    px_run("haproxy", backend);
}
