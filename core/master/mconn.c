/*
 * mconn: connections before handoff. See mconn.h for the state diagram.
 */
#include "mconn.h"

#include "fd.h"
#include "gen.h"
#include "head.h"
#include "log.h"
#include "master.h"
#include "ratelimit.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* How long an answered connection reads and drops what the client still
 * sends, waiting for its FIN, before it is closed anyway. */
#define LINGER_MS 2000
/* The same for one shed to make room: short, since room is the point. */
#define SHED_LINGER_MS 250
/* Shedding starts at 7/8 of the pending cap and brings what stays down to
 * half of it (paused accepting resumes at 3/4), oldest incomplete heads
 * first, so that a few rounds reach the good requests queued in the
 * kernel's backlog behind slow ones. A head younger than SHED_MIN_AGE_MS
 * is never shed: a real client's head comes in one or two packets. */
#define SHED_MIN_AGE_MS 250
/* WAIT without SO_RCVLOWAT (unix sockets): peek again this often. */
#define REPEEK_MS 20
/* A connection routed this many times without a worker keeping it is
 * answered 503 rather than passed around forever. */
#define MAX_TRIES 8

static void peek(struct up_mconn *c);
static void answer(struct up_mconn *c, int status, const char *detail);
static void queue_timed_out(struct up_mconn *c);
static bool has_request(const struct up_mconn *c);
static void close_gracefully(struct up_mconn *c);
static void queue_remove(struct up_master *m, struct up_mconn *c);
static void mconn_close(struct up_mconn *c);

static const char *state_name(enum up_mconn_state s)
{
    switch (s) {
    case UP_MCONN_PEEK:
        return "PEEK";
    case UP_MCONN_WAIT:
        return "WAIT";
    case UP_MCONN_QUEUED:
        return "QUEUED";
    case UP_MCONN_SENT:
        return "SENT";
    case UP_MCONN_ANSWER:
        return "ANSWER";
    case UP_MCONN_LINGER:
        return "LINGER";
    case UP_MCONN_CLOSING:
        return "CLOSING";
    }
    return "?";
}

static bool peeking(enum up_mconn_state s)
{
    return s == UP_MCONN_PEEK || s == UP_MCONN_WAIT;
}

/* On its way out: the fd goes soon, whatever happens. */
static bool leaving(enum up_mconn_state s)
{
    return s == UP_MCONN_ANSWER || s == UP_MCONN_LINGER || s == UP_MCONN_CLOSING;
}

static void set_state(struct up_mconn *c, enum up_mconn_state to)
{
    /* allowed[from][to], as drawn in mconn.h. */
    static const bool allowed[7][7] = {
        [UP_MCONN_PEEK] = {[UP_MCONN_WAIT] = true,
                           [UP_MCONN_QUEUED] = true,
                           [UP_MCONN_ANSWER] = true,
                           [UP_MCONN_CLOSING] = true},
        [UP_MCONN_WAIT] =
            {[UP_MCONN_PEEK] = true, [UP_MCONN_ANSWER] = true, [UP_MCONN_CLOSING] = true},
        [UP_MCONN_QUEUED] = {[UP_MCONN_SENT] = true,
                             [UP_MCONN_ANSWER] = true,
                             [UP_MCONN_LINGER] = true,
                             [UP_MCONN_CLOSING] = true},
        [UP_MCONN_SENT] = {[UP_MCONN_QUEUED] = true, [UP_MCONN_CLOSING] = true},
        [UP_MCONN_ANSWER] = {[UP_MCONN_LINGER] = true, [UP_MCONN_CLOSING] = true},
        [UP_MCONN_LINGER] = {[UP_MCONN_CLOSING] = true},
        [UP_MCONN_CLOSING] = {[UP_MCONN_CLOSING] = false},
    };
    if (!allowed[c->state][to]) {
        up_log(UP_LOG_ERR, "conn id=%llu: bad transition %s -> %s", (unsigned long long)c->id,
               state_name(c->state), state_name(to));
        abort();
    }
    if (!leaving(c->state) && leaving(to)) {
        c->m->nleaving++;
    }
    if (c->shed && peeking(c->state) && !peeking(to)) {
        c->m->nshedding--;
    }
    c->state = to;
}

