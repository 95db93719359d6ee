#include "sticky.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int up_sticky_parse(const char *spec, struct up_sticky *ret, char *err, size_t cap)
{
    struct up_sticky s = {0};
    const char *name = NULL;
    if (strcmp(spec, "ip") == 0) {
        s.by = UP_STICKY_IP;
    } else if (strncmp(spec, "cookie:", 7) == 0) {
        s.by = UP_STICKY_COOKIE;
        name = spec + 7;
    } else if (strncmp(spec, "header:", 7) == 0) {
        s.by = UP_STICKY_HEADER;
        name = spec + 7;
    } else {
        snprintf(err, cap, "'%s' is not cookie:NAME, header:NAME or ip", spec);
        return -EINVAL;
    }
    if (name != NULL) {
        size_t n = strlen(name);
        bool token = n > 0;
        for (size_t i = 0; i < n && token; i++) {
            token =
                name[i] > ' ' && name[i] < 127 && strchr("()<>@,;:\\\"/[]?={}", name[i]) == NULL;
        }
        if (!token || n >= sizeof(s.name)) {
            snprintf(err, cap, "'%s': the name must be a token of 1 to %zu characters", spec,
                     sizeof(s.name) - 1);
            return -EINVAL;
        }
        memcpy(s.name, name, n + 1);
    }
    *ret = s;
    return 0;
}

uint64_t up_sticky_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

enum up_route up_sticky_route(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    const struct up_sticky *s = ctx;
    const char *value = NULL;
    size_t len = 0;
    int r = -ENOENT;
    switch (s->by) {
    case UP_STICKY_COOKIE:
        r = up_request_cookie(req, s->name, &value, &len);
        break;
    case UP_STICKY_HEADER:
        r = up_request_header(req, s->name, &value, &len);
        break;
    case UP_STICKY_IP: {
        const struct sockaddr *a;
        socklen_t alen = up_request_peer(req, &a);
        if (alen >= sizeof(struct sockaddr_in) && a->sa_family == AF_INET) {
            value = (const char *)&((const struct sockaddr_in *)(const void *)a)->sin_addr;
            len = sizeof(struct in_addr);
            r = 0;
        } else if (alen >= sizeof(struct sockaddr_in6) && a->sa_family == AF_INET6) {
            value = (const char *)&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr;
            len = sizeof(struct in6_addr);
            r = 0;
        }
        break;
    }
    }
    if (r < 0 || len == 0) {
        return UP_ROUTE_NEXT;
    }
    out->worker = -1;
    out->key = up_sticky_hash(value, len);
    return UP_ROUTE_WORKER;
}

/* A well-mixed 64-bit hash of (key, index): splitmix64's finalizer over
 * the two. */
static uint64_t score(uint64_t key, unsigned index)
{
    uint64_t x = key ^ (0x9e3779b97f4a7c15ull * ((uint64_t)index + 1));
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

size_t up_sticky_pick(uint64_t key, const unsigned *indexes, size_t n)
{
    size_t best = 0;
    uint64_t best_score = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t sc = score(key, indexes[i]);
        if (i == 0 || sc > best_score) {
            best = i;
            best_score = sc;
        }
    }
    return best;
}
