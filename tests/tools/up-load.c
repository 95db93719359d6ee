/*
 * up-load: a bounded HTTP/1.1 load client that checks every answer.
 *
 *     up-load --port P [--host 127.0.0.1] [--keepalive 64] [--fresh 2]
 *             [--seconds 10 | --requests N] [--path /] [--expect-body TEXT]
 *             [--post-bytes N] [--quiet]
 *
 * Unlike a benchmark tool it does not only count answers: it parses each one
 * (status line, headers, Content-Length or chunked body) and sorts every
 * request into exactly one outcome, so that a test can assert that a reload
 * lost nothing. It prints one line at the end and exits 0 when every failure
 * counter is 0, else 1 (2 for a usage error):
 *
 *     up-load: requests=N ok=N connect_errors=N resets=N lost=N bad=N
 *              timeouts=N idle_closes=N pids=N
 *
 *   connect_errors  connect() failed (each attempt is one request)
 *   resets          ECONNRESET or EPIPE, on a request or on an idle socket
 *   lost            the server closed cleanly while a request was
 *                   outstanding, with no or a partial response
 *   bad             status not 200, malformed response, or body mismatch
 *   timeouts        no complete answer within 5 s of sending
 *   idle_closes     a keep-alive socket closed cleanly while no request was
 *                   outstanding: harmless (we reconnect), reported only
 *   pids            distinct X-Up-Pid values seen (0 without the header)
 *
 * A close right after a response that said "Connection: close" (or that
 * ended at EOF) is polite and counts as nothing.
 *
 * One thread per connection loop with its own socket: --keepalive K loops
 * keep one persistent connection each and send requests back to back, one
 * outstanding at a time; --fresh F loops open a new connection per request
 * with "Connection: close". Sockets are non-blocking and every wait is a
 * poll() bounded by the request's deadline, so the run always ends: at most
 * --seconds (or N requests) plus one request timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_TIMEOUT_MS 5000
#define LOAD_HEAD_MAX (64 * 1024)
#define LOAD_MAX_PIDS 4096
#define LOAD_MAX_THREADS 4096
#define LOAD_MAX_REPORTS 20 /* failure details printed without --quiet */

enum load_result {
    LOAD_OK,
    LOAD_CONNECT, /* connect() failed */
    LOAD_RESET,   /* ECONNRESET / EPIPE */
    LOAD_LOST,    /* clean EOF while the request was outstanding */
    LOAD_BAD,     /* wrong status, malformed, body mismatch */
    LOAD_TIMEOUT, /* no complete answer in LOAD_TIMEOUT_MS */
};

struct load_opts {
    const char *host;
    int port;
    int keepalive;
    int fresh;
    double seconds;
    long requests; /* 0: bounded by seconds only */
    const char *path;
    const char *expect_body;
    long post_bytes; /* -1: GET */
    bool quiet;
};

/* Shared by every thread: the options (read-only once threads start), the
 * counters, and the set of worker pids seen. */
struct load {
    struct load_opts o;
    struct addrinfo *addr;
    uint64_t deadline_ms;
    atomic_long tickets; /* requests started, for --requests */
    atomic_long n[LOAD_TIMEOUT + 1];
    atomic_long requests;
    atomic_long idle_closes;
    atomic_long resets_idle; /* resets seen on an idle socket */
    atomic_int reports;
    atomic_bool stop;     /* a loop could not start: everyone stops */
    pthread_mutex_t lock; /* guards pids */
    long pids[LOAD_MAX_PIDS];
    int npids;
};

/* One connection and what was read from it but not yet consumed. */
struct load_conn {
    int fd; /* owned; -1 when closed */
    char *buf;
    size_t len, cap;
};

/* One response as parsed. */
struct load_resp {
    int status;
    bool close; /* the server will close after it */
    bool chunked;
    long long clen; /* -1: none */
    long pid;       /* X-Up-Pid, or 0 */
    char *body;
    size_t body_len, body_cap;
};

