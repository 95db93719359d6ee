/*
 * worker: the up-worker process. See worker.h for its life cycle.
 */
#include "worker.h"
#include "list.h"

#include "conn.h"
#include "fd.h"
#include "listen.h"
#include "log.h"
#include "sig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <malloc.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* How often a worker tells the master what it holds (for `up-run status`). */
#define STATS_MS 1000
/* After the drain deadline, how often a draining worker looks again at
 * what it still holds. */
#define DRAIN_RECHECK_MS 1000
/* How long a worker stopped by someone else waits for the master's DRAIN
 * after its DRAINING: the master answers at once, or within its graceful
 * stop's first step (1 s) when the same stop reached it. */
#define LEAVE_WAIT_MS 2000
/* How long idle connections to be closed (the master stops, or there is
 * none) wait for a last request first: an active client sends its next
 * one within a round trip. */
#define CLOSE_IDLE_GRACE_MS 200

/* One queued message to the master. */
struct up_chan_msg {
    struct up_list link; /* the worker's txq */
    struct up_passfd_out out;
    struct up_msg hdr;
    int fd;          /* owned: closed once sent (the master has its own copy then) */
    uint64_t covers; /* ACK: the arrival numbers it covers, up to this */
    size_t len;
    char payload[];
};

/* The app API has no context argument: see worker.h. */
static struct up_worker *up_current;

static void begin_drain(struct up_worker *w, uint64_t deadline_ms, uint32_t flags);
static void maybe_exit(struct up_worker *w);
static void send_stats(struct up_worker *w);

/* ---- the channel to the master ---- */

static void on_chan_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);

static struct up_chan_msg *msg_new(enum up_msg_kind kind, const void *payload, size_t len)
{
    struct up_chan_msg *m = calloc(1, sizeof(*m) + len);
    if (m == NULL) {
        return NULL;
    }
    up_msg_init(&m->hdr, kind);
    m->fd = -1;
    m->len = len;
    if (len > 0) {
        memcpy(m->payload, payload, len);
    }
    return m;
}

static void msg_free(struct up_worker *w, struct up_chan_msg *m)
{
    if (m != NULL) {
        m->fd = up_loop_close(w->loop, m->fd);
        free(m);
    }
}

/* Drop every message waiting to be sent (closing the fds of connections
 * that were on their way back). */
static void drop_queued(struct up_worker *w)
{
    struct up_list *n;
    while ((n = up_list_pop_front(&w->txq)) != NULL) {
        msg_free(w, up_container_of(n, struct up_chan_msg, link));
    }
}

/* Close the channel once no op uses it any more. */
static void chan_close_when_idle(struct up_worker *w)
{
    if (w->chan_lost && !w->chan_rx.busy && !w->chan_tx.busy) {
        w->chan = up_loop_close(w->loop, w->chan);
    }
}

/* The master is gone: no one to send to. Drop what is queued (closing the
 * fds of connections that were on their way back) and drain. */
static void chan_lost(struct up_worker *w)
{
    if (w->chan < 0 || w->chan_lost) {
        return;
    }
    up_log(UP_LOG_INFO, "master channel closed, draining");
    w->chan_lost = true;
    up_loop_cancel(w->loop, &w->chan_rx);
    up_loop_cancel(w->loop, &w->chan_tx);
    chan_close_when_idle(w);
    drop_queued(w);
    w->nacks = 0;
    /* No master to tell: the waiting connections are ours alone now. */
    w->acked_upto = w->arrivals;
    up_worker_release_acked(w);
    begin_drain(w, w->cfg.drain_timeout_ms, 0);
}

static struct up_chan_msg *take_acks(struct up_worker *w)
{
    size_t n = w->nacks;
    size_t max = UP_PASSFD_MAX_PAYLOAD / sizeof(uint64_t);
    if (n > max) {
        n = max;
    }
    struct up_chan_msg *m = msg_new(UP_MSG_ACK, w->acks, n * sizeof(uint64_t));
    if (m == NULL) {
        return NULL;
    }
    m->hdr.arg = n;
    memmove(w->acks, w->acks + n, (w->nacks - n) * sizeof(uint64_t));
    w->nacks -= n;
    w->acks_taken += n;
    m->covers = w->acks_taken;
    return m;
}

void up_worker_release_acked(struct up_worker *w)
{
    /* Waiting connections are the newest: they sit at the list's head. */
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &w->conns)
    {
        struct up_wconn *c = up_container_of(pos, struct up_wconn, link);
        if (w->nwaiting == 0) {
            break;
        }
        if (c->wait_ack && c->ack_seq <= w->acked_upto) {
            up_wconn_acked(c);
        }
    }
}

