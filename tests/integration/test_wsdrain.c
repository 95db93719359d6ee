/*
 * wsdrain: what a reload does to long-lived connections: a WebSocket
 * handshake that reaches a draining worker opens on the new generation.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../lib/harness.h"

#define WS_APP "examples/wsecho.so"

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
