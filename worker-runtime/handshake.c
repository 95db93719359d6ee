/*
 * handshake: the WebSocket opening handshake. See handshake.h.
 */
#include "handshake.h"

#include "http.h"
#include "ws.h"

#include <stdint.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- SHA-1 ---- */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (int i = 16; i < 80; i++) {
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d), k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d, k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d, k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void up_handshake_sha1(const void *data, size_t len, unsigned char *digest)
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    const unsigned char *p = data;
    size_t left = len;
    for (; left >= 64; p += 64, left -= 64) {
        sha1_block(h, p);
    }
    /* The tail, 0x80, zeros, and the length in bits: one or two blocks. */
    unsigned char last[128] = {0};
    memcpy(last, p, left);
    last[left] = 0x80;
    size_t n = left < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        last[n - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    sha1_block(h, last);
    if (n == 128) {
        sha1_block(h, last + 64);
    }
    for (int i = 0; i < 20; i++) {
        digest[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

/* ---- the accept value ---- */

static void base64(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        v |= i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0;
        v |= i + 2 < len ? in[i + 2] : 0;
        out[o++] = digits[(v >> 18) & 63];
        out[o++] = digits[(v >> 12) & 63];
        out[o++] = i + 1 < len ? digits[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? digits[v & 63] : '=';
    }
    out[o] = '\0';
}

void up_handshake_accept(const char *key, size_t len, char *out)
{
    char buf[128];
    unsigned char digest[20];
    size_t n = len < sizeof(buf) - sizeof(WS_GUID) ? len : sizeof(buf) - sizeof(WS_GUID);
    memcpy(buf, key, n);
    memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
    up_handshake_sha1(buf, n + sizeof(WS_GUID) - 1, digest);
    base64(digest, sizeof(digest), out);
}

bool up_handshake_offered(const char *list, const char *name, size_t name_len)
{
    const char *p = list;
    while (*p != '\0') {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n == name_len && n > 0 && memcmp(p, name, n) == 0) {
            return true;
        }
        p += n;
    }
    return false;
}

/* ---- app.h ---- */

int up_ws_offered(const struct up_req *req, const char *name)
{
    const char *list = up_req_header(req, "Sec-WebSocket-Protocol");
    return list != NULL && up_handshake_offered(list, name, strlen(name)) ? 1 : 0;
}

/* Answer status instead of 101, and finish res. The app's own fields are
 * dropped: they were meant for the 101. RFC 6455 4.4: a 426 names the
 * version spoken; RFC 9110 15.5.22: and the protocol to upgrade to. */
static int refuse(struct up_res *res, int status)
{
    static const char body[] = "no WebSocket here\n";
    up_http_res_clear_fields(res);
    up_res_status(res, status);
    up_res_header(res, "Content-Type", "text/plain");
    if (status == 426) {
        up_res_header(res, "Upgrade", "websocket");
        up_res_header(res, "Sec-WebSocket-Version", "13");
    } else if (status == 503) {
        up_res_header(res, "Retry-After", "0"); /* the next try meets the new code */
    }
    up_res_send(res, body, sizeof(body) - 1);
    return -1;
}

int up_ws_accept(struct up_req *req, struct up_res *res, const struct up_ws_callbacks *cbs,
                 void *ctx)
{
    if (!up_http_res_open(res)) {
        return -1; /* answered already: nothing may be added */
    }
    const char *version = up_req_header(req, "Sec-WebSocket-Version");
    if (!req->ws || version == NULL || strcmp(version, "13") != 0) {
        return refuse(res, 426);
    }
    if (res->no_upgrade) {
        return refuse(res, 503);
    }
    size_t plen;
    const char *proto = up_http_res_field(res, "sec-websocket-protocol", &plen);
    const char *offers = up_req_header(req, "Sec-WebSocket-Protocol");
    struct up_ws *ws = NULL;
    if (cbs == NULL || cbs->on_message == NULL ||
        (proto != NULL && (offers == NULL || !up_handshake_offered(offers, proto, plen))) ||
        up_ws_new(cbs, ctx, &ws) < 0) {
        return refuse(res, 500);
    }
    const char *key = up_req_header(req, "Sec-WebSocket-Key");
    char accept[UP_HANDSHAKE_ACCEPT_LEN + 1];
    up_handshake_accept(key, strlen(key), accept);
    if (up_http_res_switch(res, accept, ws) < 0) {
        up_ws_free(ws);
        return -1; /* out of memory queuing it: the connection closes */
    }
    return 0;
}
