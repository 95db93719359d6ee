/*
 * worker: up-worker alone (`--listen`, its own SO_REUSEPORT listener, no
 * master), driven over raw TCP, so that every byte the runtime sends is
 * checked: HTTP/1.1 framing, limits and timeouts, app loading, and stopping.
 *
 * Each test runs twice through BACKEND_TEST, once per loop back end
 * (UP_BACKEND=io_uring, UP_BACKEND=epoll). Each test process starts at most
 * one worker, the harness's `wk`, so that ht_fini() stops it by pid even
 * after a failed assertion (and testlib's PDEATHSIG covers a test that
 * times out).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/testloop.h"
#include "passfd.h"

/* Read a hello response and check it byte for byte. */
static void wk_read_hello(int fd, struct up_test_resp *r)
{
    ht_read(fd, r, "response");
    cr_assert_eq(r->status, 200, "status %d:\n%s", r->status, r->head);
    cr_assert_eq(r->body_len, 11, "body of %zu bytes: %s", r->body_len, r->body);
    cr_assert_str_eq(r->body, "Hello World");
}

/* X-Up-Pid must name the worker we started: --listen serves in-process. */
static void wk_assert_pid(const struct up_test_resp *r)
{
    const char *pid = up_test_resp_header(r, "X-Up-Pid");
    cr_assert_not_null(pid, "no X-Up-Pid:\n%s", r->head);
    cr_assert_eq(atol(pid), (long)wk.pid, "X-Up-Pid %s, worker %d", pid, (int)wk.pid);
}

/* Send raw on a new connection; expect a 400 and then the connection closed
 * (by FIN or, since we may have sent bytes the server never read, by RST). */
static void wk_expect_400_close(const char *raw)
{
    char buf[4096];
    int fd = ht_connect(wk.port);
    int n;
    int end;

    ht_send_str(fd, raw);
    n = up_test_read_until_close(fd, buf, sizeof(buf), 3000);
    end = errno;
    close(fd);
    cr_assert(n >= 12 && strncmp(buf, "HTTP/1.1 400", 12) == 0,
              "expected a 400, got %d bytes: %s\nlog:\n%s", n, buf, wk_log_text());
    cr_assert(end == 0 || end == ECONNRESET, "connection not closed after the 400: %s",
              strerror(end));
}

/* ---- HTTP/1.1 ---- */