/* Per thread: a request buffer, the expected body, a random state. */
struct load_worker {
    struct load *l;
    pthread_t tid;
    bool fresh;
    uint64_t rng;
    char *req;
    size_t req_len, req_cap;
    char *sent_body;
    struct load_conn c;
    struct load_resp r;
    char why[160]; /* what went wrong, for the report */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: plenty for making bodies differ. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap : 4096;
    while (n < need) {
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (p == NULL) {
        return -ENOMEM;
    }
    *buf = p;
    *cap = n;
    return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (n == 0) {
        return 0; /* *buf may still be NULL */
    }
    if (grow(buf, cap, *len + n) < 0) {
        return -ENOMEM;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 0;
}

static void conn_close(struct load_conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
}

/* Wait for events on fd until deadline. Returns 0 (ready), -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n > 0) {
            return 0;
        }
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

/* Connect with a deadline. Returns 0 or -errno. */
static int conn_open(struct load *l, struct load_conn *c)
{
    int fd = socket(l->addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    int r = 0;
    if (connect(fd, l->addr->ai_addr, l->addr->ai_addrlen) < 0) {
        r = errno == EINPROGRESS ? 0 : -errno;
        if (r == 0) {
            r = wait_fd(fd, POLLOUT, now_ms() + LOAD_TIMEOUT_MS);
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0) {
            r = -soerr;
        }
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    c->fd = fd;
    c->len = 0;
    return 0;
}

/* Read more into c->buf. Returns bytes read, 0 at EOF, or -errno
 * (-ETIMEDOUT past deadline). */
static ssize_t conn_fill(struct load_conn *c, uint64_t deadline)
{
    if (grow(&c->buf, &c->cap, c->len + 16384) < 0) {
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n >= 0) {
            c->len += (size_t)n;
            return n;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        int r = wait_fd(c->fd, POLLIN, deadline);
        if (r < 0) {
            return r;
        }
    }
}

static int conn_send(struct load_conn *c, const char *p, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        int r = wait_fd(c->fd, POLLOUT, deadline);
        if (r < 0) {
            return r;
        }
    }
    return 0;
}

static enum load_result fail_io(struct load_worker *w, ssize_t err, const char *when)
{
    if (err == 0) {
        snprintf(w->why, sizeof(w->why), "connection closed %s", when);
        return LOAD_LOST;
    }
    snprintf(w->why, sizeof(w->why), "%s %s (%zu bytes of it received)", strerror((int)-err), when,
             w->c.len);
    if (err == -ECONNRESET || err == -EPIPE) {
        return LOAD_RESET;
    }
    return err == -ETIMEDOUT ? LOAD_TIMEOUT : LOAD_BAD;
}

static enum load_result bad(struct load_worker *w, const char *what)
{
    snprintf(w->why, sizeof(w->why), "%s", what);
    return LOAD_BAD;
}

/* Make sure c->buf holds at least n bytes. */
static enum load_result need(struct load_worker *w, size_t n, uint64_t deadline)
{
    while (w->c.len < n) {
        ssize_t r = conn_fill(&w->c, deadline);
        if (r <= 0) {
            return fail_io(w, r, "in the middle of a response");
        }
    }
    return LOAD_OK;
}

/* Find "\r\n" at or after *pos, reading more as needed; *ret_end is where
 * it starts. */
static enum load_result need_line(struct load_worker *w, size_t pos, uint64_t deadline,
                                  size_t *ret_end)
{
    for (;;) {
        char *p = w->c.len > pos ? memmem(w->c.buf + pos, w->c.len - pos, "\r\n", 2) : NULL;
        if (p != NULL) {
            *ret_end = (size_t)(p - w->c.buf);
            return LOAD_OK;
        }
        if (w->c.len - pos > LOAD_HEAD_MAX) {
            return bad(w, "line too long");
        }
        enum load_result r = need(w, w->c.len + 1, deadline);
        if (r != LOAD_OK) {
            return r;
        }
    }
}

static void consume(struct load_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* One header line, name and value trimmed. */
static enum load_result header(struct load_worker *w, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line) {
        return bad(w, "malformed header line");
    }
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    char value[128];
    snprintf(value, sizeof(value), "%.*s", (int)(end - v), v);
    if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        char *e;
        w->r.clen = strtoll(value, &e, 10);
        if (value[0] < '0' || value[0] > '9' || *e != '\0' || w->r.clen < 0) {
            return bad(w, "bad Content-Length");
        }
    } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", 17) == 0) {
        w->r.chunked = strcasecmp(value, "chunked") == 0;
        if (!w->r.chunked) {
            return bad(w, "unknown Transfer-Encoding");
        }
    } else if (nlen == 10 && strncasecmp(line, "Connection", 10) == 0) {
        if (strcasestr(value, "close") != NULL) {
            w->r.close = true;
        } else if (strcasestr(value, "keep-alive") != NULL) {
            w->r.close = false;
        }
    } else if (nlen == 8 && strncasecmp(line, "X-Up-Pid", 8) == 0) {
        w->r.pid = strtol(value, NULL, 10);
    }
    return LOAD_OK;
}

/* Status line and headers; consumes them. */
static enum load_result read_head(struct load_worker *w, uint64_t deadline)
{
    size_t end;
    enum load_result r = need_line(w, 0, deadline, &end);
    if (r == LOAD_LOST && w->c.len == 0) {
        snprintf(w->why, sizeof(w->why), "connection closed with no response");
    }
    if (r != LOAD_OK) {
        return r;
    }
    /* "HTTP/1.1 200 OK": copied out, so that parsing stops at its end. */
    char line[256];
    char sp;
    int minor;
    snprintf(line, sizeof(line), "%.*s", (int)end, w->c.buf);
    if (sscanf(line, "HTTP/1.%1d %3d%c", &minor, &w->r.status, &sp) < 2 ||
        strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ') {
        return bad(w, "malformed status line");
    }
    w->r.close = minor == 0; /* HTTP/1.0 closes unless it says keep-alive */
    consume(&w->c, end + 2);
    for (;;) {
        r = need_line(w, 0, deadline, &end);
        if (r != LOAD_OK) {
            return r;
        }
        if (end == 0) {
            consume(&w->c, 2);
            return LOAD_OK;
        }
        r = header(w, w->c.buf, end);
        if (r != LOAD_OK) {
            return r;
        }
        consume(&w->c, end + 2);
    }
}

static enum load_result body_bytes(struct load_worker *w, size_t n, uint64_t deadline)
{
    enum load_result r = need(w, n, deadline);
    if (r != LOAD_OK) {
        return r;
    }
    if (append(&w->r.body, &w->r.body_len, &w->r.body_cap, w->c.buf, n) < 0) {
        return bad(w, "out of memory");
    }
    consume(&w->c, n);
    return LOAD_OK;
}

static enum load_result read_chunked(struct load_worker *w, uint64_t deadline)
{
    for (;;) {
        size_t end;
        enum load_result r = need_line(w, 0, deadline, &end);
        if (r != LOAD_OK) {
            return r;
        }
        char *e;
        unsigned long long size = strtoull(w->c.buf, &e, 16);
        if (e == w->c.buf || (*e != ';' && *e != '\r') || size > (1ULL << 32)) {
            return bad(w, "malformed chunk size");
        }
        consume(&w->c, end + 2);
        if (size == 0) {
            break;
        }
        r = body_bytes(w, (size_t)size, deadline);
        if (r == LOAD_OK) {
            r = need(w, 2, deadline);
        }
        if (r != LOAD_OK) {
            return r;
        }
        if (memcmp(w->c.buf, "\r\n", 2) != 0) {
            return bad(w, "chunk not followed by CRLF");
        }
        consume(&w->c, 2);
    }
    /* Trailers, up to the empty line. */
    for (;;) {
        size_t end;
        enum load_result r = need_line(w, 0, deadline, &end);
        if (r != LOAD_OK) {
            return r;
        }
        consume(&w->c, end + 2);
        if (end == 0) {
            return LOAD_OK;
        }
    }
}

/* A body that ends at EOF (no length, not chunked): EOF is its end. */
static enum load_result read_to_eof(struct load_worker *w, uint64_t deadline)
{
    for (;;) {
        ssize_t n = conn_fill(&w->c, deadline);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            return fail_io(w, n, "in a body read to EOF");
        }
    }
    w->r.close = true;
    return body_bytes(w, w->c.len, deadline);
}

