/*
 * servers: HTTP servers nobody here wrote, each under up-run --exec as an
 * operator would run it, served and then reloaded every second under load:
 * Python's stdlib http.server (through tests/servers/python_http.py, a
 * socket-activation wrapper), gunicorn with a WSGI app (which takes the
 * listener from LISTEN_FDS itself: given --bind fd://3 as well, it takes
 * fd 3 twice, closes it after the first, and fails on the second),
 * Node's http.createServer().listen({fd: 3}), and Go's net/http on
 * net.FileListener. Each is skipped, with the reason, when its package is
 * missing.
 *
 * Two loads run at once: new connections only, which must never fail (the
 * listener never closes: a reload only changes who accepts), and
 * keep-alive connections, whose fate at a reload is the server's own
 * graceful stop: measured and reported ("[servers] ..." lines, the table
 * in README.md), asserted only to be answered correctly when answered.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/harness.h"

#define SV_RELOADS 8

static const char *sv_source(const char *name)
{
    static char path[4][PATH_MAX];
    static unsigned next;
    const char *dir = getenv("UP_SRC_DIR");
    char *buf = path[next++ % 4];
    snprintf(buf, PATH_MAX, "%s/tests/servers/%s", dir != NULL ? dir : ".", name);
    return buf;
}

/* An executable in PATH (or at an absolute path), or NULL. */
static const char *sv_which(const char *name)
{
    static char found[PATH_MAX];
    if (name[0] == '/') {
        return access(name, X_OK) == 0 ? name : NULL;
    }
    const char *path = getenv("PATH");
    for (const char *p = path != NULL ? path : "/usr/bin:/bin"; *p != '\0';) {
        size_t n = strcspn(p, ":");
        snprintf(found, sizeof(found), "%.*s/%s", (int)n, p, name);
        if (access(found, X_OK) == 0) {
            return found;
        }
        p += n + (p[n] == ':');
    }
    return NULL;
}

/* Run the server cmd (NULL-terminated) under up-run with opts, then SV_RELOADS
 * reloads one second apart under both loads; report as name. */
static void sv_run(const char *name, const char *stop, const char *const *opts,
                   const char *const *cmd)
{
    static const char *const fresh[] = {"--keepalive", "0",  "--fresh", "4",
                                        "--seconds",   "10", "--quiet", NULL};
    static const char *const keep[] = {"--keepalive", "16", "--fresh", "0",
                                       "--seconds",   "10", "--quiet", NULL};
    const char *extra[40];
    int n = 0;
    char out[4096], what[128];
    struct ld_result f, k;
    struct ma_status s;

    extra[n++] = "-t";
    extra[n++] = "5s";
    for (int i = 0; opts != NULL && opts[i] != NULL; i++) {
        extra[n++] = opts[i];
    }
    extra[n++] = "--exec";
    extra[n++] = "--";
    for (int i = 0; cmd[i] != NULL; i++) {
        extra[n++] = cmd[i];
    }
    extra[n] = NULL;
    ma_spawn("auto", NULL, extra);
    ma_wait_serving(20000);
    ma_wait_workers(1, 2, &s);
    ld_start(0, fresh);
    ld_start(1, keep);
    for (int i = 0; i < SV_RELOADS; i++) {
        up_test_nap(1000);
        /* A server's start (Python's imports) may take seconds on a busy
         * machine: a longer wait than ma_cmd()'s. */
        const char *const args[] = {"reload", "--control", ma.ctl, NULL};
        cr_assert_eq(ma_run(args, NULL, 30000, out, sizeof(out)), 0, "reload %d: %s", i + 1, out);
        ma_status(&s);
    }
    ld_finish(0, 30000, &f);
    ld_finish(1, 30000, &k);
    snprintf(what, sizeof(what), "%s: new connections across %d reloads", name, SV_RELOADS);
    ld_report("servers", what, &f);
    long failed = k.requests - k.ok;
    fprintf(stderr,
            "[servers] %s (stop %s): keep-alive across %d reloads: %ld failed of %ld (resets=%ld "
            "lost=%ld timeouts=%ld bad=%ld, idle closes %ld); new connections: %ld failed of "
            "%ld\n",
            name, stop, SV_RELOADS, failed, k.requests, k.resets, k.lost, k.timeouts, k.bad,
            k.idle_closes, f.requests - f.ok, f.requests);
    cr_expect_eq(k.bad, 0, "%s: a wrong answer on a keep-alive connection: %s", name, k.line);
    cr_expect_eq(k.connect_errors, 0, "%s: %s", name, k.line);
    ma_wait_workers(SV_RELOADS + 1, 2, &s);
}

Test(servers, python_http_server, .timeout = 90, .fini = ht_fini)
{
    const char *py = sv_which("python3");
    if (py == NULL) {
        cr_skip_test("python3 is not installed");
    }
    const char *const cmd[] = {py, sv_source("python_http.py"), NULL};
    sv_run("python http.server", "TERM", NULL, cmd);
}

Test(servers, gunicorn, .timeout = 90, .fini = ht_fini)
{
    const char *g = sv_which("/usr/bin/gunicorn");
    if (g == NULL) {
        cr_skip_test("gunicorn is not installed (Debian package gunicorn)");
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "--chdir=%s", sv_source(""));
    const char *const cmd[] = {g, "--workers", "2", dir, "wsgi_app:app", NULL};
    sv_run("gunicorn", "TERM", NULL, cmd);
}

Test(servers, node_http, .timeout = 90, .fini = ht_fini)
{
    const char *node = sv_which("node");
    if (node == NULL) {
        cr_skip_test("node is not installed (Debian package nodejs)");
    }
    static const char *const opts[] = {"--ready-after", "300ms", NULL};
    const char *const cmd[] = {node, sv_source("node_http.js"), NULL};
    sv_run("node http", "TERM", opts, cmd);
}

Test(servers, go_net_http, .timeout = 90, .fini = ht_fini)
{
    const char *bin = up_test_bin("servers/go-http");
    if (access(bin, X_OK) != 0) {
        cr_skip_test("%s was not built: go is not installed (Debian package golang-go)", bin);
    }
    const char *const cmd[] = {bin, NULL};
    sv_run("go net/http", "TERM", NULL, cmd);
}