/* ---- peek buffers: a free list, so steady state allocates nothing ---- */

static size_t buf_size(const struct up_master *m)
{
    /* One byte over the limit tells "head too large" from "exactly full". */
    return m->cli->max_head + 1;
}

static char *buf_get(struct up_master *m)
{
    char *b = m->bufs;
    if (b != NULL) {
        memcpy(&m->bufs, b, sizeof(char *));
        return b;
    }
    return malloc(buf_size(m));
}

static void buf_put(struct up_master *m, char **pb)
{
    if (*pb != NULL) {
        memcpy(*pb, &m->bufs, sizeof(char *));
        m->bufs = *pb;
        *pb = NULL;
    }
}

/* ---- lifetime ---- */

static void on_op(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_timer(struct up_loop *loop, struct up_timer *t);

static struct up_mconn *mconn_new_take(struct up_master *m, int fd)
{
    struct up_mconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        up_log(UP_LOG_WARN, "out of memory for a new connection, closing it");
        up_loop_close(m->loop, fd);
        return NULL;
    }
    c->m = m;
    c->fd = fd;
    c->id = ++m->next_conn_id;
    c->op.cb = on_op;
    c->timer.cb = on_timer;
    c->accepted_at = up_loop_now(m->loop);
    c->next = m->mconns;
    if (m->mconns != NULL) {
        m->mconns->prev = c;
    } else {
        m->mconns_tail = c;
    }
    m->mconns = c;
    m->nmconns++;
    return c;
}

static void mconn_free(struct up_mconn *c)
{
    struct up_master *m = c->m;
    if (c->in_queue) {
        queue_remove(m, c);
    }
    up_timer_stop(m->loop, &c->timer);
    buf_put(m, &c->buf);
    free(c->prefix);
    free(c->answer);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        m->mconns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    } else {
        m->mconns_tail = c->prev;
    }
    if (leaving(c->state)) {
        m->nleaving--;
    }
    if (c->shed && peeking(c->state)) {
        m->nshedding--;
    }
    m->nmconns--;
    free(c);
    up_master_unpause(m);
    up_master_check_done(m);
}

/* Close once no op uses the fd. */
static void mconn_close(struct up_mconn *c)
{
    if (c->state != UP_MCONN_CLOSING) {
        set_state(c, UP_MCONN_CLOSING);
    }
    if (c->op.busy) {
        up_loop_cancel(c->m->loop, &c->op);
        return; /* on_op comes back here */
    }
    c->fd = up_loop_close(c->m->loop, c->fd);
    mconn_free(c);
}

/* ---- the master's queue of connections waiting for a worker ---- */

/* Doubly linked, because a connection leaves it from anywhere when its
 * queue timeout runs out. Each one in it has its timer armed for that. */
static void queue_push(struct up_master *m, struct up_mconn *c)
{
    c->qnext = NULL;
    c->qprev = m->queue_tail;
    if (m->queue_tail != NULL) {
        m->queue_tail->qnext = c;
    } else {
        m->queue_head = c;
    }
    m->queue_tail = c;
    m->nqueued++;
    c->in_queue = true;
    if (c->queued_at == 0) {
        /* The wait counts from the first time in the queue: going round
         * (no worker, back to the tail) does not restart it. */
        c->queued_at = up_loop_now(m->loop) + 1;
    }
    uint64_t waited = up_loop_now(m->loop) + 1 - c->queued_at;
    uint64_t limit = m->cli->queue_timeout_ms;
    up_timer_start(m->loop, &c->timer, waited < limit ? limit - waited : 0);
}

static void queue_remove(struct up_master *m, struct up_mconn *c)
{
    if (c->qprev != NULL) {
        c->qprev->qnext = c->qnext;
    } else {
        m->queue_head = c->qnext;
    }
    if (c->qnext != NULL) {
        c->qnext->qprev = c->qprev;
    } else {
        m->queue_tail = c->qprev;
    }
    c->qnext = c->qprev = NULL;
    c->in_queue = false;
    m->nqueued--;
    up_timer_stop(m->loop, &c->timer);
}

