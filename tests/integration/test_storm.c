/*
 * storm: reloads at their worst. A SIGUSR2 every 50 ms for 20 s under a
 * checking load (suite `long`, run by `make test-long`), and the short
 * storms of suite `storm`: a 50 MB upload, a streamed answer and a request
 * longer than the drain timeout, each across a reload; idle connections
 * handed back at the very moment their clients send; and the cap on worker
 * processes, (max-draining + 1) x N, while held connections pin old
 * generations. What DESIGN.md promises (sections 5 and 8): no failed
 * request, no reset socket, no fd or process left behind, a master whose
 * memory does not grow.
 *
 * Each test runs twice through BACKEND_TEST (UP_BACKEND=io_uring, epoll).
 * Each test process starts one master, at most two up-loads and one sampler
 * thread (which watches the master's children and RSS), all through the
 * harness, whose ht_fini() stops them even after a failed assertion.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../lib/harness.h"

#define ST_MAX_PIDS 256

/* ==== suite long: 20 s of SIGUSR2 every 50 ms ==== */

#define ST_N 2
#define ST_DEFAULT_MAX_DRAINING 4
#define ST_RSS_LIMIT_KB (16 * 1024)

static void st_long_storm(const char *backend, const char *timeout)
{
    if (!up_test_long()) {
        cr_skip_test("a 20 s reload storm: run with UP_TEST_LONG=1 (make test-long)");
    }
    up_test_exclusive_load();
    const char *args[] = {"-n", "2", timeout != NULL ? "-t" : NULL, timeout, NULL};
    const char *what = timeout != NULL ? timeout : "default 10m";
    const int cap = (ST_DEFAULT_MAX_DRAINING + 1) * ST_N;
    struct ld_result get = {0};
    struct ld_result post = {0};
    struct ma_settled settled;
    char label[128];

    ma.no_defaults = true; /* up-run's own -t when timeout is NULL */
    ma_start(backend, up_test_bin("examples/echo.so"), args);
    char *get_body = ld_echo_body("/storm?get");
    int fds_before = proc_fds_settled(ma.pid, -1, 5000);
    long rss_before = up_test_status_kib(ma.pid, "VmRSS:");

    /* 64 keep-alive + 2 fresh loops: GETs whose listing is checked byte for
     * byte on 16 of them, POSTs of 2000 random bytes echoed back on the
     * others. */
    const char *const load_get[] = {"--keepalive",   "16",     "--fresh", "0",
                                    "--seconds",     "20",     "--path",  "/storm?get",
                                    "--expect-body", get_body, NULL};
    const char *const load_post[] = {"--keepalive", "48",           "--fresh", "2", "--seconds",
                                     "20",          "--post-bytes", "2000",    NULL};
    ma_sampler_start(50);
    ld_start(0, load_get);
    ld_start(1, load_post);
    long long t0 = up_test_now_ms();
    int reloads = ma_reload_storm(50, 20000, NULL, NULL);
    long long storm_ms = up_test_now_ms() - t0;
    ld_finish(0, 30000, &get);
    snprintf(label, sizeof(label), "%s -t %s GET", backend, what);
    ld_report("storm", label, &get);
    ld_finish(1, 30000, &post);
    snprintf(label, sizeof(label), "%s -t %s POST", backend, what);
    ld_report("storm", label, &post);
    free(get_body);

    /* The clients closed their sockets when up-load ended: even with the
     * 10m timeout, old workers now hold nothing and exit. */
    long long settle_start = up_test_now_ms();
    ma_settle(ST_N, fds_before, 15000, &settled);
    long long settle_ms = up_test_now_ms() - settle_start;
    const struct ma_sampler *s = ma_sampler_stop();
    fprintf(stderr,
            "[storm] %s -t %s: %d reloads in %lld ms; max %d worker processes (cap %d) at "
            "%lld ms:%s; master VmRSS %ld KiB before, max %ld KiB over %ld samples; settled "
            "in %lld ms to %d children, %d fds (%d before)\n",
            backend, what, reloads, storm_ms, s->max_kids, cap, s->max_kids_at, s->max_kids_desc,
            rss_before, s->max_rss_kib, s->samples, settle_ms, settled.kids, settled.fds,
            fds_before);

    cr_assert_gt(get.requests + post.requests, 2000, "only %ld + %ld requests in 20 s",
                 get.requests, post.requests);
    cr_assert_leq(s->max_kids, cap,
                  "%d worker processes during the storm, over (max-draining + 1) x N = %d "
                  "(at %lld ms:%s)\nlog:\n%s",
                  s->max_kids, cap, s->max_kids_at, s->max_kids_desc, ma_log_text());
    cr_assert_lt(s->max_rss_kib, ST_RSS_LIMIT_KB, "the master's RSS reached %ld KiB (%ld before)",
                 s->max_rss_kib, rss_before);
    cr_assert_eq(settled.kids, ST_N,
                 "%d children of the master 15 s after the storm, expected %d:%s\nlog:\n%s",
                 settled.kids, ST_N, settled.desc, ma_log_text());
    cr_assert_eq(settled.fds, fds_before,
                 "the master holds %d fds after the storm, %d before\nlog:\n%s", settled.fds,
                 fds_before, ma_log_text());
}

