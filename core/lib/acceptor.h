/*
 * acceptor: accepting connections from one listening socket on the loop,
 * with what every accept loop needs and each once got wrong on its own:
 * pausing (the owner holds too much), backing off when accept() fails for
 * lack of fds or memory (instead of spinning on a listener that stays
 * readable), and stopping for good.
 *
 *     RUNNING --pause--> PAUSED --resume--> RUNNING
 *        |  \--accept fails--> BACKOFF --timer--> RUNNING
 *        +--stop (from any)--> STOPPING --last callback--> STOPPED
 *
 * The rule that keeps a listener from going silent: whenever the accept op
 * finishes for good (its final callback, whatever its result and in
 * whatever order a pause, a resume and a cancel's completion come in), it
 * is armed again unless the acceptor is paused, backing off or stopping.
 *
 * The listening fd is borrowed: the owner closes it, after on_stopped ran
 * (or before ever starting). Reports go up through the callbacks; the
 * acceptor never logs and never blocks.
 */
#ifndef UP_ACCEPTOR_H
#define UP_ACCEPTOR_H

#include <stdbool.h>

#include "loop.h"

/* Retry after accept() failed (EMFILE, ENFILE, ENOBUFS, ENOMEM...). */
#define UP_ACCEPTOR_RETRY_MS 100

struct up_acceptor;

struct up_acceptor_cbs {
    /* A new connection (non-blocking, CLOEXEC): the callee owns fd. */
    void (*on_conn)(struct up_acceptor *a, int fd);
    /* Optional. accept() failed with err (-errno); first: the first
     * failure of a streak (log it once), later ones retry silently. */
    void (*on_error)(struct up_acceptor *a, int err, bool first);
    /* Optional. Accepting works again after a streak of failures. */
    void (*on_recovered)(struct up_acceptor *a);
    /* Optional. After up_acceptor_stop(): no op is in flight any more,
     * the fd may be closed (see up_acceptor_stop() for when it runs). */
    void (*on_stopped)(struct up_acceptor *a);
    /* Optional. Paused, and the accept op in flight at the pause has come
     * to its end: no connection can come until a resume. Not called when
     * nothing was in flight at the pause (up_acceptor_quiet() says so). */
    void (*on_paused)(struct up_acceptor *a);
};

struct up_acceptor {
    struct up_loop *loop;
    int fd; /* borrowed: the listening socket */
    const struct up_acceptor_cbs *cbs;
    void *ctx; /* the owner's */
    struct up_op op;
    struct up_timer retry;
    bool paused;   /* the owner asked: accept nothing for now */
    bool stopping; /* up_acceptor_stop() was called */
    bool failing;  /* in a streak of accept failures */
};

/* Prepare a for the listening socket fd (borrowed). Does not start. */
void up_acceptor_init(struct up_acceptor *a, struct up_loop *loop, int fd,
                      const struct up_acceptor_cbs *cbs, void *ctx);

/* Start (or go on) accepting. Returns 0, or -errno if the op could not be
 * started; the acceptor then retries by itself every UP_ACCEPTOR_RETRY_MS,
 * and on_error is called. */
int up_acceptor_start(struct up_acceptor *a);

/* Accept nothing until up_acceptor_resume(): the kernel's backlog holds new
 * connections meanwhile. Both are idempotent and may come in any order
 * with the op's completions. */
void up_acceptor_pause(struct up_acceptor *a);
void up_acceptor_resume(struct up_acceptor *a);

/* Stop for good. on_stopped runs once nothing is in flight: later, from
 * the op's final callback, or at once from inside this call when no op was
 * in flight. Either way no timer of the acceptor is left armed, so the
 * owner may free it after on_stopped. */
void up_acceptor_stop(struct up_acceptor *a);

/* Whether an accept op is in flight: the fd must not be closed then. */
bool up_acceptor_busy(const struct up_acceptor *a);

/* Whether no connection can come from it now: stopped or paused, with no
 * accept op in flight (on_stopped or on_paused ran, or nothing was in
 * flight when it was asked). */
bool up_acceptor_quiet(const struct up_acceptor *a);

#endif
