/*
 * http: the worker's HTTP/1.1 server protocol engine. Bytes in, parsed
 * requests out; responses in, bytes out. It owns the request's memory and the
 * response's framing; it never does I/O, never blocks and never logs.
 *
 * One connection, as the glue drives it from its event loop:
 *
 *     up_http_parser_init(&c->parser, &limits);        once per connection
 *     up_http_parser_set_peer(&c->parser, "1.2.3.4:5");
 *     up_http_out_init(&c->out);
 *     up_http_res_init(&c->res);
 *     loop:
 *         r = up_http_feed(&c->parser, buf, len, &used);   keep buf[used..len)
 *         NEED_MORE         read more (all of buf was consumed)
 *         EXPECT_CONTINUE   queue UP_HTTP_CONTINUE, feed buf[used..len) again
 *         < 0               queue up_http_error_response(out,
 *                           up_http_error_status(r)), send it, close
 *         REQUEST           req = up_http_request(&c->parser);
 *                           up_http_res_start(&c->res, req, &c->out);
 *                           app->handle(req, &c->res);
 *                           if (!up_http_res_deferred(&c->res))
 *                               up_http_res_finish_default(&c->res);
 *         ... send from c->out (partial writes: up_http_out_consume) ...
 *         once up_http_res_done(&c->res):
 *             close after sending if up_http_res_must_close(&c->res);
 *             else up_http_request_done(&c->parser) and feed buf[used..len)
 *     at close: up_http_res_detach() if a response is still open (the app may
 *     finish it later), up_http_parser_free(), up_http_out_free(),
 *     up_http_res_free() once the response is done.
 *
 * Pipelining: a request's strings and body live until up_http_request_done();
 * its response may still be in the out queue (unsent) when the next request
 * is parsed, and the next response is queued after it, so order is kept.
 *
 * Strictness (the same rules as the master's core/head.c, decided there and
 * not by the build of llhttp linked in):
 *   - 400: bare LF, obs-fold, SP in field names, a request line other than
 *     `method SP target SP HTTP/D.D` (runs of SP, RTSP/ICE versions), a
 *     method that is not a token, a target with a control byte, SP, DEL,
 *     obs-text or `#`, `*` but for OPTIONS, an absolute-form target with an
 *     invalid authority (or userinfo), CONNECT without host:port, HTTP/1.1
 *     without Host, two Host fields or one whose value is not host[:port],
 *     duplicate or invalid Content-Length, Content-Length with
 *     Transfer-Encoding, Transfer-Encoding in HTTP/1.0, bad chunk sizes
 *     (more than 16 hex digits), a chunk extension outside RFC 9112 7.1.1's
 *     grammar (BWS, token, token or quoted-string value), chunk data not
 *     followed by CRLF;
 *   - 501: any Transfer-Encoding but one `chunked`;
 *   - 505: a major version other than 1, and HTTP/0.9 (HTTP/1.2 .. 1.9 are
 *     served as 1.1, RFC 9110 2.5);
 *   - 413: a body over max_body (from Content-Length as soon as the head is
 *     complete); chunk extension bytes count toward max_body;
 *   - 431: a head or trailer section over max_head, or more than
 *     max_headers fields.
 * Any method that is a token reaches the app (PURGE, M-SEARCH, ...).
 * After any error the connection must be closed (the framing can no longer
 * be trusted): the parser stays in the error. The client may still be
 * sending (a 413 body): read and drop its bytes for a moment before closing,
 * or the kernel resets the connection and the client may never see the
 * answer.
 * Trailer fields are checked and dropped. Upgrade and CONNECT requests are
 * served as plain requests and the connection closes after the response
 * (unless the app accepts a WebSocket handshake: see ws.h); a
 * 2xx to CONNECT goes out without Content-Length, Transfer-Encoding or body
 * (RFC 9110 9.3.6).
 */
#ifndef UP_HTTP_H
#define UP_HTTP_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "chunk.h"
#include "head.h"
#include "up/app.h"

/* ---- limits ---- */

struct up_http_limits {
    size_t max_head;    /* request line + fields, bytes; also each trailer section */
    size_t max_body;    /* decoded body bytes; more is 413 */
    size_t max_headers; /* header fields per request; more is 431 */
};

