/*
 * head: the master's first-request check. Each input is checked at every
 * prefix, each from a buffer of exactly that size (ASan catches a read past
 * the peeked bytes).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/http_cases.h"
#include "head.h"

static int check_prefix(const char *in, size_t len, size_t max_head, struct up_head *ret)
{
    char *copy = malloc(len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, in, len);
    struct up_head h;
    int r = up_head_check(copy, len, max_head, &h);
    if (r == UP_HEAD_COMPLETE && ret != NULL) {
        /* Rebase the spans onto in, which outlives the copy. */
        *ret = h;
        ret->method = in + (h.method - copy);
        ret->target = in + (h.target - copy);
        ret->fields = in + (h.fields - copy);
    }
    free(copy);
    return r;
}

/* Every proper prefix of the head is PARTIAL; the head, and the head with
 * anything after it, is COMPLETE with the head's length. */
static void expect_complete(const char *head, const char *after, struct up_head *ret)
{
    size_t len = strlen(head);
    for (size_t k = 0; k < len; k++) {
        cr_assert_eq(check_prefix(head, k, 0, NULL), UP_HEAD_PARTIAL, "prefix %zu of %s", k, head);
    }
    char all[1024];
    snprintf(all, sizeof(all), "%s%s", head, after);
    for (size_t k = len; k <= strlen(all); k++) {
        cr_assert_eq(check_prefix(all, k, 0, ret), UP_HEAD_COMPLETE, "%zu of %s", k, all);
        cr_assert_eq(ret->len, len);
    }
    ret->method = head + (ret->method - all);
    ret->target = head + (ret->target - all);
    ret->fields = head + (ret->fields - all);
}

/* Each prefix is PARTIAL until the bad byte arrives, and err from then on. */
static void expect_error(const char *in, size_t max_head, int err)
{
    size_t len = strlen(in);
    bool seen = false;
    for (size_t k = 0; k <= len; k++) {
        int r = check_prefix(in, k, max_head, NULL);
        if (seen) {
            cr_assert_eq(r, err, "prefix %zu of %s: %d after the error", k, in, r);
        } else {
            cr_assert(r == UP_HEAD_PARTIAL || r == err, "prefix %zu of %s: %d", k, in, r);
            seen = r == err;
        }
    }
    cr_assert(seen, "no error for %s", in);
}

static void expect_span(const char *at, size_t len, const char *want)
{
    cr_assert_eq(len, strlen(want), "%.*s != %s", (int)len, at, want);
    cr_assert_eq(memcmp(at, want, len), 0, "%.*s != %s", (int)len, at, want);
}

Test(head, partial_head_waits_for_more_and_complete_head_is_reported, .timeout = 10)
{
    struct up_head h;
    expect_complete("GET /index.html?a=b HTTP/1.1\r\nHost: example.com\r\n\r\n", "", &h);
    expect_span(h.method, h.method_len, "GET");
    expect_span(h.target, h.target_len, "/index.html?a=b");
    cr_assert_eq(h.minor, 1);
    expect_span(h.fields, h.fields_len, "Host: example.com\r\n");

    expect_complete("OPTIONS * HTTP/1.0\r\n\r\n", "", &h);
    expect_span(h.method, h.method_len, "OPTIONS");
    expect_span(h.target, h.target_len, "*");
    cr_assert_eq(h.minor, 0);
    cr_assert_eq(h.fields_len, 0);

    expect_complete("\r\nPOST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                    "Expect: 100-continue\r\n\r\n",
                    "", &h);
    expect_span(h.method, h.method_len, "POST");
}

Test(head, head_followed_by_body_or_pipelined_request_is_complete, .timeout = 10)
{
    struct up_head h;
    expect_complete("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", "hello", &h);
    expect_span(h.target, h.target_len, "/p");
    expect_complete("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET /2 HTTP/1.1\r\n\r\n", &h);
    expect_span(h.target, h.target_len, "/1");
    expect_complete("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "5\r\nhello\r\n0\r\n\r\n", &h);
    /* The body is not checked: not the master's business. */
    expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n", "\n\n\x01 garbage",
                    &h);
}

