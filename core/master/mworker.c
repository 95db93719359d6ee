/*
 * mworker: one worker process as the master sees it (gen.h): spawning it,
 * its channel (CONN and DRAIN out; READY, FAIL, ACK, CONN back and STATS in),
 * its stderr, and its end.
 */
#include "gen.h"

#include "fd.h"
#include "log.h"
#include "master.h"
#include "mconn.h"
#include "child.h"

#include <spawn.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A draining worker still alive this long after its deadline is killed:
 * it had its chance to finish and hand its connections back. */
#define KILL_GRACE_MS 5000

/* After a worker exits, how long its channel may go without delivering
 * anything (a FAIL with the reason, handed-back connections) before it is
 * given up. Each message read restarts it: a starved master reading slowly
 * must not drop connections still queued in the channel. */
#define REAPED_CHAN_MS 5000

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

/* ---- the CONN queue: connections waiting for this worker's channel ---- */

static void txq_push(struct up_mworker *w, struct up_mconn *c)
{
    c->qnext = NULL;
    if (w->txq_tail != NULL) {
        w->txq_tail->qnext = c;
    } else {
        w->txq_head = c;
    }
    w->txq_tail = c;
}

static struct up_mconn *list_pop(struct up_mconn **head, struct up_mconn **tail)
{
    struct up_mconn *c = *head;
    if (c != NULL) {
        *head = c->qnext;
        if (*head == NULL) {
            *tail = NULL;
        }
        c->qnext = NULL;
    }
    return c;
}

void up_mworker_send_conn(struct up_mworker *w, struct up_mconn *c)
{
    c->worker = w;
    c->state = UP_MCONN_SENT;
    w->nqueued++;
    txq_push(w, c);
    up_mworker_kick(w);
}

/* Every connection of one of w's lists goes back to routing. */
static void requeue_list(struct up_mworker *w, struct up_mconn **head, struct up_mconn **tail)
{
    struct up_mconn *c;
    while ((c = list_pop(head, tail)) != NULL) {
        w->nqueued--;
        up_mconn_requeue(c);
    }
}

/* Every connection this worker has not ACKed goes back to routing. The one
 * in flight (tx_conn) waits for its send to complete: its message buffer is
 * still in use until then. */
static void requeue_all(struct up_mworker *w)
{
    requeue_list(w, &w->unacked_head, &w->unacked_tail);
    requeue_list(w, &w->txq_head, &w->txq_tail);
}

/* ---- sending ---- */

static void on_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);

static int send_drain(struct up_mworker *w)
{
    struct up_gen *g = w->gen;
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_DRAIN);
    uint64_t now = up_loop_now(g->m->loop);
    hdr.arg = g->drain_deadline > now ? g->drain_deadline - now : 0;
    hdr.flags = g->drain_flags;
    w->drain_queued = false;
    w->drain_inflight = true;
    int r = up_passfd_prep(&w->drain_out, &hdr, NULL, 0, -1);
    if (r == 0) {
        r = up_loop_sendmsg(g->m->loop, &w->tx, w->chan, &w->drain_out.msg, 0);
    }
    return r;
}

static int send_conn(struct up_mworker *w, struct up_mconn *c)
{
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    hdr.conn_id = c->id;
    hdr.peeked = (uint32_t)c->peeked;
    hdr.arg = c->tries;
    w->tx_conn = c;
    int r = up_passfd_prep(&c->out, &hdr, c->prefix, c->prefix_len, c->fd);
    if (r == 0) {
        /* MSG_DONTWAIT: a full channel must not hold the connection up;
         * -EAGAIN sends it to another worker. */
        r = up_loop_sendmsg(w->gen->m->loop, &w->tx, w->chan, &c->out.msg, MSG_DONTWAIT);
    }
    return r;
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
        up_log(UP_LOG_WARN, "worker pid=%d: channel send failed: %s, rerouting", (int)w->pid,
               strerror(-err));
    }
    requeue_list(w, &w->txq_head, &w->txq_tail);
}