#define UP_HTTP_MAX_HEAD_DEFAULT UP_HEAD_MAX_DEFAULT
#define UP_HTTP_MAX_BODY_DEFAULT (1024u * 1024u)
#define UP_HTTP_MAX_HEADERS_DEFAULT 100u

/* What the glue writes when up_http_feed() says UP_HTTP_EXPECT_CONTINUE. */
#define UP_HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* ---- the request ---- */

struct up_http_field {
    uint32_t name;  /* offsets into the parser's arena */
    uint32_t value; /* */
};

/* The parsed request (app.h's opaque struct up_req). Read it through the
 * up_req_* functions; valid from UP_HTTP_REQUEST to up_http_request_done(). */
struct up_req {
    const char *arena; /* method, target, path, query and fields, NUL-terminated */
    uint32_t method, target, path, query;
    const struct up_http_field *fields;
    size_t nfields;
    const char *body; /* NUL-terminated; "" when empty */
    size_t body_len;
    uint8_t minor;
    bool head;       /* the method is HEAD */
    bool connect;    /* the method is CONNECT */
    bool keep_alive; /* the client allows another request on this connection */
    bool ws;         /* a WebSocket handshake, checked as head.h says */
};

/* ---- the parser ---- */

enum up_http_result {
    UP_HTTP_NEED_MORE = 0,       /* every byte given was consumed; feed more */
    UP_HTTP_REQUEST = 1,         /* a whole request (head and body) is ready */
    UP_HTTP_EXPECT_CONTINUE = 2, /* the head asked for 100-continue; body pending */
};

/* Everything private; embed it in the connection. */
struct up_http_parser {
    llhttp_t ll;
    struct up_http_limits limits;
    struct up_head_scan scan;
    struct up_head_rules rules;
    struct up_chunk_line chunk;   /* the chunk-size line being read */
    uint8_t phase;                /* enum http_phase in http.c */
    uint8_t pause;                /* why llhttp paused: enum http_pause in http.c */
    bool method_done;             /* llhttp has the method's stand-in */
    bool expect;                  /* `Expect: 100-continue` was seen */
    bool head_done;               /* on_headers_complete ran */
    int err;                      /* sticky error, or 0 */
    int minor;                    /* the version served: up_head_rules_version() */
    size_t ext_len;               /* chunk extension bytes, counted with the body */
    size_t section;               /* bytes of the current head or trailer section */
    char *arena;                  /* owned; reused from request to request */
    size_t arena_len;             /* */
    size_t arena_cap;             /* */
    size_t span;                  /* arena offset where the field being parsed starts */
    uint32_t name;                /* arena offset of the current field name */
    struct up_http_field *fields; /* owned, up to max_headers */
    size_t nfields, fields_cap;   /* */
    char *body;                   /* owned */
    size_t body_len, body_cap;    /* */
    char peer[64];
    /* Non-NULL: peer is not known yet; up_req_peer() asks it first. */
    void (*peer_fill)(void *ctx, char *buf, size_t cap);
    void *peer_ctx;
    struct up_req req;
};

/* Set up p for a new connection. limits may be NULL, and any 0 field in it
 * means the default. Allocates nothing yet. */
void up_http_parser_init(struct up_http_parser *p, const struct up_http_limits *limits);

/* Free what p owns. p may then be initialized again. */
void up_http_parser_free(struct up_http_parser *p);

/* The client address up_req_peer() returns ("127.0.0.1:51234"); truncated to
 * 63 bytes. NULL means unknown (""). */
void up_http_parser_set_peer(struct up_http_parser *p, const char *text);

/* The same, asked only when someone wants it: fill(ctx, buf, cap) writes the
 * address, NUL-terminated, the first time up_req_peer() or
 * up_http_parser_peer() runs. A connection whose app and access log never
 * look spares the getpeername() and the formatting. */
void up_http_parser_set_peer_source(struct up_http_parser *p,
                                    void (*fill)(void *ctx, char *buf, size_t cap), void *ctx);

/* The client address, asked now if it was not yet. */
const char *up_http_parser_peer(struct up_http_parser *p);

