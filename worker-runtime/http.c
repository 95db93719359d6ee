#include "http.h"

#include "chunk.h"
#include "list.h"
#include "uri.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The parser runs two machines over the same bytes. In a head or a trailer
 * section the scanner of core/head.c (line ends, obs-fold, request line) and
 * llhttp go in step: the scanner first finds how far the bytes are good and
 * where the section ends, then llhttp parses exactly those bytes. The method
 * is the scanner's: llhttp gets a stand-in for it (head.h). A chunk-size line
 * and the CRLF before it are checked here and given to llhttp rewritten, so
 * that its loose chunk parsing (it skips the two bytes after a chunk's data
 * unread, and takes no BWS in extensions) never decides; chunk data and
 * Content-Length bodies are llhttp's. llhttp is paused at the points where
 * the caller must act (the end of a message, a 100-continue head), at the
 * end of each chunk's data, and at the last chunk, where the scanner takes
 * over the trailers again.
 */

enum http_phase {
    PHASE_HEAD,       /* request line and fields */
    PHASE_BODY,       /* Content-Length body or a chunk's data: llhttp's */
    PHASE_CHUNK_LINE, /* [CRLF after the data] chunk-size [extensions] CRLF */
    PHASE_TRAILERS,   /* the trailer section after the last chunk */
    PHASE_REQUEST,    /* a request is out; waiting for up_http_request_done() */
    PHASE_ERROR,      /* p->err says which */
};

enum http_pause {
    PAUSE_NONE,
    PAUSE_EXPECT,     /* on_headers_complete: 100-continue and a body pending */
    PAUSE_CHUNK_DATA, /* on_body at the end of a chunk's data */
    PAUSE_LAST_CHUNK, /* on_chunk_header with size 0: trailers follow */
    PAUSE_MESSAGE,    /* on_message_complete */
};

/* Offsets are uint32_t: the arena holds at most a few times max_head. */
#define HTTP_MAX_HEAD_CAP (64u * 1024u * 1024u)
/* A body buffer larger than this is freed after its request, so that an idle
 * Keep-Alive connection does not keep a large upload's memory. */
#define HTTP_BODY_KEEP (64u * 1024u)

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap != 0 ? *cap : 256;
    while (n < need) {
        n *= 2;
    }
    char *b = realloc(*buf, n);
    if (b == NULL) {
        return -ENOMEM;
    }
    *buf = b;
    *cap = n;
    return 0;
}

static int arena_put(struct up_http_parser *p, const char *data, size_t len)
{
    int r = grow(&p->arena, &p->arena_cap, p->arena_len + len + 1);
    if (r < 0) {
        return r;
    }
    memcpy(p->arena + p->arena_len, data, len);
    p->arena_len += len;
    return 0;
}

/* End the span being built with a NUL; returns its offset. */
static int arena_end_span(struct up_http_parser *p, uint32_t *ret_off)
{
    int r = arena_put(p, "", 1);
    if (r < 0) {
        return r;
    }
    *ret_off = (uint32_t)p->span;
    p->span = p->arena_len;
    return 0;
}

/* ---- llhttp callbacks ---- */

static struct up_http_parser *parser_of(llhttp_t *ll)
{
    return ll->data;
}

/* -1 stops llhttp (from data and notification callbacks alike); p->err says
 * why, and run() prefers it to llhttp's own error code. */
static int fail(struct up_http_parser *p, int err)
{
    p->err = err;
    return -1;
}

static int on_span(llhttp_t *ll, const char *at, size_t len)
{
    struct up_http_parser *p = parser_of(ll);
    return arena_put(p, at, len) < 0 ? fail(p, -ENOMEM) : 0;
}

static int on_url_complete(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    if (arena_end_span(p, &p->req.target) < 0) {
        return fail(p, -ENOMEM);
    }
    const char *method = p->arena + p->req.method;
    const char *target = p->arena + p->req.target;
    int r = up_head_rules_target(method, strlen(method), target, strlen(target));
    return r < 0 ? fail(p, r) : 0;
}

