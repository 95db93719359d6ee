/*
 * head: the strictness rules for an HTTP/1.1 request head, shared by the
 * master's first-request check and the worker's parser, so that both answer
 * the same bytes the same way.
 *
 * llhttp (built without LLHTTP_STRICT_MODE) accepts things a server in front
 * of other servers must refuse: bare LF line ends, obs-fold continuation
 * lines, whitespace inside field names, control bytes (HT, FF) in the
 * request-target, RTSP/ICE versions, HTTP/0.9 and HTTP/2.0 request lines;
 * and it refuses methods it does not know. Request smuggling lives in such
 * differences between two parsers, so this module decides instead of the
 * build of llhttp that happens to be linked:
 *
 *   - the scanner (up_head_scan_*) walks the raw bytes of a head or of a
 *     trailer section: every line ends in CRLF, no line starts with SP/HT,
 *     and the request line is exactly `method SP request-target SP
 *     HTTP/D.D`: the method a token, the target VCHARs without `#`;
 *   - the method is the scanner's to judge, not llhttp's: llhttp is given
 *     a stand-in (up_head_llhttp_method()) so that any token reaches the
 *     app;
 *   - the rules (up_head_rules_*) judge what llhttp reports: the target's
 *     form (origin; absolute with a valid authority; `*` for OPTIONS only;
 *     authority-form for CONNECT only), field names are tokens, one Host
 *     with a valid value, Host present in HTTP/1.1, Transfer-Encoding is
 *     exactly one `chunked`, no Transfer-Encoding in HTTP/1.0, the version
 *     is 1.x (1.2 and up served as 1.1, RFC 9110 2.5), and an Upgrade to
 *     websocket is a whole, well-formed WebSocket handshake (RFC 6455 4.1),
 *     so that a worker is never handed one it would have to refuse.
 *
 * The master uses up_head_check() on bytes it peeked; it never consumes them.
 *
 * Errors are -errno with one meaning each; up_head_error_status() gives the
 * status to answer:
 *
 *   -EPROTO           400 malformed
 *   -EMSGSIZE         413 body over the limit (the worker's parser only)
 *   -E2BIG            431 head over the limit, or too many header fields
 *   -EOPNOTSUPP       501 a Transfer-Encoding other than `chunked`
 *   -EPROTONOSUPPORT  505 an HTTP version other than 1.x
 *
 * Pure: no I/O, no allocation, no global state; never logs.
 */
#ifndef UP_HEAD_H
#define UP_HEAD_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UP_HEAD_MAX_DEFAULT (16u * 1024u)

/* ---- the master's first-request check ---- */

enum up_head_result {
    UP_HEAD_PARTIAL = 0,  /* valid so far; wait for more bytes */
    UP_HEAD_COMPLETE = 1, /* a whole valid head is in the buffer */
};

/* A checked head: spans into the caller's buffer, nothing is copied. */
struct up_head {
    size_t len;         /* bytes of the head, through the empty line */
    const char *method; /* "GET", ... */
    size_t method_len;  /* */
    const char *target; /* the request target as sent */
    size_t target_len;  /* */
    int minor;          /* 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1.2 .. 1.9) */
    const char *fields; /* the header lines, each ending in CRLF */
    size_t fields_len;  /* */
};

/* Check the head at the start of buf[0..len) (bytes peeked from a new
 * connection; what follows the head, a body or a pipelined request, is
 * ignored). max_head is the largest head accepted (0: the default); a head
 * not complete within max_head bytes is -E2BIG, even if it might still end.
 * Returns UP_HEAD_COMPLETE with *ret_head filled, UP_HEAD_PARTIAL, or an
 * error above; *ret_head is only written on UP_HEAD_COMPLETE. */
int up_head_check(const char *buf, size_t len, size_t max_head, struct up_head *ret_head);

/* The value of the first header field named name (case-insensitive), without
 * surrounding whitespace, as a span into the checked buffer. Returns 0, or
 * -ENOENT when there is none. "Host" is the request's one authority: the
 * target's for an absolute-form target (RFC 9112 3.2.2: it overrides the
 * Host field), as the worker shows it to the app. */
int up_head_header(const struct up_head *head, const char *name, const char **ret_value,
                   size_t *ret_len);

/* The value of cookie name in the Cookie header field(s). Returns 0 or
 * -ENOENT. */
int up_head_cookie(const struct up_head *head, const char *name, const char **ret_value,
                   size_t *ret_len);

/* ---- answers ---- */

/* The status to answer for an error of this module or of the worker's
 * parser: 400, 413, 431, 501, 505; 500 for anything else. */
int up_head_error_status(int err);

/* The reason phrase of status ("Not Found"), or "" if unknown. */
const char *up_head_reason(int status);

/* Longest response up_head_error_response() writes. */
#define UP_HEAD_ERROR_MAX 192

/* Write a complete short response for status into buf: a text body naming the
 * status and `Connection: close` (the caller closes after sending it). Works
 * for any status 100..599. Returns the length written, or 0 if cap is below
 * UP_HEAD_ERROR_MAX. */
size_t up_head_error_response(int status, char *buf, size_t cap);

/* ---- the building blocks, also used by the worker's parser ---- */

