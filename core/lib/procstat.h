/*
 * procstat: this process as the kernel counts it (/proc/self), for the
 * metrics every Prometheus exporter has (process_open_fds and the rest).
 * Reads a few small /proc files: for a scrape, not a hot path.
 */
#ifndef UP_PROCSTAT_H
#define UP_PROCSTAT_H

#include <stddef.h>
#include <sys/types.h>

struct up_procstat {
    double open_fds;      /* entries of /proc/self/fd */
    double max_fds;       /* the soft RLIMIT_NOFILE */
    double rss_bytes;     /* resident set */
    double cpu_seconds;   /* user + system, as the scheduler counts it */
    double start_seconds; /* since the Unix epoch */
};

/* Fill ret; a value that could not be read is -1. */
void up_procstat_self(struct up_procstat *ret);

/* Read /proc/PID/stat (0: this process) into buf and return where its
 * fields after the command begin (the state, "S 1 ..."), or NULL when it
 * cannot be read (gone, or not ours to read). */
const char *up_procstat_stat(pid_t pid, char *buf, size_t cap);

/* What process pid is doing, for a log line about one that did not answer
 * in time: "running", or "sleeping in do_epoll_wait" (the kernel function
 * it waits in, /proc/PID/wchan, when the kernel tells it). Writes "" when
 * /proc says nothing (gone, or not ours to read). */
void up_procstat_doing(pid_t pid, char *buf, size_t cap);

#endif