BACKEND_TEST(worker, keep_alive_100_requests, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    int fd;

    wk_start(backend, "examples/hello.so", NULL);
    fd = ht_connect(wk.port);
    for (int i = 0; i < 100; i++) {
        ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        wk_read_hello(fd, &r);
        cr_assert_str_eq(up_test_resp_header(&r, "Content-Type"), "text/plain");
    }
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, echo_reports_the_request, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    const char *want[] = {"method: POST\n", "target: /x/y?a=1&b=2\n", "path: /x/y\n",
                          "query: a=1&b=2\n", "X-Test: yes\n"};

    wk_start(backend, "examples/echo.so", NULL);
    ht_request(wk.port,
               "POST /x/y?a=1&b=2 HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n"
               "Content-Length: 3\r\n\r\nabc",
               &r);
    cr_assert_eq(r.status, 200);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cr_assert_not_null(strstr(r.body, want[i]), "no \"%s\" in:\n%s", want[i], r.body);
    }
    cr_assert(r.body_len >= 4 && strcmp(r.body + r.body_len - 4, "\nabc") == 0, "body:\n%s",
              r.body);
    cr_assert_str_eq(up_test_resp_header(&r, "X-Up-Generation"), "0");
    wk_assert_pid(&r);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, pipelined_requests_answered_in_order, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char raw[4096];
    char want[64];
    size_t len = 0;
    int fd;

    /* One write holding ten requests; the sixth has a body, so that a
     * runtime that loses track of body boundaries misreads what follows. */
    for (int i = 0; i < 10; i++) {
        len +=
            (size_t)snprintf(raw + len, sizeof(raw) - len,
                             i == 5 ? "POST /p%d HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n"
                                      "payload"
                                    : "GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n",
                             i);
    }
    wk_start(backend, "examples/echo.so", NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, raw);
    for (int i = 0; i < 10; i++) {
        ht_read(fd, &r, "response");
        cr_assert_eq(r.status, 200, "answer %d: status %d", i, r.status);
        snprintf(want, sizeof(want), "path: /p%d\n", i);
        cr_assert_not_null(strstr(r.body, want), "answer %d out of order:\n%s", i, r.body);
    }
    cr_assert_not_null(strstr(r.body, "method: GET"));
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, chunked_upload_echoed_byte_for_byte, .timeout = 30, .fini = ht_fini)
{
    enum { TOTAL = 100000 };
    static const size_t sizes[] = {1, 4095, 10000, TOTAL - 1 - 4095 - 10000};
    static char body[TOTAL];
    struct up_test_resp r = {0};
    char line[64];
    size_t off = 0;
    int fd;

    for (size_t i = 0; i < TOTAL; i++) {
        body[i] = (char)((i * 7 + 3) & 0xff);
    }
    wk_start(backend, "examples/echo.so", NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    /* One write per chunk: the runtime sees the body arrive in pieces. */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(line, sizeof(line), "%zx\r\n", sizes[i]);
        ht_send_str(fd, line);
        cr_assert_eq(up_test_send_all(fd, body + off, sizes[i]), 0);
        ht_send_str(fd, "\r\n");
        off += sizes[i];
    }
    ht_send_str(fd, "0\r\n\r\n");
    ht_read(fd, &r, "response");
    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_eq(r.body_len, TOTAL, "echoed %zu bytes of %d", r.body_len, TOTAL);
    cr_assert(memcmp(r.body, body, TOTAL) == 0, "echoed body differs");
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, head_has_headers_but_no_body, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    int fd;

    wk_start(backend, "examples/hello.so", NULL);
    fd = ht_connect(wk.port);
    /* If the HEAD answer carried a body, the GET's status line would not
     * come right after its head, and the second read would fail. */
    ht_send_str(fd, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n");
    r.no_body = true;
    ht_read(fd, &r, "response");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(up_test_resp_header(&r, "Content-Length"), "11", "head:\n%s", r.head);
    cr_assert_eq(r.body_len, 0);
    wk_read_hello(fd, &r);
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, http10_closes_after_the_answer, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char buf[256];
    int fd;
    int n;

    wk_start(backend, "examples/hello.so", NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "GET / HTTP/1.0\r\n\r\n");
    wk_read_hello(fd, &r);
    n = up_test_read_until_close(fd, buf, sizeof(buf), 2000);
    cr_assert_eq(errno, 0, "expected a clean close (EOF): %s", strerror(errno));
    cr_assert_eq(n, 0, "%d more bytes: %s", n, buf);
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, http10_keep_alive_stays_open, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    int fd;

    wk_start(backend, "examples/hello.so", NULL);
    fd = ht_connect(wk.port);
    for (int i = 0; i < 3; i++) {
        ht_send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        wk_read_hello(fd, &r);
        /* An HTTP/1.0 client keeps the connection only if told so, and
         * cannot read chunked: the answer needs both headers. */
        const char *conn = up_test_resp_header(&r, "Connection");
        cr_assert(conn != NULL && strcasecmp(conn, "keep-alive") == 0, "head:\n%s", r.head);
        cr_assert_not_null(up_test_resp_header(&r, "Content-Length"), "head:\n%s", r.head);
    }
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, expect_100_continue, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    static const char interim[] = "HTTP/1.1 100 Continue\r\n";
    int fd;

    wk_start(backend, "examples/echo.so", NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                    "Expect: 100-continue\r\n\r\n");
    /* The body is held back until the 100 arrives, as a real client does
     * (up to a timeout that this read stands for). */
    ht_read(fd, &r, "response");
    cr_assert_eq(r.status, 100, "expected the interim 100 first:\n%s", r.head);
    cr_assert(strncmp(r.head, interim, sizeof(interim) - 1) == 0, "head:\n%s", r.head);
    ht_send_str(fd, "hello");
    ht_read(fd, &r, "response");
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    cr_assert_str_eq(r.body, "hello");
    close(fd);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, garbage_gets_400_and_close, .timeout = 30, .fini = ht_fini)
{
    wk_start(backend, "examples/hello.so", NULL);
    wk_expect_400_close("\x16\x03\x01\x02\x00 this is not http\r\n\r\n");
}

BACKEND_TEST(worker, smuggling_cl_and_te_rejected, .timeout = 30, .fini = ht_fini)
{
    wk_start(backend, "examples/echo.so", NULL);
    wk_expect_400_close("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
}

BACKEND_TEST(worker, smuggling_two_content_lengths_rejected, .timeout = 30, .fini = ht_fini)
{
    wk_start(backend, "examples/echo.so", NULL);
    wk_expect_400_close("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                        "Content-Length: 6\r\n\r\nhello!");
}

/* ---- limits and timeouts ---- */

static const char *const small_limit_env[] = {"UP_BODY_LIMIT=1024", NULL};

BACKEND_TEST(worker, body_at_the_limit_accepted, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char raw[2048];
    int n = snprintf(raw, sizeof(raw),
                     "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");

    memset(raw + n, 'x', 1024);
    raw[n + 1024] = '\0';
    wk_start(backend, "examples/echo.so", small_limit_env);
    ht_request(wk.port, raw, &r);
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    cr_assert_eq(r.body_len, 1024);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, content_length_over_limit_413, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};

    wk_start(backend, "examples/echo.so", small_limit_env);
    /* Only the head is sent: the 413 must come from Content-Length alone,
     * without waiting for a body the client has not sent. */
    ht_request(wk.port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n", &r);
    cr_assert_eq(r.status, 413, "head:\n%s", r.head);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, chunked_over_limit_413, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char raw[4096];
    int n = snprintf(raw, sizeof(raw),
                     "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n");

    memset(raw + n, 'x', 2000);
    snprintf(raw + n + 2000, sizeof(raw) - (size_t)n - 2000, "\r\n0\r\n\r\n");
    wk_start(backend, "examples/echo.so", small_limit_env);
    ht_request(wk.port, raw, &r);
    cr_assert_eq(r.status, 413, "head:\n%s", r.head);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, idle_keep_alive_closed_cleanly, .timeout = 30, .fini = ht_fini)
{
    static const char *const env[] = {"UP_IDLE_TIMEOUT=300ms", NULL};
    struct up_test_resp r = {0};
    char buf[256];
    int fd;

    wk_start(backend, "examples/hello.so", env);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    wk_read_hello(fd, &r);
    long long t0 = up_test_now_ms();
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 2000);
    int end = errno;
    long long waited = up_test_now_ms() - t0;
    cr_assert_eq(end, 0, "idle connection not closed cleanly within 2 s: %s", strerror(end));
    cr_assert_eq(n, 0, "%d unexpected bytes: %s", n, buf);
    cr_assert_geq(waited, 150, "closed after %lld ms, before the 300 ms idle timeout", waited);
    close(fd);
    up_test_resp_free(&r);
}

/* ---- deferred and streamed responses ---- */

BACKEND_TEST(worker, streamed_response_arrives_complete, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};

    wk_start(backend, "examples/slow.so", NULL);
    ht_request(wk.port, "GET /stream?chunks=5&ms=50 HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    cr_assert_eq(r.status, 200, "head:\n%s", r.head);
    cr_assert(r.chunked, "a streamed HTTP/1.1 answer should be chunked:\n%s", r.head);
    cr_assert_str_eq(r.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    wk_assert_pid(&r);
    up_test_resp_free(&r);
}

/* Two deferred answers at once: both wait together. Served one after the
 * other, the second would come 500 ms after the first; waiting together,
 * they come within moments of each other, however late a loaded machine
 * runs both (the gap is measured, not the total, which CPU starvation
 * stretches: 1,862 ms once with the whole suite running). */
BACKEND_TEST(worker, deferred_responses_do_not_block, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    int fd[2];
    long long at[2];

    wk_start(backend, "examples/slow.so", NULL);
    long long t0 = up_test_now_ms();
    for (int i = 0; i < 2; i++) {
        fd[i] = ht_connect(wk.port);
        ht_send_str(fd[i], "GET /?ms=500 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for (int i = 0; i < 2; i++) {
        ht_read(fd[i], &r, "response");
        at[i] = up_test_now_ms() - t0;
        cr_assert_eq(r.status, 200, "head:\n%s", r.head);
        cr_assert_str_eq(r.body, "slept 500 ms\n");
        close(fd[i]);
    }
    cr_assert_geq(at[0], 500, "the first answer came after %lld ms, before its wait", at[0]);
    cr_assert_lt(at[1] - at[0], 250,
                 "the second answer came %lld ms after the first (%lld ms in): the worker "
                 "blocked",
                 at[1] - at[0], at[0]);
    up_test_resp_free(&r);
}

/* ---- back-pressure and the send timeout ---- */

/* What a client that never reads saw. */
struct wk_push {
    size_t sent;       /* bytes the kernel took */
    long long last_ms; /* when it last took any */
    long long end_ms;  /* when the connection failed, or -1 */
    int end;           /* what it failed with (ECONNRESET, EPIPE), or ETIMEDOUT */
    long peak_kib;     /* the worker's highest VmRSS seen meanwhile */
};

/* Push buf[0..len) at fd and never read, until the connection fails or the
 * deadline passes, sampling the worker's VmRSS every 20 ms. Once all is
 * sent it goes on waiting for the failure (a reset shows as POLLERR). */
static void wk_push_unread(int fd, const char *buf, size_t len, long long deadline,
                           struct wk_push *p)
{
    long long next_sample = 0;

    *p = (struct wk_push){.last_ms = up_test_now_ms(), .end_ms = -1, .end = ETIMEDOUT};
    for (long long now = up_test_now_ms(); now < deadline; now = up_test_now_ms()) {
        if (now >= next_sample) {
            long kib = up_test_status_kib(wk.pid, "VmRSS:");
            p->peak_kib = kib > p->peak_kib ? kib : p->peak_kib;
            next_sample = now + 20;
        }
        long went = ht_send_some(fd, buf, len, &p->sent);
        if (went > 0) {
            p->last_ms = up_test_now_ms();
            continue;
        }
        struct pollfd pf = {.fd = fd, .events = p->sent < len ? POLLOUT : 0};
        if (went == 0 && poll(&pf, 1, 20) >= 0 && !(pf.revents & (POLLERR | POLLHUP))) {
            continue;
        }
        int err = went < 0 ? (int)-went : 0;
        socklen_t elen = sizeof(err);
        if (err == 0) {
            (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        }
        p->end = err != 0 ? err : EPIPE;
        p->end_ms = up_test_now_ms();
        return;
    }
}

BACKEND_TEST(worker, unread_answers_bounded_then_send_timeout, .timeout = 60, .fini = ht_fini)
{
    static const char *const env[] = {"UP_SEND_TIMEOUT=2s", "UP_IDLE_TIMEOUT=30s",
                                      "UP_READ_TIMEOUT=30s", NULL};
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    enum { TOTAL = 20 * 1024 * 1024 };
    char *buf = malloc(TOTAL);
    size_t len = 0;
    struct wk_push p;

    cr_assert_not_null(buf);
    while (len + sizeof(req) - 1 <= TOTAL) {
        memcpy(buf + len, req, sizeof(req) - 1);
        len += sizeof(req) - 1;
    }
    wk_start(backend, "examples/hello.so", env);
    long rss0 = up_test_status_kib(wk.pid, "VmRSS:");
    int fd = ht_connect(wk.port);
    /* 20 MiB of requests ask for ~80 MiB of answers, which this client
     * never reads: the worker must stop taking requests rather than queue
     * the answers, and reset the connection once it stays stuck for the
     * send timeout. */
    wk_push_unread(fd, buf, len, up_test_now_ms() + 20000, &p);
    long hwm = up_test_status_kib(wk.pid, "VmHWM:");
    long peak = hwm > p.peak_kib ? hwm : p.peak_kib;
    long long waited = p.end_ms - p.last_ms;
    fprintf(stderr,
            "[worker] unread answers (%s): %zu of %zu bytes of requests sent; worker VmRSS %ld "
            "KiB, peak %ld KiB (+%ld); connection ended (%s) %lld ms after the last byte sent\n",
            backend, p.sent, len, rss0, peak, peak - rss0, strerror(p.end),
            p.end_ms < 0 ? -1 : waited);
    close(fd);
    free(buf);
    cr_assert(p.end == ECONNRESET || p.end == EPIPE,
              "not reset within 20 s (%s) after %zu bytes sent\nlog:\n%s", strerror(p.end), p.sent,
              wk_log_text());
    cr_assert_geq(waited, 1000, "reset %lld ms after the client stalled: before the 2 s timeout",
                  waited);
    cr_assert_leq(waited, 6000, "reset %lld ms after the client stalled: not by the 2 s timeout",
                  waited);
    /* Under ASan the shadow memory and the quarantine would be measured
     * too: the bound is the real build's. */
    if (!up_test_sanitized()) {
        cr_assert_lt(peak - rss0, 16 * 1024, "the worker grew by %ld KiB (limit 16 MiB)",
                     peak - rss0);
    }
    /* The reset went through the normal close: the worker holds nothing. */
    long long t0 = up_test_now_ms();
    int status = up_test_stop(wk.pid, HT_STOP_MS);
    long long took = up_test_now_ms() - t0;
    wk.pid = -1;
    cr_assert_eq(status, 0, "exit status %d after SIGTERM\nlog:\n%s", status, wk_log_text());
    cr_assert_lt(took, 2000, "SIGTERM with no connection held took %lld ms", took);
}

BACKEND_TEST(worker, pipelined_2000_in_order_through_back_pressure, .timeout = 60, .fini = ht_fini)
{
    enum { N = 2000, BODY = 4096 };
    static const char head[] = "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n";
    const size_t one = sizeof(head) - 1 + BODY;
    char *buf = malloc(N * one);
    char want[BODY];
    struct up_test_resp r = {0};
    size_t len = N * one;
    size_t sent = 0;

    cr_assert_not_null(buf);
    for (size_t i = 0; i < N; i++) {
        char *body = buf + i * one + sizeof(head) - 1;
        memcpy(buf + i * one, head, sizeof(head) - 1);
        memset(body, 'a' + (int)(i % 26), BODY);
        memcpy(body, want, (size_t)snprintf(want, sizeof(want), "request %05zu ", i));
    }
    wk_start(backend, "examples/echo.so", NULL);
    int fd = ht_connect(wk.port);

    /* First send without reading, until neither our sending nor our
     * receive queue moves for 300 ms: the ~8 MiB of answers are more than
     * the socket buffers hold (tcp_wmem caps the worker's at 4 MiB here),
     * so the worker has then stopped taking requests, answers queued. */
    long long deadline = up_test_now_ms() + 20000;
    long long quiet = up_test_now_ms();
    int inq = -1;
    while (up_test_now_ms() < deadline && up_test_now_ms() - quiet < 300) {
        long went = ht_send_some(fd, buf, len, &sent);
        cr_assert_geq(went, 0, "send: %s", strerror((int)-went));
        int q = ht_inq(fd);
        if (went > 0 || q != inq) {
            quiet = up_test_now_ms();
            inq = q;
        }
        struct pollfd pf = {.fd = fd, .events = sent < len ? POLLOUT : 0};
        (void)poll(&pf, 1, 20);
    }
    size_t sent_unread = sent;

    /* Then read every answer in order, sending the rest as it is taken. */
    for (size_t i = 0; i < N; i++) {
        while (sent < (i + 1) * one) {
            long went = ht_send_some(fd, buf, len, &sent);
            cr_assert_geq(went, 0, "send: %s", strerror((int)-went));
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            cr_assert(up_test_now_ms() < deadline, "request %zu not taken in time", i);
            (void)poll(&pf, 1, 20);
        }
        ht_read(fd, &r, "response");
        cr_assert_eq(r.status, 200, "answer %zu: status %d", i, r.status);
        cr_assert_eq(r.body_len, BODY, "answer %zu: %zu bytes", i, r.body_len);
        const char *body = buf + i * one + sizeof(head) - 1;
        cr_assert(memcmp(r.body, body, BODY) == 0, "answer %zu is not its request's: %.14s", i,
                  r.body);
    }
    fprintf(stderr,
            "[worker] pipelined 2000 (%s): %zu of %zu bytes sent before the first read, %d bytes "
            "of answers then waiting\n",
            backend, sent_unread, len, inq);
    close(fd);
    free(buf);
    up_test_resp_free(&r);
}

BACKEND_TEST(worker, slow_reader_of_a_stream_is_not_reset, .timeout = 60, .fini = ht_fini)
{
    static const char *const env[] = {"UP_SEND_TIMEOUT=2s", NULL};
    enum { CHUNKS = 400, SIZE = 16384, SLOW_MS = 6000 };
    /* 6.25 MiB of body: more than the kernel holds for one connection
     * (4 MiB of send buffer at most here), so the worker's queue waits on
     * this client all along. */
    static const char req[] = "GET /stream?chunks=400&ms=0&size=16384 HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t cap = CHUNKS * (SIZE + 16) + 4096;
    char *got = malloc(cap);
    size_t len = 0;

    cr_assert_not_null(got);
    wk_start(backend, "examples/slow.so", env);
    /* A small receive buffer makes a slow reader's progress visible to the
     * worker often: on loopback the MSS is 64 KiB, and with a default
     * buffer the window opens again only after 64 KiB were read. */
    int fd = ht_connect_bufs(wk.port, 4096, 0);
    ht_send_str(fd, req);

    /* 1 KiB every 50 ms for three send timeouts: slow, but progress. */
    long long t0 = up_test_now_ms();
    while (up_test_now_ms() - t0 < SLOW_MS) {
        (void)poll(NULL, 0, 50);
        ssize_t n = recv(fd, got + len, 1024, MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        cr_assert_gt(n, 0, "the slow reader was cut after %lld ms, %zu bytes read: %s\nlog:\n%s",
                     up_test_now_ms() - t0, len, n == 0 ? "EOF" : strerror(errno), wk_log_text());
        len += (size_t)n;
    }
    size_t slow_len = len;

    /* Then the rest at full speed: the whole stream arrives. */
    static const char end[] = "\r\n0\r\n\r\n";
    long long deadline = up_test_now_ms() + 20000;
    while (len < sizeof(end) - 1 || memcmp(got + len - (sizeof(end) - 1), end, sizeof(end) - 1)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        cr_assert(up_test_now_ms() < deadline, "stream not complete in time: %zu bytes", len);
        cr_assert(len < cap, "more than %zu bytes", cap);
        (void)poll(&pf, 1, 100);
        ssize_t n = recv(fd, got + len, cap - len, MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            continue;
        }
        cr_assert_gt(n, 0, "cut after %zu bytes: %s", len, n == 0 ? "EOF" : strerror(errno));
        len += (size_t)n;
    }
    fprintf(stderr, "[worker] slow reader (%s): %zu bytes in %d ms, then %zu in all\n", backend,
            slow_len, SLOW_MS, len);
    cr_assert_geq(len, (size_t)CHUNKS * SIZE, "only %zu bytes", len);
    got[len - sizeof(end) + 1] = '\0';
    cr_assert_not_null(strstr(got, "\r\nchunk 399."), "the last chunk is missing");
    cr_assert_not_null(strstr(got, "\r\nchunk 0."), "the first chunk is missing");
    close(fd);
    free(got);
}

BACKEND_TEST(worker, stalled_stream_reset_lets_a_draining_worker_exit, .timeout = 60,
             .fini = ht_fini)
{
    static const char *const env[] = {"UP_SEND_TIMEOUT=2s", "UP_DRAIN_TIMEOUT=30s", NULL};
    char buf[4096];

    wk_start(backend, "examples/slow.so", env);
    int fd = ht_connect_bufs(wk.port, 4096, 0);
    /* 1.5 GiB if nothing held it back: endless for this test. */
    ht_send_str(fd, "GET /stream?chunks=100000&ms=0&size=16384 HTTP/1.1\r\nHost: t\r\n\r\n");
    long long deadline = up_test_now_ms() + 10000;
    long long quiet = up_test_now_ms();
    int inq = -1;
    while (up_test_now_ms() - quiet < 300) {
        cr_assert(up_test_now_ms() < deadline, "the stream never filled the receive queue");
        int q = ht_inq(fd);
        if (q != inq) {
            quiet = up_test_now_ms();
            inq = q;
        }
        (void)poll(NULL, 0, 20);
    }

    /* Draining, the worker waits for this busy connection; the send
     * timeout resets it, the app sees -1 from up_res_pending() and ends
     * the stream, and the worker, holding nothing, exits long before its
     * drain timeout. */
    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(wk.pid, SIGTERM), 0);
    int status = up_test_wait_exit(wk.pid, 15000);
    long long took = up_test_now_ms() - t0;
    if (status != -ETIMEDOUT) {
        wk.pid = -1;
    }
    cr_assert_eq(status, 0, "exit status %d (%s) after SIGTERM\nlog:\n%s", status,
                 status == -ETIMEDOUT ? "still running after 15 s" : "", wk_log_text());
    cr_assert_lt(took, 6000, "exited %lld ms after SIGTERM: not by the 2 s send timeout", took);
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    fprintf(stderr, "[worker] stalled stream (%s): %d bytes waiting, exit %lld ms after SIGTERM\n",
            backend, inq, took);
    cr_assert_eq(end, ECONNRESET, "the connection ended with %s after %d bytes, not a reset",
                 strerror(end), n);
    close(fd);
}

/* ---- loading the app ---- */

/* Start a worker on app, expect it to exit non-zero within 5 s with one of
 * the needles (a '|'-separated list) in its log. A worker that says why it
 * failed exits 3 (start-up failure); crashed is for one that dies of a signal
 * instead (or exits 1 when a sanitizer catches it). */
static void wk_expect_load_failure(const char *backend, const char *app, const char *needles,
                                   bool crashed)
{
    char list[256];
    char *save = NULL;

    wk_spawn(backend, app, NULL);
    int status = up_test_wait_exit(wk.pid, 5000);
    cr_assert_neq(status, -ETIMEDOUT, "up-worker still runs 5 s after failing to load %s\nlog:\n%s",
                  app, wk_log_text());
    wk.pid = -1;
    cr_assert_gt(status, 0, "up-worker exited %d on %s\nlog:\n%s", status, app, wk_log_text());
    if (status != 3 && !crashed) {
        cr_log_warn("up-worker exited %d on a failed load; DESIGN documents 3", status);
    }
    snprintf(list, sizeof(list), "%s", needles);
    int found = needles[0] == '\0';
    for (char *n = strtok_r(list, "|", &save); n != NULL && !found;
         n = strtok_r(NULL, "|", &save)) {
        found = up_test_file_contains(wk.log, n) == 1;
    }
    cr_assert(found, "the log does not say why (%s):\n%s", needles, wk_log_text());
}

BACKEND_TEST(worker, load_missing_symbol_fails, .timeout = 30, .fini = ht_fini)
{
    wk_expect_load_failure(backend, up_test_bin("examples/no_symbol.so"), "up_app", false);
}

BACKEND_TEST(worker, load_init_failure_fails, .timeout = 30, .fini = ht_fini)
{
    wk_expect_load_failure(backend, up_test_bin("examples/fail_init.so"), "init", false);
}

BACKEND_TEST(worker, load_missing_file_fails, .timeout = 30, .fini = ht_fini)
{
    wk_expect_load_failure(backend, ht_path("does-not-exist.so"), "does-not-exist.so", false);
}

BACKEND_TEST(worker, load_not_an_elf_fails, .timeout = 30, .fini = ht_fini)
{
    static const char text[] = "this is not an ELF file, just text\n";
    const char *path = ht_path("not-elf.so");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
    close(fd);
    wk_expect_load_failure(backend, path, "not-elf.so", false);
}

BACKEND_TEST(worker, load_bad_abi_fails, .timeout = 30, .fini = ht_fini)
{
    wk_expect_load_failure(backend, up_test_bin("examples/bad_abi.so"), "999|abi|ABI", false);
}

BACKEND_TEST(worker, load_crash_in_init_fails, .timeout = 30, .fini = ht_fini)
{
    wk_expect_load_failure(backend, up_test_bin("examples/crash_init.so"), "", true);
}

BACKEND_TEST(worker, app_rewritten_in_place_keeps_serving, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char garbage[8192];
    size_t len;
    char *hello = ht_file_text(up_test_bin("examples/hello.so"), &len);
    const char *app = ht_path("app.so");
    int fd;

    fd = open(app, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    cr_assert_geq(fd, 0);
    close(fd);
    ht_overwrite(app, hello, len);
    free(hello);
    wk_start(backend, app, NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    wk_read_hello(fd, &r);

    /* Other code, then no code at all: the worker runs what it loaded. */
    char *echo = ht_file_text(up_test_bin("examples/echo.so"), &len);
    ht_overwrite(app, echo, len);
    free(echo);
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    wk_read_hello(fd, &r);
    cr_assert_null(up_test_resp_header(&r, "X-Up-Pid"), "echo's code answered:\n%s", r.head);
    memset(garbage, 0x5a, sizeof(garbage));
    ht_overwrite(app, garbage, sizeof(garbage));
    for (int i = 0; i < 3; i++) {
        int fd2 = ht_connect(wk.port);
        ht_send_str(fd2, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        wk_read_hello(fd2, &r);
        close(fd2);
    }
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    wk_read_hello(fd, &r);
    cr_assert(up_test_alive(wk.pid), "the worker died:\n%s", wk_log_text());
    close(fd);
    up_test_resp_free(&r);
}

/* ---- stopping ---- */

BACKEND_TEST(worker, sigterm_closes_idle_keep_alive_cleanly, .timeout = 30, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char buf[256];
    int fd;

    wk_start(backend, "examples/hello.so", NULL);
    fd = ht_connect(wk.port);
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    wk_read_hello(fd, &r);
    long long t0 = up_test_now_ms();
    int status = up_test_stop(wk.pid, HT_STOP_MS);
    long long took = up_test_now_ms() - t0;
    wk.pid = -1;
    cr_assert_eq(status, 0, "up-worker exit status %d after SIGTERM\nlog:\n%s", status,
                 wk_log_text());
    cr_assert_lt(took, 2000, "SIGTERM with one idle connection took %lld ms", took);
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 2000);
    cr_assert_eq(errno, 0, "client saw %s instead of a clean EOF", strerror(errno));
    cr_assert_eq(n, 0, "%d unexpected bytes: %s", n, buf);
    close(fd);
    up_test_resp_free(&r);
}

/* ---- SIGTERM, whatever order the last events come in ---- */

/* A draining worker must exit as soon as it holds nothing, whatever order
 * its last events arrive in: the signal before, with or after the last
 * closes, twice, or amid a burst of new connections. Each case must end
 * with exit 0 well within the drain timeout. */
static void wk_sigterm_case(const char *backend, int conns, bool close_first, bool twice,
                            bool burst, const char *what)
{
    static const char *const env[] = {"UP_DRAIN_TIMEOUT=2s", NULL};
    struct up_test_resp r = {0};
    int fds[64];
    wk_start(backend, "examples/hello.so", env);
    for (int i = 0; i < conns; i++) {
        fds[i] = ht_connect(wk.port);
        ht_send_str(fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        wk_read_hello(fds[i], &r);
    }
    if (close_first) {
        for (int i = 0; i < conns; i++) {
            close(fds[i]);
        }
    }
    long long t0 = up_test_now_ms();
    cr_assert_eq(kill(wk.pid, SIGTERM), 0);
    if (twice) {
        kill(wk.pid, SIGTERM);
    }
    if (!close_first) {
        for (int i = 0; i < conns; i++) {
            close(fds[i]);
        }
    }
    /* New connections keep coming as it drains: refused or closed, never
     * keeping it alive. */
    for (int i = 0; burst && i < 200 && up_test_alive(wk.pid); i++) {
        int fd = up_test_connect(wk.port);
        if (fd >= 0) {
            static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
            (void)up_test_send_all(fd, get, strlen(get));
            close(fd);
        }
    }
    int status = up_test_wait_exit(wk.pid, 5000);
    long long took = up_test_now_ms() - t0;
    if (status != -ETIMEDOUT) {
        wk.pid = -1;
    }
    cr_assert_eq(status, 0, "%s: exit status %d %lld ms after SIGTERM\nlog:\n%s", what, status,
                 took, wk_log_text());
    cr_assert_lt(took, 1500, "%s: exit took %lld ms (drain timeout 2 s)", what, took);
    up_test_resp_free(&r);
    fprintf(stderr, "[worker] sigterm (%s, %s): exit 0 after %lld ms\n", backend, what, took);
}

BACKEND_TEST(worker, sigterm_exits_whatever_the_order, .timeout = 60, .fini = ht_fini)
{
    wk_sigterm_case(backend, 0, false, false, false, "no connection");
    wk_sigterm_case(backend, 20, true, false, false, "closes, then the signal");
    wk_sigterm_case(backend, 20, false, false, false, "the signal, then closes");
    wk_sigterm_case(backend, 20, false, true, false, "two signals, then closes");
    wk_sigterm_case(backend, 20, false, false, true, "the signal amid new connections");
}

/* A client that said Connection: close and sent nothing after its request
 * is let go with its answer: the FIN, then the socket closed at once, not
 * held for a lingering read until the client's own FIN (which this client
 * never sends). */
BACKEND_TEST(worker, a_client_that_says_close_is_let_go_at_once, .timeout = 30, .fini = ht_fini)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    char buf[4096];
    wk_start(backend, "examples/hello.so", NULL);
    int fds0 = proc_fds_settled(wk.pid, -1, 2000);
    int fd = ht_connect(wk.port);
    ht_send(fd, req, strlen(req));
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    cr_assert(n > 0 && end == 0, "%d bytes, then %s", n, strerror(end));
    cr_assert_not_null(strstr(buf, "Hello World"), "%s", buf);
    int fds = proc_fds_settled(wk.pid, fds0, 1000);
    close(fd);
    cr_assert_eq(fds, fds0, "the worker holds %d fds, %d before: it lingers on the connection", fds,
                 fds0);
}

/* Bytes after a Connection: close request: the answer is whole and ends in
 * a FIN, not a reset, and the worker reads what follows (lingers) rather
 * than close on unread bytes. */
BACKEND_TEST(worker, bytes_after_a_close_request_get_no_reset, .timeout = 30, .fini = ht_fini)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                              "GET /again HTTP/1.1\r\nHost: t\r\n\r\n";
    char buf[4096];
    wk_start(backend, "examples/hello.so", NULL);
    int fd = ht_connect(wk.port);
    ht_send(fd, req, strlen(req));
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    int end = errno;
    close(fd);
    cr_assert(n > 0 && end == 0, "%d bytes, then %s", n, strerror(end));
    char *first = strstr(buf, "Hello World");
    cr_assert_not_null(first, "%s", buf);
    cr_assert_null(strstr(first + 1, "HTTP/1.1"), "a second answer after Connection: close:\n%s",
                   buf);
}

/* A burst of connections, each answered once, then all closed: every one
 * put its read buffer and its out chunk back resident, and a second later
 * the worker gives back the pages of all but the few it keeps (bufpool.h),
 * so that its memory does not stay at the burst's height. */
BACKEND_TEST(worker, a_burst_that_closed_leaves_no_memory_behind, .timeout = 60, .fini = ht_fini)
{
    enum { N = 400 };
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    static int fds[N];
    static struct ht_answer a[N];
    ht_raise_nofile(N + 64);
    wk_start(backend, "examples/hello.so", NULL);
    long base = up_test_status_kib(wk.pid, "VmRSS:");
    for (int i = 0; i < N; i++) {
        fds[i] = ht_connect(wk.port);
        a[i] = (struct ht_answer){0};
    }
    for (int i = 0; i < N; i++) {
        ht_send(fds[i], req, strlen(req));
    }
    cr_assert_eq(ht_collect(fds, N, a, up_test_now_ms(), 20000), N, "log:\n%s", wk_log_text());
    for (int i = 0; i < N; i++) {
        cr_assert_eq(a[i].status, 200, "connection %d: status %d", i, a[i].status);
        close(fds[i]);
    }
    ht_assert_burst_gone(wk.pid, "worker", backend, N, base, N * 8, 1500,
                         "64 buffers and chunks kept: 768 kB");
}

/* --app-fd is up-run's (kind.h): a number that names no open fd gets a
 * clear word and exit 2, not a worker that fails later in dlopen(). */
Test(worker, app_fd_that_is_not_open_is_refused, .timeout = 10, .fini = ht_fini)
{
    const char *cases[] = {"99", "2", "x"};
    for (int i = 0; i < 3; i++) {
        char *argv[] = {(char *)up_test_bin("up-worker"), "--app-fd", (char *)cases[i],
                        (char *)up_test_bin("examples/hello.so"), NULL};
        const char *out = ht_path("worker.err");
        pid_t pid = up_test_spawn(argv, NULL, out);
        cr_assert_gt(pid, 0);
        int status = up_test_wait_exit(pid, 5000);
        cr_assert_eq(status, 2, "--app-fd %s: exit %d", cases[i], status);
        char want[64];
        snprintf(want, sizeof(want), "--app-fd %s is not an open fd above 2", cases[i]);
        cr_assert_eq(up_test_file_contains(out, want), 1, "--app-fd %s said:\n%s", cases[i],
                     up_test_file_tail(out));
    }
}

/* ---- stopped by someone else: the master's side played by the test ---- */

/* up-worker APP with the test as its master: the channel's other end in
 * *ret_chan (receives time out after 5 s); its log in DIR/worker.log. */
static pid_t tw_spawn_with_master(const char *backend, const char *app, int *ret_chan)
{
    int pair[2];
    cr_assert_eq(up_passfd_pair(pair), 0);
    char bin[PATH_MAX], so[PATH_MAX], env[64];
    snprintf(bin, sizeof(bin), "%s", up_test_bin("up-worker"));
    snprintf(so, sizeof(so), "%s", up_test_bin(app));
    snprintf(env, sizeof(env), "UP_BACKEND=%s", backend);
    char *const argv[] = {bin, so, NULL};
    char *const envp[] = {env, NULL};
    int log = open(ht_path("worker.log"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    cr_assert_geq(log, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(log, 2);
        dup2(pair[1], 3); /* clears close-on-exec */
        execve(bin, argv, envp);
        _exit(127);
    }
    ht_stop_at_fini(pid);
    close(log);
    close(pair[1]);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    *ret_chan = pair[0];
    return pid;
}

/* The next message on chan that is not STATS (which comes any time); its
 * fd, if any, closed. */
static struct up_msg tw_next(int chan)
{
    static char payload[UP_PASSFD_MAX_PAYLOAD];
    struct up_msg hdr;
    int fd;
    do {
        fd = -1;
        int r;
        do { /* EINTR: a child of the test's went (SIGCHLD) */
            r = up_passfd_recv(chan, &hdr, payload, sizeof(payload), &fd, 0);
        } while (r == -EINTR);
        cr_assert_geq(r, 0, "from the worker: %s", strerror(-r));
        if (fd >= 0) {
            close(fd);
        }
    } while (hdr.kind == UP_MSG_STATS);
    return hdr;
}

/* A connection on 127.0.0.1 with a request sent: the client's end in
 * *ret_client, the server's end returned (what a CONN passes). */
static int tw_conn_with_request(int *ret_client)
{
    int sv[2];
    up_test_pair(true, sv);
    *ret_client = sv[1];
    ht_send_str(*ret_client, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    return sv[0];
}

/* SIGTERM from someone else: the worker says DRAINING, and serves a CONN
 * that comes after it (the master routed it before it heard, or it stops
 * too and gives out what it accepted) instead of handing it back; the
 * master's DRAIN then drains it. Without a DRAIN it drains on its own
 * after 2 s. */
BACKEND_TEST(worker, stopped_by_someone_else_serves_until_the_master_s_drain, .timeout = 30,
             .fini = ht_fini)
{
    int chan, client;
    pid_t pid = tw_spawn_with_master(backend, "examples/hello.so", &chan);
    cr_assert_eq(tw_next(chan).kind, UP_MSG_READY);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(tw_next(chan).kind, UP_MSG_DRAINING);

    int s = tw_conn_with_request(&client);
    struct up_msg conn;
    up_msg_init(&conn, UP_MSG_CONN);
    conn.conn_id = 7;
    cr_assert_eq(up_passfd_send(chan, &conn, NULL, 0, s, 0), 0);
    close(s);
    struct up_msg m = tw_next(chan);
    cr_assert_eq(m.kind, UP_MSG_ACK, "got %s, not the ACK", up_msg_kind_name(m.kind));
    struct up_test_resp r = {0};
    int ret = up_test_read_response(client, &r, 3000);
    cr_assert_eq(ret, 0, "the connection sent after DRAINING: %s (handed back?)", strerror(-ret));
    cr_assert_eq(r.status, 200);
    up_test_resp_free(&r);

    /* The master's DRAIN (its stop): the idle connection is closed, and
     * the worker leaves. */
    struct up_msg drain;
    up_msg_init(&drain, UP_MSG_DRAIN);
    drain.arg = 5000;
    drain.flags = UP_DRAIN_F_STOP;
    cr_assert_eq(up_passfd_send(chan, &drain, NULL, 0, -1, 0), 0);
    cr_assert_eq(up_test_wait_exit(pid, 3000), 0);
    char buf[64];
    cr_assert_eq(up_test_read_until_close(client, buf, sizeof(buf), 2000), 0);
    close(client);
    close(chan);

    /* No DRAIN at all: on its own after 2 s. */
    pid = tw_spawn_with_master(backend, "examples/hello.so", &chan);
    cr_assert_eq(tw_next(chan).kind, UP_MSG_READY);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(tw_next(chan).kind, UP_MSG_DRAINING);
    long long t0 = up_test_now_ms();
    cr_assert_eq(up_test_wait_exit(pid, 5000), 0);
    long long took = up_test_now_ms() - t0;
    cr_assert_geq(took, 1900, "left %lld ms after DRAINING, before the 2 s wait for DRAIN", took);
    close(chan);
}

/* The master's stop drains a worker just after giving it a connection (its
 * DRAIN right behind the CONN on the channel): the request in it is still
 * answered, not closed unread with the idle ones. */
BACKEND_TEST(worker, a_stop_right_after_a_conn_answers_its_request, .timeout = 30, .fini = ht_fini)
{
    for (int round = 0; round < 12; round++) {
        int chan, client;
        pid_t pid = tw_spawn_with_master(backend, "examples/hello.so", &chan);
        cr_assert_eq(tw_next(chan).kind, UP_MSG_READY);
        int s = tw_conn_with_request(&client);
        struct up_msg conn, drain;
        up_msg_init(&conn, UP_MSG_CONN);
        conn.conn_id = 1;
        up_msg_init(&drain, UP_MSG_DRAIN);
        drain.arg = 5000;
        drain.flags = UP_DRAIN_F_STOP;
        cr_assert_eq(up_passfd_send(chan, &conn, NULL, 0, s, 0), 0);
        cr_assert_eq(up_passfd_send(chan, &drain, NULL, 0, -1, 0), 0);
        close(s);
        struct up_test_resp r = {0};
        int ret = up_test_read_response(client, &r, 3000);
        cr_assert_eq(ret, 0, "round %d: %s", round, strerror(-ret));
        cr_assert_eq(r.status, 200);
        up_test_resp_free(&r);
        close(client);
        cr_assert_eq(up_test_wait_exit(pid, 3000), 0);
        close(chan);
    }
}

/* A lone worker restarted at once at a unix path the killed one's ring
 * still holds (listen.h) waits for it rather than exiting: the test holds
 * a listener there for 300 ms, as the kernel does for a few. */
Test(worker, a_unix_path_still_held_is_waited_for, .timeout = 30, .fini = ht_fini)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", ht_path("w.sock"));
    int held = ht_listener((struct sockaddr *)&un, sizeof(un), 8);
    char listen_at[sizeof(un.sun_path) + 8];
    snprintf(listen_at, sizeof(listen_at), "unix:%s", un.sun_path);
    char *argv[] = {(char *)up_test_bin("up-worker"), "--listen", listen_at,
                    (char *)up_test_bin("examples/hello.so"), NULL};
    snprintf(wk.log, sizeof(wk.log), "%s", ht_path("worker.log"));
    wk.pid = up_test_spawn(argv, NULL, wk.log);
    cr_assert_gt(wk.pid, 0);
    up_test_nap(300);
    cr_assert(up_test_alive(wk.pid), "gave up on a path taken for 300 ms:\n%s", wk_log_text());
    close(held);
    struct up_test_resp r = {0};
    int fd = -1;
    for (long long end = up_test_now_ms() + 5000; fd < 0 && up_test_now_ms() < end;) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
            close(fd);
            fd = -1;
            up_test_nap(20);
        }
    }
    cr_assert_geq(fd, 0, "nothing listens at %s:\n%s", un.sun_path, wk_log_text());
    ht_send_str(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    ht_read(fd, &r, "over the unix socket");
    cr_assert_eq(r.status, 200, "%s", r.head);
    up_test_resp_free(&r);
    close(fd);
}