static int on_version_complete(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    p->minor = up_head_rules_version(ll->http_major, ll->http_minor);
    return p->minor < 0 ? fail(p, p->minor) : 0;
}

static int on_field_complete(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    int r = up_head_rules_name(p->arena + p->span, p->arena_len - p->span);
    if (r < 0) {
        return fail(p, r);
    }
    if (p->phase == PHASE_HEAD && p->nfields >= p->limits.max_headers) {
        return fail(p, -E2BIG);
    }
    return arena_end_span(p, &p->name) < 0 ? fail(p, -ENOMEM) : 0;
}

static int add_field(struct up_http_parser *p, uint32_t value)
{
    if (p->nfields == p->fields_cap) {
        size_t n = p->fields_cap != 0 ? p->fields_cap * 2 : 16;
        struct up_http_field *f = realloc(p->fields, n * sizeof(*f));
        if (f == NULL) {
            return -ENOMEM;
        }
        p->fields = f;
        p->fields_cap = n;
    }
    p->fields[p->nfields++] = (struct up_http_field){p->name, value};
    return 0;
}

/* A trailer field is checked like a header field, then dropped: RFC 9110 6.5
 * forbids merging trailers into the header fields blindly. */
static int on_value_complete(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    const char *name = p->arena + p->name;
    size_t len = p->arena_len - p->span;
    up_head_trim_end(p->arena + p->span, &len);
    p->arena_len = p->span + len;
    if (p->phase == PHASE_TRAILERS) {
        p->arena_len = p->span = p->name;
        return 0;
    }
    const char *value = p->arena + p->span;
    int r = up_head_rules_field(&p->rules, name, strlen(name), value, len);
    if (r < 0) {
        return fail(p, r);
    }
    if (up_head_name_is(name, strlen(name), "expect") &&
        up_head_name_is(value, len, "100-continue")) {
        p->expect = true;
    }
    uint32_t off;
    if (arena_end_span(p, &off) < 0 || add_field(p, off) < 0) {
        return fail(p, -ENOMEM);
    }
    return 0;
}

/* RFC 9112 3.2.2: the authority of an absolute-form target overrides the
 * Host field, so the app sees one authority: the Host field's value is the
 * target's (a Host field is added for HTTP/1.0 without one). The arena has
 * room for this (split_target()). */
static int host_from_target(struct up_http_parser *p, size_t auth_off, size_t auth_len)
{
    uint32_t value = (uint32_t)p->arena_len;
    arena_put(p, p->arena + auth_off, auth_len);
    arena_put(p, "", 1);
    for (size_t i = 0; i < p->nfields; i++) {
        const char *name = p->arena + p->fields[i].name;
        if (up_head_name_is(name, strlen(name), "host")) {
            p->fields[i].value = value;
            return 0;
        }
    }
    p->name = (uint32_t)p->arena_len;
    arena_put(p, "Host", 5);
    return add_field(p, value);
}

/* Copy the path and the query out of the target, each NUL-terminated: the
 * path starts after `scheme://authority` in an absolute-form target. The
 * room for both and for the authority is reserved first, so that t stays
 * valid and the puts below cannot fail. */
static int split_target(struct up_http_parser *p)
{
    size_t len = strlen(p->arena + p->req.target);
    int r = grow(&p->arena, &p->arena_cap, p->arena_len + 2 * len + 16);
    if (r < 0) {
        return r;
    }
    const char *t = p->arena + p->req.target;
    const char *auth;
    size_t auth_len = 0;
    bool absolute = up_uri_absolute_authority(t, len, &auth, &auth_len);
    size_t start = absolute ? (size_t)(auth - t) + auth_len : 0;
    size_t q = start + strcspn(t + start, "?");
    p->req.path = (uint32_t)p->arena_len;
    if (q == start && absolute) {
        arena_put(p, "/", 1);
    } else {
        arena_put(p, t + start, q - start);
    }
    arena_put(p, "", 1);
    p->req.query = (uint32_t)p->arena_len;
    if (q < len) {
        arena_put(p, t + q + 1, len - q - 1);
    }
    arena_put(p, "", 1);
    if (absolute) {
        r = host_from_target(p, (size_t)(auth - p->arena), auth_len);
    }
    p->span = p->arena_len; /* trailer fields, if any, are built from here */
    return r;
}