static struct up_mconn *queue_pop(struct up_master *m)
{
    struct up_mconn *c = m->queue_head;
    if (c != NULL) {
        queue_remove(m, c);
    }
    return c;
}

/* Is a generation on its way (or serving) that could take connections? */
static bool worker_expected(const struct up_master *m)
{
    for (const struct up_gen *g = m->gens; g != NULL; g = g->next) {
        if (g->state == UP_GEN_ACTIVE || g->state == UP_GEN_STARTING) {
            return true;
        }
    }
    return false;
}

void up_mconn_route(struct up_mconn *c)
{
    struct up_master *m = c->m;
    if (m->state == UP_MASTER_STOPPING) {
        answer(c, 503, NULL);
        return;
    }
    if (c->tries >= MAX_TRIES) {
        bool asked = has_request(c);
        up_log(UP_LOG_WARN, "conn id=%llu: no worker kept it after %u tries, %s",
               (unsigned long long)c->id, c->tries,
               asked ? "answering 503" : "closing it (idle, nothing asked)");
        if (asked) {
            answer(c, 503, NULL);
        } else {
            close_gracefully(c);
        }
        return;
    }
    struct up_mworker *w = up_gen_pick(m, c->avoid);
    if (w != NULL) {
        c->tries++;
        up_mworker_send_conn(w, c);
        return;
    }
    if (!worker_expected(m) && m->last_error[0] != '\0') {
        /* No generation serves and none is starting (the app failed in
         * watch mode): say why instead of hanging. */
        answer(c, 503, m->last_error);
        return;
    }
    queue_push(m, c); /* the header-free wait: bounded by max_pending */
}

void up_mconn_route_queued(struct up_master *m)
{
    /* Route at most what is queued now: a connection that finds no worker
     * goes back to the tail and must not be retried in this pass. */
    size_t n = m->nqueued;
    while (n-- > 0 && up_gen_pick(m, 0) != NULL) {
        struct up_mconn *c = queue_pop(m);
        if (c == NULL) {
            break;
        }
        up_mconn_route(c);
    }
}

void up_mconn_route_all(struct up_master *m)
{
    size_t n = m->nqueued;
    while (n-- > 0 && m->queue_head != NULL) {
        up_mconn_route(queue_pop(m));
    }
}

void up_mconn_requeue(struct up_mconn *c)
{
    c->worker = NULL;
    set_state(c, UP_MCONN_QUEUED);
    c->m->stats.rerouted++;
    up_mconn_route(c);
}

void up_mconn_acked(struct up_mconn *c)
{
    up_log(UP_LOG_DEBUG, "conn id=%llu: handed to pid=%d", (unsigned long long)c->id,
           (int)c->worker->pid);
    c->worker = NULL;
    c->m->stats.handed++;
    /* The worker's copy keeps the socket open; ours goes. */
    set_state(c, UP_MCONN_CLOSING);
    mconn_close(c);
}

static void ready_to_route(struct up_mconn *c)
{
    struct up_master *m = c->m;
    buf_put(m, &c->buf);
    up_timer_stop(m->loop, &c->timer);
    if (c->rcvlowat > 1) {
        /* The worker shares this socket: it must see the default again. */
        int one = 1;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
        c->rcvlowat = 0;
    }
    set_state(c, UP_MCONN_QUEUED);
    up_mconn_route(c);
}

/* ---- peeking at the first request ---- */

static void wait_more(struct up_mconn *c)
{
    struct up_master *m = c->m;
    buf_put(m, &c->buf);
    set_state(c, UP_MCONN_WAIT);
    if (!c->repeek_timer && c->peeked > 0 && (int)c->peeked + 1 != c->rcvlowat) {
        /* Wake only when more than what we saw has arrived. TCP caps the
         * mark at half its largest receive buffer, far above any head. */
        int lowat = (int)c->peeked + 1;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) == 0) {
            c->rcvlowat = lowat;
        } else {
            c->repeek_timer = true; /* a poll would wake at once: no spin */
        }
    }
    if (c->repeek_timer) {
        up_timer_start(m->loop, &c->timer, REPEEK_MS);
        return;
    }
    if (up_loop_poll(m->loop, &c->op, c->fd, POLLIN | POLLRDHUP) < 0) {
        mconn_close(c);
    }
}