/* Parse data[0..len). Returns an enum up_http_result or an error; on
 * UP_HTTP_REQUEST and UP_HTTP_EXPECT_CONTINUE *ret_used says how much of data
 * was consumed: the rest (a pipelined request, the body) is the caller's to
 * feed again. On UP_HTTP_NEED_MORE everything was consumed (copied).
 * Errors: -EPROTO, -EMSGSIZE, -E2BIG, -EOPNOTSUPP, -EPROTONOSUPPORT as in
 * head.h, -ENOMEM, and -EBUSY when called between UP_HTTP_REQUEST and
 * up_http_request_done(). An error is sticky: every later call returns it. */
int up_http_feed(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used);

/* The request after UP_HTTP_REQUEST, until up_http_request_done(). */
struct up_req *up_http_request(struct up_http_parser *p);

/* The response to the request is finished (all bytes queued): forget the
 * request, reuse its memory, and be ready for the next one. */
void up_http_request_done(struct up_http_parser *p);

/* The status to answer for an error of up_http_feed(): 400, 413, 431, 501,
 * 505, or 500 (-ENOMEM, -EBUSY). */
int up_http_error_status(int err);

/* Whether the connection may carry another request after this one, as the
 * request alone decides: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only
 * with `Connection: keep-alive`; never after Upgrade or CONNECT. */
bool up_http_keep_alive(const struct up_req *req);

/* A request was read whole (head and body), and up_http_request_done() was
 * not called since. */
bool up_http_request_whole(const struct up_http_parser *p);

/* ---- the output queue ---- */

struct up_http_chunk;

/* The bytes waiting to be sent on a connection, in chunks. Appending never
 * moves bytes already queued, so a send in flight from them stays valid. */
struct up_http_out {
    struct up_http_chunk *head;  /* owned list, sent from head */
    struct up_http_chunk *tail;  /* appended at tail */
    struct up_http_chunk *spare; /* owned: an emptied chunk kept for reuse */
    size_t pending;              /* bytes queued, not yet consumed */
};

void up_http_out_init(struct up_http_out *out);
void up_http_out_free(struct up_http_out *out);

/* The same, and the pages of its chunks go back to the kernel: for a
 * connection that sits idle (nothing pending). */
void up_http_out_release(struct up_http_out *out);

/* The process's pool of chunks gives back the pages of its spare past
 * UP_BUFPOOL_KEPT (bufpool.h): a burst of answers leaves no memory behind.
 * For a timer. Returns how many went. */
size_t up_http_out_trim_pool(void);

/* Queue a copy of data[0..len). All or nothing: returns 0 or -ENOMEM. */
int up_http_out_append(struct up_http_out *out, const void *data, size_t len);

/* The first run of queued bytes (NULL and 0 when empty). */
const char *up_http_out_peek(const struct up_http_out *out, size_t *ret_len);

/* Fill up to max iovecs with the queued bytes, in order; returns how many. */
size_t up_http_out_iov(const struct up_http_out *out, struct iovec *iov, size_t max);

/* n bytes from the front were sent: drop them (n <= pending). */
void up_http_out_consume(struct up_http_out *out, size_t n);

static inline size_t up_http_out_pending(const struct up_http_out *out)
{
    return out->pending;
}

/* Queue a complete short response for status with a text body and
 * `Connection: close` (see up_head_error_response()). Returns 0 or -ENOMEM. */
int up_http_error_response(struct up_http_out *out, int status);

/* ---- the response ---- */

/* app.h's opaque struct up_res. The glue sets the three public fields after
 * up_http_res_init(); the rest is private.
 *
 * Beyond app.h: up_res_header() also returns -1 for a name that is not a
 * token or a value with control bytes (no field injection) and when out of
 * memory; up_res_status() ignores codes outside 100..999. */
struct up_ws;
struct up_res {
    /* Called after an up_res_* call (or up_http_res_finish_default()) queued
     * bytes or finished the response, also from inside the handler: the
     * glue should start sending if it is not already. May be NULL. */
    void (*on_output)(void *ctx);
    void *ctx;
    /* An IMF-fixdate (up_http_date()) sent as the Date field unless the app
     * set one; borrowed, NULL for none. */
    const char *date;
    /* Seconds of idle time the connection is kept for after a response,
     * sent as `Keep-Alive: timeout=N` on responses that keep it; 0: none. */
    unsigned keep_alive_s;
    /* The glue takes no WebSocket now (it drains): up_ws_accept() answers
     * 503. */
    bool no_upgrade;
    /* up_ws_accept() queued a 101: the connection carries this WebSocket
     * (ws.h) after the response. Owned until the glue takes it. */
    struct up_ws *ws;