/* The timeouts cover waiting for the other storms (up_test_exclusive_load),
 * the 20 s storm, up-load's last requests and 15 s of settling. */
BACKEND_TEST(long, reload_storm_2s, .timeout = 300, .fini = ht_fini)
{
    st_long_storm(backend, "2s");
}

BACKEND_TEST(long, reload_storm_default_timeout, .timeout = 300, .fini = ht_fini)
{
    st_long_storm(backend, NULL);
}

/* ==== suite storm ==== */

/* A 50 MB body, sent 1 MB every 50 ms with Content-Length, with a reload in
 * the middle: the old worker reads it all and echoes it intact. */
#define ST_BIG_LEN (50u * 1000 * 1000)
#define ST_BIG_CHUNK (1000u * 1000)

/* The body sent: reachable until the test frees it, even after a failed
 * assertion (no leak to report). */
static char *st_big;

static uint64_t st_fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    }
    return h;
}

BACKEND_TEST(storm, slow_upload_across_reload, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "10s", NULL};
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char head[256];
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    st_big = malloc(ST_BIG_LEN);
    cr_assert_not_null(st_big);
    for (size_t i = 0; i < ST_BIG_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        st_big[i] = (char)(x >> 56);
    }
    uint64_t sent_sum = st_fnv1a(st_big, ST_BIG_LEN);

    ma.env[0] = "UP_BODY_LIMIT=67108864";
    ma_start(backend, up_test_bin("examples/echo.so"), args);
    int nold = ma_wait_children(ST_N, old, ST_MAX_PIDS);
    int fd = ht_client(ma.port);
    int hl = snprintf(head, sizeof(head),
                      "POST /body HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %u\r\n\r\n",
                      ST_BIG_LEN);
    ht_send(fd, head, (size_t)hl);

    long long t0 = up_test_now_ms();
    long long reload_at = -1;
    long long switch_at = -1;
    unsigned nchunks = ST_BIG_LEN / ST_BIG_CHUNK;
    for (unsigned i = 0; i < nchunks; i++) {
        up_test_sleep_until(t0 + 50LL * i);
        int ret = up_test_send_all(fd, st_big + (size_t)i * ST_BIG_CHUNK, ST_BIG_CHUNK);
        cr_assert_eq(ret, 0, "send MB %u of the body: %s\nlog:\n%s", i, strerror(-ret),
                     ma_log_text());
        if (i == nchunks / 2) {
            ma_signal(SIGUSR2);
            reload_at = up_test_now_ms() - t0;
        }
        /* Until the new generation serves, look once per chunk. */
        if (reload_at >= 0 && switch_at < 0) {
            struct up_test_resp f = {0};
            ret = ma_fresh(HT_PROBE, &f);
            cr_assert_eq(ret, 0, "fresh request during the upload: %s\nlog:\n%s", strerror(-ret),
                         ma_log_text());
            if (!ht_pid_in(ht_resp_pid(&f), old, nold)) {
                switch_at = up_test_now_ms() - t0;
            }
            up_test_resp_free(&f);
        }
    }
    long long sent_at = up_test_now_ms() - t0;
    int ret = up_test_read_response(fd, &r, 30000);
    long long answered_at = up_test_now_ms() - t0;
    cr_assert_eq(ret, 0, "no echo of the 50 MB body: %s\nlog:\n%s", strerror(-ret), ma_log_text());
    uint64_t got_sum = st_fnv1a(r.body, r.body_len);
    long pid = ht_resp_pid(&r);
    unsigned gen = ht_resp_gen(&r);
    fprintf(stderr,
            "[storm] %s slow_upload: reload at %lld ms, switch seen at %lld ms, body sent at %lld "
            "ms, echo of %zu bytes at %lld ms from pid %ld generation %u; fnv1a sent %016llx "
            "got %016llx\n",
            backend, reload_at, switch_at, sent_at, r.body_len, answered_at, pid, gen,
            (unsigned long long)sent_sum, (unsigned long long)got_sum);

    cr_assert_eq(r.status, 200, "status %d:\n%s\nlog:\n%s", r.status, r.head, ma_log_text());
    cr_assert_eq(r.body_len, ST_BIG_LEN, "echoed %zu bytes, sent %u", r.body_len, ST_BIG_LEN);
    cr_assert_eq(got_sum, sent_sum, "the echoed body differs from the one sent");
    cr_assert_eq(memcmp(r.body, st_big, ST_BIG_LEN), 0, "the echoed body differs");
    cr_assert(switch_at >= 0 && switch_at < sent_at,
              "the new generation did not take over while the body was being sent (switch at "
              "%lld ms, body sent at %lld ms): the test proves nothing\nlog:\n%s",
              switch_at, sent_at, ma_log_text());
    cr_assert_eq(gen, 1, "the upload was answered by generation %u, not 1:\n%s", gen, r.head);
    cr_assert(ht_pid_in(pid, old, nold), "the upload was answered by pid %ld, not an old worker",
              pid);
    up_test_resp_free(&r);
    free(st_big);
    st_big = NULL;
}

