/*
 * http: the worker's protocol engine. Every request input is fed whole, split
 * in two at every byte, and one byte at a time, each feed from a buffer of its
 * exact size (ASan catches a read past it or a pointer kept into it), and the
 * events must be the same every time.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/http_cases.h"
#include "http.h"

#define LOG_MAX 16384

struct log {
    char text[LOG_MAX];
    size_t len;
};

static void log_add(struct log *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, sizeof(l->text) - l->len, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof(l->text) - l->len, "log overflow");
    l->len += (size_t)n;
}

static void log_request(struct log *l, const struct up_req *req, size_t end)
{
    size_t body_len;
    const char *body = up_req_body(req, &body_len);
    cr_assert_not_null(body);
    log_add(l, "%s %s path=%s query=%s minor=%d ka=%d\n", up_req_method(req), up_req_target(req),
            up_req_path(req), up_req_query(req), up_req_minor_version(req),
            (int)up_http_keep_alive(req));
    const char *name, *value;
    for (size_t i = 0; up_req_header_at(req, i, &name, &value) == 0; i++) {
        log_add(l, "%s=%s\n", name, value);
    }
    log_add(l, "body[%zu]=%.*s\n@%zu\n", body_len, (int)body_len, body, end);
}

/* Feed from a private copy of exactly the bytes offered. */
static int feed_copy(struct up_http_parser *p, const char *data, size_t len, size_t *ret_used)
{
    char *copy = malloc(len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, data, len);
    int r = up_http_feed(p, copy, len, ret_used);
    free(copy);
    return r;
}

/* Feed what has arrived (in[pos..avail)) until the parser needs more. Returns
 * false after an error. */
static bool drive_some(struct up_http_parser *p, const char *in, size_t *pos, size_t avail,
                       struct log *l)
{
    for (;;) {
        size_t used = 0;
        int r = feed_copy(p, in + *pos, avail - *pos, &used);
        if (r == UP_HTTP_NEED_MORE) {
            *pos = avail;
            return true;
        }
        if (r < 0) {
            log_add(l, "error %d\n", up_http_error_status(r));
            return false;
        }
        *pos += used;
        if (r == UP_HTTP_EXPECT_CONTINUE) {
            log_add(l, "expect@%zu\n", *pos);
        } else {
            log_request(l, up_http_request(p), *pos);
            up_http_request_done(p);
        }
    }
}

/* The input arrives in pieces ending at cuts[0..n), the last one at len. */
static void drive(const char *in, const size_t *cuts, size_t n, const struct up_http_limits *limits,
                  struct log *l)
{
    struct up_http_parser p;
    up_http_parser_init(&p, limits);
    up_http_parser_set_peer(&p, "192.0.2.1:4242");
    size_t pos = 0;
    l->len = 0;
    l->text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!drive_some(&p, in, &pos, cuts[i], l)) {
            break;
        }
    }
    up_http_parser_free(&p);
}

/* Parse in at every split and return the log of the whole-input run, after
 * checking every other run against it. */
static void parse_all_splits(const char *in, size_t len, const struct up_http_limits *limits,
                             struct log *ret)
{
    static struct log other;
    size_t whole[1] = {len};
    drive(in, whole, 1, limits, ret);
    for (size_t k = 1; k < len; k++) {
        size_t cuts[2] = {k, len};
        drive(in, cuts, 2, limits, &other);
        cr_assert_str_eq(other.text, ret->text, "split at %zu differs", k);
    }
    size_t *bytes = malloc((len + 1) * sizeof(*bytes));
    cr_assert_not_null(bytes);
    for (size_t k = 0; k < len; k++) {
        bytes[k] = k + 1;
    }
    drive(in, bytes, len, limits, &other);
    free(bytes);
    cr_assert_str_eq(other.text, ret->text, "one byte at a time differs");
}

static void expect_log(const char *in, const struct up_http_limits *limits, const char *want)
{
    static struct log got;
    parse_all_splits(in, strlen(in), limits, &got);
    cr_assert_str_eq(got.text, want, "got:\n%s", got.text);
}

/* ---- requests ---- */

Test(http, simple_get, .timeout = 10)
{
    expect_log("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", NULL,
               "GET / path=/ query= minor=1 ka=1\n"
               "Host=example.com\n"
               "body[0]=\n"
               "@37\n");
}

Test(http, get_with_query, .timeout = 10)
{
    expect_log("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n", NULL,
               "GET /a/b?x=1&y=2 path=/a/b query=x=1&y=2 minor=1 ka=1\n"
               "Host=h\n"
               "body[0]=\n"
               "@38\n");
}

/* RFC 9112 3.2.2: the target's authority overrides the Host field. */
Test(http, absolute_form_target_gives_the_path_and_the_host, .timeout = 10)
{
    expect_log("GET http://h:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET http://h HTTP/1.1\r\nHost: other\r\n\r\n",
               NULL,
               "GET http://h:80/p?q path=/p query=q minor=1 ka=1\n"
               "Host=h:80\n"
               "body[0]=\n"
               "@41\n"
               "GET http://h path=/ query= minor=1 ka=1\n"
               "Host=h\n"
               "body[0]=\n"
               "@79\n");
}

Test(http, leading_empty_lines_are_skipped, .timeout = 10)
{
    expect_log("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL,
               "GET / path=/ query= minor=1 ka=1\n"
               "Host=h\n"
               "body[0]=\n"
               "@31\n");
}