void up_mworker_kick(struct up_mworker *w)
{
    if (w->chan < 0 || w->chan_dead || w->tx_dead || w->tx.busy) {
        return;
    }
    int r = 0;
    if (w->drain_queued) {
        r = send_drain(w);
    } else if (w->chan_full) {
        /* Wait until the worker has read some of its queue. */
        r = up_loop_poll(w->gen->m->loop, &w->tx, w->chan, POLLOUT);
    } else if (w->txq_head != NULL) {
        r = send_conn(w, list_pop(&w->txq_head, &w->txq_tail));
    }
    if (r < 0) {
        struct up_mconn *c = w->tx_conn;
        w->tx_conn = NULL;
        w->drain_inflight = false;
        if (c != NULL) {
            w->nqueued--;
            up_mconn_requeue(c);
        }
        tx_dead(w, r);
    }
}

static void on_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_mworker *w = (struct up_mworker *)((char *)op - offsetof(struct up_mworker, tx));
    struct up_mconn *c = w->tx_conn;
    w->tx_conn = NULL;
    if (w->chan_dead) {
        /* Whatever was in flight died with the channel (or with the worker,
         * before it could ACK): route it again. */
        w->drain_inflight = false;
        if (c != NULL) {
            w->nqueued--;
            up_mconn_requeue(c);
        }
        up_mworker_maybe_gone(w);
        return;
    }
    if (w->drain_inflight) {
        w->drain_inflight = false;
        w->drain_sent = res >= 0;
    } else if (c == NULL) {
        w->chan_full = false; /* the POLLOUT wait ended */
    } else if (res >= 0) {
        /* Sent: the worker has it in its queue; ours until the ACK. */
        c->qnext = NULL;
        if (w->unacked_tail != NULL) {
            w->unacked_tail->qnext = c;
        } else {
            w->unacked_head = c;
        }
        w->unacked_tail = c;
    } else {
        w->nqueued--;
        if (res == -EAGAIN) {
            w->chan_full = true;
        }
        up_mconn_requeue(c);
    }
    if (res < 0 && res != -EAGAIN) {
        tx_dead(w, res);
        return;
    }
    up_mworker_kick(w);
    if (c == NULL && !w->chan_full) {
        up_mconn_route_queued(w->gen->m);
    }
}

/* ---- receiving ---- */

static void on_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);

static void recv_next(struct up_mworker *w)
{
    if (w->chan_dead) {
        return;
    }
    struct up_master *m = w->gen->m;
    if (w->state == UP_MW_DRAINING && m->nmconns >= m->max_pending) {
        /* A draining worker's channel brings hand-backs, each a new fd
         * here: at the pending cap (sized to our fd limit) leave them in
         * the channel, where the worker still owns them, rather than have
         * the kernel drop them at our limit. up_gen_resume_rx() goes on
         * once connections are done. */
        w->rx_paused = true;
        return;
    }
    w->rx_paused = false;
    up_passfd_in_prep(&w->in, w->payload, UP_PASSFD_MAX_PAYLOAD);
    if (up_loop_recvmsg(w->gen->m->loop, &w->rx, w->chan, &w->in.msg, 0) < 0) {
        up_mworker_chan_dead(w);
    }
}

/* A warning caused by what w sent: it runs the user's code, so it could
 * send a flood; at most a few lines a minute per worker, the rest counted. */
