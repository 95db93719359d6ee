#include "procstat.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    double n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* The system's boot time, in seconds since the epoch (/proc/stat btime). */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    double btime = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    fclose(f);
    return btime;
}

/* CPU time and start time. The CPU time is the scheduler's count
 * (CLOCK_PROCESS_CPUTIME_ID: every thread, the ones gone too), not utime +
 * stime, which are sampled at the clock tick: those miss most of a process
 * that wakes briefly and often, as the master does for each connection (on
 * a VM seen here they showed a seventh of its time). The start time is
 * starttime (clock ticks since boot) of /proc/self/stat. */
static void stat_times(struct up_procstat *ret)
{
    char line[1024];
    const char *p = up_procstat_stat(0, line, sizeof(line));
    unsigned long long ut, st, start;
    if (p == NULL || sscanf(p,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                            "%*d %*d %*d %llu",
                            &ut, &st, &start) != 3) {
        return;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    struct timespec cpu;
    ret->cpu_seconds = clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0
                           ? (double)cpu.tv_sec + (double)cpu.tv_nsec / 1e9
                           : (double)(ut + st) / hz;
    double boot = boot_time();
    ret->start_seconds = boot < 0 ? -1 : boot + (double)start / hz;
}

void up_procstat_self(struct up_procstat *ret)
{
    *ret = (struct up_procstat){-1, -1, -1, -1, -1};
    ret->open_fds = open_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        ret->max_fds = (double)rl.rlim_cur;
    }
    FILE *f = fopen("/proc/self/statm", "re");
    unsigned long long size, resident;
    if (f != NULL && fscanf(f, "%llu %llu", &size, &resident) == 2) {
        ret->rss_bytes = (double)resident * (double)sysconf(_SC_PAGESIZE);
    }
    if (f != NULL) {
        fclose(f);
    }
    stat_times(ret);
}

const char *up_procstat_stat(pid_t pid, char *buf, size_t cap)
{
    char path[64];
    if (pid > 0) {
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    } else {
        snprintf(path, sizeof(path), "/proc/self/stat");
    }
    FILE *f = fopen(path, "re");
    bool got = f != NULL && fgets(buf, (int)cap, f) != NULL;
    if (f != NULL) {
        fclose(f);
    }
    /* The command may hold spaces and parentheses: the last ')' ends it. */
    const char *p = got ? strrchr(buf, ')') : NULL;
    return p != NULL && p[1] == ' ' && p[2] != '\0' ? p + 2 : NULL;
}

void up_procstat_doing(pid_t pid, char *buf, size_t cap)
{
    char path[64], line[512], wchan[64] = "";
    buf[0] = '\0';
    const char *p = pid > 0 ? up_procstat_stat(pid, line, sizeof(line)) : NULL;
    if (p == NULL) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
    FILE *f = fopen(path, "re");
    if (f != NULL) {
        size_t n = fread(wchan, 1, sizeof(wchan) - 1, f);
        wchan[n] = '\0';
        fclose(f);
    }
    static const struct {
        char code;
        const char *name;
    } states[] = {{'R', "running"},
                  {'S', "sleeping"},
                  {'D', "in uninterruptible sleep"},
                  {'T', "stopped"},
                  {'t', "stopped by a tracer"},
                  {'Z', "a zombie"}};
    const char *name = "in state ?";
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        if (states[i].code == p[0]) {
            name = states[i].name;
        }
    }
    /* "0": nothing to tell (running, or the kernel hides it). */
    bool where = wchan[0] != '\0' && strcmp(wchan, "0") != 0 && p[0] != 'R';
    snprintf(buf, cap, "%s%s%s", name, where ? " in " : "", where ? wchan : "");
}
