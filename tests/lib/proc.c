/*
 * proc: see proc.h.
 */
#include "proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

ssize_t proc_read(pid_t pid, const char *what, char *buf, size_t cap)
{
    char path[64];
    size_t len = 0;
    ssize_t n = 0;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        buf[0] = '\0';
        return -1;
    }
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0) {
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return n < 0 && len == 0 ? -1 : (ssize_t)len;
}

/* The fields of /proc/PID/stat after "pid (comm) ", into buf: comm may hold
 * spaces and parens, so the last ')' ends it. NULL if pid is gone. */
static const char *proc_stat_fields(pid_t pid, char *buf, size_t cap)
{
    if (proc_read(pid, "stat", buf, cap) <= 0) {
        return NULL;
    }
    const char *paren = strrchr(buf, ')');
    return paren != NULL && paren[1] == ' ' ? paren + 2 : NULL;
}

bool proc_stat(pid_t pid, char *ret_state, pid_t *ret_ppid, pid_t *ret_pgrp)
{
    char buf[1024];
    char state;
    int ppid, pgrp;
    const char *f = proc_stat_fields(pid, buf, sizeof(buf));

    if (f == NULL || sscanf(f, "%c %d %d", &state, &ppid, &pgrp) != 3) {
        return false;
    }
    if (ret_state != NULL) {
        *ret_state = state;
    }
    if (ret_ppid != NULL) {
        *ret_ppid = (pid_t)ppid;
    }
    if (ret_pgrp != NULL) {
        *ret_pgrp = (pid_t)pgrp;
    }
    return true;
}

bool proc_gone(pid_t pid)
{
    char state = '?';
    return !proc_stat(pid, &state, NULL, NULL) || state == 'Z' || state == 'X';
}

pid_t proc_ppid(pid_t pid)
{
    pid_t ppid = -1;
    return proc_stat(pid, NULL, &ppid, NULL) ? ppid : -1;
}

int proc_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path); /* owned */
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

int proc_fds_settled(pid_t pid, int want, int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    int last = proc_fds(pid);
    int same = 0;

    while ((same < 5 || (want >= 0 && last != want)) && up_test_now_ms() < deadline) {
        up_test_nap(20);
        int n = proc_fds(pid);
        same = n == last ? same + 1 : 0;
        last = n;
    }
    return last;
}

long long proc_cpu_ticks(pid_t pid)
{
    char buf[1024];
    unsigned long long ut, st;
    const char *f = proc_stat_fields(pid, buf, sizeof(buf));

    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime stime */
    if (f == NULL ||
        sscanf(f, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (long long)(ut + st);
}

long long proc_start_ms(pid_t pid)
{
    char buf[1024];
    unsigned long long ticks = 0;
    const char *p = proc_stat_fields(pid, buf, sizeof(buf));

    /* starttime is field 22; p points at field 3. */
    for (int field = 3; p != NULL && field < 22; field++) {
        p = strchr(p, ' ');
        p = p != NULL ? p + 1 : NULL;
    }
    if (p == NULL || sscanf(p, "%llu", &ticks) != 1) {
        return -1;
    }
    return (long long)(ticks * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

long long proc_boottime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Every process whose stat says ppid (ppid > 0) or pgrp (pgrp > 0), zombies
 * only if zombies is true, into pids[0..cap). Returns how many. */
static int proc_scan(pid_t ppid, pid_t pgrp, bool zombies, pid_t *pids, int cap)
{
    DIR *d = opendir("/proc"); /* owned */
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atol(e->d_name);
        char state;
        pid_t pp, pg;
        if (pid <= 0 || !proc_stat(pid, &state, &pp, &pg) ||
            (!zombies && (state == 'Z' || state == 'X'))) {
            continue;
        }
        if ((ppid > 0 && pp == ppid) || (pgrp > 0 && pg == pgrp)) {
            if (n < cap) {
                pids[n] = pid;
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

int proc_children(pid_t pid, bool zombies, pid_t *pids, int cap)
{
    char path[64];
    char buf[8192];
    int n = 0;

    snprintf(path, sizeof(path), "task/%d/children", (int)pid);
    if (proc_read(pid, path, buf, sizeof(buf)) < 0) {
        /* No children file (CONFIG_PROC_CHILDREN), or pid is gone. */
        return proc_stat(pid, NULL, NULL, NULL) ? proc_scan(pid, 0, zombies, pids, cap) : -1;
    }
    for (char *p = buf, *end; *p != '\0'; p = end) {
        pid_t child = (pid_t)strtol(p, &end, 10);
        char state = 'Z';
        if (end == p) {
            break;
        }
        /* The file lists zombies until they are reaped. */
        if (!zombies && (!proc_stat(child, &state, NULL, NULL) || state == 'Z' || state == 'X')) {
            continue;
        }
        if (n < cap) {
            pids[n] = child;
        }
        n++;
    }
    return n;
}

int proc_group(pid_t pgrp, pid_t *pids, int cap)
{
    return proc_scan(0, pgrp, false, pids, cap);
}

void proc_desc(const pid_t *pids, int n, char *buf, size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++) {
        char state = '-';
        proc_stat(pids[i], &state, NULL, NULL);
        int w = snprintf(buf + used, cap - used, " %d(%c)", (int)pids[i], state);
        used += w > 0 ? (size_t)w : 0;
    }
}

int proc_tasks_of(uid_t uid)
{
    DIR *d = opendir("/proc"); /* owned */
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct dirent *te;
        if (e->d_name[0] < '1' || e->d_name[0] > '9') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%s/task", e->d_name);
        DIR *t = opendir(path); /* owned */
        while (t != NULL && (te = readdir(t)) != NULL) {
            char tpath[PATH_MAX + 300];
            struct stat st;
            snprintf(tpath, sizeof(tpath), "%s/%s", path, te->d_name);
            if (te->d_name[0] != '.' && stat(tpath, &st) == 0 && st.st_uid == uid) {
                n++;
            }
        }
        if (t != NULL) {
            closedir(t);
        }
    }
    closedir(d);
    return n;
}

long long proc_wait_gone(const pid_t *pids, int n, int timeout_ms)
{
    long long t0 = up_test_now_ms();
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            left += !proc_gone(pids[i]);
        }
        long long took = up_test_now_ms() - t0;
        if (left == 0) {
            return took;
        }
        if (took > timeout_ms) {
            return -1;
        }
        up_test_nap(5);
    }
}
