/*
 * up/app.h: the one header an app author needs.
 *
 * An app is a shared object that exports one symbol, `up_app`:
 *
 *     #include <up/app.h>
 *
 *     static void hello(struct up_req *req, struct up_res *res)
 *     {
 *         (void)req;
 *         up_res_header(res, "Content-Type", "text/plain");
 *         up_res_send(res, "Hello World", 11);
 *     }
 *
 *     UP_APP_EXPORT const struct up_app up_app = {
 *         .abi_version = UP_APP_ABI_VERSION,
 *         .name = "hello",
 *         .handle = hello,
 *     };
 *
 * Build it with `cc -shared -fPIC -I.../include app.c -o app.so`; the up_*
 * functions below are provided by up-worker when it loads the app.
 *
 * The worker is single-threaded and event driven: the handler runs on the
 * worker's loop, so it must not block for long. A handler that needs to wait
 * calls up_res_defer() and finishes the response later from a timer
 * (up_after()). Everything passed to the app (strings, the request, the
 * response) is valid until the response is finished, and not after. Data
 * the app passes in (header names and values, body bytes) is copied before
 * the call returns: the app may reuse or free it at once.
 */
#ifndef UP_APP_H
#define UP_APP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2 added up_app.drain; a worker still loads apps built for 1. */
#define UP_APP_ABI_VERSION 2u
#define UP_APP_EXPORT __attribute__((visibility("default")))

#pragma GCC visibility push(default)

struct up_req; /* a parsed request; opaque */
struct up_res; /* the response being built; opaque */

struct up_app {
    /* UP_APP_ABI_VERSION at build time; a worker refuses another version. */
    uint32_t abi_version;
    uint32_t reserved;
    /* For logs; may be NULL. */
    const char *name;
    /* Optional. Called once in each worker after loading, with the arguments
     * given after `--` on the up-run command line (argv[0] is the app path).
     * Return 0 on success; anything else fails the worker start, and a reload
     * that fails keeps the old code serving. */
    int (*init)(int argc, char **argv);
    /* Optional. Called once when the worker exits cleanly. */
    void (*fini)(void);
    /* Required. Called once per request, with the head and the whole body
     * already read (up to the body limit). */
    void (*handle)(struct up_req *req, struct up_res *res);
    /* Optional (ABI 2). Called once when this worker begins to drain (a
     * reload, a stop): it serves what it holds, and takes nothing new.
     * Long-lived connections are the app's to end first if it likes: end
     * open streams (up_res_end()), close WebSockets (up_ws_close()) with
     * a word to the client. What is still open after the grace
     * (--ws-drain-grace) is ended by the runtime: WebSockets get close
     * code 1012 (Service Restart; 1001 when the server stops), server-sent
     * event streams (Content-Type text/event-stream) their end, spread
     * over --close-spread so that the clients come back to the new code
     * a few at a time. Any other stream runs on to the drain deadline,
     * where it is cut (the client sees the body incomplete). */
    void (*drain)(void);
};

/* ---- the request ---- */

/* The method as sent: "GET", "POST", ... Any token reaches the app, also
 * one the runtime does not know ("PURGE", "M-SEARCH"): answer 501 (or 405)
 * to those the app does not implement. Methods are case-sensitive: "get" is
 * not "GET", and only "HEAD" gets a response without a body. */
const char *up_req_method(const struct up_req *req);
/* The request target as sent: "/path?query"; "http://host/path?query" in
 * absolute form; "host:port" for CONNECT; "*" for OPTIONS only. It never
 * holds a fragment ('#'), a control byte or non-ASCII: those are 400. */
const char *up_req_target(const struct up_req *req);
/* The target's path ("/" for "http://host") and what follows '?' ("" when
 * there is none); for an absolute-form target, without scheme and host. */