Test(http, headers_case_insensitive_and_in_order, .timeout = 10)
{
    const char *in = "GET / HTTP/1.1\r\nHost: h\r\nX-One:  a b \t\r\nx-two:2\r\n"
                     "X-ONE: again\r\nEmpty:\r\n\r\n";
    expect_log(in, NULL,
               "GET / path=/ query= minor=1 ka=1\n"
               "Host=h\nX-One=a b\nx-two=2\nX-ONE=again\nEmpty=\n"
               "body[0]=\n"
               "@73\n");

    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    const struct up_req *req = up_http_request(&p);
    cr_assert_str_eq(up_req_header(req, "x-one"), "a b");
    cr_assert_str_eq(up_req_header(req, "X-TWO"), "2");
    cr_assert_str_eq(up_req_header(req, "empty"), "");
    cr_assert_null(up_req_header(req, "X-Three"));
    cr_assert_str_eq(up_req_peer(req), "");
    const char *name, *value;
    cr_assert_eq(up_req_header_at(req, 4, &name, &value), 0);
    cr_assert_str_eq(name, "Empty");
    cr_assert_eq(up_req_header_at(req, 5, &name, &value), -1);
    up_http_parser_free(&p);
}

Test(http, post_content_length_body, .timeout = 10)
{
    expect_log("POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello\nworld", NULL,
               "POST /f path=/f query= minor=1 ka=1\n"
               "Host=h\nContent-Length=11\n"
               "body[11]=hello\nworld\n"
               "@60\n");
}

Test(http, chunked_body_decoded_with_extensions_and_trailers, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5;name=value\r\nhello\r\n"
               "1;a;b=\"c d\"\r\n,\r\n"
               "B\r\n 0123456789\r\n"
               "0;last\r\nChecksum: abc\r\nX-T: 1\r\n\r\n",
               NULL,
               "POST / path=/ query= minor=1 ka=1\n"
               "Host=h\nTransfer-Encoding=chunked\n"
               "body[17]=hello, 0123456789\n"
               "@142\n");
}

Test(http, chunked_body_without_trailers, .timeout = 10)
{
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        "GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        NULL,
        "POST / path=/ query= minor=1 ka=1\n"
        "Host=h\nTransfer-Encoding=chunked\n"
        "body[3]=abc\n"
        "@69\n"
        "GET /next path=/next query= minor=1 ka=1\n"
        "Host=h\n"
        "body[0]=\n"
        "@100\n");
}

Test(http, two_pipelined_requests, .timeout = 10)
{
    expect_log("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: "
               "2\r\n\r\nok",
               NULL,
               "GET /1 path=/1 query= minor=1 ka=1\n"
               "Host=h\n"
               "body[0]=\n"
               "@28\n"
               "POST /2 path=/2 query= minor=1 ka=1\n"
               "Host=h\nContent-Length=2\n"
               "body[2]=ok\n"
               "@78\n");
}

Test(http, ten_pipelined_requests_in_order, .timeout = 10)
{
    char in[1024];
    size_t len = 0;
    char want[4096];
    size_t wlen = 0;
    for (int i = 0; i < 10; i++) {
        len += (size_t)snprintf(in + len, sizeof(in) - len,
                                "GET /%d HTTP/1.1\r\nHost: h\r\nN: %d\r\n\r\n", i, i);
        wlen += (size_t)snprintf(
            want + wlen, sizeof(want) - wlen,
            "GET /%d path=/%d query= minor=1 ka=1\nHost=h\nN=%d\nbody[0]=\n@%zu\n", i, i, i, len);
    }
    expect_log(in, NULL, want);
}

Test(http, expect_100_continue_before_the_body, .timeout = 10)
{
    expect_log("PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
               NULL,
               "expect@69\n"
               "PUT /u path=/u query= minor=1 ka=1\n"
               "Host=h\nExpect=100-Continue\nContent-Length=3\n"
               "body[3]=abc\n"
               "@72\n");
}

Test(http, expect_100_continue_with_chunked_body, .timeout = 10)
{
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1\r\nx\r\n0\r\n\r\n",
        NULL,
        "expect@78\n"
        "POST / path=/ query= minor=1 ka=1\n"
        "Host=h\nExpect=100-continue\nTransfer-Encoding=chunked\n"
        "body[1]=x\n"
        "@89\n");
}

Test(http, expect_without_body_or_on_http10_is_not_reported, .timeout = 10)
{
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n"
               "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
               NULL,
               "GET / path=/ query= minor=1 ka=1\n"
               "Host=h\nExpect=100-continue\n"
               "body[0]=\n"
               "@49\n"
               "POST / path=/ query= minor=0 ka=0\n"
               "Expect=100-continue\nContent-Length=1\n"
               "body[1]=x\n"
               "@110\n");
}

Test(http, keep_alive_rules, .timeout = 10)
{
    expect_log("GET /a HTTP/1.0\r\n\r\n"
               "GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
               "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
               "GET /d HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n"
               "GET /e HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
               "GET /f HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
               NULL,
               "GET /a path=/a query= minor=0 ka=0\nbody[0]=\n@19\n"
               "GET /b path=/b query= minor=0 ka=1\nConnection=Keep-Alive\nbody[0]=\n@62\n"
               "GET /c path=/c query= minor=1 ka=1\nHost=h\nbody[0]=\n@90\n"
               "GET /d path=/d query= minor=1 ka=0\nHost=h\nConnection=foo, close\nbody[0]=\n"
               "@142\n"
               "GET /e path=/e query= minor=0 ka=0\nConnection=keep-alive, close\nbody[0]=\n"
               "@192\n"
               "GET /f path=/f query= minor=1 ka=0\nHost=h\nConnection=Upgrade\n"
               "Upgrade=websocket\nSec-WebSocket-Key=dGhlIHNhbXBsZSBub25jZQ==\n"
               "Sec-WebSocket-Version=13\nbody[0]=\n@333\n");
}

static int peer_asked;

static void peer_fill(void *ctx, char *buf, size_t cap)
{
    peer_asked++;
    snprintf(buf, cap, "%s", (const char *)ctx);
}

/* A lazily known peer is asked once, when first wanted, and kept through
 * the connection's next requests. */
Test(http, peer_is_asked_once_when_wanted, .timeout = 10)
{
    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    up_http_parser_set_peer_source(&p, peer_fill, "192.0.2.7:1234");
    const char *in = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t used;
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    cr_assert_eq(peer_asked, 0, "asked before anyone wanted it");
    cr_assert_str_eq(up_req_peer(up_http_request(&p)), "192.0.2.7:1234");
    cr_assert_str_eq(up_http_parser_peer(&p), "192.0.2.7:1234");
    up_http_request_done(&p);
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    cr_assert_str_eq(up_req_peer(up_http_request(&p)), "192.0.2.7:1234");
    cr_assert_eq(peer_asked, 1);
    up_http_parser_free(&p);
}