Test(head, header_and_cookie_lookup_without_copying, .timeout = 10)
{
    const char *in = "GET / HTTP/1.1\r\nHost: h\r\nX-Route:  blue \t\r\nCookie: a=1; sid=abc\r\n"
                     "cookie: other=2;up=w3\r\nEmpty:\r\n\r\n";
    struct up_head h;
    cr_assert_eq(up_head_check(in, strlen(in), 0, &h), UP_HEAD_COMPLETE);
    const char *v;
    size_t n;
    cr_assert_eq(up_head_header(&h, "x-route", &v, &n), 0);
    expect_span(v, n, "blue");
    cr_assert(v > in && v < in + strlen(in), "a span into the buffer");
    cr_assert_eq(up_head_header(&h, "HOST", &v, &n), 0);
    expect_span(v, n, "h");
    cr_assert_eq(up_head_header(&h, "empty", &v, &n), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(up_head_header(&h, "X-Rout", &v, &n), -ENOENT);
    cr_assert_eq(up_head_cookie(&h, "sid", &v, &n), 0);
    expect_span(v, n, "abc");
    cr_assert_eq(up_head_cookie(&h, "up", &v, &n), 0);
    expect_span(v, n, "w3");
    cr_assert_eq(up_head_cookie(&h, "a", &v, &n), 0);
    expect_span(v, n, "1");
    cr_assert_eq(up_head_cookie(&h, "si", &v, &n), -ENOENT);
    cr_assert_eq(up_head_cookie(&h, "nope", &v, &n), -ENOENT);
}

Test(head, malformed_heads_are_400, .timeout = 10)
{
    const char *bad[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "hello world\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET /\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/1.1\r\nHo st: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_error(bad[i], 0, -EPROTO);
    }
}

Test(head, obs_fold_and_bare_lf_are_400, .timeout = 10)
{
    expect_error("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, -EPROTO);
    expect_error("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, -EPROTO);
    expect_error("GET / HTTP/1.1\nHost: h\r\n\r\n", 0, -EPROTO);
    expect_error("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 0, -EPROTO);
    expect_error("GET / HTTP/1.1\r\nHost: h\r\n\n", 0, -EPROTO);
    expect_error("\nGET / HTTP/1.1\r\n\r\n", 0, -EPROTO);
}

Test(head, framing_conflicts_are_400, .timeout = 10)
{
    expect_error("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, -EPROTO);
    expect_error("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 0, -EPROTO);
    expect_error("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 0, -EPROTO);
    expect_error("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
                 -EPROTO);
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 0,
                 -EPROTO);
    expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, -EPROTO);
}

Test(head, unknown_transfer_coding_is_501_and_version_505, .timeout = 10)
{
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 0, -EOPNOTSUPP);
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, -EOPNOTSUPP);
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, -EOPNOTSUPP);
    expect_error("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n", 0, -EOPNOTSUPP);
    expect_error("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\nConnection: upgrade\r\n"
                 "Upgrade: h2c\r\n\r\n",
                 0, -EOPNOTSUPP);
    expect_error("GET / HTTP/2.0\r\n\r\n", 0, -EPROTONOSUPPORT);
    expect_error("GET / HTTP/3.1\r\nHost: h\r\n\r\n", 0, -EPROTONOSUPPORT);
    cr_assert_eq(up_head_error_status(-EOPNOTSUPP), 501);
    cr_assert_eq(up_head_error_status(-EPROTONOSUPPORT), 505);
    cr_assert_eq(up_head_error_status(-EPROTO), 400);
    cr_assert_eq(up_head_error_status(-E2BIG), 431);
}

Test(head, head_over_the_limit_is_431, .timeout = 10)
{
    const char *exact = "GET / HTTP/1.1\r\nHost: 01234567\r\n\r\n";
    cr_assert_eq(strlen(exact), 34);
    struct up_head h;
    cr_assert_eq(check_prefix(exact, 34, 34, &h), UP_HEAD_COMPLETE);
    cr_assert_eq(h.len, 34);
    cr_assert_eq(check_prefix(exact, 33, 34, NULL), UP_HEAD_PARTIAL);
    cr_assert_eq(check_prefix(exact, 34, 33, NULL), -E2BIG);
    cr_assert_eq(check_prefix(exact, 33, 33, NULL), -E2BIG, "a partial head at the limit");
    cr_assert_eq(check_prefix(exact, 32, 33, NULL), UP_HEAD_PARTIAL);

    /* The default limit is 16 KiB. */
    static char big[UP_HEAD_MAX_DEFAULT + 64];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nHost: h\r\nX: ", 28);
    cr_assert_eq(check_prefix(big, UP_HEAD_MAX_DEFAULT - 1, 0, NULL), UP_HEAD_PARTIAL);
    cr_assert_eq(check_prefix(big, UP_HEAD_MAX_DEFAULT, 0, NULL), -E2BIG);
    cr_assert_eq(check_prefix(big, sizeof(big), 0, NULL), -E2BIG);
    memcpy(big + UP_HEAD_MAX_DEFAULT - 4, "\r\n\r\n", 4);
    cr_assert_eq(check_prefix(big, sizeof(big), 0, &h), UP_HEAD_COMPLETE);
    cr_assert_eq(h.len, UP_HEAD_MAX_DEFAULT);
}

Test(head, scanner_finds_the_end_of_a_trailer_section, .timeout = 10)
{
    struct up_head_scan s;
    size_t used;
    up_head_scan_init(&s, true);
    cr_assert_eq(up_head_scan_feed(&s, "\r\nrest", 6, &used), 1);
    cr_assert_eq(used, 2);
    up_head_scan_init(&s, true);
    cr_assert_eq(up_head_scan_feed(&s, "A: b\r", 5, &used), 0);
    cr_assert_eq(used, 5);
    cr_assert_eq(up_head_scan_feed(&s, "\n\r\nX", 4, &used), 1);
    cr_assert_eq(used, 3);
    up_head_scan_init(&s, true);
    cr_assert_eq(up_head_scan_feed(&s, "A: b\r\n c\r\n", 10, &used), -EPROTO);
    cr_assert_eq(used, 6, "the offset of the bad byte");
}

Test(head, error_response_is_complete_and_closes, .timeout = 10)
{
    char buf[UP_HEAD_ERROR_MAX];
    size_t n = up_head_error_response(408, buf, sizeof(buf));
    const char *want = "HTTP/1.1 408 Request Timeout\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: 16\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "Request Timeout\n";
    cr_assert_eq(n, strlen(want));
    cr_assert_eq(memcmp(buf, want, n), 0);
    cr_assert_eq(up_head_error_response(431, buf, sizeof(buf) - 1), 0, "too small a buffer");
    cr_assert_gt(up_head_error_response(431, buf, sizeof(buf)), 0);
    cr_assert_str_eq(up_head_reason(404), "Not Found");
    cr_assert_str_eq(up_head_reason(299), "");
}

/* Found by fuzzing: llhttp reads "GET  /" (no version) as HTTP/0.9 and
 * never reports a version, so the version rule must hold at completion.
 * The scanner now refuses it first, at the second SP (an empty target). */
Test(head, http09_request_line_is_refused, .timeout = 10)
{
    static const char req[] = "GET  /\r\n\r\n";
    struct up_head h;
    int r = up_head_check(req, sizeof(req) - 1, 0, &h);
    cr_assert_lt(r, 0, "HTTP/0.9 accepted (minor %d)", h.minor);
    cr_assert_eq(up_head_error_status(r), 400);
    struct up_head_rules rules = {0};
    cr_assert_eq(up_head_rules_complete(&rules, 0, 9, false), -EPROTONOSUPPORT,
                 "a version llhttp never reported is still refused at completion");
}

/* ---- the request line and the target (RFC 9112 3, RFC 9110 4, 9.1) ---- */

/* Each of bad[] is 400 at every prefix from its bad byte on. */
static void expect_all_400(const char *const *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        expect_error(bad[i], 0, -EPROTO);
    }
}

#define EXPECT_ALL_400(bad) expect_all_400(bad, sizeof(bad) / sizeof(bad[0]))

/* llhttp takes HT and FF inside a path: a front end that splits the request
 * line on any whitespace sees the target /a and another version. */
Test(head, control_bytes_and_non_ascii_in_the_target_are_400, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_target_bytes);
    struct up_head h;
    expect_complete("GET /a|b{c}\"<>^`\\?x=[1] HTTP/1.1\r\nHost: h\r\n\r\n", "", &h);
    expect_span(h.target, h.target_len, "/a|b{c}\"<>^`\\?x=[1]");
}