static enum load_result read_response(struct load_worker *w, uint64_t deadline)
{
    w->r.status = 0;
    w->r.close = false;
    w->r.chunked = false;
    w->r.clen = -1;
    w->r.pid = 0;
    w->r.body_len = 0;
    enum load_result r = read_head(w, deadline);
    if (r != LOAD_OK) {
        return r;
    }
    if (w->r.chunked) {
        return read_chunked(w, deadline);
    }
    if (w->r.clen >= 0) {
        return body_bytes(w, (size_t)w->r.clen, deadline);
    }
    return read_to_eof(w, deadline);
}

/* Append formatted text to the request. */
__attribute__((format(printf, 2, 3))) static int req_printf(struct load_worker *w, const char *fmt,
                                                            ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(&w->req, &w->req_cap, w->req_len + (size_t)n + 1) < 0) {
        return -ENOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(w->req + w->req_len, w->req_cap - w->req_len, fmt, ap);
    va_end(ap);
    w->req_len += (size_t)n;
    return 0;
}

/* GET --path, or POST /body with a fresh random printable body, sent with
 * Content-Length or chunked (in random chunk sizes) at random. */
static int request_build(struct load_worker *w)
{
    const struct load_opts *o = &w->l->o;
    const char *close = w->fresh ? "Connection: close\r\n" : "";
    w->req_len = 0;
    if (o->post_bytes < 0) {
        return req_printf(w, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: up-load\r\n%s\r\n",
                          o->path, o->host, o->port, close);
    }
    size_t n = (size_t)o->post_bytes;
    for (size_t i = 0; i < n; i++) {
        w->sent_body[i] = (char)(0x21 + rng_next(&w->rng) % 94);
    }
    bool chunked = rng_next(&w->rng) & 1;
    int r = req_printf(w,
                       "POST /body HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: up-load\r\n"
                       "Content-Type: application/octet-stream\r\n%s",
                       o->host, o->port, close);
    if (r == 0 && !chunked) {
        r = req_printf(w, "Content-Length: %zu\r\n\r\n%.*s", n, (int)n, w->sent_body);
    } else if (r == 0) {
        r = req_printf(w, "Transfer-Encoding: chunked\r\n\r\n");
    }
    for (size_t off = 0, len; r == 0 && chunked && off < n; off += len) {
        len = 1 + (size_t)(rng_next(&w->rng) % (n - off));
        r = req_printf(w, "%zx\r\n%.*s\r\n", len, (int)len, w->sent_body + off);
    }
    if (r == 0 && chunked) {
        r = req_printf(w, "0\r\n\r\n");
    }
    return r;
}

