/*
 * accesslog: up-run --access-log, written by the workers. Every request
 * served is one line, in either format, across a reload and a logrotate
 * (rename, then SIGUSR1 to the master); a full disk or a stdout nobody
 * reads costs lines, counted in status and /metrics, never a request; the
 * options that cannot work say so.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"

#define AL_GET                                                                                     \
    "GET /logged?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: up-test \"quoted\"\r\n"                    \
    "Referer: http://r/\r\nConnection: close\r\n\r\n"

/* Lines of path that hold needle (0 when it does not exist). */
static int al_lines(const char *path, const char *needle)
{
    return access(path, F_OK) < 0 ? 0 : ht_file_lines(path, needle, NULL);
}

/* Wait until the files hold want lines with needle together (the workers
 * write every 100 ms at most; ma_start()'s probes are lines too). */
static void al_wait_lines(const char *a, const char *b, const char *needle, int want)
{
    long long deadline = up_test_now_ms() + 5000;
    int n;
    while ((n = al_lines(a, needle) + (b != NULL ? al_lines(b, needle) : 0)) < want) {
        cr_assert_lt(up_test_now_ms(), deadline, "%d access log lines of %d after 5 s", n, want);
        up_test_nap(20);
    }
    cr_assert_eq(n, want, "%d access log lines for %d requests", n, want);
}

/* The status line "access log: N lines, M dropped" once it says at least
 * lines (the workers report every second). */
static void al_wait_status(long lines, long *ret_lines, long *ret_dropped)
{
    long long deadline = up_test_now_ms() + 5000;
    struct ma_status s;
    for (;;) {
        ma_status(&s);
        const char *at = strstr(s.text, "access log: ");
        long n = -1, d = -1;
        if (at != NULL) {
            sscanf(at, "access log: %ld lines, %ld dropped", &n, &d);
        }
        if (n >= lines) {
            *ret_lines = n;
            *ret_dropped = d;
            return;
        }
        cr_assert_lt(up_test_now_ms(), deadline, "status never counted %ld access log lines:\n%s",
                     lines, s.text);
        up_test_nap(100);
    }
}

BACKEND_TEST(accesslog, every_request_once_across_a_reload_and_a_rotation, .timeout = 60,
             .fini = ht_fini)
{
    char path[PATH_MAX], old[PATH_MAX];
    struct ma_status s;
    struct up_test_resp r = {0};
    snprintf(path, sizeof(path), "%s", ht_path("access.log"));
    snprintf(old, sizeof(old), "%s", ht_path("access.log.1"));
    const char *const extra[] = {"--access-log", path, NULL};

    ma_start(backend, up_test_bin("examples/hello.so"), extra);
    ma_wait_workers(1, 2, &s);
    ma_requests(200, AL_GET);
    /* One the worker answers itself, as no request line could be read:
     * the second on a connection (the master checks only the first, and
     * what it answers itself is counted in its metrics, not logged here). */
    int fd = ht_client(ma.port);
    ht_get(fd, &r, "a keep-alive request");
    up_test_resp_free(&r);
    ht_send_str(fd, "GET /\x01 HTTP/1.1\r\n\r\n");
    ht_read(fd, &r, "a malformed second request");
    cr_assert_eq(r.status, 400);
    up_test_resp_free(&r);
    ht_client_close(fd);
    al_wait_lines(path, NULL, "\"GET /logged?x=1 HTTP/1.1\" 200 11 ", 200);
    cr_assert_eq(al_lines(path, "\"-\" 400 0 \"-\" \"-\" gen=1 "), 1, "%s",
                 ht_file_text(path, NULL));

    ma_signal(SIGUSR2);
    ma_wait_workers(2, 2, &s);
    ma_requests(100, AL_GET);
    /* logrotate: move the file away, then ask for a reopen. */
    cr_assert_eq(rename(path, old), 0);
    ma_signal(SIGUSR1);
    long long deadline = up_test_now_ms() + 5000;
    while (access(path, F_OK) < 0) {
        cr_assert_lt(up_test_now_ms(), deadline, "no new %s after SIGUSR1:\n%s", path,
                     ma_log_text());
        up_test_nap(20);
    }
    ma_requests(100, AL_GET);
    al_wait_lines(path, old, "\"GET /logged?x=1 HTTP/1.1\" 200 11 ", 400);
    cr_assert_gt(al_lines(path, "/logged"), 0);

    /* Both generations, the combined format, the client's quotes escaped. */
    cr_assert_eq(ht_file_lines(old, "\"http://r/\" \"up-test \\x22quoted\\x22\" gen=1 us=", NULL),
                 200);
    cr_assert_eq(al_lines(old, "/logged?x=1 HTTP/1.1\" 200 11 \"http://r/\" \"up-test "
                               "\\x22quoted\\x22\" gen=2 ") +
                     al_lines(path, "/logged?x=1 HTTP/1.1\" 200 11 \"http://r/\" \"up-test "
                                    "\\x22quoted\\x22\" gen=2 "),
                 200);
    long lines = 0, dropped = -1;
    al_wait_status(402, &lines, &dropped);
    cr_assert_eq(dropped, 0);
    fprintf(stderr, "[accesslog] %s: 402 requests, %d lines before the rotation, %d after\n",
            backend, al_lines(old, "/logged"), al_lines(path, "/logged"));
}

