/*
 * accesslog: one line per request served, written by the worker that served
 * it (the master stays out of the data path).
 *
 * Formats: combined (nginx's and Apache's, with the worker's generation and
 * the request time in µs appended as gen=N us=N) and json (one object per
 * line). Fields from the client (target, Referer, User-Agent) are escaped so
 * that a line is always one line and, in json, valid JSON: combined writes
 * '"', '\' and bytes outside printable ASCII as \xHH, as nginx does; json
 * writes them as \uXXXX (a byte over 0x7f as that code point, so any bytes
 * give valid UTF-8).
 *
 * Lines go through a batching sink (sink.h): never a blocking write in the
 * worker's loop, at most one write per batch period, and a sink that does
 * not take them (a stuck pipe, a full disk) drops lines and counts them.
 * up_alog_reopen() opens the path again (logrotate moved the file away).
 */
#ifndef UP_ACCESSLOG_H
#define UP_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "loop.h"
#include "sink.h"

enum up_alog_format {
    UP_ALOG_COMBINED,
    UP_ALOG_JSON,
};

/* Parse "combined" or "json"; -EINVAL for anything else. */
int up_alog_format_parse(const char *s, enum up_alog_format *ret);

/* One request, as it is logged. Strings are borrowed, NUL-terminated. */
struct up_alog_entry {
    const char *peer;   /* "ADDR:PORT", "[V6]:PORT", "unix" or "" */
    time_t when;        /* wall clock, when the response was done */
    const char *method; /* NULL: no request could be read (400, 408) */
    const char *target; /* NULL with method */
    unsigned minor;     /* HTTP/1.minor */
    int status;
    uint64_t bytes;         /* body bytes queued */
    const char *referer;    /* NULL: none */
    const char *user_agent; /* NULL: none */
    unsigned generation;
    uint64_t us; /* first byte of the request to the last of the response queued */
};

/* The longest line; longer fields are cut so that a line fits. */
#define UP_ALOG_LINE_MAX 4096

/* Format e as one line (no newline) into buf (UP_ALOG_LINE_MAX bytes);
 * returns its length. */
size_t up_alog_format_line(enum up_alog_format f, const struct up_alog_entry *e, char *buf);

struct up_alog {
    enum up_alog_format format;
    const char *path; /* borrowed; "-" is standard output */
    int fd;           /* owned (not for "-"), or -1 */
    struct up_sink sink;
    bool open;
};

/* Open path ("-": fd 1) for appending, creating it with mode 0644. Lines
 * are written through loop (borrowed until up_alog_close()). Returns 0 or
 * -errno (the path cannot be opened, -ENOMEM). */
int up_alog_open(struct up_alog *a, const char *path, enum up_alog_format f, struct up_loop *loop);

/* Log e. */
void up_alog_put(struct up_alog *a, const struct up_alog_entry *e);

/* Open the path again and write there from now on; what is buffered goes
 * to the old file first. On failure the old file stays in use. Returns 0
 * or -errno. */
int up_alog_reopen(struct up_alog *a);

/* Lines given and lines dropped since start. */
uint64_t up_alog_lines(const struct up_alog *a);
uint64_t up_alog_dropped(const struct up_alog *a);

/* A last non-blocking attempt to write what waits, then free everything
 * (before the loop is drained). No-op if not open. */
void up_alog_close(struct up_alog *a);

#endif
