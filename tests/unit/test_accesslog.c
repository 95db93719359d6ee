/*
 * accesslog: the two line formats (escaping of what the client sent), and
 * the batching sink under it: one write for many lines, whole lines on a
 * pipe, lines dropped and counted (never a notice among them) when the
 * reader is stuck or the disk full, and a reopen that follows logrotate.
 */
#include <criterion/criterion.h>

#include "../lib/testlib.h"
#include "accesslog.h"
#include "loop.h"
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct up_alog_entry entry(void)
{
    return (struct up_alog_entry){
        .peer = "10.1.2.3:5555",
        .when = 1764558691, /* 2025-12-01T03:11:31Z */
        .method = "GET",
        .target = "/a?b=1",
        .minor = 1,
        .status = 200,
        .bytes = 13,
        .referer = "http://ref/",
        .user_agent = "curl/8",
        .generation = 7,
        .us = 42,
    };
}

Test(accesslog, combined_is_nginx_combined_plus_gen_and_us)
{
    setenv("TZ", "UTC", 1);
    tzset();
    char line[UP_ALOG_LINE_MAX];
    struct up_alog_entry e = entry();
    size_t n = up_alog_format_line(UP_ALOG_COMBINED, &e, line);
    cr_assert_str_eq(line,
                     "10.1.2.3 - - [01/Dec/2025:03:11:31 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 "
                     "\"http://ref/\" \"curl/8\" gen=7 us=42");
    cr_assert_eq(n, strlen(line));

    /* What the client sent cannot break the line or its quoting. */
    e.peer = "[::1]:80";
    e.referer = NULL;
    e.user_agent = "a\"b\\c\nd\x01\xff";
    e.minor = 0;
    up_alog_format_line(UP_ALOG_COMBINED, &e, line);
    cr_assert_str_eq(line, "::1 - - [01/Dec/2025:03:11:31 +0000] \"GET /a?b=1 HTTP/1.0\" 200 13 "
                           "\"-\" \"a\\x22b\\x5cc\\x0ad\\x01\\xff\" gen=7 us=42");

    /* No request could be read (400, 408). */
    e = entry();
    e.method = e.target = NULL;
    e.referer = e.user_agent = NULL;
    e.status = 400;
    e.bytes = 0;
    e.peer = "unix";
    up_alog_format_line(UP_ALOG_COMBINED, &e, line);
    cr_assert_str_eq(line,
                     "unix - - [01/Dec/2025:03:11:31 +0000] \"-\" 400 0 \"-\" \"-\" gen=7 us=42");
}

Test(accesslog, json_is_one_valid_object_per_line)
{
    setenv("TZ", "UTC", 1);
    tzset();
    char line[UP_ALOG_LINE_MAX];
    struct up_alog_entry e = entry();
    e.user_agent = "a\"b\\c\nd\x01\xff";
    e.referer = NULL;
    up_alog_format_line(UP_ALOG_JSON, &e, line);
    cr_assert_str_eq(line, "{\"time\":\"2025-12-01T03:11:31+0000\",\"peer\":\"10.1.2.3:5555\","
                           "\"method\":\"GET\",\"target\":\"/a?b=1\",\"proto\":\"HTTP/1.1\","
                           "\"status\":200,\"bytes\":13,\"referer\":\"\","
                           "\"user_agent\":\"a\\\"b\\\\c\\u000ad\\u0001\\u00ff\","
                           "\"generation\":7,\"us\":42}");
}

Test(accesslog, long_fields_are_cut_and_the_line_fits)
{
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    char line[UP_ALOG_LINE_MAX];
    struct up_alog_entry e = entry();
    e.target = e.referer = e.user_agent = big;
    size_t n = up_alog_format_line(UP_ALOG_JSON, &e, line);
    cr_assert_lt(n, sizeof(line));
    cr_assert_eq(strlen(line), n);
    cr_assert_eq(strchr(line, '\n'), NULL);
    /* Every field kept its share: the line ends as an object would, cut. */
    cr_assert_not_null(strstr(line, "\"user_agent\":\"xxx"));
}

Test(accesslog, format_names)
{
    enum up_alog_format f;
    cr_assert_eq(up_alog_format_parse("json", &f), 0);
    cr_assert_eq(f, UP_ALOG_JSON);
    cr_assert_eq(up_alog_format_parse("combined", &f), 0);
    cr_assert_eq(f, UP_ALOG_COMBINED);
    cr_assert_eq(up_alog_format_parse("common", &f), -EINVAL);
}

static void noop_timer(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    (void)t;
}

/* Run the loop for ms. */
static void run_for(struct up_loop *loop, int ms)
{
    long long end = up_test_now_ms() + ms;
    while (up_test_now_ms() < end) {
        struct up_timer t = {.cb = noop_timer};
        up_timer_start(loop, &t, 5);
        cr_assert_eq(up_loop_run_once(loop), 0);
        up_timer_stop(loop, &t);
    }
}

static struct up_loop *new_loop(void)
{
    struct up_loop *loop = NULL;
    cr_assert_eq(up_loop_new(UP_BACKEND_EPOLL, 64, &loop, NULL), 0);
    return loop;
}

/* End s and free it with its loop. */
static void sink_done(struct up_sink *s, struct up_loop *loop)
{
    up_sink_end(s);
    up_loop_drain(loop, 1000);
    up_sink_free(s);
    up_loop_free(loop);
}

static void put_lines(struct up_sink *s, int from, int to)
{
    char line[128];
    for (int i = from; i < to; i++) {
        int n = snprintf(line, sizeof(line),
                         "line %06d the quick brown fox jumps over the lazy dog", i);
        up_sink_put(s, line, (size_t)n);
    }
}