/* The client's FIN (or an error) is there: asked without waiting, for the
 * re-peek by timer, which has no poll result of its own. */
static bool peer_closed_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static void on_peek(struct up_mconn *c, int res)
{
    struct up_master *m = c->m;
    if (res == -EAGAIN) {
        wait_more(c);
        return;
    }
    if (res <= 0) {
        /* A read of 0: the client closed before a whole head; or reset. */
        mconn_close(c);
        return;
    }
    if ((size_t)res == c->peeked) {
        /* Nothing new. The end of the stream only if the FIN is really
         * there; otherwise the rest of the head is still on its way. */
        if (c->peer_closed || (c->repeek_timer && peer_closed_now(c->fd))) {
            mconn_close(c);
        } else {
            wait_more(c);
        }
        return;
    }
    c->peeked = (size_t)res;
    struct up_head head;
    int r = up_head_check(c->buf, c->peeked, m->cli->max_head, &head);
    if (r == UP_HEAD_COMPLETE) {
        ready_to_route(c);
    } else if (r == UP_HEAD_PARTIAL) {
        wait_more(c);
    } else {
        answer(c, up_head_error_status(r), NULL);
    }
}

static void peek(struct up_mconn *c)
{
    struct up_master *m = c->m;
    if (c->buf == NULL && (c->buf = buf_get(m)) == NULL) {
        mconn_close(c);
        return;
    }
    if (c->state != UP_MCONN_PEEK) {
        set_state(c, UP_MCONN_PEEK); /* a new mconn starts in PEEK */
    }
    /* MSG_DONTWAIT: with nothing to read the ring answers -EAGAIN at once
     * instead of holding the buffer while it waits; WAIT then polls. */
    if (up_loop_recv(m->loop, &c->op, c->fd, c->buf, buf_size(m), MSG_PEEK | MSG_DONTWAIT) < 0) {
        mconn_close(c);
    }
}

void up_mconn_accept_take(struct up_master *m, int fd, bool unix_sock)
{
    struct up_mconn *c = mconn_new_take(m, fd);
    if (c == NULL) {
        return;
    }
    m->stats.accepted++;
    c->repeek_timer = unix_sock; /* unix sockets have no SO_RCVLOWAT */
    c->deadline = up_loop_now(m->loop) + m->cli->header_timeout_ms;
    up_timer_start(m->loop, &c->timer, m->cli->header_timeout_ms);
    peek(c);
}

void up_mconn_handed_back_take(struct up_master *m, int fd, const char *data, size_t len,
                               unsigned tries, pid_t from)
{
    struct up_mconn *c = mconn_new_take(m, fd);
    if (c == NULL) {
        return;
    }
    m->stats.handed_back++;
    c->tries = tries;
    c->avoid = from;
    if (len > 0) {
        c->prefix = malloc(len);
        if (c->prefix == NULL) {
            mconn_close(c);
            return;
        }
        memcpy(c->prefix, data, len);
        c->prefix_len = len;
    }
    set_state(c, UP_MCONN_QUEUED);
    up_mconn_route(c);
}

/* ---- answering ---- */

static void send_answer(struct up_mconn *c)
{
    int r = up_loop_send(c->m->loop, &c->op, c->fd, c->answer + c->answer_off,
                         c->answer_len - c->answer_off, 0);
    if (r < 0) {
        mconn_close(c);
    }
}

