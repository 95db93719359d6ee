/*
 * hist: a histogram of durations with fixed bucket bounds, the shape
 * Prometheus scrapes (cumulative buckets, a sum and a count). Observing is
 * a short scan of at most UP_HIST_MAX bounds: cheap enough for every
 * connection. Not thread-safe: one owner, on its loop.
 */
#ifndef UP_HIST_H
#define UP_HIST_H

#include <stddef.h>
#include <stdint.h>

#define UP_HIST_MAX 16

struct up_hist {
    const double *bounds;             /* upper bounds in seconds, ascending */
    size_t n;                         /* <= UP_HIST_MAX; +Inf comes after */
    uint64_t counts[UP_HIST_MAX + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum; /* seconds */
};

void up_hist_init(struct up_hist *h, const double *bounds, size_t n);
void up_hist_observe(struct up_hist *h, double seconds);

/* CLOCK_MONOTONIC in microseconds: for spans finer than the loop's ms. */
uint64_t up_hist_now_us(void);

#endif
