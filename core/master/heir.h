/*
 * heir: a master started by `up-run upgrade` speaks to the master it
 * replaces over the channel at fd 3, as a worker would (docs/PROTOCOL.md):
 *
 *   - READY once its own first generation serves: the old master then stops
 *     accepting and sends every connection it still routes here as a CONN
 *     (a fresh one it had peeked at, or one its draining workers handed
 *     back, with the bytes they had read), each ACKed at once;
 *   - a DRAIN from the old master before the hand-over (it is stopping, or
 *     a reload there superseded the upgrade) stops this master too;
 *   - the channel's end is the old master gone: this one serves alone.
 *
 * Reports upward through callbacks; never blocks (a full channel keeps the
 * ACKs until it has room).
 */
#ifndef UP_HEIR_H
#define UP_HEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct up_heir;

struct up_heir_cbs {
    /* A connection the old master passed on (the callee owns fd): data are
     * bytes already read from it (len may be 0). */
    void (*conn)(void *ctx, int fd, const char *data, size_t len);
    /* The old master says stop (before the hand-over). */
    void (*stop)(void *ctx);
    /* The old master is gone (the channel ended). */
    void (*alone)(void *ctx);
};

/* Speak on chan (taken). Returns 0 with *ret set, or -errno. */
int up_heir_open(struct up_loop *loop, int chan, const struct up_heir_cbs *cbs, void *ctx,
                 struct up_heir **ret);

/* Tell the old master this one serves. 0, or -errno (the channel is gone). */
int up_heir_ready(struct up_heir *h);

/* Connections taken so far (for the log). */
uint64_t up_heir_taken(const struct up_heir *h);

/* Close the channel. NULL is fine. */
void up_heir_close(struct up_heir *h);

#endif
