#include "http.h"

#include "bufpool.h"
#include "strbuf.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- the output queue ---- */

struct up_http_chunk {
    struct up_http_chunk *next;
    size_t start; /* first byte not yet consumed */
    size_t end;   /* first free byte */
    size_t cap;
    char data[];
};

/* The usual chunk: a 16 KiB block of the chunk pool, header included. An
 * append larger than that gets a chunk of its own size from malloc, which
 * is freed as soon as it is sent. */
#define OUT_BLOCK (16u * 1024u)
#define OUT_CHUNK (OUT_BLOCK - sizeof(struct up_http_chunk))

/* Process-wide, like the worker that owns every connection: see bufpool.h
 * for why chunks are not malloc'd. */
static struct up_bufpool chunks;

size_t up_http_out_trim_pool(void)
{
    return up_bufpool_trim(&chunks, UP_BUFPOOL_KEPT);
}

static void chunk_free(struct up_http_chunk *c, bool release)
{
    if (c != NULL && c->cap == OUT_CHUNK) {
        up_bufpool_put(&chunks, c, release);
    } else {
        free(c);
    }
}

void up_http_out_init(struct up_http_out *out)
{
    memset(out, 0, sizeof(*out));
}

static void out_free(struct up_http_out *out, bool release)
{
    while (out->head != NULL) {
        struct up_http_chunk *c = out->head;
        out->head = c->next;
        chunk_free(c, release);
    }
    chunk_free(out->spare, release);
    memset(out, 0, sizeof(*out));
}

void up_http_out_free(struct up_http_out *out)
{
    out_free(out, false);
}

void up_http_out_release(struct up_http_out *out)
{
    out_free(out, true);
}

static struct up_http_chunk *chunk_new(struct up_http_out *out, size_t need)
{
    struct up_http_chunk *c = out->spare;
    if (c != NULL && c->cap >= need) {
        out->spare = NULL;
    } else {
        if (need <= OUT_CHUNK) {
            if (chunks.size == 0) {
                up_bufpool_init(&chunks, OUT_BLOCK);
            }
            c = up_bufpool_get(&chunks);
        } else {
            c = malloc(sizeof(*c) + need);
        }
        if (c == NULL) {
            return NULL;
        }
        c->cap = need <= OUT_CHUNK ? OUT_CHUNK : need;
    }
    c->next = NULL;
    c->start = c->end = 0;
    return c;
}

/* Bytes go to the free end of the tail chunk, the rest to one new chunk
 * allocated before anything is copied: a failure queues nothing. */
int up_http_out_append(struct up_http_out *out, const void *data, size_t len)
{
    struct up_http_chunk *t = out->tail;
    size_t room = t != NULL ? t->cap - t->end : 0;
    size_t n = len < room ? len : room;
    struct up_http_chunk *c = NULL;
    if (len > room && (c = chunk_new(out, len - room)) == NULL) {
        return -ENOMEM;
    }
    if (n > 0) {
        memcpy(t->data + t->end, data, n);
        t->end += n;
    }
    if (c != NULL) {
        memcpy(c->data, (const char *)data + n, len - n);
        c->end = len - n;
        if (t != NULL) {
            t->next = c;
        } else {
            out->head = c;
        }
        out->tail = c;
    }
    out->pending += len;
    return 0;
}

const char *up_http_out_peek(const struct up_http_out *out, size_t *ret_len)
{
    struct up_http_chunk *c = out->head;
    if (out->pending == 0 || c == NULL) {
        *ret_len = 0;
        return NULL;
    }
    *ret_len = c->end - c->start;
    return c->data + c->start;
}

size_t up_http_out_iov(const struct up_http_out *out, struct iovec *iov, size_t max)
{
    size_t n = 0;
    for (struct up_http_chunk *c = out->head; c != NULL && n < max; c = c->next) {
        if (c->end > c->start) {
            iov[n].iov_base = c->data + c->start;
            iov[n].iov_len = c->end - c->start;
            n++;
        }
    }
    return n;
}

/* The head chunk is all sent. Nothing can be in flight from it any more, so
 * the last chunk is rewound in place; others are kept as the spare or freed. */
static void chunk_retire(struct up_http_out *out)
{
    struct up_http_chunk *c = out->head;
    if (c == out->tail && c->cap == OUT_CHUNK) {
        c->start = c->end = 0;
        return;
    }
    out->head = c->next;
    if (out->head == NULL) {
        out->tail = NULL;
    }
    if (out->spare == NULL && c->cap == OUT_CHUNK) {
        out->spare = c;
    } else {
        chunk_free(c, false);
    }
}

