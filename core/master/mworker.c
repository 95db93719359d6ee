/*
 * mworker: one worker process as the master sees it. See mworker.h.
 */
#include "mworker.h"

#include "child.h"
#include "fd.h"
#include "pending.h"

#include <spawn.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A draining worker still alive this long after its deadline is late: it
 * had its chance to finish and hand its connections back. */
#define KILL_GRACE_MS 5000

/* After a worker exits, how long its channel may go without delivering
 * anything (a FAIL with the reason, handed-back connections) before it is
 * given up. Each message read restarts it: a starved master reading slowly
 * must not drop connections still queued in the channel. */
#define REAPED_CHAN_MS 5000

static void chan_dead(struct up_mworker *w);
static void maybe_gone(struct up_mworker *w);
static void kick(struct up_mworker *w);

const char *up_mworker_state_name(enum up_mworker_state s)
{
    switch (s) {
    case UP_MW_STARTING:
        return "starting";
    case UP_MW_READY:
        return "ready";
    case UP_MW_DRAINING:
        return "draining";
    case UP_MW_GONE:
        return "gone";
    }
    return "?";
}

/* A warning caused by what w sent: it runs the user's code, so it could
 * send a flood; at most a few lines a minute per worker, the rest counted. */
static void warn_about(struct up_mworker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn_about(struct up_mworker *w, const char *fmt, ...)
{
    unsigned long long held = 0;
    if (!up_ratelimit_ok(&w->warn_rl, up_loop_now(w->loop), &held)) {
        return;
    }
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (held > 0) {
        up_log(UP_LOG_WARN, "worker pid=%d: %s (and %llu more warnings not logged)",
               (int)w->pid_was, text, held);
    } else {
        up_log(UP_LOG_WARN, "worker pid=%d: %s", (int)w->pid_was, text);
    }
}

/* ---- the connections on their way to this worker ---- */

void up_mworker_send_conn(struct up_mworker *w, struct up_pending *c)
{
    up_pending_sent(c, w);
    if (w->nqueued++ == 0) {
        w->waiting_since = up_loop_now(w->loop);
    }
    up_list_push_back(&w->txq, &c->link);
    kick(w);
}

/* c could not be given to w after all: back to the owner. */
static void requeue(struct up_mworker *w, struct up_pending *c)
{
    up_list_remove(&c->link);
    w->nqueued--;
    up_pending_unsent(c);
    w->cbs->requeue(w, c);
}

static void requeue_list(struct up_mworker *w, struct up_list *l)
{
    struct up_list *n;
    while ((n = up_list_first(l)) != NULL) {
        requeue(w, up_container_of(n, struct up_pending, link));
    }
}

/* What was in flight, c (tx_conn, or NULL) and tx_batch, goes back to
 * routing: the send failed, or the channel died with it. */
static void requeue_in_flight(struct up_mworker *w, struct up_pending *c)
{
    if (c != NULL) {
        w->nqueued--;
        up_pending_unsent(c);
        w->cbs->requeue(w, c);
    }
    requeue_list(w, &w->tx_batch);
}

/* Every connection this worker has not ACKed goes back to routing. Those
 * in flight (tx_conn, tx_batch) wait for their send to complete: its
 * message buffer is still in use until then. */
static void requeue_all(struct up_mworker *w)
{
    requeue_list(w, &w->unacked);
    requeue_list(w, &w->txq);
}

/* Take the connection with this id off the list of those sent and not yet
 * ACKed. Returns it, or NULL if it is not there. */
static struct up_pending *unacked_take(struct up_mworker *w, uint64_t id)
{
    /* ACKs come in the order the CONNs went out (one channel, in order);
     * an id not at the front is searched for, to stay correct anyway. */
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &w->unacked)
    {
        struct up_pending *c = up_container_of(pos, struct up_pending, link);
        if (c->id == id) {
            up_list_remove(&c->link);
            w->nqueued--;
            return c;
        }
    }
    return NULL;
}

/* ---- sending ---- */

