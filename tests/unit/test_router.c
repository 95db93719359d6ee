/*
 * router, alone: the middleware chain, the queue and its timeout, kick,
 * requeue and the try limit, stop and the error page, with fake workers
 * (the pick and send callbacks) and real pending connections on unix
 * socket pairs, handed back with a whole head so that the chain runs.
 */
#include <criterion/criterion.h>

#include "../lib/fdcount.h"
#include "../lib/testloop.h"
#include "pending.h"
#include "router.h"
#include "sticky.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GET "GET /p/q?x=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1; sid=abc\r\nX-Who: me\r\n\r\n"

struct rt {
    struct up_loop *loop;
    struct up_pendings set;
    struct up_router r;
    bool workers;     /* pick finds a worker */
    bool expected;    /* a worker is on its way */
    bool bounce;      /* send gives it straight back */
    int picks, sends; /* calls */
    struct up_pending *sent[16];
    int route_index; /* what the last pick saw */
    bool keyed;
    uint64_t key;
    int worker;     /* the fake worker, its address is the pointer */
    char order[16]; /* middleware calls, in order */
};

static void rt_ready(struct up_pendings *set, struct up_pending *c, const struct up_head *head)
{
    struct rt *t = set->ctx;
    up_router_ready(&t->r, c, head);
}

static void rt_freed(struct up_pendings *set)
{
    (void)set;
}

static const struct up_pending_cbs rt_pcbs = {.ready = rt_ready, .freed = rt_freed};

static void *rt_pick(void *ctx, const struct up_pending *c)
{
    struct rt *t = ctx;
    t->picks++;
    t->route_index = c->route_index;
    t->keyed = c->keyed;
    t->key = c->key;
    return t->workers ? &t->worker : NULL;
}

static void rt_send(void *ctx, void *worker, struct up_pending *c)
{
    struct rt *t = ctx;
    cr_assert_eq(worker, &t->worker);
    up_pending_sent(c, worker);
    if (t->sends < 16) {
        t->sent[t->sends] = c;
    }
    t->sends++;
    if (t->bounce) {
        up_pending_unsent(c);
        up_router_requeue(&t->r, c);
    }
}

static bool rt_any(void *ctx)
{
    return ((struct rt *)ctx)->workers;
}

static bool rt_expected(void *ctx)
{
    return ((struct rt *)ctx)->expected;
}

static const struct up_router_cbs rt_rcbs = {
    .pick = rt_pick, .send = rt_send, .any = rt_any, .expected = rt_expected};

static void rt_init(struct rt *t, uint64_t queue_ms)
{
    memset(t, 0, sizeof(*t));
    t->loop = up_test_new_loop(UP_BACKEND_EPOLL);
    t->expected = true;
    up_pendings_init(&t->set, t->loop, 16384, 5000, 64, &rt_pcbs, t);
    up_router_init(&t->r, t->loop, queue_ms, &rt_rcbs, t);
}

static void rt_fini(struct rt *t)
{
    for (int i = 0; i < t->sends && i < 16; i++) {
        if (t->sent[i] != NULL && t->sent[i]->state == UP_PENDING_SENT) {
            up_pending_acked(t->sent[i]);
        }
    }
    up_router_stop(&t->r);
    up_loop_drain(t->loop, 3000);
    cr_assert_eq(t->set.n, 0, "%zu connections left", t->set.n);
    up_pendings_fini(&t->set);
    up_loop_free(t->loop);
}

/* A connection handed back with bytes already read (prefix: a whole head,
 * or NULL: an idle one). Returns the client's end. */
static int rt_conn(struct rt *t, const char *prefix)
{
    int sv[2];
    up_test_pair(false, sv);
    up_pending_handed_back_take(&t->set, sv[0], prefix, prefix ? strlen(prefix) : 0, 0, 0);
    return sv[1];
}

/* Everything the client gets until the end (the master closes after its
 * answer; our shutdown lets its linger end). */
static int rt_read(struct rt *t, int fd, char *buf, int cap)
{
    shutdown(fd, SHUT_WR);
    int dummy = 0;
    up_test_run_for(t->loop, 300, &dummy, -1);
    return up_test_read_all(fd, buf, cap);
}

/* ---- middleware ---- */

