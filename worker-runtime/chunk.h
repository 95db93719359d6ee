/*
 * chunk: one chunk-size line of a chunked request body (RFC 9112 7.1), with
 * the CRLF that ends the previous chunk's data before it, checked byte by
 * byte so that it runs over bytes arriving in any pieces:
 *
 *     chunk-size [ chunk-ext ] CRLF
 *     chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )
 *
 * a name a token, a value a token or a quoted-string, the size at most 16
 * hex digits (leading zeros included). The worker's parser gives llhttp the
 * line rewritten (up_chunk_line_rewrite()): llhttp built loose skips the two
 * bytes after a chunk's data and the byte after a size line's CR unread, and
 * takes no BWS around `;` and `=`, so its chunk parsing must never decide.
 *
 * Pure: no I/O, no allocation, no global state; never logs.
 */
#ifndef UP_CHUNK_H
#define UP_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct up_chunk_line {
    uint8_t state;   /* private: enum chunk_state in chunk.c */
    bool after_data; /* the CRLF ending a chunk's data comes first */
    uint8_t ndigits; /* the size as sent: digits[0..ndigits) */
    char digits[16]; /* */
};

/* The longest line up_chunk_line_rewrite() writes. */
#define UP_CHUNK_LINE_MAX 20

/* Start a line: the first after the head, or (after_data) one after a
 * chunk's data. */
void up_chunk_line_init(struct up_chunk_line *k, bool after_data);

/* One byte. Returns 1 when it ended the line (its LF), 0 to go on, or
 * -EPROTO for a byte the grammar does not allow there. On 0 and 1, *ret_ext
 * says whether it was a byte of the extensions (anything on the line but
 * the size and the CRLFs), which count toward the body limit. */
int up_chunk_line_byte(struct up_chunk_line *k, unsigned char c, bool *ret_ext);

/* The line as llhttp gets it, `[CRLF] size CRLF`, into buf (at least
 * UP_CHUNK_LINE_MAX bytes). Returns its length. */
size_t up_chunk_line_rewrite(const struct up_chunk_line *k, char *buf);

#endif
