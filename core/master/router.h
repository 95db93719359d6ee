/*
 * router: where a connection goes once its first request head is complete.
 * It owns the middleware chain (up_server_use()), the queue of connections
 * waiting for a worker and its timeout, the pick (round-robin, by key for
 * sticky routing, or the worker a middleware names), the try count of a
 * connection that keeps coming back, and the 503s that end a wait.
 *
 *   ready(c) --middleware--> answer (its page, then a graceful close)
 *            \-> route: a worker of the active generation takes it (SENT)
 *                        or c waits in the queue, at most --queue-timeout,
 *                        then 503 + Retry-After (or a graceful close for a
 *                        connection handed back with nothing asked yet)
 *   requeue(c): the worker could not take it; routed again, never to the
 *               worker it came back from, at most MAX_TRIES times
 *
 * The router knows the pending connections below it and nothing of the
 * workers: picking one and sending to it are its owner's callbacks (the
 * server, over the generations), so that the router can be built and
 * tested alone. Its owner tells it what changed (a worker can take
 * connections again: kick; stopping; an error page when nothing serves).
 * Never blocks; middleware must not either.
 */
#ifndef UP_ROUTER_H
#define UP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "head.h"
#include "list.h"
#include "loop.h"
#include "pending.h"
#include "ratelimit.h"
#include "up/middleware.h"

#define UP_ROUTER_MAX_MIDDLEWARE 16

struct up_router_stats {
    uint64_t rerouted;       /* routed again after a worker died, declined or drained */
    uint64_t queue_timeouts; /* waited --queue-timeout for a worker: 503 or closed */
    uint64_t answered;       /* answered by a middleware */
};

/* How the router reaches the workers: its owner's. */
struct up_router_cbs {
    /* A worker that takes c now, by what c asks (c->route_index >= 0: that
     * worker, else c->keyed: by c->key, else round-robin; a worker asked
     * for that cannot take it now is replaced by any that can), never the
     * one with pid c->avoid. NULL when none can. */
    void *(*pick)(void *ctx, const struct up_pending *c);
    /* Give c (READY) to worker (from pick). */
    void (*send)(void *ctx, void *worker, struct up_pending *c);
    /* Whether any worker could take a connection now (round-robin). */
    bool (*any)(void *ctx);
    /* Whether a worker is on its way (a generation active or starting). */
    bool (*expected)(void *ctx);
};

struct up_router {
    struct up_loop *loop;
    const struct up_router_cbs *cbs;
    void *ctx; /* the owner's */
    uint64_t queue_timeout_ms;
    struct up_list queue; /* READY connections waiting for a worker (pending.link) */
    size_t nqueued;
    bool stopping;
    const char *error_page; /* set: nothing serves; every connection gets 503 with it */
    struct {
        up_middleware_fn fn;
        void *ctx;
    } mw[UP_ROUTER_MAX_MIDDLEWARE];
    int nmw;
    struct up_ratelimit rl; /* queue timeout warnings */
    struct up_router_stats stats;
};

void up_router_init(struct up_router *r, struct up_loop *loop, uint64_t queue_timeout_ms,
                    const struct up_router_cbs *cbs, void *ctx);

/* Add a middleware at the end of the chain. Returns 0 or -ENOSPC. */
int up_router_use(struct up_router *r, up_middleware_fn fn, void *ctx);

/* c is READY (a complete head, or handed back): run the chain and route it.
 * head is valid during the call only (NULL for a hand-back without a whole
 * head in the bytes read: the chain is skipped then). */
void up_router_ready(struct up_router *r, struct up_pending *c, const struct up_head *head);

/* c (READY) came back from a worker that could not take it: route again. */
void up_router_requeue(struct up_router *r, struct up_pending *c);

/* A worker can take connections again: route what waits. */
void up_router_kick(struct up_router *r);

/* Stopping: everything queued gets 503, and so does what comes later. */
void up_router_stop(struct up_router *r);

/* Nothing serves (the first generation failed in watch mode): page says
 * why, in a 503 to everything queued and to what comes (NULL: serve
 * normally again; the string is borrowed until then). */
void up_router_error_page(struct up_router *r, const char *page);

#endif
