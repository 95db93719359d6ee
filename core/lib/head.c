#include "head.h"

#include "uri.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- the scanner ---- */

enum scan_state {
    SCAN_LEAD,     /* before the request line: empty lines (CRLF) are skipped */
    SCAN_LEAD_CR,  /* the CR of such an empty line */
    SCAN_METHOD,   /* in the method (pos: 0 until its first byte) */
    SCAN_TARGET,   /* in the request-target (pos: 0 until its first byte) */
    SCAN_VERSION,  /* in the version (pos: bytes of it seen) */
    SCAN_REQ_CR,   /* the CR ending the request line */
    SCAN_START,    /* at the start of a field line or of the final empty line */
    SCAN_FIELD,    /* in a field line */
    SCAN_FIELD_CR, /* the CR ending a field line */
    SCAN_END_CR,   /* the CR of the final empty line */
};

void up_head_scan_init(struct up_head_scan *s, bool trailers)
{
    s->state = trailers ? SCAN_START : SCAN_LEAD;
    s->pos = 0;
}

static bool is_tchar(unsigned char c)
{
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return alnum || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The method is a token (RFC 9110 9.1), any token: llhttp's list of the
 * methods it knows plays no part. */
static int scan_method(struct up_head_scan *s, unsigned char c)
{
    if (c == ' ' && s->pos > 0) {
        s->state = SCAN_TARGET;
        s->pos = 0;
        return UP_HEAD_SCAN_METHOD;
    }
    s->pos = 1;
    return is_tchar(c) ? 0 : -EPROTO;
}

/* RFC 9112 3.2: the request-target is VCHARs, and a server must not
 * autocorrect it. llhttp takes HT and FF (and obs-text) inside a path, where
 * a front end splitting on any whitespace sees another target and version;
 * obs-text is whitespace to some (0x85, 0xA0 in Latin-1). A fragment is never
 * sent (RFC 9110 4.1): `#` would reach the app inside the path or query. */
static int scan_target(struct up_head_scan *s, unsigned char c)
{
    if (c == ' ' && s->pos > 0) {
        s->state = SCAN_VERSION;
        s->pos = 0;
        return 0;
    }
    s->pos = 1;
    return c > ' ' && c < 0x7f && c != '#' ? 0 : -EPROTO;
}

/* Exactly `HTTP/` DIGIT `.` DIGIT (RFC 9112 2.3; a '0' in shape stands for
 * any digit): llhttp also takes RTSP/1.0 and ICE/1.0 and would serve them as
 * HTTP/1.0. Which versions are served is up_head_rules_version()'s business. */
static int scan_version(struct up_head_scan *s, unsigned char c)
{
    static const char shape[] = "HTTP/0.0";
    unsigned i = s->pos++;
    if (i == sizeof(shape) - 1) {
        s->state = SCAN_REQ_CR;
        return c == '\r' ? 0 : -EPROTO;
    }
    if (shape[i] == '0') {
        return c >= '0' && c <= '9' ? 0 : -EPROTO;
    }
    return c == (unsigned char)shape[i] ? 0 : -EPROTO;
}

/* A line that starts with SP or HT continues the previous field (obs-fold):
 * RFC 9112 5.2 lets a server reject it, and we do, as we do bare LF. */
static int scan_start(struct up_head_scan *s, char c)
{
    if (c == '\r') {
        s->state = SCAN_END_CR;
        return 0;
    }
    if (c == ' ' || c == '\t' || c == '\n') {
        return -EPROTO;
    }
    s->state = SCAN_FIELD;
    return 0;
}

/* One byte: 0 to go on, UP_HEAD_SCAN_END or _METHOD, or -EPROTO. */
static int scan_byte(struct up_head_scan *s, char c)
{
    switch ((enum scan_state)s->state) {
    case SCAN_LEAD:
        if (c == '\r') {
            s->state = SCAN_LEAD_CR;
            return 0;
        }
        s->state = SCAN_METHOD;
        return scan_method(s, (unsigned char)c);
    case SCAN_LEAD_CR:
        s->state = SCAN_LEAD;
        return c == '\n' ? 0 : -EPROTO;
    case SCAN_METHOD:
        return scan_method(s, (unsigned char)c);
    case SCAN_TARGET:
        return scan_target(s, (unsigned char)c);
    case SCAN_VERSION:
        return scan_version(s, (unsigned char)c);
    case SCAN_REQ_CR:
        s->state = SCAN_START;
        return c == '\n' ? 0 : -EPROTO;
    case SCAN_START:
        return scan_start(s, c);
    case SCAN_FIELD:
        if (c == '\r') {
            s->state = SCAN_FIELD_CR;
        }
        return c == '\n' ? -EPROTO : 0;
    case SCAN_FIELD_CR:
        s->state = SCAN_START;
        return c == '\n' ? 0 : -EPROTO;
    case SCAN_END_CR:
        return c == '\n' ? UP_HEAD_SCAN_END : -EPROTO;
    }
    return -EPROTO;
}

int up_head_scan_feed(struct up_head_scan *s, const char *buf, size_t len, size_t *ret_used)
{
    for (size_t i = 0; i < len; i++) {
        int r = scan_byte(s, buf[i]);
        if (r != 0) {
            *ret_used = r > 0 ? i + 1 : i;
            return r;
        }
    }
    *ret_used = len;
    return UP_HEAD_SCAN_MORE;
}

/* ---- the rules ---- */

bool up_head_token(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool up_head_name_is(const char *s, size_t len, const char *lc)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (lc[i] == '\0' || c != lc[i]) {
            return false;
        }
    }
    return lc[len] == '\0';
}

