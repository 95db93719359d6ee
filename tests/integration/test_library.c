/*
 * libup as an embedder uses it: a server run on a thread of this test
 * process (reloaded and stopped from another thread, routing by a
 * middleware of ours), the API's refusals, and the embed example built
 * from the public header alone, run as a real program.
 */
#include <criterion/criterion.h>

#include "../lib/testlib.h"
#include "up/server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a server on a thread of ours ---- */

struct lib {
    struct up_server_opts opts;
    char addr[16];
    int port;
    _Atomic(struct up_server *) server; /* set by the thread once created */
    _Atomic int outcomes;               /* on_reload calls */
    _Atomic bool last_ok;
    char last_why[512];
    _Atomic unsigned last_gen;
    int code; /* up_server_run()'s */
    pthread_t thread;
};

static void on_reload(void *ctx, const struct up_reload_outcome *o)
{
    struct lib *l = ctx;
    snprintf(l->last_why, sizeof(l->last_why), "%s", o->ok ? "" : o->why);
    atomic_store(&l->last_ok, o->ok);
    atomic_store(&l->last_gen, o->generation);
    atomic_fetch_add(&l->outcomes, 1);
}

/* "/w/N...": to worker N, by index. Anything else: next (round-robin). */
static enum up_route by_path(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)ctx;
    if (req->path_len >= 4 && memcmp(req->path, "/w/", 3) == 0 && req->path[3] >= '0' &&
        req->path[3] <= '9') {
        out->worker = req->path[3] - '0';
        return UP_ROUTE_WORKER;
    }
    return UP_ROUTE_NEXT;
}

static void *serve(void *arg)
{
    struct lib *l = arg;
    struct up_server *s = NULL;
    cr_assert_eq(up_server_new(&l->opts, &s), 0);
    cr_assert_eq(up_server_listen(s, l->addr), 0);
    cr_assert_eq(up_server_use(s, by_path, NULL), 0);
    atomic_store(&l->server, s);
    l->code = up_server_run(s);
    return NULL;
}

/* Start a server of app with 2 workers on a thread; SIGCHLD is blocked
 * in this thread first, so that the server's signalfd gets it (as
 * server.h asks of an embedder). */
static void lib_start(struct lib *l, const char *app)
{
    memset(l, 0, sizeof(*l));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    l->port = up_test_free_port();
    cr_assert_gt(l->port, 0);
    snprintf(l->addr, sizeof(l->addr), "%d", l->port);
    l->opts = (struct up_server_opts){
        .app = up_test_bin(app),
        .workers = 2,
        .worker_bin = up_test_bin("up-worker"),
        .drain_timeout_ms = 2000,
        .on_reload = on_reload,
        .ctx = l,
    };
    cr_assert_eq(pthread_create(&l->thread, NULL, serve, l), 0);
}

static void wait_outcomes(struct lib *l, int n)
{
    for (int i = 0; i < 1000 && atomic_load(&l->outcomes) < n; i++) {
        usleep(10 * 1000);
    }
    cr_assert_geq(atomic_load(&l->outcomes), n, "%d reload outcomes, not %d",
                  atomic_load(&l->outcomes), n);
}

/* GET path on a new connection: the serving worker's pid, and generation. */
static long get_pid(int port, const char *path, unsigned *ret_gen)
{
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_request(port, req, &r), 0, "GET %s", path);
    cr_assert_eq(r.status, 200, "GET %s: %d", path, r.status);
    const char *pid = up_test_resp_header(&r, "X-Up-Pid");
    const char *gen = up_test_resp_header(&r, "X-Up-Generation");
    cr_assert(pid != NULL && gen != NULL);
    long v = atol(pid);
    if (ret_gen != NULL) {
        *ret_gen = (unsigned)atol(gen);
    }
    up_test_resp_free(&r);
    return v;
}

Test(library, a_server_on_a_thread_routes_reloads_and_stops, .timeout = 60)
{
    struct lib l;
    lib_start(&l, "examples/echo.so");
    wait_outcomes(&l, 1);
    cr_assert(atomic_load(&l.last_ok));
    cr_assert_eq(atomic_load(&l.last_gen), 1);

    /* The middleware's index routing: each index is one worker. The
     * generation serves (and reports) from its first ready worker on, and
     * an index whose worker is not ready yet goes to another: wait for the
     * second (a sanitized worker takes a while to load). */
    unsigned gen = 0;
    long w0 = 0, w1 = 0;
    for (int i = 0; i < 100 && w0 == w1; i++) {
        if (i > 0) {
            usleep(50 * 1000);
        }
        w0 = get_pid(l.port, "/w/0", &gen);
        w1 = get_pid(l.port, "/w/1", NULL);
    }
    cr_assert_eq(gen, 1);
    cr_assert_neq(w0, w1, "one worker answers both indexes after 5 s");
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(get_pid(l.port, "/w/0", NULL), w0);
        cr_assert_eq(get_pid(l.port, "/w/1", NULL), w1);
    }
    /* An index past the workers is not an error: another worker serves. */
    long other = get_pid(l.port, "/w/7", NULL);
    cr_assert(other == w0 || other == w1);

    /* Reload from this thread: the outcome comes on the server's. */
    up_server_reload(atomic_load(&l.server));
    wait_outcomes(&l, 2);
    cr_assert(atomic_load(&l.last_ok));
    cr_assert_eq(atomic_load(&l.last_gen), 2);
    long n0 = get_pid(l.port, "/w/0", &gen);
    cr_assert_eq(gen, 2);
    cr_assert_neq(n0, w0);

    up_server_stop(atomic_load(&l.server), true);
    cr_assert_eq(pthread_join(l.thread, NULL), 0);
    cr_assert_eq(l.code, 0);
    up_server_free(atomic_load(&l.server));
    cr_assert_neq(up_test_wait_port(l.port, 100), 0, "still listening after stop");
    cr_assert_eq(kill((pid_t)n0, 0), -1, "a worker outlived its server");
}