static void warn_about(struct up_mworker *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn_about(struct up_mworker *w, const char *fmt, ...)
{
    unsigned long long held = 0;
    if (!up_ratelimit_ok(&w->warn_rl, up_loop_now(w->gen->m->loop), &held)) {
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

/* Take c (SENT) off w's list of connections sent and not yet ACKed.
 * Returns c, or NULL if no connection with that id is there. */
static struct up_mconn *unacked_take(struct up_mworker *w, uint64_t id)
{
    /* ACKs come in the order the CONNs went out (one channel, in order);
     * an id not at the front is searched for, to stay correct anyway. */
    struct up_mconn *prev = NULL;
    struct up_mconn *c = w->unacked_head;
    while (c != NULL && c->id != id) {
        prev = c;
        c = c->qnext;
    }
    if (c == NULL) {
        return NULL;
    }
    if (prev != NULL) {
        prev->qnext = c->qnext;
    } else {
        w->unacked_head = c->qnext;
    }
    if (w->unacked_tail == c) {
        w->unacked_tail = prev;
    }
    c->qnext = NULL;
    w->nqueued--;
    return c;
}

static void on_acks(struct up_mworker *w, const uint64_t *ids, size_t n)
{
    bool was_full = w->nqueued >= UP_MW_MAX_UNACKED;
    size_t unknown = 0;
    uint64_t first = 0;
    for (size_t i = 0; i < n; i++) {
        struct up_mconn *c = unacked_take(w, ids[i]);
        if (c == NULL) {
            first = unknown++ == 0 ? ids[i] : first;
            continue;
        }
        up_mconn_acked(c);
    }
    if (unknown > 0) {
        /* One line per message, not one per id: a message holds 8,192. */
        warn_about(w, "ACK for %zu unknown conn ids (the first id=%llu), ignoring", unknown,
                   (unsigned long long)first);
    }
    if (was_full && w->nqueued < UP_MW_MAX_UNACKED) {
        /* It can take connections again: what waited for it goes now. */
        up_mconn_route_queued(w->gen->m);
    }
}

/* DECLINE: the worker is out of fds and never got c's. c is still ours
 * (fd kept): send it elsewhere, and this worker nothing until ROOM. */
static void on_decline(struct up_mworker *w, uint64_t id)
{
    struct up_mconn *c = unacked_take(w, id);
    if (!w->fd_pressure) {
        w->fd_pressure = true;
        up_log(UP_LOG_WARN,
               "worker pid=%d is out of fds: routing new connections to other workers until "
               "it has room (raise LimitNOFILE / ulimit -n)",
               (int)w->pid);
        up_master_check_health(w->gen->m);
    }
    if (c == NULL) {
        warn_about(w, "DECLINE for unknown conn id=%llu, ignoring", (unsigned long long)id);
        return;
    }
    up_mconn_requeue(c);
}

/* The worker began draining on its own: someone else signalled it. */
static void on_draining(struct up_mworker *w)
{
    if (w->state == UP_MW_DRAINING) {
        return; /* our DRAIN crossed its notice */
    }
    struct up_master *m = w->gen->m;
    up_log(UP_LOG_WARN,
           "worker g%u#%u pid=%d drains on its own (signalled by something else than this "
           "master): routing nothing more to it",
           w->gen->id, w->index, (int)w->pid);
    w->state = UP_MW_DRAINING;
    w->on_its_own = true;
    /* What waits to be sent goes elsewhere now. */
    requeue_list(w, &w->txq_head, &w->txq_tail);
    /* Its own drain deadline is its business; ours bounds it. */
    up_timer_start(m->loop, &w->kill_timer, m->cli->drain_timeout_ms + KILL_GRACE_MS);
    up_gen_worker_leaving(w);
}

/* A connection handed back. The worker runs the user's code: take it only
 * as the protocol allows, from a draining worker, with no more already
 * read than a request head may hold. */
static void on_hand_back(struct up_mworker *w, const struct up_msg *hdr, int fd, size_t len)
{
    struct up_master *m = w->gen->m;
    /* Handing a connection back says the worker had it: if its ACK never
     * came, our copy goes now, or it would be held for as long as the
     * worker lives (and a refused one would never be closed). */
    struct up_mconn *orig = unacked_take(w, hdr->conn_id);
    if (orig != NULL) {
        up_mconn_acked(orig);
    }
    if (w->state != UP_MW_DRAINING) {
        warn_about(w, "handed a connection back while not draining; closing it");
        up_close(fd);
        return;
    }
    if (len > m->cli->max_head) {
        warn_about(w,
                   "handed a connection back with %zu bytes already read (over --max-head); "
                   "closing it",
                   len);
        up_close(fd);
        return;
    }
    unsigned tries = hdr->arg < UINT_MAX ? (unsigned)hdr->arg : UINT_MAX;
    up_mconn_handed_back_take(m, fd, w->payload, len, tries, w->pid);
}

static void on_message(struct up_mworker *w, const struct up_msg *hdr, int fd, size_t len)
{
    struct up_master *m = w->gen->m;
    switch ((enum up_msg_kind)hdr->kind) {
    case UP_MSG_READY:
        up_gen_worker_ready(w);
        break;
    case UP_MSG_FAIL:
        snprintf(w->gen->fail_reason, sizeof(w->gen->fail_reason), "%.*s", (int)len, w->payload);
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
        break;
    case UP_MSG_DECLINE:
        on_decline(w, hdr->conn_id);
        break;
    case UP_MSG_ROOM:
        if (w->fd_pressure) {
            w->fd_pressure = false;
            up_log(UP_LOG_INFO, "worker pid=%d has fds again: routing to it", (int)w->pid);
            up_master_check_health(m);
            up_mconn_route_queued(m);
        }
        break;
    case UP_MSG_DRAINING:
        on_draining(w);
        break;
    case UP_MSG_DRAIN:
        warn_about(w, "sent %s, ignoring", up_msg_kind_name(hdr->kind));
        break;
    }
    up_close(fd);
}

/* A receive that failed without ending the channel. */
static void rx_error(struct up_mworker *w, int err)
{
    struct up_master *m = w->gen->m;
    switch (err) {
    case -EMFILE:
        /* A hand-back whose fd the kernel dropped at our fd limit: the
         * worker had closed its copy, so that connection is gone. The
         * pending cap and the pause in recv_next() keep this from
         * happening unless something else took our fds. */
        m->stats.lost++;
        warn_about(w, "a connection it handed back was lost: the master is out of fds (raise "
                      "LimitNOFILE / ulimit -n)");
        break;
    case -ECONNRESET:
        /* The worker exited with messages of ours unread. The kernel says
         * so once, before the messages it sent us, which are still here
         * and are read next. */
        break;
    case -EPROTONOSUPPORT:
        snprintf(w->gen->fail_reason, sizeof(w->gen->fail_reason),
                 "worker #%u speaks another protocol version than this up-run (protocol %u): "
                 "up-worker and up-run are from different builds",
                 w->index, UP_PASSFD_VERSION);
        warn_about(w, "%s", w->gen->fail_reason);
        if (w->state == UP_MW_STARTING && w->pid > 0) {
            kill(w->pid, SIGKILL); /* never ready: it holds nothing */
        }
        break;
    default:
        warn_about(w, "malformed message (%s), dropped", strerror(-err));
        break;
    }
}

static void on_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_mworker *w = (struct up_mworker *)((char *)op - offsetof(struct up_mworker, rx));
    int fd = -1;
    int n = up_passfd_decode(&w->in, res, &fd);
    if (w->chan_dead) {
        up_close(fd);
        up_mworker_maybe_gone(w);
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
                   (int)w->pid, strerror(-n));
        }
        up_mworker_chan_dead(w);
        up_mworker_maybe_gone(w);
        return;
    }
    on_message(w, &w->in.hdr, fd, (size_t)n);
    if (w->pid == 0) {
        /* Reaped: the channel still makes progress, keep reading it. */
        up_timer_start(w->gen->m->loop, &w->kill_timer, REAPED_CHAN_MS);
    }
    recv_next(w);
}

