/*
 * asrv: a tiny answer server on the master's loop. A client connects, sends
 * one request (a command line, or an HTTP GET), gets one answer, and the
 * connection closes. The control socket and the metrics endpoint are both
 * this.
 *
 * An answer may also come later (a reload's outcome): the owner defers it
 * and replies by the request's id; meanwhile the client is watched, and
 * one that hangs up is freed (a reply to it finds nobody: -ENOENT).
 *
 * Bounded: a request is at most ASRV_BUF - 1 bytes and must arrive within
 * ASRV_TIMEOUT_MS; at most ASRV_MAX_CLIENTS are served at once (more are
 * closed at accept), waiting ones included. Never blocks; never logs except
 * a refused client.
 */
#ifndef UP_ASRV_H
#define UP_ASRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#define UP_ASRV_BUF 65536

/* What an answer function returns to answer later, with up_asrv_reply(). */
#define UP_ASRV_LATER ((size_t)-1)

struct up_asrv;

/* Is the request in buf[0..len) complete? */
typedef bool (*up_asrv_complete_fn)(const char *buf, size_t len);
/* Answer the request in buf[0..len) (NUL-terminated) by writing the answer
 * into buf (cap bytes) and returning its length, or return UP_ASRV_LATER
 * and reply to id later. */
typedef size_t (*up_asrv_answer_fn)(void *ctx, uint64_t id, char *buf, size_t len, size_t cap);

/* Serve on the listening socket lfd (taken: closed by up_asrv_close(), or
 * here on failure). same_uid: refuse unix peers of another user (root is
 * allowed). Returns 0 with *ret set, or -errno. */
int up_asrv_open_take(struct up_loop *loop, int lfd, bool same_uid, up_asrv_complete_fn complete,
                      up_asrv_answer_fn answer, void *ctx, struct up_asrv **ret);

/* The deferred answer to request id: text (len bytes, cut at UP_ASRV_BUF),
 * then the connection closes. 0, or -ENOENT when that client is gone. */
int up_asrv_reply(struct up_asrv *s, uint64_t id, const char *text, size_t len);

/* The listening socket (still owned here), to pass to a new master. */
int up_asrv_fd(const struct up_asrv *s);

/* Stop taking new clients, or take them again; those connected go on. */
void up_asrv_accepting(struct up_asrv *s, bool on);

/* End every client and close the socket (running the loop until their ops
 * are done). NULL is fine. */
void up_asrv_close(struct up_asrv *s);

#endif