void up_http_out_consume(struct up_http_out *out, size_t n)
{
    if (n > out->pending) {
        n = out->pending;
    }
    out->pending -= n;
    while (out->head != NULL) {
        struct up_http_chunk *c = out->head;
        size_t k = c->end - c->start < n ? c->end - c->start : n;
        c->start += k;
        n -= k;
        if (c->start < c->end || (c == out->tail && c->start == 0)) {
            break;
        }
        chunk_retire(out);
    }
}

int up_http_error_response(struct up_http_out *out, int status)
{
    char buf[UP_HEAD_ERROR_MAX];
    size_t n = up_head_error_response(status, buf, sizeof(buf));
    return up_http_out_append(out, buf, n);
}

/* ---- the response ---- */

enum res_state {
    RES_IDLE,      /* no response started yet */
    RES_OPEN,      /* started: status and fields may still change */
    RES_STREAMING, /* the head is queued; body pieces follow */
    RES_DONE,      /* every byte is queued */
};

/* How the body is delimited, decided when the head is queued. */
enum res_framing {
    FRAME_LENGTH,  /* Content-Length: up_res_send() */
    FRAME_CHUNKED, /* up_res_write() on HTTP/1.1 */
    FRAME_CLOSE,   /* up_res_write() on HTTP/1.0: the end of the body is the close */
};

void up_http_res_init(struct up_res *res)
{
    memset(res, 0, sizeof(*res));
}

void up_http_res_free(struct up_res *res)
{
    free(res->fields);
    res->fields = NULL;
    res->fields_len = res->fields_cap = 0;
}

/* force_close is not reset: once the glue wants the connection closed, no
 * later response on it may promise otherwise. */
void up_http_res_start(struct up_res *res, const struct up_req *req, struct up_http_out *out)
{
    res->out = out;
    res->state = RES_OPEN;
    res->minor = req->minor;
    res->head_method = req->head;
    res->connect = req->connect;
    res->keep_alive = req->keep_alive;
    res->close = false;
    res->chunked = false;
    res->no_body = false;
    res->deferred = false;
    res->has_date = false;
    res->event_stream = false;
    res->status = 200;
    res->err = 0;
    res->fields_len = 0;
    res->body_bytes = 0;
}

/* Queue bytes; after a failure nothing more is queued (the stream is cut
 * short and the connection must close), and after detach nothing is. */
static void res_put(struct up_res *res, const void *data, size_t len)
{
    if (res->out == NULL || res->err < 0 || len == 0) {
        return;
    }
    int r = up_http_out_append(res->out, data, len);
    if (r < 0) {
        res->err = r;
    }
}

static void res_puts(struct up_res *res, const char *text)
{
    res_put(res, text, strlen(text));
}

/* "<before><number><after>\r\n" without printf (the status line, the
 * length, each chunk's size: every response has two or three). before
 * and after are ours, short; what would not fit is cut. */
static void res_put_number_line(struct up_res *res, const char *before, uint64_t v, unsigned base,
                                const char *after)
{
    char line[96];
    size_t room = sizeof(line) - UP_FMT_UINT_MAX - 2;
    size_t n = strnlen(before, room);
    memcpy(line, before, n);
    n += up_fmt_uint(line + n, v, base);
    size_t m = strnlen(after, sizeof(line) - 2 - n);
    memcpy(line + n, after, m);
    n += m;
    line[n++] = '\r';
    line[n++] = '\n';
    res_put(res, line, n);
}

/* Last in every up_res_* call: the callback may free what holds res once it
 * is done and detached. */
static void res_notify(struct up_res *res)
{
    if (res->on_output != NULL) {
        res->on_output(res->ctx);
    }
}

/* RFC 9110 9.3.6: a 2xx answer to CONNECT turns the connection into a
 * tunnel right after its head, so it has no body and must not carry
 * Content-Length or Transfer-Encoding. The runtime does not tunnel: the
 * connection closes after it (CONNECT never keeps the connection). */
static bool res_bodiless(const struct up_res *res)
{
    int status = res->status;
    return status < 200 || status == 204 || status == 304 || (res->connect && status / 100 == 2);
}

/* Content-Length or Transfer-Encoding, then Connection. A HEAD response gets
 * the fields a GET would (RFC 9110 9.3.2); 1xx, 204, 304 and a 2xx to
 * CONNECT get neither length nor coding (RFC 9110 8.6, 9.3.6, RFC 9112 6.1). */
