/*
 * router: middleware, queue, pick, requeue, try count and 503. See router.h.
 */
#include "router.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A connection routed this many times without a worker keeping it is given
 * up (503, or closed if it asked nothing) rather than passed around
 * forever. Only bounces count: a connection a worker took in starts afresh
 * when it comes back. */
#define MAX_TRIES 8
/* The longest answer a middleware may give (head and body). */
#define MAX_ANSWER (64 * 1024)

static void route(struct up_router *r, struct up_pending *c);
static void on_queue_timeout(struct up_loop *loop, struct up_timer *t);

void up_router_init(struct up_router *r, struct up_loop *loop, uint64_t queue_timeout_ms,
                    const struct up_router_cbs *cbs, void *ctx)
{
    *r = (struct up_router){
        .loop = loop,
        .cbs = cbs,
        .ctx = ctx,
        .queue_timeout_ms = queue_timeout_ms,
        .rl = UP_RATELIMIT_INIT(10000, 5),
    };
    up_list_init(&r->queue);
}

int up_router_use(struct up_router *r, up_middleware_fn fn, void *ctx)
{
    if (r->nmw == UP_ROUTER_MAX_MIDDLEWARE) {
        return -ENOSPC;
    }
    r->mw[r->nmw].fn = fn;
    r->mw[r->nmw].ctx = ctx;
    r->nmw++;
    return 0;
}

/* ---- the queue of connections waiting for a worker ---- */

/* Each one in it has its owner timer armed for the queue timeout. The wait
 * counts from the first time in the queue: going round (no worker, back to
 * the tail) does not restart it. */
static void queue_push(struct up_router *r, struct up_pending *c)
{
    c->queued_by = r;
    up_list_push_back(&r->queue, &c->link);
    r->nqueued++;
    if (c->queued_at == 0) {
        c->queued_at = up_loop_now(r->loop) + 1;
    }
    uint64_t waited = up_loop_now(r->loop) + 1 - c->queued_at;
    c->owner_timer.cb = on_queue_timeout;
    up_timer_start(r->loop, &c->owner_timer,
                   waited < r->queue_timeout_ms ? r->queue_timeout_ms - waited : 0);
}

static void queue_remove(struct up_router *r, struct up_pending *c)
{
    c->queued_by = NULL;
    up_list_remove(&c->link);
    r->nqueued--;
    up_timer_stop(r->loop, &c->owner_timer);
}

static struct up_pending *queue_pop(struct up_router *r)
{
    struct up_list *n = up_list_first(&r->queue);
    if (n == NULL) {
        return NULL;
    }
    struct up_pending *c = up_container_of(n, struct up_pending, link);
    queue_remove(r, c);
    return c;
}

/* A connection that cannot be served: 503 with Retry-After if it asked
 * something, else (an idle hand-back) a graceful close: an answer nobody
 * asked for would be taken for the answer to its next request. */
static void give_up(struct up_pending *c, const char *detail)
{
    if (up_pending_has_request(c)) {
        up_pending_answer(c, 503, detail);
    } else {
        up_pending_close_gracefully(c);
    }
}

static void on_queue_timeout(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_pending *c = up_container_of(t, struct up_pending, owner_timer);
    struct up_router *rt = c->queued_by;
    queue_remove(rt, c);
    rt->stats.queue_timeouts++;
    unsigned long long held = 0;
    bool asked = up_pending_has_request(c);
    if (up_ratelimit_ok(&rt->rl, up_loop_now(rt->loop), &held)) {
        up_log(UP_LOG_WARN,
               "conn id=%llu: no worker could take it within %llu ms (--queue-timeout), %s "
               "(%llu more like it not logged)",
               (unsigned long long)c->id, (unsigned long long)rt->queue_timeout_ms,
               asked ? "answering 503" : "closing it (idle, nothing asked)", held);
    }
    give_up(c, NULL);
}

/* ---- routing ---- */