/* /stream?chunks=30&ms=100: 3 s of chunks, a reload after 0.5 s. */
BACKEND_TEST(storm, streaming_response_across_reload, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "10s", NULL};
    static const char req[] = "GET /stream?chunks=30&ms=100 HTTP/1.1\r\nHost: t\r\n\r\n";
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char want[512];
    size_t wlen = 0;

    for (int i = 0; i < 30; i++) {
        wlen += (size_t)snprintf(want + wlen, sizeof(want) - wlen, "chunk %d\n", i);
    }
    ma_start(backend, up_test_bin("examples/slow.so"), args);
    int nold = ma_wait_children(ST_N, old, ST_MAX_PIDS);
    int fd = ht_client(ma.port);
    long long t0 = up_test_now_ms();
    int ret = up_test_send_all(fd, req, sizeof(req) - 1);
    cr_assert_eq(ret, 0, "send: %s", strerror(-ret));
    up_test_sleep_until(t0 + 500);
    ma_signal(SIGUSR2);
    long new_pid = ma_wait_switch(old, nold, HT_READY_MS);
    long long switch_at = up_test_now_ms() - t0;
    ret = up_test_read_response(fd, &r, 15000);
    long long done_at = up_test_now_ms() - t0;
    cr_assert_eq(ret, 0, "the stream did not arrive whole: %s (%zu bytes of body)\nlog:\n%s",
                 strerror(-ret), r.body_len, ma_log_text());
    long pid = ht_resp_pid(&r);
    fprintf(stderr,
            "[storm] %s streaming: switch to pid %ld at %lld ms, stream of %zu bytes (%s) from "
            "pid %ld done at %lld ms\n",
            backend, new_pid, switch_at, r.body_len, r.chunked ? "chunked" : "not chunked", pid,
            done_at);

    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_eq(r.body_len, wlen, "%zu bytes of stream, expected %zu:\n%s", r.body_len, wlen,
                 r.body);
    cr_assert_str_eq(r.body, want, "the stream differs");
    cr_assert(ht_pid_in(pid, old, nold), "the stream came from pid %ld, not an old worker", pid);
    cr_assert_lt(switch_at, done_at - 500,
                 "the switch (%lld ms) did not happen well before the stream ended (%lld ms): "
                 "the test proves nothing",
                 switch_at, done_at);
    up_test_resp_free(&r);
}

