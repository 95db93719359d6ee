/*
 * handoff: a worker in another language speaking the handoff protocol
 * (docs/PROTOCOL.md): examples/python/up_wsgi.py, the Python standard
 * library alone, under up-run --exec --protocol=handoff. It gets what an
 * app .so gets: heads checked by the master, and idle keep-alive
 * connections handed back on drain, so a reload storm fails no request,
 * keep-alive or new.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/harness.h"

static void hf_start(void)
{
    const char *const *extra = ht_python_handoff(&ma.env[0]);
    ma_spawn("auto", NULL, extra);
    ma_wait_serving(20000);
}

Test(handoff, python_wsgi_worker_serves_and_the_master_checks_heads, .timeout = 40, .fini = ht_fini)
{
    struct ma_status s;
    struct up_test_resp r = {0};
    hf_start();
    ma_wait_workers(1, 2, &s);
    ht_request(ma.port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "Hello World");
    up_test_resp_free(&r);
    /* Bad input never reaches the worker. */
    ht_request(ma.port,
               "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &r);
    cr_assert_eq(r.status, 400, "%s", r.head);
    up_test_resp_free(&r);
    /* Keep-alive: one connection, several requests, one worker. */
    int fd = ht_client(ma.port);
    pid_t first = ht_get_pid(fd, "first");
    cr_assert_eq(ht_get_pid(fd, "second"), first);
    ht_client_close(fd);
    ma_status(&s);
    cr_assert_geq(s.handed, 3, "%s", s.text);
}

Test(handoff, reload_storm_fails_no_request, .timeout = 90, .fini = ht_fini)
{
    static const char *const keep[] = {"--keepalive", "32", "--fresh", "0",
                                       "--seconds",   "8",  "--quiet", NULL};
    static const char *const fresh[] = {"--keepalive", "0", "--fresh", "4",
                                        "--seconds",   "8", "--quiet", NULL};
    struct ld_result k, f;
    struct ma_status s;
    hf_start();
    ma_wait_workers(1, 2, &s);
    ld_start(0, keep);
    ld_start(1, fresh);
    int n = ma_reload_storm(400, 6000, NULL, NULL);
    ld_finish(0, 30000, &k);
    ld_finish(1, 30000, &f);
    char what[128];
    snprintf(what, sizeof(what), "python up_wsgi.py, keep-alive across %d reloads", n);
    ld_report("handoff", what, &k);
    snprintf(what, sizeof(what), "python up_wsgi.py, new connections across %d reloads", n);
    ld_report("handoff", what, &f);
    ma_status(&s);
    fprintf(stderr, "[handoff] %ld idle connections handed back by draining workers\n",
            s.handed_back);
}
