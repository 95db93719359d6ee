/*
 * kind: the snapshot an app's generation runs, and how its workers get it.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "kind.h"

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof(dir), "/tmp/up-test-kind.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/gen-7.so", dir);
    unlink(path);
    rmdir(dir);
}

static struct up_kind_params app_params(const char *app)
{
    return (struct up_kind_params){.kind = UP_KIND_APP,
                                   .bin = up_test_bin("up-worker"),
                                   .app = app,
                                   .app_fd = -1,
                                   .title = "up",
                                   .max_head = 16384};
}

/* snap holds exactly what app holds. */
static void assert_same_bytes(const struct up_kind_snap *snap, const char *app)
{
    size_t len = 0;
    char *want = ht_file_text(app, &len);
    char *got = malloc(len + 1);
    cr_assert_not_null(got);
    cr_assert_eq(pread(snap->fd, got, len + 1, 0), (ssize_t)len, "the snapshot's size differs");
    cr_assert(memcmp(want, got, len) == 0, "the snapshot's bytes differ from %s", app);
    free(want);
    free(got);
}

Test(kind, an_app_is_snapshotted_once_into_a_sealed_memfd, .timeout = 10)
{
    mkdir_tmp();
    const char *app = up_test_bin("examples/hello.so");
    struct up_kind_params p = app_params(app);
    struct up_kind_snap snap;
    char why[256] = "";
    cr_assert_eq(up_kind_prepare(&p, 7, dir, &snap, why, sizeof(why)), 0, "%s", why);
    cr_assert_geq(snap.fd, 0);
    cr_assert(!snap.file, "a file was made, not a memfd: %s", strerror(-snap.memfd_err));
    cr_assert_str_eq(snap.path, app, "the workers are told the app's own name");
    char link[64], name[256] = "";
    snprintf(link, sizeof(link), "/proc/self/fd/%d", snap.fd);
    cr_assert_gt(readlink(link, name, sizeof(name) - 1), 0);
    cr_assert_not_null(strstr(name, "memfd:up-app-g7"), "fd is %s", name);
    assert_same_bytes(&snap, app);
    /* Nobody can change it, nor unseal it. */
    int seals = fcntl(snap.fd, F_GET_SEALS);
    int all = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
    cr_assert_eq(seals & all, all, "seals %#x", seals);
    cr_assert_eq(pwrite(snap.fd, "x", 1, 0), -1);
    cr_assert_eq(errno, EPERM);
    cr_assert_eq(ftruncate(snap.fd, 1), -1);
    cr_assert_eq(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, snap.fd, 0), MAP_FAILED);
    /* It may be mapped to run, as dlopen() does. */
    void *x = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, snap.fd, 0);
    cr_assert_neq(x, MAP_FAILED, "PROT_EXEC: %s", strerror(errno));
    munmap(x, 4096);
    /* Nothing on disk, and release closes it. */
    char file[128];
    snprintf(file, sizeof(file), "%s/gen-7.so", dir);
    cr_assert_eq(access(file, F_OK), -1);
    int fd = snap.fd;
    up_kind_release(&snap);
    cr_assert_eq(fcntl(fd, F_GETFD), -1, "the memfd is still open");
    cr_assert_eq(snap.fd, -1);
    rm_tmp();
}

Test(kind, a_missing_app_fails_and_leaves_nothing, .timeout = 10)
{
    mkdir_tmp();
    struct up_kind_params p = app_params("/nonexistent/app.so");
    struct up_kind_snap snap;
    char why[256] = "";
    cr_assert_eq(up_kind_prepare(&p, 7, dir, &snap, why, sizeof(why)), -ENOENT);
    cr_assert_not_null(strstr(why, "cannot copy /nonexistent/app.so"), "%s", why);
    cr_assert_eq(snap.fd, -1);
    cr_assert(!snap.file);
    up_kind_release(&snap); /* harmless */
    cr_assert_eq(rmdir(dir), 0, "something was left in %s", dir);
}

/* Run check() in a child, with setup() done first there; its exit code:
 * 0 passed, 77 setup not possible here (the test is skipped), else which
 * check failed. */
static int in_child(int (*setup)(void), int (*check)(void))
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int r = setup();
        _exit(r != 0 ? r : check());
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died of a signal");
    return WEXITSTATUS(st);
}

/* vm.memfd_noexec=2 in a pid namespace of our own (the only place it
 * applies), then check() as pid 1 there. */
static int (*ns_check)(void);

static int noexec_ns(void)
{
    if (access("/proc/sys/vm/memfd_noexec", F_OK) != 0 || unshare(CLONE_NEWPID) < 0) {
        return 77;
    }
    pid_t inner = fork();
    if (inner == 0) {
        int s = open("/proc/sys/vm/memfd_noexec", O_WRONLY);
        if (s < 0 || write(s, "2", 1) != 1) {
            _exit(77);
        }
        close(s);
        _exit(ns_check());
    }
    int st = 0;
    _exit(inner > 0 && waitpid(inner, &st, 0) == inner && WIFEXITED(st) ? WEXITSTATUS(st) : 20);
}

static int nothing(void)
{
    return 0;
}

static int snapshot_is_a_runnable_memfd(void)
{
    struct up_kind_params p = app_params(up_test_bin("examples/hello.so"));
    struct up_kind_snap snap;
    char why[256] = "";
    if (up_kind_prepare(&p, 7, dir, &snap, why, sizeof(why)) != 0) {
        return 10;
    }
    if (snap.file || snap.fd < 0) {
        return 11;
    }
    void *x = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, snap.fd, 0);
    if (x == MAP_FAILED) {
        return 12;
    }
    up_kind_release(&snap);
    return 0;
}

