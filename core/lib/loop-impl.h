/*
 * loop-impl: what loop.c shares with its two back ends, loop-uring.c and
 * loop-epoll.c. Not for use outside the loop module.
 */
#ifndef UP_LOOP_IMPL_H
#define UP_LOOP_IMPL_H

#include "loop.h"

struct up_loop_backend_ops {
    const char *name;
    /* Start op (its fields are filled in). 0 or -errno. */
    int (*start)(struct up_loop *loop, struct up_op *op);
    /* Ask op to stop; the back end delivers its final callback later. */
    void (*cancel)(struct up_loop *loop, struct up_op *op);
    /* Forget every registration of fd, just before it is closed. */
    void (*forget)(struct up_loop *loop, int fd);
    /* Submit, wait at most timeout_ms (-1 = no limit, 0 = poll), and run
     * the callbacks of what completed. 0 or -errno. */
    int (*wait)(struct up_loop *loop, int timeout_ms);
    void (*free)(struct up_loop *loop);
};

struct up_loop {
    const struct up_loop_backend_ops *be;
    enum up_backend backend;
    bool stopping;
    bool ring_cmsg;
    uint64_t now;
    size_t pending; /* ops in flight */
    /* Timer min-heap on ->when; slot = index + 1. */
    struct up_timer **heap;
    size_t heap_len;
    size_t heap_cap;
    uint64_t timer_seq; /* timers armed so far */
};

/* Called by the back ends for every callback: keeps busy/pending right.
 * more = the op stays armed (multishot). */
void up_loop_complete(struct up_loop *loop, struct up_op *op, int res, bool more);

/* The caller passed MSG_DONTWAIT to a socket op: it wants -EAGAIN back
 * rather than a wait (the ring honours the flag itself; the emulations
 * must too). */
static inline bool up_loop_op_nowait(const struct up_op *op)
{
    return op->kind != UP_OP_POLL && op->kind != UP_OP_ACCEPT && op->kind != UP_OP_READ &&
           (op->flags & MSG_DONTWAIT) != 0;
}

/* Back end constructors: 0 with *ret_loop set, or -errno (and for io_uring a
 * static text in *ret_reason saying what was missing). */
/* one_thread: see up_loop_new_one_thread(). */
int up_loop_uring_new(unsigned entries, bool one_thread, struct up_loop **ret_loop,
                      const char **ret_reason);
int up_loop_epoll_new(unsigned entries, struct up_loop **ret_loop);

/* Refresh loop->now: the back ends call it when their wait returned, before
 * running callbacks, so that a timer armed from a callback counts from the
 * time the event arrived rather than from before the wait. */
void up_loop_tick(struct up_loop *loop);

/* Shared part of the constructors/destructors. */
void up_loop_base_init(struct up_loop *loop, const struct up_loop_backend_ops *be,
                       enum up_backend backend);
void up_loop_base_free(struct up_loop *loop);

#endif
