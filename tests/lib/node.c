/*
 * node: running the ws client scripts. See node.h.
 */
#include "node.h"

#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* node on the PATH, as an absolute path (up_test_spawn() execs a path). */
static const char *node_bin(void)
{
    static char path[512];
    const char *env = getenv("PATH");
    char dirs[2048];
    snprintf(dirs, sizeof(dirs), "%s", env != NULL ? env : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/node", d);
        if (access(path, X_OK) == 0) {
            return path;
        }
    }
    cr_assert_fail("node is not on the PATH: make test installs it (scripts/deps.sh)");
    return NULL;
}

void nd_start(struct nd *n, const char *script, const char *const *args)
{
    const char *mods = getenv("UP_NODE_PATH");
    const char *dir = getenv("UP_TEST_WS");
    cr_assert(mods != NULL && dir != NULL, "UP_NODE_PATH and UP_TEST_WS unset: run make test");
    char ws[1024];
    snprintf(ws, sizeof(ws), "%s/ws/package.json", mods);
    cr_assert(access(ws, R_OK) == 0,
              "the npm package ws is not in %s: `npm ci` in build/npm failed when make ran it "
              "(no npm registry, or npm missing); make test tries again",
              mods);
    char nodepath[1024], file[1024];
    snprintf(nodepath, sizeof(nodepath), "NODE_PATH=%s", mods);
    snprintf(file, sizeof(file), "%s/%s", dir, script);
    snprintf(n->out, sizeof(n->out), "%s", ht_path(script));
    strncat(n->out, ".out", sizeof(n->out) - strlen(n->out) - 1);
    const char *argv[24] = {node_bin(), file};
    int a = 2;
    for (int i = 0; args != NULL && args[i] != NULL; i++) {
        cr_assert_lt(a, 23, "too many arguments for %s", script);
        argv[a++] = args[i];
    }
    argv[a] = NULL;
    char *envp[] = {nodepath, NULL};
    n->pid = up_test_spawn((char *const *)argv, envp, n->out);
    cr_assert_gt(n->pid, 0, "node %s: %s", script, strerror(-n->pid));
    ht_stop_at_fini(n->pid);
}

const char *nd_text(const struct nd *n)
{
    return up_test_file_tail(n->out);
}

void nd_wait_line(const struct nd *n, const char *needle, int timeout_ms)
{
    long long end = up_test_now_ms() + timeout_ms;
    while (up_test_file_contains(n->out, needle) != 1) {
        cr_assert(up_test_alive(n->pid), "node ended before '%s':\n%s", needle, nd_text(n));
        cr_assert_lt(up_test_now_ms(), end, "no '%s' from node within %d ms:\n%s", needle,
                     timeout_ms, nd_text(n));
        up_test_nap(10);
    }
}

int nd_finish(struct nd *n, int timeout_ms)
{
    int st = up_test_wait_exit(n->pid, timeout_ms);
    cr_assert_neq(st, -ETIMEDOUT, "node still runs after %d ms:\n%s", timeout_ms, nd_text(n));
    n->pid = -1;
    return st;
}

void nd_run(const char *tag, const char *script, const char *const *args, int timeout_ms)
{
    struct nd n;
    nd_start(&n, script, args);
    int st = nd_finish(&n, timeout_ms);
    cr_assert_eq(st, 0, "%s failed (exit %d):\n%s", script, st, nd_text(&n));
    const char *text = nd_text(&n);
    const char *last = strstr(text, "ws checks:");
    fprintf(stderr, "[%s] %s: %.*s\n", tag, script, last ? (int)strcspn(last, "\n") : 0,
            last ? last : "");
}
