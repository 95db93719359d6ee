/*
 * master, continued: reloads. SIGUSR2 replaces every worker; a reload to
 * broken code (no symbol, failing init, crashing init) leaves the old workers
 * serving; a reload during a reload lets the latest code win; the control
 * socket's reload/stop/status; --watch, with a first generation that fails;
 * a killed worker replaced.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"

/* ---- reload ---- */

BACKEND_TEST(master, reload_replaces_every_pid, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    pid_t old[2], fresh[2], seen[6];
    unsigned gen;

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);
    ma_signal(SIGUSR2);
    ma_wait_generation(2, 5000);
    ma_wait_workers(2, 2, &s);
    ma_gen_pids(&s, 2, "ready", fresh, 2);
    cr_assert(!ht_pid_in(fresh[0], old, 2) && !ht_pid_in(fresh[1], old, 2),
              "a worker of generation 1 is in generation 2:\n%s", s.text);
    cr_assert_geq(proc_wait_gone(old, 2, 5000), 0,
                  "old workers %d, %d still alive 5 s after the reload:\n%s\nlog:\n%s", (int)old[0],
                  (int)old[1], s.text, ma_log_text());
    for (int i = 0; i < 6; i++) {
        seen[i] = ma_get_pid(&gen);
        cr_assert_eq(gen, 2, "request %d answered by generation %u", i, gen);
        cr_assert(ht_pid_in(seen[i], fresh, 2), "request %d answered by %d, not a new worker", i,
                  (int)seen[i]);
    }
    cr_assert_neq(seen[0], seen[1], "both new workers should answer");
}

/* Install example as the app, SIGUSR2, and expect the reload to fail (the
 * failures count reaches failures, the log has each of the needles) with
 * generation 1's workers old[] still the ones serving. */
static void mr_reload_fails(const char *app, const char *example, long failures,
                            const char *const *needles, const pid_t old[2])
{
    struct ma_status s;
    long long deadline = up_test_now_ms() + 10000;
    pid_t now[2];
    unsigned gen;

    ht_install(up_test_bin(example), app);
    ma_signal(SIGUSR2);
    for (;;) {
        ma_status(&s);
        if (s.reload_failures >= failures) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "%s: the reload did not fail within 10 s:\n%s\nlog:\n%s", example, s.text,
                     ma_log_text());
        up_test_nap(20);
    }
    cr_assert_eq(s.reload_failures, failures, "%s:\n%s", example, s.text);
    for (int i = 0; needles[i] != NULL; i++) {
        int ret = up_test_wait_log(ma.log, needles[i], 2000);
        cr_assert_eq(ret, 0, "%s: the log does not say '%s':\n%s", example, needles[i],
                     ma_log_text());
    }
    cr_assert_str_eq(ma_gen_state(&s, 1), "active", "%s:\n%s", example, s.text);
    cr_assert_eq(ma_gen_pids(&s, 1, "ready", now, 2), 2, "%s:\n%s", example, s.text);
    cr_assert(ht_pid_in(now[0], old, 2) && ht_pid_in(now[1], old, 2),
              "%s: generation 1's workers changed:\n%s", example, s.text);
    for (int i = 0; i < 4; i++) {
        pid_t pid = ma_get_pid(&gen);
        cr_assert_eq(gen, 1, "%s: answered by generation %u", example, gen);
        cr_assert(ht_pid_in(pid, old, 2), "%s: answered by %d, not an old worker", example,
                  (int)pid);
    }
}

