/*
 * pending: connections before handoff. See pending.h for the state diagram.
 */
#include "pending.h"

#include "fd.h"
#include "log.h"

#include <errno.h>
#include <malloc.h>
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

static void peek(struct up_pending *c);
static void answer(struct up_pending *c, int status, const char *detail);
static void pending_close(struct up_pending *c);

const char *up_pending_state_name(enum up_pending_state s)
{
    switch (s) {
    case UP_PENDING_PEEK:
        return "PEEK";
    case UP_PENDING_WAIT:
        return "WAIT";
    case UP_PENDING_READY:
        return "READY";
    case UP_PENDING_SENT:
        return "SENT";
    case UP_PENDING_ANSWER:
        return "ANSWER";
    case UP_PENDING_LINGER:
        return "LINGER";
    case UP_PENDING_CLOSING:
        return "CLOSING";
    }
    return "?";
}

static bool peeking(enum up_pending_state s)
{
    return s == UP_PENDING_PEEK || s == UP_PENDING_WAIT;
}

/* On its way out: the fd goes soon, whatever happens. */
static bool leaving(enum up_pending_state s)
{
    return s == UP_PENDING_ANSWER || s == UP_PENDING_LINGER || s == UP_PENDING_CLOSING;
}

static void set_state(struct up_pending *c, enum up_pending_state to)
{
    /* allowed[from][to], as drawn in pending.h. */
    static const bool allowed[7][7] = {
        [UP_PENDING_PEEK] = {[UP_PENDING_WAIT] = true,
                             [UP_PENDING_READY] = true,
                             [UP_PENDING_ANSWER] = true,
                             [UP_PENDING_CLOSING] = true},
        [UP_PENDING_WAIT] =
            {[UP_PENDING_PEEK] = true, [UP_PENDING_ANSWER] = true, [UP_PENDING_CLOSING] = true},
        [UP_PENDING_READY] = {[UP_PENDING_SENT] = true,
                              [UP_PENDING_ANSWER] = true,
                              [UP_PENDING_LINGER] = true,
                              [UP_PENDING_CLOSING] = true},
        [UP_PENDING_SENT] = {[UP_PENDING_READY] = true, [UP_PENDING_CLOSING] = true},
        [UP_PENDING_ANSWER] = {[UP_PENDING_LINGER] = true, [UP_PENDING_CLOSING] = true},
        [UP_PENDING_LINGER] = {[UP_PENDING_CLOSING] = true},
        [UP_PENDING_CLOSING] = {[UP_PENDING_CLOSING] = false},
    };
    if (!allowed[c->state][to]) {
        up_log(UP_LOG_ERR, "conn id=%llu: bad transition %s -> %s", (unsigned long long)c->id,
               up_pending_state_name(c->state), up_pending_state_name(to));
        abort();
    }
    if (!leaving(c->state) && leaving(to)) {
        c->set->nleaving++;
    }
    if (c->shed && peeking(c->state) && !peeking(to)) {
        c->set->nshedding--;
    }
    c->state = to;
}

/* ---- peek buffers: a pool, so steady state allocates nothing ----
 *
 * A connection holds one from accept until its head is read, and on
 * io_uring every peek of a loop turn is in flight at once, so a burst of a
 * thousand connections takes a thousand (the peek touches a page or two of
 * each). Kept resident, they would hold the master's memory at
 * the burst's height for good: a second after the pool last grew its
 * resident spare, the spare past UP_BUFPOOL_KEPT gives its pages back
 * (bufpool.h). */

enum { TRIM_MS = 1000 };

/* What a peek reads at most: one byte over the limit tells "head too
 * large" from "exactly full". (A block is this, rounded up to pages.) */
static size_t buf_size(const struct up_pendings *set)
{
    return set->max_head + 1;
}

static char *buf_get(struct up_pendings *set)
{
    return up_bufpool_get(&set->bufs);
}

static void buf_put(struct up_pendings *set, char **pb)
{
    if (*pb == NULL) {
        return;
    }
    up_bufpool_put(&set->bufs, *pb, false);
    *pb = NULL;
    if (up_bufpool_warm(&set->bufs) > UP_BUFPOOL_KEPT && !up_timer_armed(&set->trim_timer)) {
        up_timer_start(set->loop, &set->trim_timer, TRIM_MS);
    }
}