/* Start the next send if none is in flight. ACKs go first: until the
 * master has one, it keeps its copy of the connection's fd. */
static void chan_kick(struct up_worker *w)
{
    if (!up_worker_has_master(w) || w->tx_inflight != NULL) {
        return;
    }
    struct up_chan_msg *m = w->nacks > 0 ? take_acks(w) : NULL;
    struct up_list *next = m == NULL ? up_list_pop_front(&w->txq) : NULL;
    if (next != NULL) {
        m = up_container_of(next, struct up_chan_msg, link);
    }
    if (m == NULL) {
        maybe_exit(w);
        return;
    }
    w->tx_inflight = m;
    int r = up_passfd_prep(&m->out, &m->hdr, m->payload, m->len, m->fd);
    if (r == 0) {
        r = up_loop_sendmsg(w->loop, &w->chan_tx, w->chan, &m->out.msg, 0);
    }
    if (r < 0) {
        up_log(UP_LOG_ERR, "send %s to master failed: %s", up_msg_kind_name(m->hdr.kind),
               strerror(-r));
        w->tx_inflight = NULL;
        msg_free(w, m);
        chan_lost(w);
    }
}

static void on_chan_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_worker *w = up_container_of(op, struct up_worker, chan_tx);
    struct up_chan_msg *m = w->tx_inflight;
    w->tx_inflight = NULL;
    uint64_t covers = res >= 0 && m->hdr.kind == UP_MSG_ACK ? m->covers : 0;
    /* Sent: the master holds its own reference now, so ours goes. */
    msg_free(w, m);
    if (res < 0) {
        chan_lost(w);
    }
    if (covers > w->acked_upto) {
        w->acked_upto = covers;
        up_worker_release_acked(w);
    }
    chan_close_when_idle(w);
    chan_kick(w);
    maybe_exit(w);
}

static void chan_queue(struct up_worker *w, struct up_chan_msg *m)
{
    if (!up_worker_has_master(w)) {
        msg_free(w, m);
        return;
    }
    up_list_push_back(&w->txq, &m->link);
    chan_kick(w);
}

static void send_simple(struct up_worker *w, enum up_msg_kind kind, uint64_t arg, uint64_t arg2)
{
    struct up_chan_msg *m = msg_new(kind, NULL, 0);
    if (m != NULL) {
        m->hdr.arg = arg;
        m->hdr.arg2 = arg2;
        chan_queue(w, m);
    }
}

int up_worker_hand_back_take(struct up_worker *w, int fd, uint64_t conn_id, const char *data,
                             size_t len, uint64_t tries)
{
    struct up_chan_msg *m = up_worker_has_master(w) ? msg_new(UP_MSG_CONN, data, len) : NULL;
    if (m == NULL) {
        up_loop_close(w->loop, fd);
        return -EPIPE;
    }
    m->fd = fd;
    m->hdr.conn_id = conn_id;
    m->hdr.arg = tries;
    chan_queue(w, m);
    return 0;
}

bool up_worker_has_master(const struct up_worker *w)
{
    return w->chan >= 0 && !w->chan_lost;
}

bool up_worker_takes_back(const struct up_worker *w)
{
    return up_worker_has_master(w) && !w->master_stopping;
}

int up_worker_close_code(const struct up_worker *w)
{
    return up_worker_takes_back(w) ? 1012 : 1001;
}

/* Queue an ACK for id. Returns the connection's arrival number, or 0 when
 * out of memory (it is then served at once: the master keeps its copy
 * until we exit, which is the old, weaker guarantee). */
static uint64_t ack(struct up_worker *w, uint64_t id)
{
    if (w->nacks == w->acks_cap) {
        size_t cap = w->acks_cap ? w->acks_cap * 2 : 64;
        uint64_t *a = realloc(w->acks, cap * sizeof(*a));
        if (a == NULL) {
            return 0;
        }
        w->acks = a;
        w->acks_cap = cap;
    }
    w->acks[w->nacks++] = id;
    return ++w->arrivals;
}

/* How many fds must be free before a worker under fd pressure says it
 * has room again: enough for a burst of connections, not just one. */
#define ROOM_FDS 16

