/*
 * longlived: the connections of a worker that do not end by themselves
 * (WebSockets, server-sent event streams), and how a drain ends them: not
 * all at once, which would send every client back to the master in the
 * same instant (a reconnect herd the new generation meets cold), but one
 * by one, evenly over a window, after a grace in which the app may end
 * them itself (up_app.drain).
 *
 *     drain begins ── grace ──▶ [ window: member i ends at start + window*i/n ] ── deadline
 *
 * The window is fitted inside the drain deadline, leaving a margin for the
 * closing handshakes: the spread is kept whole where it fits, the grace
 * shortened first. A second plan (a shed: no grace) may only bring the
 * start earlier. Members added once the window began (a stream started by
 * a request already in service) end at the next step.
 *
 * The module owns a timer and the list (members embed the node); it never
 * ends a connection itself: end(member) reports upward, and the owner ends
 * it (conn.c). The member is off the list before end() is called. Never
 * logs, never blocks.
 */
#ifndef UP_WORKER_LONGLIVED_H
#define UP_WORKER_LONGLIVED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "loop.h"

struct up_longlived {
    struct up_loop *loop;
    struct up_timer timer;
    struct up_list members; /* in the order they began: the oldest ends first */
    size_t n;
    bool planned;    /* a drain set the schedule */
    uint64_t start;  /* up_loop_now() ms the window opens */
    uint64_t window; /* ms */
    size_t total;    /* members when the window opened */
    size_t ended;    /* ended since */
    void (*end)(struct up_list *member, void *ctx);
    void *ctx;
};

void up_longlived_init(struct up_longlived *ll, struct up_loop *loop,
                       void (*end)(struct up_list *member, void *ctx), void *ctx);

/* A connection became long-lived (member: its node, not on a list) / is
 * over (harmless if it is not a member). Adding to a window under way ends
 * it at the next step. */
void up_longlived_add(struct up_longlived *ll, struct up_list *member);
void up_longlived_remove(struct up_longlived *ll, struct up_list *member);

/* Plan the end of every member: grace_ms from now, spread over spread_ms,
 * all within deadline_ms from now (see above). */
void up_longlived_plan(struct up_longlived *ll, uint64_t grace_ms, uint64_t spread_ms,
                       uint64_t deadline_ms);

/* The window a plan gets, in ms from now: *ret_start and *ret_window. */
void up_longlived_fit(uint64_t grace_ms, uint64_t spread_ms, uint64_t deadline_ms,
                      uint64_t *ret_start, uint64_t *ret_window);

/* Stop the timer (exit). */
void up_longlived_stop(struct up_longlived *ll);

#endif