/* A message of the master's own: DRAIN, or REOPEN. */
static int send_ctl(struct up_mworker *w, enum up_msg_kind kind)
{
    struct up_msg hdr;
    up_msg_init(&hdr, kind);
    if (kind == UP_MSG_DRAIN) {
        uint64_t now = up_loop_now(w->loop);
        hdr.arg = w->drain_deadline > now ? w->drain_deadline - now : 0;
        hdr.flags = w->drain_flags;
        w->drain_queued = false;
    } else {
        w->reopen_queued = false;
    }
    w->ctl_inflight = true;
    int r = up_passfd_prep(&w->ctl_out, &hdr, NULL, 0, -1);
    if (r == 0) {
        r = up_loop_sendmsg(w->loop, &w->tx, w->chan, &w->ctl_out.msg, 0);
    }
    return r;
}

static int send_conn(struct up_mworker *w, struct up_pending *c)
{
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    hdr.conn_id = c->id;
    hdr.arg = c->tries;
    w->tx_conn = c;
    int r = up_passfd_prep(&c->out, &hdr, c->prefix, c->prefix_len, c->fd);
    if (r == 0) {
        /* MSG_DONTWAIT: a full channel must not hold the connection up;
         * -EAGAIN sends it to another worker. */
        r = up_loop_sendmsg(w->loop, &w->tx, w->chan, &c->out.msg, MSG_DONTWAIT);
    }
    return r;
}

/* A connection that can share a CONNS: it has no bytes to pass along. */
static bool batchable(const struct up_list *n)
{
    return up_container_of(n, struct up_pending, link)->prefix_len == 0;
}

/* Send the connections at the head of txq that can share a message, up to
 * UP_PASSFD_MAX_FDS, as one CONNS. Returns 0 or -errno, the batch on
 * tx_batch either way (on_tx() or kick() settles it). */
static int send_conns(struct up_mworker *w)
{
    int fds[UP_PASSFD_MAX_FDS];
    size_t n = 0;
    struct up_list *next;
    while (n < UP_PASSFD_MAX_FDS && (next = up_list_first(&w->txq)) != NULL && batchable(next)) {
        struct up_pending *c = up_container_of(next, struct up_pending, link);
        up_list_remove(next);
        up_list_push_back(&w->tx_batch, next);
        w->batch_ent[n].conn_id = c->id;
        w->batch_ent[n].tries = c->tries;
        fds[n++] = c->fd;
    }
    up_log(UP_LOG_DEBUG, "worker pid=%d: %zu connections in one CONNS", (int)w->pid, n);
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONNS);
    hdr.arg = n;
    int r =
        up_passfd_prep_fds(&w->batch_out, &hdr, w->batch_ent, n * sizeof(w->batch_ent[0]), fds, n);
    if (r == 0) {
        r = up_loop_sendmsg(w->loop, &w->tx, w->chan, &w->batch_out.msg, MSG_DONTWAIT);
    }
    return r;
}

/* Two or more connections wait that can share a CONNS, for a worker that
 * takes one. */
static bool batch_ready(const struct up_mworker *w)
{
    const struct up_list *first = up_list_first(&w->txq);
    return w->takes_conns && first != NULL && batchable(first) && first->next != &w->txq &&
           batchable(first->next);
}

/* Sending to w failed (the worker exited, or closed its end): send nothing
 * more, and give what waits to be sent to other workers. The receiving
 * side stays open: the worker may have handed connections back just
 * before it exited, and they are still queued in the channel. Only EOF
 * there (or the reap guard) ends the channel. */
static void tx_dead(struct up_mworker *w, int err)
{
    if (w->tx_dead) {
        return;
    }
    w->tx_dead = true;
    if (w->state != UP_MW_DRAINING || err != -EPIPE) {
        up_log(UP_LOG_WARN, "worker pid=%d: channel send failed: %s, rerouting", (int)w->pid_was,
               strerror(-err));
    }
    requeue_list(w, &w->txq);
}

/* Start the next send on w's channel, if any and none is in flight. */
static void kick(struct up_mworker *w)
{
    if (w->chan < 0 || w->chan_dead || w->tx_dead || w->tx.busy) {
        return;
    }
    int r = 0;
    struct up_list *next = up_list_first(&w->txq);
    if (w->drain_queued) {
        r = send_ctl(w, UP_MSG_DRAIN);
    } else if (w->reopen_queued) {
        r = send_ctl(w, UP_MSG_REOPEN);
    } else if (w->chan_full) {
        /* Wait until the worker has read some of its queue. */
        r = up_loop_poll(w->loop, &w->tx, w->chan, POLLOUT);
    } else if (batch_ready(w)) {
        r = send_conns(w);
    } else if (next != NULL) {
        up_list_remove(next);
        r = send_conn(w, up_container_of(next, struct up_pending, link));
    }
    if (r < 0) {
        struct up_pending *c = w->tx_conn;
        w->tx_conn = NULL;
        w->ctl_inflight = false;
        requeue_in_flight(w, c);
        tx_dead(w, r);
    }
}

