/*
 * wsdrain: what a reload does to long-lived connections. WebSockets get
 * close code 1012 after --ws-drain-grace, spread over --close-spread, and
 * their clients come back to the new generation; a storm of reloads with
 * 200 of them open never resets one and never lets an old worker outlive
 * its drain deadline; a generation shed past --max-draining lets its
 * WebSockets go at once; a handshake that reaches a draining worker opens
 * on the new generation; an event stream is ended at the grace, another
 * stream cut at the deadline; and Keep-Alive responses say how long an
 * idle connection is kept, which the worker honours.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../lib/harness.h"
#include "../lib/node.h"

#define WS_APP "examples/wsecho.so"
#define STORM_SOCKETS "200"
#define STORM_RELOADS 5
#define DEADLINE_MS 4000

/* Remember the pids of every generation `up-run status` lists. */
static int add_pids(const struct ma_status *st, pid_t *pids, int n, int cap)
{
    for (int i = 0; i < st->nworkers; i++) {
        if (n < cap && !ht_pid_in(st->workers[i].pid, pids, n)) {
            pids[n++] = st->workers[i].pid;
        }
    }
    return n;
}

/* 200 WebSockets across one reload, then a storm of five 300 ms apart. The
 * clients (storm.js) check every close is 1012 and every client is back on
 * a newer generation within 1 s; here, that no old worker outlives its
 * drain deadline: generation 1 is gone once its last WebSocket closed
 * (grace + spread), and every worker of the storm's generations by its
 * deadline after the last reload. */
Test(wsdrain, reload_storm_with_200_websockets, .timeout = 180, .fini = ht_fini)
{
    static const char *const extra[] = {
        "-n", "2", "-t", "4s", "--ws-drain-grace", "500ms", "--close-spread", "2s", NULL};
    struct ma_status st;
    char port[16];
    pid_t old[64];
    struct nd n;

    ht_raise_nofile(4096);
    ma_start("auto", up_test_bin(WS_APP), extra);
    ma_wait_workers(1, 2, &st);
    int nold = add_pids(&st, old, 0, 64);
    snprintf(port, sizeof(port), "%d", ma.port);
    nd_start(&n, "storm.js", (const char *const[]){port, STORM_SOCKETS, "500", "2000", NULL});
    nd_wait_line(&n, "READY", 30000);
    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    long long took = proc_wait_gone(old, nold, DEADLINE_MS + 500);
    cr_assert_geq(took, 0, "a generation 1 worker outlived its drain deadline:\n%s", ma_log_text());
    took = up_test_now_ms() - t0;
    cr_assert_geq(took, 500 + 2000 * 7 / 10, "generation 1 gone %lld ms after the reload", took);
    nd_wait_line(&n, "PHASE2", 30000);
    long long last = 0;
    for (int i = 0; i < STORM_RELOADS; i++) {
        ma_status(&st);
        nold = add_pids(&st, old, nold, 64);
        last = up_test_now_ms();
        ma_signal(SIGUSR2);
        up_test_nap(300);
    }
    long long left = last + DEADLINE_MS + 1000 - up_test_now_ms();
    long long gone = proc_wait_gone(old, nold, left > 0 ? (int)left : 0);
    cr_assert_geq(gone, 0, "an old worker outlived its drain deadline:\n%s", ma_log_text());
    gone = up_test_now_ms() - last;
    nd_wait_line(&n, "FINAL", 90000);
    int code = nd_finish(&n, 20000);
    cr_assert_eq(code, 0, "storm.js:\n%s", nd_text(&n));
    cr_assert_null(strstr(ma_log_text(), "past its drain deadline"), "%s", ma_log_text());
    fprintf(stderr,
            "[wsdrain] 200 WebSockets: generation 1 gone %lld ms after the reload; after 5 "
            "reloads 300 ms apart, every old worker gone %lld ms after the last\n%s",
            took, gone, nd_text(&n));
}

/* --max-draining applies to WebSockets: a generation shed to stay within
 * the cap lets its WebSockets go at once (still 1012, still spread), not
 * after the grace. Here the grace is 60 s, and one old generation may
 * drain beside the serving one: a second reload while generation 1 still
 * drains finds the process budget spent, sheds generation 1, and waits
 * for it to go. Its clients come back to generation 2. */
