#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>

struct up_strbuf up_strbuf_on(char *buf, size_t cap)
{
    if (cap > 0) {
        buf[0] = '\0';
    }
    return (struct up_strbuf){.buf = buf, .cap = cap, .cut = cap == 0};
}

void up_strbuf_printf(struct up_strbuf *sb, const char *fmt, ...)
{
    if (sb->cap == 0) {
        return;
    }
    size_t room = sb->cap - sb->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->buf[sb->len] = '\0';
        sb->cut = true;
    } else if ((size_t)n >= room) {
        sb->len = sb->cap - 1;
        sb->cut = true;
    } else {
        sb->len += (size_t)n;
    }
}

void up_strbuf_json(struct up_strbuf *sb, const char *s)
{
    up_strbuf_printf(sb, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            up_strbuf_printf(sb, "\\%c", *p);
        } else if (*p == '\n') {
            up_strbuf_printf(sb, "\\n");
        } else if (*p < 0x20 || *p == 0x7f) {
            up_strbuf_printf(sb, "\\u%04x", *p);
        } else {
            up_strbuf_printf(sb, "%c", *p);
        }
    }
    up_strbuf_printf(sb, "\"");
}
