/*
 * sticky: the built-in middleware for sticky routing (--sticky). It keeps a
 * client on one worker of the serving generation by a key taken from its
 * first request: a cookie, a header field, or its address. The key is
 * hashed here; which worker a hash goes to is rendezvous hashing over the
 * generation's workers (up_gens_pick_key()), so that a worker joining or
 * leaving moves only the keys it wins or won. A request without the cookie
 * or field goes round-robin (UP_ROUTE_NEXT).
 *
 * Pure: no I/O but the peer address lookup the request offers; never logs.
 */
#ifndef UP_STICKY_H
#define UP_STICKY_H

#include <stddef.h>
#include <stdint.h>

#include "up/middleware.h"

enum up_sticky_by {
    UP_STICKY_COOKIE,
    UP_STICKY_HEADER,
    UP_STICKY_IP,
};

struct up_sticky {
    enum up_sticky_by by;
    char name[128]; /* the cookie's or the field's */
};

/* Parse "cookie:NAME", "header:NAME" or "ip". Returns 0, or -EINVAL with
 * err (cap bytes) saying what is wrong. */
int up_sticky_parse(const char *spec, struct up_sticky *ret, char *err, size_t cap);

/* The middleware (ctx: a struct up_sticky). */
enum up_route up_sticky_route(void *ctx, const struct up_request *req, struct up_route_out *out);

/* The key of bytes: 64-bit FNV-1a. */
uint64_t up_sticky_hash(const void *data, size_t len);

/* Rendezvous hashing: of the n workers with these indexes (n > 0), the one
 * key goes to: each scores (key, index), the highest wins. Returns its
 * position in indexes. A worker joining or leaving changes the winner only
 * for the keys it wins or won; indexes, not pids, so that a replacement
 * takes its predecessor's keys. */
size_t up_sticky_pick(uint64_t key, const unsigned *indexes, size_t n);

#endif
