/*
 * chat: examples/chat across a reload, with clients nobody here wrote: the
 * npm package ws (tests/ws/chat.js). Clients get 1012, come back to the
 * new generation within a second, and never lose a message without seeing
 * it fail.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../lib/harness.h"
#include "../lib/node.h"

#define CHAT_APP "examples/chat.so"

static const char *const chat_opts[] = {
    "-n", "2", "-t", "5s", "--ws-drain-grace", "300ms", "--close-spread", "1s", NULL};

Test(chat, clients_come_back_after_a_reload_and_lose_nothing_silently, .timeout = 90,
     .fini = ht_fini)
{
    struct up_test_resp r = {0};
    char port[16];
    struct nd n;

    ma_start("auto", up_test_bin(CHAT_APP), chat_opts);
    ht_fetch(ma.port, "/", &r);
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert_str_eq(up_test_resp_header(&r, "X-Up-Generation"), "1");
    cr_assert(strstr(r.body, "<title>up chat</title>") != NULL, "not the page:\n%s", r.body);
    snprintf(port, sizeof(port), "%d", ma.port);
    nd_start(&n, "chat.js", (const char *const[]){port, "20", NULL});
    nd_wait_line(&n, "READY 1", 30000);
    ma_signal(SIGUSR2);
    nd_wait_line(&n, "BACK 2", 30000);
    int code = nd_finish(&n, 15000);
    cr_assert_eq(code, 0, "chat.js:\n%s", nd_text(&n));
    ht_fetch(ma.port, "/", &r);
    cr_assert_str_eq(up_test_resp_header(&r, "X-Up-Generation"), "2");
    ma_wait_log("chat: generation 1 drains with", 1000);
    up_test_resp_free(&r);
    fprintf(stderr, "[chat] ws clients:\n%s", nd_text(&n));
}