/* -t 1s and a request of 2.5 s in flight at the deadline: finished, with
 * Connection: close, then closed cleanly. */
BACKEND_TEST(storm, long_request_past_deadline, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"-n", "2", "-t", "1s", NULL};
    static const char quick[] = "GET /?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char slow[] = "GET /?ms=2500 HTTP/1.1\r\nHost: t\r\n\r\n";
    pid_t old[ST_MAX_PIDS];
    struct up_test_resp r = {0};
    char rest[256];

    ma_start(backend, up_test_bin("examples/slow.so"), args);
    int nold = ma_wait_children(ST_N, old, ST_MAX_PIDS);
    int fd = ht_client(ma.port);
    /* A first answer puts the connection on its worker. */
    ht_send(fd, quick, sizeof(quick) - 1);
    ht_read(fd, &r, "first request");
    cr_assert_eq(r.status, 200, "first request: status %d:\n%s", r.status, r.head);
    long pid_a = ht_resp_pid(&r);

    long long t0 = up_test_now_ms();
    ht_send(fd, slow, sizeof(slow) - 1);
    up_test_sleep_until(t0 + 100);
    ma_signal(SIGUSR2);
    ma_wait_switch(old, nold, HT_READY_MS);
    long long switch_at = up_test_now_ms() - t0;
    int ret = up_test_read_response(fd, &r, 10000);
    long long answered_at = up_test_now_ms() - t0;
    const char *conn = ret == 0 ? up_test_resp_header(&r, "Connection") : NULL;
    int n = ret == 0 ? up_test_read_until_close(fd, rest, sizeof(rest), 3000) : -1;
    int close_errno = errno;
    long long closed_at = up_test_now_ms() - t0;
    fprintf(stderr,
            "[storm] %s past_deadline: switch seen at %lld ms (deadline before %lld ms), answer "
            "(%s) at %lld ms, Connection: %s; then %d bytes and %s at %lld ms\n",
            backend, switch_at, switch_at + 1000, ret == 0 ? "complete" : strerror(-ret),
            answered_at, conn != NULL ? conn : "(none)", n,
            n < 0              ? "-"
            : close_errno == 0 ? "FIN"
                               : strerror(close_errno),
            closed_at);

    cr_assert_eq(ret, 0,
                 "the request in flight at the drain deadline got no whole answer: %s\n"
                 "log:\n%s",
                 strerror(-ret), ma_log_text());
    cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
    cr_assert_str_eq(r.body, "slept 2500 ms\n");
    cr_assert_eq(ht_resp_pid(&r), pid_a, "answered by pid %ld, not the old worker %ld",
                 (long)ht_resp_pid(&r), pid_a);
    cr_assert_lt(switch_at + 1000, answered_at,
                 "the deadline (before %lld ms) did not pass before the answer (%lld ms): the "
                 "test proves nothing",
                 switch_at + 1000, answered_at);
    cr_assert(conn != NULL && strcasecmp(conn, "close") == 0,
              "the answer finished past the drain deadline did not say Connection: close:\n%s",
              r.head);
    cr_assert_eq(n, 0, "%d bytes after the last answer: %s", n, rest);
    cr_assert_eq(close_errno, 0, "the connection ended with %s, not a clean close\nlog:\n%s",
                 strerror(close_errno), ma_log_text());
    up_test_resp_free(&r);
}