/* The scanner. Its state is a few bytes, so it runs incrementally: feed it
 * the bytes of the section in any pieces. */
struct up_head_scan {
    uint8_t state; /* private */
    uint8_t pos;   /* private: bytes into the part of the request line */
};

enum up_head_scan_result {
    UP_HEAD_SCAN_MORE = 0,   /* all of buf was valid; the section goes on */
    UP_HEAD_SCAN_END = 1,    /* the section ended */
    UP_HEAD_SCAN_METHOD = 2, /* the method ended: the caller gives llhttp its stand-in */
};

/* Start a head (request line first, empty lines before it allowed) or, with
 * trailers true, a trailer section (header lines only). */
void up_head_scan_init(struct up_head_scan *s, bool trailers);

/* Scan buf[0..len). Returns UP_HEAD_SCAN_END when the section ended, with
 * *ret_used the bytes through the empty line; UP_HEAD_SCAN_METHOD (a head
 * only, once) when the SP after the method was reached, with *ret_used the
 * bytes through that SP: the bytes before it, after any leading CRLFs, are
 * the method; feed the rest again. UP_HEAD_SCAN_MORE when all of buf was
 * valid and the section goes on (*ret_used = len); -EPROTO on a bad byte,
 * with *ret_used its offset (the bytes before it were valid). After END or
 * -EPROTO, init again before reuse. */
int up_head_scan_feed(struct up_head_scan *s, const char *buf, size_t len, size_t *ret_used);

/* llhttp_init() for a request head, as both parsers run llhttp: its version
 * checks (it knows 0.9, 1.0, 1.1 and 2.0) are left out, for the scanner
 * checks the version's shape and up_head_rules_version() its numbers. */
void up_head_llhttp_init(llhttp_t *ll, const llhttp_settings_t *settings, void *data);

/* What llhttp is given in place of the method (with the SP after it): llhttp
 * knows a fixed list of methods and treats some of them specially, so it
 * sees CONNECT (whose target and framing it must know) or GET. */
const char *up_head_llhttp_method(const char *method, size_t len);

/* The target as llhttp reported it, with the method. Returns 0 or -EPROTO. */
int up_head_rules_target(const char *method, size_t method_len, const char *target, size_t len);

/* What the rules remember across the fields of one head. Zero it to start. */
struct up_head_rules {
    bool host;           /* a Host field was seen */
    bool te;             /* a Transfer-Encoding field was seen */
    bool ws;             /* an Upgrade field names websocket: a WebSocket handshake */
    bool conn_upgrade;   /* Connection lists the upgrade option */
    bool ws_bad;         /* a Sec-WebSocket-Key or -Version value is malformed */
    uint8_t ws_keys;     /* Sec-WebSocket-Key fields seen */
    uint8_t ws_versions; /* Sec-WebSocket-Version fields seen */
};

/* True if s[0..len) is a non-empty token (RFC 9110 tchar). */
bool up_head_token(const char *s, size_t len);

/* A field name as llhttp reported it. Returns 0 or -EPROTO. */
int up_head_rules_name(const char *name, size_t len);

/* A complete field: the name, and the value without surrounding whitespace.
 * Returns 0, -EPROTO or -EOPNOTSUPP. */
int up_head_rules_field(struct up_head_rules *r, const char *name, size_t name_len,
                        const char *value, size_t value_len);

/* The request line's version. Returns the minor version to serve, 0 or 1
 * (HTTP/1.2 .. 1.9 are served as 1.1), or -EPROTONOSUPPORT. */
int up_head_rules_version(int major, int minor);

/* The head is complete: major/minor as llhttp parsed them (also for a
 * request line without a version, which llhttp takes as HTTP/0.9);
 * chunked is llhttp's verdict (F_CHUNKED). Returns 0, -EPROTONOSUPPORT,
 * -EPROTO (also for HTTP/1.1 without Host) or -EOPNOTSUPP. */
int up_head_rules_complete(const struct up_head_rules *r, int major, int minor, bool chunked);

/* The head is complete and is a WebSocket opening handshake (r->ws): RFC
 * 6455 4.1 has it a GET in HTTP/1.1 or later, with `Connection: upgrade`,
 * exactly one Sec-WebSocket-Key of 16 bytes in base64 and exactly one
 * Sec-WebSocket-Version (a number; which numbers are spoken is the worker's
 * to answer, with 426), and no body: the bytes after the head are frames.
 * body: Content-Length above 0 or chunked. Returns 0 (also when r->ws is
 * false) or -EPROTO. */
int up_head_rules_upgrade(const struct up_head_rules *r, const char *method, size_t method_len,
                          int minor, bool body);

/* Map an llhttp error (enum llhttp_errno) that no callback of ours caused to
 * -EPROTO, -EOPNOTSUPP or -EPROTONOSUPPORT. */
int up_head_llhttp_error(int hpe);

/* Case-insensitive comparison of s[0..len) with the NUL-terminated lower-case
 * text lc. */
bool up_head_name_is(const char *s, size_t len, const char *lc);

/* Shrink s[0..*len) by the SP and HT at its end. */
void up_head_trim_end(const char *s, size_t *len);

#endif