/* The channel is finished (EOF, error, or the worker was reaped): stop
 * using it, and route again everything the worker had not taken. */
void up_mworker_chan_dead(struct up_mworker *w)
{
    if (w->chan_dead) {
        return;
    }
    w->chan_dead = true;
    up_loop_cancel(w->gen->m->loop, &w->rx);
    up_loop_cancel(w->gen->m->loop, &w->tx);
    requeue_all(w);
    if (w->pid > 0 && w->state != UP_MW_DRAINING) {
        /* A worker that closed its channel cannot be told anything: it is
         * dying or broken. Make sure of it. */
        kill(w->pid, SIGKILL);
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
    struct up_mworker *w = (struct up_mworker *)((char *)op - offsetof(struct up_mworker, err_op));
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
    up_mworker_maybe_gone(w);
}

/* ---- the end ---- */

void up_mworker_maybe_gone(struct up_mworker *w)
{
    struct up_loop *loop = w->gen->m->loop;
    if (w->state == UP_MW_GONE || w->pid > 0 || !w->chan_dead || w->rx.busy || w->tx.busy ||
        w->err_op.busy) {
        return;
    }
    w->chan = up_loop_close(loop, w->chan);
    w->errfd = up_loop_close(loop, w->errfd);
    up_timer_stop(loop, &w->kill_timer);
    w->state = UP_MW_GONE;
    up_gen_worker_gone(w); /* may free w */
}

/* The process was reaped with wait status status. Its channel still holds
 * whatever it sent last (FAIL with the dlerror() text, handed-back
 * connections): read on until EOF rather than cut it, with a guard timer in
 * case something the worker started keeps the channel open. */
void up_mworker_reaped(struct up_mworker *w, int status)
{
    struct up_loop *loop = w->gen->m->loop;
    w->pid = 0;
    w->status = status;
    up_timer_start(loop, &w->kill_timer, REAPED_CHAN_MS);
    if (w->err_op.busy) {
        up_loop_cancel(loop, &w->err_op);
    }
    up_mworker_maybe_gone(w);
}

static void on_kill_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_mworker *w =
        (struct up_mworker *)((char *)t - offsetof(struct up_mworker, kill_timer));
    if (w->pid == 0) {
        up_mworker_chan_dead(w); /* reaped, and the channel never ended */
        up_mworker_maybe_gone(w);
    } else if (w->rx_paused) {
        /* Its hand-backs wait on us (the pending cap), not it on its
         * connections: it is not late. */
        up_timer_start(loop, &w->kill_timer, 1000);
    } else {
        up_log(UP_LOG_WARN, "worker pid=%d still running past its drain deadline, killing it",
               (int)w->pid);
        kill(w->pid, SIGKILL);
    }
}

