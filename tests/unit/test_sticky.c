/*
 * sticky, alone: the spec parser, and the rendezvous pick: keys spread
 * evenly, and a worker joining or leaving moves only its share. (The
 * middleware on a real request head is in test_router.c.)
 */
#include <criterion/criterion.h>

#include "sticky.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define KEYS 10000

Test(sticky, parse_the_three_forms)
{
    struct up_sticky s;
    char err[256];
    cr_assert_eq(up_sticky_parse("ip", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.by, UP_STICKY_IP);
    cr_assert_eq(up_sticky_parse("cookie:sid", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.by, UP_STICKY_COOKIE);
    cr_assert_str_eq(s.name, "sid");
    cr_assert_eq(up_sticky_parse("header:X-Tenant", &s, err, sizeof(err)), 0);
    cr_assert_eq(s.by, UP_STICKY_HEADER);
    cr_assert_str_eq(s.name, "X-Tenant");
}

Test(sticky, parse_errors_say_what_to_write)
{
    struct up_sticky s = {.by = UP_STICKY_IP, .name = "kept"};
    char err[256];
    const char *bad[] = {"",     "cookie",     "cookie:",    "header:",   "Cookie:sid",
                         "ip:1", "cookie:a b", "header:X;Y", "cookie:a=b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(up_sticky_parse(bad[i], &s, err, sizeof(err)), -EINVAL, "'%s'", bad[i]);
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        cr_assert(strncmp(err, quoted, strlen(quoted)) == 0, "'%s': %s", bad[i], err);
    }
    cr_assert(strstr(err, "token") != NULL, "%s", err);
    char long_name[200] = "cookie:";
    memset(long_name + 7, 'a', 150);
    long_name[157] = '\0';
    cr_assert_eq(up_sticky_parse(long_name, &s, err, sizeof(err)), -EINVAL);
    /* A failed parse leaves the old value. */
    cr_assert_eq(s.by, UP_STICKY_IP);
    cr_assert_str_eq(s.name, "kept");
}

Test(sticky, hash_is_fnv1a)
{
    /* The published FNV-1a 64 values: the key must not change between
     * versions, or an upgraded master moves every client. */
    cr_assert_eq(up_sticky_hash("", 0), 0xcbf29ce484222325ull);
    cr_assert_eq(up_sticky_hash("a", 1), 0xaf63dc4c8601ec8cull);
    cr_assert_eq(up_sticky_hash("foobar", 6), 0x85944171f73967e8ull);
}

/* Where each of KEYS keys goes over these indexes. */
static void place(const unsigned *indexes, size_t n, unsigned *ret)
{
    for (unsigned k = 0; k < KEYS; k++) {
        ret[k] = indexes[up_sticky_pick(up_sticky_hash(&k, sizeof(k)), indexes, n)];
    }
}

Test(sticky, keys_spread_evenly)
{
    static unsigned at[KEYS];
    for (size_t n = 1; n <= 8; n++) {
        unsigned indexes[8];
        for (size_t i = 0; i < n; i++) {
            indexes[i] = (unsigned)i;
        }
        place(indexes, n, at);
        unsigned count[8] = {0};
        for (unsigned k = 0; k < KEYS; k++) {
            count[at[k]]++;
        }
        for (size_t i = 0; i < n; i++) {
            double share = (double)count[i] * (double)n / KEYS;
            cr_assert(share > 0.9 && share < 1.1, "%zu workers: worker %zu has %u keys", n, i,
                      count[i]);
        }
    }
}

Test(sticky, the_order_of_workers_does_not_matter)
{
    static unsigned a[KEYS], b[KEYS];
    unsigned fwd[] = {0, 1, 2, 3, 4};
    unsigned rev[] = {4, 3, 2, 1, 0};
    place(fwd, 5, a);
    place(rev, 5, b);
    cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
}

Test(sticky, joining_or_leaving_moves_only_its_share)
{
    static unsigned before[KEYS], after[KEYS];
    unsigned four[] = {0, 1, 2, 3};
    unsigned five[] = {0, 1, 2, 3, 4};
    place(four, 4, before);
    place(five, 5, after);
    unsigned moved = 0;
    for (unsigned k = 0; k < KEYS; k++) {
        if (before[k] != after[k]) {
            cr_assert_eq(after[k], 4, "key %u moved between old workers", k);
            moved++;
        }
    }
    cr_assert(moved > KEYS / 5 - KEYS / 20 && moved < KEYS / 5 + KEYS / 20, "%u moved", moved);

    /* Worker 2 leaves: only its keys move, spread over the others. */
    unsigned without2[] = {0, 1, 3, 4};
    place(without2, 4, before);
    for (unsigned k = 0; k < KEYS; k++) {
        if (after[k] != 2) {
            cr_assert_eq(before[k], after[k], "key %u moved though its worker stayed", k);
        } else {
            cr_assert_neq(before[k], 2);
        }
    }
}
