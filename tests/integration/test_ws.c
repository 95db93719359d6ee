/*
 * ws: WebSockets served by the worker runtime, driven by a client nobody
 * here wrote (the npm package ws, tests/ws): the echo of every size
 * class of frame, fragments, pings, both closing handshakes, subprotocols
 * and refused handshakes; the close code for each kind of invalid frame;
 * the master's part (a handshake passes through to a worker, a malformed
 * one is 400); and the limits: a client that never reads.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../lib/harness.h"
#include "../lib/node.h"

#define WS_APP "examples/wsecho.so"

BACKEND_TEST(ws, echo_fragments_pings_closes_and_handshakes, .timeout = 60, .fini = ht_fini)
{
    char port[16];
    wk_start(backend, WS_APP, NULL);
    snprintf(port, sizeof(port), "%d", wk.port);
    nd_run("ws", "echo.js", (const char *const[]){port, NULL}, 45000);
    cr_assert(up_test_alive(wk.pid), "the worker died:\n%s", wk_log_text());
}

BACKEND_TEST(ws, invalid_frames_get_their_close_codes, .timeout = 60, .fini = ht_fini)
{
    static const char *const env[] = {"UP_BODY_LIMIT=65536", NULL};
    char port[16];
    wk_start(backend, WS_APP, env);
    snprintf(port, sizeof(port), "%d", wk.port);
    nd_run("ws", "invalid.js", (const char *const[]){port, "65536", NULL}, 45000);
    cr_assert(up_test_alive(wk.pid), "the worker died:\n%s", wk_log_text());
}

/* Through the master: the head check lets a whole handshake through to a
 * worker (the echo runs on the handed-off socket) and answers 400 to a
 * malformed one itself. */
Test(ws, master_passes_handshakes_and_refuses_malformed_ones, .timeout = 60, .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char port[16];
    ma_start("auto", up_test_bin(WS_APP), NULL);
    snprintf(port, sizeof(port), "%d", ma.port);
    nd_run("ws", "echo.js", (const char *const[]){port, NULL}, 45000);
    ht_request(ma.port,
               "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
               &r);
    cr_assert_eq(r.status, 400, "a short key:\n%s", r.head);
    cr_assert_null(up_test_resp_header(&r, "Keep-Alive"), "the master's answer:\n%s", r.head);
    ht_request(ma.port,
               "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
               &r);
    cr_assert_eq(r.status, 426, "another version is the worker's 426:\n%s", r.head);
    cr_assert_str_eq(up_test_resp_header(&r, "Sec-WebSocket-Version"), "13");
    up_test_resp_free(&r);
}

/* A client that never reads: the app's sends are refused once the queue
 * is full (it sees UP_WS_ERR_FULL, the worker's memory stays bounded), and
 * the connection is reset after UP_SEND_TIMEOUT, on_close saying 1006. */
Test(ws, client_that_never_reads_is_dropped_after_the_send_timeout, .timeout = 60, .fini = ht_fini)
{
    static const char *const env[] = {"UP_SEND_TIMEOUT=1s", NULL};
    char port[16];
    wk_start("auto", WS_APP, env);
    snprintf(port, sizeof(port), "%d", wk.port);
    long rss0 = up_test_status_kib(wk.pid, "VmRSS:");
    struct nd n;
    nd_start(&n, "noread.js", (const char *const[]){port, "4000", NULL});
    nd_wait_line(&n, "paused", 10000);
    cr_assert_eq(up_test_wait_log(wk.log, "wsecho: full", 10000), 0, "no send was refused:\n%s",
                 wk_log_text());
    long rss = up_test_status_kib(wk.pid, "VmRSS:");
    cr_assert_eq(up_test_wait_log(wk.log, "wsecho: closed code=1006", 10000), 0, "not dropped:\n%s",
                 wk_log_text());
    int st = nd_finish(&n, 15000);
    cr_assert_eq(st, 0, "noread.js:\n%s", nd_text(&n));
    long limit = up_test_sanitized() ? 256 * 1024 : 32 * 1024;
    cr_assert_lt(rss - rss0, limit, "the worker grew by %ld KiB for one client", rss - rss0);
    fprintf(stderr, "[ws] never-reading client: worker RSS +%ld KiB while it was refused sends\n",
            rss - rss0);
}