const char *up_req_path(const struct up_req *req);
const char *up_req_query(const struct up_req *req);
/* 0 for HTTP/1.0, 1 for HTTP/1.1 (and for 1.2 .. 1.9, served as 1.1). */
int up_req_minor_version(const struct up_req *req);
/* The first header named name (case-insensitive), or NULL.
 * "Host" is the request's one authority: an HTTP/1.1 request always has
 * one (possibly empty), valid as host[:port]; for an absolute-form target
 * ("GET http://example.com/x") it is the target's authority, which replaces
 * the value the client sent in the Host field (RFC 9112 3.2.2), and it is
 * there even for an HTTP/1.0 request that sent no Host field. The master's
 * routing sees the same value. */
const char *up_req_header(const struct up_req *req, const char *name);
/* Header i in the order received: 0 with *ret_name and *ret_value set, or -1 when
 * i is past the last one. */
int up_req_header_at(const struct up_req *req, size_t i, const char **ret_name,
                     const char **ret_value);
/* The body (chunked bodies arrive decoded); *ret_len gets its length. Never
 * NULL: an empty body is "". */
const char *up_req_body(const struct up_req *req, size_t *ret_len);
/* The client's address as text ("127.0.0.1:51234"), or "" if unknown. It
 * is asked of the socket the first time it is wanted: ask it while handling
 * the request (a client that reset before a deferred response reads ""). */
const char *up_req_peer(const struct up_req *req);

/* ---- the response ---- */

/* Set the status (default 200). Only before the first byte is written. */
void up_res_status(struct up_res *res, int status);
/* Add a header. Content-Length, Transfer-Encoding, Connection and Keep-Alive
 * are managed by the runtime and ignored here. Returns 0, or -1 after the
 * head went out. */
int up_res_header(struct up_res *res, const char *name, const char *value);
/* Send the whole body with a Content-Length and finish the response. */
void up_res_send(struct up_res *res, const void *body, size_t len);
/* Stream: write a piece of the body (chunked on HTTP/1.1). May be called
 * many times, also later from a timer after up_res_defer(). */
void up_res_write(struct up_res *res, const void *data, size_t len);
/* Finish a streamed or deferred response. */
void up_res_end(struct up_res *res);
/* Keep the response open after the handler returns; finish it later with
 * up_res_send() or up_res_end(). Without this, returning from the handler
 * finishes the response. */
void up_res_defer(struct up_res *res);
/* Back-pressure: how many bytes of output on this connection (this
 * response and any before it) still wait in the worker for the kernel to
 * take them, or -1 once the connection is gone (what is written then is
 * dropped; finish the response to free it). The worker stops reading new
 * requests from a connection while more than 64 KiB is queued, but it never
 * refuses what the app writes: a deferred handler that streams a large or
 * endless body should write its next piece only while this is small (say
 * under 64 KiB), and otherwise look again a little later from up_after().
 * A client that takes no byte for UP_SEND_TIMEOUT (default 60s) is
 * disconnected, and this then returns -1. */
long up_res_pending(const struct up_res *res);

/* ---- WebSocket (RFC 6455) ----
 *
 * A handler accepts a WebSocket handshake with up_ws_accept(); from then on
 * the connection carries messages, and the runtime does the framing:
 * fragments are reassembled into whole messages, text is checked to be
 * UTF-8, pings are answered, the closing handshake is kept, and an idle
 * connection is pinged (UP_WS_PING, default 30s) and closed when it stops
 * answering. A message over the body limit (UP_BODY_LIMIT, default 1 MiB)
 * closes the connection with 1009, a frame that breaks the protocol with
 * 1002, text that is not UTF-8 with 1007. A WebSocket is never handed
 * back to the master: a reload ends it as up_app.drain says. */

struct up_ws; /* an open WebSocket; opaque */

#define UP_WS_TEXT 1
#define UP_WS_BINARY 2