Test(library, a_failed_first_start_is_reported_and_run_returns_3, .timeout = 60)
{
    struct lib l;
    lib_start(&l, "examples/fail_init.so");
    cr_assert_eq(pthread_join(l.thread, NULL), 0);
    cr_assert_eq(l.code, 3);
    cr_assert_eq(atomic_load(&l.outcomes), 1);
    cr_assert(!atomic_load(&l.last_ok));
    cr_assert_neq(l.last_why[0], '\0', "no reason given");
    up_server_free(atomic_load(&l.server));
}

static enum up_route nothing(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)ctx, (void)req, (void)out;
    return UP_ROUTE_NEXT;
}

Test(library, bad_options_are_refused, .timeout = 20)
{
    struct up_server *s = NULL;
    struct up_server_opts none = {0};
    cr_assert_eq(up_server_new(&none, &s), -EINVAL, "no app");
    cr_assert_null(s);
    struct up_server_opts o = {.app = up_test_bin("examples/hello.so"),
                               .worker_bin = up_test_bin("up-worker")};
    cr_assert_eq(up_server_new(&o, &s), 0);
    cr_assert_lt(up_server_listen(s, "nonsense"), 0);
    cr_assert_lt(up_server_listen(s, "70000"), 0);
    cr_assert_eq(up_server_use_sticky(s, "session"), -EINVAL);
    int r = 0, n = 0;
    while ((r = up_server_use(s, nothing, NULL)) == 0) {
        n++;
    }
    cr_assert_eq(r, -ENOSPC);
    cr_assert_eq(n, 16);
    cr_assert_eq(up_server_run(s), 3, "nothing to listen on");
    cr_assert_eq(up_server_run(s), 1, "run twice");
    up_server_free(s);
}

/* ---- the embed example, a program of its own ---- */

struct embed {
    char dir[64], app[128], flag[128], log[128];
    int port;
    pid_t pid;
};

static void embed_start(struct embed *e, const char *worker_bin)
{
    snprintf(e->dir, sizeof(e->dir), "/tmp/up-test-embed.XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    snprintf(e->app, sizeof(e->app), "%s/app.so", e->dir);
    snprintf(e->flag, sizeof(e->flag), "%s/maintenance", e->dir);
    snprintf(e->log, sizeof(e->log), "%s/log", e->dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s", up_test_bin("examples/echo.so"), e->app);
    cr_assert_eq(system(cmd), 0);
    e->port = up_test_free_port();
    char port[16], env[256];
    snprintf(port, sizeof(port), "%d", e->port);
    snprintf(env, sizeof(env), "UP_WORKER_BIN=%s", worker_bin);
    char *argv[] = {(char *)up_test_bin("examples/embed"), port, e->app, e->flag, NULL};
    char *envp[] = {env, NULL};
    e->pid = up_test_spawn(argv, envp, e->log);
    cr_assert_gt(e->pid, 0);
}

static void embed_stop(struct embed *e)
{
    cr_assert_eq(up_test_stop(e->pid, 10000), 0, "%s", up_test_file_tail(e->log));
    up_test_remove_dir(e->dir);
}

Test(library, the_embed_example_answers_maintenance_and_reloads, .timeout = 60)
{
    struct embed e;
    embed_start(&e, up_test_bin("up-worker"));
    cr_assert_eq(up_test_wait_ready(e.pid, e.port, 10000), 0, "%s", up_test_file_tail(e.log));
    cr_assert_eq(up_test_wait_log(e.log, "embed: generation 1 serving", 10000), 0);
    get_pid(e.port, "/", NULL);

    /* The middleware answers from the master: no worker sees it. */
    FILE *f = fopen(e.flag, "w");
    cr_assert_not_null(f);
    fclose(f);
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_request(e.port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(up_test_resp_header(&r, "Retry-After"), "30");
    cr_assert_str_eq(up_test_resp_header(&r, "Connection"), "close");
    cr_assert_str_eq(r.body, "down for maintenance\n");
    up_test_resp_free(&r);
    cr_assert_eq(unlink(e.flag), 0);
    get_pid(e.port, "/", NULL);

    /* SIGUSR2 reloads; a broken app fails and the old code serves. */
    cr_assert_eq(kill(e.pid, SIGUSR2), 0);
    cr_assert_eq(up_test_wait_log(e.log, "embed: generation 2 serving", 10000), 0, "%s",
                 up_test_file_tail(e.log));
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s.new && mv %s.new %s", up_test_bin("examples/fail_init.so"),
             e.app, e.app, e.app);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(kill(e.pid, SIGHUP), 0);
    cr_assert_eq(
        up_test_wait_log(e.log, "embed: generation 3 failed, the old code serves: ", 10000), 0,
        "%s", up_test_file_tail(e.log));
    unsigned gen = 0;
    get_pid(e.port, "/", &gen);
    cr_assert_eq(gen, 2);
    embed_stop(&e);
}

Test(library, an_embedder_without_up_worker_is_told_where_it_looked, .timeout = 30)
{
    struct embed e;
    embed_start(&e, "/nonexistent/up-worker");
    cr_assert_eq(up_test_wait_exit(e.pid, 10000), 3);
    cr_assert_eq(up_test_file_contains(e.log, "up-worker /nonexistent/up-worker: No such file"), 1,
                 "%s", up_test_file_tail(e.log));
    cr_assert_eq(up_test_file_contains(e.log, "UP_WORKER_BIN"), 1);
    up_test_remove_dir(e.dir);
}