static enum up_route mw_maintenance(void *ctx, const struct up_request *req,
                                    struct up_route_out *out)
{
    struct rt *t = ctx;
    strcat(t->order, "m");
    cr_assert_eq(req->listener, -1);
    out->status = 503;
    out->headers = "Retry-After: 30\r\n";
    out->body = "down for maintenance\n";
    out->body_len = strlen(out->body);
    return UP_ROUTE_ANSWER;
}

Test(router, middleware_answer_is_sent_and_closes, .timeout = 20)
{
    int before = up_test_fd_count();
    struct rt t;
    rt_init(&t, 5000);
    t.workers = true;
    cr_assert_eq(up_router_use(&t.r, mw_maintenance, &t), 0);
    int fd = rt_conn(&t, GET);
    char buf[1024];
    rt_read(&t, fd, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "\r\nRetry-After: 30\r\n"), "%s", buf);
    cr_assert_not_null(strstr(buf, "\r\nConnection: close\r\n"), "%s", buf);
    cr_assert_not_null(strstr(buf, "\r\n\r\ndown for maintenance\n"), "%s", buf);
    cr_assert_eq(t.sends, 0);
    cr_assert_eq(t.r.stats.answered, 1);
    close(fd);
    rt_fini(&t);
    cr_assert_eq(up_test_fd_count(), before);
}

static enum up_route mw_next(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    struct rt *t = ctx;
    (void)out;
    strcat(t->order, "n");
    /* What a middleware sees of the head. */
    cr_assert_eq(req->method_len, 3);
    cr_assert_eq(strncmp(req->path, "/p/q", req->path_len), 0);
    cr_assert_eq(req->path_len, 4);
    cr_assert_eq(req->query_len, 3);
    cr_assert_eq(strncmp(req->query, "x=1", 3), 0);
    const char *v;
    size_t n;
    cr_assert_eq(up_request_header(req, "x-who", &v, &n), 0);
    cr_assert_eq(strncmp(v, "me", n), 0);
    cr_assert_eq(up_request_cookie(req, "sid", &v, &n), 0);
    cr_assert_eq(strncmp(v, "abc", n), 0);
    cr_assert_eq(up_request_header(req, "nope", &v, &n), -ENOENT);
    return UP_ROUTE_NEXT;
}

static enum up_route mw_index(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)req;
    strcat(((struct rt *)ctx)->order, "i");
    out->worker = 1;
    return UP_ROUTE_WORKER;
}

static enum up_route mw_key(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)req;
    strcat(((struct rt *)ctx)->order, "k");
    out->key = 0xfeed;
    return UP_ROUTE_WORKER;
}

Test(router, chain_in_order_then_route_by_index_or_key, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    t.workers = true;
    cr_assert_eq(up_router_use(&t.r, mw_next, &t), 0);
    cr_assert_eq(up_router_use(&t.r, mw_next, &t), 0);
    cr_assert_eq(up_router_use(&t.r, mw_index, &t), 0);
    cr_assert_eq(up_router_use(&t.r, mw_key, &t), 0);
    int a = rt_conn(&t, GET);
    cr_assert_str_eq(t.order, "nni", "the chain ran %s", t.order);
    cr_assert_eq(t.sends, 1);
    cr_assert_eq(t.route_index, 1);
    cr_assert(!t.keyed);

    struct rt u;
    rt_init(&u, 5000);
    u.workers = true;
    cr_assert_eq(up_router_use(&u.r, mw_next, &u), 0);
    cr_assert_eq(up_router_use(&u.r, mw_key, &u), 0);
    int b = rt_conn(&u, GET);
    cr_assert_str_eq(u.order, "nk");
    cr_assert(u.keyed);
    cr_assert_eq(u.key, 0xfeed);
    cr_assert_eq(u.route_index, -1);

    /* Only NEXT: the built-in round-robin, nothing asked. A hand-back with
     * no whole head skips the chain. */
    struct rt v;
    rt_init(&v, 5000);
    v.workers = true;
    cr_assert_eq(up_router_use(&v.r, mw_next, &v), 0);
    int c = rt_conn(&v, GET);
    int d = rt_conn(&v, NULL);
    cr_assert_str_eq(v.order, "n");
    cr_assert_eq(v.sends, 2);
    cr_assert(!v.keyed && v.route_index == -1);
    close(a);
    close(b);
    close(c);
    close(d);
    rt_fini(&t);
    rt_fini(&u);
    rt_fini(&v);
}

