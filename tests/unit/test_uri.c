/*
 * uri: authorities and absolute-form targets. Each input is checked from a
 * buffer of exactly its size (ASan catches a read past it).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"

static bool authority_ok(const char *s, bool need_port)
{
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    cr_assert_not_null(copy);
    memcpy(copy, s, len);
    bool ok = up_uri_authority_ok(copy, len, need_port);
    free(copy);
    return ok;
}

Test(uri, authority_is_host_and_optional_port, .timeout = 10)
{
    static const char *const good[] = {
        "h",
        "example.com",
        "example.com:8080",
        "h:",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "[2001:db8::ffff:1.2.3.4]",
        "[v1.a:b]",
        "%41%4a",
        "a-b_c~d!$&'()*+,;=",
    };
    static const char *const bad[] = {
        "",        ":80",     "]ufd",      "u@h",   "u:p@h:80", "h:8o", "h:1:2", "h/x",
        "h?x",     "h#x",     "a b",       "h%",    "h%4",      "h%zz", "[::1",  "[::1]x",
        "[::1]:x", "[zz::1]", "[1.2.3.4]", "[v.x]", "[v1.]",    "[]",   "h\x01", "h\x80",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cr_assert(authority_ok(good[i], false), "%s refused", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert(!authority_ok(bad[i], false), "%s accepted", bad[i]);
    }
    cr_assert(authority_ok("h:443", true));
    cr_assert(authority_ok("[::1]:443", true));
    cr_assert(!authority_ok("h", true), "CONNECT needs a port");
    cr_assert(!authority_ok("h:", true), "CONNECT needs a port");
}

Test(uri, absolute_authority_is_found_after_the_scheme, .timeout = 10)
{
    static const struct {
        const char *target;
        const char *authority; /* NULL: not absolute-form */
    } cases[] = {
        {"http://example.com/x?y", "example.com"},
        {"HTTPS://h:8443?q", "h:8443"},
        {"s://]ufd/:", "]ufd"},
        {"http:///x", ""},
        {"a+b-c.d://h", "h"},
        {"/x://y", NULL},
        {"*", NULL},
        {"h:443", NULL},
        {"http:/x", NULL},
        {"1http://h/", NULL},
        {"://h/", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *t = cases[i].target;
        const char *at = NULL;
        size_t n = 0;
        bool abs = up_uri_absolute_authority(t, strlen(t), &at, &n);
        cr_assert_eq(abs, cases[i].authority != NULL, "%s", t);
        if (abs) {
            cr_assert_eq(n, strlen(cases[i].authority), "%s", t);
            cr_assert_eq(memcmp(at, cases[i].authority, n), 0, "%s", t);
        }
    }
}
