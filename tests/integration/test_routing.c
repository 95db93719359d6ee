/*
 * routing: up-run --sticky, end to end. A client with the same cookie, the
 * same header field or the same address lands on the same worker each
 * time; keys spread over every worker; after a reload, and after a worker
 * is replaced, keys that shared a worker share one again (a replacement
 * takes its predecessor's index, and with it its keys). Requests without
 * the key go round-robin.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/testlib.h"

#define KEYS 32
#define WORKERS 4

/* GET / on a new connection from 127.0.0.src (0: the default), with one
 * extra header line (or NULL); the pid that served it. */
static pid_t rt_get(int src, const char *line)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (src > 0) {
        struct sockaddr_in from = {.sin_family = AF_INET,
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)src - 1)};
        cr_assert_eq(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0, "bind: %s",
                     strerror(errno));
    }
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)ma.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    char req[256];
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: t\r\n%s%sConnection: close\r\n\r\n",
             line ? line : "", line ? "\r\n" : "");
    cr_assert_eq(up_test_send_all(fd, req, strlen(req)), 0);
    struct up_test_resp r = {0};
    cr_assert_eq(up_test_read_response(fd, &r, 5000), 0);
    close(fd);
    cr_assert_eq(r.status, 200, "%d\n%s", r.status, ma_log_text());
    const char *pid = up_test_resp_header(&r, "X-Up-Pid");
    cr_assert_not_null(pid);
    pid_t p = (pid_t)atol(pid);
    up_test_resp_free(&r);
    return p;
}

/* The worker of each key (by fmt, a cookie or header line with %d), asked
 * three times: always the same. */
static void rt_place(const char *fmt, pid_t *ret)
{
    for (int k = 0; k < KEYS; k++) {
        char line[64];
        snprintf(line, sizeof(line), fmt, k);
        ret[k] = rt_get(0, line);
        for (int again = 0; again < 2; again++) {
            cr_assert_eq(rt_get(0, line), ret[k], "key %d moved", k);
        }
    }
}

static int rt_distinct(const pid_t *pids, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) {
            seen = pids[j] == pids[i];
        }
        d += !seen;
    }
    return d;
}

/* Keys that shared a worker in a share one in b, and the other way. */
static void rt_same_partition(const pid_t *a, const pid_t *b)
{
    for (int i = 0; i < KEYS; i++) {
        for (int j = 0; j < i; j++) {
            cr_assert_eq(a[i] == a[j], b[i] == b[j], "keys %d and %d: together %d, then %d", i, j,
                         a[i] == a[j], b[i] == b[j]);
        }
    }
}

static void rt_start(const char *spec)
{
    const char *extra[] = {"-n", "4", "--sticky", spec, NULL};
    ma_start("auto", up_test_bin("examples/echo.so"), extra);
    struct ma_status s;
    ma_wait_workers(1, WORKERS, &s);
}

Test(routing, sticky_cookie_holds_through_reload_and_respawn, .timeout = 90, .fini = ht_fini)
{
    rt_start("cookie:sid");
    static pid_t first[KEYS], second[KEYS], third[KEYS];
    rt_place("Cookie: theme=dark; sid=user%d", first);
    cr_assert_geq(rt_distinct(first, KEYS), WORKERS - 1, "keys crowd on few workers");

    /* Without the cookie: round-robin over the workers. */
    pid_t rr[8];
    for (int i = 0; i < 8; i++) {
        rr[i] = rt_get(0, "Cookie: theme=dark");
    }
    cr_assert_geq(rt_distinct(rr, 8), 2);

    /* A reload: new workers, the same grouping of keys. */
    cr_assert_eq(kill(ma.pid, SIGUSR2), 0);
    struct ma_status s;
    ma_wait_workers(2, WORKERS, &s);
    rt_place("Cookie: sid=user%d", second);
    for (int k = 0; k < KEYS; k++) {
        cr_assert_neq(second[k], first[k], "key %d still on the old generation", k);
    }
    rt_same_partition(first, second);

    /* A worker killed and replaced: its keys go to its replacement. */
    pid_t victim = second[0];
    cr_assert_eq(kill(victim, SIGKILL), 0);
    ma_wait_workers_not(2, WORKERS, &victim, 1, &s);
    rt_place("Cookie: sid=user%d", third);
    rt_same_partition(second, third);
    for (int k = 0; k < KEYS; k++) {
        cr_assert_eq(third[k] == second[k], second[k] != victim, "key %d", k);
    }
}

Test(routing, sticky_header, .timeout = 60, .fini = ht_fini)
{
    rt_start("header:X-Tenant");
    static pid_t placed[KEYS];
    rt_place("x-tenant: t%d", placed);
    cr_assert_geq(rt_distinct(placed, KEYS), WORKERS - 1);
}

/* By address: 127.0.0.1 to .16, each on its worker, whatever it sends. */
Test(routing, sticky_address, .timeout = 60, .fini = ht_fini)
{
    rt_start("ip");
    pid_t by_src[16];
    for (int src = 1; src <= 16; src++) {
        by_src[src - 1] = rt_get(src, NULL);
        for (int again = 0; again < 2; again++) {
            cr_assert_eq(rt_get(src, "Cookie: sid=x"), by_src[src - 1], "127.0.0.%d moved", src);
        }
    }
    cr_assert_geq(rt_distinct(by_src, 16), 2);
}
