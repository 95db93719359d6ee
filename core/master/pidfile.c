#include "pidfile.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A small file whole into buf (NUL-terminated; NULs inside stay). Returns
 * its length or -errno. */
static ssize_t read_small(const char *path, int flags, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0) {
        return -errno;
    }
    ssize_t n = read(fd, buf, cap - 1);
    int r = n < 0 ? -errno : 0;
    up_close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return r < 0 ? r : n;
}

int up_pidfile_read(const char *path, pid_t *ret_pid)
{
    char text[32];
    ssize_t n = read_small(path, O_NOFOLLOW | O_NONBLOCK, text, sizeof(text));
    if (n < 0) {
        return (int)n;
    }
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || errno != 0 || v <= 0 || v > INT_MAX ||
        (*end != '\0' && strcmp(end, "\n") != 0)) {
        return -EINVAL;
    }
    *ret_pid = (pid_t)v;
    return 0;
}

static bool ends_with_master(const char *s)
{
    size_t n = strlen(s);
    return n > 7 && strcmp(s + n - 7, " master") == 0;
}

bool up_pidfile_is_master(pid_t pid)
{
    /* up-run names its master process "TITLE master" (up-run.c) in both
     * places: the argv area, seen in cmdline up to its first NUL, and comm,
     * which the kernel cuts at 15 bytes, so one of them says so even for a
     * long title or where the argv area could not be rewritten. A zombie has
     * an empty cmdline: no longer a master. */
    char path[64], text[256];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (read_small(path, 0, text, sizeof(text)) <= 0) {
        return false;
    }
    if (ends_with_master(text)) {
        return true;
    }
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    if (read_small(path, 0, text, sizeof(text)) <= 0) {
        return false;
    }
    text[strcspn(text, "\n")] = '\0';
    return ends_with_master(text);
}

/* Create tmp for writing, never through a link: O_EXCL fails on anything
 * already there, so a leftover of a process that had our pid before is
 * removed first, but only a regular file of ours. */
static int open_tmp(const char *tmp)
{
    struct stat st;
    if (lstat(tmp, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) {
        unlink(tmp);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

int up_pidfile_write(const char *path, pid_t *ret_owner)
{
    return up_pidfile_take_over(path, 0, ret_owner);
}

int up_pidfile_take_over(const char *path, pid_t from, pid_t *ret_owner)
{
    pid_t self = getpid(), owner = 0;
    if (up_pidfile_read(path, &owner) == 0 && owner != self && (from == 0 || owner != from) &&
        up_pidfile_is_master(owner)) {
        *ret_owner = owner;
        return -EBUSY;
    }
    char tmp[PATH_MAX + 32], text[32];
    int n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)self);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return -ENAMETOOLONG;
    }
    int fd = open_tmp(tmp);
    if (fd < 0) {
        return fd;
    }
    int len = snprintf(text, sizeof(text), "%d\n", (int)self);
    int r = write(fd, text, (size_t)len) == len ? 0 : -EIO;
    up_close(fd);
    /* rename() replaces whatever name is at path (a link included, which
     * it does not follow): a reader never sees a half-written file. */
    if (r == 0 && rename(tmp, path) < 0) {
        r = -errno;
    }
    if (r < 0) {
        unlink(tmp);
    }
    return r;
}

int up_pidfile_remove(const char *path)
{
    pid_t pid = 0;
    int r = up_pidfile_read(path, &pid);
    if (r < 0) {
        return r;
    }
    if (pid != getpid()) {
        return -ESRCH;
    }
    return unlink(path) < 0 ? -errno : 0;
}
