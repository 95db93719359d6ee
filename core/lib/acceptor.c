/*
 * acceptor: see acceptor.h for the states and the re-arm rule.
 */
#include "acceptor.h"
#include "list.h"

#include <errno.h>
#include <stddef.h>

static void on_accept(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_retry(struct up_loop *loop, struct up_timer *t);
static void stopped(struct up_acceptor *a);

void up_acceptor_init(struct up_acceptor *a, struct up_loop *loop, int fd,
                      const struct up_acceptor_cbs *cbs, void *ctx)
{
    *a = (struct up_acceptor){.loop = loop, .fd = fd, .cbs = cbs, .ctx = ctx};
    a->op.cb = on_accept;
    a->retry.cb = on_retry;
}

static void failed(struct up_acceptor *a, int err)
{
    bool first = !a->failing;
    a->failing = true;
    if (a->cbs->on_error != NULL) {
        a->cbs->on_error(a, err, first);
    }
    up_timer_start(a->loop, &a->retry, UP_ACCEPTOR_RETRY_MS);
}

/* Arm the accept op if nothing stands in the way. */
static int arm(struct up_acceptor *a)
{
    if (a->op.busy || a->paused || a->stopping || up_timer_armed(&a->retry)) {
        return 0;
    }
    int r = up_loop_accept(a->loop, &a->op, a->fd);
    if (r < 0) {
        failed(a, r);
    }
    return r;
}

int up_acceptor_start(struct up_acceptor *a)
{
    a->paused = false;
    return arm(a);
}

void up_acceptor_pause(struct up_acceptor *a)
{
    if (a->paused) {
        return;
    }
    a->paused = true;
    /* The op's final callback comes later, and must then find paused set:
     * see on_accept(). */
    up_loop_cancel(a->loop, &a->op);
}

void up_acceptor_resume(struct up_acceptor *a)
{
    if (!a->paused) {
        return;
    }
    a->paused = false;
    /* If the canceled op is still in flight, arm() does nothing now and
     * its final callback re-arms it. */
    (void)arm(a);
}

void up_acceptor_stop(struct up_acceptor *a)
{
    if (a->stopping) {
        return;
    }
    a->stopping = true;
    up_timer_stop(a->loop, &a->retry);
    if (a->op.busy) {
        up_loop_cancel(a->loop, &a->op); /* on_accept reports the stop */
    } else {
        stopped(a);
    }
}

bool up_acceptor_busy(const struct up_acceptor *a)
{
    return a->op.busy;
}

bool up_acceptor_quiet(const struct up_acceptor *a)
{
    return (a->stopping || a->paused) && !a->op.busy;
}

static void stopped(struct up_acceptor *a)
{
    if (a->cbs->on_stopped != NULL) {
        a->cbs->on_stopped(a);
    }
}

static void on_retry(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_acceptor *a = up_container_of(t, struct up_acceptor, retry);
    (void)arm(a);
}

static void on_accept(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    struct up_acceptor *a = up_container_of(op, struct up_acceptor, op);
    if (res >= 0) {
        if (a->failing) {
            a->failing = false;
            if (a->cbs->on_recovered != NULL) {
                a->cbs->on_recovered(a);
            }
        }
        /* Accepted while a pause or stop was on its way: still a real
         * connection, and the callee owns it. */
        a->cbs->on_conn(a, res);
    }
    if (flags & UP_OP_F_MORE) {
        return; /* a multishot accept that stays armed */
    }
    if (a->stopping) {
        stopped(a);
        return;
    }
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -ECONNABORTED) {
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection waits in the
         * backlog; try again shortly rather than spin on a listener that
         * stays readable. */
        failed(a, res);
    } else {
        /* Done for another reason (a cancel for a pause that may already
         * be over, a single-shot accept): armed again unless paused. */
        (void)arm(a);
    }
    if (a->paused && !a->op.busy && a->cbs->on_paused != NULL) {
        a->cbs->on_paused(a);
    }
}
