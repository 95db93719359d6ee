/*
 * ws: the WebSocket engine. See ws.h for the states.
 */
#include "ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

/* A reassembly buffer larger than this is freed after its message, so that
 * an idle WebSocket does not keep a large message's memory. */
#define WS_MSG_KEEP (64u * 1024u)

/* ---- UTF-8 ---- */

/* RFC 3629 section 4: the lead byte fixes how many continuation bytes
 * follow and the range of the first of them (which is what rules out
 * overlongs, surrogates and code points past U+10FFFF). */
static bool utf8_lead(struct up_utf8 *u, uint8_t c)
{
    u->lo = 0x80;
    u->hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        u->need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        u->need = 2;
        u->lo = c == 0xe0 ? 0xa0 : 0x80;
        u->hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        u->need = 3;
        u->lo = c == 0xf0 ? 0x90 : 0x80;
        u->hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return false;
    }
    return true;
}

bool up_utf8_step(struct up_utf8 *u, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        if (u->need == 0) {
            if (c >= 0x80 && !utf8_lead(u, c)) {
                return false;
            }
        } else if (c < u->lo || c > u->hi) {
            return false;
        } else {
            u->need--;
            u->lo = 0x80;
            u->hi = 0xbf;
        }
    }
    return true;
}

bool up_utf8_valid(const void *data, size_t len)
{
    struct up_utf8 u = {0};
    return up_utf8_step(&u, data, len) && u.need == 0;
}

/* ---- states ---- */

const char *up_ws_state_name(enum up_ws_state s)
{
    switch (s) {
    case UP_WS_OPEN:
        return "open";
    case UP_WS_CLOSING:
        return "closing";
    case UP_WS_CLOSED:
        return "closed";
    }
    return "?";
}

static void set_state(struct up_ws *ws, enum up_ws_state to)
{
    /* allowed[from][to]: the transitions drawn in ws.h. */
    static const bool allowed[3][3] = {
        [UP_WS_OPEN] = {[UP_WS_CLOSING] = true, [UP_WS_CLOSED] = true},
        [UP_WS_CLOSING] = {[UP_WS_CLOSED] = true},
    };
    if (!allowed[ws->state][to]) {
        abort(); /* a bug here, not the client's doing */
    }
    ws->state = to;
}

/* on_close, once. The app may not use ws after it, so nothing it could
 * still call may reach the app again: the state is CLOSED first. */
static void report(struct up_ws *ws, int code, const char *why, size_t why_len)
{
    if (ws->state != UP_WS_CLOSED) {
        set_state(ws, UP_WS_CLOSED);
    }
    if (ws->reported) {
        return;
    }
    ws->reported = true;
    ws->close_code = code;
    size_t n = why_len < sizeof(ws->close_why) - 1 ? why_len : sizeof(ws->close_why) - 1;
    memcpy(ws->close_why, why, n);
    ws->close_why[n] = '\0';
    if (ws->cbs->on_close != NULL) {
        ws->cbs->on_close(ws, ws->ctx, code, ws->close_why);
    }
}

/* ---- wslay's frame layer ---- */

/* wslay pulls input through this: what up_ws_feed() was given. Nothing
 * left is "would block" (a 0 return) to wslay. */
static ssize_t recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct up_ws *ws = user;
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

/* The output queue takes a frame whole (all or nothing), so that a send
 * never stops half way and wslay never keeps a frame of its own. */
static ssize_t send_cb(const uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    struct up_ws *ws = user;
    if (ws->out == NULL || up_http_out_append(ws->out, data, len) < 0) {
        ws->broken = true;
        return WSLAY_ERR_WOULDBLOCK;
    }
    return (ssize_t)len;
}

/* Only a client masks what it sends. */
static int genmask_cb(uint8_t *buf, size_t len, void *user)
{
    (void)buf;
    (void)len;
    (void)user;
    return -1;
}

static void notify(struct up_ws *ws)
{
    if (!ws->in_feed && ws->on_output != NULL) {
        ws->on_output(ws->owner);
    }
}

/* One whole frame into the output queue. Returns 0 or -ENOMEM. */
static int queue_frame(struct up_ws *ws, uint8_t op, const void *data, size_t len)
{
    struct wslay_frame_iocb io = {
        .fin = 1,
        .opcode = op,
        .payload_length = len,
        .data = data,
        .data_length = len,
    };
    if (ws->broken || wslay_frame_send(ws->fr, &io) < 0 || ws->broken) {
        ws->broken = true;
        return -ENOMEM;
    }
    return 0;
}

static void queue_close(struct up_ws *ws, int code, const char *why, size_t why_len)
{
    uint8_t p[125];
    size_t n = 0;
    if (code != 1005) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = why_len < sizeof(p) - 2 ? why_len : sizeof(p) - 2;
        memcpy(p + 2, why, n);
        n += 2;
    }
    (void)queue_frame(ws, WSLAY_CONNECTION_CLOSE, p, n);
}

/* _Fail the WebSocket Connection_ (RFC 6455 7.1.7): our close with code,
 * then nothing more in or out. */
