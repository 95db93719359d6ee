/*
 * conn: the worker's connection driver. See conn.h for the state diagram.
 */
#include "conn.h"
#include "bufpool.h"
#include "list.h"

#include "fd.h"
#include "log.h"
#include "worker.h"
#include "ws.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* How long a gracefully closed connection reads and drops what the client
 * still sends, waiting for its FIN; shorter when the worker is on its way
 * out, so that an idle client that never closes does not hold the exit. */
#define LINGER_MS 2000
#define LINGER_DRAIN_MS 250

/* The send timeout is checked in this many ticks: see send_tick(). */
#define SEND_TICKS 8

/* How long a WebSocket we closed waits for the client's close frame. */
#define WS_CLOSE_WAIT_MS 5000

/* An idle Keep-Alive connection is kept this much longer than the
 * `Keep-Alive: timeout=N` it was told, so that a client that trusts N
 * never sends on a socket being closed (see res_head_framing()). */
#define IDLE_SLACK_MS 1000

/* An idle Keep-Alive connection gives its buffers back after this long
 * (see slim_down()): a client between two quick requests keeps them, one
 * that sits idle (most of them, at scale) costs the struct alone. */
#define SLIM_AFTER_MS 1000

static void conn_run(struct up_wconn *c);
static void conn_close(struct up_wconn *c, bool graceful);
static void conn_maybe_free(struct up_wconn *c);

static void set_state(struct up_wconn *c, enum up_wconn_state to)
{
    /* allowed[from][to]: the transitions drawn in conn.h. */
    static const bool allowed[4][4] = {
        [UP_WCONN_OPEN] =
            {[UP_WCONN_LINGER] = true, [UP_WCONN_HANDBACK] = true, [UP_WCONN_CLOSING] = true},
        [UP_WCONN_LINGER] = {[UP_WCONN_CLOSING] = true},
        [UP_WCONN_HANDBACK] = {[UP_WCONN_CLOSING] = true},
        [UP_WCONN_CLOSING] = {[UP_WCONN_CLOSING] = false},
    };
    if (!allowed[c->state][to]) {
        up_log(UP_LOG_ERR, "conn id=%llu: bad transition %d -> %d", (unsigned long long)c->id,
               (int)c->state, (int)to);
        abort();
    }
    c->state = to;
}

bool up_wconn_idle(const struct up_wconn *c)
{
    return c->state == UP_WCONN_OPEN && c->ws == NULL && !c->req_active && !c->started &&
           c->roff == c->rlen && up_http_out_pending(&c->out) == 0 && !c->tx.busy &&
           !c->close_after;
}

/* up_http_parser_set_peer_source()'s fill: the connection's socket is
 * open whenever its request is (a zombie's fd is -1: ""). */
static void peer_text(void *ctx, char *buf, size_t cap)
{
    const struct up_wconn *c = ctx;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    buf[0] = '\0';
    if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0) {
        return;
    }
    char host[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        snprintf(buf, cap, "%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        snprintf(buf, cap, "[%s]:%u", host, ntohs(a->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        snprintf(buf, cap, "unix");
    }
}

/* ---- the access log ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The access log line of the current request, whose response is all
 * queued: the app's (req), or one the runtime answered itself because the
 * request was malformed or too slow (req NULL). */
static void log_request(struct up_wconn *c, const struct up_req *req, int status)
{
    if (!c->w->alog.open) {
        return;
    }
    struct up_alog_entry e = {
        .peer = up_http_parser_peer(&c->busy->parser),
        .when = time(NULL),
        .minor = 1,
        .status = status,
        .generation = c->w->cfg.generation,
        .us = now_us() - c->req_t0,
    };
    if (req != NULL) {
        e.method = up_req_method(req);
        e.target = up_req_target(req);
        e.minor = req->minor;
        e.bytes = c->busy->res.body_bytes;
        e.referer = up_req_header(req, "referer");
        e.user_agent = up_req_header(req, "user-agent");
    }
    up_alog_put(&c->w->alog, &e);
}

/* ---- timers ---- */

/* The client takes nothing: nothing graceful is possible. SO_LINGER with a
 * zero timeout makes close() send RST and free what the kernel still holds
 * for the client (up to the socket buffer, MiBs) at once, rather than keep
 * probing a closed window with it. close() does not block either way. */
static void conn_reset(struct up_wconn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    conn_close(c, false);
}

static uint64_t send_tick_ms(const struct up_worker *w)
{
    uint64_t ms = w->cfg.send_timeout_ms / SEND_TICKS;
    return ms > 0 ? ms : 1;
}

/* Bytes the kernel still holds for the client: unsent, or sent and not
 * acknowledged (for a unix socket: not yet read by the peer); -1 if it
 * cannot tell. */