Test(http, peer_and_method_name, .timeout = 10)
{
    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    up_http_parser_set_peer(&p, "[2001:db8::1]:8080");
    const char *in = "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t used;
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    cr_assert_eq(used, strlen(in));
    cr_assert_str_eq(up_req_method(up_http_request(&p)), "DELETE");
    cr_assert_str_eq(up_req_peer(up_http_request(&p)), "[2001:db8::1]:8080");
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), -EBUSY, "feed before request_done");
    up_http_request_done(&p);
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    up_http_parser_free(&p);
}

Test(http, memory_is_reused_between_requests, .timeout = 10)
{
    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    const char *in =
        "POST /x?y HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nContent-Length: 3\r\n\r\nabc";
    size_t used;
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    char *arena = p.arena, *body = p.body;
    struct up_http_field *fields = p.fields;
    for (int i = 0; i < 100; i++) {
        up_http_request_done(&p);
        cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    }
    cr_assert(p.arena == arena && p.body == body && p.fields == fields);
    up_http_parser_free(&p);
}

/* ---- errors ---- */

static const struct up_http_limits small = {.max_head = 64, .max_body = 16, .max_headers = 3};

Test(http, body_over_limit_from_content_length_before_the_body, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n", &small, "error 413\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 16\r\n\r\n0123456789abcdef", &small,
               "POST / path=/ query= minor=1 ka=1\nHost=h\nContent-Length=16\n"
               "body[16]=0123456789abcdef\n@64\n");
}

Test(http, expect_continue_over_the_limit_is_413_not_100, .timeout = 10)
{
    static const struct up_http_limits small_body = {.max_body = 16};
    expect_log("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 17\r\n\r\n",
               &small_body, "error 413\n");
}

Test(http, chunked_body_growing_over_the_limit, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               "8\r\n01234567\r\n8\r\n01234567\r\n1\r\n",
               &small, "error 413\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               "8\r\n01234567\r\n11\r\n",
               &small, "error 413\n");
}

Test(http, head_over_the_limit_is_431, .timeout = 10)
{
    /* 64 bytes exactly is fine, 65 is not, and a partial head at 64 is 431. */
    expect_log("GET / HTTP/1.1\r\nHost: 01234567890123456789012345678901234567\r\n\r\n", &small,
               "GET / path=/ query= minor=1 ka=1\n"
               "Host=01234567890123456789012345678901234567\nbody[0]=\n@64\n");
    expect_log("GET / HTTP/1.1\r\nHost: 012345678901234567890123456789012345678\r\n\r\n", &small,
               "error 431\n");
    expect_log("GET / HTTP/1.1\r\nHost: 01234567890123456789012345678901234567\r\n\r", &small, "");
    expect_log("GET / HTTP/1.1\r\nHost: 012345678901234567890123456789012345678\r\n\r", &small,
               "error 431\n");
}

Test(http, too_many_header_fields_is_431, .timeout = 10)
{
    expect_log("GET / HTTP/1.1\r\nHost: 1\r\nB: 2\r\nC: 3\r\n\r\n", &small,
               "GET / path=/ query= minor=1 ka=1\nHost=1\nB=2\nC=3\nbody[0]=\n@39\n");
    expect_log("GET / HTTP/1.1\r\nHost: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", &small, "error 431\n");
}

Test(http, trailers_over_the_limit_are_431, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
               "T: 0123456789012345678901234567890123456789012345678901234567890\r\n\r\n",
               &small, "error 431\n");
}

Test(http, garbage_is_400, .timeout = 10)
{
    expect_log("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NULL, "error 400\n");
    expect_log("hello world\r\n\r\n", NULL, "error 400\n");
    expect_log("GET /a b HTTP/1.1\r\n\r\n", NULL, "error 400\n");
    expect_log("GET  / HTTP/1.1\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1 \r\n\r\n", NULL, "error 400\n");
    expect_log("GET /\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost : h\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nHo st: h\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\n: h\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", NULL, "error 400\n");
}

Test(http, obs_fold_is_400, .timeout = 10)
{
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\n X: a\r\n\r\n", NULL, "error 400\n");
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: a\r\n b\r\n\r\n",
        NULL, "error 400\n");
}

Test(http, bare_lf_is_400, .timeout = 10)
{
    expect_log("GET / HTTP/1.1\nHost: h\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: h\r\n\n", NULL, "error 400\n");
    expect_log("GET / HTTP/1.1\n\n", NULL, "error 400\n");
    expect_log("\nGET / HTTP/1.1\r\n\r\n", NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
               NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: x\r\n\n",
               NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n", NULL,
               "error 400\n");
}

Test(http, conflicting_content_length_is_400, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
               NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\nab", NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", NULL, "error 400\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
               NULL, "error 400\n");
}

Test(http, content_length_with_transfer_encoding_is_400, .timeout = 10)
{
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        NULL, "error 400\n");
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        "0\r\n\r\n",
        NULL, "error 400\n");
    expect_log("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL,
               "error 400\n");
}

Test(http, invalid_chunk_size_is_400, .timeout = 10)
{
    const char *head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *bodies[] = {
        "zz\r\n", "0x3\r\nabc\r\n0\r\n\r\n",  "3 \r\nabc\r\n0\r\n\r\n", "3\r\nabcd\r\n0\r\n\r\n",
        "-1\r\n", "fffffffffffffffffffff\r\n"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char in[256];
        snprintf(in, sizeof(in), "%s%s", head, bodies[i]);
        expect_log(in, NULL, "error 400\n");
    }
}