static bool ll_keep_alive(const llhttp_t *ll, int minor)
{
    if (ll->upgrade || (ll->flags & F_CONNECTION_CLOSE)) {
        return false;
    }
    return minor == 1 || (ll->flags & F_CONNECTION_KEEP_ALIVE);
}

/* The Content-Length is known here: refuse a body over the limit before a
 * byte of it is read, and size the body buffer once. */
static int on_headers_complete(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    bool chunked = (ll->flags & F_CHUNKED) != 0;
    const char *method = p->arena + p->req.method;
    int r = up_head_rules_complete(&p->rules, ll->http_major, ll->http_minor, chunked);
    if (r == 0) {
        r = up_head_rules_upgrade(&p->rules, method, strlen(method), p->minor,
                                  chunked || ll->content_length > 0);
    }
    if (r < 0) {
        return fail(p, r);
    }
    bool has_cl = (ll->flags & F_CONTENT_LENGTH) != 0;
    if (has_cl && ll->content_length > p->limits.max_body) {
        return fail(p, -EMSGSIZE);
    }
    if ((has_cl && grow(&p->body, &p->body_cap, ll->content_length + 1) < 0) ||
        split_target(p) < 0) {
        return fail(p, -ENOMEM);
    }
    p->head_done = true;
    method = p->arena + p->req.method; /* the arena may have moved */
    p->req.minor = (uint8_t)p->minor;
    p->req.head = strcmp(method, "HEAD") == 0;
    p->req.connect = strcmp(method, "CONNECT") == 0;
    p->req.keep_alive = ll_keep_alive(ll, p->minor);
    p->req.ws = p->rules.ws;
    bool body = (ll->flags & F_CHUNKED) || ll->content_length > 0;
    if (p->expect && p->minor == 1 && body) {
        p->pause = PAUSE_EXPECT;
        return HPE_PAUSED;
    }
    return 0;
}

/* What is left of the body limit: chunk extensions count toward it. */
static size_t body_room(const struct up_http_parser *p)
{
    return p->limits.max_body - p->body_len - p->ext_len;
}

/* At the end of a chunk's data (llhttp has no bytes of it left to read) the
 * CRLF after it is ours to check: see feed_chunk_line(). */
static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct up_http_parser *p = parser_of(ll);
    if (len > body_room(p)) {
        return fail(p, -EMSGSIZE);
    }
    if (grow(&p->body, &p->body_cap, p->body_len + len + 1) < 0) {
        return fail(p, -ENOMEM);
    }
    memcpy(p->body + p->body_len, at, len);
    p->body_len += len;
    if ((ll->flags & F_CHUNKED) && ll->content_length == 0) {
        p->pause = PAUSE_CHUNK_DATA;
        return HPE_PAUSED;
    }
    return 0;
}

