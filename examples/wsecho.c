/*
 * wsecho: a WebSocket echo app, for the tests and as a small example.
 *
 *     /ws                 a WebSocket that echoes every message as it came
 *                         (text as text, binary as binary)
 *     /ws?hello=1         ... first sends "hello GEN PID"
 *     /ws?proto=NAME      ... picks subprotocol NAME if the client offers it
 *     /sse                server-sent events: "data: tick N" every 100 ms
 *     /stream             a plain chunked stream: a line every 100 ms
 *     anything else       200 "wsecho GEN PID"
 *
 * Text messages that are commands:
 *     close CODE REASON   the app closes with CODE and REASON
 *     flood               sends 64 KiB messages until the queue is full,
 *                         and again every 20 ms (a client that never reads)
 *
 * The drain hook logs "wsecho: drain N open" on stderr. Closes are logged
 * as "wsecho: closed code=N", refused sends as "wsecho: full".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

#define FLOOD_SIZE (64 * 1024)
#define TICK_MS 100

struct sock {
    struct up_ws *ws;
    struct sock *next, *prev;
    int flooding;
    int hello; /* say hello on open */
};

static struct sock socks = {.next = &socks, .prev = &socks};
static int nsocks;
static char flood_buf[FLOOD_SIZE];

static void on_open(struct up_ws *ws, void *ctx)
{
    struct sock *s = ctx;
    s->ws = ws;
    s->next = &socks;
    s->prev = socks.prev;
    socks.prev->next = s;
    socks.prev = s;
    nsocks++;
    if (s->hello) {
        char hello[64];
        int n = snprintf(hello, sizeof(hello), "hello %u %d", up_generation(), (int)getpid());
        up_ws_send_text(ws, hello, (size_t)n);
    }
}

static void flood(void *arg)
{
    struct sock *s = arg;
    if (s->ws == NULL) {
        free(s); /* closed while a flood was pending: the last reference */
        return;
    }
    int r;
    while ((r = up_ws_send_binary(s->ws, flood_buf, sizeof(flood_buf))) == 0) {
    }
    if (r == UP_WS_ERR_FULL) {
        fprintf(stderr, "wsecho: full (%ld queued)\n", up_ws_pending(s->ws));
        up_after(20, flood, s);
        return;
    }
    s->flooding = 0;
}

static void on_message(struct up_ws *ws, void *ctx, int type, const void *data, size_t len)
{
    struct sock *s = ctx;
    int code;
    char reason[128] = "";
    if (type == UP_WS_TEXT && sscanf(data, "close %d %127[^\n]", &code, reason) >= 1) {
        int r = up_ws_close(ws, code, reason);
        if (r != 0) {
            up_ws_send_text(ws, "close refused", 13);
        }
        return;
    }
    if (type == UP_WS_TEXT && strcmp(data, "flood") == 0 && !s->flooding) {
        s->flooding = 1;
        flood(s);
        return;
    }
    int r = type == UP_WS_TEXT ? up_ws_send_text(ws, data, len) : up_ws_send_binary(ws, data, len);
    if (r == UP_WS_ERR_FULL) {
        fprintf(stderr, "wsecho: full\n");
    }
}

static void on_close(struct up_ws *ws, void *ctx, int code, const char *reason)
{
    (void)ws;
    struct sock *s = ctx;
    fprintf(stderr, "wsecho: closed code=%d reason='%s'\n", code, reason);
    if (s->ws != NULL) {
        s->prev->next = s->next;
        s->next->prev = s->prev;
        nsocks--;
    }
    s->ws = NULL;
    if (!s->flooding) {
        free(s); /* else flood() frees it */
    }
}

static const struct up_ws_callbacks echo_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

/* The value of key in a "a=1&b=2" query, into buf; "" when absent. */
static const char *param(const char *query, const char *key, char *buf, size_t cap)
{
    size_t klen = strlen(key);
    buf[0] = '\0';
    for (const char *p = query; p != NULL && *p != '\0'; p = strchr(p, '&')) {
        p += *p == '&';
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(buf, cap, "%.*s", (int)strcspn(p + klen + 1, "&"), p + klen + 1);
        }
    }
    return buf;
}

/* ---- streams ---- */

struct stream {
    struct up_res *res;
    unsigned n;
    int sse;
};

static void tick(void *arg)
{
    struct stream *st = arg;
    if (up_res_pending(st->res) < 0) {
        up_res_end(st->res); /* the runtime ended it (a drain) or the client left */
        free(st);
        return;
    }
    char line[64];
    int n = snprintf(line, sizeof(line), st->sse ? "data: tick %u\n\n" : "line %u\n", st->n++);
    up_res_write(st->res, line, (size_t)n);
    up_after(TICK_MS, tick, st);
}

static void start_stream(struct up_res *res, int sse)
{
    struct stream *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        up_res_status(res, 500);
        up_res_send(res, "", 0);
        return;
    }
    st->res = res;
    st->sse = sse;
    up_res_header(res, "Content-Type", sse ? "text/event-stream" : "text/plain");
    up_res_defer(res);
    tick(st);
}

static void wsecho_handle(struct up_req *req, struct up_res *res)
{
    const char *path = up_req_path(req);
    char buf[64];
    if (strcmp(path, "/ws") == 0) {
        const char *proto = param(up_req_query(req), "proto", buf, sizeof(buf));
        if (proto[0] != '\0' && up_ws_offered(req, proto)) {
            up_res_header(res, "Sec-WebSocket-Protocol", proto);
        }
        struct sock *s = calloc(1, sizeof(*s));
        if (s != NULL) {
            s->hello = strcmp(param(up_req_query(req), "hello", buf, sizeof(buf)), "1") == 0;
        }
        if (s == NULL || up_ws_accept(req, res, &echo_cbs, s) < 0) {
            free(s);
        }
        return;
    }
    if (strcmp(path, "/sse") == 0 || strcmp(path, "/stream") == 0) {
        start_stream(res, strcmp(path, "/sse") == 0);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof(body), "wsecho %u %d\n", up_generation(), (int)getpid());
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, body, (size_t)n);
}

static void wsecho_drain(void)
{
    fprintf(stderr, "wsecho: drain %d open\n", nsocks);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "wsecho",
    .handle = wsecho_handle,
    .drain = wsecho_drain,
};
