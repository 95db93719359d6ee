#include "chunk.h"

#include <errno.h>
#include <string.h>

#include "head.h"

enum chunk_state {
    CHUNK_DATA_CR,   /* the CR after a chunk's data */
    CHUNK_DATA_LF,   /* the LF after it */
    CHUNK_SIZE,      /* in the size (ndigits so far) */
    CHUNK_LF,        /* the LF ending the line */
    CHUNK_BWS,       /* BWS after the size or a value: ';' must follow */
    CHUNK_NAME0,     /* after ';': BWS, then a name */
    CHUNK_NAME,      /* in a name */
    CHUNK_NAME_BWS,  /* BWS after a name: '=' or ';' must follow */
    CHUNK_VALUE0,    /* after '=': BWS, then a token or a quoted-string */
    CHUNK_TOKEN,     /* in a token value */
    CHUNK_QUOTED,    /* in a quoted-string */
    CHUNK_QPAIR,     /* after a backslash in it */
    CHUNK_QUOTE_END, /* after its closing quote */
};

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Where a byte that ends a name, a value or the size may lead. */
static int chunk_after(struct up_chunk_line *k, unsigned char c, uint8_t ws_state)
{
    if (c == ';') {
        k->state = CHUNK_NAME0;
    } else if (c == '\r') {
        k->state = CHUNK_LF;
    } else if (is_ws(c)) {
        k->state = ws_state;
    } else {
        return -EPROTO;
    }
    return 0;
}

/* qdtext and the second byte of a quoted-pair: HTAB, SP, VCHAR, obs-text
 * (qdtext without '"' and '\\'). */
static bool quoted_ok(unsigned char c, bool pair)
{
    return c == '\t' || (c >= ' ' && c != 0x7f && (pair || (c != '"' && c != '\\')));
}

/* 1 when c ended the line, 0 to go on, -EPROTO. The size is at most 16 hex
 * digits, leading zeros included: its value then fits in 64 bits. */
static int line_byte(struct up_chunk_line *k, unsigned char c)
{
    switch ((enum chunk_state)k->state) {
    case CHUNK_DATA_CR:
        k->state = CHUNK_DATA_LF;
        return c == '\r' ? 0 : -EPROTO;
    case CHUNK_DATA_LF:
        k->state = CHUNK_SIZE;
        return c == '\n' ? 0 : -EPROTO;
    case CHUNK_SIZE:
        if (is_hex(c)) {
            if (k->ndigits == sizeof(k->digits)) {
                return -EPROTO;
            }
            k->digits[k->ndigits++] = (char)c;
            return 0;
        }
        return k->ndigits > 0 ? chunk_after(k, c, CHUNK_BWS) : -EPROTO;
    case CHUNK_LF:
        return c == '\n' ? 1 : -EPROTO;
    case CHUNK_BWS:
        return is_ws(c) || c == ';' ? chunk_after(k, c, CHUNK_BWS) : -EPROTO;
    case CHUNK_NAME0:
    case CHUNK_VALUE0:
        if (is_ws(c)) {
            return 0;
        }
        if (c == '"' && k->state == CHUNK_VALUE0) {
            k->state = CHUNK_QUOTED;
            return 0;
        }
        k->state = k->state == CHUNK_NAME0 ? CHUNK_NAME : CHUNK_TOKEN;
        return up_head_token((const char *)&c, 1) ? 0 : -EPROTO;
    case CHUNK_NAME:
    case CHUNK_NAME_BWS:
        if (c == '=') {
            k->state = CHUNK_VALUE0;
            return 0;
        }
        if (k->state == CHUNK_NAME && up_head_token((const char *)&c, 1)) {
            return 0;
        }
        if (k->state == CHUNK_NAME_BWS && c == '\r') {
            return -EPROTO;
        }
        return chunk_after(k, c, CHUNK_NAME_BWS);
    case CHUNK_TOKEN:
        return up_head_token((const char *)&c, 1) ? 0 : chunk_after(k, c, CHUNK_BWS);
    case CHUNK_QUOTED:
        if (c == '"' || c == '\\') {
            k->state = c == '"' ? CHUNK_QUOTE_END : CHUNK_QPAIR;
            return 0;
        }
        return quoted_ok(c, false) ? 0 : -EPROTO;
    case CHUNK_QPAIR:
        k->state = CHUNK_QUOTED;
        return quoted_ok(c, true) ? 0 : -EPROTO;
    case CHUNK_QUOTE_END:
        return chunk_after(k, c, CHUNK_BWS);
    }
    return -EPROTO;
}

void up_chunk_line_init(struct up_chunk_line *k, bool after_data)
{
    *k = (struct up_chunk_line){after_data ? CHUNK_DATA_CR : CHUNK_SIZE, after_data, 0, {0}};
}

/* Extension bytes: from the first byte after the size to the CR. */
int up_chunk_line_byte(struct up_chunk_line *k, unsigned char c, bool *ret_ext)
{
    bool ext =
        (k->state == CHUNK_SIZE && !is_hex(c) && c != '\r') || (k->state > CHUNK_LF && c != '\r');
    int r = line_byte(k, c);
    if (r >= 0) {
        *ret_ext = ext;
    }
    return r;
}

size_t up_chunk_line_rewrite(const struct up_chunk_line *k, char *buf)
{
    size_t n = 0;
    if (k->after_data) {
        memcpy(buf, "\r\n", 2);
        n = 2;
    }
    memcpy(buf + n, k->digits, k->ndigits);
    memcpy(buf + n + k->ndigits, "\r\n", 2);
    return n + k->ndigits + 2;
}