Test(accesslog, json_lines_are_valid_json, .timeout = 60, .fini = ht_fini)
{
    char path[PATH_MAX], cmd[PATH_MAX + 256];
    struct ma_status s;
    snprintf(path, sizeof(path), "%s", ht_path("access.json"));
    const char *const extra[] = {"--access-log", path, "--access-log-format", "json", NULL};

    ma_start("auto", up_test_bin("examples/hello.so"), extra);
    ma_wait_workers(1, 2, &s);
    ma_requests(50, AL_GET);
    /* Bytes no JSON string may hold as they are: not UTF-8, a control. */
    ma_requests(1, "GET /odd HTTP/1.1\r\nHost: t\r\nUser-Agent: \xc3\x28 \xff\tx\r\n"
                   "Connection: close\r\n\r\n");
    al_wait_lines(path, NULL, "\"target\":\"/logged?x=1\"", 50);
    al_wait_lines(path, NULL, "\"target\":\"/odd\"", 1);
    /* A real JSON parser reads every line. */
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,sys\n"
             "for l in open(sys.argv[1], \"rb\"):\n"
             "    o = json.loads(l)\n"
             "    assert o[\"status\"] == 200 and o[\"generation\"] == 1 and o[\"us\"] >= 0, o\n"
             "    assert o[\"peer\"].startswith(\"127.0.0.1:\"), o\n"
             "' '%s'",
             path);
    cr_assert_eq(system(cmd), 0, "%s", ht_file_text(path, NULL));
    cr_assert_eq(ht_file_lines(path, "\"user_agent\":\"up-test \\\"quoted\\\"\"", NULL), 50);
}

Test(accesslog, a_full_disk_costs_lines_not_requests, .timeout = 60, .fini = ht_fini)
{
    struct ma_status s;
    char metrics[32];
    int mport = ht_metrics_addr(metrics, sizeof(metrics));
    const char *const extra[] = {"--access-log", "/dev/full", "--metrics", metrics, NULL};

    ma_start("auto", up_test_bin("examples/hello.so"), extra);
    ma_wait_workers(1, 2, &s);
    ma_requests(300, AL_GET); /* each one asserted 200 */
    long lines = 0, dropped = 0;
    al_wait_status(300, &lines, &dropped);
    cr_assert_eq(dropped, lines, "%ld of %ld lines dropped on a full disk", dropped, lines);
    cr_assert_geq(ht_metric(mport, "up_access_log_dropped_total"), 300);
}

Test(accesslog, a_stdout_nobody_reads_never_blocks_a_worker, .timeout = 120, .fini = ht_fini)
{
    const char *const extra[] = {"--access-log", "-", NULL};

    up_test_exclusive_load();
    ma.log_stuck = true; /* stdout and stderr: a FIFO nobody reads */
    ma_start("auto", up_test_bin("examples/hello.so"), extra);
    /* About 150 bytes a line: 5000 are 750 KiB, more than the pipe and the
     * workers' buffers hold. */
    long long slowest = ma_requests(5000, AL_GET);
    long lines = 0, dropped = 0;
    al_wait_status(5000, &lines, &dropped);
    cr_assert_gt(dropped, 0, "no line dropped with stdout stuck");
    cr_assert_lt(slowest, 1000, "a request took %lld ms with stdout stuck", slowest);
    /* Once read again, what comes out is whole lines. */
    cr_assert_eq(ma_log_read("\"GET /logged?x=1 HTTP/1.1\" 200 ", 5000), 0);
    fprintf(stderr, "[accesslog] stdout stuck: 5000 requests, slowest %lld ms, %ld lines dropped\n",
            slowest, dropped);
}

Test(accesslog, options_that_cannot_work_say_why, .timeout = 60, .fini = ht_fini)
{
    char out[8192];
    const char *app = up_test_bin("examples/hello.so");
    const char *const bad_format[] = {"--access-log", "-", "--access-log-format", "xml", app, NULL};
    cr_assert_eq(ma_run(bad_format, NULL, 10000, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "'xml' is not one of combined or json"), "%s", out);

    const char *const format_alone[] = {"--access-log-format", "json", app, NULL};
    cr_assert_eq(ma_run(format_alone, NULL, 10000, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "--access-log-format needs --access-log"), "%s", out);

    const char *const with_exec[] = {"--access-log", "-", "--exec", "--", "/bin/true", NULL};
    cr_assert_eq(ma_run(with_exec, NULL, 10000, out, sizeof(out)), 2, "%s", out);
    cr_assert_not_null(strstr(out, "writes its own access log"), "%s", out);

    /* A path no worker can open: the start fails and says which. */
    const char *const extra[] = {"--access-log", "/nonexistent-dir/access.log", NULL};
    ma_spawn("auto", app, extra);
    int code = up_test_wait_exit(ma.pid, 20000);
    cr_assert_geq(code, 0, "up-run did not exit:\n%s", ma_log_text());
    ma.pid = -1;
    cr_assert_neq(code, 0);
    cr_assert_geq(ht_file_lines(ma.log,
                                "cannot open the access log /nonexistent-dir/access.log: No such "
                                "file or directory",
                                NULL),
                  1, "%s", ma_log_text());
}