Test(http, transfer_encoding_other_than_chunked_is_501, .timeout = 10)
{
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", NULL,
               "error 501\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
               NULL, "error 501\n");
    expect_log("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", NULL,
               "error 501\n");
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n",
        NULL, "error 501\n");
    expect_log(
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        "\r\n0\r\n\r\n",
        NULL, "error 501\n");
}

Test(http, other_http_versions_are_505, .timeout = 10)
{
    expect_log("GET / HTTP/2.0\r\n\r\n", NULL, "error 505\n");
    expect_log("GET / HTTP/0.9\r\n\r\n", NULL, "error 505\n");
    expect_log("GET / HTTP/3.1\r\nHost: h\r\n\r\n", NULL, "error 505\n");
}

/* ---- the request line and the target (RFC 9112 3, RFC 9110 4, 9.1) ---- */

static void expect_all(const char *const *in, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++) {
        expect_log(in[i], NULL, want);
    }
}

#define EXPECT_ALL(in, want) expect_all(in, sizeof(in) / sizeof(in[0]), want)

Test(http, control_bytes_and_non_ascii_in_the_target_are_400, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_target_bytes, "error 400\n");
    expect_log("GET /a|b{c}\"<>^`\\?x=[1] HTTP/1.1\r\nHost: h\r\n\r\n", NULL,
               "GET /a|b{c}\"<>^`\\?x=[1] path=/a|b{c}\"<>^`\\ query=x=[1] minor=1 ka=1\n"
               "Host=h\nbody[0]=\n@45\n");
}

/* The same rules as the master's: a handshake is whole or 400, and the
 * bytes after a good one (frames) are not the parser's. */
Test(http, websocket_handshake_is_whole_or_400, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_upgrades, "error 400\n");
    for (size_t i = 0; i < sizeof(up_http_good_upgrades) / sizeof(up_http_good_upgrades[0]); i++) {
        const char *in = up_http_good_upgrades[i];
        struct up_http_parser p;
        up_http_parser_init(&p, NULL);
        char buf[1024];
        int n = snprintf(buf, sizeof(buf), "%s\x81\x80", in);
        size_t used = 0;
        cr_assert_eq(up_http_feed(&p, buf, (size_t)n, &used), UP_HTTP_REQUEST, "%s", in);
        cr_assert_eq(used, strlen(in), "the frame after the head was parsed: %s", in);
        struct up_req *req = up_http_request(&p);
        cr_assert(req->ws && !req->keep_alive, "%s", in);
        up_http_parser_free(&p);
    }
    /* Upgrade to something else is no handshake of ours. */
    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    const char *h2c = "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
    size_t used = 0;
    cr_assert_eq(up_http_feed(&p, h2c, strlen(h2c), &used), UP_HTTP_REQUEST);
    cr_assert(!up_http_request(&p)->ws);
    up_http_parser_free(&p);
}

Test(http, fragment_in_the_target_is_400, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_fragment, "error 400\n");
}

Test(http, http11_without_host_is_400_and_http10_is_not, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_no_host, "error 400\n");
    expect_log("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost:\r\n\r\n", NULL,
               "GET / path=/ query= minor=0 ka=0\nbody[0]=\n@18\n"
               "GET / path=/ query= minor=1 ka=1\nHost=\nbody[0]=\n@43\n");
    /* On a Keep-Alive connection too: the second request is 400. */
    expect_log("GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n\r\n", NULL,
               "GET / path=/ query= minor=1 ka=1\nHost=h\nbody[0]=\n@27\nerror 400\n");
}

Test(http, invalid_host_value_is_400, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_host_values, "error 400\n");
    expect_log("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", NULL,
               "GET / path=/ query= minor=1 ka=1\nHost=[::1]:80\nbody[0]=\n@34\n");
}

Test(http, asterisk_form_is_for_options_only, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_asterisk_form, "error 400\n");
    expect_log("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", NULL,
               "OPTIONS * path=* query= minor=1 ka=1\nHost=h\nbody[0]=\n@31\n");
}

/* The app sees one authority: the target's, as the Host field, added when
 * an HTTP/1.0 request has none. */
Test(http, absolute_form_needs_a_valid_authority_which_overrides_host, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_absolute_form, "error 400\n");
    expect_log("GET http://example.com/x?y HTTP/1.1\r\nX: 1\r\nHost: other\r\n\r\n"
               "GET HTTPS://[::1]:8443?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
               NULL,
               "GET http://example.com/x?y path=/x query=y minor=1 ka=1\n"
               "X=1\nHost=example.com\nbody[0]=\n@58\n"
               "GET HTTPS://[::1]:8443?q path=/ query=q minor=0 ka=1\n"
               "Connection=keep-alive\nHost=[::1]:8443\nbody[0]=\n@119\n");
}

Test(http, connect_takes_the_authority_form_only, .timeout = 10)
{
    EXPECT_ALL(up_http_bad_connect, "error 400\n");
    expect_log("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", NULL,
               "CONNECT example.com:443 path=example.com:443 query= minor=1 ka=0\n"
               "Host=example.com:443\nbody[0]=\n@59\n");
}

/* Any token reaches the app, as sent. */
Test(http, any_token_is_a_method, .timeout = 10)
{
    expect_log("-BLARGH /m HTTP/1.1\r\nHost: h\r\n\r\n"
               "\r\nPURGE /m HTTP/1.1\r\nHost: h\r\n\r\n"
               "get /m HTTP/1.1\r\nHost: h\r\n\r\n"
               "X!#$%&'*+.^_`|~09 /m HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok",
               NULL,
               "-BLARGH /m path=/m query= minor=1 ka=1\nHost=h\nbody[0]=\n@32\n"
               "PURGE /m path=/m query= minor=1 ka=1\nHost=h\nbody[0]=\n@64\n"
               "get /m path=/m query= minor=1 ka=1\nHost=h\nbody[0]=\n@92\n"
               "X!#$%&'*+.^_`|~09 /m path=/m query= minor=1 ka=1\n"
               "Host=h\nContent-Length=2\nbody[2]=ok\n@155\n");
    EXPECT_ALL(up_http_bad_methods, "error 400\n");
}