static void on_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_mworker *w = up_container_of(op, struct up_mworker, tx);
    struct up_pending *c = w->tx_conn;
    w->tx_conn = NULL;
    bool batch = !up_list_empty(&w->tx_batch);
    if (w->chan_dead) {
        /* Whatever was in flight died with the channel (or with the worker,
         * before it could ACK): route it again. */
        w->ctl_inflight = false;
        requeue_in_flight(w, c);
        maybe_gone(w);
        return;
    }
    bool routable_again = false;
    if (w->ctl_inflight) {
        w->ctl_inflight = false;
    } else if (c == NULL && !batch) {
        w->chan_full = false; /* the POLLOUT wait ended */
        routable_again = true;
    } else if (res >= 0) {
        /* Sent: the worker has them in its queue; ours until the ACK. */
        if (c != NULL) {
            up_list_push_back(&w->unacked, &c->link);
        }
        struct up_list *n;
        while ((n = up_list_pop_front(&w->tx_batch)) != NULL) {
            up_list_push_back(&w->unacked, n);
        }
    } else {
        if (res == -EAGAIN) {
            w->chan_full = true;
        }
        requeue_in_flight(w, c);
    }
    if (res < 0 && res != -EAGAIN) {
        tx_dead(w, res);
        return;
    }
    kick(w);
    if (routable_again && up_mworker_routable(w)) {
        w->cbs->routable(w);
    }
}

/* ---- receiving ---- */

static void on_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);

static void recv_next(struct up_mworker *w)
{
    if (w->chan_dead) {
        return;
    }
    if (w->state == UP_MW_DRAINING && !w->cbs->room(w)) {
        /* A draining worker's channel brings hand-backs, each a new fd
         * for the master: at its pending cap (sized to its fd limit) they
         * are left in the channel, where the worker still owns them,
         * rather than dropped by the kernel at the master's limit. */
        w->rx_paused = true;
        return;
    }
    w->rx_paused = false;
    up_passfd_in_prep(&w->in, w->payload, UP_PASSFD_MAX_PAYLOAD);
    if (up_loop_recvmsg(w->loop, &w->rx, w->chan, &w->in.msg, 0) < 0) {
        chan_dead(w);
    }
}

static void on_acks(struct up_mworker *w, const uint64_t *ids, size_t n)
{
    uint64_t stalled = up_mworker_stalled_ms(w);
    bool was_held = w->nqueued >= UP_MW_MAX_UNACKED || stalled > 0;
    size_t unknown = 0;
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++) {
        struct up_pending *c = unacked_take(w, ids[i]);
        if (c == NULL) {
            first = unknown++ == 0 ? ids[i] : first;
            continue;
        }
        up_log(UP_LOG_DEBUG, "conn id=%llu: handed to pid=%d", (unsigned long long)c->id,
               (int)w->pid_was);
        up_pending_acked(c);
    }
    if (unknown > 0) {
        /* One line per message, not one per id: a message holds 8,192. */
        warn_about(w, "ACK for %zu unknown conn ids (the first id=%llu), ignoring", unknown,
                   (unsigned long long)first);
    }
    if (unknown < n) {
        w->waiting_since = up_loop_now(w->loop); /* it takes: not stalled */
        if (stalled > 0) {
            warn_about(w,
                       "took no connection for %llu ms (a handler blocking its loop?); new ones "
                       "went to other workers meanwhile",
                       (unsigned long long)stalled);
        }
    }
    if (was_held && up_mworker_routable(w)) {
        /* It can take connections again: what waited for it goes now. */
        w->cbs->routable(w);
    }
}

/* DECLINE: the worker is out of fds and never got c's. c is still ours
 * (fd kept): send it elsewhere, and this worker nothing until ROOM. */