/* A chunk that would pass the body limit is refused from its size line. */
static int on_chunk_header(llhttp_t *ll)
{
    struct up_http_parser *p = parser_of(ll);
    if (ll->content_length == 0) {
        p->pause = PAUSE_LAST_CHUNK;
        return HPE_PAUSED;
    }
    if (ll->content_length > body_room(p)) {
        return fail(p, -EMSGSIZE);
    }
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    parser_of(ll)->pause = PAUSE_MESSAGE;
    return HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_url = on_span,
    .on_header_field = on_span,
    .on_header_value = on_span,
    .on_body = on_body,
    .on_url_complete = on_url_complete,
    .on_version_complete = on_version_complete,
    .on_header_field_complete = on_field_complete,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

/* ---- feeding ---- */

/* Forget the request: memory is kept for the next one. llhttp is set up anew
 * for each request, so that what it decided about the previous one (close,
 * upgrade) never makes it drop the bytes of the next. */
static void parser_reset(struct up_http_parser *p)
{
    up_head_llhttp_init(&p->ll, &http_settings, p);
    up_head_scan_init(&p->scan, false);
    p->rules = (struct up_head_rules){0};
    p->phase = PHASE_HEAD;
    p->pause = PAUSE_NONE;
    p->method_done = false;
    p->minor = 0;
    p->ext_len = 0;
    p->expect = false;
    p->head_done = false;
    p->section = 0;
    p->arena_len = 0;
    p->span = 0;
    p->nfields = 0;
    p->body_len = 0;
    if (p->body_cap > HTTP_BODY_KEEP) {
        free(p->body);
        p->body = NULL;
        p->body_cap = 0;
    }
}

/* llhttp over data[0..len): 0 when all was consumed, 1 when it paused (at
 * *ret_used; p->pause says why), or -errno. */
static int run(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    *ret_used = len;
    if (len == 0) {
        return 0;
    }
    llhttp_errno_t e = llhttp_execute(&p->ll, data, len);
    if (e == HPE_OK) {
        return 0;
    }
    if (e == HPE_PAUSED) {
        *ret_used = (size_t)(llhttp_get_error_pos(&p->ll) - data);
        llhttp_resume(&p->ll);
        return 1;
    }
    return p->err < 0 ? p->err : up_head_llhttp_error(e);
}

/* ---- chunk-size lines ---- */

static void chunk_line_start(struct up_http_parser *p, bool after_data)
{
    up_chunk_line_init(&p->chunk, after_data);
    p->phase = PHASE_CHUNK_LINE;
}

/* The line ended: llhttp gets it rewritten, which it parses as the line
 * sent. 0 when a chunk's data follows, 1 when llhttp paused at the last
 * chunk, or -errno (413 from on_chunk_header). */
static int chunk_line_run(struct up_http_parser *p)
{
    char line[UP_CHUNK_LINE_MAX];
    size_t n = up_chunk_line_rewrite(&p->chunk, line);
    size_t used;
    int r = run(p, line, n, &used);
    if (r > 0 && used != n) {
        return -EPROTO;
    }
    if (r == 0) {
        p->phase = PHASE_BODY;
    }
    return r;
}

/* Extension bytes count toward the body limit: a client cannot send more
 * than max_body bytes of them, and over it is 413, as for the body. */
static int feed_chunk_line(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    for (size_t i = 0; i < len; i++) {
        bool ext = false;
        int r = up_chunk_line_byte(&p->chunk, (unsigned char)data[i], &ext);
        if (r >= 0 && ext && ++p->ext_len > p->limits.max_body - p->body_len) {
            r = -EMSGSIZE;
        }
        if (r != 0) {
            *ret_used = r > 0 ? i + 1 : i;
            return r > 0 ? chunk_line_run(p) : r;
        }
    }
    *ret_used = len;
    return 0;
}

/* ---- heads and trailers ---- */

/* After the head: llhttp reads a Content-Length body itself; a chunked one
 * starts with a chunk-size line. */
static void body_start(struct up_http_parser *p)
{
    if (p->ll.flags & F_CHUNKED) {
        chunk_line_start(p, false);
    } else {
        p->phase = PHASE_BODY;
    }
}

/* The scanner found the end of the section and llhttp did not pause there:
 * right for a head with a body to come, wrong anywhere else. */
static int section_end(struct up_http_parser *p)
{
    if (p->phase != PHASE_HEAD || !p->head_done) {
        return -EPROTO;
    }
    body_start(p);
    return 0;
}

/* Before llhttp has the method: the scanner passed data[0..n), empty lines
 * (CRLF) and then bytes of the method (a token), which go to the arena at
 * offset 0. At its end (the SP, data[n - 1]) llhttp gets the stand-in. */
static int feed_method(struct up_http_parser *p, const char *data, size_t n, bool end)
{
    size_t m = end ? n - 1 : n;
    size_t i = 0;
    while (i < m && (data[i] == '\r' || data[i] == '\n')) {
        i++;
    }
    if (arena_put(p, data + i, m - i) < 0) {
        return -ENOMEM;
    }
    if (!end) {
        return 0;
    }
    if (arena_end_span(p, &p->req.method) < 0) {
        return -ENOMEM;
    }
    p->method_done = true;
    const char *method = p->arena + p->req.method;
    const char *standin = up_head_llhttp_method(method, strlen(method));
    size_t used;
    int r = run(p, standin, strlen(standin), &used);
    return r > 0 ? -EPROTO : r;
}

/* A head or trailer section: scanner, then llhttp over the bytes it passed,
 * so the error reported is the one at the earliest byte. */
static int feed_section(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    size_t room = p->limits.max_head - p->section;
    size_t n;
    int s = up_head_scan_feed(&p->scan, data, len < room ? len : room, &n);
    int r;
    if (p->method_done) {
        r = run(p, data, n, ret_used);
    } else {
        *ret_used = n;
        r = feed_method(p, data, n, s == UP_HEAD_SCAN_METHOD);
    }
    p->section += *ret_used;
    if (r < 0) {
        return r;
    }
    if (s == UP_HEAD_SCAN_METHOD) {
        return 0; /* the rest of data is fed again */
    }
    if (r > 0) {
        /* llhttp ended the section: it must be where the scanner did. */
        return s == UP_HEAD_SCAN_END && *ret_used == n ? 1 : -EPROTO;
    }
    if (s != UP_HEAD_SCAN_MORE) {
        return s < 0 ? s : section_end(p);
    }
    return p->section >= p->limits.max_head ? -E2BIG : 0;
}

static void request_ready(struct up_http_parser *p)
{
    struct up_req *q = &p->req;
    q->arena = p->arena;
    q->fields = p->fields;
    q->nfields = p->nfields;
    if (p->body != NULL) {
        p->body[p->body_len] = '\0';
    }
    q->body = p->body != NULL ? p->body : "";
    q->body_len = p->body_len;
}

/* llhttp paused: 0 to go on parsing, or what up_http_feed() returns. */
static int after_pause(struct up_http_parser *p)
{
    enum http_pause why = p->pause;
    p->pause = PAUSE_NONE;
    switch (why) {
    case PAUSE_EXPECT:
        body_start(p);
        return UP_HTTP_EXPECT_CONTINUE;
    case PAUSE_CHUNK_DATA:
        chunk_line_start(p, true);
        return 0;
    case PAUSE_LAST_CHUNK:
        p->phase = PHASE_TRAILERS;
        p->section = 0;
        up_head_scan_init(&p->scan, true);
        return 0;
    case PAUSE_MESSAGE:
        request_ready(p);
        p->phase = PHASE_REQUEST;
        return UP_HTTP_REQUEST;
    case PAUSE_NONE:
        break;
    }
    return -EPROTO;
}

static int feed_fail(struct up_http_parser *p, int err)
{
    p->phase = PHASE_ERROR;
    p->err = err;
    return err;
}

static int feed_some(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    switch ((enum http_phase)p->phase) {
    case PHASE_BODY:
        return run(p, data, len, ret_used);
    case PHASE_CHUNK_LINE:
        return feed_chunk_line(p, data, len, ret_used);
    case PHASE_HEAD:
    case PHASE_TRAILERS:
        return feed_section(p, data, len, ret_used);
    case PHASE_REQUEST:
    case PHASE_ERROR:
        break;
    }
    *ret_used = 0;
    return -EPROTO;
}

int up_http_feed(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    if (p->phase == PHASE_ERROR) {
        return p->err;
    }
    if (p->phase == PHASE_REQUEST) {
        return -EBUSY;
    }
    size_t off = 0;
    while (off < len) {
        size_t n;
        int r = feed_some(p, data + off, len - off, &n);
        off += n;
        if (r > 0) {
            r = after_pause(p);
        }
        if (r < 0) {
            return feed_fail(p, r);
        }
        if (r > 0) {
            *ret_used = off;
            return r;
        }
    }
    *ret_used = len;
    return UP_HTTP_NEED_MORE;
}

/* ---- the parser's life ---- */

void up_http_parser_init(struct up_http_parser *p, const struct up_http_limits *limits)
{
    memset(p, 0, sizeof(*p));
    if (limits != NULL) {
        p->limits = *limits;
    }
    if (p->limits.max_head == 0 || p->limits.max_head > HTTP_MAX_HEAD_CAP) {
        p->limits.max_head = p->limits.max_head == 0 ? UP_HTTP_MAX_HEAD_DEFAULT : HTTP_MAX_HEAD_CAP;
    }
    if (p->limits.max_body == 0) {
        p->limits.max_body = UP_HTTP_MAX_BODY_DEFAULT;
    }
    if (p->limits.max_headers == 0) {
        p->limits.max_headers = UP_HTTP_MAX_HEADERS_DEFAULT;
    }
    parser_reset(p);
}

void up_http_parser_free(struct up_http_parser *p)
{
    free(p->arena);
    free(p->fields);
    free(p->body);
    p->arena = NULL;
    p->fields = NULL;
    p->body = NULL;
    p->arena_cap = p->fields_cap = p->body_cap = 0;
}

void up_http_parser_set_peer(struct up_http_parser *p, const char *text)
{
    size_t n = text != NULL ? strnlen(text, sizeof(p->peer) - 1) : 0;
    memcpy(p->peer, text != NULL ? text : "", n);
    p->peer[n] = '\0';
    p->peer_fill = NULL;
}

void up_http_parser_set_peer_source(struct up_http_parser *p,
                                    void (*fill)(void *ctx, char *buf, size_t cap), void *ctx)
{
    p->peer[0] = '\0';
    p->peer_fill = fill;
    p->peer_ctx = ctx;
}

const char *up_http_parser_peer(struct up_http_parser *p)
{
    if (p->peer_fill != NULL) {
        void (*fill)(void *, char *, size_t) = p->peer_fill;
        p->peer_fill = NULL;
        fill(p->peer_ctx, p->peer, sizeof(p->peer));
        p->peer[sizeof(p->peer) - 1] = '\0';
    }
    return p->peer;
}

struct up_req *up_http_request(struct up_http_parser *p)
{
    return p->phase == PHASE_REQUEST ? &p->req : NULL;
}

bool up_http_request_whole(const struct up_http_parser *p)
{
    return p->phase == PHASE_REQUEST;
}

void up_http_request_done(struct up_http_parser *p)
{
    if (p->phase == PHASE_REQUEST) {
        parser_reset(p);
    }
}

int up_http_error_status(int err)
{
    return up_head_error_status(err);
}

bool up_http_keep_alive(const struct up_req *req)
{
    return req->keep_alive;
}

/* ---- app.h: the request ---- */

const char *up_req_method(const struct up_req *req)
{
    return req->arena + req->method;
}

const char *up_req_target(const struct up_req *req)
{
    return req->arena + req->target;
}

const char *up_req_path(const struct up_req *req)
{
    return req->arena + req->path;
}

const char *up_req_query(const struct up_req *req)
{
    return req->arena + req->query;
}

int up_req_minor_version(const struct up_req *req)
{
    return req->minor;
}

const char *up_req_header(const struct up_req *req, const char *name)
{
    for (size_t i = 0; i < req->nfields; i++) {
        if (strcasecmp(req->arena + req->fields[i].name, name) == 0) {
            return req->arena + req->fields[i].value;
        }
    }
    return NULL;
}

int up_req_header_at(const struct up_req *req, size_t i, const char **ret_name,
                     const char **ret_value)
{
    if (i >= req->nfields) {
        return -1;
    }
    *ret_name = req->arena + req->fields[i].name;
    *ret_value = req->arena + req->fields[i].value;
    return 0;
}

const char *up_req_body(const struct up_req *req, size_t *ret_len)
{
    if (ret_len != NULL) {
        *ret_len = req->body_len;
    }
    return req->body;
}

const char *up_req_peer(const struct up_req *req)
{
    /* A request is always its parser's own (request_ready()), and the
     * parser is the connection's, not const: the address is asked the
     * first time anyone wants it. */
    return up_http_parser_peer(up_container_of(req, struct up_http_parser, req));
}