static void decline(struct up_worker *w, const struct up_msg *hdr)
{
    if (hdr->kind != UP_MSG_CONN) {
        return; /* only a CONN carries an fd */
    }
    struct rlimit rl = {0};
    (void)getrlimit(RLIMIT_NOFILE, &rl);
    if (!w->fd_pressure) {
        w->fd_pressure = true;
        up_log(UP_LOG_WARN,
               "out of fds (limit %llu) holding %zu connections: declining new ones until "
               "some close",
               (unsigned long long)rl.rlim_cur, w->nconns);
    }
    struct up_chan_msg *m = msg_new(UP_MSG_DECLINE, NULL, 0);
    if (m != NULL) {
        m->hdr.conn_id = hdr->conn_id;
        chan_queue(w, m);
    }
    /* Without the message the master re-routes the connection anyway
     * when no ACK ever comes for it: it keeps its copy until then. */
}

/* Under fd pressure: are ROOM_FDS fds free again? Checked by taking them
 * (and letting them go at once): the only exact answer, since the app may
 * hold fds we do not count. */
static bool have_room(void)
{
    int fds[ROOM_FDS];
    int n = 0;
    while (n < ROOM_FDS && (fds[n] = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0) {
        n++;
    }
    for (int i = 0; i < n; i++) {
        up_close(fds[i]);
    }
    return n == ROOM_FDS;
}

static void check_room(struct up_worker *w)
{
    if (w->fd_pressure && have_room()) {
        w->fd_pressure = false;
        up_log(UP_LOG_INFO, "fds free again, holding %zu connections: taking new ones", w->nconns);
        send_simple(w, UP_MSG_ROOM, 0, 0);
    }
}

static void on_conn_msg(struct up_worker *w, const struct up_msg *hdr, int fd, size_t len)
{
    uint64_t seq = ack(w, hdr->conn_id);
    if (w->state == UP_WORKER_DRAINING) {
        /* Routed to us before the master saw our drain: hand it straight
         * back rather than serve it on old code. Its try count goes back
         * with it: a connection bounced between draining workers must
         * not go round forever. */
        (void)up_worker_hand_back_take(w, fd, hdr->conn_id, w->chan_payload, len, hdr->arg);
        return;
    }
    int r = up_wconn_new_take(w, fd, hdr->conn_id, w->chan_payload, len, seq);
    if (r < 0) {
        up_log(UP_LOG_WARN, "conn id=%llu: cannot serve: %s, closing",
               (unsigned long long)hdr->conn_id, strerror(-r));
    }
}

/* A CONNS: each entry a CONN without prefix bytes. Entries past the fds
 * that came are connections the kernel dropped at our fd limit: declined,
 * as a CONN whose fd never came. */
static void on_conns_msg(struct up_worker *w, const struct up_msg *hdr, const int *fds, size_t nfds)
{
    for (size_t i = 0; i < hdr->arg; i++) {
        struct up_conn_entry e;
        memcpy(&e, w->chan_payload + i * sizeof(e), sizeof(e));
        struct up_msg one;
        up_msg_init(&one, UP_MSG_CONN);
        one.conn_id = e.conn_id;
        one.arg = e.tries;
        if (i < nfds) {
            on_conn_msg(w, &one, fds[i], 0);
        } else {
            decline(w, &one);
        }
    }
}

static void chan_recv(struct up_worker *w);
static void reopen_logs(struct up_worker *w);

static void on_chan_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_worker *w = up_container_of(op, struct up_worker, chan_rx);
    int fds[UP_PASSFD_MAX_FDS];
    size_t nfds = 0;
    int n = up_passfd_decode_fds(&w->chan_in, res, fds, UP_PASSFD_MAX_FDS, &nfds);
    if (w->chan_lost) {
        for (size_t i = 0; n >= 0 && i < nfds; i++) {
            up_close(fds[i]); /* connections routed as the master died */
        }
        chan_close_when_idle(w);
        maybe_exit(w);
        return;
    }
    if (n == -EMFILE) {
        /* Out of fds: the kernel dropped the connection's fd on its way
         * in. The master still has its copy: decline this one, and keep
         * the channel and every connection we hold. */
        decline(w, &w->chan_in.hdr);
        chan_recv(w);
        chan_kick(w);
        return;
    }
    if (n < 0) {
        if (n != -EPIPE && n != -ECANCELED) {
            up_log(UP_LOG_ERR, "bad message from master: %s", strerror(-n));
        }
        chan_lost(w);
        maybe_exit(w);
        return;
    }
    const struct up_msg *hdr = &w->chan_in.hdr;
    if (hdr->kind == UP_MSG_CONNS) {
        on_conns_msg(w, hdr, fds, nfds);
        nfds = 0;
    } else if (hdr->kind == UP_MSG_CONN && nfds == 1) {
        on_conn_msg(w, hdr, fds[0], (size_t)n);
        nfds = 0;
    } else if (hdr->kind == UP_MSG_DRAIN) {
        begin_drain(w, hdr->arg, hdr->flags);
    } else if (hdr->kind == UP_MSG_REOPEN) {
        reopen_logs(w);
    } else {
        up_log(UP_LOG_WARN, "unexpected %s from master, ignoring", up_msg_kind_name(hdr->kind));
    }
    for (size_t i = 0; i < nfds; i++) {
        up_close(fds[i]);
    }
    chan_recv(w);
    chan_kick(w);
}