/* Tell w to drain (the generation's deadline and flags). */
void up_mworker_drain(struct up_mworker *w)
{
    struct up_gen *g = w->gen;
    if (w->state == UP_MW_GONE) {
        return;
    }
    w->state = UP_MW_DRAINING;
    w->drain_queued = true;
    /* Connections not yet sent go to the generation that serves now. */
    requeue_list(w, &w->txq_head, &w->txq_tail);
    uint64_t now = up_loop_now(g->m->loop);
    uint64_t left = g->drain_deadline > now ? g->drain_deadline - now : 0;
    up_timer_start(g->m->loop, &w->kill_timer, left + KILL_GRACE_MS);
    up_mworker_kick(w);
}

/* ---- spawning ---- */

/* Move fd above the range dup2 will target in the child (0-3), keeping
 * CLOEXEC, so that the child's dup2(fd, 3) can never be a no-op that leaves
 * CLOEXEC set. Returns the fd to use, or -errno. */
static int lift_fd(int fd)
{
    if (fd > 3) {
        return fd;
    }
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    int r = nfd < 0 ? -errno : nfd;
    up_close(fd);
    return r;
}

static int spawn_process(struct up_mworker *w, int child_chan, int child_err)
{
    struct up_gen *g = w->gen;
    struct up_master *m = g->m;
    const struct up_cli *cli = m->cli;
    char bin[600], gen[16], idx[16], maxhead[24];
    const char *env_bin = getenv("UP_WORKER_BIN");
    snprintf(bin, sizeof(bin), "%s", env_bin ? env_bin : "");
    if (bin[0] == '\0') {
        snprintf(bin, sizeof(bin), "%s/up-worker", m->self_dir);
    }
    snprintf(gen, sizeof(gen), "%u", g->id);
    snprintf(idx, sizeof(idx), "%u", w->index);
    snprintf(maxhead, sizeof(maxhead), "%zu", cli->max_head);
    const char *argv[64 + UP_CLI_MAX_REQUIRE * 2];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = "--generation", argv[a++] = gen;
    argv[a++] = "--index", argv[a++] = idx;
    argv[a++] = "--title", argv[a++] = cli->title;
    argv[a++] = "--max-head", argv[a++] = maxhead;
    if (cli->ready_manual) {
        argv[a++] = "--ready=manual";
    }
    for (int i = 0; i < cli->nrequire; i++) {
        argv[a++] = "--require", argv[a++] = cli->require[i];
    }
    argv[a++] = g->app;
    argv[a++] = "--";
    for (int i = 1; i < cli->app_argc && a < (int)(sizeof(argv) / sizeof(argv[0])) - 1; i++) {
        argv[a++] = cli->app_argv[i];
    }
    argv[a] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, child_chan, 3);
    posix_spawn_file_actions_adddup2(&fa, child_err, STDERR_FILENO);
    pid_t pid;
    int r = up_child_spawn(bin, argv, &fa, &pid);
    posix_spawn_file_actions_destroy(&fa);
    if (r < 0) {
        return r;
    }
    w->pid = w->pid_was = pid;
    return 0;
}

