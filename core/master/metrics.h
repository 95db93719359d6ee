/*
 * metrics: `--metrics HOST:PORT`, a Prometheus text endpoint, and the
 * health answer a load balancer in front of several hosts asks for:
 *
 *   GET /metrics   counters and gauges of the master (text format 0.0.4)
 *   GET /healthz   200 "ok" while a generation serves and the master is not
 *                  stopping, else 503: take this host out of rotation
 *
 * Served on the master's loop by asrv; each answer closes its connection.
 */
#ifndef UP_METRICS_H
#define UP_METRICS_H

#include <stddef.h>

struct up_master;
struct up_metrics;

/* Listen on addr (HOST:PORT) and serve. 0 with *ret set, or -errno (logged). */
int up_metrics_open(struct up_master *m, const char *addr, struct up_metrics **ret);

/* Stop serving; NULL is fine. */
void up_metrics_close(struct up_metrics *mt);

/* Write the metrics text of m into buf; returns its length. */
size_t up_metrics_text(const struct up_master *m, char *buf, size_t cap);

#endif