static void chan_recv(struct up_worker *w)
{
    if (!up_worker_has_master(w) || w->chan_rx.busy) {
        return;
    }
    up_passfd_in_prep(&w->chan_in, w->chan_payload, UP_PASSFD_MAX_PAYLOAD);
    int r = up_loop_recvmsg(w->loop, &w->chan_rx, w->chan, &w->chan_in.msg, 0);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot read master channel: %s", strerror(-r));
        chan_lost(w);
    }
}

/* ---- the --listen socket ---- */

static void on_listen_conn(struct up_acceptor *a, int fd)
{
    struct up_worker *w = a->ctx;
    if (w->state == UP_WORKER_DRAINING) {
        up_close(fd);
    } else {
        (void)up_wconn_new_take(w, fd, 0, NULL, 0, 0);
    }
}

static void on_listen_error(struct up_acceptor *a, int err, bool first)
{
    (void)a;
    if (first) {
        up_log(UP_LOG_WARN, "accept failed: %s, retrying every %d ms", strerror(-err),
               UP_ACCEPTOR_RETRY_MS);
    }
}

static void on_listen_stopped(struct up_acceptor *a)
{
    struct up_worker *w = a->ctx;
    w->lfd = up_loop_close(w->loop, w->lfd);
    maybe_exit(w);
}

static const struct up_acceptor_cbs listen_cbs = {
    .on_conn = on_listen_conn,
    .on_error = on_listen_error,
    .on_stopped = on_listen_stopped,
};

static int open_listener(struct up_worker *w)
{
    struct up_listen_addr a;
    char err[256];
    int r = up_listen_parse(w->cfg.listen, &a, 1, err, sizeof(err));
    if (r < 0) {
        up_log(UP_LOG_ERR, "--listen %s", err);
        return r;
    }
    struct up_listen_opts o = {.backlog = 4096, .reuseport = true};
    r = up_listen_open(&a, &o, &w->lfd, NULL);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot listen on %s: %s", a.text, strerror(-r));
        return r;
    }
    up_acceptor_init(&w->acceptor, w->loop, w->lfd, &listen_cbs, w);
    /* A failure to start is retried by the acceptor, as EMFILE is. */
    (void)up_acceptor_start(&w->acceptor);
    return 0;
}

/* ---- draining and exit ---- */

static void maybe_exit(struct up_worker *w)
{
    if (w->state != UP_WORKER_DRAINING || w->nconns > 0 || w->lfd >= 0) {
        return;
    }
    if (up_worker_has_master(w) &&
        (w->tx_inflight != NULL || !up_list_empty(&w->txq) || w->nacks > 0)) {
        return; /* connections on their way back to the master */
    }
    if (up_worker_has_master(w) && !w->last_stats) {
        /* The counts since the last tick, so that the master's totals
         * (requests, access log lines) miss nothing of ours; its send
         * completing brings us back here. */
        w->last_stats = true;
        send_stats(w);
        return;
    }
    up_loop_stop(w->loop);
}

void up_worker_conn_gone(struct up_worker *w)
{
    check_room(w);
    maybe_exit(w);
}

static void drain_all(struct up_worker *w, bool deadline)
{
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &w->conns)
    {
        (void)up_wconn_drain(up_container_of(pos, struct up_wconn, link), deadline);
    }
}

/* Close every connection at once (SIGQUIT, exit). */
static void abort_all(struct up_worker *w)
{
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &w->conns)
    {
        up_wconn_abort(up_container_of(pos, struct up_wconn, link));
    }
}

/* The grace for idle connections to be closed is over. */
static void on_close_grace(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_worker *w = up_container_of(t, struct up_worker, close_grace);
    w->close_idle = true;
    drain_all(w, false);
    maybe_exit(w);
}

