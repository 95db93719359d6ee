/*
 * hostile: clients that do not play by the rules, against up-run (and
 * against up-worker alone where the worker is the one that must answer).
 *
 *   - slowloris: a head trickled one byte at a time gets 408 at the header
 *     timeout and never reaches a worker;
 *   - many silent connections: the master closes every one at the header
 *     timeout, serves normal requests meanwhile, and gives back every fd;
 *   - malformed and smuggling heads: the same answer, byte for byte, whether
 *     the master sees them (first request of a connection), a worker behind
 *     the master sees them (a later request on a Keep-Alive connection: the
 *     master only checks the first head), or a worker alone sees them;
 *   - edges that are served (any token as a method, HTTP/1.2, an
 *     absolute-form target, chunk extensions with BWS): the app sees the
 *     same request from all three;
 *   - garbage pipelined after a good request: 200, then 400, then close.
 *
 * Each test runs on both back ends (BACKEND_TEST).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "head.h"

/* ---- helpers of this file ---- */

/* The issue asks for 10,000 silent connections; CI runs 2,000 to stay fast,
 * UP_TEST_LONG=1 runs the full count. */
#define HO_SILENT 2000
#define HO_SILENT_LONG 10000

#define HO_GET "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* Read the rest of fd: assert one response with status and `Connection:
 * close`, then a clean end of the connection and nothing after it. The
 * raw response goes to raw (cap bytes, NUL-terminated). */
static void ho_expect_error(int fd, int status, const char *what, char *raw, size_t cap)
{
    struct up_test_resp r = {0};
    char rest[256];
    int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    cr_assert_eq(ret, 0, "%s: no response (expected %d): %s; log:\n%s", what, status,
                 strerror(-ret), ma_log_text());
    size_t head = r.head_len < cap - 1 ? r.head_len : cap - 1;
    size_t body = r.body_len < cap - 1 - head ? r.body_len : cap - 1 - head;
    memcpy(raw, r.head, head);
    memcpy(raw + head, r.body, body);
    raw[head + body] = '\0';
    cr_assert_eq(r.status, status, "%s: status %d, expected %d:\n%s", what, r.status, status, raw);
    const char *conn = up_test_resp_header(&r, "Connection");
    cr_assert(conn != NULL && strcasecmp(conn, "close") == 0, "%s: no Connection: close:\n%s", what,
              raw);
    up_test_resp_free(&r);
    int n = up_test_read_until_close(fd, rest, sizeof(rest), 3000);
    int end = errno;
    cr_assert(end == 0 || end == ECONNRESET, "%s: the %d was not followed by a close: %s", what,
              status, strerror(end));
    cr_assert_eq(n, 0, "%s: %d bytes after the %d: %s", what, n, status, rest);
}

/* ---- slowloris ---- */

BACKEND_TEST(hostile, slowloris, .timeout = 30, .fini = ht_fini)
{
    static const char *const extra[] = {"--header-timeout", "1s", NULL};
    /* Never complete: 10 bytes a second would need 9 s for this. */
    static const char head[] = "GET /slowloris HTTP/1.1\r\nHost: t\r\nUser-Agent: slowloris\r\n"
                               "X-One: 1\r\nX-Two: 2\r\nX-Three: 3\r\n";
    struct ma_status before, after;
    char want[UP_HEAD_ERROR_MAX];
    char buf[1024];
    size_t want_len = up_head_error_response(408, want, sizeof(want));

    ma_start(backend, up_test_bin("examples/hello.so"), extra);
    ma_wait_workers(1, 2, &before);

    int fd = ht_connect(ma.port);
    long long t0 = up_test_now_ms();
    size_t sent = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        cr_assert_lt(sent, sizeof(head) - 1, "the whole trickled head went out without an answer");
        ht_send(fd, head + sent, 1);
        sent++;
        /* The trickle's pace, and the watch for the answer. */
        if (poll(&p, 1, 100) == 1) {
            break;
        }
    }
    long long took = up_test_now_ms() - t0;
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    close(fd);
    fprintf(stderr, "[hostile] slowloris (%s): 408 after %lld ms and %zu bytes trickled\n", backend,
            took, sent);
    cr_assert_eq(end, 0, "no clean close after the answer: %s (got %d bytes: %s)", strerror(end), n,
                 buf);
    cr_assert_eq((size_t)n, want_len, "expected the master's 408, got %d bytes:\n%s\nlog:\n%s", n,
                 buf, ma_log_text());
    cr_assert_eq(memcmp(buf, want, want_len), 0, "expected:\n%s\ngot:\n%s", want, buf);
    cr_assert_not_null(strstr(buf, "\r\nConnection: close\r\n"), "%s", buf);
    cr_assert(took >= 800 && took <= 3000, "the 408 came after %lld ms (expected 800..3000)", took);

    ma_status(&after);
    cr_assert_eq(after.handed, before.handed, "the slow client reached a worker:\n%s\nthen\n%s",
                 before.text, after.text);
    cr_assert_eq(after.answered, before.answered + 1, "before:\n%s\nafter:\n%s", before.text,
                 after.text);
}

/* ---- many silent connections ---- */

BACKEND_TEST(hostile, many_silent_connections, .timeout = 90, .fini = ht_fini)
{
    static const char *const extra[] = {"--header-timeout", "1s", NULL};
    int n = up_test_long() ? HO_SILENT_LONG : HO_SILENT;
    struct ma_status before, after;
    pid_t pids[2];
    int wfd[2];

    up_test_exclusive_load();
    ht_raise_nofile((rlim_t)n + 256);
    ma_start(backend, up_test_bin("examples/hello.so"), extra);
    ma_wait_workers(1, 2, &before);
    ma_gen_pids(&before, 1, "ready", pids, 2);
    int base = proc_fds(ma.pid);
    for (int i = 0; i < 2; i++) {
        wfd[i] = proc_fds(pids[i]);
    }

    int *fds = calloc((size_t)n, sizeof(*fds));
    struct ht_answer *a = calloc((size_t)n, sizeof(*a));
    cr_assert(fds != NULL && a != NULL);
    long long t0 = up_test_now_ms();
    for (int i = 0; i < n; i++) {
        fds[i] = ht_connect(ma.port);
    }
    long long connected = up_test_now_ms() - t0;
    /* The kernel holds a silent connection back (TCP_DEFER_ACCEPT) until it
     * retransmits the SYN-ACK and the client ACKs again: after 1 s, or after
     * 3 s for the ones whose second ACK the kernel's challenge-ACK limit
     * ate. Then the header timeout (1 s) runs, then 3 s of slack; past the
     * master's pending cap (8192) a second round is needed. */
    long long limit = 3000 + 1000 * (1 + n / 8192) + 3000;
    /* Every one must end with a clean EOF, no byte before it. Meanwhile,
     * every 250 ms, a normal request is served (a 200) and the master's fd
     * count sampled. */
    int peak = 0, gets = 0, closed = 0;
    long long worst_get = 0, took = 0;
    for (long long next_get = up_test_now_ms(); closed < n;) {
        long long now = up_test_now_ms();
        if (now >= next_get) {
            struct up_test_resp r = {0};
            int fdc = proc_fds(ma.pid);
            peak = fdc > peak ? fdc : peak;
            ma_get(&r);
            long long get_ms = up_test_now_ms() - now;
            cr_assert_eq(r.status, 200, "a normal request among the silent ones got %d:\n%s",
                         r.status, r.head);
            up_test_resp_free(&r);
            gets++;
            worst_get = get_ms > worst_get ? get_ms : worst_get;
            next_get = up_test_now_ms() + 250;
        }
        cr_assert_lt(now, t0 + connected + limit,
                     "%d of %d silent connections still open after %lld ms; log:\n%s", n - closed,
                     n, now - t0, ma_log_text());
        closed = ht_collect_closed(fds, n, a, t0, 50);
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(a[i].ret, 0, "silent connection %d: %s instead of a clean EOF", i,
                     a[i].ret == -EPROTO ? "bytes" : strerror(-a[i].ret));
        took = a[i].at > took ? a[i].at : took;
        close(fds[i]);
    }
    free(fds);
    free(a);
    int after_fds = proc_fds_settled(ma.pid, base, 3000);
    fprintf(stderr,
            "[hostile] many_silent_connections (%s): %d connected in %lld ms, all closed by the "
            "master after %lld ms (limit %lld); master fds %d -> peak %d -> %d; %d normal "
            "requests served meanwhile, slowest %lld ms\n",
            backend, n, connected, took, connected + limit, base, peak, after_fds, gets, worst_get);
    cr_assert_eq(after_fds, base, "the master has %d fds after the silent clients left, %d before",
                 after_fds, base);
    /* The master held the silent connections while it served the others. */
    cr_assert_geq(peak, base + n / 4,
                  "the master never held the silent connections (peak %d fds, base %d)", peak,
                  base);

    ma_status(&after);
    cr_assert_eq(after.handed, before.handed + gets,
                 "handed %ld -> %ld for %d normal requests: a silent connection reached a "
                 "worker:\n%s",
                 before.handed, after.handed, gets, after.text);
    for (int i = 0; i < 2; i++) {
        int w = proc_fds_settled(pids[i], wfd[i], 3000);
        cr_assert_eq(w, wfd[i], "worker %d holds %d fds, %d before", (int)pids[i], w, wfd[i]);
    }
    /* conns= comes from the workers' once-a-second stats. */
    long long deadline = up_test_now_ms() + 3000;
    while (after.conns != 0 && up_test_now_ms() < deadline) {
        up_test_nap(100);
        ma_status(&after);
    }
    cr_assert_eq(after.conns, 0, "workers hold connections:\n%s", after.text);
}

/* ---- malformed heads and smuggling: the same answer everywhere ---- */

struct ho_case {
    const char *name;
    int status;
    const char *raw; /* NULL: the oversized head, built at run time */
    bool body;       /* bad after a good head: the master hands it on */
};

static const struct ho_case ho_cases[] = {
    {"oversized head", 431, NULL},
    {"garbage", 400, "this is not http\r\n\r\n"},
    {"duplicate Content-Length", 400,
     "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"},
    {"Content-Length + chunked", 400,
     "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\n"},
    {"obs-fold", 400, "GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n"},
    {"bare LF", 400, "GET / HTTP/1.1\nHost: t\n\n"},
    {"Transfer-Encoding: gzip", 501,
     "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"},
    {"HTTP/2.0", 505, "GET / HTTP/2.0\r\nHost: t\r\n\r\n"},
    {"HT in the target", 400, "GET /a\tHTTP/1.1 HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"FF in the target", 400, "GET /a\fb HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"HTTP/1.1 without Host", 400, "GET / HTTP/1.1\r\nX-Host: t\r\n\r\n"},
    {"invalid Host", 400, "GET / HTTP/1.1\r\nHost: u@t\r\n\r\n"},
    {"asterisk for GET", 400, "GET * HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"absolute-form, bad authority", 400, "PUT s://]ufd/: HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"CONNECT to a path", 400, "CONNECT /x HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"fragment", 400, "GET /a?b#f HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"method not a token", 400, "G(T / HTTP/1.1\r\nHost: t\r\n\r\n"},
    {"RTSP/1.0", 400, "GET / RTSP/1.0\r\nHost: t\r\n\r\n"},
    {"HTTP/3.0", 505, "GET / HTTP/3.0\r\nHost: t\r\n\r\n"},
    {"chunk data without CRLF", 400,
     "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", true},
    {"chunk extension BWS at the end", 400,
     "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;a \r\nabc\r\n0\r\n\r\n",
     true},
};

#define HO_NCASES (sizeof(ho_cases) / sizeof(ho_cases[0]))

/* The cases whose head is good: the master hands them to a worker. */
static long ho_body_cases(void)
{
    long n = 0;
    for (size_t i = 0; i < HO_NCASES; i++) {
        n += ho_cases[i].body;
    }
    return n;
}

/* The case's bytes (malloc'd) and their length. */
static char *ho_case_bytes(const struct ho_case *c, size_t *ret_len)
{
    if (c->raw != NULL) {
        *ret_len = strlen(c->raw);
        return strdup(c->raw);
    }
    size_t big = 20 * 1024;
    char *raw = malloc(big + 64);
    cr_assert_not_null(raw);
    int n = snprintf(raw, 64, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(raw + n, 'a', big);
    memcpy(raw + n + big, "\r\n\r\n", 4);
    *ret_len = (size_t)n + big + 4;
    return raw;
}

/* Send case c on a new connection to port, as its first request (second:
 * after a good request answered 200 on the same connection), and assert
 * c->status with Connection: close, then the close. */
static void ho_check_case(int port, const struct ho_case *c, bool second, const char *where,
                          char *raw, size_t cap)
{
    char what[160];
    size_t len;
    char *bytes = ho_case_bytes(c, &len);
    int fd = ht_connect(port);

    snprintf(what, sizeof(what), "%s, %s request to %s", c->name, second ? "second" : "first",
             where);
    if (second) {
        ht_send(fd, HO_GET, strlen(HO_GET));
        ht_read_200(fd, what);
    }
    ht_send(fd, bytes, len);
    free(bytes);
    ho_expect_error(fd, c->status, what, raw, cap);
    close(fd);
}

BACKEND_TEST(hostile, bad_heads_same_answer_everywhere, .timeout = 60, .fini = ht_fini)
{
    struct ma_status before, mid, after;
    char master_raw[1024], worker_raw[1024], lone_raw[1024], lone2_raw[1024];
    long nbody = ho_body_cases();

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    ma_wait_workers(1, 2, &before);
    wk_start(backend, "examples/hello.so", NULL);

    /* First requests: the master answers, no worker sees them; except the
     * cases with a good head and a bad body, which a worker answers. */
    for (size_t i = 0; i < HO_NCASES; i++) {
        ho_check_case(ma.port, &ho_cases[i], false, "up-run (master)", master_raw,
                      sizeof(master_raw));
    }
    ma_status(&mid);
    cr_assert_eq(mid.handed, before.handed + nbody,
                 "a bad first request reached a worker:\n%s\nthen\n%s", before.text, mid.text);
    cr_assert_eq(mid.answered, before.answered + (long)HO_NCASES - nbody, "before:\n%s\nafter:\n%s",
                 before.text, mid.text);

    /* The same bytes after a good request: the worker behind the master
     * answers; and a worker alone, first and second. Every answer is the
     * same, byte for byte. */
    for (size_t i = 0; i < HO_NCASES; i++) {
        const struct ho_case *c = &ho_cases[i];
        ho_check_case(ma.port, c, false, "up-run (master)", master_raw, sizeof(master_raw));
        ho_check_case(ma.port, c, true, "up-run (worker)", worker_raw, sizeof(worker_raw));
        ho_check_case(wk.port, c, false, "up-worker --listen", lone_raw, sizeof(lone_raw));
        ho_check_case(wk.port, c, true, "up-worker --listen", lone2_raw, sizeof(lone2_raw));
        cr_assert_str_eq(worker_raw, master_raw, "%s (%s): master and worker differ", c->name,
                         backend);
        cr_assert_str_eq(lone_raw, master_raw, "%s (%s): master and lone worker differ", c->name,
                         backend);
        cr_assert_str_eq(lone2_raw, master_raw, "%s (%s): master and lone worker differ", c->name,
                         backend);
    }
    ma_status(&after);
    cr_assert_eq(after.handed, mid.handed + (long)HO_NCASES + nbody,
                 "%zu keep-alive connections expected handed:\n%s\nthen\n%s", HO_NCASES, mid.text,
                 after.text);
    fprintf(stderr,
            "[hostile] bad heads (%s): %zu cases x (master first, worker second, lone first, "
            "lone second): same status and bytes everywhere\n",
            backend, HO_NCASES);
}

/* ---- edges that are served: the app sees the same request everywhere ---- */

struct ho_served {
    const char *name;
    const char *raw;
    const char *want; /* lines the echo app must list, each ending in \n */
};

static const struct ho_served ho_served_cases[] = {
    {"a method llhttp does not know", "-BLARGH /m HTTP/1.1\r\nHost: t\r\n\r\n",
     "method: -BLARGH\ntarget: /m\n"},
    {"HTTP/1.2", "GET /v HTTP/1.2\r\nHost: t\r\n\r\n", "method: GET\ntarget: /v\n"},
    {"absolute-form", "GET http://example.com/x?y HTTP/1.1\r\nHost: t\r\n\r\n",
     "path: /x\nquery: y\nHost: example.com\n"},
    {"chunk extensions with BWS",
     "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5 ; name = \"v \\\" w\"\r\nhello\r\n0\r\n\r\n",
     "\nhello"},
};

/* Send raw on a new connection to port (second: after a good request), read
 * a 200 on HTTP/1.1 and return its body (malloc'd). */
static char *ho_served_body(int port, const struct ho_served *c, bool second, const char *where)
{
    struct up_test_resp r = {0};
    int fd = ht_connect(port);
    if (second) {
        ht_send(fd, HO_GET, strlen(HO_GET));
        ht_read_200(fd, c->name);
    }
    ht_send(fd, c->raw, strlen(c->raw));
    int ret = up_test_read_response(fd, &r, UP_TEST_TIMEOUT_MS);
    close(fd);
    cr_assert_eq(ret, 0, "%s (%s): no response: %s", c->name, where, strerror(-ret));
    cr_assert_eq(r.status, 200, "%s (%s): status %d:\n%s", c->name, where, r.status, r.head);
    cr_assert_eq(r.minor, 1, "%s (%s): %s", c->name, where, r.head);
    char *body = strndup(r.body != NULL ? r.body : "", r.body_len);
    cr_assert_not_null(body);
    cr_assert_not_null(strstr(body, c->want), "%s (%s): no '%s' in:\n%s", c->name, where, c->want,
                       body);
    up_test_resp_free(&r);
    return body;
}

BACKEND_TEST(hostile, edges_served_the_same_everywhere, .timeout = 60, .fini = ht_fini)
{
    static const char *const where[] = {"up-run (master)", "up-run (worker)", "up-worker --listen",
                                        "up-worker --listen, second"};
    struct ma_status st;
    char echo[PATH_MAX];
    snprintf(echo, sizeof(echo), "%s", up_test_bin("examples/echo.so"));

    ma_start(backend, echo, NULL);
    ma_wait_workers(1, 2, &st);
    wk_start(backend, echo, NULL);
    for (size_t i = 0; i < sizeof(ho_served_cases) / sizeof(ho_served_cases[0]); i++) {
        const struct ho_served *c = &ho_served_cases[i];
        char *body[4] = {
            ho_served_body(ma.port, c, false, where[0]),
            ho_served_body(ma.port, c, true, where[1]),
            ho_served_body(wk.port, c, false, where[2]),
            ho_served_body(wk.port, c, true, where[3]),
        };
        for (int k = 1; k < 4; k++) {
            cr_assert_str_eq(body[k], body[0], "%s: %s and %s differ", c->name, where[0], where[k]);
        }
        for (int k = 0; k < 4; k++) {
            free(body[k]);
        }
    }
}

/* ---- garbage pipelined after a good request ---- */

BACKEND_TEST(hostile, pipelined_garbage_after_good_request, .timeout = 30, .fini = ht_fini)
{
    static const char raw[] = HO_GET "this is not http\r\n\r\n";
    char buf[1024];

    ma_start(backend, up_test_bin("examples/hello.so"), NULL);
    int fd = ht_connect(ma.port);
    ht_send(fd, raw, sizeof(raw) - 1);
    ht_read_200(fd, "the good request before the garbage");
    ho_expect_error(fd, 400, "the garbage after a good request", buf, sizeof(buf));
    close(fd);

    /* The same with both in separate writes, the garbage after the 200. */
    fd = ht_connect(ma.port);
    ht_send(fd, HO_GET, strlen(HO_GET));
    ht_read_200(fd, "the good request");
    ht_send(fd, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15);
    ho_expect_error(fd, 400, "TLS bytes after a good request", buf, sizeof(buf));
    close(fd);
}

/* ---- a head in pieces, and a FIN after part of one ---- */

/* A head sent in two pieces 300 ms apart is served, on TCP and on a unix
 * socket: a peek that finds nothing new is not the end of the stream. A
 * FIN after part of a head closes the connection at once, not at the
 * header timeout. */
BACKEND_TEST(hostile, partial_head_in_pieces_and_fin, .timeout = 30, .fini = ht_fini)
{
    static const char part1[] = "GET / HTTP/1.1\r\nHo";
    static const char part2[] = "st: t\r\n\r\n";
    char sock[PATH_MAX], lunix[PATH_MAX + 8], ltcp[32], buf[256];
    snprintf(sock, sizeof(sock), "%s", ht_path("l.sock"));
    snprintf(lunix, sizeof(lunix), "unix:%s", sock);
    int port = up_test_free_port();
    cr_assert_gt(port, 0);
    snprintf(ltcp, sizeof(ltcp), "127.0.0.1:%d", port);
    const char *extra[] = {"-l", lunix, "-l", ltcp, NULL};
    ma_spawn(backend, up_test_bin("examples/hello.so"), extra);
    ma.port = port; /* -l replaces the -p that ma_spawn() gives */
    ma_wait_serving(10000);

    for (int unix_sock = 0; unix_sock <= 1; unix_sock++) {
        const char *what = unix_sock ? "unix socket" : "TCP";
        int fd = unix_sock ? ht_connect_unix(sock) : ht_connect(port);
        cr_assert_geq(fd, 0, "connect %s: %s", sock, strerror(-fd));
        ht_send(fd, part1, strlen(part1));
        up_test_nap(300);
        ht_send(fd, part2, strlen(part2));
        ht_read_200(fd, what);
        close(fd);

        fd = unix_sock ? ht_connect_unix(sock) : ht_connect(port);
        cr_assert_geq(fd, 0, "connect %s: %s", sock, strerror(-fd));
        ht_send(fd, part1, strlen(part1));
        up_test_nap(100);
        long long t0 = up_test_now_ms();
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
        int end = errno;
        long long took = up_test_now_ms() - t0;
        cr_assert(end == 0 || end == ECONNRESET, "%s: still open 5 s after the FIN: %s", what,
                  strerror(end));
        cr_assert_eq(n, 0, "%s: an answer to half a head: %s", what, buf);
        cr_assert_lt(took, 1000, "%s: closed %lld ms after the FIN", what, took);
        close(fd);
        fprintf(stderr,
                "[hostile] partial head (%s, %s): two pieces 300 ms apart served; FIN after "
                "half a head closed in %lld ms\n",
                backend, what, took);
    }
}
