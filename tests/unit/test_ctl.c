/*
 * ctl: the checks that decide whether a control socket's directory and the
 * master at the other end may be trusted (the rules in ctl.h). Acting as
 * another user needs root; those tests skip otherwise.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "../lib/testlib.h"
#include "ctl.h"

static char ctl_base[64];

static void ctl_fini(void)
{
    up_test_remove_dir(ctl_base);
}

/* base/name, base made on first use. Static ring, like up_test_bin(). */
static const char *ctl_path(const char *name)
{
    static char ring[4][128];
    static unsigned next;
    char *buf = ring[next++ % 4];
    if (ctl_base[0] == '\0') {
        strcpy(ctl_base, "/tmp/up-ctl-XXXXXX");
        cr_assert_not_null(mkdtemp(ctl_base), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, 128, "%s/%s", ctl_base, name);
    return buf;
}

/* A directory with exactly mode (mkdir is subject to the umask). */
static const char *ctl_dir(const char *name, mode_t mode)
{
    const char *dir = ctl_path(name);
    cr_assert_eq(mkdir(dir, 0700), 0, "mkdir %s: %s", dir, strerror(errno));
    cr_assert_eq(chmod(dir, mode), 0);
    return dir;
}

#define EXPECT_REFUSED(call, dir, words)                                                           \
    do {                                                                                           \
        char err_[512] = "";                                                                       \
        const char *dir_ = (dir);                                                                  \
        int r_ = call(dir_, err_, sizeof(err_));                                                   \
        cr_assert_eq(r_, -EPERM, #call "(%s) = %d, expected -EPERM (%s)", dir_, r_, err_);         \
        cr_assert_not_null(strstr(err_, dir_), "the message does not name %s: %s", dir_, err_);    \
        cr_assert_not_null(strstr(err_, words), "the message does not say '%s': %s", words, err_); \
    } while (0)

#define EXPECT_TRUSTED(call, dir)                                                                  \
    do {                                                                                           \
        char err_[512] = "";                                                                       \
        const char *dir_ = (dir);                                                                  \
        int r_ = call(dir_, err_, sizeof(err_));                                                   \
        cr_assert_eq(r_, 0, #call "(%s) = %d: %s", dir_, r_, err_);                                \
    } while (0)

Test(ctl, private_dir_is_own_0700, .timeout = 10, .fini = ctl_fini)
{
    EXPECT_TRUSTED(up_ctl_check_private_dir, ctl_dir("own", 0700));
    EXPECT_TRUSTED(up_ctl_check_private_dir, ctl_dir("own-ro", 0500));
}

Test(ctl, private_dir_refuses_group_or_other_bits, .timeout = 10, .fini = ctl_fini)
{
    EXPECT_REFUSED(up_ctl_check_private_dir, ctl_dir("wide", 0755), "mode 0755");
    EXPECT_REFUSED(up_ctl_check_private_dir, ctl_dir("group", 0710), "mode 0710");
    EXPECT_REFUSED(up_ctl_check_private_dir, ctl_dir("sticky", 01777), "mode 1777");
}

Test(ctl, private_dir_refuses_symlink, .timeout = 10, .fini = ctl_fini)
{
    const char *link = ctl_path("link");
    cr_assert_eq(symlink(ctl_dir("target", 0700), link), 0);
    EXPECT_REFUSED(up_ctl_check_private_dir, link, "symbolic link");
}

Test(ctl, private_dir_refuses_another_owner, .timeout = 10, .fini = ctl_fini)
{
    up_test_require_root();
    const char *dir = ctl_dir("theirs", 0700);
    cr_assert_eq(chown(dir, UP_TEST_OTHER_UID, UP_TEST_OTHER_UID), 0);
    EXPECT_REFUSED(up_ctl_check_private_dir, dir, "uid 65534");
    /* ... unless it is the directory of the user the master became. */
    char err[256];
    cr_assert_eq(up_ctl_check_private_dir_of(dir, UP_TEST_OTHER_UID, err, sizeof(err)), 0, "%s",
                 err);
}

Test(ctl, private_dir_refuses_a_file_and_reports_a_missing_one, .timeout = 10, .fini = ctl_fini)
{
    const char *file = ctl_path("file");
    int fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    EXPECT_REFUSED(up_ctl_check_private_dir, file, "regular file");
    char err[256];
    cr_assert_eq(up_ctl_check_private_dir(ctl_path("missing"), err, sizeof(err)), -ENOENT);
}

Test(ctl, shared_dir_rules, .timeout = 10, .fini = ctl_fini)
{
    EXPECT_TRUSTED(up_ctl_check_shared_dir, ctl_dir("plain", 0755));
    EXPECT_TRUSTED(up_ctl_check_shared_dir, ctl_dir("tmp-like", 01777));
    EXPECT_TRUSTED(up_ctl_check_shared_dir, ctl_dir("group", 0770));
    EXPECT_REFUSED(up_ctl_check_shared_dir, ctl_dir("open", 0777), "not sticky");
    /* The directory a symlink leads to is what holds the socket. */
    const char *link = ctl_path("link");
    cr_assert_eq(symlink(ctl_path("plain"), link), 0);
    EXPECT_TRUSTED(up_ctl_check_shared_dir, link);
}

Test(ctl, shared_dir_refuses_another_owner, .timeout = 10, .fini = ctl_fini)
{
    up_test_require_root();
    const char *dir = ctl_dir("theirs", 0755);
    cr_assert_eq(chown(dir, UP_TEST_OTHER_UID, UP_TEST_OTHER_UID), 0);
    EXPECT_REFUSED(up_ctl_check_shared_dir, dir, "uid 65534");
}

Test(ctl, peer_of_this_user_is_trusted, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    uid_t uid = 12345;
    cr_assert_eq(up_ctl_check_peer(sv[0], geteuid(), &uid), 0);
    cr_assert_eq(uid, 12345, "ret_uid written on success");
    close(sv[0]);
    close(sv[1]);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(ctl, peer_of_another_user_is_refused, .timeout = 10)
{
    up_test_require_root();
    int before = up_test_fd_count();
    /* An abstract address: the other user needs no directory to bind in.
     * The listener's credentials are taken at listen(), after setuid(). */
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "up-ctl-test-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int ready[2], hold[2];
    cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(hold, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (up_test_become_other_user() < 0 || bind(fd, (struct sockaddr *)&a, len) < 0 ||
            listen(fd, 4) < 0 || write(ready[1], "r", 1) != 1) {
            _exit(1);
        }
        char c;
        (void)read(hold[0], &c, 1); /* until the test is done */
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "the other user's listener did not start");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, len), 0, "connect: %s", strerror(errno));
    uid_t uid = 0;
    int r = up_ctl_check_peer(fd, geteuid(), &uid);
    /* The user a master became with --user is trusted when named. */
    uid_t named = 0;
    int r_named = up_ctl_check_peer(fd, UP_TEST_OTHER_UID, &named);
    close(fd);
    close(ready[0]);
    close(hold[1]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert_eq(r, -EPERM, "a master of uid 65534 was trusted (%d)", r);
    cr_assert_eq(uid, UP_TEST_OTHER_UID);
    cr_assert_eq(r_named, 0, "the master's --user was not trusted");
    cr_assert_eq(up_test_fd_count(), before);
}