/* No DRAIN came after our DRAINING: drain on our own deadline. */
static void on_leave_wait(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_worker *w = up_container_of(t, struct up_worker, leave_timer);
    up_log(UP_LOG_WARN, "no DRAIN from the master %d ms after DRAINING: draining on my own",
           LEAVE_WAIT_MS);
    begin_drain(w, w->cfg.drain_timeout_ms, 0);
}

static void end_long_lived(struct up_list *member, void *ctx)
{
    struct up_worker *w = ctx;
    up_wconn_end_long(up_container_of(member, struct up_wconn, ll_link), up_worker_close_code(w));
}

static void on_drain_deadline(struct up_loop *loop, struct up_timer *t)
{
    struct up_worker *w = up_container_of(t, struct up_worker, drain_timer);
    if (!w->exiting) {
        up_log(UP_LOG_INFO, "drain deadline: handing back idle connections, %zu held", w->nconns);
        w->exiting = true;
    }
    drain_all(w, true);
    maybe_exit(w);
    /* Past the deadline, look again every second: a connection that
     * became idle is handed back then, and the exit never hangs on the
     * order its last events came in (the loop would otherwise wait with
     * no timer at all). */
    up_timer_start(loop, t, DRAIN_RECHECK_MS);
}

static void begin_drain(struct up_worker *w, uint64_t deadline_ms, uint32_t flags)
{
    up_timer_stop(w->loop, &w->leave_timer);
    if (flags & (UP_DRAIN_F_MIGRATE_IDLE | UP_DRAIN_F_SHED | UP_DRAIN_F_STOP)) {
        w->migrate_idle = true;
    }
    if (flags & UP_DRAIN_F_STOP) {
        w->master_stopping = true;
    }
    if (w->state != UP_WORKER_DRAINING) {
        w->state = UP_WORKER_DRAINING;
        up_log(UP_LOG_DEBUG, "draining: %zu connections (%zu WebSockets), deadline in %llu ms",
               w->nconns, w->nws, (unsigned long long)deadline_ms);
        if (w->lfd >= 0) {
            up_acceptor_stop(&w->acceptor); /* on_listen_stopped closes lfd */
        }
    }
    if (!w->app_drained) {
        w->app_drained = true;
        if (w->app.app != NULL && w->app.app->drain != NULL) {
            w->app.app->drain();
        }
    }
    /* A shed generation (past --max-draining) lets its long-lived
     * connections go at once, still spread. */
    uint64_t grace = (flags & UP_DRAIN_F_SHED) ? 0 : w->cfg.ws_drain_grace_ms;
    up_longlived_plan(&w->longlived, grace, w->cfg.close_spread_ms, deadline_ms);
    /* A second DRAIN (the cap on draining generations) may only shorten
     * the deadline. */
    uint64_t when = up_loop_now(w->loop) + deadline_ms;
    if (!up_timer_armed(&w->drain_timer) || when < w->drain_timer.when) {
        up_timer_start(w->loop, &w->drain_timer, deadline_ms);
    }
    if (!up_worker_takes_back(w)) {
        /* Without a master to take them, idle connections are closed
         * rather than held to the deadline; but a client may be sending
         * its next request on one right now, and closed under it that
         * request would be lost. So every answer from now on says
         * Connection: close (conn.c), and the idle ones have
         * CLOSE_IDLE_GRACE_MS to bring a last request before they go. */
        if (!up_timer_armed(&w->close_grace)) {
            up_timer_start(w->loop, &w->close_grace, CLOSE_IDLE_GRACE_MS);
        }
    } else if (w->migrate_idle) {
        drain_all(w, false);
    }
    maybe_exit(w);
}

/* ---- signals ---- */

static void reopen_logs(struct up_worker *w)
{
    int r = up_alog_reopen(&w->alog);
    if (r < 0) {
        up_log(UP_LOG_WARN, "cannot reopen the access log %s: %s; writing on to the old file",
               w->alog.path, strerror(-r));
    }
}

/* Signals come in through handlers that note them and wake an eventfd the
 * loop reads, not through a signalfd: that needs them blocked, and a
 * blocked mask is inherited by every process the app starts (system(),
 * popen(), posix_spawn()), which SIGTERM could then never stop. A handler,
 * unlike a blocked or ignored signal, goes back to the default at exec;
 * so does SIGPIPE's no-op handler, where SIG_IGN would leave the app's
 * children writing into closed pipes. */
static const int worker_signals[] = {SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP};
static volatile sig_atomic_t signal_seen[NSIG];
static volatile sig_atomic_t signal_wake = -1; /* the worker's sigfd, or -1 */