static void on_decline(struct up_mworker *w, uint64_t id)
{
    struct up_pending *c = unacked_take(w, id);
    if (!w->fd_pressure) {
        w->fd_pressure = true;
        up_log(UP_LOG_WARN,
               "worker pid=%d is out of fds: routing new connections to other workers until "
               "it has room (raise LimitNOFILE / ulimit -n)",
               (int)w->pid);
        w->cbs->pressure(w, true);
    }
    if (c == NULL) {
        warn_about(w, "DECLINE for unknown conn id=%llu, ignoring", (unsigned long long)id);
        return;
    }
    up_pending_unsent(c);
    w->cbs->requeue(w, c);
}

static void on_room(struct up_mworker *w)
{
    if (!w->fd_pressure) {
        return;
    }
    w->fd_pressure = false;
    up_log(UP_LOG_INFO, "worker pid=%d has fds again: routing to it", (int)w->pid);
    w->cbs->pressure(w, false);
    if (up_mworker_routable(w)) {
        w->cbs->routable(w);
    }
}

/* The worker began draining on its own: someone else signalled it. */
static void on_draining(struct up_mworker *w)
{
    if (w->state == UP_MW_DRAINING) {
        return; /* our DRAIN crossed its notice */
    }
    if (w->cbs->stop_coming != NULL && w->cbs->stop_coming(w)) {
        /* A signal to our whole process group or cgroup: the worker serves
         * what we send until the stop's DRAIN, so that what we accepted
         * finds a worker. */
        up_log(UP_LOG_INFO, "worker g%u#%u pid=%d got the stop signal too: it drains with the stop",
               w->gen_id, w->index, (int)w->pid);
        return;
    }
    up_log(UP_LOG_WARN,
           "worker g%u#%u pid=%d drains on its own (signalled by something else than this "
           "master): routing nothing more to it",
           w->gen_id, w->index, (int)w->pid);
    w->state = UP_MW_DRAINING;
    w->on_its_own = true;
    /* What waits to be sent goes elsewhere now. */
    requeue_list(w, &w->txq);
    w->cbs->draining(w);
}

/* A connection handed back. The worker runs the user's code: take it only
 * as the protocol allows, from a draining worker, with no more already
 * read than a request head may hold. */
static void on_hand_back(struct up_mworker *w, const struct up_msg *hdr, int fd, size_t len)
{
    /* Handing a connection back says the worker had it: if its ACK never
     * came, our copy goes now, or it would be held for as long as the
     * worker lives (and a refused one would never be closed). */
    struct up_pending *orig = unacked_take(w, hdr->conn_id);
    if (orig != NULL) {
        up_pending_acked(orig);
    }
    if (w->state != UP_MW_DRAINING) {
        warn_about(w, "handed a connection back while not draining; closing it");
        up_close(fd);
        return;
    }
    if (len > w->max_head) {
        warn_about(w,
                   "handed a connection back with %zu bytes already read (over --max-head); "
                   "closing it",
                   len);
        up_close(fd);
        return;
    }
    unsigned tries = hdr->arg < UINT_MAX ? (unsigned)hdr->arg : UINT_MAX;
    w->cbs->handed_back(w, fd, w->payload, len, tries);
}

static void on_message(struct up_mworker *w, const struct up_msg *hdr, int fd, size_t len)
{
    switch ((enum up_msg_kind)hdr->kind) {
    case UP_MSG_READY:
        if (w->state == UP_MW_STARTING) {
            w->takes_conns = (hdr->flags & UP_READY_F_CONNS) != 0;
            w->state = UP_MW_READY;
            up_log(UP_LOG_DEBUG, "worker g%u#%u pid=%d ready", w->gen_id, w->index, (int)w->pid);
            w->cbs->ready(w);
        }
        break;
    case UP_MSG_FAIL:
        w->cbs->fail(w, w->payload, len);
        break;
    case UP_MSG_ACK:
        on_acks(w, (const uint64_t *)(const void *)w->payload, len / sizeof(uint64_t));
        break;
    case UP_MSG_CONN:
        if (fd >= 0) {
            on_hand_back(w, hdr, fd, len);
            fd = -1;
        }
        break;
    case UP_MSG_STATS:
        w->conns = hdr->arg;
        w->requests = hdr->arg2;
        if (len >= 2 * sizeof(uint64_t)) {
            uint64_t alog[2];
            memcpy(alog, w->payload, sizeof(alog));
            w->alog_lines = alog[0];
            w->alog_dropped = alog[1];
        }
        break;
    case UP_MSG_DECLINE:
        on_decline(w, hdr->conn_id);
        break;
    case UP_MSG_ROOM:
        on_room(w);
        break;
    case UP_MSG_DRAINING:
        on_draining(w);
        break;
    case UP_MSG_DRAIN:
    case UP_MSG_REOPEN:
    case UP_MSG_CONNS:
        warn_about(w, "sent %s, ignoring", up_msg_kind_name(hdr->kind));
        break;
    }
    up_close(fd);
}