/* --migrate=idle: 32 keep-alive loops sending back to back while a reload
 * every 100 ms hands their idle sockets back, at the moment they send. */
BACKEND_TEST(storm, keepalive_close_race, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"--migrate=idle", "-n", "2", "-t", "10s", NULL};
    struct ld_result res;
    struct ma_status s;
    struct ma_settled settled;
    char label[64];

    ma_start(backend, up_test_bin("examples/echo.so"), args);
    char *body = ld_echo_body("/race");
    const char *const load[] = {"--keepalive", "32",    "--fresh",       "0",  "--seconds", "5",
                                "--path",      "/race", "--expect-body", body, NULL};
    int fds_before = proc_fds_settled(ma.pid, -1, 5000);
    ld_start(0, load);
    int reloads = ma_reload_storm(100, 5000, NULL, NULL);
    ld_finish(0, 15000, &res);
    snprintf(label, sizeof(label), "%s close_race", backend);
    ld_report("storm", label, &res);
    free(body);
    ma_status(&s);
    ma_settle(ST_N, fds_before, 10000, &settled);
    fprintf(stderr,
            "[storm] %s close_race: %d reloads, %ld connections handed back; %d children, %d "
            "fds (%d before)\n",
            backend, reloads, s.handed_back, settled.kids, settled.fds, fds_before);
    cr_assert_gt(res.requests, 500, "only %ld requests in 5 s: %s", res.requests, res.line);
    cr_assert_gt(s.handed_back, 0, "no connection was handed back: the race was not run\n%s",
                 s.text);
    cr_assert_eq(settled.kids, ST_N,
                 "%d children of the master after the run, expected %d:%s\nlog:\n%s", settled.kids,
                 ST_N, settled.desc, ma_log_text());
    cr_assert_eq(settled.fds, fds_before,
                 "the master holds %d fds after the run, %d before\nlog:\n%s", settled.fds,
                 fds_before, ma_log_text());
}

/* --max-draining 2 -n 2 -t 10m and a reload every 50 ms for 3 s, while 16
 * idle keep-alive connections pin old generations: 4 opened before the
 * storm, then one every 5th reload, so that most generations hold one and
 * cannot exit by themselves. Never more than (2 + 1) x 2 = 6 workers, the
 * latest reload wins, every held connection still works. */
#define ST_HELD 16
#define ST_HELD_BEFORE 4

static int st_held[ST_HELD];
static unsigned st_held_gen[ST_HELD]; /* the generation of its first answer */
static int st_nheld;

/* Open one more held connection and make one request on it: before the
 * storm (i < 0), then before every 5th reload i until there are ST_HELD. */
static void st_hold(int reload)
{
    struct up_test_resp r = {0};
    char what[64];
    int i = st_nheld;

    if (reload >= 0 && (reload % 5 != 4 || i == ST_HELD)) {
        return;
    }
    cr_assert_lt(i, ST_HELD);
    st_held[i] = ht_client(ma.port);
    snprintf(what, sizeof(what), "held connection %d, first request", i);
    ht_get(st_held[i], &r, what);
    cr_assert_not_null(strstr(r.body, "method: GET"), "%s: not echo's answer:\n%s", what, r.body);
    st_held_gen[i] = ht_resp_gen(&r);
    st_nheld++;
    up_test_resp_free(&r);
}

