/*
 * ratelimit: at most `burst` reports per `interval_ms`, and a count of the
 * ones refused, for log lines that a peer can cause at will (a worker's
 * malformed messages, a flood of bad ACK ids). The first report after a
 * quiet spell says how many were held back, so nothing is hidden, only
 * summed. Pure logic: it reads no clock of its own and never logs.
 */
#ifndef UP_RATELIMIT_H
#define UP_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct up_ratelimit {
    uint64_t interval_ms;
    unsigned burst;
    uint64_t start;                /* the current interval began here */
    unsigned used;                 /* reports in the current interval */
    unsigned long long suppressed; /* refused since the last report */
};

#define UP_RATELIMIT_INIT(ms, n)                                                                   \
    {                                                                                              \
        .interval_ms = (ms), .burst = (n)                                                          \
    }

/* May an event at now (ms, any monotonic clock) be reported? If so,
 * *ret_suppressed (may be NULL) gets how many were refused since the last
 * report, and the count starts again; if not, it is counted. */
bool up_ratelimit_ok(struct up_ratelimit *rl, uint64_t now, unsigned long long *ret_suppressed);

#endif