Test(wsdrain, shed_generation_lets_its_websockets_go_at_once, .timeout = 90, .fini = ht_fini)
{
    static const char *const extra[] = {
        "-n", "1", "-t", "120s", "--max-draining", "1", "--ws-drain-grace", "60s", "--close-spread",
        "1s", NULL};
    struct ma_status st;
    char port[16];
    struct nd n;

    ma_start("auto", up_test_bin(WS_APP), extra);
    ma_wait_workers(1, 1, &st);
    pid_t g1 = st.workers[0].pid;
    snprintf(port, sizeof(port), "%d", ma.port);
    nd_start(&n, "storm.js", (const char *const[]){port, "20", "0", "1000", "once", NULL});
    nd_wait_line(&n, "READY 1", 30000);
    ma_signal(SIGUSR2);
    ma_wait_log("wsecho: drain 20 open", 10000);
    ma_wait_workers(2, 1, &st);
    up_test_nap(500);
    cr_assert_eq(up_test_file_contains(n.out, "PHASE2"), 0, "closed within the grace:\n%s",
                 nd_text(&n));
    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    nd_wait_line(&n, "PHASE2 2", 10000);
    long long back = up_test_now_ms() - t0;
    long long gone = proc_wait_gone(&g1, 1, 5000);
    cr_assert_geq(gone, 0, "the shed worker still runs:\n%s", ma_log_text());
    int code = nd_finish(&n, 10000);
    cr_assert_eq(code, 0, "storm.js:\n%s", nd_text(&n));
    ma_wait_log("generation 1 hands back its idle connections now", 1000);
    cr_assert(back >= 700 && back < 5000, "the clients were back %lld ms after the shed", back);
    fprintf(stderr, "[wsdrain] shed: all 20 WebSockets back on generation 2 %lld ms after it\n%s",
            back, nd_text(&n));
}

/* An event stream ends (cleanly: its chunked end arrives) at the grace; a
 * plain stream runs on until the drain deadline and is cut there (the
 * client sees the body incomplete); the app heard of the drain first. */
Test(wsdrain, streams_at_a_drain, .timeout = 60, .fini = ht_fini)
{
    static const char *const extra[] = {
        "-n", "1", "-t", "3s", "--ws-drain-grace", "300ms", "--close-spread", "0", NULL};
    struct up_test_resp r = {0};

    ma_start("auto", up_test_bin(WS_APP), extra);
    int sse = ht_client(ma.port);
    int plain = ht_client(ma.port);
    ht_send_str(sse, "GET /sse HTTP/1.1\r\nHost: h\r\n\r\n");
    ht_send_str(plain, "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n");
    up_test_nap(300);
    long long t0 = up_test_now_ms();
    ma_signal(SIGUSR2);
    int ret = up_test_read_response(sse, &r, 10000);
    long long sse_ms = up_test_now_ms() - t0;
    cr_assert_eq(ret, 0, "the event stream did not end cleanly: %s", strerror(-ret));
    cr_assert(r.chunked && strstr(r.body, "data: tick 0\n\n") != NULL, "%s", r.body);
    cr_assert(sse_ms >= 300 && sse_ms < 2500, "the event stream ended after %lld ms", sse_ms);
    ret = up_test_read_response(plain, &r, 10000);
    long long plain_ms = up_test_now_ms() - t0;
    cr_assert_eq(ret, -EPIPE, "the plain stream was not cut: %d", ret);
    cr_assert(plain_ms >= 2500 && plain_ms < 4500, "the plain stream ended after %lld ms",
              plain_ms);
    ma_wait_log("wsecho: drain", 5000);
    up_test_resp_free(&r);
    fprintf(stderr,
            "[wsdrain] event stream ended %lld ms after the reload, plain stream cut %lld ms\n",
            sse_ms, plain_ms);
}

/* Read the answer to a WebSocket handshake from fd: its head into head
 * and, for a 101, the first message after it (a short unmasked text frame)
 * into text. Asserts that the head (and the message after a 101) came
 * within 5 s. */