static void note_signal(int sig)
{
    int saved = errno;
    signal_seen[sig] = 1;
    uint64_t one = 1;
    int fd = signal_wake;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* The counter is full or the worker is leaving: seen all the same. */
    }
    errno = saved;
}

/* A peer gone away is an EPIPE to handle, not a death. */
static void no_sigpipe(int sig)
{
    (void)sig;
}

static void handle_signal(struct up_worker *w, int sig)
{
    if (sig == SIGQUIT) {
        up_log(UP_LOG_INFO, "SIGQUIT: exiting now");
        abort_all(w);
        w->exiting = true;
        up_loop_stop(w->loop);
    } else if (sig == SIGTERM || sig == SIGINT) {
        if (w->state != UP_WORKER_DRAINING && up_worker_has_master(w) &&
            !up_timer_armed(&w->leave_timer)) {
            /* Not the master's idea: tell it, and serve what it sends
             * until its DRAIN says that nothing more comes. It answers at
             * once (routing nothing more here, starting a replacement),
             * or, when the same stop reached it (a signal to the whole
             * process group or cgroup), once the connections it accepted
             * are given out: handed back now, they would find no worker
             * left to take them. */
            up_log(UP_LOG_INFO, "%s: draining once the master has heard", strsignal(sig));
            send_simple(w, UP_MSG_DRAINING, 0, 0);
            up_timer_start(w->loop, &w->leave_timer, LEAVE_WAIT_MS);
        } else {
            begin_drain(w, w->cfg.drain_timeout_ms, 0);
        }
    } else if (sig == SIGUSR1) {
        reopen_logs(w);
    } else if (sig == SIGUSR2) {
        /* The master's reload signal, sent here too by a `pkill -USR2 up`
         * or a signal to the process group: by default it would end us
         * mid-request. The reload is the master's to do. */
        up_log(UP_LOG_INFO, "SIGUSR2: ignored; %s",
               up_worker_has_master(w) ? "a reload is the master's (signal the master)"
                                       : "to load new code, restart this worker");
    }
    /* SIGHUP, a terminal's hang-up: serve on. */
}

static void on_signal(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_worker *w = up_container_of(op, struct up_worker, sig_op);
    if (res < 0 && res != -EINTR && res != -EAGAIN) {
        return;
    }
    for (size_t i = 0; i < sizeof(worker_signals) / sizeof(worker_signals[0]) && !w->exiting; i++) {
        int sig = worker_signals[i];
        if (signal_seen[sig]) {
            signal_seen[sig] = 0;
            handle_signal(w, sig);
        }
    }
    if (w->sigfd >= 0 && !op->canceling) {
        (void)up_loop_read(loop, &w->sig_op, w->sigfd, w->sig_buf, sizeof(w->sig_buf));
    }
}

static int setup_signals(struct up_worker *w)
{
    w->sigfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->sigfd < 0) {
        return -errno;
    }
    signal_wake = w->sigfd;
    struct sigaction sa = {.sa_handler = note_signal, .sa_flags = SA_RESTART};
    sigfillset(&sa.sa_mask);
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof(worker_signals) / sizeof(worker_signals[0]); i++) {
        if (sigaction(worker_signals[i], &sa, NULL) < 0) {
            return -errno;
        }
        sigaddset(&set, worker_signals[i]);
    }
    sa.sa_handler = no_sigpipe;
    if (sigaction(SIGPIPE, &sa, NULL) < 0) {
        return -errno;
    }
    /* A lone worker's parent may have left them blocked, and SIGCHLD
     * ignored: the app's system() and waitpid() would then find their
     * children reaped already. */
    if (sigprocmask(SIG_UNBLOCK, &set, NULL) < 0) {
        return -errno;
    }
    up_sig_unignore_chld();
    w->sig_op.cb = on_signal;
    return up_loop_read(w->loop, &w->sig_op, w->sigfd, w->sig_buf, sizeof(w->sig_buf));
}

/* ---- the app API ---- */

struct up_after_call {
    struct up_timer t;
    void (*fn)(void *);
    void *arg;
};

static void after_fire(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_after_call *a = (struct up_after_call *)t;
    a->fn(a->arg);
    free(a);
}

int up_after(unsigned ms, void (*fn)(void *arg), void *arg)
{
    struct up_after_call *a = calloc(1, sizeof(*a));
    if (a == NULL || up_current == NULL) {
        free(a);
        return -1;
    }
    a->t.cb = after_fire;
    a->fn = fn;
    a->arg = arg;
    up_timer_start(up_current->loop, &a->t, ms);
    return 0;
}