Test(sink, batching_writes_once_per_period_and_never_a_notice, .timeout = 10)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    struct up_loop *loop = new_loop();
    struct up_sink s;
    cr_assert_eq(up_sink_init(&s, p[1], 64 * 1024, 50, NULL, NULL), 0);
    up_sink_start(&s, loop);
    put_lines(&s, 0, 10);
    char buf[1 << 16];
    cr_assert_eq(read(p[0], buf, sizeof(buf)), -1, "written before the batch period");
    run_for(loop, 120);
    ssize_t n = read(p[0], buf, sizeof(buf));
    cr_assert_eq(n, 10 * 56, "%zd bytes", n);

    /* A stuck reader: lines are dropped whole and counted, no notice. */
    put_lines(&s, 10, 5000);
    run_for(loop, 120);
    cr_assert_gt(s.dropped, 0);
    size_t len = 0;
    static char all[1 << 20];
    long long end = up_test_now_ms() + 3000;
    while (up_test_now_ms() < end && (s.off < s.len || len == 0)) {
        ssize_t r = read(p[0], all + len, sizeof(all) - len);
        if (r > 0) {
            len += (size_t)r;
        }
        run_for(loop, 10);
    }
    for (ssize_t r; (r = read(p[0], all + len, sizeof(all) - len)) > 0;) {
        len += (size_t)r;
    }
    cr_assert_eq(len % 56, 0, "a line was cut: %zu bytes", len);
    cr_assert_eq(len / 56 + s.dropped, 4990, "%zu lines read, %llu dropped", len / 56,
                 (unsigned long long)s.dropped);
    cr_assert_eq(memmem(all, len, "dropped", 7), NULL, "a notice among the lines");
    cr_assert_eq(s.lines, 5000);
    sink_done(&s, loop);
    close(p[0]);
    close(p[1]);
}

Test(sink, a_full_pipe_holds_only_whole_lines, .timeout = 10)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    struct up_loop *loop = new_loop();
    struct up_sink s;
    cr_assert_eq(up_sink_init(&s, p[1], 512 * 1024, 50, NULL, NULL), 0);
    up_sink_start(&s, loop);
    cr_assert_eq(s.how, UP_SINK_PRIVATE, "a pipe gets its own non-blocking description");
    /* 280,000 bytes for a 64 KiB pipe: a write of all of it would be taken
     * in part, cut inside a line, where another worker's line could land.
     * Writes of whole lines within PIPE_BUF are taken whole or not at all. */
    put_lines(&s, 0, 5000);
    up_sink_flush(&s);
    static char buf[1 << 20];
    size_t total = 0;
    long long end = up_test_now_ms() + 5000;
    while (total < 5000 * 56) {
        cr_assert_lt(up_test_now_ms(), end, "%zu bytes came", total);
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n > 0) {
            cr_assert_eq(buf[n - 1], '\n', "the pipe held a cut line");
            total += (size_t)n;
        }
        run_for(loop, 5);
    }
    cr_assert_eq(total, 5000 * 56);
    cr_assert_eq(s.dropped, 0);
    cr_assert_eq(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0, "the shared description was changed");
    sink_done(&s, loop);
    close(p[0]);
    close(p[1]);
}

Test(sink, full_disk_drops_and_counts, .timeout = 10)
{
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        cr_skip_test("no /dev/full here: %s", strerror(errno));
    }
    struct up_loop *loop = new_loop();
    struct up_sink s;
    cr_assert_eq(up_sink_init(&s, fd, 64 * 1024, 20, NULL, NULL), 0);
    up_sink_start(&s, loop);
    put_lines(&s, 0, 100);
    run_for(loop, 60);
    cr_assert_eq(s.dropped, 100, "%llu dropped", (unsigned long long)s.dropped);
    cr_assert_eq(up_loop_pending(loop), 0, "a write error must not leave a wait (it would spin)");
    sink_done(&s, loop);
    close(fd);
}

Test(accesslog, reopen_follows_a_rotated_file, .timeout = 10)
{
    char dir[] = "/tmp/up-alog-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[PATH_MAX], old[PATH_MAX];
    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(old, sizeof(old), "%s/access.log.1", dir);
    struct up_loop *loop = new_loop();
    struct up_alog a;
    cr_assert_eq(up_alog_open(&a, path, UP_ALOG_COMBINED, loop), 0);
    struct up_alog_entry e = entry();
    up_alog_put(&a, &e);
    cr_assert_eq(rename(path, old), 0);
    up_alog_put(&a, &e); /* buffered: it goes to the file open when it came */
    cr_assert_eq(up_alog_reopen(&a), 0);
    up_alog_put(&a, &e);
    up_alog_close(&a);
    up_loop_drain(loop, 1000);
    up_loop_free(loop);
    struct stat st_new, st_old;
    cr_assert_eq(stat(path, &st_new), 0, "no new file after the reopen");
    cr_assert_eq(stat(old, &st_old), 0);
    size_t one = strlen("10.1.2.3 - - [01/Dec/2025:03:11:31 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 "
                        "\"http://ref/\" \"curl/8\" gen=7 us=42\n");
    cr_assert_eq(st_old.st_size, 2 * (off_t)one, "%lld bytes in the old file",
                 (long long)st_old.st_size);
    cr_assert_eq(st_new.st_size, (off_t)one, "%lld bytes in the new file",
                 (long long)st_new.st_size);
    cr_assert_eq(up_alog_open(&a, "/nonexistent-dir/x.log", UP_ALOG_JSON, NULL), -ENOENT);
    unlink(path);
    unlink(old);
    rmdir(dir);
}