static void read_upgrade_answer(int fd, char *head, size_t head_cap, char *text, size_t text_cap)
{
    char buf[4096];
    size_t n = 0;
    long long end = up_test_now_ms() + 5000;
    const char *eoh = NULL;
    const unsigned char *f = NULL;
    text[0] = '\0';
    for (;;) {
        buf[n] = '\0';
        eoh = strstr(buf, "\r\n\r\n");
        if (eoh != NULL && strncmp(buf, "HTTP/1.1 101 ", 13) != 0) {
            break; /* a refusal: its head is enough */
        }
        f = eoh != NULL ? (const unsigned char *)eoh + 4 : NULL;
        size_t have = f != NULL ? n - (size_t)((const char *)f - buf) : 0;
        if (have >= 2 && (have >= 2u + f[1] || f[0] != 0x81 || f[1] > 125)) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), end, "no answer and message within 5 s:\n%s", buf);
        cr_assert_lt(n, sizeof(buf) - 1, "too long an answer:\n%s", buf);
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        cr_assert_gt(r, 0, "the connection ended (%s) after:\n%s", r < 0 ? strerror(errno) : "EOF",
                     buf);
        n += (size_t)r;
    }
    snprintf(head, head_cap, "%.*s", (int)(eoh - buf), buf);
    if (strncmp(buf, "HTTP/1.1 101 ", 13) == 0) {
        cr_assert(f[0] == 0x81 && f[1] <= 125, "not a text frame after the 101: %02x %02x", f[0],
                  f[1]);
        snprintf(text, text_cap, "%.*s", (int)f[1], (const char *)f + 2);
    }
}

/* A WebSocket handshake that reaches a draining worker (on a Keep-Alive
 * connection it held from before the reload) is handed back to the master
 * unanswered and opens on the new generation: not refused (503), and not
 * opened on a worker that would close it again at the grace. */
Test(wsdrain, handshake_at_a_draining_worker_opens_on_the_new_generation, .timeout = 60,
     .fini = ht_fini)
{
    static const char *const extra[] = {"-n", "1", "-t", "20s", NULL};
    struct up_test_resp r = {0};
    struct ma_status st;
    char head[1024], text[128];

    ma_start("auto", up_test_bin(WS_APP), extra);
    int fd = ht_client(ma.port);
    ht_get(fd, &r, "before the reload");
    cr_assert(strncmp(r.body, "wsecho 1 ", 9) == 0, "%s", r.body);
    ma_signal(SIGUSR2);
    ma_wait_workers(2, 1, &st);
    ma_wait_log("wsecho: drain 0 open", 10000);
    ht_send_str(fd, "GET /ws?hello=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n");
    read_upgrade_answer(fd, head, sizeof(head), text, sizeof(text));
    cr_assert(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "not opened:\n%s", head);
    cr_assert(strncmp(text, "hello 2 ", 8) == 0, "opened on another generation: %s", text);
    up_test_resp_free(&r);
}

/* Keep-Alive: timeout=N on keep-alive answers, and the connection is kept
 * a little longer than N: a request sent just after N still gets served. */
BACKEND_TEST(wsdrain, keep_alive_timeout_is_advertised_and_kept, .timeout = 30, .fini = ht_fini)
{
    static const char *const env[] = {"UP_IDLE_TIMEOUT=1s", NULL};
    struct up_test_resp r = {0};
    char buf[64];

    wk_start(backend, "examples/hello.so", env);
    int fd = ht_client(wk.port);
    ht_get(fd, &r, "first");
    const char *ka = up_test_resp_header(&r, "Keep-Alive");
    cr_assert(ka != NULL && strcmp(ka, "timeout=1") == 0, "head:\n%s", r.head);
    up_test_nap(1200);
    ht_get(fd, &r, "after the advertised timeout");
    long long t0 = up_test_now_ms();
    int n = up_test_read_until_close(fd, buf, sizeof(buf), 5000);
    long long idle = up_test_now_ms() - t0;
    cr_assert(n == 0 && errno == 0, "not closed cleanly: %d bytes, %s", n, strerror(errno));
    cr_assert(idle >= 1800 && idle < 3000, "closed after %lld ms idle", idle);
    ht_request(wk.port, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r);
    cr_assert_null(up_test_resp_header(&r, "Keep-Alive"), "on a closing answer:\n%s", r.head);
    up_test_resp_free(&r);
    fprintf(stderr, "[wsdrain] Keep-Alive: timeout=1 (%s): idle connection closed after %lld ms\n",
            backend, idle);
}