void up_head_trim_end(const char *s, size_t *len)
{
    while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t')) {
        (*len)--;
    }
}

/* llhttp reports `Ho st:` as the field "Ho st" and `: x` as an empty name. */
int up_head_rules_name(const char *name, size_t len)
{
    return up_head_token(name, len) ? 0 : -EPROTO;
}

/* ---- llhttp and targets ---- */

void up_head_llhttp_init(llhttp_t *ll, const llhttp_settings_t *settings, void *data)
{
    llhttp_init(ll, HTTP_REQUEST, settings);
    ll->lenient_flags |= LENIENT_VERSION;
    ll->data = data;
}

static bool method_is(const char *m, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(m, name, len) == 0;
}

const char *up_head_llhttp_method(const char *method, size_t len)
{
    return method_is(method, len, "CONNECT") ? "CONNECT " : "GET ";
}

/* RFC 9112 3.2: origin-form, absolute-form, authority-form for CONNECT and
 * only there, `*` for OPTIONS and only there. llhttp takes `*` and `*x` for
 * any method, `/x` for CONNECT, and any bytes between `//` and the path as
 * the authority of an absolute-form target. */
int up_head_rules_target(const char *method, size_t method_len, const char *target, size_t len)
{
    const char *auth;
    size_t auth_len;
    if (method_is(method, method_len, "CONNECT")) {
        return up_uri_authority_ok(target, len, true) ? 0 : -EPROTO;
    }
    if (len > 0 && target[0] == '/') {
        return 0;
    }
    if (len > 0 && target[0] == '*') {
        return len == 1 && method_is(method, method_len, "OPTIONS") ? 0 : -EPROTO;
    }
    if (up_uri_absolute_authority(target, len, &auth, &auth_len)) {
        return up_uri_authority_ok(auth, auth_len, false) ? 0 : -EPROTO;
    }
    return -EPROTO;
}

/* ---- fields and versions ---- */

/* Whether the comma-separated list v[0..len) holds the token lc
 * (case-insensitive; OWS around the elements, empty elements allowed as
 * RFC 9110 5.6.1 asks a recipient to). */
static bool list_has(const char *v, size_t len, const char *lc)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        size_t n = i - start;
        up_head_trim_end(v + start, &n);
        if (n > 0 && up_head_name_is(v + start, n, lc)) {
            return true;
        }
    }
    return false;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* RFC 6455 4.1: a Sec-WebSocket-Key is 16 bytes in base64: 22 digits, the
 * last of which carries 2 bits (so it is one of AQgw), then "==". */
static bool ws_key_ok(const char *v, size_t len)
{
    if (len != 24 || v[22] != '=' || v[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        if (!is_b64(v[i])) {
            return false;
        }
    }
    return strchr("AQgw", v[21]) != NULL;
}

/* RFC 6455 4.1: 1*DIGIT from 0 to 255. */
static bool ws_version_ok(const char *v, size_t len)
{
    unsigned n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9' || i >= 3) {
            return false;
        }
        n = n * 10 + (unsigned)(v[i] - '0');
    }
    return len > 0 && n <= 255;
}

/* The fields a WebSocket handshake is judged by: remembered here, judged
 * once the head is complete (up_head_rules_upgrade()), as their order is
 * free. A count stops at 2: more than one is as wrong as two. */