/* A receive that failed without ending the channel. */
static void rx_error(struct up_mworker *w, int err)
{
    char text[256];
    switch (err) {
    case -EMFILE:
        /* A hand-back whose fd the kernel dropped at our fd limit: the
         * worker had closed its copy, so that connection is gone. The
         * pending cap and the pause in recv_next() keep this from
         * happening unless something else took our fds. */
        w->cbs->lost(w);
        warn_about(w, "a connection it handed back was lost: the master is out of fds (raise "
                      "LimitNOFILE / ulimit -n)");
        break;
    case -ECONNRESET:
        /* The worker exited with messages of ours unread. The kernel says
         * so once, before the messages it sent us, which are still here
         * and are read next. */
        break;
    case -EPROTONOSUPPORT:
        snprintf(text, sizeof(text),
                 "worker #%u speaks another protocol version than this up-run (protocol %u): "
                 "up-worker and up-run are from different builds",
                 w->index, UP_PASSFD_VERSION);
        warn_about(w, "%s", text);
        w->cbs->fail(w, text, strlen(text));
        break;
    default:
        warn_about(w, "malformed message (%s), dropped", strerror(-err));
        break;
    }
}

static void on_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_mworker *w = up_container_of(op, struct up_mworker, rx);
    int fd = -1;
    int n = up_passfd_decode(&w->in, res, &fd);
    if (w->chan_dead) {
        up_close(fd);
        maybe_gone(w);
        return;
    }
    if (n == -EMFILE || n == -EPROTO || n == -EPROTONOSUPPORT || n == -ECONNRESET) {
        /* None of these ends the channel, or makes us kill a worker that
         * holds connections: what comes after still arrives. */
        rx_error(w, n);
        recv_next(w);
        return;
    }
    if (n < 0) {
        if (n != -EPIPE && n != -ECANCELED) {
            up_log(UP_LOG_WARN, "worker pid=%d: cannot read its channel: %s, closing it",
                   (int)w->pid_was, strerror(-n));
        }
        chan_dead(w);
        maybe_gone(w);
        return;
    }
    on_message(w, &w->in.hdr, fd, (size_t)n);
    if (w->pid == 0) {
        /* Reaped: the channel still makes progress, keep reading it. */
        up_timer_start(loop, &w->kill_timer, REAPED_CHAN_MS);
    }
    recv_next(w);
}

/* The channel is finished (EOF, error, or the worker was reaped): stop
 * using it, and route again everything the worker had not taken. */
static void chan_dead(struct up_mworker *w)
{
    if (w->chan_dead) {
        return;
    }
    w->chan_dead = true;
    up_loop_cancel(w->loop, &w->rx);
    up_loop_cancel(w->loop, &w->tx);
    requeue_all(w);
    /* Remembered for the failure report: a worker killed because it
     * closed fd 3 did not crash. */
    w->chan_closed_early = w->pid > 0 && w->state == UP_MW_STARTING;
    if (w->pid > 0 && w->state != UP_MW_DRAINING) {
        /* A worker that closed its channel cannot be told anything: it is
         * dying or broken. */
        w->cbs->late(w);
    }
}

/* ---- stderr: passed on to ours line by line, the tail kept for reports ---- */

