/*
 * strbuf: text appended into a buffer of fixed size (a status report, a
 * metrics page), cut at its end: what does not fit is dropped, and the text
 * stays NUL-terminated. Never allocates.
 */
#ifndef UP_STRBUF_H
#define UP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
