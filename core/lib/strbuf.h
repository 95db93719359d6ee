/*
 * strbuf: text appended into a buffer of fixed size (a status report, a
 * metrics page), cut at its end: what does not fit is dropped, and the text
 * stays NUL-terminated. Never allocates.
 */
#ifndef UP_STRBUF_H
#define UP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct up_strbuf {
    char *buf;
    size_t cap; /* bytes of buf, NUL included */
    size_t len; /* bytes of text; < cap when cap > 0 */
    bool cut;   /* something did not fit */
};

/* An empty text in buf (cap bytes; cap 0: everything is cut). */
struct up_strbuf up_strbuf_on(char *buf, size_t cap);

/* Append printf-style. */
void up_strbuf_printf(struct up_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append s as a JSON string: quoted, with '"', '\\' and control bytes
 * escaped (bytes from 0x80 are copied: the text is UTF-8 or opaque). */
void up_strbuf_json(struct up_strbuf *sb, const char *s);

/* The digits of v in base 10 or 16 (lowercase) at out, not NUL-terminated:
 * their count, at most UP_FMT_UINT_MAX. For the per-request paths (a
 * response head, an access log line), where printf costs more than what it
 * formats. */
#define UP_FMT_UINT_MAX 20
static inline size_t up_fmt_uint(char *out, uint64_t v, unsigned base)
{
    char d[UP_FMT_UINT_MAX];
    size_t n = 0;
    do {
        d[sizeof(d) - 1 - n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v > 0);
    memcpy(out, d + sizeof(d) - n, n);
    return n;
}

#endif