static void keep_tail(struct up_mworker *w, const char *s, size_t n)
{
    if (n >= UP_MW_ERR_TAIL) {
        s += n - (UP_MW_ERR_TAIL - 1);
        n = UP_MW_ERR_TAIL - 1;
    }
    if (w->tail_len + n >= UP_MW_ERR_TAIL) {
        size_t drop = w->tail_len + n - (UP_MW_ERR_TAIL - 1);
        memmove(w->tail, w->tail + drop, w->tail_len - drop);
        w->tail_len -= drop;
    }
    memcpy(w->tail + w->tail_len, s, n);
    w->tail_len += n;
    w->tail[w->tail_len] = '\0';
}

static void on_err(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_mworker *w = up_container_of(op, struct up_mworker, err_op);
    if (res > 0) {
        /* The log never blocks: while our stderr is stuck, lines are dropped
         * there, and this pipe is still read so the worker never blocks. */
        up_log_relay(&w->err_lines, w->errbuf, (size_t)res);
        keep_tail(w, w->errbuf, (size_t)res);
        if (up_loop_read(loop, &w->err_op, w->errfd, w->errbuf, sizeof(w->errbuf)) == 0) {
            return;
        }
    }
    /* EOF (the worker and everything it started closed stderr), or the
     * read was canceled at reap time: take what is left, without waiting. */
    ssize_t n;
    while ((n = read(w->errfd, w->errbuf, sizeof(w->errbuf))) > 0) {
        up_log_relay(&w->err_lines, w->errbuf, (size_t)n);
        keep_tail(w, w->errbuf, (size_t)n);
    }
    up_log_relay_end(&w->err_lines);
    w->errfd = up_loop_close(loop, w->errfd);
    maybe_gone(w);
}

/* ---- the end ---- */

static void maybe_gone(struct up_mworker *w)
{
    if (w->state == UP_MW_GONE || w->pid > 0 || !w->chan_dead || w->rx.busy || w->tx.busy ||
        w->err_op.busy) {
        return;
    }
    w->chan = up_loop_close(w->loop, w->chan);
    w->errfd = up_loop_close(w->loop, w->errfd);
    up_timer_stop(w->loop, &w->kill_timer);
    up_timer_stop(w->loop, &w->ready_timer);
    w->left_as = w->state;
    w->state = UP_MW_GONE;
    w->cbs->gone(w); /* may free w */
}

void up_mworker_reaped(struct up_mworker *w, int status)
{
    if (up_kind_own_group(w->kind)) {
        /* What it started and left behind (its own workers, a helper)
         * must not go on serving our listeners unsupervised. */
        kill(-w->pid, SIGKILL);
    }
    w->pid = 0;
    w->status = status;
    up_timer_start(w->loop, &w->kill_timer, REAPED_CHAN_MS);
    if (w->err_op.busy) {
        up_loop_cancel(w->loop, &w->err_op);
    }
    maybe_gone(w);
}

void up_mworker_let_go(struct up_mworker *w)
{
    if (w->pid == 0) {
        return;
    }
    w->pid = 0; /* as if reaped, but nothing of its group is killed */
    w->status = 0;
    shutdown(w->chan, SHUT_RDWR); /* the receive in flight ends: EOF */
    up_timer_start(w->loop, &w->kill_timer, REAPED_CHAN_MS);
    if (w->err_op.busy) {
        up_loop_cancel(w->loop, &w->err_op);
    }
    maybe_gone(w);
}

static void on_kill_timer(struct up_loop *loop, struct up_timer *t)
{
    struct up_mworker *w = up_container_of(t, struct up_mworker, kill_timer);
    if (w->pid == 0) {
        chan_dead(w); /* reaped, and the channel never ended */
        maybe_gone(w);
    } else if (w->rx_paused) {
        /* Its hand-backs wait on us (the pending cap), not it on its
         * connections: it is not late. */
        up_timer_start(loop, &w->kill_timer, 1000);
    } else {
        up_log(UP_LOG_WARN, "worker pid=%d still running past its drain deadline", (int)w->pid);
        w->cbs->late(w);
    }
}

/* A worker without a channel drains on its stop signal, once; what it
 * holds at the deadline is cut (late: the owner kills it). A later call
 * may only bring the deadline closer. */
static void drain_by_signal(struct up_mworker *w, uint64_t deadline_ms)
{
    uint64_t deadline = up_loop_now(w->loop) + deadline_ms;
    w->state = UP_MW_DRAINING;
    if (!w->stop_sent || deadline < w->drain_deadline) {
        w->drain_deadline = deadline;
        up_timer_start(w->loop, &w->kill_timer, deadline_ms);
    }
    if (!w->stop_sent && w->pid > 0) {
        w->stop_sent = true;
        kill(w->pid, w->stop_signal);
    }
}