static int kernel_outq(int fd)
{
    int n;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

/*
 * Output is queued: is the client taking it? Progress is a byte the kernel
 * took from the queue (on_send) or a byte the client acknowledged (the
 * kernel's own queue shrank between two ticks). The second matters: the
 * kernel frees send buffer space a whole packet at a time (64 KiB on
 * loopback, with GSO) and only wakes a writer once a good part of its
 * buffer is free, so a client that reads slowly but steadily may let no
 * send complete for seconds. Ticks come every send_timeout / SEND_TICKS
 * while output is queued, and cost one ioctl each, only then. The
 * connection is reset at the first tick a whole send timeout after the last
 * progress seen. Progress is seen up to a tick late, and an acknowledgment
 * between a send and the next tick (which has nothing to compare with yet)
 * not at all, so a client that stops taking output is reset after 7/8 to
 * 9/8 of the send timeout.
 */
static void send_tick(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    uint64_t now = up_loop_now(w->loop);
    int q = kernel_outq(c->fd);
    if (q >= 0 && c->tx_kernel >= 0 && q < c->tx_kernel) {
        c->tx_progress = now;
    }
    c->tx_kernel = q;
    if (now - c->tx_progress >= w->cfg.send_timeout_ms) {
        up_log(UP_LOG_DEBUG, "conn id=%llu: output stuck for %llu ms (%zu bytes queued), reset",
               (unsigned long long)c->id, (unsigned long long)(now - c->tx_progress),
               up_http_out_pending(&c->out));
        w->send_timeouts++;
        conn_reset(c);
        return;
    }
    up_timer_start(w->loop, &c->timer, send_tick_ms(w));
}

/* A WebSocket with nothing queued for ping_ms: ping a client that sent
 * nothing for that long, and give up on one that answered nothing for
 * twice that (a peer gone without a FIN, a NAT that forgot us). */
static void ping_tick(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    uint64_t idle = up_loop_now(w->loop) - c->rx_at;
    if (idle >= 2 * w->cfg.ws_ping_ms) {
        up_log(UP_LOG_DEBUG, "conn id=%llu: WebSocket silent for %llu ms, closing",
               (unsigned long long)c->id, (unsigned long long)idle);
        conn_close(c, false);
        return;
    }
    if (idle >= w->cfg.ws_ping_ms) {
        up_ws_ping(c->ws); /* its output runs the connection, and re-arms */
    }
    if (c->state == UP_WCONN_OPEN && !up_timer_armed(&c->timer)) {
        up_timer_start(w->loop, &c->timer, w->cfg.ws_ping_ms);
    }
}

/* The idle timeout, with its slack (see IDLE_SLACK_MS). */
static uint64_t idle_total_ms(const struct up_worker *w)
{
    return w->cfg.idle_timeout_ms + (w->cfg.idle_timeout_ms >= 1000 ? IDLE_SLACK_MS : 0);
}

/* When an idle connection's timer fires next: to slim down, or at the end
 * of the idle timeout. */
static uint64_t idle_tick_ms(const struct up_wconn *c)
{
    uint64_t idle = up_loop_now(c->w->loop) - c->idle_at;
    uint64_t total = idle_total_ms(c->w);
    uint64_t left = total > idle ? total - idle : 0;
    if (!c->slim && idle < SLIM_AFTER_MS && SLIM_AFTER_MS - idle < left) {
        return SLIM_AFTER_MS - idle;
    }
    return left;
}

static void slim_down(struct up_wconn *c);
static void finish_slim(struct up_wconn *c);
static bool plump_up(struct up_wconn *c);
static char *rbuf_new(void);

static void on_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_wconn *c = up_container_of(t, struct up_wconn, timer);
    switch (c->state) {
    case UP_WCONN_OPEN:
        break;
    case UP_WCONN_LINGER:
        conn_close(c, false);
        return;
    case UP_WCONN_HANDBACK:
    case UP_WCONN_CLOSING:
        return;
    }
    switch (c->wait) {
    case UP_WCONN_WAIT_SEND:
        send_tick(c);
        return;
    case UP_WCONN_WAIT_READ:
        if (c->started && !c->req_active) {
            /* A request was begun and not finished in time. */
            up_http_error_response(&c->out, 408);
            log_request(c, NULL, 408);
            c->close_after = true;
            conn_run(c);
        }
        return;
    case UP_WCONN_WAIT_IDLE:
        if (!up_wconn_idle(c)) {
            return;
        }
        if (up_loop_now(loop) - c->idle_at >= idle_total_ms(c->w)) {
            conn_close(c, true);
            return;
        }
        if (!c->slim && !c->slimming) {
            slim_down(c);
        }
        if (c->state == UP_WCONN_OPEN) {
            up_timer_start(loop, &c->timer, idle_tick_ms(c));
        }
        return;
    case UP_WCONN_WAIT_PING:
        ping_tick(c);
        return;
    case UP_WCONN_WAIT_CLOSE:
        conn_close(c, true); /* the client never answered our close */
        return;
    case UP_WCONN_WAIT_NONE:
        return;
    }
}

