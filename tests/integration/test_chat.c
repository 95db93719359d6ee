/*
 * chat: examples/chat across a reload, with clients nobody here wrote: the
 * npm package ws (tests/ws/chat.js), and Chromium loading the page
 * (tests/ws/browser.js, over the DevTools protocol). Clients get 1012,
 * come back to the new generation within a second, and never lose a
 * message without seeing it fail.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/node.h"

#define CHAT_APP "examples/chat.so"
#define CHROMIUM "/usr/bin/chromium"

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

/* The browser's process group (browser.js starts it as one), killed at the
 * end whatever happened to browser.js. */
static pid_t browser_group;

static void chat_fini(void)
{
    ht_fini(); /* browser.js gets SIGTERM and closes the browser itself */
    if (browser_group > 0) {
        kill(-browser_group, SIGKILL);
        browser_group = 0;
    }
}

/* The pgid browser.js printed ("BROWSER pgid"), once it did. */
static pid_t read_browser_group(const struct nd *n)
{
    nd_wait_line(n, "BROWSER ", 30000);
    const char *p = strstr(nd_text(n), "BROWSER ");
    return p != NULL ? (pid_t)atoi(p + 8) : 0;
}

/* Chromium (Debian's, headless) loads the chat page, connects, says
 * something; the test reloads; the page comes back to generation 2 by
 * itself within a second, says something again, and shows both messages
 * delivered (the DOM is read, and printed). */
Test(chat, chromium_page_survives_a_reload, .timeout = 120, .fini = chat_fini)
{
    if (access(CHROMIUM, X_OK) != 0) {
        cr_assert(getenv("UP_REQUIRE_CHROMIUM") == NULL,
                  CHROMIUM " is missing, and UP_REQUIRE_CHROMIUM is set");
        cr_skip_test(CHROMIUM " is not installed (apt-get install chromium): the browser test "
                              "is skipped");
    }
    char url[64];
    struct nd n;

    up_test_exclusive_load(); /* a browser's start takes both cores for a moment */
    ma_start("auto", up_test_bin(CHAT_APP), chat_opts);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ma.port);
    nd_start(&n, "browser.js", (const char *const[]){CHROMIUM, url, ht_path("chromium"), NULL});
    browser_group = read_browser_group(&n);
    nd_wait_line(&n, "OPEN 1", 60000);
    ma_signal(SIGUSR2);
    nd_wait_line(&n, "BACK 2", 30000);
    int code = nd_finish(&n, 30000);
    cr_assert_eq(code, 0, "browser.js:\n%s", nd_text(&n));
    fprintf(stderr, "[chat] chromium:\n%s", nd_text(&n));
}