static void on_trim(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_pendings *set = up_container_of(t, struct up_pendings, trim_timer);
    if (up_bufpool_trim(&set->bufs, UP_BUFPOOL_KEPT) > 0) {
        /* The burst's connection structs were freed into the heap, where
         * free() keeps their pages: ask for them too, once per burst. */
        (void)malloc_trim(0);
    }
}

/* ---- the set ---- */

void up_pendings_init(struct up_pendings *set, struct up_loop *loop, size_t max_head,
                      uint64_t header_timeout_ms, size_t max_pending,
                      const struct up_pending_cbs *cbs, void *ctx)
{
    *set = (struct up_pendings){
        .loop = loop,
        .cbs = cbs,
        .ctx = ctx,
        .max_head = max_head,
        .header_timeout_ms = header_timeout_ms,
        .max_pending = max_pending,
        .shed_rl = UP_RATELIMIT_INIT(10000, 5),
    };
    up_list_init(&set->all);
    up_bufpool_init(&set->bufs, buf_size(set));
    set->trim_timer.cb = on_trim;
    /* From a connection whose head was in at accept (the common case, with
     * TCP_DEFER_ACCEPT) to slow clients and busy workers. */
    static const double bounds[] = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3, 5e-3,
                                    10e-3, 25e-3,  50e-3,  100e-3, 250e-3, 1,      5};
    up_hist_init(&set->stats.handoff, bounds, sizeof(bounds) / sizeof(bounds[0]));
}

void up_pendings_fini(struct up_pendings *set)
{
    up_timer_stop(set->loop, &set->trim_timer);
    up_bufpool_fini(&set->bufs);
}

bool up_pendings_full(const struct up_pendings *set)
{
    return set->n >= set->max_pending;
}

/* ---- lifetime ---- */

static void on_op(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_timer(struct up_loop *loop, struct up_timer *t);

static struct up_pending *pending_new_take(struct up_pendings *set, int fd)
{
    struct up_pending *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        up_log(UP_LOG_WARN, "out of memory for a new connection, closing it");
        up_loop_close(set->loop, fd);
        return NULL;
    }
    c->set = set;
    c->fd = fd;
    c->id = ++set->next_id;
    c->listener = -1;
    c->route_index = -1;
    c->op.cb = on_op;
    c->timer.cb = on_timer;
    c->arrived_at = up_loop_now(set->loop);
    up_list_push_back(&set->all, &c->all);
    set->n++;
    return c;
}

static void pending_free(struct up_pending *c)
{
    struct up_pendings *set = c->set;
    /* Its owner took it off its lists before letting it go: a stray link
     * here would leave a dangling pointer in a queue. */
    if (up_list_linked(&c->link)) {
        up_log(UP_LOG_ERR, "conn id=%llu freed while still queued", (unsigned long long)c->id);
        abort();
    }
    up_timer_stop(set->loop, &c->timer);
    up_timer_stop(set->loop, &c->owner_timer);
    buf_put(set, &c->buf);
    free(c->prefix);
    free(c->answer);
    up_list_remove(&c->all);
    if (leaving(c->state)) {
        set->nleaving--;
    }
    if (c->shed && peeking(c->state)) {
        set->nshedding--;
    }
    set->n--;
    free(c);
    set->cbs->freed(set);
}

/* Close once no op uses the fd. */
static void pending_close(struct up_pending *c)
{
    if (c->state != UP_PENDING_CLOSING) {
        set_state(c, UP_PENDING_CLOSING);
    }
    if (c->op.busy) {
        up_loop_cancel(c->set->loop, &c->op);
        return; /* on_op comes back here */
    }
    c->fd = up_loop_close(c->set->loop, c->fd);
    pending_free(c);
}

/* ---- handing over ---- */