Test(http, higher_minor_version_is_http11_and_other_protocols_are_400, .timeout = 10)
{
    expect_log(
        "GET /a HTTP/1.2\r\nHost: h\r\n\r\n"
        "POST /b HTTP/1.9\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        NULL,
        "GET /a path=/a query= minor=1 ka=1\nHost=h\nbody[0]=\n@28\n"
        "POST /b path=/b query= minor=1 ka=1\nHost=h\nTransfer-Encoding=chunked\n"
        "body[1]=x\n@96\n");
    expect_log("GET / HTTP/0.9\r\nHost: h\r\n\r\n", NULL, "error 505\n");
    expect_log("GET / HTTP/9.9\r\nHost: h\r\n\r\n", NULL, "error 505\n");
    EXPECT_ALL(up_http_bad_protocols, "error 400\n");
}

/* ---- chunk extensions and chunk framing (RFC 9112 7.1) ---- */

#define CHUNKED_HEAD "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"

Test(http, chunk_extensions_take_bws_tokens_and_quoted_strings, .timeout = 10)
{
    expect_log(CHUNKED_HEAD "5 ; name = value\r\nhello\r\n"
                            "1\t;\ta\t;b=\"q \\\"d\\\\ \x80\"\t; c =tok\r\n,\r\n"
                            "0000000000000002;x=\"\"\r\nab\r\n"
                            "0 ;last\r\nT: 1\r\n\r\n",
               NULL,
               "POST / path=/ query= minor=1 ka=1\nHost=h\nTransfer-Encoding=chunked\n"
               "body[8]=hello,ab\n@159\n");
}

Test(http, invalid_chunk_extensions_are_400, .timeout = 10)
{
    static const char *const bad[] = {
        CHUNKED_HEAD "5;\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a \r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=\"x\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=b c\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;=b\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;;a\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "5;a(b\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD "0;a \r\n\r\n",
        CHUNKED_HEAD "00000000000000005\r\nhello\r\n0\r\n\r\n",
    };
    EXPECT_ALL(bad, "error 400\n");
}

/* Extension bytes count toward the body limit (16 here): 1 byte of data and
 * 15 of extensions fit, 16 do not. */
Test(http, chunk_extensions_count_toward_the_body_limit, .timeout = 10)
{
    expect_log(CHUNKED_HEAD "1;aaaaaaaaaaaaaa\r\nx\r\n0\r\n\r\n", &small,
               "POST / path=/ query= minor=1 ka=1\nHost=h\nTransfer-Encoding=chunked\n"
               "body[1]=x\n@82\n");
    expect_log(CHUNKED_HEAD "1;aaaaaaaaaaaaaaa\r\nx\r\n0\r\n\r\n", &small, "error 413\n");
    expect_log(CHUNKED_HEAD "0;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &small,
               "error 413\n");
}

/* llhttp (loose) skips the two bytes after a chunk's data unread, and the
 * byte after the CR of a size line: a front end reads other chunks. */
Test(http, chunk_data_and_size_lines_must_end_in_crlf, .timeout = 10)
{
    static const char *const bad[] = {
        CHUNKED_HEAD "3\r\nabcXY0\r\n\r\n",    CHUNKED_HEAD "3\r\nabc\n\n0\r\n\r\n",
        CHUNKED_HEAD "3\r\nabc\r0\r\n\r\n",    CHUNKED_HEAD "1\rXx\r\n0\r\n\r\n",
        CHUNKED_HEAD "1;a=b\rXx\r\n0\r\n\r\n",
    };
    EXPECT_ALL(bad, "error 400\n");
}

Test(http, error_is_sticky, .timeout = 10)
{
    struct up_http_parser p;
    up_http_parser_init(&p, NULL);
    size_t used;
    cr_assert_eq(up_http_feed(&p, "BAD\r\n", 5, &used), -EPROTO);
    cr_assert_eq(up_http_feed(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27, &used), -EPROTO);
    up_http_parser_free(&p);
}

/* ---- responses ---- */

struct out_text {
    char text[8192];
    size_t len;
    int notified;
};

static void on_output(void *ctx)
{
    ((struct out_text *)ctx)->notified++;
}

/* Drain the queue into o->text, in pieces of at most 7 bytes. */
static void drain(struct up_http_out *out, struct out_text *o)
{
    size_t len;
    const char *data;
    while ((data = up_http_out_peek(out, &len)) != NULL) {
        size_t n = len < 7 ? len : 7;
        cr_assert_lt(o->len + n, sizeof(o->text));
        memcpy(o->text + o->len, data, n);
        o->len += n;
        up_http_out_consume(out, n);
    }
    o->text[o->len] = '\0';
}

typedef void (*handler_fn)(struct up_req *req, struct up_res *res);

/* Parse request, run handler as the glue would, and return the bytes. */
/* Serve request with handler, keep_alive_s as the worker's idle timeout
 * (0: none advertised). */
static void respond_ka(const char *request, handler_fn handler, unsigned keep_alive_s,
                       struct out_text *o, bool *ret_close)
{
    struct up_http_parser p;
    struct up_http_out out;
    struct up_res res;
    up_http_parser_init(&p, NULL);
    up_http_out_init(&out);
    up_http_res_init(&res);
    res.keep_alive_s = keep_alive_s;
    res.on_output = on_output;
    res.ctx = o;
    memset(o, 0, sizeof(*o));
    size_t used;
    cr_assert_eq(up_http_feed(&p, request, strlen(request), &used), UP_HTTP_REQUEST);
    up_http_res_start(&res, up_http_request(&p), &out);
    handler(up_http_request(&p), &res);
    if (!up_http_res_deferred(&res)) {
        up_http_res_finish_default(&res);
    }
    cr_assert(up_http_res_done(&res));
    cr_assert_eq(up_http_res_error(&res), 0);
    *ret_close = up_http_res_must_close(&res);
    drain(&out, o);
    up_http_res_free(&res);
    up_http_out_free(&out);
    up_http_parser_free(&p);
}

static void respond(const char *request, handler_fn handler, struct out_text *o, bool *ret_close)
{
    respond_ka(request, handler, 0, o, ret_close);
}

static void send_hello(struct up_req *req, struct up_res *res)
{
    (void)req;
    cr_assert_eq(up_res_header(res, "Content-Type", "text/plain"), 0);
    up_res_send(res, "hello", 5);
    cr_assert_eq(up_res_header(res, "X-Late", "1"), -1);
}

Test(http, send_has_content_length, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.1\r\nHost: h\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\n\r\nhello");
    cr_assert(!close);
    cr_assert_geq(o.notified, 1);
}

Test(http, head_response_has_headers_but_no_body, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\n\r\n");
    cr_assert(!close);
}

static void stream_three(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_write(res, "ab", 2);
    up_res_write(res, "", 0);
    up_res_write(res, "0123456789abcdefg", 17);
    up_res_end(res);
    up_res_write(res, "late", 4);
}

Test(http, head_response_to_a_stream_has_no_body, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", stream_three, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    cr_assert(!close);
}

static void no_content(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_status(res, 204);
    up_res_send(res, "ignored", 7);
}

Test(http, no_content_has_no_content_length, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n", no_content, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 204 No Content\r\n\r\n");
    cr_assert(!close);
}

