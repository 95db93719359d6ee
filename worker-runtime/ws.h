/*
 * ws: one WebSocket's protocol engine (RFC 6455), server side. Bytes in,
 * whole messages and the closing handshake out to the app's callbacks
 * (app.h's struct up_ws_callbacks); the app's messages in, frames out into
 * an output queue. It never does I/O, never blocks, never logs and knows
 * nothing of connections, timers or workers: the glue (conn.c) feeds it
 * what it reads and sends what it queues.
 *
 * Framing is wslay's frame layer (wslay_frame_recv/_send: headers,
 * lengths, unmasking, the 125-byte limit and no fragments for control
 * frames). Everything above frames is here: client frames must be masked
 * and use no reserved bit or opcode, data frames form messages (fragments
 * reassembled, at most max_message bytes in all), text is UTF-8 as it
 * arrives, pings are answered, and the closing handshake is kept with the
 * close codes of the IANA registry (1012-1014 included).
 *
 *     OPEN ──our close queued (app, drain, timeout)──▶ CLOSING
 *       │                                                 │ the client's close
 *       ├──the client's close (echoed)───────────────────▶ CLOSED
 *       └──a protocol error (1002, 1007, 1009 queued)────▶ CLOSED
 *
 *   OPEN     messages both ways.
 *   CLOSING  our close frame is queued: nothing more is sent; what the
 *            client still sends is read (its messages delivered) until its
 *            close frame.
 *   CLOSED   the handshake is over (or failed): nothing in or out. The glue
 *            sends what is queued and closes the connection.
 *
 * on_close is reported once: on entering CLOSED, or from up_ws_end() (1006)
 * when the connection goes first. After it the app never hears of ws again.
 */
#ifndef UP_WORKER_WS_H
#define UP_WORKER_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "up/app.h"

enum up_ws_state {
    UP_WS_OPEN,
    UP_WS_CLOSING,
    UP_WS_CLOSED,
};

/* UTF-8 checked a byte at a time, so that a message split anywhere (also
 * inside a character) is judged as a whole: the bytes still expected and
 * the range the next one must be in (overlongs, surrogates and code points
 * past U+10FFFF are refused at the byte that makes them so). */
struct up_utf8 {
    uint8_t need;
    uint8_t lo, hi;
};

struct wslay_frame_context;

struct up_ws {
    struct wslay_frame_context *fr; /* owned */
    enum up_ws_state state;
    const struct up_ws_callbacks *cbs; /* borrowed, the app's */
    void *ctx;                         /* the app's */
    struct up_http_out *out;           /* borrowed: frames go here; NULL until attached */
    size_t max_message;
    /* Bytes were queued outside up_ws_feed() (the app sent from a timer):
     * the glue should send. */
    void (*on_output)(void *owner);
    void *owner;
    bool in_feed; /* inside up_ws_feed(): the glue sends afterwards anyway */
    bool broken;  /* out of memory queuing a frame: the framing is lost */

    const char *in; /* being fed: what the recv callback hands wslay */
    size_t in_len;  /* */

    /* The frame being received. */
    bool in_frame;
    uint8_t op;
    bool fin;
    uint64_t frame_len, frame_off;
    /* The data message being reassembled (op TEXT or BINARY; 0: none). */
    uint8_t msg_op;
    char *msg; /* owned, msg_cap bytes (one more than the payload, for a NUL) */
    size_t msg_len, msg_cap;
    struct up_utf8 utf8;
    uint8_t ctl[125]; /* a control frame's payload */
    size_t ctl_len;

    bool reported;       /* on_close ran */
    int close_code;      /* what on_close reports */
    char close_why[124]; /* */
};

/* A new engine with the app's callbacks (cbs->on_message set). Returns 0 and
 * *ret, or -ENOMEM. */
int up_ws_new(const struct up_ws_callbacks *cbs, void *ctx, struct up_ws **ret);

/* Frames go to out (borrowed until up_ws_free()), messages are at most
 * max_message bytes; on_output(owner) is how a send outside a feed says
 * there is something to send. */
void up_ws_attach(struct up_ws *ws, struct up_http_out *out, size_t max_message,
                  void (*on_output)(void *owner), void *owner);

/* Tell the app the WebSocket is open (on_open). */
void up_ws_open(struct up_ws *ws);

/* Parse data[0..len) (all of it is consumed; what ends mid-frame waits in
 * wslay for the next call) and act on it: messages to the app, pongs and
 * close frames queued. Returns 0, or -ENOMEM (up_ws_broken() then). */
int up_ws_feed(struct up_ws *ws, const char *data, size_t len);

/* Runtime-initiated close: code (1001, 1011, 1012 ...) and reason, as
 * up_ws_close() but not limited to the codes an app may send. Nothing if
 * ws is not OPEN. */
void up_ws_go_away(struct up_ws *ws, int code, const char *reason);

/* Queue a ping (the glue's idle check). */
void up_ws_ping(struct up_ws *ws);

/* The connection is gone or being closed: report on_close now if it was
 * not (1006: no closing handshake), and accept nothing more. */
void up_ws_end(struct up_ws *ws);

/* Whether more input is wanted (not CLOSED). */
bool up_ws_wants_read(const struct up_ws *ws);

/* Whether a frame could not be queued: the connection must be dropped. */
bool up_ws_broken(const struct up_ws *ws);

void up_ws_free(struct up_ws *ws);

const char *up_ws_state_name(enum up_ws_state s);

/* ---- UTF-8, also for the handshake and the glue ---- */

/* Feed data[0..len): false at the first byte that cannot be UTF-8 (u is
 * then not to be used again). */
bool up_utf8_step(struct up_utf8 *u, const uint8_t *data, size_t len);

/* Whether data[0..len) is whole, valid UTF-8. */
bool up_utf8_valid(const void *data, size_t len);

#endif