/* RFC 6455 4.1: an Upgrade to websocket is a whole handshake or 400, the
 * same as the worker's parser decides (tests/lib/http_cases.h). */
Test(head, websocket_handshake_is_whole_or_400, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_upgrades);
    struct up_head h;
    for (size_t i = 0; i < sizeof(up_http_good_upgrades) / sizeof(up_http_good_upgrades[0]); i++) {
        expect_complete(up_http_good_upgrades[i], "\x81\x80", &h);
    }
    const char *v;
    size_t n;
    cr_assert_eq(up_head_header(&h, "Sec-WebSocket-Protocol", &v, &n), 0);
    expect_span(v, n, "chat, superchat");
}

/* RFC 9110 4.1: a fragment is never sent; llhttp hands it on in the target,
 * where it would reach the app inside the path or the query. */
Test(head, fragment_in_the_target_is_400, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_fragment);
}

/* RFC 9112 3.2: Host is required in HTTP/1.1 (also as 1.2), and one with an
 * invalid value is 400; HTTP/1.0 predates it. */
Test(head, http11_without_host_is_400_and_http10_is_not, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_no_host);
    struct up_head h;
    expect_complete("GET / HTTP/1.0\r\n\r\n", "", &h);
    cr_assert_eq(h.minor, 0);
    expect_complete("GET / HTTP/1.1\r\nHost:\r\n\r\n", "", &h);
}