static void ws_field(struct up_head_rules *r, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    if (up_head_name_is(name, name_len, "upgrade")) {
        r->ws |= list_has(value, value_len, "websocket");
    } else if (up_head_name_is(name, name_len, "connection")) {
        r->conn_upgrade |= list_has(value, value_len, "upgrade");
    } else if (up_head_name_is(name, name_len, "sec-websocket-key")) {
        r->ws_keys += r->ws_keys < 2;
        r->ws_bad |= !ws_key_ok(value, value_len);
    } else if (up_head_name_is(name, name_len, "sec-websocket-version")) {
        r->ws_versions += r->ws_versions < 2;
        r->ws_bad |= !ws_version_ok(value, value_len);
    }
}

int up_head_rules_upgrade(const struct up_head_rules *r, const char *method, size_t method_len,
                          int minor, bool body)
{
    if (!r->ws) {
        return 0;
    }
    bool ok = method_is(method, method_len, "GET") && minor >= 1 && r->conn_upgrade &&
              r->ws_keys == 1 && r->ws_versions == 1 && !r->ws_bad && !body;
    return ok ? 0 : -EPROTO;
}

/* Two Host fields would let two routers pick different hosts, and so would
 * one whose value is not `uri-host [":" port]` (RFC 9112 3.2 has both
 * answered 400; an empty value is allowed). Any coding but `chunked` we
 * cannot decode, and more than one field is either that or chunked twice,
 * which RFC 9112 6.1 forbids. */
int up_head_rules_field(struct up_head_rules *r, const char *name, size_t name_len,
                        const char *value, size_t value_len)
{
    if (up_head_name_is(name, name_len, "host")) {
        if (r->host || (value_len > 0 && !up_uri_authority_ok(value, value_len, false))) {
            return -EPROTO;
        }
        r->host = true;
    } else if (up_head_name_is(name, name_len, "transfer-encoding")) {
        if (r->te || !up_head_name_is(value, value_len, "chunked")) {
            return -EOPNOTSUPP;
        }
        r->te = true;
    } else {
        ws_field(r, name, name_len, value, value_len);
    }
    return 0;
}

/* RFC 9110 2.5: a 1.x message with a minor version above ours is handled as
 * the highest 1.x we speak. */
int up_head_rules_version(int major, int minor)
{
    if (major != 1 || minor < 0 || minor > 9) {
        return -EPROTONOSUPPORT;
    }
    return minor == 0 ? 0 : 1;
}

/* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty
 * framing (a 1.0 hop in between would not know it). A Transfer-Encoding we
 * passed that llhttp did not take for chunked (`chunked<HT>`) it refuses only
 * after on_headers_complete, where the master has already stopped, and not
 * at all for an Upgrade without a body: decide it here, for both. RFC 9112
 * 3.2: an HTTP/1.1 request without Host is 400 (1.0 predates Host). */
int up_head_rules_complete(const struct up_head_rules *r, int major, int minor, bool chunked)
{
    /* Checked here too, not only when the version is read: llhttp takes a
     * request line without a version for HTTP/0.9 and never reports a
     * version for it, so that check alone would let 0.9 through. */
    int v = up_head_rules_version(major, minor);
    if (v < 0) {
        return v;
    }
    if (r->te && v == 0) {
        return -EPROTO;
    }
    if (r->te && !chunked) {
        return -EOPNOTSUPP;
    }
    return v == 1 && !r->host ? -EPROTO : 0;
}

int up_head_llhttp_error(int hpe)
{
    if (hpe == HPE_INVALID_TRANSFER_ENCODING) {
        return -EOPNOTSUPP;
    }
    if (hpe == HPE_INVALID_VERSION) {
        return -EPROTONOSUPPORT;
    }
    return -EPROTO;
}

/* ---- answers ---- */

int up_head_error_status(int err)
{
    switch (err) {
    case -EPROTO:
        return 400;
    case -EMSGSIZE:
        return 413;
    case -E2BIG:
        return 431;
    case -EOPNOTSUPP:
        return 501;
    case -EPROTONOSUPPORT:
        return 505;
    default:
        return 500;
    }
}

static const struct {
    short status;
    const char *text; /* at most 31 characters: see UP_HEAD_ERROR_MAX */
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *up_head_reason(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].status == status) {
            return reasons[i].text;
        }
    }
    return "";
}

size_t up_head_error_response(int status, char *buf, size_t cap)
{
    if (cap < UP_HEAD_ERROR_MAX) {
        return 0;
    }
    if (status < 100 || status > 599) {
        status = 500;
    }
    const char *reason = up_head_reason(status);
    const char *text = reason[0] != '\0' ? reason : "Error";
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s\n",
                     status, reason, strlen(text) + 1, text);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- the master's check ---- */

struct span {
    const char *at;
    size_t len;
};

