/*
 * proc: see proc.h.
 */
#include "proc.h"

#include <dirent.h>
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

/* The sum of fn(dir, name, arg) over the entries of the directory dir but
 * "." and ".." (fn NULL: 1 each), or -1 if dir cannot be read. */
static int proc_dir_sum(const char *dir, int (*fn)(const char *dir, const char *name, void *arg),
                        void *arg)
{
    DIR *d = opendir(dir); /* owned */
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n += fn != NULL ? fn(dir, e->d_name, arg) : 1;
        }
    }
    closedir(d);
    return n;
}

int proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return proc_dir_sum(path, NULL, NULL);
}

static int fd_is(const char *dir, const char *name, void *arg)
{
    char path[PATH_MAX], target[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    ssize_t len = readlink(path, target, sizeof(target) - 1);
    if (len < 0) {
        return 0;
    }
    target[len] = '\0';
    return strcmp(target, arg) == 0;
}

int proc_fds_of(pid_t pid, const char *target)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return proc_dir_sum(path, fd_is, (void *)target);
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

static double proc_schedstat_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    unsigned long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char f[320];
        snprintf(f, sizeof(f), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
        FILE *fp = fopen(f, "r");
        unsigned long long ns = 0;
        if (fp != NULL) {
            if (fscanf(fp, "%llu", &ns) == 1) {
                total += ns; /* a thread gone meanwhile counts nothing */
            }
            fclose(fp);
        }
    }
    closedir(d);
    return (double)total / 1e9;
}

double proc_cpu_s(pid_t pid)
{
    if (access("/proc/self/schedstat", R_OK) == 0) {
        return proc_schedstat_s(pid);
    }
    char buf[1024];
    unsigned long long ut, st;
    const char *f = proc_stat_fields(pid, buf, sizeof(buf));

    /* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime stime */
    if (f == NULL ||
        sscanf(f, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
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

/* What proc_scan() looks for, and what it found. */
struct proc_filter {
    pid_t ppid; /* > 0: children of it */
    pid_t pgrp; /* > 0: members of it */
    bool zombies;
    pid_t *pids;
    int cap;
    int n;
};

/* /proc/NAME, if NAME is a process the filter takes: 1, stored. */
static int proc_scan_one(const char *dir, const char *name, void *arg)
{
    struct proc_filter *f = arg;
    pid_t pid = (pid_t)atol(name);
    char state;
    pid_t pp, pg;

    (void)dir;
    if (pid <= 0 || !proc_stat(pid, &state, &pp, &pg) ||
        (!f->zombies && (state == 'Z' || state == 'X')) ||
        !((f->ppid > 0 && pp == f->ppid) || (f->pgrp > 0 && pg == f->pgrp))) {
        return 0;
    }
    if (f->n < f->cap) {
        f->pids[f->n] = pid;
    }
    f->n++;
    return 1;
}

/* Every process whose stat says ppid (ppid > 0) or pgrp (pgrp > 0), zombies
 * only if zombies is true, into pids[0..cap). Returns how many. */
static int proc_scan(pid_t ppid, pid_t pgrp, bool zombies, pid_t *pids, int cap)
{
    struct proc_filter f = {ppid, pgrp, zombies, pids, cap, 0};
    proc_dir_sum("/proc", proc_scan_one, &f);
    return f.n;
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

/* 1 if the task dir/name runs as *(uid_t *)arg. */
static int proc_task_of(const char *dir, const char *name, void *arg)
{
    char path[PATH_MAX + 300];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 && st.st_uid == *(uid_t *)arg;
}

/* The tasks of process /proc/NAME that run as *(uid_t *)arg. */
static int proc_tasks_in(const char *dir, const char *name, void *arg)
{
    char path[PATH_MAX];
    if (name[0] < '1' || name[0] > '9') {
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%s/task", dir, name);
    int n = proc_dir_sum(path, proc_task_of, arg);
    return n > 0 ? n : 0;
}

int proc_tasks_of(uid_t uid)
{
    int n = proc_dir_sum("/proc", proc_tasks_in, &uid);
    return n > 0 ? n : 0;
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