static enum up_wconn_wait wait_for(const struct up_wconn *c)
{
    if (up_http_out_pending(&c->out) > 0) {
        return UP_WCONN_WAIT_SEND; /* also while the app streams */
    }
    if (c->ws != NULL) {
        return c->ws->state == UP_WS_OPEN ? UP_WCONN_WAIT_PING : UP_WCONN_WAIT_CLOSE;
    }
    if (c->req_active || c->close_after) {
        return UP_WCONN_WAIT_NONE;
    }
    if (c->started || c->roff < c->rlen) {
        return UP_WCONN_WAIT_READ;
    }
    return UP_WCONN_WAIT_IDLE;
}

/* Re-arm the one timer for what the connection waits for now. The idle and
 * read timeouts count from the last event; the send ticks keep their own
 * pace while output stays queued, so that the app writing more does not
 * push the send timeout back. */
static void arm_timer(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    enum up_wconn_wait was = c->wait;
    c->wait = wait_for(c);
    switch (c->wait) {
    case UP_WCONN_WAIT_SEND:
        if (was != UP_WCONN_WAIT_SEND || !up_timer_armed(&c->timer)) {
            c->tx_progress = up_loop_now(w->loop);
            c->tx_kernel = -1;
            up_timer_start(w->loop, &c->timer, send_tick_ms(w));
        }
        return;
    case UP_WCONN_WAIT_READ:
        up_timer_start(w->loop, &c->timer, w->cfg.read_timeout_ms);
        return;
    case UP_WCONN_WAIT_IDLE:
        if (was != UP_WCONN_WAIT_IDLE || !up_timer_armed(&c->timer)) {
            c->idle_at = up_loop_now(w->loop);
        }
        up_timer_start(w->loop, &c->timer, idle_tick_ms(c));
        return;
    case UP_WCONN_WAIT_PING:
        up_timer_start(w->loop, &c->timer, w->cfg.ws_ping_ms);
        return;
    case UP_WCONN_WAIT_CLOSE:
        if (was != UP_WCONN_WAIT_CLOSE || !up_timer_armed(&c->timer)) {
            up_timer_start(w->loop, &c->timer, WS_CLOSE_WAIT_MS);
        }
        return;
    case UP_WCONN_WAIT_NONE:
        up_timer_stop(w->loop, &c->timer);
        return;
    }
}

/* Whether the out queue holds too much to take another request: set at
 * UP_WCONN_OUT_HIGH, cleared at UP_WCONN_OUT_LOW. Only asked before a new
 * request is begun: once begun, a request is read to its end (the parser's
 * limits bound it) and answered, and its answer is queued whatever its size,
 * so answers stay whole and in order. */
static bool backlogged(struct up_wconn *c)
{
    size_t n = up_http_out_pending(&c->out);
    if (n >= UP_WCONN_OUT_HIGH) {
        c->backlogged = true;
    } else if (n <= UP_WCONN_OUT_LOW) {
        c->backlogged = false;
    }
    return c->backlogged;
}

/* ---- I/O ---- */

static void on_recv(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);
static void on_send(struct up_loop *loop, struct up_op *op, int res, uint32_t flags);

static void want_read(struct up_wconn *c)
{
    if (c->rx.busy || c->req_active || c->close_after || c->roff < c->rlen) {
        return;
    }
    if (!c->started && backlogged(c)) {
        return; /* on_send runs conn_run again as the queue drains */
    }
    if (c->slim) {
        /* Slim and no wait armed: wait for bytes before taking buffers. */
        if (up_loop_poll(c->w->loop, &c->rx, c->fd, POLLIN) < 0) {
            conn_close(c, false);
        }
        return;
    }
    c->roff = c->rlen = 0;
    /* Between keep-alive requests the socket is empty: the client waits
     * for our answer before it sends again. */
    int r = c->drained ? up_loop_recv_drained(c->w->loop, &c->rx, c->fd, c->rbuf, UP_WCONN_RBUF)
                       : up_loop_recv(c->w->loop, &c->rx, c->fd, c->rbuf, UP_WCONN_RBUF, 0);
    if (r < 0) {
        conn_close(c, false);
    }
}

/* Start sending the out queue if nothing is in flight. Returns 0 or the
 * -errno of a send that could not start. */
static int send_start(struct up_wconn *c)
{
    if (c->tx.busy || up_http_out_pending(&c->out) == 0) {
        return 0;
    }
    struct up_wconn_busy *b = c->busy;
    size_t n = up_http_out_iov(&c->out, b->iov, UP_WCONN_IOV);
    memset(&b->msg, 0, sizeof(b->msg));
    b->msg.msg_iov = b->iov;
    b->msg.msg_iovlen = n;
    return up_loop_sendmsg(c->w->loop, &c->tx, c->fd, &b->msg, 0);
}