static void route(struct up_router *r, struct up_pending *c)
{
    if (r->stopping) {
        /* A request gets its 503; a connection handed back idle (its
         * worker drained as we stopped) is closed, not sent an answer to
         * a request nobody made. */
        give_up(c, NULL);
        return;
    }
    if (c->tries >= MAX_TRIES) {
        up_log(UP_LOG_WARN, "conn id=%llu: no worker kept it after %u tries, %s",
               (unsigned long long)c->id, c->tries,
               up_pending_has_request(c) ? "answering 503" : "closing it (idle, nothing asked)");
        give_up(c, NULL);
        return;
    }
    void *w = r->cbs->pick(r->ctx, c);
    if (w != NULL) {
        c->tries++;
        r->cbs->send(r->ctx, w, c);
        return;
    }
    if (r->error_page != NULL && !r->cbs->expected(r->ctx)) {
        /* No generation serves and none is starting (the app failed in
         * watch mode): say why instead of hanging. */
        up_pending_answer(c, 503, r->error_page);
        return;
    }
    queue_push(r, c); /* the wait: bounded by the queue timeout and the pending cap */
}

void up_router_kick(struct up_router *r)
{
    /* Route at most what is queued now: a connection that finds no worker
     * goes back to the tail and must not be retried in this pass. */
    size_t n = r->nqueued;
    while (n-- > 0 && r->cbs->any(r->ctx)) {
        struct up_pending *c = queue_pop(r);
        if (c == NULL) {
            break;
        }
        route(r, c);
    }
}

void up_router_requeue(struct up_router *r, struct up_pending *c)
{
    r->stats.rerouted++;
    route(r, c);
}

void up_router_stop(struct up_router *r)
{
    r->stopping = true;
    struct up_pending *c;
    while ((c = queue_pop(r)) != NULL) {
        give_up(c, NULL);
    }
}

void up_router_error_page(struct up_router *r, const char *page)
{
    r->error_page = page;
    if (page == NULL) {
        return;
    }
    size_t n = r->nqueued;
    struct up_pending *c;
    while (n-- > 0 && (c = queue_pop(r)) != NULL) {
        route(r, c); /* each one now gets the page */
    }
}

/* ---- middleware ---- */

/* What up_request.priv points to. */
struct request_priv {
    const struct up_head *head;
    int fd;
    bool peer_asked;
    socklen_t peer_len;
    struct sockaddr_storage peer;
};

int up_request_header(const struct up_request *r, const char *name, const char **ret_value,
                      size_t *ret_len)
{
    const struct request_priv *p = r->priv;
    return up_head_header(p->head, name, ret_value, ret_len);
}

int up_request_cookie(const struct up_request *r, const char *name, const char **ret_value,
                      size_t *ret_len)
{
    const struct request_priv *p = r->priv;
    return up_head_cookie(p->head, name, ret_value, ret_len);
}

socklen_t up_request_peer(const struct up_request *r, const struct sockaddr **ret_addr)
{
    struct request_priv *p = (struct request_priv *)r->priv;
    if (!p->peer_asked) {
        p->peer_asked = true;
        p->peer_len = sizeof(p->peer);
        if (getpeername(p->fd, (struct sockaddr *)&p->peer, &p->peer_len) < 0) {
            p->peer_len = 0;
        }
    }
    *ret_addr = (const struct sockaddr *)&p->peer;
    return p->peer_len;
}

/* Path and query of a request target: origin-form "/p?q", absolute-form
 * "http://h/p?q" (its path; "/" when it has none), or as is ("*", the
 * authority of a CONNECT). */
