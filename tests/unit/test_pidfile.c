/*
 * pidfile: written whole and never through a link, refused while it names
 * a running master, replaced when stale, and removed only by the process it
 * names.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "../lib/testlib.h"
#include "pidfile.h"

static char pf_base[64];
static pid_t pf_child = -1;

static void pf_fini(void)
{
    if (pf_child > 0) {
        kill(pf_child, SIGKILL);
        waitpid(pf_child, NULL, 0);
        pf_child = -1;
    }
    up_test_remove_dir(pf_base);
}

static const char *pf_path(const char *name)
{
    static char ring[4][128];
    static unsigned next;
    char *buf = ring[next++ % 4];
    if (pf_base[0] == '\0') {
        strcpy(pf_base, "/tmp/up-pidfile-XXXXXX");
        cr_assert_not_null(mkdtemp(pf_base), "mkdtemp: %s", strerror(errno));
    }
    snprintf(buf, 128, "%s/%s", pf_base, name);
    return buf;
}

static void pf_put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static const char *pf_get(const char *path)
{
    static char text[256];
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(text, 1, sizeof(text) - 1, f) : 0;
    text[n] = '\0';
    if (f != NULL) {
        fclose(f);
    }
    return text;
}

static const char *pf_self(void)
{
    static char text[32];
    snprintf(text, sizeof(text), "%d\n", (int)getpid());
    return text;
}

/* The number of entries in the test's directory (no temp file left). */
static int pf_entries(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", pf_base);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

Test(pidfile, written_then_removed, .timeout = 10, .fini = pf_fini)
{
    int before = up_test_fd_count();
    const char *path = pf_path("up.pid");
    pid_t owner = 0;
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(pf_entries(), 1, "a temp file was left beside the pidfile");
    pid_t pid = 0;
    cr_assert_eq(up_pidfile_read(path, &pid), 0);
    cr_assert_eq(pid, getpid());
    cr_assert_eq(up_pidfile_remove(path), 0);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(up_pidfile_remove(path), -ENOENT);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(pidfile, removal_leaves_another_process_file, .timeout = 10, .fini = pf_fini)
{
    const char *path = pf_path("up.pid");
    pf_put(path, "1\n");
    cr_assert_eq(up_pidfile_remove(path), -ESRCH);
    cr_assert_str_eq(pf_get(path), "1\n");
    pf_put(path, "not a pid\n");
    cr_assert_eq(up_pidfile_remove(path), -EINVAL);
    cr_assert_str_eq(pf_get(path), "not a pid\n");
}

Test(pidfile, stale_file_is_replaced, .timeout = 10, .fini = pf_fini)
{
    const char *path = pf_path("up.pid");
    pid_t owner = 0;
    /* A pid that is gone. */
    pid_t dead = fork();
    cr_assert_geq(dead, 0);
    if (dead == 0) {
        _exit(0);
    }
    waitpid(dead, NULL, 0);
    char text[32];
    snprintf(text, sizeof(text), "%d\n", (int)dead);
    pf_put(path, text);
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
    /* A live process that is not an up-run master (the test runner). */
    snprintf(text, sizeof(text), "%d\n", (int)getppid());
    pf_put(path, text);
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
    /* Garbage. */
    pf_put(path, "garbage");
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
    cr_assert_eq(owner, 0, "ret_owner written for a stale file");
}

/* Start a process whose command line is "up master", as up-run's master
 * titles itself, and wait until /proc shows it. */
static pid_t pf_fake_master(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sleep", "up master", "30", (char *)NULL);
        _exit(127);
    }
    pf_child = pid;
    for (int i = 0; i < 500 && !up_pidfile_is_master(pid); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    cr_assert(up_pidfile_is_master(pid), "the fake master never showed its title");
    return pid;
}

Test(pidfile, running_master_file_is_refused, .timeout = 10, .fini = pf_fini)
{
    const char *path = pf_path("up.pid");
    pid_t master = pf_fake_master();
    char text[32];
    snprintf(text, sizeof(text), "%d\n", (int)master);
    pf_put(path, text);
    pid_t owner = 0;
    cr_assert_eq(up_pidfile_write(path, &owner), -EBUSY);
    cr_assert_eq(owner, master);
    cr_assert_str_eq(pf_get(path), text);
    cr_assert_eq(pf_entries(), 1, "a temp file was left beside the pidfile");
    cr_assert(!up_pidfile_is_master(getpid()));
    /* Our own pid in the file (a previous life of this pid) is stale. */
    pf_put(path, pf_self());
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
}

Test(pidfile, never_written_through_a_link, .timeout = 10, .fini = pf_fini)
{
    const char *path = pf_path("up.pid");
    const char *victim = pf_path("victim");
    char tmp[160];
    pid_t owner = 0;
    pf_put(victim, "data\n");
    /* A symlink at the pidfile's name is replaced, not followed. */
    cr_assert_eq(symlink(victim, path), 0);
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(victim), "data\n");
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode), "the pidfile is still a link");
    /* A symlink at the temp file's name makes the write fail. */
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    cr_assert_eq(symlink(victim, tmp), 0);
    cr_assert_eq(up_pidfile_write(path, &owner), -EEXIST);
    cr_assert_str_eq(pf_get(victim), "data\n");
    /* A leftover regular temp file of ours is replaced. */
    cr_assert_eq(unlink(tmp), 0);
    pf_put(tmp, "old");
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
    cr_assert_neq(access(tmp, F_OK), 0);
}

Test(pidfile, fifo_at_the_path_does_not_block, .timeout = 10, .fini = pf_fini)
{
    const char *path = pf_path("up.pid");
    cr_assert_eq(mkfifo(path, 0600), 0);
    pid_t owner = 0;
    cr_assert_eq(up_pidfile_write(path, &owner), 0);
    cr_assert_str_eq(pf_get(path), pf_self());
}