/* One llhttp pass over the peeked bytes after the method, in a single
 * execute call: every span callback then points into the caller's buffer. */
struct check {
    llhttp_t ll;
    struct up_head_rules rules;
    struct span method, target, name, value;
    int minor; /* as served: up_head_rules_version() */
    int err;   /* set by a callback that failed */
};

static void span_add(struct span *s, const char *at, size_t len)
{
    if (s->at == NULL) {
        s->at = at;
    }
    s->len += len;
}

static struct check *check_of(llhttp_t *ll)
{
    return ll->data;
}

static int check_fail(struct check *c, int err)
{
    c->err = err;
    return HPE_USER;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    span_add(&check_of(ll)->target, at, len);
    return 0;
}

static int on_field(llhttp_t *ll, const char *at, size_t len)
{
    span_add(&check_of(ll)->name, at, len);
    return 0;
}

static int on_value(llhttp_t *ll, const char *at, size_t len)
{
    span_add(&check_of(ll)->value, at, len);
    return 0;
}

static int on_url_complete(llhttp_t *ll)
{
    struct check *c = check_of(ll);
    int r = up_head_rules_target(c->method.at, c->method.len, c->target.at, c->target.len);
    return r < 0 ? check_fail(c, r) : 0;
}

static int on_version_complete(llhttp_t *ll)
{
    struct check *c = check_of(ll);
    int r = up_head_rules_version(ll->http_major, ll->http_minor);
    c->minor = r;
    return r < 0 ? check_fail(c, r) : 0;
}

static int on_field_complete(llhttp_t *ll)
{
    struct check *c = check_of(ll);
    int r = up_head_rules_name(c->name.at, c->name.len);
    return r < 0 ? check_fail(c, r) : 0;
}

static int on_value_complete(llhttp_t *ll)
{
    struct check *c = check_of(ll);
    const char *value = c->value.at != NULL ? c->value.at : "";
    size_t len = c->value.len;
    up_head_trim_end(value, &len);
    int r = up_head_rules_field(&c->rules, c->name.at, c->name.len, value, len);
    c->name = (struct span){NULL, 0};
    c->value = (struct span){NULL, 0};
    return r < 0 ? check_fail(c, r) : 0;
}

/* Pausing here leaves the body (if any) unread: it is not the master's. */
static int on_headers_complete(llhttp_t *ll)
{
    struct check *c = check_of(ll);
    bool chunked = (ll->flags & F_CHUNKED) != 0;
    int r = up_head_rules_complete(&c->rules, ll->http_major, ll->http_minor, chunked);
    if (r == 0) {
        r = up_head_rules_upgrade(&c->rules, c->method.at, c->method.len, c->minor,
                                  chunked || ll->content_length > 0);
    }
    return r < 0 ? check_fail(c, r) : HPE_PAUSED;
}

static const llhttp_settings_t check_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_url_complete = on_url_complete,
    .on_version_complete = on_version_complete,
    .on_header_field_complete = on_field_complete,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
};

/* Returns 1 when llhttp reached the end of the head exactly at buf + len, 0
 * when it consumed everything and wants more, or -errno. */
static int check_run(struct check *c, const char *buf, size_t len)
{
    if (len == 0) {
        return 0;
    }
    llhttp_errno_t e = llhttp_execute(&c->ll, buf, len);
    if (e == HPE_OK) {
        return 0;
    }
    if (e == HPE_PAUSED) {
        return llhttp_get_error_pos(&c->ll) == buf + len ? 1 : -EPROTO;
    }
    return c->err < 0 ? c->err : up_head_llhttp_error(e);
}

/* The scanner stopped after the SP that ends the method, at buf + end: the
 * method follows the empty lines it skipped. llhttp gets its stand-in. */
static int check_method(struct check *c, const char *buf, size_t end)
{
    size_t start = 0;
    while (buf[start] == '\r') {
        start += 2;
    }
    c->method = (struct span){buf + start, end - 1 - start};
    const char *standin = up_head_llhttp_method(c->method.at, c->method.len);
    llhttp_errno_t e = llhttp_execute(&c->ll, standin, strlen(standin));
    return e == HPE_OK ? 0 : up_head_llhttp_error(e);
}

static void check_fill(const struct check *c, const char *buf, size_t len, struct up_head *h)
{
    const char *target_end = c->target.at + c->target.len;
    const char *eol = memchr(target_end, '\n', (size_t)(buf + len - target_end));
    h->len = len;
    h->method = c->method.at;
    h->method_len = c->method.len;
    h->target = c->target.at;
    h->target_len = c->target.len;
    h->minor = c->minor;
    /* The request line ends in the first LF after the target; the head ends
     * in CRLF CRLF, whose last CRLF is not part of any field line. */
    h->fields = eol + 1;
    h->fields_len = (size_t)(buf + len - 2 - h->fields);
}