BACKEND_TEST(storm, process_cap, .timeout = 150, .fini = ht_fini)
{
    up_test_exclusive_load();
    static const char *const args[] = {"--max-draining", "2", "-n", "2", "-t", "10m", NULL};
    const int cap = (2 + 1) * ST_N;
    struct up_test_resp r = {0};
    struct ma_status status;
    char what[64];
    char first[256];
    char desc[256];

    ma_start(backend, up_test_bin("examples/echo.so"), args);
    st_nheld = 0;
    for (int i = 0; i < ST_HELD_BEFORE; i++) {
        st_hold(-1);
    }
    ma_sampler_start(20);
    long long last_boot = 0;
    int reloads = ma_reload_storm(50, 3000, st_hold, &last_boot);
    long long last_mono = up_test_now_ms();
    cr_assert_eq(st_nheld, ST_HELD, "only %d held connections", st_nheld);

    /* The answer must come from a worker started after the last signal:
     * that reload, deferred or not, was carried out. */
    long long deadline = last_mono + 5000;
    long pid;
    unsigned gen;
    long long started;
    for (;;) {
        int ret = ma_fresh(HT_PROBE, &r);
        cr_assert_eq(ret, 0, "fresh request after the storm: %s\nlog:\n%s", strerror(-ret),
                     ma_log_text());
        cr_assert_eq(r.status, 200, "status %d:\n%s", r.status, r.head);
        pid = ht_resp_pid(&r);
        gen = ht_resp_gen(&r);
        started = proc_start_ms((pid_t)pid);
        /* starttime has clock-tick resolution: allow one tick. */
        if (started >= last_boot - 1000 / sysconf(_SC_CLK_TCK)) {
            break;
        }
        cr_assert_lt(up_test_now_ms(), deadline,
                     "5 s after the last of %d reloads, new connections still go to generation %u "
                     "(pid %ld, started %lld ms before the last signal)\nlog:\n%s",
                     reloads, gen, pid, last_boot - started, ma_log_text());
        up_test_nap(20);
    }
    long long served_after = up_test_now_ms() - last_mono;
    ma_status(&status);
    unsigned max_gen = status.max_gen;

    /* Every held connection still answers. */
    unsigned gens_seen[ST_HELD];
    for (int i = 0; i < ST_HELD; i++) {
        snprintf(what, sizeof(what), "held connection %d after the storm", i);
        ht_get(st_held[i], &r, what);
        cr_assert_not_null(strstr(r.body, "method: GET"), "%s: not echo's answer:\n%s", what,
                           r.body);
        gens_seen[i] = ht_resp_gen(&r);
    }
    const struct ma_sampler *s = ma_sampler_stop();
    size_t u1 = 0;
    size_t u2 = 0;
    first[0] = '\0';
    desc[0] = '\0';
    for (int i = 0; i < ST_HELD; i++) {
        int w = snprintf(first + u1, sizeof(first) - u1, " %u", st_held_gen[i]);
        u1 += w > 0 && (size_t)w < sizeof(first) - u1 ? (size_t)w : 0;
        w = snprintf(desc + u2, sizeof(desc) - u2, " %u", gens_seen[i]);
        u2 += w > 0 && (size_t)w < sizeof(desc) - u2 ? (size_t)w : 0;
    }
    int deferred = up_test_file_contains(ma.log, "deferred");
    int shed = up_test_file_contains(ma.log, "hands back its idle") == 1 ||
               up_test_file_contains(ma.log, "over --max-draining") == 1;
    fprintf(stderr,
            "[storm] %s process_cap: %d reloads; max %d worker processes (cap %d) at %lld ms:%s "
            "over %ld samples; generation %u (pid %ld) serves %lld ms after the last signal, "
            "status lists up to %u; held connections on generations%s, then%s; log: deferred "
            "%s, shed %s\n",
            backend, reloads, s->max_kids, cap, s->max_kids_at, s->max_kids_desc, s->samples, gen,
            pid, served_after, max_gen, first, desc, deferred == 1 ? "yes" : "no",
            shed ? "yes" : "no");

    cr_assert_leq(s->max_kids, cap,
                  "%d worker processes, over (max-draining + 1) x N = %d (at %lld ms:%s)\n"
                  "log:\n%s",
                  s->max_kids, cap, s->max_kids_at, s->max_kids_desc, ma_log_text());
    cr_assert_eq(gen, max_gen, "new connections go to generation %u, the highest is %u:\n%s", gen,
                 max_gen, status.text);
    up_test_resp_free(&r);
    for (int i = 0; i < ST_HELD; i++) {
        ht_client_close(st_held[i]);
    }
}