BACKEND_TEST(master, broken_reload_keeps_old, .timeout = 30, .fini = ht_fini)
{
    static const char *const no_symbol[] = {"up_app", "failed", NULL};
    static const char *const fail_init[] = {"failed", NULL};
    static const char *const crash_init[] = {"failed", NULL};
    struct up_test_resp r = {0};
    struct ma_status s;
    pid_t old[2], fresh[2];
    const char *app = ht_app("examples/echo.so");

    ma_start(backend, app, NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);

    mr_reload_fails(app, "examples/no_symbol.so", 1, no_symbol, old);
    mr_reload_fails(app, "examples/fail_init.so", 2, fail_init, old);
    mr_reload_fails(app, "examples/crash_init.so", 3, crash_init, old);

    /* Good code again: generation 5 replaces generation 1. */
    ht_install(up_test_bin("examples/hello.so"), app);
    ma_signal(SIGUSR2);
    long long deadline = up_test_now_ms() + 5000;
    for (;;) {
        ma_get(&r);
        cr_assert_eq(r.status, 200, "head:\n%s", r.head);
        if (up_test_resp_header(&r, "X-Up-Pid") == NULL) {
            break; /* hello's answer, not echo's */
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "the fixed code does not answer within 5 s; log:\n%s", ma_log_text());
        up_test_nap(10);
    }
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
    ma_wait_workers(5, 2, &s);
    ma_gen_pids(&s, 5, "ready", fresh, 2);
    cr_assert(!ht_pid_in(fresh[0], old, 2) && !ht_pid_in(fresh[1], old, 2), "%s", s.text);
    cr_assert_eq(s.reload_failures, 3, "%s", s.text);
    cr_assert_geq(proc_wait_gone(old, 2, 5000), 0, "old workers still alive:\n%s", s.text);
}

BACKEND_TEST(master, reload_during_reload, .timeout = 30, .fini = ht_fini)
{
    static const char *const manual[] = {"--ready=manual", NULL};
    struct ma_status s;
    pid_t old[2], last[2];

    ma_start(backend, up_test_bin("examples/manual_ready.so"), manual);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);

    /* Generation 2 needs 300 ms to be ready; the second reload comes long
     * before that and must supersede it. */
    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    up_test_nap(50);
    ma_signal(SIGUSR2);
    long long gap = up_test_now_ms() - t0;

    long long deadline = up_test_now_ms() + 5000;
    for (;;) {
        ma_get_pid(NULL); /* every request is answered meanwhile */
        ma_status(&s);
        if (s.ngens == 1 && strcmp(ma_gen_state(&s, 3), "active") == 0 &&
            ma_gen_pids(&s, 3, "ready", last, 2) == 2 && ma_gen_pids(&s, 3, NULL, last, 2) == 2) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "not only generation 3 active within 5 s:\n%s\nlog:\n%s", s.text,
                     ma_log_text());
        up_test_nap(20);
    }
    cr_assert_null(strstr(s.text, "starting"), "%s", s.text);
    cr_assert_geq(proc_wait_gone(old, 2, 5000), 0, "generation 1 still alive:\n%s", s.text);
    for (int i = 0; i < 4; i++) {
        pid_t pid = ma_get_pid(NULL);
        cr_assert(ht_pid_in(pid, last, 2), "answered by %d, not generation 3:\n%s", (int)pid,
                  s.text);
    }
    if (gap < 250) {
        cr_assert_eq(up_test_file_contains(ma.log, "generation 2 serving"), 0,
                     "generation 2 served though it was superseded; log:\n%s", ma_log_text());
    }
}

/* ---- the app's snapshot ---- */

/* The inode of the memfd snapshot pid maps its app from (its name into
 * name), or 0 if it maps none. */