static void note_pid(struct load *l, long pid)
{
    if (pid <= 0) {
        return;
    }
    pthread_mutex_lock(&l->lock);
    bool seen = false;
    for (int i = 0; i < l->npids && !seen; i++) {
        seen = l->pids[i] == pid;
    }
    if (!seen && l->npids < LOAD_MAX_PIDS) {
        l->pids[l->npids++] = pid;
    }
    pthread_mutex_unlock(&l->lock);
}

/* The body equals want[0..len): compared only when non-empty, since an empty
 * body's buffer may be NULL. */
static bool body_is(const struct load_resp *r, const char *want, size_t len)
{
    return r->body_len == len && (len == 0 || memcmp(r->body, want, len) == 0);
}

static enum load_result check(struct load_worker *w)
{
    const struct load_opts *o = &w->l->o;
    if (w->r.status != 200) {
        snprintf(w->why, sizeof(w->why), "status %d", w->r.status);
        return LOAD_BAD;
    }
    if (o->post_bytes >= 0 && !body_is(&w->r, w->sent_body, (size_t)o->post_bytes)) {
        snprintf(w->why, sizeof(w->why), "echoed body differs (%zu bytes, sent %ld)", w->r.body_len,
                 o->post_bytes);
        return LOAD_BAD;
    }
    if (o->post_bytes < 0 && o->expect_body != NULL &&
        !body_is(&w->r, o->expect_body, strlen(o->expect_body))) {
        snprintf(w->why, sizeof(w->why), "body '%.*s' is not the expected one",
                 (int)(w->r.body_len < 60 ? w->r.body_len : 60), w->r.body ? w->r.body : "");
        return LOAD_BAD;
    }
    return LOAD_OK;
}

static void report(struct load_worker *w, enum load_result r)
{
    static const char *const names[] = {"ok", "connect_error", "reset", "lost", "bad", "timeout"};
    if (!w->l->o.quiet && atomic_fetch_add(&w->l->reports, 1) < LOAD_MAX_REPORTS) {
        fprintf(stderr, "up-load: %s (%s connection): %s\n", names[r],
                w->fresh ? "fresh" : "keep-alive", w->why);
    }
}