static void split_target(struct up_request *req)
{
    const char *t = req->target;
    size_t n = req->target_len;
    const char *scheme_end = n > 0 && t[0] != '/' ? memchr(t, ':', n) : NULL;
    if (scheme_end != NULL && (size_t)(scheme_end - t) + 3 <= n && scheme_end[1] == '/' &&
        scheme_end[2] == '/') {
        const char *auth = scheme_end + 3;
        const char *slash = memchr(auth, '/', n - (size_t)(auth - t));
        const char *qmark = memchr(auth, '?', n - (size_t)(auth - t));
        const char *start = slash != NULL && (qmark == NULL || slash < qmark) ? slash : NULL;
        if (start == NULL) {
            req->path = "/";
            req->path_len = 1;
            req->query = qmark != NULL ? qmark + 1 : "";
            req->query_len = qmark != NULL ? n - (size_t)(qmark + 1 - t) : 0;
            return;
        }
        n -= (size_t)(start - t);
        t = start;
    }
    const char *q = memchr(t, '?', n);
    req->path = t;
    req->path_len = q != NULL ? (size_t)(q - t) : n;
    req->query = q != NULL ? q + 1 : "";
    req->query_len = q != NULL ? n - (size_t)(q + 1 - t) : 0;
}

/* A middleware's answer, as a whole response. Returns 0, or -EINVAL for
 * header lines that would break the response (left for the log). */
static int build_answer(const struct up_route_out *out, char **ret, size_t *ret_len)
{
    const char *headers = out->headers != NULL ? out->headers : "";
    size_t hlen = strlen(headers);
    if ((hlen > 0 && (hlen < 2 || strcmp(headers + hlen - 2, "\r\n") != 0)) ||
        strstr(headers, "\r\n\r\n") != NULL || out->status < 100 || out->status > 599) {
        return -EINVAL;
    }
    bool typed = strcasestr(headers, "Content-Type:") != NULL;
    size_t body = out->body != NULL ? out->body_len : 0;
    size_t cap = 256 + hlen + body;
    if (cap > MAX_ANSWER) {
        return -EINVAL;
    }
    char *buf = malloc(cap);
    if (buf == NULL) {
        return -ENOMEM;
    }
    int n = snprintf(
        buf, cap, "HTTP/1.1 %d %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
        out->status, up_head_reason(out->status),
        typed || body == 0 ? "" : "Content-Type: text/plain; charset=utf-8\r\n", body, headers);
    if (n < 0 || (size_t)n + body > cap) {
        free(buf);
        return -EINVAL;
    }
    if (body > 0) {
        memcpy(buf + n, out->body, body);
    }
    *ret = buf;
    *ret_len = (size_t)n + body;
    return 0;
}

/* Run the chain on c's head. Returns true when c was answered. */
static bool run_chain(struct up_router *r, struct up_pending *c, const struct up_head *head)
{
    struct request_priv priv = {.head = head, .fd = c->fd};
    struct up_request req = {
        .method = head->method,
        .method_len = head->method_len,
        .target = head->target,
        .target_len = head->target_len,
        .minor = head->minor,
        .listener = c->listener,
        .priv = &priv,
    };
    split_target(&req);
    for (int i = 0; i < r->nmw; i++) {
        struct up_route_out out = {.worker = -1};
        switch (r->mw[i].fn(r->mw[i].ctx, &req, &out)) {
        case UP_ROUTE_NEXT:
            continue;
        case UP_ROUTE_WORKER:
            c->route_index = out.worker;
            c->keyed = out.worker < 0;
            c->key = out.key;
            return false;
        case UP_ROUTE_ANSWER: {
            char *bytes = NULL;
            size_t len = 0;
            int e = build_answer(&out, &bytes, &len);
            if (e < 0) {
                up_log(UP_LOG_ERR,
                       "middleware %d answered %d with header lines that would break the "
                       "response (each must end in CRLF, no empty line), answering 500",
                       i, out.status);
                up_pending_answer(c, 500, NULL);
            } else {
                up_pending_answer_raw(c, bytes, len);
                free(bytes);
            }
            r->stats.answered++;
            return true;
        }
        }
    }
    return false;
}

void up_router_ready(struct up_router *r, struct up_pending *c, const struct up_head *head)
{
    if (head != NULL && r->nmw > 0 && !r->stopping && run_chain(r, c, head)) {
        return;
    }
    route(r, c);
}
