/*
 * install: `make install DESTDIR=D PREFIX=/usr` puts what a C tool ships
 * where it belongs; an app and a master of one's own build out of tree
 * against the installed files through pkg-config, and serve with the
 * installed binaries; `make uninstall` takes it all away again.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/testlib.h"

/* Run the shell command cmd (its output into DIR/sh.out), asserting exit 0
 * within timeout_ms. make's own jobserver settings are not passed on: this
 * make is a new one, not a part of the one that runs the tests. */
static void in_sh(const char *cmd, int timeout_ms)
{
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    char *env[] = {"MAKEFLAGS=", "MAKELEVEL=", "MFLAGS=", NULL};
    const char *out = ht_path("sh.out");
    pid_t pid = up_test_spawn(argv, env, out);
    cr_assert_gt(pid, 0);
    int status = up_test_wait_exit(pid, timeout_ms);
    if (status == -ETIMEDOUT) {
        up_test_stop(pid, 1000);
    }
    cr_assert_eq(status, 0, "'%s' exited %d:\n%s", cmd, status, up_test_file_tail(out));
}

static bool exists(const char *root, const char *path)
{
    char full[512];
    struct stat st;
    snprintf(full, sizeof(full), "%s%s", root, path);
    return stat(full, &st) == 0 && S_ISREG(st.st_mode);
}

/* Serve with pid (started by the test) on port: a GET answers body. */
static void serves(pid_t pid, int port, const char *body, const char *log)
{
    cr_assert_gt(pid, 0);
    ht_stop_at_fini(pid);
    cr_assert_eq(up_test_wait_ready(pid, port, 10000), 0, "not serving:\n%s",
                 up_test_file_tail(log));
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_request(port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &r), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, body);
    up_test_resp_free(&r);
    cr_assert_eq(up_test_stop(pid, 5000), 0, "%s", up_test_file_tail(log));
}

Test(install, builds_and_serves_out_of_tree_then_uninstalls, .timeout = 300, .fini = ht_fini)
{
    const char *src = getenv("UP_SRC_DIR");
    cr_assert_not_null(src, "UP_SRC_DIR is not set (make test sets it)");
    const char *san = getenv("UP_TEST_SANITIZED");
    bool sanitized = san != NULL && san[0] != '\0';
    char dest[256], cmd[2048], pc[600];
    snprintf(dest, sizeof(dest), "%s", ht_path("root"));

    snprintf(cmd, sizeof(cmd), "make -C %s install DESTDIR=%s PREFIX=/usr SANITIZE=%s", src, dest,
             sanitized ? san : "");
    in_sh(cmd, 240000);
    static const char *const files[] = {
        "/usr/bin/up-run",
        "/usr/bin/up-worker",
        "/usr/bin/up-exec",
        "/usr/lib/libup.a",
        "/usr/include/up/server.h",
        "/usr/include/up/middleware.h",
        "/usr/include/up/app.h",
        "/usr/lib/pkgconfig/up.pc",
        "/usr/lib/pkgconfig/up-app.pc",
        "/usr/share/man/man1/up-run.1",
        "/usr/share/man/man1/up-worker.1",
        "/usr/share/man/man3/up-app.3",
        "/usr/share/doc/up/examples/hello.c",
        "/usr/share/doc/up/examples/embed/embed.c",
        "/usr/share/doc/up/examples/chat/chat.c",
        "/usr/share/doc/up/examples/chat/index.html",
        "/usr/share/doc/up/examples/systemd/up@.service",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        cr_assert(exists(dest, files[i]), "%s%s was not installed", dest, files[i]);
    }

    /* Out of tree: the installed example sources, the installed headers
     * and library, found through pkg-config alone. */
    snprintf(pc, sizeof(pc), "PKG_CONFIG_SYSROOT_DIR=%s PKG_CONFIG_LIBDIR=%s/usr/lib/pkgconfig",
             dest, dest);
    const char *flags = sanitized ? "-fsanitize=address,undefined" : "";
    const char *out = ht_path("");
    snprintf(
        cmd, sizeof(cmd),
        "cd %s && export %s && cc -shared -fPIC $(pkg-config --cflags up-app) "
        "%s/usr/share/doc/up/examples/hello.c -o hello.so && "
        "cc -shared -fPIC $(pkg-config --cflags up-app) -Wa,-I%s/usr/share/doc/up/examples/chat "
        "%s/usr/share/doc/up/examples/chat/chat.c -o chat.so && "
        "cc %s $(pkg-config --cflags up) %s/usr/share/doc/up/examples/embed/embed.c "
        "$(pkg-config --libs up) -o embed",
        out, pc, dest, dest, dest, flags, dest);
    in_sh(cmd, 120000);

    char bin[512], app[512], port[16], env[600];
    snprintf(app, sizeof(app), "%shello.so", out);
    int p = up_test_free_port();
    snprintf(port, sizeof(port), "%d", p);
    snprintf(bin, sizeof(bin), "%s/usr/bin/up-run", dest);
    char *run[] = {
        bin, "-p", port, "-n", "1", "--allow-root", "--control", (char *)ht_path("ctl.sock"),
        app, NULL};
    const char *log = ht_path("up-run.log");
    serves(up_test_spawn(run, NULL, log), p, "Hello World", log);

    /* The embedder's program finds the installed worker by UP_WORKER_BIN. */
    p = up_test_free_port();
    snprintf(port, sizeof(port), "%d", p);
    snprintf(bin, sizeof(bin), "%sembed", out);
    snprintf(env, sizeof(env), "UP_WORKER_BIN=%s/usr/bin/up-worker", dest);
    char *embed[] = {bin, port, app, (char *)ht_path("maintenance"), NULL};
    char *embed_env[] = {env, NULL};
    log = ht_path("embed.log");
    serves(up_test_spawn(embed, embed_env, log), p, "Hello World", log);

    snprintf(cmd, sizeof(cmd), "make -C %s uninstall DESTDIR=%s PREFIX=/usr SANITIZE=%s", src, dest,
             sanitized ? san : "");
    in_sh(cmd, 60000);
    snprintf(cmd, sizeof(cmd), "test -z \"$(find %s -type f)\"", dest);
    in_sh(cmd, 10000);
}