/* Before reusing a keep-alive socket: has the server closed it while it was
 * idle? Returns LOAD_OK (still open), LOAD_LOST (closed cleanly: an idle
 * close), LOAD_RESET, or LOAD_BAD (bytes nobody asked for). */
static enum load_result idle_check(struct load_worker *w)
{
    char b;
    ssize_t n = recv(w->c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return LOAD_OK;
    }
    if (n == 0) {
        return LOAD_LOST;
    }
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE)) {
        snprintf(w->why, sizeof(w->why), "idle keep-alive socket reset");
        return LOAD_RESET;
    }
    return bad(w, n > 0 ? "unexpected bytes on an idle socket" : "error on an idle socket");
}

/* One request on w->c, connecting first if needed. */
static enum load_result one_request(struct load_worker *w)
{
    struct load *l = w->l;
    if (w->c.fd >= 0) {
        enum load_result r = idle_check(w);
        if (r == LOAD_LOST) {
            atomic_fetch_add(&l->idle_closes, 1);
        } else if (r != LOAD_OK) {
            atomic_fetch_add(r == LOAD_RESET ? &l->resets_idle : &l->n[LOAD_BAD], 1);
            report(w, r);
        }
        if (r != LOAD_OK) {
            conn_close(&w->c);
        }
    }
    if (w->c.fd < 0) {
        int r = conn_open(l, &w->c);
        if (r < 0) {
            snprintf(w->why, sizeof(w->why), "connect: %s", strerror(-r));
            return LOAD_CONNECT;
        }
    }
    if (request_build(w) < 0) {
        return bad(w, "out of memory");
    }
    uint64_t deadline = now_ms() + LOAD_TIMEOUT_MS;
    int s = conn_send(&w->c, w->req, w->req_len, deadline);
    if (s < 0) {
        return fail_io(w, s, "while sending");
    }
    enum load_result r = read_response(w, deadline);
    if (r == LOAD_OK) {
        note_pid(l, w->r.pid);
        r = check(w);
    }
    if (r == LOAD_OK && w->c.len > 0) {
        r = bad(w, "bytes after the response");
    }
    return r;
}

static bool take_ticket(struct load *l)
{
    if (atomic_load(&l->stop)) {
        return false;
    }
    if (l->o.requests > 0) {
        return atomic_fetch_add(&l->tickets, 1) < l->o.requests;
    }
    return now_ms() < l->deadline_ms;
}

static void *worker_main(void *arg)
{
    struct load_worker *w = arg;
    struct load *l = w->l;
    while (take_ticket(l)) {
        enum load_result r = one_request(w);
        atomic_fetch_add(&l->requests, 1);
        atomic_fetch_add(&l->n[r], 1);
        switch (r) {
        case LOAD_OK:
            if (w->fresh || w->r.close) {
                conn_close(&w->c); /* polite: the server said it would close */
            }
            break;
        case LOAD_CONNECT:
            report(w, r);
            usleep(10000); /* no busy loop against a closed port */
            break;
        case LOAD_RESET:
        case LOAD_LOST:
        case LOAD_BAD:
        case LOAD_TIMEOUT:
            report(w, r);
            conn_close(&w->c);
            break;
        }
    }
    conn_close(&w->c);
    return NULL;
}

static void usage(FILE *f)
{
    fputs("usage: up-load --port P [--host 127.0.0.1] [--keepalive 64] [--fresh 2]\n"
          "               [--seconds 10 | --requests N] [--path /] [--expect-body TEXT]\n"
          "               [--post-bytes N] [--quiet]\n",
          f);
}

static long num(const char *name, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "up-load: %s: '%s' is not a number from %ld to %ld\n", name, text, min,
                max);
        exit(2);
    }
    return v;
}