static void ready(struct up_pending *c, const struct up_head *head)
{
    struct up_pendings *set = c->set;
    up_timer_stop(set->loop, &c->timer);
    if (c->rcvlowat > 1) {
        /* The worker shares this socket: it must see the default again. */
        int one = 1;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
        c->rcvlowat = 0;
    }
    set_state(c, UP_PENDING_READY);
    char *buf = c->buf;
    c->buf = NULL; /* the owner may answer c (and free it) in the callback */
    set->cbs->ready(set, c, head);
    buf_put(set, &buf); /* head pointed into it until now */
}

void up_pending_sent(struct up_pending *c, void *worker)
{
    c->worker = worker;
    set_state(c, UP_PENDING_SENT);
}

void up_pending_unsent(struct up_pending *c)
{
    c->worker = NULL;
    set_state(c, UP_PENDING_READY);
}

void up_pending_acked(struct up_pending *c)
{
    c->worker = NULL;
    c->set->stats.handed++;
    if (c->accepted_us != 0) {
        up_hist_observe(&c->set->stats.handoff, (double)(up_hist_now_us() - c->accepted_us) / 1e6);
    }
    /* The worker's copy keeps the socket open; ours goes. */
    set_state(c, UP_PENDING_CLOSING);
    pending_close(c);
}

/* ---- peeking at the first request ---- */

static void wait_more(struct up_pending *c)
{
    struct up_pendings *set = c->set;
    buf_put(set, &c->buf);
    set_state(c, UP_PENDING_WAIT);
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
        up_timer_start(set->loop, &c->timer, REPEEK_MS);
        return;
    }
    if (up_loop_poll(set->loop, &c->op, c->fd, POLLIN | POLLRDHUP) < 0) {
        pending_close(c);
    }
}

/* The client's FIN (or an error) is there: asked without waiting, for the
 * re-peek by timer, which has no poll result of its own. */