void up_ready(void)
{
    struct up_worker *w = up_current;
    if (w == NULL || w->ready_sent || w->state == UP_WORKER_STARTING) {
        if (w != NULL) {
            w->cfg.ready_manual = false; /* called from init: ready at once */
        }
        return;
    }
    w->ready_sent = true;
    struct up_chan_msg *m = msg_new(UP_MSG_READY, NULL, 0);
    if (m != NULL) {
        m->hdr.flags = UP_READY_F_CONNS; /* on_conns_msg() */
        chan_queue(w, m);
    }
}

unsigned up_generation(void)
{
    return up_current != NULL ? up_current->cfg.generation : 0;
}

const char *up_worker_date(struct up_worker *w)
{
    long long sec = (long long)time(NULL);
    if (sec != w->date_sec) {
        up_http_date(sec, w->date);
        w->date_sec = sec;
    }
    return w->date;
}

static void send_stats(struct up_worker *w)
{
    uint64_t alog[2] = {up_alog_lines(&w->alog), up_alog_dropped(&w->alog)};
    struct up_chan_msg *m = msg_new(UP_MSG_STATS, alog, sizeof(alog));
    if (m != NULL) {
        m->hdr.arg = w->nconns;
        m->hdr.arg2 = w->nrequests;
        chan_queue(w, m);
    }
}

/* Once a second: the buffer pools give back the pages of their spare past
 * the few kept hot (a burst of connections that closed put every buffer
 * back resident), and the heap, where free() keeps what idle connections
 * and finished ones gave back, is trimmed when either happened. */
static void trim_memory(struct up_worker *w)
{
    size_t pooled = up_wconn_trim_pool() + up_http_out_trim_pool();
    if (pooled > 0 || w->slimmed != w->slimmed_trimmed) {
        w->slimmed_trimmed = w->slimmed;
        (void)malloc_trim(0);
    }
}

static void on_stats(struct up_loop *loop, struct up_timer *t)
{
    struct up_worker *w = up_container_of(t, struct up_worker, stats_timer);
    trim_memory(w);
    if (up_worker_has_master(w) && w->tx_inflight == NULL) {
        send_stats(w);
    }
    check_room(w);
    up_timer_start(loop, t, STATS_MS);
}

/* ---- start and stop ---- */

static int load_app(struct up_worker *w, char *err, size_t cap)
{
    for (int i = 0; i < w->cfg.nrequire; i++) {
        int r = up_app_require(w->cfg.require[i], err, cap);
        if (r < 0) {
            return r;
        }
    }
    int r = up_app_load(w->cfg.app_path, w->cfg.app_fd, &w->app, err, cap);
    if (r < 0) {
        return r;
    }
    return up_app_init(&w->app, w->cfg.app_argc, w->cfg.app_argv, err, cap);
}

/* Report a start-up failure to the master (blocking: nothing else is going
 * on yet) and on stderr. */
static void report_fail(struct up_worker *w, const char *err)
{
    up_log(UP_LOG_ERR, "%s", err);
    if (w->chan >= 0) {
        struct up_msg hdr;
        up_msg_init(&hdr, UP_MSG_FAIL);
        (void)up_passfd_send(w->chan, &hdr, err, strlen(err), -1, 0);
    }
}

/* A master channel is fd 3 and a SOCK_SEQPACKET socket. */
static int find_channel(void)
{
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
        return -1;
    }
    /* Inherited without CLOEXEC (dup2 clears it): set it, so that programs
     * the app runs cannot keep the channel open after this worker exits. */
    (void)fcntl(3, F_SETFD, FD_CLOEXEC);
    return 3;
}

/* A master that died closed its end of the channel before it was reaped,
 * so before we could be reparented and miss its PDEATHSIG. The channel,
 * not the parent's pid, says it: a master that is a container's init is
 * pid 1, which is also what an orphan's parent reads under plain init, and
 * under a subreaper an orphan's parent is neither. */