static unsigned long mr_app_inode(pid_t pid, char *name, size_t cap)
{
    static char maps[1 << 17];
    ssize_t n = proc_read(pid, "maps", maps, sizeof(maps));
    cr_assert_gt(n, 0, "cannot read /proc/%d/maps", (int)pid);
    for (char *line = maps; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL) {
            *end = '\0';
        }
        char *m = strstr(line, "/memfd:up-app");
        unsigned long ino = 0;
        if (m != NULL && sscanf(line, "%*s %*s %*s %*s %lu", &ino) == 1 && ino != 0) {
            snprintf(name, cap, "%s", m);
            return ino;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* How many of pid's fds are app snapshots (memfd:up-app...). */
static int mr_snapshot_fds(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char to[256] = "";
        if (readlinkat(dirfd(d), e->d_name, to, sizeof(to) - 1) > 0 &&
            strstr(to, "memfd:up-app") != NULL) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Both workers of generation id map one copy of the app, which is named
 * for the generation and not held open by either; its inode is returned. */
static unsigned long mr_one_copy(unsigned id, const pid_t w[2])
{
    char name[2][256], want[32];
    unsigned long ino[2];
    for (int i = 0; i < 2; i++) {
        ino[i] = mr_app_inode(w[i], name[i], sizeof(name[i]));
        cr_assert_neq(ino[i], 0, "worker %d maps no app snapshot", (int)w[i]);
        cr_assert_eq(mr_snapshot_fds(w[i]), 0, "worker %d keeps the snapshot open", (int)w[i]);
    }
    cr_assert_eq(ino[0], ino[1],
                 "generation %u's workers each have a copy of the app: %s (%lu), %s (%lu)", id,
                 name[0], ino[0], name[1], ino[1]);
    snprintf(want, sizeof(want), "memfd:up-app-g%u", id);
    cr_assert_not_null(strstr(name[0], want), "%s", name[0]);
    return ino[0];
}

/* A generation's workers map one copy of the app, made once by the master
 * and sealed (kind.h), not one each: N workers of an app of S bytes hold
 * S, not N x S. The master keeps the copy while the generation lives. */
BACKEND_TEST(master, a_generation_s_workers_share_one_copy_of_the_app, .timeout = 30,
             .fini = ht_fini)
{
    struct ma_status s;
    pid_t w1[2], w2[2];

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", w1, 2);
    unsigned long first = mr_one_copy(1, w1);
    cr_assert_eq(mr_snapshot_fds(ma.pid), 1, "the master holds %d snapshots",
                 mr_snapshot_fds(ma.pid));

    ma_signal(SIGUSR2);
    ma_wait_generation(2, 5000);
    ma_wait_workers(2, 2, &s);
    ma_gen_pids(&s, 2, "ready", w2, 2);
    unsigned long second = mr_one_copy(2, w2);
    cr_assert_neq(first, second, "generation 2 runs generation 1's copy");
    cr_assert_geq(proc_wait_gone(w1, 2, 5000), 0, "generation 1 still alive");
    /* Generation 1's copy went with it. */
    long long deadline = up_test_now_ms() + 5000;
    while (mr_snapshot_fds(ma.pid) != 1 && up_test_now_ms() < deadline) {
        up_test_nap(20);
    }
    cr_assert_eq(mr_snapshot_fds(ma.pid), 1, "the master holds %d snapshots, generation 2 alone",
                 mr_snapshot_fds(ma.pid));
}

/* A full disk under TMPDIR (where the snapshot directory would be) must
 * stop neither a start nor a deploy: an app's snapshots are made in
 * memory, and the directory is needed only where they cannot be. */
static char mr_mnt[64];

static void mr_full_fini(void)
{
    ht_fini();
    if (mr_mnt[0] != '\0') {
        umount2(mr_mnt, MNT_DETACH);
        rmdir(mr_mnt);
    }
}

/* Mount a small tmpfs (private to this user, as $XDG_RUNTIME_DIR must be)
 * at mr_mnt and fill it to the last block and the last inode; skips the
 * test where no tmpfs can be mounted. */
static void mr_full_tmpfs(void)
{
    snprintf(mr_mnt, sizeof(mr_mnt), "/tmp/up-test-full.XXXXXX");
    cr_assert_not_null(mkdtemp(mr_mnt));
    if (mount("tmpfs", mr_mnt, "tmpfs", 0, "size=256k,nr_inodes=16,mode=0700") < 0) {
        int e = errno;
        rmdir(mr_mnt);
        mr_mnt[0] = '\0';
        cr_skip_test("cannot mount a small tmpfs here (%s): run as root", strerror(e));
    }
    /* Full to the last block and the last inode. */
    char fill[128];
    snprintf(fill, sizeof(fill), "%s/fill", mr_mnt);
    int fd = open(fill, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    static const char block[4096];
    while (write(fd, block, sizeof(block)) > 0) {
    }
    cr_assert_eq(errno, ENOSPC, "filling the disk: %s", strerror(errno));
    close(fd);
    for (int i = 0;; i++) {
        snprintf(fill, sizeof(fill), "%s/inode-%d", mr_mnt, i);
        if ((fd = open(fill, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0) {
            break;
        }
        close(fd);
    }
    cr_assert_eq(errno, ENOSPC, "using up the inodes: %s", strerror(errno));
}

Test(master, a_full_disk_stops_neither_a_start_nor_a_reload, .timeout = 30, .fini = mr_full_fini)
{
    mr_full_tmpfs();
    char tmpdir[96];
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", mr_mnt);
    ma.env[0] = tmpdir;
    ma_start("auto", up_test_bin("examples/echo.so"), NULL);
    ma_wait_log("snapshots stay in memory", 2000);
    ma_signal(SIGUSR2);
    ma_wait_generation(2, 5000);
    cr_assert_eq(up_test_file_contains(ma.log, "failed to start"), 0,
                 "a reload failed on the full disk:\n%s", ma_log_text());
}

/* The default control socket on a full disk: the master serves without
 * one, says so and how to reach it, and reloads on a signal. A socket the
 * operator named with --control is theirs: there the start fails, saying
 * why. */
Test(master, a_full_disk_leaves_the_default_control_socket_out, .timeout = 30, .fini = mr_full_fini)
{
    mr_full_tmpfs();
    char xdg[96];
    snprintf(xdg, sizeof(xdg), "XDG_RUNTIME_DIR=%s", mr_mnt);
    ma.env[0] = xdg;
    ma.default_control = true;
    ma_start("auto", up_test_bin("examples/echo.so"), NULL);
    ma_wait_log("serving without one", 2000);
    cr_assert_eq(ht_file_lines(ma.log, "control socket: ", "No space left on device", "kill -USR2",
                               "--control PATH", NULL),
                 1, "log:\n%s", ma_log_text());
    ma_signal(SIGUSR2);
    ma_wait_log("generation 2 serving", 5000);
    cr_assert_eq(up_test_stop(ma.pid, HT_STOP_MS), 0, "log:\n%s", ma_log_text());
    ma.pid = -1;

    char named[128];
    snprintf(named, sizeof(named), "%s/ctl.sock", mr_mnt);
    const char *const extra[] = {"--control", named, NULL};
    ma_spawn("auto", up_test_bin("examples/echo.so"), extra);
    int status = up_test_wait_exit(ma.pid, 5000);
    ma.pid = -1;
    cr_assert_eq(status, 3, "exit %d with --control on the full disk; log:\n%s", status,
                 ma_log_text());
    cr_assert_eq(ht_file_lines(ma.log, "control socket: ", named, "No space left on device", NULL),
                 1, "log:\n%s", ma_log_text());
}

/* ---- respawn ---- */

BACKEND_TEST(master, killed_worker_respawned, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    pid_t pids[2], now[2];
    int served = 0;

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", pids, 2);
    cr_assert_eq(kill(pids[0], SIGKILL), 0);

    long long deadline = up_test_now_ms() + 5000;
    for (;;) {
        /* Every request is answered while the worker is replaced. */
        ma_get_pid(NULL);
        served++;
        ma_status(&s);
        if (strcmp(ma_gen_state(&s, 1), "active") == 0 && s.ngens == 1 &&
            ma_gen_pids(&s, 1, NULL, now, 2) == 2 && ma_gen_pids(&s, 1, "ready", now, 2) == 2 &&
            !ht_pid_in(pids[0], now, 2)) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline, "no replacement ready within 5 s:\n%s\nlog:\n%s",
                     s.text, ma_log_text());
    }
    cr_assert(ht_pid_in(pids[1], now, 2), "the surviving worker %d was replaced too:\n%s",
              (int)pids[1], s.text);
    cr_assert_geq(s.respawns, 1, "status:\n%s", s.text);
    pid_t fresh = now[0] == pids[1] ? now[1] : now[0];
    bool answered = false;
    for (int i = 0; i < 6 && !answered; i++) {
        answered = ma_get_pid(NULL) == fresh;
    }
    cr_assert(answered, "the new worker %d answers no request (%d served meanwhile)", (int)fresh,
              served);
}

/* ---- the control socket ---- */

BACKEND_TEST(master, control_socket, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    struct stat st;
    char out[4096];
    char ctl[PATH_MAX];

    ma_start(backend, up_test_bin("examples/echo.so"), NULL);
    ma_wait_workers(1, 2, &s);
    snprintf(ctl, sizeof(ctl), "%s", ma.ctl);
    cr_assert_eq(stat(ctl, &st), 0, "%s: %s", ctl, strerror(errno));
    cr_assert(S_ISSOCK(st.st_mode), "%s is not a socket", ctl);
    cr_assert_eq(st.st_mode & 0777, 0600, "control socket mode %o, expected 600",
                 (unsigned)(st.st_mode & 0777));

    int code = ma_cmd("reload", ctl, out, sizeof(out), NULL);
    cr_assert_eq(code, 0, "up-run reload exited %d:\n%s", code, out);
    ma_wait_generation(2, 5000);
    ma_wait_workers(2, 2, &s);

    code = ma_cmd("stop", ctl, out, sizeof(out), NULL);
    cr_assert_eq(code, 0, "up-run stop exited %d:\n%s", code, out);
    int status = up_test_wait_exit(ma.pid, 5000);
    cr_assert_neq(status, -ETIMEDOUT, "up-run still runs 5 s after stop; log:\n%s", ma_log_text());
    ma.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after stop; log:\n%s", status, ma_log_text());

    code = ma_cmd("status", ctl, out, sizeof(out), NULL);
    cr_assert_eq(code, 1, "status to a stopped master exited %d:\n%s", code, out);
    cr_assert_not_null(strstr(out, ctl), "the message does not name the socket:\n%s", out);
    code = ma_cmd("status", ht_path("nobody.sock"), out, sizeof(out), NULL);
    cr_assert_eq(code, 1, "status to nobody exited %d:\n%s", code, out);
    cr_assert_not_null(strstr(out, "nobody.sock"), "the message does not name the socket:\n%s",
                       out);
    cr_assert_not_null(strstr(out, "no master"), "unclear message:\n%s", out);
}

/* ---- --watch ---- */

BACKEND_TEST(master, watch_reloads_on_change, .timeout = 30, .fini = ht_fini)
{
    static const char *const watch[] = {"--watch", NULL};
    static const char *const junk[] = {".app.so.swp", "app.so~"};
    struct up_test_resp r = {0};
    struct ma_status s;
    char path[PATH_MAX];
    const char *app = ht_app("examples/hello.so");

    /* The app sits in a directory of its own: the log and the control
     * socket, which change all the time, are outside the watched one. */
    ma_start(backend, app, watch);
    ma_wait_workers(1, 2, &s);
    ma_get(&r);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);

    ht_install(up_test_bin("examples/echo.so"), app);
    ma_wait_generation(2, 5000);
    ma_wait_workers(2, 2, &s);
    long reloads = s.reloads;

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", ht_path("app"), junk[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
        cr_assert_eq(write(fd, "junk\n", 5), 5);
        close(fd);
    }
    /* Waiting for something not to happen: past the watch's debounce. */
    up_test_nap(1000);
    ma_status(&s);
    cr_assert_eq(s.reloads, reloads, "an editor file triggered a reload:\n%s\nlog:\n%s", s.text,
                 ma_log_text());
    cr_assert_str_eq(ma_gen_state(&s, 2), "active", "%s", s.text);
    cr_assert_eq(s.ngens, 1, "%s", s.text);
    unsigned gen;
    ma_get_pid(&gen);
    cr_assert_eq(gen, 2);
}

BACKEND_TEST(master, watch_failing_first_generation_serves_503, .timeout = 30, .fini = ht_fini)
{
    static const char *const watch[] = {"--watch", NULL};
    struct up_test_resp r = {0};
    const char *app = ht_app("examples/no_symbol.so");

    ma_spawn(backend, app, watch);
    int ret = up_test_wait_ready(ma.pid, ma.port, 10000);
    cr_assert_eq(ret, 0, "up-run not listening: %s; log:\n%s", strerror(-ret), ma_log_text());
    /* A request that comes while generation 1 starts waits for it, and
     * gets the 503 once it failed. */
    ma_get(&r);
    cr_assert_eq(r.status, 503, "head:\n%s%s\nlog:\n%s", r.head, r.body, ma_log_text());
    cr_assert_not_null(strstr(r.body, "up_app"), "the 503 does not say why:\n%s", r.body);
    cr_assert(up_test_alive(ma.pid), "up-run exited; log:\n%s", ma_log_text());

    ht_install(up_test_bin("examples/hello.so"), app);
    long long deadline = up_test_now_ms() + 5000;
    for (;;) {
        ma_get(&r);
        if (r.status == 200) {
            break;
        }
        cr_assert_eq(r.status, 503, "head:\n%s", r.head);
        cr_assert_lt(up_test_now_ms(), deadline, "still %d 5 s after the fix; log:\n%s", r.status,
                     ma_log_text());
        up_test_nap(20);
    }
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
}

/* inotify's per-user limits, which an editor or a file sync tool of the
 * same user may have used up, come back from the kernel as "Too many open
 * files" and "No space left on device": --watch says which limit it is
 * and how to raise it. A child of the test, as a uid of its own, holds
 * every inotify instance that uid may have; up-run runs as that uid. */
Test(master, watch_without_inotify_says_which_limit, .timeout = 30, .fini = ht_fini)
{
    up_test_require_root();
    const unsigned uid = 64999; /* no one else's: its instances are the test's alone */
    int ready[2];
    cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
    pid_t holder = fork();
    cr_assert_geq(holder, 0);
    if (holder == 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
            _exit(1);
        }
        int n = 0;
        while (inotify_init1(IN_CLOEXEC) >= 0) {
            n++;
        }
        /* EMFILE with fds to spare: the instances are all taken. */
        char ok = errno == EMFILE && dup(0) >= 0 ? 'y' : 'n';
        (void)write(ready[1], &ok, 1);
        pause();
        _exit(0);
    }
    ht_stop_at_fini(holder);
    close(ready[1]);
    char ok = 0;
    cr_assert_eq(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    if (ok != 'y') {
        cr_skip_test("the fd limit came before inotify's max_user_instances");
    }
    char port[16], out[4096], ids[32];
    snprintf(port, sizeof(port), "%d", up_test_free_port());
    snprintf(ids, sizeof(ids), "--reuid=%u", uid);
    char gid[32];
    snprintf(gid, sizeof(gid), "--regid=%u", uid);
    ma.public_bins = true;
    const char *wrap[] = {ht_util("setpriv"), ids, gid, "--clear-groups", "--", NULL};
    memcpy(ma.cmd_wrap, wrap, sizeof(wrap));
    const char *args[] = {"-p",        port,
                          "--control", "/tmp/up-inotify-test.sock",
                          "--watch",   up_test_public_bin("examples/hello.so"),
                          NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 3, "%s", out);
    cr_assert_not_null(strstr(out, "this user's inotify instances are all taken "
                                   "(fs.inotify.max_user_instances = "),
                       "%s", out);
    cr_assert_not_null(strstr(out, "raise it, e.g. `sysctl fs.inotify.max_user_instances="), "%s",
                       out);
}