static void res_head_framing(struct up_res *res, enum res_framing f, size_t len)
{
    bool bodiless = res_bodiless(res);
    res->no_body = bodiless || res->head_method;
    res->chunked = f == FRAME_CHUNKED && !bodiless;
    res->close = !res->keep_alive || res->force_close || (f == FRAME_CLOSE && !bodiless);
    if (!bodiless && f == FRAME_LENGTH) {
        res_put_number_line(res, "Content-Length: ", len, 10, "");
    } else if (res->chunked) {
        res_puts(res, "Transfer-Encoding: chunked\r\n");
    }
    if (res->close) {
        res_puts(res, "Connection: close\r\n");
    } else if (res->minor == 0) {
        res_puts(res, "Connection: keep-alive\r\n");
    }
    if (!res->close && res->keep_alive_s > 0) {
        /* Clients that read it (undici) retire an idle socket a little
         * before this; the worker keeps it a little after (conn.c), so no
         * request is ever sent on a socket being closed. */
        res_put_number_line(res, "Keep-Alive: timeout=", res->keep_alive_s, 10, "");
    }
    res_puts(res, "\r\n");
}

static void res_date(struct up_res *res)
{
    if (res->date != NULL && !res->has_date) {
        res_puts(res, "Date: ");
        res_puts(res, res->date);
        res_puts(res, "\r\n");
    }
}

/* Always HTTP/1.1 in the status line, also to HTTP/1.0 clients (as nginx
 * does): RFC 9110 2.5 has a server send its own highest version. */
static void res_head(struct up_res *res, enum res_framing f, size_t len)
{
    char reason[48] = " ";
    strncat(reason, up_head_reason(res->status), sizeof(reason) - 2);
    res_put_number_line(res, "HTTP/1.1 ", (uint64_t)res->status, 10, reason);
    res_date(res);
    res_put(res, res->fields, res->fields_len);
    res_head_framing(res, f, len);
}

static void res_body(struct up_res *res, const void *data, size_t len)
{
    if (res->no_body || len == 0) {
        return; /* an empty chunk would end a chunked body */
    }
    res->body_bytes += len;
    if (!res->chunked) {
        res_put(res, data, len);
        return;
    }
    res_put_number_line(res, "", len, 16, "");
    res_put(res, data, len);
    res_puts(res, "\r\n");
}

/* ---- app.h: the response ---- */

void up_res_status(struct up_res *res, int status)
{
    if (res->state == RES_OPEN && status >= 100 && status <= 999) {
        res->status = status;
    }
}

/* A field value may hold HT, SP, VCHAR and obs-text; CR, LF, NUL or another
 * control byte would let the app (or its client) inject fields. */