void up_mworker_drain(struct up_mworker *w, uint64_t deadline_ms, uint32_t flags)
{
    if (w->state == UP_MW_GONE) {
        return;
    }
    if (!up_kind_has_channel(w->kind)) {
        drain_by_signal(w, deadline_ms);
        return;
    }
    bool first = w->state != UP_MW_DRAINING || w->on_its_own;
    uint64_t deadline = up_loop_now(w->loop) + deadline_ms;
    w->state = UP_MW_DRAINING;
    w->on_its_own = false;
    if (first || deadline < w->drain_deadline || (flags & ~w->drain_flags) != 0) {
        w->drain_flags |= flags;
        if (first || deadline < w->drain_deadline) {
            w->drain_deadline = deadline;
        }
        w->drain_queued = true;
        up_timer_start(w->loop, &w->kill_timer,
                       w->drain_deadline - up_loop_now(w->loop) + KILL_GRACE_MS);
    }
    /* Connections not yet sent go to the generation that serves now. */
    requeue_list(w, &w->txq);
    kick(w);
}

void up_mworker_reopen(struct up_mworker *w)
{
    /* Only up-worker has log files of ours: a handoff worker in another
     * language need not know the message. */
    if (w->state != UP_MW_GONE && w->kind == UP_KIND_APP) {
        w->reopen_queued = true;
        kick(w);
    }
}

void up_mworker_kill(struct up_mworker *w, int sig)
{
    if (w->pid > 0) {
        kill(w->pid, sig);
        if (sig == SIGKILL && up_kind_own_group(w->kind)) {
            kill(-w->pid, SIGKILL); /* a server's own workers too */
        }
    }
}

/* ---- readiness without a channel ---- */

static void became_ready(struct up_mworker *w, const char *how)
{
    if (w->state != UP_MW_STARTING || w->pid == 0) {
        return;
    }
    w->state = UP_MW_READY;
    up_timer_stop(w->loop, &w->ready_timer);
    up_log(UP_LOG_DEBUG, "worker g%u#%u pid=%d ready (%s)", w->gen_id, w->index, (int)w->pid, how);
    w->cbs->ready(w);
}

static void on_ready_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    became_ready(up_container_of(t, struct up_mworker, ready_timer), "--ready-after");
}

void up_mworker_notice(struct up_mworker *w, const struct up_notice *n)
{
    if (n->status != NULL) {
        size_t len =
            n->status_len < sizeof(w->status_text) - 1 ? n->status_len : sizeof(w->status_text) - 1;
        /* The worker's text goes into status lines: printable and without
         * quotes, whatever it sent. */
        for (size_t i = 0; i < len; i++) {
            char c = n->status[i];
            w->status_text[i] = c >= 0x20 && c < 0x7f && c != '"' ? c : '?';
        }
        w->status_text[len] = '\0';
    }
    if (n->ready && w->ready_by == UP_READY_NOTIFY) {
        became_ready(w, "READY=1");
    }
    /* Reaped already: its end is reported as such (gone), not twice. */
    if (n->stopping && w->pid > 0 && w->state != UP_MW_DRAINING && w->state != UP_MW_GONE) {
        /* Not asked to: someone else signalled it (an operator, a
         * container runtime). It serves nothing new once it stops. */
        up_log(UP_LOG_WARN,
               "worker g%u#%u pid=%d says STOPPING=1 on its own (signalled by something else "
               "than this master)",
               w->gen_id, w->index, (int)w->pid);
        w->state = UP_MW_DRAINING;
        w->on_its_own = true;
        w->cbs->draining(w);
    }
}

/* ---- spawning ---- */

/* Start the process as its kind says: chan (the child's end of the
 * channel, or -1) and out (the write end of its output pipe) are the
 * master's and stay so. */