struct up_mworker *up_mworker_spawn(struct up_gen *g, unsigned index)
{
    struct up_master *m = g->m;
    struct up_mworker *w = calloc(1, sizeof(*w));
    int chan[2] = {-1, -1}, errp[2] = {-1, -1};
    int r = -ENOMEM;
    if (w == NULL || (w->payload = malloc(UP_PASSFD_MAX_PAYLOAD)) == NULL) {
        goto fail;
    }
    w->gen = g;
    w->index = index;
    w->spawned_at = up_loop_now(m->loop);
    w->chan = w->errfd = -1;
    w->rx.cb = on_rx;
    w->tx.cb = on_tx;
    w->err_op.cb = on_err;
    w->kill_timer.cb = on_kill_timer;
    w->warn_rl = (struct up_ratelimit)UP_RATELIMIT_INIT(60000, 5);
    r = up_passfd_pair(chan);
    if (r < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        r = r < 0 ? r : -errno;
        goto fail;
    }
    if ((chan[1] = lift_fd(chan[1])) < 0 || (errp[1] = lift_fd(errp[1])) < 0) {
        r = chan[1] < 0 ? chan[1] : errp[1];
        goto fail;
    }
    r = spawn_process(w, chan[1], errp[1]);
    if (r < 0) {
        goto fail;
    }
    /* The child has its copies; ours of its ends go. */
    up_close(chan[1]);
    up_close(errp[1]);
    w->chan = chan[0];
    w->errfd = errp[0];
    (void)up_fd_set_nonblock(w->errfd, 1);
    recv_next(w);
    (void)up_loop_read(m->loop, &w->err_op, w->errfd, w->errbuf, sizeof(w->errbuf));
    return w;
fail:
    up_log(UP_LOG_ERR, "cannot start worker g%u#%u: %s", g->id, index, strerror(-r));
    up_close(chan[0]);
    up_close(chan[1]);
    up_close(errp[0]);
    up_close(errp[1]);
    if (w != NULL) {
        free(w->payload);
        free(w);
    }
    return NULL;
}

void up_mworker_resume_rx(struct up_mworker *w)
{
    if (w->rx_paused && !w->rx.busy) {
        recv_next(w);
    }
}

bool up_mworker_routable(const struct up_mworker *w)
{
    return w->state == UP_MW_READY && w->pid > 0 && !w->chan_full && !w->chan_dead && !w->tx_dead &&
           !w->fd_pressure && w->nqueued < UP_MW_MAX_UNACKED;
}

void up_mworker_free(struct up_mworker *w)
{
    free(w->payload);
    free(w);
}