/* The scanner goes first, over at most max_head bytes; llhttp then sees only
 * the bytes before the first bad one, so that the error reported is the one
 * at the earliest byte, whatever the split of the input, as in the worker.
 * The scanner stops once after the method, where llhttp gets its stand-in. */
int up_head_check(const char *buf, size_t len, size_t max_head, struct up_head *ret_head)
{
    if (max_head == 0) {
        max_head = UP_HEAD_MAX_DEFAULT;
    }
    size_t limit = len < max_head ? len : max_head;
    struct up_head_scan scan;
    up_head_scan_init(&scan, false);
    size_t used;
    int s = up_head_scan_feed(&scan, buf, limit, &used);

    struct check c = {0};
    up_head_llhttp_init(&c.ll, &check_settings, &c);
    int r = 0;
    if (s == UP_HEAD_SCAN_METHOD) {
        size_t start = used;
        r = check_method(&c, buf, start);
        s = up_head_scan_feed(&scan, buf + start, limit - start, &used);
        if (r == 0) {
            r = check_run(&c, buf + start, used);
        }
        used += start;
    }
    if (r < 0) {
        return r;
    }
    if (s < 0) {
        return s;
    }
    if (s == UP_HEAD_SCAN_MORE && r == 0) {
        return used >= max_head ? -E2BIG : UP_HEAD_PARTIAL;
    }
    if (s != UP_HEAD_SCAN_END || r != 1 || c.target.at == NULL) {
        return -EPROTO; /* the scanner and llhttp disagree on where the head ends */
    }
    check_fill(&c, buf, used, ret_head);
    return UP_HEAD_COMPLETE;
}

/* ---- lookups in a checked head ---- */

/* The next field line of a checked head: no CR inside a line (llhttp refused
 * it), one ':' after a token name. Returns false at the end. */
static bool next_field(const char **cur, const char *end, struct span *name, struct span *value)
{
    if (*cur >= end) {
        return false;
    }
    const char *line = *cur;
    const char *eol = memchr(line, '\r', (size_t)(end - line));
    if (eol == NULL) {
        eol = end;
    }
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (colon == NULL) {
        return false;
    }
    const char *v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t')) {
        v++;
    }
    *name = (struct span){line, (size_t)(colon - line)};
    *value = (struct span){v, (size_t)(eol - v)};
    up_head_trim_end(value->at, &value->len);
    *cur = eol + 2;
    return true;
}

int up_head_header(const struct up_head *head, const char *name, const char **ret_value,
                   size_t *ret_len)
{
    if (up_head_name_is(name, strlen(name), "host") &&
        up_uri_absolute_authority(head->target, head->target_len, ret_value, ret_len)) {
        return 0;
    }
    const char *cur = head->fields;
    const char *end = head->fields + head->fields_len;
    struct span n, v;
    while (next_field(&cur, end, &n, &v)) {
        if (n.len == strlen(name) && strncasecmp(n.at, name, n.len) == 0) {
            *ret_value = v.at;
            *ret_len = v.len;
            return 0;
        }
    }
    return -ENOENT;
}

/* Look for `name=value` among the `; `-separated pairs of one Cookie value. */
static bool cookie_find(struct span cookies, const char *name, struct span *ret)
{
    size_t name_len = strlen(name);
    const char *p = cookies.at;
    const char *end = cookies.at + cookies.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ';')) {
            p++;
        }
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pair_end = semi != NULL ? semi : end;
        if ((size_t)(pair_end - p) > name_len && memcmp(p, name, name_len) == 0 &&
            p[name_len] == '=') {
            ret->at = p + name_len + 1;
            ret->len = (size_t)(pair_end - ret->at);
            up_head_trim_end(ret->at, &ret->len);
            return true;
        }
        p = pair_end;
    }
    return false;
}

int up_head_cookie(const struct up_head *head, const char *name, const char **ret_value,
                   size_t *ret_len)
{
    const char *cur = head->fields;
    const char *end = head->fields + head->fields_len;
    struct span n, v, found;
    while (next_field(&cur, end, &n, &v)) {
        if (up_head_name_is(n.at, n.len, "cookie") && cookie_find(v, name, &found)) {
            *ret_value = found.at;
            *ret_len = found.len;
            return 0;
        }
    }
    return -ENOENT;
}