static bool value_ok(const char *v)
{
    for (const unsigned char *c = (const unsigned char *)v; *c != '\0'; c++) {
        if ((*c < 0x20 && *c != '\t') || *c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Beyond app.h: -1 also for a name that is not a token or a value with
 * control bytes, and when out of memory. */
int up_res_header(struct up_res *res, const char *name, const char *value)
{
    size_t nl = strlen(name);
    size_t vl = strlen(value);
    if (res->state != RES_OPEN || !up_head_token(name, nl) || !value_ok(value)) {
        return -1;
    }
    if (up_head_name_is(name, nl, "content-length") ||
        up_head_name_is(name, nl, "transfer-encoding") || up_head_name_is(name, nl, "connection") ||
        up_head_name_is(name, nl, "keep-alive")) {
        return 0; /* the framing and the connection's life are the runtime's */
    }
    size_t need = res->fields_len + nl + vl + 4;
    if (need > res->fields_cap) {
        size_t cap = res->fields_cap != 0 ? res->fields_cap : 256;
        while (cap < need) {
            cap *= 2;
        }
        char *f = realloc(res->fields, cap);
        if (f == NULL) {
            return -1;
        }
        res->fields = f;
        res->fields_cap = cap;
    }
    char *p = res->fields + res->fields_len;
    memcpy(p, name, nl);
    memcpy(p + nl, ": ", 2);
    memcpy(p + nl + 2, value, vl);
    memcpy(p + nl + 2 + vl, "\r\n", 2);
    res->fields_len = need;
    res->has_date |= up_head_name_is(name, nl, "date");
    return 0;
}

static void res_end_stream(struct up_res *res)
{
    if (res->chunked && !res->no_body) {
        res_puts(res, "0\r\n\r\n");
    }
    res->state = RES_DONE;
}

void up_res_send(struct up_res *res, const void *body, size_t len)
{
    if (res->state == RES_OPEN) {
        res_head(res, FRAME_LENGTH, len);
        if (!res->no_body) {
            res_put(res, body, len);
            res->body_bytes += len;
        }
        res->state = RES_DONE;
    } else if (res->state == RES_STREAMING) {
        res_body(res, body, len);
        res_end_stream(res);
    } else {
        return;
    }
    res_notify(res);
}

void up_res_write(struct up_res *res, const void *data, size_t len)
{
    if (res->state == RES_OPEN) {
        size_t n;
        const char *type = up_http_res_field(res, "content-type", &n);
        res->event_stream =
            type != NULL && n >= 17 && up_head_name_is(type, 17, "text/event-stream");
        res_head(res, res->minor >= 1 ? FRAME_CHUNKED : FRAME_CLOSE, 0);
        res->state = RES_STREAMING;
    } else if (res->state != RES_STREAMING) {
        return;
    }
    res_body(res, data, len);
    res_notify(res);
}

void up_res_end(struct up_res *res)
{
    if (res->state == RES_OPEN) {
        up_res_send(res, "", 0);
    } else if (res->state == RES_STREAMING) {
        res_end_stream(res);
        res_notify(res);
    }
}

long up_res_pending(const struct up_res *res)
{
    if (res->out == NULL) {
        return -1; /* detached: the connection is gone */
    }
    size_t n = up_http_out_pending(res->out);
    return n < (size_t)LONG_MAX ? (long)n : LONG_MAX;
}

void up_res_defer(struct up_res *res)
{
    if (res->state == RES_OPEN || res->state == RES_STREAMING) {
        res->deferred = true;
    }
}

/* ---- the glue's side of the response ---- */

void up_http_res_finish_default(struct up_res *res)
{
    up_res_end(res);
}

bool up_http_res_open(const struct up_res *res)
{
    return res->state == RES_OPEN;
}

void up_http_res_clear_fields(struct up_res *res)
{
    if (res->state == RES_OPEN) {
        res->fields_len = 0;
        res->has_date = false;
    }
}

const char *up_http_res_field(const struct up_res *res, const char *lc, size_t *ret_len)
{
    size_t nl = strlen(lc);
    const char *p = res->fields;
    const char *end = p != NULL ? p + res->fields_len : p; /* none set yet: NULL */
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        /* Each field is "Name: value\r\n", as up_res_header() wrote it. */
        if (eol - p > (ptrdiff_t)nl + 1 && p[nl] == ':' && up_head_name_is(p, nl, lc)) {
            *ret_len = (size_t)(eol - p) - nl - 2;
            return p + nl + 2;
        }
        p = eol + 2;
    }
    return NULL;
}

int up_http_res_switch(struct up_res *res, const char *accept, struct up_ws *ws)
{
    if (res->state != RES_OPEN) {
        return -1;
    }
    res->status = 101;
    res_puts(res, "HTTP/1.1 101 Switching Protocols\r\n");
    res_date(res);
    res_puts(res, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    res_puts(res, accept);
    res_puts(res, "\r\n");
    res_put(res, res->fields, res->fields_len);
    res_puts(res, "\r\n");
    res->state = RES_DONE;
    if (res->err < 0) {
        return -1;
    }
    res->ws = ws;
    res_notify(res);
    return 0;
}

bool up_http_res_streaming(const struct up_res *res)
{
    return res->state == RES_STREAMING;
}

void up_http_res_cut(struct up_res *res, bool clean)
{
    if (clean && res->state == RES_STREAMING && res->chunked && !res->no_body) {
        res_puts(res, "0\r\n\r\n");
    }
    up_http_res_detach(res);
}

bool up_http_res_event_stream(const struct up_res *res)
{
    return res->event_stream && res->state == RES_STREAMING;
}

bool up_http_res_deferred(const struct up_res *res)
{
    return res->deferred && res->state != RES_DONE;
}

bool up_http_res_done(const struct up_res *res)
{
    return res->state == RES_DONE;
}

bool up_http_res_must_close(const struct up_res *res)
{
    return res->close || res->force_close || !res->keep_alive || res->err < 0;
}

void up_http_res_force_close(struct up_res *res)
{
    res->force_close = true;
}

int up_http_res_error(const struct up_res *res)
{
    return res->err;
}

void up_http_res_detach(struct up_res *res)
{
    res->out = NULL;
}

static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* By hand rather than strftime(): %a and %b follow the locale. */
void up_http_date(time_t t, char *buf)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
    }
    char *p = buf;
    memcpy(p, days + 3 * ((unsigned)tm.tm_wday % 7), 3);
    memcpy(p + 3, ", ", 2);
    p = put_digits(p + 5, (unsigned)tm.tm_mday, 2);
    *p++ = ' ';
    memcpy(p, months + 3 * ((unsigned)tm.tm_mon % 12), 3);
    p[3] = ' ';
    p = put_digits(p + 4, (unsigned)(tm.tm_year + 1900), 4);
    *p++ = ' ';
    p = put_digits(p, (unsigned)tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_min, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_sec, 2);
    memcpy(p, " GMT", 5);
}