static void flush(struct up_wconn *c)
{
    if (send_start(c) < 0) {
        conn_close(c, false);
    }
}

static void on_send(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_wconn *c = up_container_of(op, struct up_wconn, tx);
    if (res > 0 && c->state != UP_WCONN_CLOSING) {
        up_http_out_consume(&c->out, (size_t)res);
        /* The kernel took bytes: progress (see send_tick()). Its queue grew
         * by them, so the next tick starts a new comparison. */
        c->tx_progress = up_loop_now(c->w->loop);
        c->tx_kernel = -1;
        conn_run(c);
        return;
    }
    if (c->state == UP_WCONN_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    /* The client went away (EPIPE, ECONNRESET): nothing more to say. */
    conn_close(c, false);
}

static void linger_read(struct up_wconn *c)
{
    if (c->rx.busy) {
        return;
    }
    if (c->slim) {
        /* Only bytes to drop: a read buffer, not the parser a request needs. */
        c->rbuf = rbuf_new();
        if (c->rbuf == NULL) {
            conn_close(c, false);
            return;
        }
        c->slim = false;
    }
    if (up_loop_recv(c->w->loop, &c->rx, c->fd, c->rbuf, UP_WCONN_RBUF, 0) < 0) {
        conn_close(c, false);
    }
}

static void finish_hand_back(struct up_wconn *c);
static void hand_back(struct up_wconn *c);

/* Connection structs come from a pool of their own (bufpool.h): packed
 * apart from the heap, they leave the heap's pages to the short-lived
 * allocations, which a slim connection frees whole. */
static struct up_bufpool conn_structs;

static struct up_wconn *conn_alloc(void)
{
    if (conn_structs.size == 0) {
        up_bufpool_init_objects(&conn_structs, sizeof(struct up_wconn));
    }
    struct up_wconn *c = up_bufpool_get(&conn_structs);
    if (c != NULL) {
        memset(c, 0, sizeof(*c));
    }
    return c;
}

static void conn_dealloc(struct up_wconn *c)
{
    up_bufpool_put(&conn_structs, c, false);
}

static void on_output(void *ctx);

/* The busy part: the response, and the parser set up for this worker and
 * for the client's address (asked when first needed, and again after a
 * slim spell: a syscall per idle period rather than 64 bytes per idle
 * connection). */
static int busy_new(struct up_wconn *c)
{
    c->busy = malloc(sizeof(*c->busy));
    if (c->busy == NULL) {
        return -ENOMEM;
    }
    up_http_parser_init(&c->busy->parser, &c->w->cfg.limits);
    up_http_parser_set_peer_source(&c->busy->parser, peer_text, c);
    struct up_res *res = &c->busy->res;
    up_http_res_init(res);
    res->on_output = on_output;
    res->ctx = c;
    res->keep_alive_s = (unsigned)(c->w->cfg.idle_timeout_ms / 1000);
    if (c->w->alog.open) {
        /* Every request's line names it: ask now, while the socket is
         * surely connected (a client that resets is ENOTCONN by the time
         * its line is written). */
        (void)up_http_parser_peer(&c->busy->parser);
    }
    return 0;
}

static void busy_free(struct up_wconn *c)
{
    if (c->busy != NULL) {
        up_http_parser_free(&c->busy->parser);
        up_ws_free(c->busy->res.ws); /* accepted, and the connection went before it began */
        up_http_res_free(&c->busy->res);
        free(c->busy);
        c->busy = NULL;
    }
}

/* Read buffers come from a pool (bufpool.h), so that the pages of one a
 * slim connection gives back go back to the kernel. Process-wide, like the
 * worker that owns every connection. */
static struct up_bufpool rbufs;

static char *rbuf_new(void)
{
    if (rbufs.size == 0) {
        up_bufpool_init(&rbufs, UP_WCONN_RBUF);
    }
    return up_bufpool_get(&rbufs);
}

static void rbuf_free(char *rbuf, bool release)
{
    up_bufpool_put(&rbufs, rbuf, release);
}

size_t up_wconn_trim_pool(void)
{
    return up_bufpool_trim(&rbufs, UP_BUFPOOL_KEPT);
}

/*
 * An idle Keep-Alive connection keeps nothing it does not need: after
 * SLIM_AFTER_MS its read buffer, its busy part (the parser), the
 * response's buffers and the out queue's chunks go back, and it waits for
 * the client's next bytes with a POLLIN wait instead of a receive into a
 * buffer. Bytes arriving take them again (plump_up()). Tens of thousands
 * of idle clients then cost their structs, not 10 KiB or more each; a
 * busy connection never gets here.
 */
static void finish_slim(struct up_wconn *c)
{
    rbuf_free(c->rbuf, true);
    c->rbuf = NULL;
    c->roff = c->rlen = 0;
    busy_free(c);
    up_http_out_release(&c->out);
    c->slim = true;
    c->w->slimmed++;
    want_read(c);
}

static void slim_down(struct up_wconn *c)
{
    if (c->rx.busy) {
        c->slimming = true; /* on_recv finishes, unless bytes came first */
        up_loop_cancel(c->w->loop, &c->rx);
        return;
    }
    finish_slim(c);
}

/* A request is coming: take a read buffer and the busy part again. False
 * when there is no memory for them (the connection is closed). */
static bool plump_up(struct up_wconn *c)
{
    c->rbuf = rbuf_new();
    if (c->rbuf == NULL || busy_new(c) < 0) {
        conn_close(c, false);
        return false;
    }
    c->slim = false;
    return true;
}

static void on_recv(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_wconn *c = up_container_of(op, struct up_wconn, rx);
    if (c->slimming) {
        c->slimming = false;
        if (c->state == UP_WCONN_OPEN && res == -ECANCELED) {
            finish_slim(c);
            return;
        }
        /* Bytes, EOF or a hand back came first: as usual. */
    } else if (c->slim) {
        /* The POLLIN wait of a slim connection: no bytes were read. */
        if (c->state == UP_WCONN_OPEN) {
            if (res < 0 && res != -ECANCELED) {
                conn_close(c, false);
            } else if (plump_up(c)) {
                c->drained = false;
                want_read(c); /* the bytes are still in the socket */
            }
            return;
        }
        if (res > 0) {
            res = -ECANCELED; /* nothing of it was read: hand back, linger as canceled */
        }
        if (c->state == UP_WCONN_LINGER && res == -ECANCELED) {
            linger_read(c);
            return;
        }
    }
    switch (c->state) {
    case UP_WCONN_OPEN:
        if (res > 0) {
            c->roff = 0;
            c->rlen = (size_t)res;
            c->drained = c->rlen < UP_WCONN_RBUF;
            c->rx_at = up_loop_now(c->w->loop);
            c->req_whole = c->req_whole && !c->started; /* a started head's first bytes went */
            conn_run(c);
        } else if (res == 0 && !c->started) {
            conn_close(c, false); /* the client closed between requests */
        } else {
            conn_close(c, false); /* reset, or EOF inside a request */
        }
        return;
    case UP_WCONN_LINGER:
        if (res > 0) {
            linger_read(c); /* drop it and wait for the FIN */
        } else {
            conn_close(c, false);
        }
        return;
    case UP_WCONN_HANDBACK:
        if (res > 0) {
            c->roff = 0;
            c->rlen = (size_t)res;
        } else if (res != -ECANCELED) {
            /* EOF or reset: the client is gone, nothing to hand back. */
            set_state(c, UP_WCONN_CLOSING);
            conn_maybe_free(c);
            return;
        }
        finish_hand_back(c);
        return;
    case UP_WCONN_CLOSING:
        conn_maybe_free(c);
        return;
    }
}

/* ---- the request/response cycle ---- */

static void on_output(void *ctx)
{
    struct up_wconn *c = ctx;
    if (c->zombie) {
        if (up_http_res_done(&c->busy->res)) {
            conn_maybe_free(c);
        }
        return;
    }
    if (!c->in_run) {
        conn_run(c); /* a deferred response moved on, from a timer */
    }
}

static void dispatch(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    struct up_req *req = up_http_request(&c->busy->parser);
    c->req_active = true;
    c->busy->res.date = up_worker_date(w);
    c->busy->res.no_upgrade = w->state == UP_WORKER_DRAINING;
    up_http_res_start(&c->busy->res, req, &c->out);
    if (w->state == UP_WORKER_DRAINING && (w->exiting || !up_worker_takes_back(w))) {
        /* The connection ends after this answer: say so, so that the
         * client sends its next request elsewhere, not into our close. */
        up_http_res_force_close(&c->busy->res);
    }
    w->app.app->handle(req, &c->busy->res);
    if (!up_http_res_deferred(&c->busy->res)) {
        up_http_res_finish_default(&c->busy->res);
    }
}

/* A WebSocket handshake that reached this worker as it drains: better
 * opened on the new generation than here, where the drain would close it
 * again in a moment (or the app would refuse it with 503). The master takes
 * it back with the request's bytes and routes it as a new connection; it
 * can only if those bytes are all still in rbuf (a handshake is one small
 * head, so nearly always). */
static bool upgrade_goes_back(struct up_wconn *c)
{
    const struct up_req *req = up_http_request(&c->busy->parser);
    return req->ws && c->w->state == UP_WORKER_DRAINING && up_worker_takes_back(c->w) &&
           c->req_whole;
}

/* Feed buffered bytes and serve what they hold. Returns false when nothing
 * more can happen until I/O or the app moves. */
static void ws_begin(struct up_wconn *c);

static bool step(struct up_wconn *c)
{
    if (c->stream_ended) {
        return false; /* closes once its last bytes are sent */
    }
    if (c->req_active) {
        if (!up_http_res_done(&c->busy->res)) {
            return false;
        }
        c->req_active = false;
        c->w->nrequests++;
        log_request(c, up_http_request(&c->busy->parser), c->busy->res.status);
        if (c->busy->res.ws != NULL) {
            ws_begin(c);
            return false;
        }
        if (up_http_res_must_close(&c->busy->res) || up_http_res_error(&c->busy->res) < 0) {
            c->close_after = true;
            return false;
        }
        up_http_request_done(&c->busy->parser);
        c->started = false;
    }
    if (c->close_after || c->roff == c->rlen) {
        return false;
    }
    if (!c->started && backlogged(c)) {
        return false; /* the next pipelined request waits in rbuf */
    }
    if (!c->started) {
        c->req_off = c->roff;
        c->req_whole = true;
        if (c->w->alog.open) {
            c->req_t0 = now_us();
        }
    }
    size_t used = c->rlen - c->roff;
    int r = up_http_feed(&c->busy->parser, c->rbuf + c->roff, c->rlen - c->roff, &used);
    c->roff += used;
    c->started = true;
    if (r == UP_HTTP_NEED_MORE) {
        return false;
    }
    if (r == UP_HTTP_EXPECT_CONTINUE) {
        if (up_http_out_append(&c->out, UP_HTTP_CONTINUE, strlen(UP_HTTP_CONTINUE)) < 0) {
            c->close_after = true;
        }
        return !c->close_after;
    }
    if (r < 0) {
        up_http_error_response(&c->out, up_http_error_status(r));
        log_request(c, NULL, up_http_error_status(r));
        c->close_after = true;
        return false;
    }
    if (upgrade_goes_back(c)) {
        c->roff = c->req_off; /* the whole request goes back, unread */
        c->give_back = true;
        return false;
    }
    dispatch(c);
    return true;
}

/* ---- long-lived connections ---- */

/* The worker's list of long-lived connections, kept right: a WebSocket
 * while it is open, a response while it streams server-sent events. */
static void ll_track(struct up_wconn *c)
{
    struct up_longlived *ll = &c->w->longlived;
    bool want = c->ws != NULL
                    ? c->ws->state == UP_WS_OPEN
                    : c->req_active && !c->stream_ended && up_http_res_event_stream(&c->busy->res);
    if (want && !up_list_linked(&c->ll_link)) {
        up_longlived_add(ll, &c->ll_link);
    } else if (!want) {
        up_longlived_remove(ll, &c->ll_link);
    }
}

/* The engine queued frames outside a feed: the app sent from a timer or
 * from another connection's callback. Only start sending here: whatever
 * else follows (a close, on_close) happens from the loop, never inside
 * the app's call. */
static void ws_output(void *ctx)
{
    struct up_wconn *c = ctx;
    if (c->in_run || c->state != UP_WCONN_OPEN) {
        return;
    }
    if (send_start(c) < 0 || up_ws_broken(c->ws)) {
        c->wait = UP_WCONN_WAIT_CLOSE;
        up_timer_start(c->w->loop, &c->timer, 0);
        return;
    }
    arm_timer(c);
}

/* The response was a 101: from here on the connection carries the
 * WebSocket. The HTTP parser's memory goes; what follows the request in
 * rbuf is frames. */
static void ws_begin(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    size_t max = w->cfg.limits.max_body != 0 ? w->cfg.limits.max_body : UP_HTTP_MAX_BODY_DEFAULT;
    c->ws = c->busy->res.ws;
    c->busy->res.ws = NULL;
    up_http_request_done(&c->busy->parser);
    up_http_parser_free(&c->busy->parser);
    up_http_res_free(&c->busy->res);
    up_ws_attach(c->ws, &c->out, max, ws_output, c);
    c->rx_at = up_loop_now(w->loop);
    w->nws++;
    w->ws_total++;
    up_ws_open(c->ws);
}

static void ws_feed(struct up_wconn *c)
{
    if (c->roff < c->rlen) {
        size_t off = c->roff, n = c->rlen - c->roff;
        c->roff = c->rlen = 0;
        (void)up_ws_feed(c->ws, c->rbuf + off, n); /* up_ws_broken() says if it failed */
    }
}

/* After a WebSocket's I/O: close once the closing handshake is over (or
 * we cut it short) and its last bytes went out; else read on. RFC 6455
 * 7.1.1: the server closes the TCP connection first. */
static void ws_after(struct up_wconn *c)
{
    if (up_ws_broken(c->ws)) {
        conn_close(c, false);
        return;
    }
    bool sent = up_http_out_pending(&c->out) == 0 && !c->tx.busy;
    if ((!up_ws_wants_read(c->ws) || c->ws_cut) && sent) {
        conn_close(c, true);
        return;
    }
    if (up_ws_wants_read(c->ws)) {
        want_read(c);
    }
    arm_timer(c);
}

/* The runtime ends the app's response stream: clean puts the chunked end
 * after what is queued (an event stream, which may end anywhere); else it
 * is cut (the client sees the body incomplete, never a shortened body
 * that looks whole). From now on the app's writes are dropped and
 * up_res_pending() says -1; the connection closes once the rest is sent. */
static void stream_end(struct up_wconn *c, bool clean)
{
    up_http_res_cut(&c->busy->res, clean);
    c->stream_ended = true;
    conn_run(c);
}

void up_wconn_end_long(struct up_wconn *c, int code)
{
    if (c->state != UP_WCONN_OPEN) {
        return;
    }
    if (c->ws != NULL) {
        up_ws_go_away(c->ws, code, code == 1012 ? "service restart" : "going away");
    } else if (c->req_active && up_http_res_event_stream(&c->busy->res)) {
        stream_end(c, true);
    }
}

static void conn_run(struct up_wconn *c)
{
    if (c->state != UP_WCONN_OPEN) {
        return;
    }
    c->in_run = true;
    while (c->ws == NULL && step(c)) {
    }
    if (c->ws != NULL) {
        ws_feed(c);
    }
    c->in_run = false;
    if (c->give_back) {
        up_log(UP_LOG_DEBUG, "conn id=%llu: a WebSocket handshake while draining, handed back",
               (unsigned long long)c->id);
        hand_back(c);
        return;
    }
    ll_track(c);
    if (c->roff == c->rlen) {
        c->roff = c->rlen = 0;
    }
    flush(c);
    if (c->state != UP_WCONN_OPEN) {
        return;
    }
    if (c->ws != NULL) {
        ws_after(c);
        return;
    }
    if ((c->close_after || c->stream_ended) && up_http_out_pending(&c->out) == 0 && !c->tx.busy) {
        conn_close(c, true);
        return;
    }
    struct up_worker *w = c->w;
    if (w->state == UP_WORKER_DRAINING &&
        (w->migrate_idle || w->exiting || !up_worker_takes_back(w)) && up_wconn_idle(c) &&
        up_wconn_drain(c, w->exiting)) {
        return;
    }
    want_read(c);
    arm_timer(c);
}

/* ---- closing and handing back ---- */

static void conn_free(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    if (c->wait_ack) {
        c->wait_ack = false;
        w->nwaiting--;
    }
    up_timer_stop(w->loop, &c->timer);
    up_longlived_remove(&w->longlived, &c->ll_link);
    if (c->ws != NULL) {
        up_ws_free(c->ws);
        w->nws--;
    }
    busy_free(c);
    up_http_out_free(&c->out);
    rbuf_free(c->rbuf, false);
    up_list_remove(&c->link);
    w->nconns--;
    conn_dealloc(c);
    up_worker_conn_gone(w);
}

/* CLOSING: close the fd once no op uses it; free once the app let go. */
static void conn_maybe_free(struct up_wconn *c)
{
    if (c->rx.busy || c->tx.busy) {
        return;
    }
    c->fd = up_loop_close(c->w->loop, c->fd);
    if (c->req_active && !up_http_res_done(&c->busy->res)) {
        /* The app still holds res (deferred): it may finish it later. */
        if (!c->zombie) {
            c->zombie = true;
            up_http_res_detach(&c->busy->res);
        }
        return;
    }
    conn_free(c);
}

/* The client said it closes (Connection: close, or HTTP/1.0 without
 * keep-alive) and all it sent was read: its request whole, nothing after
 * it, the socket empty at the last receive. Nothing more should come that
 * our close could answer with a reset, so the FIN goes and the socket with
 * it, without the lingering read (nginx's heuristic, which saves a receive
 * and a wakeup per connection). */
static bool client_done(const struct up_wconn *c)
{
    return c->busy != NULL && !c->busy->res.keep_alive && c->drained && c->roff == c->rlen &&
           up_http_request_whole(&c->busy->parser);
}

static void conn_close(struct up_wconn *c, bool graceful)
{
    struct up_loop *loop = c->w->loop;
    if (c->state == UP_WCONN_CLOSING) {
        return;
    }
    up_longlived_remove(&c->w->longlived, &c->ll_link);
    if (c->ws != NULL) {
        up_ws_end(c->ws); /* on_close, if the closing handshake did not report it */
    }
    if (graceful && c->state == UP_WCONN_OPEN && !c->tx.busy) {
        (void)shutdown(c->fd, SHUT_WR); /* FIN now */
        if (!client_done(c)) {
            /* Then read until the client's FIN: see LINGER. */
            set_state(c, UP_WCONN_LINGER);
            bool draining = c->w->state == UP_WORKER_DRAINING;
            up_timer_start(loop, &c->timer, draining ? LINGER_DRAIN_MS : LINGER_MS);
            linger_read(c);
            return;
        }
    }
    set_state(c, UP_WCONN_CLOSING);
    up_timer_stop(loop, &c->timer);
    up_loop_cancel(loop, &c->rx);
    up_loop_cancel(loop, &c->tx);
    conn_maybe_free(c);
}

static void finish_hand_back(struct up_wconn *c)
{
    struct up_worker *w = c->w;
    int fd = c->fd;
    c->fd = -1; /* the channel's message owns it now, and closes it once sent */
    /* It was ours, in service: back at the drain it starts afresh (a try
     * count only follows a connection bounced straight back). */
    const char *unfed = c->rbuf != NULL ? c->rbuf + c->roff : "";
    (void)up_worker_hand_back_take(w, fd, c->id, unfed, c->rlen - c->roff, 0);
    c->roff = c->rlen = 0;
    set_state(c, UP_WCONN_CLOSING);
    conn_maybe_free(c);
}

/* The drain deadline: nothing long-lived outlives it. A WebSocket gets our
 * close frame and the connection closes once it is sent; a stream is
 * ended (server-sent events) or cut (any other body). */
static void drain_deadline(struct up_wconn *c)
{
    if (c->ws != NULL) {
        up_ws_go_away(c->ws, up_worker_close_code(c->w), "");
        c->ws_cut = true;
        conn_run(c);
    } else if (c->req_active && !c->stream_ended && up_http_res_streaming(&c->busy->res)) {
        stream_end(c, up_http_res_event_stream(&c->busy->res));
    } else if (c->req_active) {
        up_http_res_force_close(&c->busy->res);
    }
}

/* Give c to the master with what rbuf holds unfed (a master takes it). */
static void hand_back(struct up_wconn *c)
{
    set_state(c, UP_WCONN_HANDBACK);
    up_timer_stop(c->w->loop, &c->timer);
    if (c->rx.busy) {
        up_loop_cancel(c->w->loop, &c->rx); /* on_recv finishes the hand back */
        return;
    }
    finish_hand_back(c);
}

/* Whether a request waits in c's socket, unread: a connection just passed
 * to us (untouched until our ACK goes) looks idle, but closed now, its
 * client would get no answer. A peek costs a system call: only a drain
 * that would close asks. */
static bool request_waiting(const struct up_wconn *c)
{
    char b;
    return c->wait_ack || recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

bool up_wconn_drain(struct up_wconn *c, bool deadline)
{
    if (c->state != UP_WCONN_OPEN) {
        return true;
    }
    if (!up_wconn_idle(c)) {
        if (deadline) {
            drain_deadline(c); /* never handed back: a WebSocket is not idle HTTP */
        }
        return true;
    }
    if (!up_worker_takes_back(c->w)) {
        if ((!c->w->close_idle && !c->w->exiting) || request_waiting(c)) {
            /* In the grace for a last request (worker.c), or one waits:
             * it is answered first, with Connection: close. */
            return false;
        }
        conn_close(c, true);
        return true;
    }
    hand_back(c);
    return true;
}

void up_wconn_abort(struct up_wconn *c)
{
    conn_close(c, false);
}

void up_wconn_acked(struct up_wconn *c)
{
    if (c->wait_ack) {
        c->wait_ack = false;
        c->w->nwaiting--;
        conn_run(c);
    }
}

int up_wconn_new_take(struct up_worker *w, int fd, uint64_t id, const char *prefix, size_t len,
                      uint64_t ack_seq)
{
    struct up_wconn *c = conn_alloc();
    char *rbuf = rbuf_new();
    int r = len > UP_WCONN_RBUF ? -E2BIG : c == NULL || rbuf == NULL ? -ENOMEM : 0;
    if (r == 0) {
        c->w = w;
        c->fd = fd;
        r = busy_new(c);
    }
    if (r < 0) {
        rbuf_free(rbuf, false);
        conn_dealloc(c);
        up_loop_close(w->loop, fd);
        return r;
    }
    c->id = id;
    c->rbuf = rbuf;
    if (len > 0) {
        memcpy(c->rbuf, prefix, len);
    }
    c->rlen = len;
    c->tx_kernel = -1;
    c->rx.cb = on_recv;
    c->tx.cb = on_send;
    c->timer.cb = on_timer;
    up_http_out_init(&c->out);
    c->rx_at = up_loop_now(w->loop);
    up_list_push_front(&w->conns, &c->link);
    w->nconns++;
    if (ack_seq > w->acked_upto) {
        /* Not ours until the master has our ACK: if we died before it
         * went, the master would give this connection to another worker,
         * and nothing may have been read from it or answered by then. */
        c->ack_seq = ack_seq;
        c->wait_ack = true;
        w->nwaiting++;
        return 0;
    }
    conn_run(c);
    return 0;
}
