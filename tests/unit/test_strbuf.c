/*
 * strbuf: appends fit or are cut at the end, and the text stays whole.
 */
#include <criterion/criterion.h>

#include "strbuf.h"

#include <string.h>

Test(strbuf, appends_until_full_then_cuts)
{
    char buf[16];
    struct up_strbuf sb = up_strbuf_on(buf, sizeof(buf));
    cr_assert_str_eq(buf, "");
    up_strbuf_printf(&sb, "%s=%d ", "a", 1);
    up_strbuf_printf(&sb, "%s=%d ", "bb", 22);
    cr_assert_str_eq(buf, "a=1 bb=22 ");
    cr_assert_eq(sb.len, 10);
    cr_assert(!sb.cut);
    up_strbuf_printf(&sb, "%s", "0123456789");
    cr_assert_eq(sb.len, 15);
    cr_assert_str_eq(buf, "a=1 bb=22 01234");
    cr_assert(sb.cut);
    up_strbuf_printf(&sb, "more");
    cr_assert_eq(sb.len, 15);
    cr_assert_eq(strlen(buf), 15);
}

Test(strbuf, no_room_at_all)
{
    char one[1] = {'x'};
    struct up_strbuf sb = up_strbuf_on(one, 1);
    up_strbuf_printf(&sb, "abc");
    cr_assert_eq(sb.len, 0);
    cr_assert_eq(one[0], '\0');
    cr_assert(sb.cut);
    struct up_strbuf none = up_strbuf_on(NULL, 0);
    up_strbuf_printf(&none, "abc");
    cr_assert_eq(none.len, 0);
    cr_assert(none.cut);
}

Test(strbuf, json_strings_are_escaped)
{
    char buf[128];
    struct up_strbuf sb = up_strbuf_on(buf, sizeof(buf));
    up_strbuf_json(&sb, "a\"b\\c\nd\te\x01\xc3\xa9");
    cr_assert_str_eq(buf, "\"a\\\"b\\\\c\\nd\\u0009e\\u0001\xc3\xa9\"");
}

Test(strbuf, fmt_uint_in_base_10_and_16)
{
    static const struct {
        uint64_t v;
        unsigned base;
        const char *want;
    } cases[] = {
        {0, 10, "0"},
        {7, 10, "7"},
        {200, 10, "200"},
        {1000000, 10, "1000000"},
        {UINT64_MAX, 10, "18446744073709551615"},
        {0, 16, "0"},
        {255, 16, "ff"},
        {4096, 16, "1000"},
        {UINT64_MAX, 16, "ffffffffffffffff"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[UP_FMT_UINT_MAX + 1];
        memset(out, 'x', sizeof(out));
        size_t n = up_fmt_uint(out, cases[i].v, cases[i].base);
        cr_assert_eq(n, strlen(cases[i].want), "case %zu: %zu digits", i, n);
        cr_assert_eq(memcmp(out, cases[i].want, n), 0, "case %zu: %.*s", i, (int)n, out);
        cr_assert_eq(out[n], 'x', "case %zu: wrote past its digits", i);
    }
}
