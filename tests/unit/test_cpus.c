#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "cpus.h"

Test(cpus, cgroup_max_parses_quota_rounded_up, .timeout = 10)
{
    cr_assert_eq(up_cpus_from_cgroup_max("150000 100000"), 2);
    cr_assert_eq(up_cpus_from_cgroup_max("150000 100000\n"), 2);
    cr_assert_eq(up_cpus_from_cgroup_max("50000 100000"), 1);
    cr_assert_eq(up_cpus_from_cgroup_max("100000 100000"), 1);
    cr_assert_eq(up_cpus_from_cgroup_max("100001 100000"), 2);
    cr_assert_eq(up_cpus_from_cgroup_max("400000 100000\n"), 4);
    cr_assert_eq(up_cpus_from_cgroup_max("1000 100000"), 1);
    cr_assert_eq(up_cpus_from_cgroup_max("0 100000"), 1);
    cr_assert_eq(up_cpus_from_cgroup_max("18446744073709551615 1"), LONG_MAX);
}

Test(cpus, cgroup_max_without_limit_is_minus_one, .timeout = 10)
{
    cr_assert_eq(up_cpus_from_cgroup_max("max 100000"), -1);
    cr_assert_eq(up_cpus_from_cgroup_max("max 100000\n"), -1);
}

Test(cpus, cgroup_max_rejects_malformed, .timeout = 10)
{
    static const char *const bad[] = {
        "",
        "max",
        "max\n",
        "150000",
        "150000 0",
        "150000 ",
        " 150000 1",
        "150000  100000",
        "150000\t100000",
        "-1 100000",
        "1.5 1",
        "150000 1000x",
        "150000 100000\n\n",
        "maxi 100000",
        "99999999999999999999 1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(up_cpus_from_cgroup_max(bad[i]), -EINVAL, "\"%s\"", bad[i]);
    }
}

Test(cpus, cgroup_path_finds_the_v2_line, .timeout = 10)
{
    char buf[64];
    cr_assert_eq(up_cpus_cgroup_path("0::/system.slice/up.service\n", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/system.slice/up.service");
    cr_assert_eq(up_cpus_cgroup_path("0::/\n", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/");
    /* Hybrid: v1 lines first, the v2 line last, no final newline. */
    cr_assert_eq(up_cpus_cgroup_path("4:memory:/a\n1:cpu,cpuacct:/b\n0::/c/d", buf, sizeof(buf)),
                 0);
    cr_assert_str_eq(buf, "/c/d");
    /* "10::/x" is not hierarchy 0. */
    cr_assert_eq(up_cpus_cgroup_path("10::/x\n0::/y\n", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/y");
}

Test(cpus, cgroup_path_errors, .timeout = 10)
{
    char buf[8] = "keep";
    cr_assert_eq(up_cpus_cgroup_path("", buf, sizeof(buf)), -ENOENT);
    cr_assert_eq(up_cpus_cgroup_path("4:memory:/a\n1:cpu:/b\n", buf, sizeof(buf)), -ENOENT);
    cr_assert_eq(up_cpus_cgroup_path("0::\n", buf, sizeof(buf)), -ENOENT);
    cr_assert_eq(up_cpus_cgroup_path("0::/1234567\n", buf, sizeof(buf)), -ENAMETOOLONG);
    cr_assert_str_eq(buf, "keep", "buf must be untouched on failure");
    cr_assert_eq(up_cpus_cgroup_path("0::/123456\n", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/123456");
}

/* A fake cgroup tree in a temporary directory. */
struct tree {
    char root[64];
};

static void tree_mkdir(const struct tree *t, const char *sub)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s", t->root, sub);
    cr_assert_eq(mkdir(path, 0700), 0, "mkdir %s: %s", path, strerror(errno));
}

static void tree_write(const struct tree *t, const char *sub, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s/cpu.max", t->root, sub);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void tree_remove(const struct tree *t)
{
    static const char *const dirs[] = {"/a/b/c", "/a/b", "/a", ""};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s/cpu.max", t->root, dirs[i]);
        (void)unlink(path); /* not every level has one */
        snprintf(path, sizeof(path), "%s%s", t->root, dirs[i]);
        cr_assert_eq(rmdir(path), 0, "rmdir %s: %s", path, strerror(errno));
    }
}

static void tree_make(struct tree *t)
{
    snprintf(t->root, sizeof(t->root), "/tmp/up-test-cpus-XXXXXX");
    cr_assert_not_null(mkdtemp(t->root));
    tree_mkdir(t, "/a");
    tree_mkdir(t, "/a/b");
    tree_mkdir(t, "/a/b/c");
}

Test(cpus, cgroup_limit_takes_the_tightest_ancestor, .timeout = 10)
{
    int before = up_test_fd_count();
    struct tree t;
    tree_make(&t);
    tree_write(&t, "/a", "250000 100000\n");
    tree_write(&t, "/a/b", "150000 100000\n");
    tree_write(&t, "/a/b/c", "max 100000\n");

    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/b/c"), 2);
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/b/c/"), 2);
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/b"), 2);
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a"), 3);
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/"), -1, "root without cpu.max: no limit");
    /* A cgroup that vanished still inherits what is above it. */
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/gone"), 3);

    /* The root level counts too: a container's namespace root has cpu.max. */
    tree_write(&t, "", "100000 100000\n");
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/b/c"), 1);
    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/"), 1);

    tree_remove(&t);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(cpus, cgroup_limit_ignores_unreadable_levels, .timeout = 10)
{
    int before = up_test_fd_count();
    struct tree t;
    tree_make(&t);
    tree_write(&t, "/a", "garbage\n");
    tree_write(&t, "/a/b", "max 100000\n");

    cr_assert_eq(up_cpus_cgroup_limit(t.root, "/a/b/c"), -1);
    cr_assert_eq(up_cpus_cgroup_limit("/nonexistent-up-test", "/a/b"), -1);

    tree_remove(&t);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(cpus, usable_is_within_online_cpus, .timeout = 10)
{
    int before = up_test_fd_count();
    long n = up_cpus_usable();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_geq(n, 1);
    cr_assert_leq(n, online, "usable %ld > online %ld", n, online);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(cpus, usable_follows_the_affinity_mask, .timeout = 10)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE && first < 0; i++) {
        if (CPU_ISSET(i, &set)) {
            first = i;
        }
    }
    cr_assert_geq(first, 0);
    /* Criterion runs each test in its own process: narrowing this one's
     * mask affects no other test. */
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0);
    cr_assert_eq(up_cpus_usable(), 1);
}