static bool peer_closed_now(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static void on_peek(struct up_pending *c, int res)
{
    if (res == -EAGAIN) {
        wait_more(c);
        return;
    }
    if (res <= 0) {
        /* A read of 0: the client closed before a whole head; or reset. */
        pending_close(c);
        return;
    }
    if ((size_t)res == c->peeked) {
        /* Nothing new. The end of the stream only if the FIN is really
         * there; otherwise the rest of the head is still on its way. */
        if (c->peer_closed || (c->repeek_timer && peer_closed_now(c->fd))) {
            pending_close(c);
        } else {
            wait_more(c);
        }
        return;
    }
    c->peeked = (size_t)res;
    struct up_head head;
    int r = up_head_check(c->buf, c->peeked, c->set->max_head, &head);
    if (r == UP_HEAD_COMPLETE) {
        ready(c, &head);
    } else if (r == UP_HEAD_PARTIAL) {
        wait_more(c);
    } else {
        answer(c, up_head_error_status(r), NULL);
    }
}

static void peek(struct up_pending *c)
{
    struct up_pendings *set = c->set;
    if (c->buf == NULL && (c->buf = buf_get(set)) == NULL) {
        pending_close(c);
        return;
    }
    if (c->state != UP_PENDING_PEEK) {
        set_state(c, UP_PENDING_PEEK); /* a new one starts in PEEK */
    }
    /* MSG_DONTWAIT: with nothing to read the ring answers -EAGAIN at once
     * instead of holding the buffer while it waits; WAIT then polls. */
    if (up_loop_recv(set->loop, &c->op, c->fd, c->buf, buf_size(set), MSG_PEEK | MSG_DONTWAIT) <
        0) {
        pending_close(c);
    }
}

void up_pending_accept_take(struct up_pendings *set, int fd, int listener, bool unix_sock)
{
    struct up_pending *c = pending_new_take(set, fd);
    if (c == NULL) {
        return;
    }
    set->stats.accepted++;
    c->accepted_us = up_hist_now_us();
    c->listener = listener;
    c->repeek_timer = unix_sock; /* unix sockets have no SO_RCVLOWAT */
    c->deadline = up_loop_now(set->loop) + set->header_timeout_ms;
    up_timer_start(set->loop, &c->timer, set->header_timeout_ms);
    peek(c);
}

void up_pending_handed_back_take(struct up_pendings *set, int fd, const char *data, size_t len,
                                 unsigned tries, pid_t from)
{
    struct up_pending *c = pending_new_take(set, fd);
    if (c == NULL) {
        return;
    }
    set->stats.handed_back++;
    c->tries = tries;
    c->avoid = from;
    if (len > 0) {
        c->prefix = malloc(len);
        if (c->prefix == NULL) {
            pending_close(c);
            return;
        }
        memcpy(c->prefix, data, len);
        c->prefix_len = len;
    }
    set_state(c, UP_PENDING_READY);
    /* The bytes the worker had read may hold the next whole head: then the
     * owner can route by it as for a new connection. */
    struct up_head head;
    bool whole = len > 0 && up_head_check(c->prefix, len, set->max_head, &head) == UP_HEAD_COMPLETE;
    set->cbs->ready(set, c, whole ? &head : NULL);
}

/* ---- answering ---- */

static void send_answer(struct up_pending *c)
{
    int r = up_loop_send(c->set->loop, &c->op, c->fd, c->answer + c->answer_off,
                         c->answer_len - c->answer_off, 0);
    if (r < 0) {
        pending_close(c);
    }
}

/* c's answer bytes are in c->answer: send them, then close gracefully. */
static void start_answer(struct up_pending *c, int status)
{
    struct up_pendings *set = c->set;
    set->stats.answered++;
    up_log(UP_LOG_DEBUG, "conn id=%llu: answered %d", (unsigned long long)c->id, status);
    set_state(c, UP_PENDING_ANSWER);
    up_timer_start(set->loop, &c->timer, c->shed ? SHED_LINGER_MS : LINGER_MS);
    send_answer(c);
}

static void answer(struct up_pending *c, int status, const char *detail)
{
    buf_put(c->set, &c->buf);
    size_t cap = UP_HEAD_ERROR_MAX + (detail ? strlen(detail) + 64 : 0) + 32;
    c->answer = malloc(cap);
    if (c->answer == NULL) {
        pending_close(c);
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
    start_answer(c, status);
}

void up_pending_answer(struct up_pending *c, int status, const char *detail)
{
    answer(c, status, detail);
}

void up_pending_answer_raw(struct up_pending *c, const char *bytes, size_t len)
{
    c->answer = malloc(len > 0 ? len : 1);
    if (c->answer == NULL) {
        pending_close(c);
        return;
    }
    memcpy(c->answer, bytes, len);
    c->answer_len = len;
    start_answer(c, len > 12 ? atoi(bytes + 9) : 0);
}

/* Read and drop what the client still sends, into the answer buffer (it
 * was sent already). Returns false if the read could not start. */
static bool linger_again(struct up_pending *c)
{
    return up_loop_recv(c->set->loop, &c->op, c->fd, c->answer, c->answer_len, 0) == 0;
}

static void linger(struct up_pending *c)
{
    set_state(c, UP_PENDING_LINGER);
    (void)shutdown(c->fd, SHUT_WR);
    if (c->rcvlowat > 1) {
        int one = 1;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    }
    up_timer_start(c->set->loop, &c->timer, c->shed ? SHED_LINGER_MS : LINGER_MS);
    if (!linger_again(c)) {
        pending_close(c);
    }
}

bool up_pending_has_request(const struct up_pending *c)
{
    char byte;
    return c->peeked > 0 || c->prefix_len > 0 || recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

void up_pending_close_gracefully(struct up_pending *c)
{
    c->answer_len = 512;
    c->answer = malloc(c->answer_len); /* scratch for what linger drops */
    if (c->answer == NULL) {
        pending_close(c);
        return;
    }
    linger(c);
}

/* ---- callbacks ---- */

static void on_op(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_pending *c = up_container_of(op, struct up_pending, op);
    if (c->timed_out && peeking(c->state)) {
        c->timed_out = false;
        if (c->peeked > 0) {
            answer(c, 408, NULL);
        } else {
            pending_close(c); /* sent nothing at all: just close */
        }
        return;
    }
    switch (c->state) {
    case UP_PENDING_PEEK:
        on_peek(c, res);
        return;
    case UP_PENDING_WAIT:
        if (res < 0) {
            pending_close(c);
        } else {
            c->peer_closed = (res & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
            peek(c);
        }
        return;
    case UP_PENDING_ANSWER:
        if (res > 0 && (c->answer_off += (size_t)res) < c->answer_len) {
            send_answer(c);
        } else if (res > 0) {
            linger(c);
        } else {
            pending_close(c);
        }
        return;
    case UP_PENDING_LINGER:
        if (res > 0 && linger_again(c)) {
            return;
        }
        pending_close(c);
        return;
    case UP_PENDING_CLOSING:
        pending_close(c);
        return;
    case UP_PENDING_READY:
    case UP_PENDING_SENT:
        return; /* no op of ours runs in these states */
    }
}

/* The header timeout ran out (or the connection is shed). */
static void header_timeout(struct up_pending *c)
{
    if (c->op.busy) {
        c->timed_out = true; /* on_op finishes it once the op is back */
        up_loop_cancel(c->set->loop, &c->op);
    } else if (c->peeked > 0) {
        answer(c, 408, NULL);
    } else {
        pending_close(c);
    }
}

static void on_timer(struct up_loop *loop, struct up_timer *t)
{
    struct up_pending *c = up_container_of(t, struct up_pending, timer);
    switch (c->state) {
    case UP_PENDING_WAIT:
        if (c->repeek_timer && up_loop_now(loop) < c->deadline) {
            /* No SO_RCVLOWAT: look again, at a low rate. */
            uint64_t left = c->deadline - up_loop_now(loop);
            up_timer_start(loop, &c->timer, left < REPEEK_MS ? left : REPEEK_MS);
            peek(c);
            return;
        }
        header_timeout(c);
        return;
    case UP_PENDING_PEEK:
        header_timeout(c);
        return;
    case UP_PENDING_ANSWER:
    case UP_PENDING_LINGER:
        /* The client neither read the answer nor closed in time. */
        pending_close(c);
        return;
    case UP_PENDING_READY:
    case UP_PENDING_SENT:
    case UP_PENDING_CLOSING:
        return;
    }
}

/* ---- the set, as a whole ---- */

void up_pendings_shed(struct up_pendings *set)
{
    size_t staying = set->n - set->nleaving - set->nshedding;
    if (staying < set->max_pending / 8 * 7) {
        return;
    }
    /* Slow clients (a head trickling in a byte at a time) must not keep a
     * fresh, complete request out: the oldest incomplete heads go first,
     * with a 408 and a short graceful close. */
    size_t want = staying - set->max_pending / 2;
    size_t shed = 0;
    uint64_t now = up_loop_now(set->loop);
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &set->all)
    {
        struct up_pending *c = up_container_of(pos, struct up_pending, all);
        if (shed >= want || now - c->arrived_at < SHED_MIN_AGE_MS) {
            break; /* the list is in arrival order: the rest are younger */
        }
        if (peeking(c->state) && c->peeked > 0 && !c->shed) {
            c->shed = true;
            set->nshedding++; /* until it leaves PEEK/WAIT: see set_state() */
            shed++;
            header_timeout(c); /* 408 now, as at the header timeout */
        }
    }
    set->stats.shed += shed;
    unsigned long long held = 0;
    if (shed > 0 && up_ratelimit_ok(&set->shed_rl, now, &held)) {
        up_log(UP_LOG_WARN,
               "%zu connections pending (cap %zu): answered 408 to the %zu oldest incomplete "
               "heads to make room (%llu more lines like this not logged)",
               staying, set->max_pending, shed, held);
    }
}

void up_pendings_close_peeking(struct up_pendings *set, bool handed_back_only)
{
    struct up_list *pos, *tmp;
    up_list_for_each_safe(pos, tmp, &set->all)
    {
        struct up_pending *c = up_container_of(pos, struct up_pending, all);
        if (peeking(c->state) && (!handed_back_only || c->listener < 0)) {
            pending_close(c);
        }
    }
}

size_t up_pendings_owed(const struct up_pendings *set)
{
    return set->n - set->nleaving;
}