static bool master_gone(int chan)
{
    struct pollfd p = {.fd = chan, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

static int worker_setup(struct up_worker *w)
{
    const char *why = NULL;
    int r = up_loop_new_one_thread(w->cfg.backend, 1024, &w->loop, &why);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot set up the event loop: %s%s%s", strerror(-r), why ? ": " : "",
               why ? why : "");
        return r;
    }
    if (why != NULL) {
        up_log(UP_LOG_INFO, "%s; using epoll", why);
    }
    w->drain_timer.cb = on_drain_deadline;
    w->leave_timer.cb = on_leave_wait;
    w->close_grace.cb = on_close_grace;
    w->stats_timer.cb = on_stats;
    up_longlived_init(&w->longlived, w->loop, end_long_lived, w);
    w->chan_rx.cb = on_chan_rx;
    w->chan_tx.cb = on_chan_tx;
    r = setup_signals(w);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot set up signals: %s", strerror(-r));
        return r;
    }
    if (w->chan >= 0) {
        w->chan_payload = malloc(UP_PASSFD_MAX_PAYLOAD);
        if (w->chan_payload == NULL) {
            return -ENOMEM;
        }
    }
    return 0;
}

static void worker_free(struct up_worker *w)
{
    if (w->loop != NULL) {
        up_longlived_stop(&w->longlived);
        abort_all(w);
        up_alog_close(&w->alog); /* one last try to write what waits */
        up_loop_cancel(w->loop, &w->sig_op);
        w->chan_lost = true; /* exiting: the canceled reads are no news */
        up_loop_cancel(w->loop, &w->chan_rx);
        up_loop_cancel(w->loop, &w->chan_tx);
        if (w->lfd >= 0) {
            up_acceptor_stop(&w->acceptor);
        }
        up_loop_drain(w->loop, 2000);
    }
    if (w->tx_inflight != NULL) {
        msg_free(w, w->tx_inflight);
        w->tx_inflight = NULL;
    }
    drop_queued(w);
    w->chan = up_close(w->chan);
    w->lfd = up_close(w->lfd);
    signal_wake = -1; /* before the close: the number may be reused */
    w->sigfd = up_close(w->sigfd);
    free(w->chan_payload);
    free(w->acks);
}

int up_worker_main(const struct up_worker_cfg *cfg)
{
    /* Static: one worker per process, and what it still holds at exit
     * (a deferred response the app never finished) stays reachable. */
    static struct up_worker w;
    w = (struct up_worker){.cfg = *cfg, .chan = -1, .lfd = -1, .sigfd = -1};
    up_list_init(&w.txq);
    up_list_init(&w.conns);
    up_current = &w;
    if (cfg->listen == NULL) {
        w.chan = find_channel();
        if (w.chan < 0) {
            up_log(UP_LOG_ERR, "no --listen given and fd 3 is not a master channel; run "
                               "up-worker --listen PORT APP.so, or start it with up-run");
            return 2;
        }
        /* The master's death must end us. PDEATHSIG alone races with a
         * master that died before the prctl: check the channel after it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (master_gone(w.chan)) {
            return 1;
        }
    }
    /* One fd per client held: the master logs the limit it raised, and a
     * worker started alone (--listen) says so itself. */
    unsigned long long before = 0, now = 0;
    int rr = up_fd_raise_nofile(&before, &now);
    if (rr < 0) {
        up_log(UP_LOG_WARN, "cannot raise the fd limit from %llu: %s, keeping it", before,
               strerror(-rr));
    } else if (cfg->listen != NULL) {
        up_log(UP_LOG_INFO, "fd limit %llu", now);
    }
    int code = 3;
    char err[1024] = "";
    if (worker_setup(&w) < 0) {
        goto out;
    }
    if (cfg->access_log != NULL) {
        int ar = up_alog_open(&w.alog, cfg->access_log, cfg->access_log_format, w.loop);
        if (ar < 0) {
            snprintf(err, sizeof(err), "cannot open the access log %s: %s", cfg->access_log,
                     strerror(-ar));
            report_fail(&w, err);
            goto out;
        }
    }
    if (load_app(&w, err, sizeof(err)) < 0) {
        report_fail(&w, err);
        goto out;
    }
    if (w.cfg.listen != NULL && open_listener(&w) < 0) {
        goto out;
    }
    w.state = UP_WORKER_SERVING;
    chan_recv(&w);
    if (w.chan >= 0 && !w.cfg.ready_manual) {
        up_ready();
    }
    /* STATS to the master, and the heap trim (alone too). */
    up_timer_start(w.loop, &w.stats_timer, STATS_MS);
    up_log(UP_LOG_DEBUG, "serving %s on %s", w.app.path, up_loop_backend_name(w.loop));
    int r = up_loop_run(w.loop);
    code = r < 0 ? 1 : 0;
    up_app_fini(&w.app);
out:
    worker_free(&w);
    up_loop_free(w.loop);
    up_current = NULL;
    return code;
}
