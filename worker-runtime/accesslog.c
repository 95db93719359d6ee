#include "accesslog.h"

#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Lines wait at most this long: one write(2) per period under load, and a
 * `tail -f` still sees a request within a blink. */
#define BATCH_MS 100

/* 128 KiB: a period of some thousand lines, and room to ride out a reader
 * that stalls for a moment; past it, lines are dropped and counted. */
#define BUF_SIZE (128 * 1024)

/* Longest piece of a field taken from the client, before escaping. */
#define FIELD_MAX 1024

int up_alog_format_parse(const char *s, enum up_alog_format *ret)
{
    if (strcmp(s, "combined") == 0) {
        *ret = UP_ALOG_COMBINED;
    } else if (strcmp(s, "json") == 0) {
        *ret = UP_ALOG_JSON;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* An output buffer that cuts, never overflows. */
struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) {
        n = o->cap - o->len;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char d[UP_FMT_UINT_MAX];
    put(o, d, up_fmt_uint(d, v, 10));
}

/* s escaped for the format, at most FIELD_MAX of its bytes; NULL is "-" in
 * combined, "" in json. */
static void put_escaped(struct out *o, enum up_alog_format f, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (s == NULL) {
        puts_(o, f == UP_ALOG_COMBINED ? "-" : "");
        return;
    }
    size_t i = 0;
    while (s[i] != '\0' && i < FIELD_MAX) {
        /* A run of bytes that need nothing, in one copy. */
        size_t run = i;
        while (run < FIELD_MAX && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x7f &&
               s[run] != '"' && s[run] != '\\') {
            run++;
        }
        put(o, s + i, run - i);
        i = run;
        if (i >= FIELD_MAX || s[i] == '\0') {
            break;
        }
        unsigned char c = (unsigned char)s[i++];
        if (f == UP_ALOG_COMBINED) {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(o, e, 4);
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(o, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        }
    }
}

/* The peer's address without its port, for combined. */
static void put_addr(struct out *o, const char *peer)
{
    const char *colon = strrchr(peer, ':');
    if (peer[0] == '\0') {
        puts_(o, "-");
    } else if (peer[0] == '[' && colon != NULL && colon > peer && colon[-1] == ']') {
        put(o, peer + 1, (size_t)(colon - peer - 2));
    } else if (colon != NULL) {
        put(o, peer, (size_t)(colon - peer));
    } else {
        puts_(o, peer);
    }
}

/* The time fields of both formats, made once per second (localtime_r()
 * and strftime() per line cost more than the rest of the line). */
static struct {
    time_t sec;
    char combined[40], json[40];
} alog_clock = {.sec = -1};

static void clock_at(time_t when)
{
    if (when == alog_clock.sec) {
        return;
    }
    struct tm tm;
    localtime_r(&when, &tm);
    strftime(alog_clock.combined, sizeof(alog_clock.combined), "%d/%b/%Y:%H:%M:%S %z", &tm);
    strftime(alog_clock.json, sizeof(alog_clock.json), "%Y-%m-%dT%H:%M:%S%z", &tm);
    alog_clock.sec = when;
}

size_t up_alog_format_line(enum up_alog_format f, const struct up_alog_entry *e, char *buf)
{
    struct out o = {.p = buf, .cap = UP_ALOG_LINE_MAX - 1};
    clock_at(e->when);
    if (f == UP_ALOG_COMBINED) {
        put_addr(&o, e->peer);
        puts_(&o, " - - [");
        puts_(&o, alog_clock.combined);
        puts_(&o, "] \"");
        if (e->method != NULL) {
            put_escaped(&o, f, e->method);
            puts_(&o, " ");
            put_escaped(&o, f, e->target);
            puts_(&o, " HTTP/1.");
            put_u64(&o, e->minor);
        } else {
            puts_(&o, "-"); /* no request could be read: nginx's way */
        }
        puts_(&o, "\" ");
        put_u64(&o, (uint64_t)e->status);
        puts_(&o, " ");
        put_u64(&o, e->bytes);
        puts_(&o, " \"");
        put_escaped(&o, f, e->referer);
        puts_(&o, "\" \"");
        put_escaped(&o, f, e->user_agent);
        puts_(&o, "\" gen=");
        put_u64(&o, e->generation);
        puts_(&o, " us=");
        put_u64(&o, e->us);
    } else {
        puts_(&o, "{\"time\":\"");
        puts_(&o, alog_clock.json);
        puts_(&o, "\",\"peer\":\"");
        put_escaped(&o, f, e->peer);
        puts_(&o, "\",\"method\":\"");
        put_escaped(&o, f, e->method);
        puts_(&o, "\",\"target\":\"");
        put_escaped(&o, f, e->target);
        puts_(&o, "\",\"proto\":\"HTTP/1.");
        put_u64(&o, e->minor);
        puts_(&o, "\",\"status\":");
        put_u64(&o, (uint64_t)e->status);
        puts_(&o, ",\"bytes\":");
        put_u64(&o, e->bytes);
        puts_(&o, ",\"referer\":\"");
        put_escaped(&o, f, e->referer);
        puts_(&o, "\",\"user_agent\":\"");
        put_escaped(&o, f, e->user_agent);
        puts_(&o, "\",\"generation\":");
        put_u64(&o, e->generation);
        puts_(&o, ",\"us\":");
        put_u64(&o, e->us);
        puts_(&o, "}");
    }
    buf[o.len] = '\0';
    return o.len;
}

static int open_path(const char *path)
{
    if (strcmp(path, "-") == 0) {
        return STDOUT_FILENO;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    return fd < 0 ? -errno : fd;
}

int up_alog_open(struct up_alog *a, const char *path, enum up_alog_format f, struct up_loop *loop)
{
    memset(a, 0, sizeof(*a));
    a->fd = -1;
    int fd = open_path(path);
    if (fd < 0) {
        return fd;
    }
    int r = up_sink_init(&a->sink, fd, BUF_SIZE, BATCH_MS, NULL, NULL);
    if (r < 0) {
        if (fd != STDOUT_FILENO) {
            close(fd);
        }
        return r;
    }
    up_sink_start(&a->sink, loop);
    a->fd = fd != STDOUT_FILENO ? fd : -1;
    a->path = path;
    a->format = f;
    a->open = true;
    return 0;
}

void up_alog_put(struct up_alog *a, const struct up_alog_entry *e)
{
    char line[UP_ALOG_LINE_MAX];
    size_t n = up_alog_format_line(a->format, e, line);
    up_sink_put(&a->sink, line, n);
}

int up_alog_reopen(struct up_alog *a)
{
    if (!a->open || a->fd < 0) {
        return 0; /* standard output: nothing to reopen */
    }
    int fd = open_path(a->path);
    if (fd < 0) {
        return fd;
    }
    /* Lines logged before the reopen belong to the old file (a file never
     * makes us wait). */
    up_sink_flush(&a->sink);
    up_sink_retarget(&a->sink, fd);
    close(a->fd);
    a->fd = fd;
    return 0;
}

uint64_t up_alog_lines(const struct up_alog *a)
{
    return a->open ? a->sink.lines : 0;
}

uint64_t up_alog_dropped(const struct up_alog *a)
{
    return a->open ? a->sink.dropped : 0;
}

void up_alog_close(struct up_alog *a)
{
    if (!a->open) {
        return;
    }
    up_sink_end(&a->sink);
    up_sink_free(&a->sink);
    if (a->fd >= 0) {
        close(a->fd);
    }
    a->fd = -1;
    a->open = false;
}
