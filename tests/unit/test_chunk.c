/*
 * chunk: the chunk-size line, fed one byte at a time (the scanner has no
 * other way), and its rewrite for llhttp.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "chunk.h"

/* Feed line; returns 1 at its end (which must be its last byte), or the
 * error, with *ret_ext the extension bytes seen and *ret_at where it ended. */
static int feed(struct up_chunk_line *k, const char *line, size_t *ret_ext, size_t *ret_at)
{
    size_t len = strlen(line);
    *ret_ext = 0;
    for (size_t i = 0; i < len; i++) {
        bool ext = false;
        int r = up_chunk_line_byte(k, (unsigned char)line[i], &ext);
        *ret_at = i;
        if (r < 0) {
            return r;
        }
        *ret_ext += ext;
        if (r > 0) {
            return i + 1 == len ? 1 : -EINVAL;
        }
    }
    return 0;
}

Test(chunk, size_lines_with_extensions_and_their_rewrite, .timeout = 10)
{
    static const struct {
        const char *line;
        bool after_data;
        size_t ext;
        const char *rewrite;
    } good[] = {
        {"5\r\n", false, 0, "5\r\n"},
        {"\r\n0a\r\n", true, 0, "\r\n0a\r\n"},
        {"5;a\r\n", false, 2, "5\r\n"},
        {"5 ; name = value\r\n", false, 15, "5\r\n"},
        {"5\t;\ta\t=\t\"q \\\" \x80\"\t;b\r\n", false, 18, "5\r\n"},
        {"FFFFffff00000000;x=\"\"\r\n", false, 5, "FFFFffff00000000\r\n"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct up_chunk_line k;
        size_t ext, at;
        up_chunk_line_init(&k, good[i].after_data);
        cr_assert_eq(feed(&k, good[i].line, &ext, &at), 1, "%s: refused at %zu", good[i].line, at);
        cr_assert_eq(ext, good[i].ext, "%s: %zu extension bytes", good[i].line, ext);
        char buf[UP_CHUNK_LINE_MAX];
        size_t n = up_chunk_line_rewrite(&k, buf);
        cr_assert_eq(n, strlen(good[i].rewrite), "%s", good[i].line);
        cr_assert_eq(memcmp(buf, good[i].rewrite, n), 0, "%s", good[i].line);
    }
}

Test(chunk, bad_lines_are_refused_at_the_bad_byte, .timeout = 10)
{
    static const struct {
        const char *line;
        bool after_data;
        size_t at;
    } bad[] = {
        {"XY5\r\n", true, 0},           {"\r\r\n", true, 1},
        {"\n5\r\n", true, 0},           {";a\r\n", false, 0},
        {" 5\r\n", false, 0},           {"5 \r\n", false, 2},
        {"5;\r\n", false, 2},           {"5;a \r\n", false, 4},
        {"5;a=\r\n", false, 4},         {"5;a=\"x\r\n", false, 6},
        {"5;a=\"x\"y\r\n", false, 7},   {"5;=b\r\n", false, 2},
        {"5;;a\r\n", false, 2},         {"5;a(b\r\n", false, 3},
        {"5;a=b c\r\n", false, 6},      {"5\rx", false, 2},
        {"5;a=\"\x7f\"\r\n", false, 5}, {"00000000000000005\r\n", false, 16},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct up_chunk_line k;
        size_t ext, at;
        up_chunk_line_init(&k, bad[i].after_data);
        cr_assert_eq(feed(&k, bad[i].line, &ext, &at), -EPROTO, "%s accepted", bad[i].line);
        cr_assert_eq(at, bad[i].at, "%s: refused at %zu", bad[i].line, at);
    }
}