static void fail(struct up_ws *ws, int code)
{
    if (ws->state == UP_WS_OPEN) {
        queue_close(ws, code, "", 0);
    }
    report(ws, code, "", 0);
}

/* ---- receiving ---- */

/* Codes a close frame may carry (RFC 6455 7.4, and 1012-1014 from the IANA
 * registry); 1004-1006 and 1015 never go on the wire. */
static bool code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

static void on_close_frame(struct up_ws *ws)
{
    int code = 1005;
    const char *why = "";
    size_t why_len = 0;
    if (ws->ctl_len == 1) {
        fail(ws, 1002);
        return;
    }
    if (ws->ctl_len >= 2) {
        code = (ws->ctl[0] << 8) | ws->ctl[1];
        why = (const char *)ws->ctl + 2;
        why_len = ws->ctl_len - 2;
        if (!code_ok(code)) {
            fail(ws, 1002);
            return;
        }
        if (!up_utf8_valid(why, why_len)) {
            fail(ws, 1007);
            return;
        }
    }
    if (ws->state == UP_WS_OPEN) {
        queue_close(ws, code, "", 0); /* the echo, RFC 6455 5.5.1 */
    }
    report(ws, code, why, why_len);
}

static void on_control(struct up_ws *ws)
{
    switch (ws->op) {
    case WSLAY_PING:
        if (ws->state == UP_WS_OPEN) {
            (void)queue_frame(ws, WSLAY_PONG, ws->ctl, ws->ctl_len);
        }
        return;
    case WSLAY_PONG:
        return; /* the glue saw input: that is all a pong is for */
    case WSLAY_CONNECTION_CLOSE:
        on_close_frame(ws);
        return;
    default:
        return;
    }
}

static void deliver(struct up_ws *ws)
{
    if (ws->msg_op == WSLAY_TEXT_FRAME && ws->utf8.need != 0) {
        fail(ws, 1007); /* the message ends inside a character */
        return;
    }
    int type = ws->msg_op == WSLAY_TEXT_FRAME ? UP_WS_TEXT : UP_WS_BINARY;
    if (ws->msg != NULL) {
        ws->msg[ws->msg_len] = '\0';
    }
    size_t len = ws->msg_len;
    ws->msg_op = 0;
    ws->msg_len = 0;
    ws->cbs->on_message(ws, ws->ctx, type, ws->msg != NULL ? ws->msg : "", len);
    if (ws->msg_cap > WS_MSG_KEEP) {
        free(ws->msg);
        ws->msg = NULL;
        ws->msg_cap = 0;
    }
}

/* A frame's header is in io: judge it before a byte of its payload. */
static int frame_start(struct up_ws *ws, const struct wslay_frame_iocb *io)
{
    if (io->rsv != 0 || !io->mask) {
        return 1002; /* no extension agreed; RFC 6455 5.1: clients mask */
    }
    bool ctrl = wslay_is_ctrl_frame(io->opcode);
    bool data = io->opcode == WSLAY_TEXT_FRAME || io->opcode == WSLAY_BINARY_FRAME;
    if (io->opcode > (ctrl ? WSLAY_PONG : WSLAY_BINARY_FRAME)) {
        return 1002; /* a reserved opcode */
    }
    if (io->opcode == WSLAY_CONTINUATION_FRAME ? ws->msg_op == 0 : data && ws->msg_op != 0) {
        return 1002; /* a continuation of nothing, or a message inside one */
    }
    ws->in_frame = true;
    ws->op = io->opcode;
    ws->fin = io->fin;
    ws->frame_len = io->payload_length;
    ws->frame_off = 0;
    ws->ctl_len = 0;
    if (ctrl) {
        return 0;
    }
    if (data) {
        ws->msg_op = io->opcode;
        ws->utf8 = (struct up_utf8){0};
    }
    if (io->payload_length > ws->max_message - ws->msg_len) {
        return 1009;
    }
    size_t need = ws->msg_len + (size_t)io->payload_length + 1;
    if (need > ws->msg_cap) {
        char *m = realloc(ws->msg, need);
        if (m == NULL) {
            return 1011;
        }
        ws->msg = m;
        ws->msg_cap = need;
    }
    return 0;
}

/* Payload bytes of the current frame (already unmasked by wslay). */
static int frame_data(struct up_ws *ws, const uint8_t *data, size_t len)
{
    ws->frame_off += len;
    if (wslay_is_ctrl_frame(ws->op)) {
        memcpy(ws->ctl + ws->ctl_len, data, len); /* wslay keeps them under 126 */
        ws->ctl_len += len;
        return 0;
    }
    if (ws->msg_op == WSLAY_TEXT_FRAME && !up_utf8_step(&ws->utf8, data, len)) {
        return 1007;
    }
    memcpy(ws->msg + ws->msg_len, data, len);
    ws->msg_len += len;
    return 0;
}

static void frame_end(struct up_ws *ws)
{
    ws->in_frame = false;
    if (wslay_is_ctrl_frame(ws->op)) {
        on_control(ws);
    } else if (ws->fin) {
        deliver(ws);
    }
}

/* One step of wslay's frame layer: 1 to go on, 0 when the input is used
 * up, or a close code to fail with. */
