/*
 * up-run upgrade: a new up-run takes over a running master's sockets and
 * connections, and the old one exits, under load: no request fails, no
 * connection is refused, no process is left behind. A new build that
 * cannot start leaves the old master serving, with the reason.
 *
 * Each new master is started by the old one, which exits: this test
 * process is their subreaper, so that it can wait for each old master and
 * stop the last one.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/proc.h"

#define UG_WAIT_MS 15000

/* `up-run upgrade` on ma's control socket: its exit status, its answer in
 * out. The client is the build's up-run, whatever the master runs. */
static int ug_upgrade(char *out, size_t cap)
{
    const char *args[] = {"upgrade", "--control", ma.ctl, NULL};
    bool pub = ma.public_bins;
    ma.public_bins = false;
    int r = ma_run(args, NULL, UG_WAIT_MS, out, cap);
    ma.public_bins = pub;
    return r;
}

/* The new master's pid from the answer "upgraded: master pid=N serving". */
static pid_t ug_new_pid(const char *out)
{
    const char *at = strstr(out, "master pid=");
    cr_assert_not_null(at, "no new master in the answer: %s", out);
    return (pid_t)atol(at + strlen("master pid="));
}

/* Wait for old, a master that handed over, to exit 0 (it is our child, or
 * became ours when its parent, the master before it, exited). */
static void ug_wait_exit(pid_t old)
{
    int status = -1;
    pid_t r = 0;
    for (int waited = 0; waited < UG_WAIT_MS && r == 0; waited += 10) {
        r = waitpid(old, &status, WNOHANG);
        if (r == 0) {
            up_test_nap(10);
        }
    }
    char state = '?';
    (void)proc_stat(old, &state, NULL, NULL);
    cr_assert_eq(
        r, old,
        "the old master pid=%d did not exit within %d ms (waitpid %d: %s, state %c)\nlog:\n%s",
        (int)old, UG_WAIT_MS, (int)r, strerror(errno), state, ma_log_text());
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the old master pid=%d ended with status 0x%x\nlog:\n%s", (int)old, status,
              ma_log_text());
}

/* Workers of old masters, to be gone at the end. */
static pid_t ug_old[256];
static int ug_nold;

/* Remember the workers of master pid (it is about to hand over). */
static void ug_note_workers(pid_t pid)
{
    ug_nold += proc_children(pid, false, ug_old + ug_nold, 256 - ug_nold);
}

/* Every old master's workers gone (they drain), and the last master has
 * its n workers: nothing is left behind. */
static void ug_wait_settled(int n)
{
    long long left = proc_wait_gone(ug_old, ug_nold, UG_WAIT_MS);
    cr_assert_geq(left, 0, "workers of old masters still run\nlog:\n%s", ma_log_text());
    pid_t kids[16];
    int have = proc_children(ma.pid, false, kids, 16);
    cr_assert_eq(have, n, "the last master has %d children, not %d workers", have, n);
}

/* The timeout covers waiting for the other storms (up_test_exclusive_load). */
BACKEND_TEST(upgrade, ten_upgrades_under_load_lose_nothing, .timeout = 180, .fini = ht_fini)
{
    up_test_exclusive_load();
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char pidfile[PATH_MAX], out[8192];
    snprintf(pidfile, sizeof(pidfile), "%s", ht_path("up.pid"));
    const char *const args[] = {"-n", "2", "-t", "2s", "--pidfile", pidfile, NULL};
    static const char *const load[] = {"--keepalive", "64", "--fresh", "2", "--seconds", "8", NULL};
    ma_start(backend, up_test_bin("examples/echo.so"), args);
    ld_start(0, load);
    long long t0 = up_test_now_ms();
    for (int i = 0; i < 10; i++) {
        up_test_nap(500);
        pid_t old = ma.pid;
        ug_note_workers(old);
        int r = ug_upgrade(out, sizeof(out));
        cr_assert_eq(r, 0, "upgrade %d: exit %d: %s\nlog:\n%s", i + 1, r, out, ma_log_text());
        cr_assert_not_null(strstr(out, "upgraded: master pid="), "%s", out);
        pid_t now = ug_new_pid(out);
        ht_stop_at_fini(now); /* should the test end before it takes over */
        cr_assert_neq(now, old);
        ug_wait_exit(old);
        ma.pid = now;
        const char *text = up_test_file_tail(pidfile);
        cr_assert_eq(atol(text), (long)now, "the pidfile names %s, not the new master %d", text,
                     (int)now);
    }
    long long took = up_test_now_ms() - t0;
    struct ld_result res;
    ld_finish(0, 30000, &res);
    ld_report("upgrade", backend, &res);
    fprintf(stderr, "[upgrade] %s: 10 upgrades in %lld ms under load\n", backend, took);
    cr_assert_gt(res.requests, 1000, "only %ld requests: %s", res.requests, res.line);
    ug_wait_settled(2);
    struct ma_status s;
    ma_status(&s);
    char who[48];
    snprintf(who, sizeof(who), "master pid=%d ", (int)ma.pid);
    cr_assert_not_null(strstr(s.text, who), "status is not the last master's:\n%s", s.text);
}

/* A new build that cannot start: the old master keeps serving and says
 * why; once the build is fixed, the upgrade goes through. */
BACKEND_TEST(upgrade, a_broken_build_leaves_the_old_master_serving, .timeout = 60, .fini = ht_fini)
{
    cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    char out[8192], real[PATH_MAX];
    static const char *const args[] = {"-n", "1", "-t", "1s", NULL};
    ma.public_bins = true; /* up-run from a copy this test may replace */
    ma_start(backend, up_test_public_bin("examples/echo.so"), args);
    pid_t old = ma.pid;
    const char *bin = up_test_public_bin("up-run");
    snprintf(real, sizeof(real), "%s.real", bin);
    cr_assert_eq(rename(bin, real), 0);
    FILE *f = fopen(bin, "w");
    cr_assert_not_null(f);
    fputs("#!/bin/sh\necho 'up-run: this build is broken' >&2\nexit 3\n", f);
    fclose(f);
    cr_assert_eq(chmod(bin, 0755), 0);

    int r = ug_upgrade(out, sizeof(out));
    cr_assert_eq(r, 1, "exit %d: %s", r, out);
    cr_assert_not_null(strstr(out, "upgrade failed"), "%s", out);
    cr_assert_not_null(strstr(out, "this build is broken"), "%s", out);
    cr_assert_not_null(strstr(out, "keeps serving"), "%s", out);
    cr_assert(!proc_gone(old), "the old master exited");
    int fd = ht_client(ma.port);
    struct up_test_resp resp = {0};
    ht_get(fd, &resp, "after the failed upgrade");
    cr_assert_eq(ht_resp_gen(&resp), 1, "%s", resp.head);
    up_test_resp_free(&resp);

    cr_assert_eq(rename(real, bin), 0);
    ug_note_workers(old);
    r = ug_upgrade(out, sizeof(out));
    cr_assert_eq(r, 0, "exit %d: %s\nlog:\n%s", r, out, ma_log_text());
    pid_t now = ug_new_pid(out);
    ht_stop_at_fini(now);
    /* The keep-alive socket the old master's worker held goes on, now
     * served by the new master's worker. */
    ht_get(fd, &resp, "after the upgrade");
    up_test_resp_free(&resp);
    ug_wait_exit(old);
    ma.pid = now;
    ug_wait_settled(1);
}