    struct up_http_out *out; /* borrowed; NULL once detached */
    uint8_t state;           /* enum res_state in response.c */
    uint8_t minor;
    bool head_method;
    bool connect;     /* the request was CONNECT */
    bool keep_alive;  /* the request allows it */
    bool force_close; /* the glue wants the connection closed */
    bool close;       /* decided when the head was queued */
    bool chunked;     /* the body goes out in chunks */
    bool no_body;     /* HEAD, 1xx, 204, 304, 2xx to CONNECT: no body bytes */
    bool deferred;
    bool has_date;
    bool event_stream; /* streaming text/event-stream (server-sent events) */
    int status;
    uint64_t body_bytes; /* body bytes given (before chunked framing), for the access log */
    int err;             /* first failure to queue (-ENOMEM), or 0 */
    char *fields;        /* owned: the app's fields, "Name: value\r\n"... */
    size_t fields_len, fields_cap;
};

/* Once per connection (zeroes res). */
void up_http_res_init(struct up_res *res);

/* Free what res owns. */
void up_http_res_free(struct up_res *res);

/* Begin the response to req, queuing into out (borrowed, must outlive the
 * response or be detached). Keeps on_output, ctx and date. The previous
 * response must be done. */
void up_http_res_start(struct up_res *res, const struct up_req *req, struct up_http_out *out);

/* Finish the response as the handler left it: an empty body with
 * `Content-Length: 0` when nothing was sent, else the end of the stream
 * (the chunked terminator). Nothing if already done. */
void up_http_res_finish_default(struct up_res *res);

/* The handler called up_res_defer() and the response is not done yet. */
bool up_http_res_deferred(const struct up_res *res);

/* Every byte of the response is queued (not necessarily sent). */
bool up_http_res_done(const struct up_res *res);

/* The connection must close once the response is sent: the request asked,
 * HTTP/1.0 without keep-alive, a close-delimited body, a failure to queue,
 * or up_http_res_force_close(). */
bool up_http_res_must_close(const struct up_res *res);

/* Close the connection after this response (draining): sends
 * `Connection: close` if the head is not queued yet. */
void up_http_res_force_close(struct up_res *res);

/* -ENOMEM if some bytes of the response could not be queued (the
 * connection must be closed), else 0. */
int up_http_res_error(const struct up_res *res);

/* The connection is gone but the app may still finish this response: from
 * now on its bytes are dropped; on_output still runs once it is done, so the
 * glue can free what holds res. */
void up_http_res_detach(struct up_res *res);

/* Whether nothing of the response is queued yet (status and fields may
 * change). */
bool up_http_res_open(const struct up_res *res);

/* Drop the fields the app set. Only while open. */
void up_http_res_clear_fields(struct up_res *res);

/* The value of the first field the app set named lc (lower case), as a
 * span into the response (*ret_len bytes), or NULL. */
const char *up_http_res_field(const struct up_res *res, const char *lc, size_t *ret_len);

/* Queue `101 Switching Protocols` to a WebSocket handshake with the accept
 * value and the app's fields, and finish the response. On success res->ws
 * = ws, owned by res until the glue takes it. Returns 0, or -1 when res is
 * not open or out of memory (ws stays the caller's). */
int up_http_res_switch(struct up_res *res, const char *accept, struct up_ws *ws);

/* The head is queued and body pieces follow (up_res_write()). */
bool up_http_res_streaming(const struct up_res *res);

/* The runtime ends the stream for the app: with clean, the end of a
 * chunked body is queued after what is there; then res is detached (the
 * app's later writes are dropped, up_res_pending() is -1). */
void up_http_res_cut(struct up_res *res, bool clean);

/* The response streams server-sent events and its head is queued: a
 * long-lived response that a drain ends (app.h, up_app.drain). */
bool up_http_res_event_stream(const struct up_res *res);

/* Format t (seconds since the epoch) as an IMF-fixdate,
 * "Sun, 06 Nov 1994 08:49:37 GMT", into buf (at least UP_HTTP_DATE_LEN + 1
 * bytes). Cache it per second: formatting costs a gmtime_r(). */
#define UP_HTTP_DATE_LEN 29
void up_http_date(time_t t, char *buf);

#endif
