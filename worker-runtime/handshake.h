/*
 * handshake: the server's side of the WebSocket opening handshake (RFC 6455
 * 4.2): the checks the master's head rules (head.h) leave to the worker,
 * the Sec-WebSocket-Accept value, the subprotocol, and the 101 answer;
 * up_ws_accept() and up_ws_offered() of app.h live here. Whether a request
 * is a well-formed handshake at all was decided by the head rules (req->ws);
 * what is left is the version (426 for any but 13), whether this worker
 * takes WebSockets now (503 while it drains), and whether a subprotocol the
 * app picked was offered.
 *
 * Pure but for the allocation of the engine (ws.h): no I/O, never logs.
 */
#ifndef UP_WORKER_HANDSHAKE_H
#define UP_WORKER_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

/* The length of a Sec-WebSocket-Accept value: base64 of a SHA-1 digest. */
#define UP_HANDSHAKE_ACCEPT_LEN 28

/* The Sec-WebSocket-Accept value for the key as the client sent it:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), written to
 * out with a NUL (UP_HANDSHAKE_ACCEPT_LEN + 1 bytes). */
void up_handshake_accept(const char *key, size_t len, char *out);

/* Whether the Sec-WebSocket-Protocol value list (a comma-separated list of
 * tokens) holds name, compared case-sensitively. */
bool up_handshake_offered(const char *list, const char *name, size_t name_len);

/* SHA-1 (FIPS 180-4) of data[0..len) into digest (20 bytes). For the
 * handshake only: nothing here needs it to resist collisions. */
void up_handshake_sha1(const void *data, size_t len, unsigned char *digest);

#endif