static int spawn_process(struct up_mworker *w, const struct up_kind_params *p, int chan, int out)
{
    struct up_kind_plan *plan = malloc(sizeof(*plan));
    if (plan == NULL) {
        return -ENOMEM;
    }
    int r = up_kind_plan(p, chan, out, plan);
    pid_t pid = 0;
    if (r == 0) {
        r = up_child_start(&plan->child, &pid);
    }
    free(plan);
    if (r < 0) {
        return r;
    }
    w->pid = w->pid_was = pid;
    return 0;
}

static void init_worker(struct up_mworker *w, struct up_loop *loop, const struct up_kind_params *p,
                        const struct up_mworker_cbs *cbs, void *owner)
{
    w->loop = loop;
    w->cbs = cbs;
    w->owner = owner;
    w->kind = p->kind;
    w->ready_by = p->ready;
    w->stop_signal = p->stop_signal > 0 ? p->stop_signal : SIGTERM;
    w->gen_id = p->gen_id;
    w->index = p->index;
    w->max_head = p->max_head;
    w->spawned_at = up_loop_now(loop);
    w->chan = w->errfd = -1;
    up_list_init(&w->txq);
    up_list_init(&w->tx_batch);
    up_list_init(&w->unacked);
    w->rx.cb = on_rx;
    w->tx.cb = on_tx;
    w->err_op.cb = on_err;
    w->kill_timer.cb = on_kill_timer;
    w->ready_timer.cb = on_ready_timer;
    w->warn_rl = (struct up_ratelimit)UP_RATELIMIT_INIT(60000, 5);
}

struct up_mworker *up_mworker_spawn(struct up_loop *loop, const struct up_kind_params *p,
                                    const struct up_mworker_cbs *cbs, void *owner, int *ret_err)
{
    struct up_mworker *w = calloc(1, sizeof(*w));
    int chan[2] = {-1, -1}, errp[2] = {-1, -1};
    bool has_chan = up_kind_has_channel(p->kind);
    int r = -ENOMEM;
    if (w == NULL || (has_chan && (w->payload = malloc(UP_PASSFD_MAX_PAYLOAD)) == NULL)) {
        goto fail;
    }
    init_worker(w, loop, p, cbs, owner);
    r = has_chan ? up_passfd_pair(chan) : 0;
    if (r < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        r = r < 0 ? r : -errno;
        goto fail;
    }
    r = spawn_process(w, p, chan[1], errp[1]);
    if (r < 0) {
        goto fail;
    }
    /* The child has its copies; ours of its ends go. */
    up_close(chan[1]);
    up_close(errp[1]);
    w->chan = chan[0];
    w->errfd = errp[0];
    /* Without a channel there is nothing to read or send: as if it had
     * ended, which is what the rest of this file asks before it is gone. */
    w->chan_dead = !has_chan;
    (void)up_fd_set_nonblock(w->errfd, 1);
    recv_next(w);
    (void)up_loop_read(loop, &w->err_op, w->errfd, w->errbuf, sizeof(w->errbuf));
    if (p->ready == UP_READY_AFTER) {
        up_timer_start(loop, &w->ready_timer, p->ready_after_ms);
    }
    return w;
fail:
    up_close(chan[0]);
    up_close(chan[1]);
    up_close(errp[0]);
    up_close(errp[1]);
    if (w != NULL) {
        free(w->payload);
        free(w);
    }
    *ret_err = r;
    return NULL;
}

void up_mworker_resume_rx(struct up_mworker *w)
{
    if (w->rx_paused && !w->rx.busy) {
        recv_next(w);
    }
}

bool up_mworker_ready(const struct up_mworker *w)
{
    return w->state == UP_MW_READY && w->pid > 0 &&
           (!w->chan_dead || !up_kind_has_channel(w->kind));
}

uint64_t up_mworker_stalled_ms(const struct up_mworker *w)
{
    uint64_t waited = w->nqueued > 0 ? up_loop_now(w->loop) - w->waiting_since : 0;
    return waited >= UP_MW_STALL_MS ? waited : 0;
}

bool up_mworker_routable(const struct up_mworker *w)
{
    return up_mworker_ready(w) && up_kind_has_channel(w->kind) && !w->chan_full && !w->tx_dead &&
           !w->fd_pressure && w->nqueued < UP_MW_MAX_UNACKED && up_mworker_stalled_ms(w) == 0;
}

void up_mworker_free(struct up_mworker *w)
{
    free(w->payload);
    free(w);
}