static void answer(struct up_mconn *c, int status, const char *detail)
{
    struct up_master *m = c->m;
    buf_put(m, &c->buf);
    size_t cap = UP_HEAD_ERROR_MAX + (detail ? strlen(detail) + 64 : 0) + 32;
    c->answer = malloc(cap);
    if (c->answer == NULL) {
        mconn_close(c);
        return;
    }
    if (detail == NULL && status != 503) {
        c->answer_len = up_head_error_response(status, c->answer, cap);
    } else {
        /* 503: no worker to take it now. Retry-After tells clients and
         * load balancers that a retry soon may well work. */
        const char *body = detail != NULL ? detail : up_head_reason(status);
        c->answer_len = (size_t)snprintf(
            c->answer, cap,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s"
            "Connection: close\r\n\r\n%s\n",
            status, up_head_reason(status), strlen(body) + 1,
            status == 503 ? "Retry-After: 1\r\n" : "", body);
    }
    m->stats.answered++;
    up_log(UP_LOG_DEBUG, "conn id=%llu: answered %d", (unsigned long long)c->id, status);
    set_state(c, UP_MCONN_ANSWER);
    up_timer_start(m->loop, &c->timer, c->shed ? SHED_LINGER_MS : LINGER_MS);
    send_answer(c);
}

/* Read and drop what the client still sends, into the answer buffer (it
 * was sent already). Returns false if the read could not start. */
static bool linger_again(struct up_mconn *c)
{
    return up_loop_recv(c->m->loop, &c->op, c->fd, c->answer, c->answer_len, 0) == 0;
}

static void linger(struct up_mconn *c)
{
    struct up_master *m = c->m;
    set_state(c, UP_MCONN_LINGER);
    (void)shutdown(c->fd, SHUT_WR);
    if (c->rcvlowat > 1) {
        int one = 1;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    }
    up_timer_start(m->loop, &c->timer, c->shed ? SHED_LINGER_MS : LINGER_MS);
    if (!linger_again(c)) {
        mconn_close(c);
    }
}

/* Whether c has a request to answer: a head peeked, bytes a worker had
 * read, or bytes waiting now. A connection handed back idle has none, and
 * an answer then would be taken for the answer to its next request. */
