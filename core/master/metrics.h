/*
 * metrics: `--metrics HOST:PORT`, a tiny HTTP endpoint on the master's loop
 * for Prometheus (/metrics, text format) and load balancers (/healthz: 200
 * "ok", or 503 "degraded: REASON" while no worker can take a connection).
 * What it shows comes from its owner through the callbacks; the module
 * formats and serves it. Never blocks.
 */
#ifndef UP_METRICS_H
#define UP_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "hist.h"
#include "loop.h"

struct up_metrics;

/* One sample of the text format. Samples of one name follow each other
 * (HELP and TYPE are written once, before the first). */
struct up_metric {
    const char *name; /* "up_connections_accepted_total" */
    const char *type; /* "counter", "gauge" or "histogram" */
    const char *help;
    const char *labels;         /* 'generation="3",state="ready"', or NULL */
    double value;               /* counter, gauge */
    const struct up_hist *hist; /* histogram */
};

struct up_metrics_cbs {
    /* The /metrics page into buf (cap bytes); its length, 0 if it did not
     * fit (answered 500 then, never a cut page). */
    size_t (*page)(void *ctx, char *buf, size_t cap);
    /* NULL while healthy, else why not ("no ready worker"). */
    const char *(*health)(void *ctx);
};

/* Serve on addr (HOST:PORT). Returns 0 with *ret set, or -errno (logged). */
int up_metrics_open(struct up_loop *loop, const char *addr, const struct up_metrics_cbs *cbs,
                    void *ctx, struct up_metrics **ret);

/* Stop serving and free it (running the loop until its ops are done). NULL
 * is fine. */
/* Serve on fd, a metrics socket an old master passed on (taken). */
int up_metrics_open_fd(struct up_loop *loop, int fd, const struct up_metrics_cbs *cbs, void *ctx,
                       struct up_metrics **ret);

/* The listening socket (still owned here), for a new master. */
int up_metrics_fd(const struct up_metrics *mt);

/* Stop taking new clients (a new master serves the port), or take them
 * again. */
void up_metrics_accepting(struct up_metrics *mt, bool on);

void up_metrics_close(struct up_metrics *mt);

/* The text format of n samples into buf. Returns its length, or 0 when it
 * does not fit in cap. */
size_t up_metrics_format(const struct up_metric *v, size_t n, char *buf, size_t cap);

#endif