static int recv_step(struct up_ws *ws)
{
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof(io));
    ssize_t r = wslay_frame_recv(ws->fr, &io);
    if (r == WSLAY_ERR_WANT_READ) {
        return 0;
    }
    if (r < 0) {
        /* A control frame over 125 bytes or fragmented, a length not in
         * its shortest form: RFC 6455 5.2 and 5.5. */
        return 1002;
    }
    if (!ws->in_frame) {
        int code = frame_start(ws, &io);
        if (code != 0) {
            return code;
        }
    }
    int code = frame_data(ws, io.data, io.data_length);
    if (code != 0) {
        return code;
    }
    if (ws->frame_off == ws->frame_len) {
        frame_end(ws);
    }
    return 1;
}

int up_ws_feed(struct up_ws *ws, const char *data, size_t len)
{
    ws->in = data;
    ws->in_len = len;
    ws->in_feed = true;
    while (ws->state != UP_WS_CLOSED && !ws->broken) {
        int r = recv_step(ws);
        if (r == 0) {
            break;
        }
        if (r > 1) {
            fail(ws, r);
        }
    }
    ws->in_feed = false;
    ws->in = NULL;
    ws->in_len = 0;
    return ws->broken ? -ENOMEM : 0;
}

/* ---- the engine's life ---- */

int up_ws_new(const struct up_ws_callbacks *cbs, void *ctx, struct up_ws **ret)
{
    static const struct wslay_frame_callbacks fcbs = {send_cb, recv_cb, genmask_cb};
    struct up_ws *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        return -ENOMEM;
    }
    if (wslay_frame_context_init(&ws->fr, &fcbs, ws) != 0) {
        free(ws);
        return -ENOMEM;
    }
    ws->cbs = cbs;
    ws->ctx = ctx;
    ws->max_message = UP_HTTP_MAX_BODY_DEFAULT;
    *ret = ws;
    return 0;
}

void up_ws_attach(struct up_ws *ws, struct up_http_out *out, size_t max_message,
                  void (*on_output)(void *owner), void *owner)
{
    ws->out = out;
    ws->max_message = max_message;
    ws->on_output = on_output;
    ws->owner = owner;
}

void up_ws_open(struct up_ws *ws)
{
    if (ws->state == UP_WS_OPEN && ws->cbs->on_open != NULL) {
        ws->cbs->on_open(ws, ws->ctx);
    }
}

void up_ws_go_away(struct up_ws *ws, int code, const char *reason)
{
    if (ws->state != UP_WS_OPEN) {
        return;
    }
    queue_close(ws, code, reason, strlen(reason));
    set_state(ws, UP_WS_CLOSING);
    notify(ws);
}

void up_ws_ping(struct up_ws *ws)
{
    if (ws->state == UP_WS_OPEN) {
        (void)queue_frame(ws, WSLAY_PING, NULL, 0);
        notify(ws);
    }
}

void up_ws_end(struct up_ws *ws)
{
    report(ws, 1006, "", 0);
}

bool up_ws_wants_read(const struct up_ws *ws)
{
    return ws->state != UP_WS_CLOSED;
}

bool up_ws_broken(const struct up_ws *ws)
{
    return ws->broken;
}

void up_ws_free(struct up_ws *ws)
{
    if (ws != NULL) {
        wslay_frame_context_free(ws->fr);
        free(ws->msg);
        free(ws);
    }
}

/* ---- app.h ---- */

static int ws_send(struct up_ws *ws, uint8_t op, const void *data, size_t len)
{
    if (ws->state != UP_WS_OPEN || ws->out == NULL) {
        return UP_WS_ERR_CLOSED;
    }
    if (up_http_out_pending(ws->out) >= UP_WS_QUEUE_MAX) {
        return UP_WS_ERR_FULL;
    }
    if (queue_frame(ws, op, data, len) < 0) {
        notify(ws); /* the glue drops the connection */
        return UP_WS_ERR_CLOSED;
    }
    notify(ws);
    return 0;
}

int up_ws_send_text(struct up_ws *ws, const char *text, size_t len)
{
    if (!up_utf8_valid(text, len)) {
        return UP_WS_ERR_INVALID;
    }
    return ws_send(ws, WSLAY_TEXT_FRAME, text, len);
}

int up_ws_send_binary(struct up_ws *ws, const void *data, size_t len)
{
    return ws_send(ws, WSLAY_BINARY_FRAME, data, len);
}

int up_ws_close(struct up_ws *ws, int code, const char *reason)
{
    size_t n = reason != NULL ? strlen(reason) : 0;
    if (ws->state != UP_WS_OPEN) {
        return UP_WS_ERR_CLOSED;
    }
    if (!code_ok(code) || n > 123 || !up_utf8_valid(reason, n)) {
        return UP_WS_ERR_INVALID;
    }
    up_ws_go_away(ws, code, reason != NULL ? reason : "");
    return 0;
}

long up_ws_pending(const struct up_ws *ws)
{
    if (ws->state == UP_WS_CLOSED || ws->out == NULL) {
        return -1;
    }
    return (long)up_http_out_pending(ws->out);
}