static bool has_request(const struct up_mconn *c)
{
    char byte;
    return c->peeked > 0 || c->prefix_len > 0 || recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* Close without an answer, gracefully: a connection handed back idle, with
 * nothing asked yet, that no worker could take in time. */
static void close_gracefully(struct up_mconn *c)
{
    c->answer_len = 512;
    c->answer = malloc(c->answer_len); /* scratch for what linger drops */
    if (c->answer == NULL) {
        mconn_close(c);
        return;
    }
    linger(c);
}

/* c waited --queue-timeout in the queue with no worker to take it. */
static void queue_timed_out(struct up_mconn *c)
{
    struct up_master *m = c->m;
    queue_remove(m, c);
    m->stats.queue_timeouts++;
    bool asked = has_request(c);
    unsigned long long held = 0;
    if (up_ratelimit_ok(&m->queue_rl, up_loop_now(m->loop), &held)) {
        up_log(UP_LOG_WARN,
               "conn id=%llu: no worker could take it within %llu ms (--queue-timeout), %s "
               "(%llu more like it not logged)",
               (unsigned long long)c->id, (unsigned long long)m->cli->queue_timeout_ms,
               asked ? "answering 503" : "closing it (idle, nothing asked)", held);
    }
    if (asked) {
        answer(c, 503, NULL);
    } else {
        close_gracefully(c);
    }
}

/* ---- callbacks ---- */

static void on_op(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_mconn *c = (struct up_mconn *)((char *)op - offsetof(struct up_mconn, op));
    if (c->timed_out && (c->state == UP_MCONN_PEEK || c->state == UP_MCONN_WAIT)) {
        c->timed_out = false;
        if (c->peeked > 0) {
            answer(c, 408, NULL);
        } else {
            mconn_close(c); /* sent nothing at all: just close */
        }
        return;
    }
    switch (c->state) {
    case UP_MCONN_PEEK:
        on_peek(c, res);
        return;
    case UP_MCONN_WAIT:
        if (res < 0) {
            mconn_close(c);
        } else {
            c->peer_closed = (res & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
            peek(c);
        }
        return;
    case UP_MCONN_ANSWER:
        if (res > 0 && (c->answer_off += (size_t)res) < c->answer_len) {
            send_answer(c);
        } else if (res > 0) {
            linger(c);
        } else {
            mconn_close(c);
        }
        return;
    case UP_MCONN_LINGER:
        if (res > 0 && linger_again(c)) {
            return;
        }
        mconn_close(c);
        return;
    case UP_MCONN_CLOSING:
        mconn_close(c);
        return;
    case UP_MCONN_QUEUED:
    case UP_MCONN_SENT:
        return; /* no op of ours runs in these states */
    }
}

/* The header timeout, or a step of an answered connection, ran out. */
static void header_timeout(struct up_mconn *c)
{
    if (c->op.busy) {
        c->timed_out = true; /* on_op finishes it once the op is back */
        up_loop_cancel(c->m->loop, &c->op);
    } else if (c->peeked > 0) {
        answer(c, 408, NULL);
    } else {
        mconn_close(c);
    }
}

static void on_timer(struct up_loop *loop, struct up_timer *t)
{
    struct up_mconn *c = (struct up_mconn *)((char *)t - offsetof(struct up_mconn, timer));
    switch (c->state) {
    case UP_MCONN_WAIT:
        if (c->repeek_timer && up_loop_now(loop) < c->deadline) {
            /* No SO_RCVLOWAT: look again, at a low rate. */
            uint64_t left = c->deadline - up_loop_now(loop);
            up_timer_start(loop, &c->timer, left < REPEEK_MS ? left : REPEEK_MS);
            peek(c);
            return;
        }
        header_timeout(c);
        return;
    case UP_MCONN_PEEK:
        header_timeout(c);
        return;
    case UP_MCONN_ANSWER:
    case UP_MCONN_LINGER:
        /* The client neither read the answer nor closed in time. */
        mconn_close(c);
        return;
    case UP_MCONN_QUEUED:
        if (c->in_queue) {
            queue_timed_out(c);
        }
        return;
    case UP_MCONN_SENT:
    case UP_MCONN_CLOSING:
        return;
    }
}

void up_mconn_flush_all(struct up_master *m, int status)
{
    struct up_mconn *c;
    while ((c = queue_pop(m)) != NULL) {
        answer(c, status, NULL);
    }
    for (c = m->mconns; c != NULL;) {
        struct up_mconn *next = c->next;
        if (c->state == UP_MCONN_PEEK || c->state == UP_MCONN_WAIT) {
            mconn_close(c);
        }
        c = next;
    }
}

void up_mconn_shed(struct up_master *m)
{
    size_t staying = m->nmconns - m->nleaving - m->nshedding;
    if (staying < m->max_pending / 8 * 7) {
        return;
    }
    /* Slow clients (a head trickling in a byte at a time) must not keep a
     * fresh, complete request out: the oldest incomplete heads go first,
     * with a 408 and a short graceful close. */
    size_t want = staying - m->max_pending / 2;
    size_t shed = 0;
    uint64_t now = up_loop_now(m->loop);
    for (struct up_mconn *c = m->mconns_tail; c != NULL && shed < want;) {
        struct up_mconn *prev = c->prev; /* c may be freed */
        if (now - c->accepted_at < SHED_MIN_AGE_MS) {
            break; /* the list is in accept order: the rest are younger */
        }
        if ((c->state == UP_MCONN_PEEK || c->state == UP_MCONN_WAIT) && c->peeked > 0 && !c->shed) {
            c->shed = true;
            m->nshedding++; /* until it leaves PEEK/WAIT: see set_state() */
            shed++;
            header_timeout(c); /* 408 now, as at the header timeout */
        }
        c = prev;
    }
    m->stats.shed += shed;
    unsigned long long held = 0;
    if (shed > 0 && up_ratelimit_ok(&m->queue_rl, now, &held)) {
        up_log(UP_LOG_WARN,
               "%zu connections pending (cap %zu): answered 408 to the %zu oldest incomplete "
               "heads to make room (%llu more lines like this not logged)",
               staying, m->max_pending, shed, held);
    }
}