static void parse(int argc, char **argv, struct load_opts *o)
{
    static const struct option longs[] = {
        {"port", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"keepalive", required_argument, NULL, 'k'},
        {"fresh", required_argument, NULL, 'f'},
        {"seconds", required_argument, NULL, 's'},
        {"requests", required_argument, NULL, 'n'},
        {"path", required_argument, NULL, 'P'},
        {"expect-body", required_argument, NULL, 'e'},
        {"post-bytes", required_argument, NULL, 'b'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct load_opts){"127.0.0.1", 0, 64, 2, 0, 0, "/", NULL, -1, false};
    for (int c; (c = getopt_long(argc, argv, "p:H:k:f:s:n:P:e:b:qh", longs, NULL)) != -1;) {
        switch (c) {
        case 'p':
            o->port = (int)num("--port", optarg, 1, 65535);
            break;
        case 'H':
            o->host = optarg;
            break;
        case 'k':
            o->keepalive = (int)num("--keepalive", optarg, 0, LOAD_MAX_THREADS);
            break;
        case 'f':
            o->fresh = (int)num("--fresh", optarg, 0, LOAD_MAX_THREADS);
            break;
        case 's':
            o->seconds = (double)num("--seconds", optarg, 1, 86400);
            break;
        case 'n':
            o->requests = num("--requests", optarg, 1, 1000000000);
            break;
        case 'P':
            o->path = optarg;
            break;
        case 'e':
            o->expect_body = optarg;
            break;
        case 'b':
            o->post_bytes = num("--post-bytes", optarg, 0, 64 * 1024 * 1024);
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (o->port == 0 || optind != argc || o->keepalive + o->fresh == 0 ||
        o->keepalive + o->fresh > LOAD_MAX_THREADS) {
        usage(stderr);
        exit(2);
    }
    if (o->seconds == 0 && o->requests == 0) {
        o->seconds = 10;
    }
}

static int resolve(struct load *l)
{
    char port[8];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    snprintf(port, sizeof(port), "%d", l->o.port);
    int g = getaddrinfo(l->o.host, port, &hints, &l->addr);
    if (g != 0) {
        fprintf(stderr, "up-load: cannot resolve '%s': %s\n", l->o.host, gai_strerror(g));
        return -1;
    }
    return 0;
}

static void workers_free(struct load_worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        free(ws[i].req);
        free(ws[i].sent_body);
        free(ws[i].c.buf);
        free(ws[i].r.body);
    }
    free(ws);
}

/* Start every loop, wait for all of them. Returns 0 or -1. */
static int run(struct load *l)
{
    int n = l->o.keepalive + l->o.fresh;
    struct load_worker *ws = calloc((size_t)n, sizeof(*ws));
    int started = 0;
    if (ws == NULL) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct load_worker *w = &ws[i];
        w->l = l;
        w->fresh = i >= l->o.keepalive;
        w->rng = (now_ms() << 16) ^ ((uint64_t)i * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)getpid();
        w->rng = w->rng ? w->rng : 1;
        w->c.fd = -1;
        w->req_cap = 1024;
        w->req = malloc(w->req_cap);
        w->sent_body = malloc(l->o.post_bytes > 0 ? (size_t)l->o.post_bytes : 1);
        if (w->req == NULL || w->sent_body == NULL ||
            pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            fprintf(stderr, "up-load: cannot start connection loop %d\n", i);
            atomic_store(&l->stop, true);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(ws[i].tid, NULL);
    }
    workers_free(ws, n);
    return started == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct load l = {0};
    parse(argc, argv, &l.o);
    if (resolve(&l) < 0) {
        return 2;
    }
    pthread_mutex_init(&l.lock, NULL);
    l.deadline_ms = l.o.seconds > 0 ? now_ms() + (uint64_t)(l.o.seconds * 1000) : UINT64_MAX;
    int r = run(&l);
    long resets = atomic_load(&l.n[LOAD_RESET]) + atomic_load(&l.resets_idle);
    printf("up-load: requests=%ld ok=%ld connect_errors=%ld resets=%ld lost=%ld bad=%ld "
           "timeouts=%ld idle_closes=%ld pids=%d\n",
           atomic_load(&l.requests), atomic_load(&l.n[LOAD_OK]), atomic_load(&l.n[LOAD_CONNECT]),
           resets, atomic_load(&l.n[LOAD_LOST]), atomic_load(&l.n[LOAD_BAD]),
           atomic_load(&l.n[LOAD_TIMEOUT]), atomic_load(&l.idle_closes), l.npids);
    fflush(stdout);
    freeaddrinfo(l.addr);
    pthread_mutex_destroy(&l.lock);
    bool failed = r < 0 || resets > 0 || atomic_load(&l.n[LOAD_CONNECT]) > 0 ||
                  atomic_load(&l.n[LOAD_LOST]) > 0 || atomic_load(&l.n[LOAD_BAD]) > 0 ||
                  atomic_load(&l.n[LOAD_TIMEOUT]) > 0;
    return failed ? 1 : 0;
}