Test(head, invalid_host_value_is_400, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_host_values);
    static const char *const good[] = {
        "example.com:8080", "[::1]:80", "127.0.0.1", "h:", "[v1.x:y]", "%41b", "a-b_c~d!$&'()*+,;=",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char in[128];
        struct up_head h;
        const char *v;
        size_t n;
        snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
        expect_complete(in, "", &h);
        cr_assert_eq(up_head_header(&h, "host", &v, &n), 0);
        expect_span(v, n, good[i]);
    }
}

/* RFC 9112 3.2.4: `*` is the target of a server-wide OPTIONS only. */
Test(head, asterisk_form_is_for_options_only, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_asterisk_form);
    struct up_head h;
    expect_complete("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "", &h);
    expect_span(h.target, h.target_len, "*");
}

/* RFC 9112 3.2.2: an absolute-form target's authority must be valid, and it
 * is the request's authority: the Host field is ignored in its favour. */
Test(head, absolute_form_needs_a_valid_authority_which_overrides_host, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_absolute_form);
    struct up_head h;
    const char *v;
    size_t n;
    expect_complete("GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n", "", &h);
    expect_span(h.target, h.target_len, "http://example.com/x?y");
    cr_assert_eq(up_head_header(&h, "Host", &v, &n), 0);
    expect_span(v, n, "example.com");
    expect_complete("GET HTTPS://[::1]:8443?q HTTP/1.0\r\n\r\n", "", &h);
    cr_assert_eq(up_head_header(&h, "host", &v, &n), 0, "the target's, without a Host field");
    expect_span(v, n, "[::1]:8443");
    expect_complete("GET /x HTTP/1.1\r\nHost: other\r\n\r\n", "", &h);
    cr_assert_eq(up_head_header(&h, "host", &v, &n), 0);
    expect_span(v, n, "other");
}

/* RFC 9112 3.2.3: CONNECT takes host:port and nothing else; llhttp also
 * takes an origin-form target for it. */
Test(head, connect_takes_the_authority_form_only, .timeout = 10)
{
    EXPECT_ALL_400(up_http_bad_connect);
    struct up_head h;
    expect_complete("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "", &h);
    expect_span(h.method, h.method_len, "CONNECT");
    expect_span(h.target, h.target_len, "example.com:443");
}

/* RFC 9110 9.1: a method is any token; llhttp's list of those it knows no
 * longer decides. Method names are case-sensitive: `get` is not GET. */
Test(head, any_token_is_a_method, .timeout = 10)
{
    static const char *const methods[] = {
        "-BLARGH", "PURGE", "get", "M-SEARCH", "DESCRIBE", "PRI", "X!#$%&'*+.^_`|~09",
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char in[128];
        struct up_head h;
        snprintf(in, sizeof(in), "\r\n%s /m HTTP/1.1\r\nHost: h\r\n\r\n", methods[i]);
        expect_complete(in, "", &h);
        expect_span(h.method, h.method_len, methods[i]);
        expect_span(h.target, h.target_len, "/m");
    }
    EXPECT_ALL_400(up_http_bad_methods);
}

/* RFC 9110 2.5: a higher minor version of HTTP/1 is handled as 1.1. The
 * version is exactly HTTP/D.D (RFC 9112 2.3): llhttp also takes RTSP/1.0
 * and ICE/1.0, and would serve them as HTTP/1.0. */
Test(head, higher_minor_version_is_http11_and_other_protocols_are_400, .timeout = 10)
{
    struct up_head h;
    expect_complete("GET / HTTP/1.2\r\nHost: h\r\n\r\n", "", &h);
    cr_assert_eq(h.minor, 1);
    expect_complete("POST / HTTP/1.9\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "", &h);
    cr_assert_eq(h.minor, 1);
    expect_error("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 0, -EPROTONOSUPPORT);
    expect_error("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 0, -EPROTONOSUPPORT);
    expect_error("GET / HTTP/9.9\r\nHost: h\r\n\r\n", 0, -EPROTONOSUPPORT);
    EXPECT_ALL_400(up_http_bad_protocols);
}
