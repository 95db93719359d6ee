#include "head.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- the scanner ---- */

enum scan_state {
    SCAN_LEAD,     /* before the request line: empty lines (CRLF) are skipped */
    SCAN_LEAD_CR,  /* the CR of such an empty line */
    SCAN_REQ,      /* in the request line */
    SCAN_REQ_CR,   /* the CR ending the request line */
    SCAN_START,    /* at the start of a field line or of the final empty line */
    SCAN_FIELD,    /* in a field line */
    SCAN_FIELD_CR, /* the CR ending a field line */
    SCAN_END_CR,   /* the CR of the final empty line */
};

void up_head_scan_init(struct up_head_scan *s, bool trailers)
{
    s->state = trailers ? SCAN_START : SCAN_LEAD;
    s->spaces = 0;
}

/* The request line must be `method SP target SP version`: llhttp accepts runs
 * of SP between the parts (and HTTP/0.9's `GET /`), which another parser in
 * front of us may split differently. */
static int scan_req(struct up_head_scan *s, char c)
{
    if (c == '\r') {
        s->state = SCAN_REQ_CR;
    } else if (c == '\n') {
        return -EPROTO;
    } else if (c == ' ' && ++s->spaces > 2) {
        return -EPROTO;
    }
    return 0;
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

/* One byte: 0 to go on, 1 when it ended the section, or -EPROTO. */
static int scan_byte(struct up_head_scan *s, char c)
{
    switch ((enum scan_state)s->state) {
    case SCAN_LEAD:
        if (c == '\r') {
            s->state = SCAN_LEAD_CR;
            return 0;
        }
        s->state = SCAN_REQ;
        return scan_req(s, c);
    case SCAN_LEAD_CR:
        s->state = SCAN_LEAD;
        return c == '\n' ? 0 : -EPROTO;
    case SCAN_REQ:
        return scan_req(s, c);
    case SCAN_REQ_CR:
        s->state = SCAN_START;
        return c == '\n' && s->spaces == 2 ? 0 : -EPROTO;
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
        return c == '\n' ? 1 : -EPROTO;
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
    return 0;
}

/* ---- the rules ---- */

bool up_head_token(const char *s, size_t len)
{
    if (len == 0) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == 0 || strchr("!#$%&'*+-.^_`|~", c) == NULL)) {
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

/* Two Host fields would let two routers pick different hosts. Any coding
 * but `chunked` we cannot decode, and more than one field is either that or
 * chunked twice, which RFC 9112 6.1 forbids. */
int up_head_rules_field(struct up_head_rules *r, const char *name, size_t name_len,
                        const char *value, size_t value_len)
{
    if (up_head_name_is(name, name_len, "host")) {
        if (r->host) {
            return -EPROTO;
        }
        r->host = true;
    } else if (up_head_name_is(name, name_len, "transfer-encoding")) {
        if (r->te || !up_head_name_is(value, value_len, "chunked")) {
            return -EOPNOTSUPP;
        }
        r->te = true;
    }
    return 0;
}

int up_head_rules_version(int major, int minor)
{
    return major == 1 && (minor == 0 || minor == 1) ? 0 : -EPROTONOSUPPORT;
}

/* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty
 * framing (a 1.0 hop in between would not know it). A Transfer-Encoding we
 * passed that llhttp did not take for chunked (`chunked<HT>`) it refuses only
 * after on_headers_complete, where the master has already stopped, and not
 * at all for an Upgrade without a body: decide it here, for both. */
int up_head_rules_complete(const struct up_head_rules *r, int major, int minor, bool chunked)
{
    /* Checked here too, not only when the version is read: llhttp takes a
     * request line without a version for HTTP/0.9 and never reports a
     * version for it, so that check alone would let 0.9 through. */
    int v = up_head_rules_version(major, minor);
    if (v < 0) {
        return v;
    }
    if (r->te && minor == 0) {
        return -EPROTO;
    }
    return r->te && !chunked ? -EOPNOTSUPP : 0;
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

/* One llhttp pass over the peeked bytes, in a single execute call: every span
 * callback then points into the caller's buffer. */
struct check {
    llhttp_t ll;
    struct up_head_rules rules;
    struct span method, target, name, value;
    int err; /* set by a callback that failed */
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

static int on_method(llhttp_t *ll, const char *at, size_t len)
{
    span_add(&check_of(ll)->method, at, len);
    return 0;
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

static int on_version_complete(llhttp_t *ll)
{
    int r = up_head_rules_version(ll->http_major, ll->http_minor);
    return r < 0 ? check_fail(check_of(ll), r) : 0;
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
    int r = up_head_rules_complete(&c->rules, ll->http_major, ll->http_minor,
                                   (ll->flags & F_CHUNKED) != 0);
    return r < 0 ? check_fail(c, r) : HPE_PAUSED;
}

static const llhttp_settings_t check_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
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

static void check_fill(const struct check *c, const char *buf, size_t len, struct up_head *h)
{
    const char *target_end = c->target.at + c->target.len;
    const char *eol = memchr(target_end, '\n', (size_t)(buf + len - target_end));
    h->len = len;
    h->method = c->method.at;
    h->method_len = c->method.len;
    h->target = c->target.at;
    h->target_len = c->target.len;
    h->minor = c->ll.http_minor;
    /* The request line ends in the first LF after the target; the head ends
     * in CRLF CRLF, whose last CRLF is not part of any field line. */
    h->fields = eol + 1;
    h->fields_len = (size_t)(buf + len - 2 - h->fields);
}

/* The scanner goes first, over at most max_head bytes; llhttp then sees only
 * the bytes before the first bad one, so that the error reported is the one
 * at the earliest byte, whatever the split of the input, as in the worker. */
int up_head_check(const char *buf, size_t len, size_t max_head, struct up_head *ret_head)
{
    if (max_head == 0) {
        max_head = UP_HEAD_MAX_DEFAULT;
    }
    struct up_head_scan scan;
    up_head_scan_init(&scan, false);
    size_t used;
    int s = up_head_scan_feed(&scan, buf, len < max_head ? len : max_head, &used);

    struct check c = {0};
    llhttp_init(&c.ll, HTTP_REQUEST, &check_settings);
    c.ll.data = &c;
    int r = check_run(&c, buf, used);
    if (r < 0) {
        return r;
    }
    if (s < 0) {
        return s;
    }
    if (s == 0 && r == 0) {
        return used >= max_head ? -E2BIG : UP_HEAD_PARTIAL;
    }
    if (s != 1 || r != 1 || c.method.at == NULL || c.target.at == NULL) {
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
