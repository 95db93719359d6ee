/*
 * libup middleware: what decides, for each new connection, by its first
 * request head, where it goes: up_server_use(). Part of <up/server.h>; the
 * request's accessors are the router's (core/master/router.c).
 */
#ifndef UP_MIDDLEWARE_H
#define UP_MIDDLEWARE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The request head, as the master peeked it: spans into a buffer that is
 * valid during the middleware call only (copy what you keep). */
struct up_request {
    const char *method; /* "GET" */
    size_t method_len;
    const char *target; /* "/a/b?c" as sent */
    size_t target_len;
    const char *path; /* "/a/b" (for an absolute-form target, its path) */
    size_t path_len;
    const char *query; /* "c", without the '?'; length 0 when none */
    size_t query_len;
    int minor;        /* 0: HTTP/1.0, 1: HTTP/1.1 */
    int listener;     /* which up_server_listen*() it came in on, from 0; -1: a
                       * connection a draining worker handed back */
    const void *priv; /* the library's */
};

/* The value of the first header field name (case-insensitive) as a span,
 * or of a cookie: 0, or -ENOENT. "Host" is the request's authority (the
 * target's for an absolute-form target). */
int up_request_header(const struct up_request *r, const char *name, const char **ret_value,
                      size_t *ret_len);
int up_request_cookie(const struct up_request *r, const char *name, const char **ret_value,
                      size_t *ret_len);

/* The client's address (getpeername(), asked the first time). Returns its
 * length, 0 if unknown; *ret_addr points into storage valid during the
 * call. */
socklen_t up_request_peer(const struct up_request *r, const struct sockaddr **ret_addr);

enum up_route {
    UP_ROUTE_NEXT = 0, /* not mine: the next middleware decides (the last,
                        * built in, is round-robin) */
    UP_ROUTE_WORKER,   /* to a worker of the serving generation: by index
                        * (out->worker >= 0) or by key (out->worker < 0,
                        * out->key: the same key goes to the same worker) */
    UP_ROUTE_ANSWER,   /* answer it here: out->status, out->headers, out->body;
                        * then the connection closes gracefully */
};

struct up_route_out {
    /* UP_ROUTE_WORKER */
    int worker;   /* its index in the generation (0 .. workers-1), or -1 */
    uint64_t key; /* with worker -1: hashed over the workers (rendezvous) */
    /* UP_ROUTE_ANSWER */
    int status;          /* 200..599 */
    const char *headers; /* extra header lines, each ending in "\r\n", or NULL */
    const char *body;    /* or NULL */
    size_t body_len;
};

/* A middleware: decides for one connection by its first request head. It
 * runs on the server's loop, for every new connection: it must not block
 * and should be quick. out is zeroed before each call; the strings it
 * points to must stay valid until the call returns (they are copied).
 * If a worker asked for by index or key cannot take the connection now,
 * another worker of the generation does: routing never waits for one
 * worker. */
typedef enum up_route (*up_middleware_fn)(void *ctx, const struct up_request *req,
                                          struct up_route_out *out);

#ifdef __cplusplus
}
#endif

#endif
