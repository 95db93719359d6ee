/*
 * report: what the server says about itself in `up-run status`: one
 * snapshot of its state, as text for people or as one JSON object for
 * machines. Pure formatting over the snapshot and the generations: no I/O,
 * never logs.
 */
#ifndef UP_REPORT_H
#define UP_REPORT_H

#include <stddef.h>

#include "gen.h"
#include "hist.h"

struct up_report {
    int pid;
    const char *state;   /* "starting", "running", "stopping" */
    const char *backend; /* "io_uring", "epoll" */
    const char *health;  /* NULL: healthy; else why not */
    const struct up_gens *gens;
    size_t pending, pending_cap;
    unsigned long long nofile;
    unsigned long long accepted, handed, rerouted, handed_back, answered, reloads, reload_failures,
        respawns, queue_timeouts, shed, lost, log_dropped;
    unsigned long long alog_lines, alog_dropped; /* the workers' access logs */
    const char *last_error;                      /* "" when none */
    /* For the metrics page. */
    struct up_gens_counts workers; /* of the active generation */
    unsigned long long held;       /* connections the workers hold */
    const struct up_hist *reload;  /* signal to the new generation serving */
    const struct up_hist *handoff; /* accept to a worker's ACK */
    /* The master process (/proc): -1 when unknown. */
    double open_fds, max_fds, rss_bytes, cpu_seconds, start_seconds;
};

/* The report into buf (cap bytes, NUL-terminated, cut at the end if it does
 * not fit). Returns its length. */
size_t up_report_text(const struct up_report *r, char *buf, size_t cap);

/* The same as one JSON object. When every worker does not fit, the workers
 * are left out ("workers_omitted": true) so that the object stays whole. */
size_t up_report_json(const struct up_report *r, char *buf, size_t cap);

/* The Prometheus text page (base units, counters end in _total). Returns
 * its length, 0 when it does not fit in cap. */
size_t up_report_metrics(const struct up_report *r, char *buf, size_t cap);

#endif
