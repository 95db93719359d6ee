/*
 * metrics: `--metrics HOST:PORT`, a tiny HTTP endpoint on the master's loop
 * for Prometheus (/metrics, text format) and load balancers (/healthz: 200
 * "ok", or 503 "degraded: REASON" while no worker can take a connection).
 * What it shows comes from its owner through the callbacks; the module
 * formats and serves it. Never blocks.
 */
#ifndef UP_METRICS_H
#define UP_METRICS_H

#include <stddef.h>

#include "loop.h"

struct up_metrics;

/* One value of the text format. */
struct up_metric {
    const char *name; /* "up_connections_accepted_total" */
    const char *type; /* "counter" or "gauge" */
    const char *help;
    unsigned long long value;
};

struct up_metrics_cbs {
    /* Fill up to cap values into out; return how many. */
    size_t (*values)(void *ctx, struct up_metric *out, size_t cap);
    /* NULL while healthy, else why not ("no ready worker"). */
    const char *(*health)(void *ctx);
};

/* Serve on addr (HOST:PORT). Returns 0 with *ret set, or -errno (logged). */
int up_metrics_open(struct up_loop *loop, const char *addr, const struct up_metrics_cbs *cbs,
                    void *ctx, struct up_metrics **ret);

/* Stop serving and free it (running the loop until its ops are done). NULL
 * is fine. */
void up_metrics_close(struct up_metrics *mt);

/* The text format of n values into buf. Returns the length written. */
size_t up_metrics_format(const struct up_metric *v, size_t n, char *buf, size_t cap);

#endif