static void not_modified_stream(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_status(res, 304);
    up_res_write(res, "x", 1);
}

Test(http, not_modified_stream_has_no_framing, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.0\r\n\r\n", not_modified_stream, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n");
    cr_assert(close);
}

Test(http, streaming_on_http11_is_chunked, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.1\r\nHost: h\r\n\r\n", stream_three, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "2\r\nab\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n");
    cr_assert(!close);
}

Test(http, streaming_on_http10_is_close_delimited, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", stream_three, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                             "ab0123456789abcdefg");
    cr_assert(close);
}

Test(http, http10_keep_alive_says_so, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello");
    cr_assert(!close);
    respond("GET / HTTP/1.0\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    cr_assert(close);
}

static void send_own_keep_alive(struct up_req *req, struct up_res *res)
{
    (void)req;
    cr_assert_eq(up_res_header(res, "Keep-Alive", "timeout=3600"), 0);
    up_res_send(res, "hello", 5);
}

/* The idle timeout is advertised on every answer that keeps the
 * connection (not on one that closes it), and it is the runtime's: an
 * app's own Keep-Alive field would promise what the worker does not keep. */
Test(http, keep_alive_answers_advertise_the_idle_timeout, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond_ka("GET / HTTP/1.1\r\nHost: h\r\n\r\n", send_own_keep_alive, 60, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                             "Keep-Alive: timeout=60\r\n\r\nhello");
    cr_assert(!close);
    respond_ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", send_hello, 5, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\nConnection: keep-alive\r\n"
                             "Keep-Alive: timeout=5\r\n\r\nhello");
    respond_ka("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", send_hello, 60, &o,
               &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    cr_assert(close);
}

Test(http, connection_close_request_gets_connection_close, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\nConnection: close\r\n\r\nhello");
    cr_assert(close);
}

static void managed_headers(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_status(res, 201);
    cr_assert_eq(up_res_header(res, "Content-Length", "999"), 0);
    cr_assert_eq(up_res_header(res, "connection", "close"), 0);
    cr_assert_eq(up_res_header(res, "Transfer-Encoding", "gzip"), 0);
    cr_assert_eq(up_res_header(res, "X-Bad", "a\r\nInjected: 1"), -1);
    cr_assert_eq(up_res_header(res, "Bad Name", "v"), -1);
    cr_assert_eq(up_res_header(res, "X-Ok", "v\t1"), 0);
    up_res_send(res, "{}", 2);
}

Test(http, app_framing_headers_are_ignored, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("POST / HTTP/1.1\r\nHost: h\r\n\r\n", managed_headers, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 201 Created\r\nX-Ok: v\t1\r\nContent-Length: 2\r\n\r\n{}");
    cr_assert(!close);
}

static void nothing(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_status(res, 404);
}

Test(http, handler_returning_without_a_body_sends_an_empty_one, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.1\r\nHost: h\r\n\r\n", nothing, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

/* RFC 9110 9.3.6: a 2xx to CONNECT has no Content-Length or
 * Transfer-Encoding and no body, whatever the app does; the connection
 * closes (the runtime does not tunnel). Other statuses are framed as usual. */
Test(http, connect_2xx_has_no_framing_fields_and_no_body, .timeout = 10)
{
    static const char req[] = "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
    struct out_text o;
    bool close;
    respond(req, send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Connection: close\r\n\r\n");
    cr_assert(close);
    respond(req, stream_three, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    cr_assert(close);
    respond(req, no_content, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    respond(req, managed_headers, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 201 Created\r\nX-Ok: v\t1\r\nConnection: close\r\n\r\n");
    respond(req, nothing, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                             "Connection: close\r\n\r\n");
}

/* HTTP/1.2 is served as 1.1: the status line says 1.1, a stream is chunked
 * and the connection stays open; and `head` is not HEAD (methods are
 * case-sensitive), so it gets the body. */
Test(http, higher_minor_version_and_custom_methods_are_served_as_11, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.2\r\nHost: h\r\n\r\n", stream_three, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "2\r\nab\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n");
    cr_assert(!close);
    respond("head / HTTP/1.1\r\nHost: h\r\n\r\n", send_hello, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 5\r\n\r\nhello");
    cr_assert(!close);
}

static void stream_unfinished(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_write(res, "x", 1);
}

Test(http, handler_returning_mid_stream_ends_the_stream, .timeout = 10)
{
    struct out_text o;
    bool close;
    respond("GET / HTTP/1.1\r\nHost: h\r\n\r\n", stream_unfinished, &o, &close);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "1\r\nx\r\n0\r\n\r\n");
}

static void echo_body(struct up_req *req, struct up_res *res)
{
    size_t len;
    const char *body = up_req_body(req, &len);
    up_res_send(res, body, len);
}

Test(http, date_is_sent_when_the_glue_gives_one, .timeout = 10)
{
    char date[UP_HTTP_DATE_LEN + 1];
    up_http_date(784111777, date);
    cr_assert_str_eq(date, "Sun, 06 Nov 1994 08:49:37 GMT");

    struct up_http_parser p;
    struct up_http_out out;
    struct up_res res;
    up_http_parser_init(&p, NULL);
    up_http_out_init(&out);
    up_http_res_init(&res);
    res.date = date;
    size_t used;
    cr_assert_eq(up_http_feed(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27, &used), UP_HTTP_REQUEST);
    up_http_res_start(&res, up_http_request(&p), &out);
    echo_body(up_http_request(&p), &res);
    struct out_text o = {0};
    drain(&out, &o);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                             "Content-Length: 0\r\n\r\n");
    up_http_res_free(&res);
    up_http_out_free(&out);
    up_http_parser_free(&p);
}

static void defer(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_defer(res);
}

/* Two pipelined requests on one connection: the first response is deferred
 * and finished "later"; the second is queued after it. */
Test(http, deferred_response_then_pipelined_request, .timeout = 10)
{
    struct up_http_parser p;
    struct up_http_out out;
    struct up_res res;
    struct out_text o = {0};
    up_http_parser_init(&p, NULL);
    up_http_out_init(&out);
    up_http_res_init(&res);
    res.on_output = on_output;
    res.ctx = &o;
    const char *in = "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\none"
                     "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    size_t used;
    cr_assert_eq(up_http_feed(&p, in, strlen(in), &used), UP_HTTP_REQUEST);
    up_http_res_start(&res, up_http_request(&p), &out);
    defer(up_http_request(&p), &res);
    cr_assert(up_http_res_deferred(&res));
    cr_assert_eq(o.notified, 0);
    cr_assert_eq(up_http_out_pending(&out), 0);
    echo_body(up_http_request(&p), &res); /* from a timer, later */
    cr_assert_eq(o.notified, 1);
    cr_assert(up_http_res_done(&res) && !up_http_res_must_close(&res));
    up_http_request_done(&p);
    size_t off = used;
    cr_assert_eq(up_http_feed(&p, in + off, strlen(in) - off, &used), UP_HTTP_REQUEST);
    cr_assert_eq(off + used, strlen(in));
    up_http_res_start(&res, up_http_request(&p), &out);
    send_hello(up_http_request(&p), &res);
    cr_assert(up_http_res_must_close(&res));
    drain(&out, &o);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
                             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                             "Connection: close\r\n\r\nhello");
    up_http_res_free(&res);
    up_http_out_free(&out);
    up_http_parser_free(&p);
}

Test(http, detached_response_drops_bytes_and_still_reports_done, .timeout = 10)
{
    struct up_http_parser p;
    struct up_http_out out;
    struct up_res res;
    struct out_text o = {0};
    up_http_parser_init(&p, NULL);
    up_http_out_init(&out);
    up_http_res_init(&res);
    res.on_output = on_output;
    res.ctx = &o;
    size_t used;
    cr_assert_eq(up_http_feed(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27, &used), UP_HTTP_REQUEST);
    up_http_res_start(&res, up_http_request(&p), &out);
    up_res_defer(&res);
    up_http_res_detach(&res);
    up_http_out_free(&out);
    up_res_write(&res, "x", 1);
    up_res_end(&res);
    cr_assert(up_http_res_done(&res));
    cr_assert_eq(o.notified, 2);
    up_http_res_free(&res);
    up_http_parser_free(&p);
}

Test(http, force_close_sends_connection_close, .timeout = 10)
{
    struct up_http_parser p;
    struct up_http_out out;
    struct up_res res;
    up_http_parser_init(&p, NULL);
    up_http_out_init(&out);
    up_http_res_init(&res);
    size_t used;
    cr_assert_eq(up_http_feed(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27, &used), UP_HTTP_REQUEST);
    up_http_res_start(&res, up_http_request(&p), &out);
    up_http_res_force_close(&res);
    up_res_send(&res, "", 0);
    struct out_text o = {0};
    drain(&out, &o);
    cr_assert_str_eq(o.text, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    cr_assert(up_http_res_must_close(&res));
    up_http_res_free(&res);
    up_http_out_free(&out);
    up_http_parser_free(&p);
}

/* ---- the output queue and error responses ---- */

Test(http, out_queue_keeps_queued_bytes_in_place, .timeout = 10)
{
    struct up_http_out out;
    up_http_out_init(&out);
    static char big[100000];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)('a' + i % 26);
    }
    cr_assert_eq(up_http_out_append(&out, "head", 4), 0);
    size_t len;
    const char *first = up_http_out_peek(&out, &len);
    cr_assert_eq(up_http_out_append(&out, big, sizeof(big)), 0);
    cr_assert_eq(up_http_out_append(&out, "tail", 4), 0);
    cr_assert_eq(up_http_out_peek(&out, &len), first, "a queued byte moved");
    cr_assert_eq(up_http_out_pending(&out), sizeof(big) + 8);
    struct iovec iov[8];
    size_t n = up_http_out_iov(&out, iov, 8);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    cr_assert_eq(total, sizeof(big) + 8);
    cr_assert_eq(memcmp(iov[0].iov_base, "head", 4), 0);
    up_http_out_consume(&out, 4 + sizeof(big) - 1);
    const char *rest = up_http_out_peek(&out, &len);
    cr_assert(len >= 1 && rest[0] == big[sizeof(big) - 1]);
    up_http_out_consume(&out, 5);
    cr_assert_eq(up_http_out_pending(&out), 0);
    cr_assert_null(up_http_out_peek(&out, &len));
    cr_assert_eq(up_http_out_append(&out, "again", 5), 0);
    cr_assert_eq(up_http_out_pending(&out), 5);
    up_http_out_free(&out);
}

static void check_error_response(int status, const char *start)
{
    struct up_http_out out;
    up_http_out_init(&out);
    cr_assert_eq(up_http_error_response(&out, status), 0);
    struct out_text o = {0};
    drain(&out, &o);
    cr_assert_eq(strncmp(o.text, start, strlen(start)), 0, "%s", o.text);
    cr_assert_not_null(strstr(o.text, "\r\nConnection: close\r\n"));
    const char *end = strstr(o.text, "\r\n\r\n");
    cr_assert_not_null(end);
    const char *cl = strstr(o.text, "\r\nContent-Length: ");
    cr_assert(cl != NULL && cl < end);
    size_t want = strtoul(cl + 18, NULL, 10);
    cr_assert_eq(strlen(end + 4), want, "body length for %d", status);
    for (const char *c = o.text; c < end; c++) {
        cr_assert(*c != '\n' || (c > o.text && c[-1] == '\r'), "bare LF");
    }
    up_http_out_free(&out);
}

Test(http, error_responses_are_well_formed, .timeout = 10)
{
    check_error_response(400, "HTTP/1.1 400 Bad Request\r\n");
    check_error_response(408, "HTTP/1.1 408 Request Timeout\r\n");
    check_error_response(413, "HTTP/1.1 413 Payload Too Large\r\n");
    check_error_response(431, "HTTP/1.1 431 Request Header Fields Too Large\r\n");
    check_error_response(500, "HTTP/1.1 500 Internal Server Error\r\n");
    check_error_response(501, "HTTP/1.1 501 Not Implemented\r\n");
    check_error_response(503, "HTTP/1.1 503 Service Unavailable\r\n");
    check_error_response(505, "HTTP/1.1 505 HTTP Version Not Supported\r\n");
    check_error_response(599, "HTTP/1.1 599 \r\n");
    check_error_response(42, "HTTP/1.1 500 Internal Server Error\r\n");
}

Test(http, error_status_mapping, .timeout = 10)
{
    cr_assert_eq(up_http_error_status(-EPROTO), 400);
    cr_assert_eq(up_http_error_status(-EMSGSIZE), 413);
    cr_assert_eq(up_http_error_status(-E2BIG), 431);
    cr_assert_eq(up_http_error_status(-EOPNOTSUPP), 501);
    cr_assert_eq(up_http_error_status(-EPROTONOSUPPORT), 505);
    cr_assert_eq(up_http_error_status(-ENOMEM), 500);
}

/* The master answers bad heads itself: it must judge every head as the
 * worker would, or a head it let through could be read differently here. */
Test(http, agrees_with_the_master_head_check, .timeout = 10)
{
    const char *heads[] = {
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\nGET /x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nHo st: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\nConnection: upgrade\r\n"
        "Upgrade: h2c\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",
        "GET /a\tHTTP/1.1 HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /a\fb HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "PUT s://]ufd/: HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
        "GET http://[::1]:8/ HTTP/1.0\r\n\r\n",
        "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n",
        "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        "-BLARGH / HTTP/1.1\r\nHost: h\r\n\r\n",
        "get / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
        "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
        "GET / RTSP/1.0\r\nHost: h\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        size_t len = strlen(heads[i]);
        struct up_head h;
        int m = up_head_check(heads[i], len, 0, &h);
        struct up_http_parser p;
        up_http_parser_init(&p, NULL);
        size_t used;
        int w = up_http_feed(&p, heads[i], len, &used);
        if (m < 0) {
            cr_assert(w < 0, "%s: master %d, worker %d", heads[i], m, w);
            cr_assert_eq(up_head_error_status(m), up_http_error_status(w), "%s", heads[i]);
        } else {
            cr_assert_eq(m, UP_HEAD_COMPLETE, "%s", heads[i]);
            cr_assert(w >= 0, "%s: worker %d", heads[i], w);
        }
        const struct up_req *req = w == UP_HTTP_REQUEST ? up_http_request(&p) : NULL;
        if (req != NULL) {
            /* What the master routes on is what the app sees. */
            const char *host;
            size_t host_len;
            const char *app_host = up_req_header(req, "Host");
            int r = up_head_header(&h, "Host", &host, &host_len);
            cr_assert_eq(r == 0, app_host != NULL, "%s", heads[i]);
            cr_assert(r != 0 ||
                          (strlen(app_host) == host_len && memcmp(app_host, host, host_len) == 0),
                      "%s: Host %.*s vs %s", heads[i], (int)host_len, host, app_host);
            cr_assert_eq(strlen(up_req_method(req)), h.method_len, "%s", heads[i]);
            cr_assert_eq(memcmp(up_req_method(req), h.method, h.method_len), 0, "%s", heads[i]);
            cr_assert_eq(up_req_minor_version(req), h.minor, "%s", heads[i]);
        }
        up_http_parser_free(&p);
    }
}

/* up_http_request_whole(): true from the moment a request is out (head and
 * body read) until up_http_request_done(); not while its body is coming, nor
 * while the head waits for 100-continue. */
Test(http, a_request_is_whole_only_once_all_of_it_was_read, .timeout = 10)
{
    static const char head[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n";
    static const char expect[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                                 "Expect: 100-continue\r\n\r\n";
    struct up_http_parser p;
    size_t used;
    up_http_parser_init(&p, NULL);
    cr_assert_not(up_http_request_whole(&p));
    cr_assert_eq(up_http_feed(&p, head, strlen(head), &used), UP_HTTP_NEED_MORE);
    cr_assert_not(up_http_request_whole(&p), "the body is still to come");
    cr_assert_eq(up_http_feed(&p, "abcd", 4, &used), UP_HTTP_REQUEST);
    cr_assert(up_http_request_whole(&p));
    up_http_request_done(&p);
    cr_assert_not(up_http_request_whole(&p));
    cr_assert_eq(up_http_feed(&p, expect, strlen(expect), &used), UP_HTTP_EXPECT_CONTINUE);
    cr_assert_not(up_http_request_whole(&p), "waiting for 100-continue");
    up_http_parser_free(&p);
}