static enum up_route mw_broken(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)ctx;
    (void)req;
    out->status = 200;
    out->headers = "X-Split: a\r\n\r\nHTTP/1.1 200 OK\r\n"; /* would be two responses */
    return UP_ROUTE_ANSWER;
}

Test(router, a_middleware_answer_that_would_split_is_500, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    cr_assert_eq(up_router_use(&t.r, mw_broken, &t), 0);
    int fd = rt_conn(&t, GET);
    char buf[1024];
    rt_read(&t, fd, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 500 ", 13) == 0, "%s", buf);
    cr_assert_null(strstr(buf, "X-Split"), "%s", buf);
    close(fd);
    rt_fini(&t);
}

/* ---- the queue ---- */

/* No worker: it waits --queue-timeout, then 503 with Retry-After; an idle
 * connection with nothing asked is closed instead. */
Test(router, no_worker_waits_then_503, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 150);
    int asked = rt_conn(&t, GET);
    int idle = rt_conn(&t, NULL);
    cr_assert_eq(t.r.nqueued, 2);
    int dummy = 0;
    up_test_run_for(t.loop, 100, &dummy, -1);
    cr_assert_eq(t.r.nqueued, 2, "left the queue before its timeout");
    char buf[1024];
    rt_read(&t, asked, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "\r\nRetry-After: 1\r\n"), "%s", buf);
    cr_assert_eq(rt_read(&t, idle, buf, sizeof(buf)), 0, "an idle one got: %s", buf);
    cr_assert_eq(t.r.stats.queue_timeouts, 2);
    cr_assert_eq(t.r.nqueued, 0);
    close(asked);
    close(idle);
    rt_fini(&t);
}

/* What waits goes as soon as a worker can take it (kick), in order. */
Test(router, kick_routes_what_waits, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    int a = rt_conn(&t, GET);
    int b = rt_conn(&t, GET);
    cr_assert_eq(t.sends, 0);
    up_router_kick(&t.r);
    cr_assert_eq(t.sends, 0, "kicked without a worker");
    t.workers = true;
    up_router_kick(&t.r);
    cr_assert_eq(t.sends, 2);
    cr_assert_eq(t.r.nqueued, 0);
    cr_assert_eq(t.sent[0]->id + 1, t.sent[1]->id, "out of order");
    close(a);
    close(b);
    rt_fini(&t);
}

/* A connection every worker gives straight back is routed again, at most
 * eight times, then answered 503 (or closed, if it asked nothing). */