/* Sends and closes return 0 or one of these (nothing was queued). */
#define UP_WS_ERR_CLOSED (-1)  /* closing or closed: nothing more may be sent */
#define UP_WS_ERR_FULL (-2)    /* UP_WS_QUEUE_MAX bytes already wait for the client */
#define UP_WS_ERR_INVALID (-3) /* text that is not UTF-8; a close code or reason not allowed */

/* How much may wait for one client before a send is refused with
 * UP_WS_ERR_FULL. A client that takes nothing at all for UP_SEND_TIMEOUT
 * (default 60s) is disconnected (on_close gets 1006). */
#define UP_WS_QUEUE_MAX (1024 * 1024)

struct up_ws_callbacks {
    /* Optional: the handshake answer is queued; ws may send from now on. */
    void (*on_open)(struct up_ws *ws, void *ctx);
    /* Required: one whole message; type is UP_WS_TEXT (valid UTF-8) or
     * UP_WS_BINARY. data (len bytes; text has a NUL after it) is valid
     * for the call only. */
    void (*on_message)(struct up_ws *ws, void *ctx, int type, const void *data, size_t len);
    /* Optional, but an app that keeps ws anywhere needs it: the WebSocket
     * is over, and ws must not be used once this returns. Called exactly
     * once. code: the client's close code (1000, 1001, ...; 1005 when its
     * close frame had none), the code the runtime closed with (1002,
     * 1007, 1009, 1012, ...), or 1006 when the connection ended without a
     * closing handshake; reason is NUL-terminated, "" when none. */
    void (*on_close)(struct up_ws *ws, void *ctx, int code, const char *reason);
};

/* Accept req's WebSocket handshake: the 101 answer is queued, res is
 * finished (the handler returns), and the connection is a WebSocket whose
 * events go to cbs (borrowed: keep it alive, a static struct is best) with
 * ctx. To pick a subprotocol among those the client offers (see
 * up_ws_offered()), set it with up_res_header(res,
 * "Sec-WebSocket-Protocol", name) first. Returns 0, or -1 when refused,
 * with res answered and finished: 426 (with Sec-WebSocket-Version: 13) to
 * a request that is no WebSocket handshake or asks for another version,
 * 503 while this worker drains (rare: under up-run a handshake that
 * reaches a draining worker goes back to the master, and on to the new
 * code, before the handler sees it), 500 for a subprotocol the client did
 * not offer, or out of memory. */
int up_ws_accept(struct up_req *req, struct up_res *res, const struct up_ws_callbacks *cbs,
                 void *ctx);
/* 1 if the client offered subprotocol name in Sec-WebSocket-Protocol
 * (compared case-sensitively, as RFC 6455 has it), else 0. */
int up_ws_offered(const struct up_req *req, const char *name);
/* Queue one message: 0, or UP_WS_ERR_CLOSED, UP_WS_ERR_FULL, UP_WS_ERR_INVALID. The
 * data is copied. */
int up_ws_send_text(struct up_ws *ws, const char *text, size_t len);
int up_ws_send_binary(struct up_ws *ws, const void *data, size_t len);
/* Begin the closing handshake: code 1000..1003, 1007..1014 or 3000..4999,
 * reason at most 123 bytes of UTF-8 (may be NULL). on_close follows once
 * the client answered (or gave up). 0, or UP_WS_ERR_CLOSED, UP_WS_ERR_INVALID. */
int up_ws_close(struct up_ws *ws, int code, const char *reason);
/* Bytes queued for the client that the kernel has not taken yet, or -1
 * once the WebSocket is closed. */
long up_ws_pending(const struct up_ws *ws);

/* ---- the worker ---- */

/* Call fn(arg) once, ms milliseconds from now, on the worker's loop. Returns
 * 0, or -1 if out of memory. */
int up_after(unsigned ms, void (*fn)(void *arg), void *arg);
/* With `--ready=manual`: tell the master this worker may get connections.
 * Harmless otherwise. */
void up_ready(void);
/* This worker's generation (1 for the first one, +1 per reload); 0 when it
 * runs without a master. */
unsigned up_generation(void);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