/* Where memfds may never be executed (vm.memfd_noexec=2), one that says
 * so (MFD_NOEXEC_SEAL) is still mapped to run by dlopen(): the snapshot
 * stays in memory. */
Test(kind, under_memfd_noexec_2_the_snapshot_is_still_a_memfd, .timeout = 10)
{
    mkdir_tmp();
    ns_check = snapshot_is_a_runnable_memfd;
    int r = in_child(nothing, noexec_ns);
    rm_tmp();
    if (r == 77) {
        cr_skip_test("no pid namespace with vm.memfd_noexec=2 here (before 6.3, or not root)");
    }
    cr_assert_eq(r, 0, "10: prepare failed, 11: not a memfd, 12: it cannot be mapped to run");
}

/* A sandbox that refuses memfd_create() (seccomp: ENOSYS, as a kernel
 * before 3.17 would say). */
static int no_memfd(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_memfd_create, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
        return 77;
    }
    return 0;
}

static int snapshot_is_the_file(void)
{
    const char *app = up_test_bin("examples/hello.so");
    struct up_kind_params p = app_params(app);
    struct up_kind_snap snap;
    char why[256] = "";
    if (up_kind_prepare(&p, 7, dir, &snap, why, sizeof(why)) != 0) {
        return 10;
    }
    char file[128];
    snprintf(file, sizeof(file), "%s/gen-7.so", dir);
    if (!snap.file || snap.fd < 0 || strcmp(snap.path, file) != 0 || snap.memfd_err != -ENOSYS) {
        return 11;
    }
    struct stat a, b;
    if (fstat(snap.fd, &a) < 0 || stat(file, &b) < 0 || a.st_ino != b.st_ino) {
        return 12;
    }
    up_kind_release(&snap);
    return access(file, F_OK) == 0 ? 13 : 0;
}

/* Without memfds the snapshot is a file in the snapshot dir, opened for
 * the workers alike, and removed with the generation. */
Test(kind, without_memfds_the_snapshot_is_a_file, .timeout = 10)
{
    mkdir_tmp();
    int r = in_child(no_memfd, snapshot_is_the_file);
    rm_tmp();
    if (r == 77) {
        cr_skip_test("cannot install a seccomp filter here");
    }
    cr_assert_eq(r, 0,
                 "10: prepare failed, 11: not a file snapshot with -ENOSYS, 12: the fd is not "
                 "that file, 13: release left the file");
}

static int no_dir_fails(void)
{
    struct up_kind_params p = app_params(up_test_bin("examples/hello.so"));
    struct up_kind_snap snap;
    char why[256] = "";
    if (up_kind_prepare(&p, 7, "", &snap, why, sizeof(why)) != -ENOSYS) {
        return 10;
    }
    if (snap.fd != -1 || snap.file || strstr(why, "cannot copy") == NULL) {
        return 11;
    }
    return 0;
}

/* Without memfds and without a snapshot dir (the master could not make
 * one: a full disk) the generation cannot start, and says why. */
Test(kind, without_memfds_or_a_dir_the_snapshot_fails, .timeout = 10)
{
    int r = in_child(no_memfd, no_dir_fails);
    if (r == 77) {
        cr_skip_test("cannot install a seccomp filter here");
    }
    cr_assert_eq(r, 0, "10: not -ENOSYS, 11: something left, or no reason given");
}

Test(kind, a_worker_gets_the_snapshot_as_fd_4, .timeout = 10)
{
    struct up_kind_params p = app_params("/srv/app.so");
    p.app_fd = 42;
    static struct up_kind_plan plan;
    cr_assert_eq(up_kind_plan(&p, 7, 8, &plan), 0);
    cr_assert_eq(plan.child.fds[3], 7);
    cr_assert_eq(plan.child.fds[4], 42);
    cr_assert_eq(plan.child.nfds, 5);
    int app = -1, fd_arg = -1;
    for (int i = 0; plan.argv[i] != NULL; i++) {
        if (strcmp(plan.argv[i], "/srv/app.so") == 0 && app < 0) {
            app = i;
        }
        if (strcmp(plan.argv[i], "--app-fd") == 0) {
            fd_arg = i;
        }
    }
    cr_assert_geq(fd_arg, 0, "no --app-fd");
    cr_assert_str_eq(plan.argv[fd_arg + 1], "4");
    cr_assert_gt(app, fd_arg, "--app-fd comes before the app");
    /* Without a snapshot fd (not an app's generation): nothing of it. */
    p.app_fd = -1;
    cr_assert_eq(up_kind_plan(&p, 7, 8, &plan), 0);
    cr_assert_eq(plan.child.fds[4], -1);
    cr_assert_eq(plan.child.nfds, 4);
    for (int i = 0; plan.argv[i] != NULL; i++) {
        cr_assert_str_neq(plan.argv[i], "--app-fd");
    }
}

/* The master's event loop choice reaches an app's worker in UP_BACKEND;
 * without one, nothing is set and the environment's holds. */
Test(kind, a_worker_is_told_the_backend, .timeout = 10)
{
    struct up_kind_params p = app_params("/srv/app.so");
    p.backend = "epoll";
    static struct up_kind_plan plan;
    cr_assert_eq(up_kind_plan(&p, 7, 8, &plan), 0);
    cr_assert_str_eq(plan.child.env[0], "UP_BACKEND=epoll");
    cr_assert_null(plan.child.env[1]);
    p.backend = NULL;
    cr_assert_eq(up_kind_plan(&p, 7, 8, &plan), 0);
    cr_assert_null(plan.child.env[0]);
}
