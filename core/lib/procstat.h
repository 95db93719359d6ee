/*
 * procstat: this process as the kernel counts it (/proc/self), for the
 * metrics every Prometheus exporter has (process_open_fds and the rest).
 * Reads a few small /proc files: for a scrape, not a hot path.
 */
#ifndef UP_PROCSTAT_H
#define UP_PROCSTAT_H

struct up_procstat {
    double open_fds;      /* entries of /proc/self/fd */
    double max_fds;       /* the soft RLIMIT_NOFILE */
    double rss_bytes;     /* resident set */
    double cpu_seconds;   /* user + system, as the scheduler counts it */
    double start_seconds; /* since the Unix epoch */
};

/* Fill ret; a value that could not be read is -1. */
void up_procstat_self(struct up_procstat *ret);

#endif