Test(router, bounces_end_at_the_try_limit, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    t.workers = true;
    t.bounce = true;
    int asked = rt_conn(&t, GET);
    cr_assert_eq(t.sends, 8, "%d sends", t.sends);
    cr_assert_eq(t.r.stats.rerouted, 8);
    char buf[1024];
    rt_read(&t, asked, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
    int idle = rt_conn(&t, NULL);
    cr_assert_eq(t.sends, 16);
    cr_assert_eq(rt_read(&t, idle, buf, sizeof(buf)), 0, "%s", buf);
    t.sends = 0; /* nothing left with the fake worker */
    close(asked);
    close(idle);
    rt_fini(&t);
}

/* Stopping, an idle connection handed back (waiting, or coming after the
 * stop) is closed: no 503 for a request nobody made, which its client
 * would take for the answer to its next one. */
Test(router, stopping_closes_idle_hand_backs_without_an_answer, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    int waiting = rt_conn(&t, NULL); /* no worker: it waits in the queue */
    up_router_stop(&t.r);
    int late = rt_conn(&t, NULL);
    char buf[1024];
    for (int i = 0; i < 2; i++) {
        int fd = i == 0 ? waiting : late;
        cr_assert_eq(rt_read(&t, fd, buf, sizeof(buf)), 0, "%s one got: %s",
                     i == 0 ? "the waiting" : "the late", buf);
        close(fd);
    }
    rt_fini(&t);
}

/* Stopping: what waits, and what comes, gets 503. Nothing serving and
 * nothing on its way: the error page, in a 503. */
Test(router, stop_and_error_page, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    int a = rt_conn(&t, GET);
    up_router_stop(&t.r);
    int b = rt_conn(&t, GET);
    char buf[1024];
    rt_read(&t, a, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
    rt_read(&t, b, buf, sizeof(buf));
    cr_assert(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
    close(a);
    close(b);
    rt_fini(&t);

    struct rt u;
    rt_init(&u, 5000);
    int c = rt_conn(&u, GET);
    u.expected = false;
    up_router_error_page(&u.r, "the app failed: no up_app symbol");
    int d = rt_conn(&u, GET);
    rt_read(&u, c, buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "no up_app symbol"), "%s", buf);
    rt_read(&u, d, buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "no up_app symbol"), "%s", buf);
    close(c);
    close(d);
    rt_fini(&u);
}

/* What a middleware sees of the head: the accessors. */
static enum up_route mw_look(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)out;
    struct rt *t = ctx;
    strcat(t->order, "l");
    cr_assert_eq(req->method_len, 3);
    cr_assert_eq(memcmp(req->method, "GET", 3), 0);
    cr_assert_eq(req->target_len, 8);
    cr_assert_eq(memcmp(req->target, "/p/q?x=1", 8), 0);
    cr_assert_eq(req->path_len, 4);
    cr_assert_eq(memcmp(req->path, "/p/q", 4), 0);
    cr_assert_eq(req->query_len, 3);
    cr_assert_eq(memcmp(req->query, "x=1", 3), 0);
    cr_assert_eq(req->minor, 1);
    const char *v;
    size_t n;
    cr_assert_eq(up_request_header(req, "x-WHO", &v, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(memcmp(v, "me", 2), 0);
    cr_assert_eq(up_request_header(req, "host", &v, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(up_request_header(req, "X-Whom", &v, &n), -ENOENT);
    cr_assert_eq(up_request_cookie(req, "sid", &v, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(v, "abc", 3), 0);
    cr_assert_eq(up_request_cookie(req, "a", &v, &n), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(up_request_cookie(req, "si", &v, &n), -ENOENT);
    return UP_ROUTE_NEXT;
}

Test(router, a_middleware_sees_the_head, .timeout = 20)
{
    struct rt t;
    rt_init(&t, 5000);
    t.workers = true;
    cr_assert_eq(up_router_use(&t.r, mw_look, &t), 0);
    int a = rt_conn(&t, GET);
    cr_assert_str_eq(t.order, "l");
    cr_assert_eq(t.sends, 1);
    close(a);
    rt_fini(&t);
}

/* The sticky middleware keys a request by its cookie, its field, or its
 * address; without them it passes (round-robin). */
static void sticky_case(const char *spec, bool tcp, const char *head, bool keyed, uint64_t key)
{
    struct up_sticky s;
    char err[256];
    cr_assert_eq(up_sticky_parse(spec, &s, err, sizeof(err)), 0, "%s", err);
    struct rt t;
    rt_init(&t, 5000);
    t.workers = true;
    cr_assert_eq(up_router_use(&t.r, up_sticky_route, &s), 0);
    int sv[2];
    up_test_pair(tcp, sv);
    up_pending_handed_back_take(&t.set, sv[0], head, strlen(head), 0, 0);
    cr_assert_eq(t.sends, 1, "%s", spec);
    cr_assert_eq(t.keyed, keyed, "%s", spec);
    cr_assert_eq(t.route_index, -1);
    if (keyed) {
        cr_assert_eq(t.key, key, "%s", spec);
    }
    close(sv[1]);
    rt_fini(&t);
}

Test(router, sticky_keys_by_cookie_field_or_address, .timeout = 20)
{
    struct in_addr lo = {.s_addr = htonl(INADDR_LOOPBACK)};
    sticky_case("cookie:sid", false, GET, true, up_sticky_hash("abc", 3));
    sticky_case("cookie:nope", false, GET, false, 0);
    sticky_case("header:x-who", false, GET, true, up_sticky_hash("me", 2));
    sticky_case("header:X-Nope", false, GET, false, 0);
    sticky_case("ip", true, GET, true, up_sticky_hash(&lo, sizeof(lo)));
    sticky_case("ip", false, GET, false, 0); /* a unix socket: no address */
}
