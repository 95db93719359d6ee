/*
 * http_cases: requests that both the master's head check (core/lib/head.c)
 * and the worker's parser (worker-runtime/http.c) must refuse with a 400.
 * One table for both, so that the two can never come to disagree about a
 * request: a request one passes and the other refuses is a way to smuggle
 * a second request past the master.
 */
#ifndef UP_TEST_HTTP_CASES_H
#define UP_TEST_HTTP_CASES_H

/* absolute form needs a valid authority which overrides host */
static const char *const up_http_bad_absolute_form[] = {
    "PUT s://]ufd/: HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://h:8o/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://h%2/ HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* any token is a method */
static const char *const up_http_bad_methods[] = {
    "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",        "GE\"T / HTTP/1.1\r\nHost: h\r\n\r\n",
    "G,T / HTTP/1.1\r\nHost: h\r\n\r\n",        "GE\x01T / HTTP/1.1\r\nHost: h\r\n\r\n",
    " / HTTP/1.1\r\nHost: h\r\n\r\n",           "\r\n / HTTP/1.1\r\nHost: h\r\n\r\n",
    "G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* asterisk form is for options only */
static const char *const up_http_bad_asterisk_form[] = {
    "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "POST * HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n",
    "OPTIONS */ HTTP/1.1\r\nHost: h\r\n\r\n",
    "options * HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* connect takes the authority form only */
static const char *const up_http_bad_connect[] = {
    "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n",
    "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n",
    "CONNECT h: HTTP/1.1\r\nHost: h\r\n\r\n",
    "CONNECT http://h:443/ HTTP/1.1\r\nHost: h\r\n\r\n",
    "CONNECT u@h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* control bytes and non ascii in the target are 400 */
static const char *const up_http_bad_target_bytes[] = {
    "GET /a\tHTTP/1.1 HTTP/1.1\r\nHost: h\r\n\r\n", "GET /a\fb HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /a\x0b HTTP/1.1\r\nHost: h\r\n\r\n",       "GET /a?q=\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",       "GET /\x85 HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /\xa0 HTTP/1.1\r\nHost: h\r\n\r\n",        "GET http://h/\t HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET \t/ HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* fragment in the target is 400 */
static const char *const up_http_bad_fragment[] = {
    "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /a?b#f HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET /# HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET http://h/a#f HTTP/1.1\r\nHost: h\r\n\r\n",
};

/* higher minor version is http11 and other protocols are 400 */
static const char *const up_http_bad_protocols[] = {
    "GET / RTSP/1.0\r\nHost: h\r\n\r\n",  "SOURCE / ICE/1.0\r\nHost: h\r\n\r\n",
    "GET / HTTP/01.1\r\nHost: h\r\n\r\n", "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
    "GET / http/1.1\r\nHost: h\r\n\r\n",  "GET / HTTP/1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.x\r\nHost: h\r\n\r\n",  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
};

/* http11 without host is 400 and http10 is not */
static const char *const up_http_bad_no_host[] = {
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Host: h\r\nHosts: h\r\n\r\n",
    "GET / HTTP/1.2\r\n\r\n",
    "GET http://h/ HTTP/1.1\r\n\r\n",
};

/* invalid host value is 400 */
static const char *const up_http_bad_host_values[] = {
    "GET / HTTP/1.1\r\nHost: ]ufd\r\n\r\n", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",  "GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n",  "GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: h%zz\r\n\r\n", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
    "GET / HTTP/1.0\r\nHost: h h\r\n\r\n",  "GET / HTTP/1.1\r\nHost: h:1:2\r\n\r\n",
};

/* A WebSocket handshake (an Upgrade naming websocket) is whole and
 * well formed, or 400: RFC 6455 4.1 and 4.2.1. */
#define UP_WS_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define UP_WS_HEAD(method_line, fields) method_line "\r\nHost: h\r\n" fields "\r\n"
static const char *const up_http_bad_upgrades[] = {
    /* not a GET, not HTTP/1.1 */
    UP_WS_HEAD("POST / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                  "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"),
    UP_WS_HEAD("GET / HTTP/1.0", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\n"),
    /* no Connection: upgrade */
    UP_WS_HEAD("GET / HTTP/1.1",
               "Upgrade: websocket\r\n" UP_WS_KEY "Sec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: keep-alive\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\n"),
    /* the key: missing, twice, not 16 bytes of base64 */
    UP_WS_HEAD("GET / HTTP/1.1",
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n"),
    /* the version: missing, twice, not a number from 0 to 255 */
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13a\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 256\r\n"),
    /* a body: the bytes after the head are frames */
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\nContent-Length: 2\r\n"),
    UP_WS_HEAD("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                 "Sec-WebSocket-Version: 13\r\nTransfer-Encoding: chunked\r\n"),
};

/* Handshakes both let through: the version is the worker's to answer (426
 * for any but 13), and the lists are read as lists. */
static const char *const up_http_good_upgrades[] = {
    UP_WS_HEAD("GET /ws HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n" UP_WS_KEY
                                   "Sec-WebSocket-Version: 13\r\n"),
    UP_WS_HEAD("GET /ws?a=1 HTTP/1.1",
               "Connection: keep-alive, Upgrade\r\n"
               "Upgrade: h2c, WebSocket\r\n" UP_WS_KEY "Sec-WebSocket-Version: 8\r\n"
               "Sec-WebSocket-Protocol: chat, superchat\r\n"),
};

#endif
