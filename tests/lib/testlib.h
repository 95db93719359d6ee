/*
 * testlib: what the integration tests share. It starts the real binaries,
 * waits for them with deadlines (never a fixed sleep), stops them by pid, and
 * speaks just enough HTTP/1.1 over raw TCP to check what a server sent byte
 * for byte.
 *
 * Every wait is bounded by the timeout it is given. Functions return >= 0 on
 * success and -errno on failure (-ETIMEDOUT when a deadline passed, -EPIPE
 * when the peer closed too early, -EPROTO when it sent something malformed),
 * and never log: the test asserts on the result and says what it expected.
 *
 * The HTTP client reads exactly one response at a time and never reads past
 * its end, so pipelined responses can be read one by one from the same fd
 * without any buffer kept between calls.
 */
#ifndef UP_TESTLIB_H
#define UP_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <criterion/criterion.h>

/* The deadline used by up_test_request() and the socket timeouts that
 * up_test_connect() sets, in ms. */
#define UP_TEST_TIMEOUT_MS 5000

/* ---- time ---- */

/* CLOCK_MONOTONIC in ms: what every deadline of the tests counts in. */
long long up_test_now_ms(void);

/* Sleep ms (<= 0: not at all), resumed after a signal. For pacing and for
 * waiting past a moment; a state that can be observed is waited for with a
 * deadline instead. */
void up_test_nap(long ms);

/* Sleep until up_test_now_ms() reads at_ms (at once if it passed). */
void up_test_sleep_until(long long at_ms);

/* ---- processes ---- */

/* $UP_BUILD_DIR/name ("build/name" when unset): up_test_bin("up-worker"),
 * up_test_bin("examples/hello.so"). The string lives in a small ring of
 * static buffers: it stays valid for the next 15 calls, enough for an argv. */
const char *up_test_bin(const char *name);

/* The same file, copied (once per process) into a directory every user may
 * read and run from, with up-run, up-worker and up-exec beside it: for a
 * test that runs them as another user, who may not reach the build
 * directory (a checkout under /root). Removed when the process exits. */
const char *up_test_public_bin(const char *name);

/* A TCP port on 127.0.0.1 that nothing listens on right now. It is picked at
 * random below the kernel's ephemeral range (so that no client socket of a
 * parallel test holds it) and checked by binding it, then closed: another
 * process may still take it before the server binds it. With SO_REUSEPORT
 * that would even succeed silently, which is why the port is random rather
 * than the next free one. Returns the port or -errno. */
int up_test_free_port(void);

/* fork + exec argv[0] (a path) with argv, the test's environment plus
 * envp_extra ("NAME=value" strings, NULL-terminated, may be NULL; they
 * override variables of the same name). stdin is /dev/null; stdout and
 * stderr both go to stderr_path (created or truncated), or stay the test's
 * own when stderr_path is NULL. The child gets its own process group (so
 * up_test_stop() can kill whatever it starts), no fd above 2, default signal
 * dispositions and mask, and SIGKILL if the test process dies first.
 * Returns the pid once exec succeeded, or -errno (of open, fork or exec). */
pid_t up_test_spawn(char *const argv[], char *const envp_extra[], const char *stderr_path);

/* Wait until a connect() to 127.0.0.1:port succeeds (the connection is closed
 * at once). Returns 0 or -ETIMEDOUT. */
int up_test_wait_port(int port, int timeout_ms);

/* The same, but gives up as soon as pid exits: returns 0, -ECHILD if pid is
 * gone (not reaped: up_test_wait_exit() still gets its status), or
 * -ETIMEDOUT. */
int up_test_wait_ready(pid_t pid, int port, int timeout_ms);

/* Wait until the file at path contains needle. Returns 0 or -ETIMEDOUT. */
int up_test_wait_log(const char *path, const char *needle, int timeout_ms);

/* Whether the file at path contains needle now: 1, 0, or -errno. */
int up_test_file_contains(const char *path, const char *needle);

/* Wait for pid (a child of this process) to exit and reap it. Returns its
 * exit status: the exit code, or 128 + the signal number if a signal killed
 * it; -ETIMEDOUT if it still runs at the deadline, -ECHILD if it is not a
 * child or was already reaped. */
int up_test_wait_exit(pid_t pid, int timeout_ms);

/* Stop pid: SIGTERM, wait up to timeout_ms, then SIGKILL; in every case its
 * process group is killed afterwards, so nothing it started outlives it.
 * Returns the exit status as up_test_wait_exit() does when it exited by
 * itself, or -1 when it had to be killed or could not be waited for. */
int up_test_stop(pid_t pid, int timeout_ms);

/* 1 if pid still runs, 0 if it exited (it is not reaped). */
int up_test_alive(pid_t pid);

/* ---- a small HTTP/1.1 client ---- */

#define UP_TEST_MAX_HEADERS 64
#define UP_TEST_MAX_HEAD 8192

struct up_test_header {
    const char *name;  /* points into up_test_resp.fields */
    const char *value; /* without the surrounding blanks */
};

/* One response. Zero it before its first use (`struct up_test_resp r = {0};`);
 * after that it may be passed again, and up_test_resp_free() releases it. */
struct up_test_resp {
    /* Input, set by the caller before a read, and reset by the read: the
     * request was HEAD, so the response has no body whatever its headers say
     * (up_test_request() sets it itself for a HEAD request). */
    bool no_body;
    int minor;  /* 1 for "HTTP/1.1" */
    int status; /* 200 */
    /* The head exactly as received, status line to the empty line, with a
     * NUL after it: "HTTP/1.1 100 Continue\r\n\r\n". */
    char head[UP_TEST_MAX_HEAD];
    size_t head_len;
    /* The header lines, parsed. */
    char fields[UP_TEST_MAX_HEAD];
    struct up_test_header headers[UP_TEST_MAX_HEADERS];
    size_t n_headers;
    /* The body (decoded when chunked), NUL-terminated for strstr(), never
     * NULL after a successful read. Owned: freed by the next read into this
     * struct or by up_test_resp_free(). */
    char *body;
    size_t body_len;
    bool chunked;     /* the body came chunked */
    bool until_close; /* the body had no length and ended with the connection */
};

/* Connect to 127.0.0.1:port, blocking, with SO_RCVTIMEO and SO_SNDTIMEO of
 * UP_TEST_TIMEOUT_MS and TCP_NODELAY. Returns the fd (CLOEXEC; the caller
 * owns it) or -errno. */
int up_test_connect(int port);

/* Send all of buf (MSG_NOSIGNAL: a closed peer is -EPIPE, not SIGPIPE).
 * Returns 0 or -errno. */
int up_test_send_all(int fd, const void *buf, size_t len);

/* Read exactly one response from fd, waiting at most timeout_ms in all: the
 * head, then the body by Content-Length, chunked (decoded, trailers
 * skipped), or until EOF when it has neither. A 1xx, 204 or 304 response and
 * one with r->no_body set have no body. Returns 0, or -ETIMEDOUT, -EPIPE
 * (EOF before the response was complete), -ECONNRESET, -EPROTO (malformed),
 * -E2BIG (head over UP_TEST_MAX_HEAD), -ENOMEM. */
int up_test_read_response(int fd, struct up_test_resp *r, int timeout_ms);

/* The value of the first header named name (case-insensitive), or NULL. */
const char *up_test_resp_header(const struct up_test_resp *r, const char *name);

/* Free the body and zero the struct. */
void up_test_resp_free(struct up_test_resp *r);

/* Connect, send raw (a C string: whole requests, CRLFs included), read one
 * response with UP_TEST_TIMEOUT_MS, close. Returns 0 or -errno as above. */
int up_test_request(int port, const char *raw, struct up_test_resp *r);

/* Read until the peer closes, at most timeout_ms. Stores up to cap - 1 bytes
 * in buf with a NUL after them (more is read and dropped) and returns how
 * many bytes arrived in all. errno tells how it ended: 0 for a clean EOF
 * (FIN), ECONNRESET for a reset, ETIMEDOUT if the connection was still open
 * at the deadline, or another recv() error. */
int up_test_read_until_close(int fd, char *buf, size_t cap, int timeout_ms);

/* ---- back ends ---- */

/* Whether io_uring can be set up here: 0, or -errno with *ret_reason (may
 * be NULL) pointing to a static text saying why not. */
int up_test_io_uring_probe(const char **ret_reason);

/* Skip the running test when io_uring is unavailable; fail it instead when
 * UP_REQUIRE_IO_URING=1 (CI sets it to prove the io_uring path). */
void up_test_require_io_uring(void);

/*
 * BACKEND_TEST(suite, name, options...) { body using `backend` }
 *
 * defines two Criterion tests, suite/name_io_uring and suite/name_epoll, that
 * run the same body with backend = "io_uring" or "epoll"; the body starts its
 * server with UP_BACKEND=<backend>. The io_uring variant is skipped (or
 * failed, see up_test_require_io_uring()) where io_uring cannot be set up.
 */
#define BACKEND_TEST(suite, name, ...)                                                             \
    static void name##_body(const char *backend);                                                  \
    Test(suite, name##_io_uring, __VA_ARGS__)                                                      \
    {                                                                                              \
        up_test_require_io_uring();                                                                \
        name##_body("io_uring");                                                                   \
    }                                                                                              \
    Test(suite, name##_epoll, __VA_ARGS__)                                                         \
    {                                                                                              \
        name##_body("epoll");                                                                      \
    }                                                                                              \
    static void name##_body(const char *backend)

#endif

/* For a test that saturates the machine (a load storm): wait until no other
 * such test runs, then hold the right until this test process exits. Two
 * storms on a 2-core machine starve each other, and a request delayed for
 * seconds by the scheduler would look like a request the server lost (or a
 * worker's start like one that never got ready). Taken again, it returns at
 * once; ld_start() takes it, so every test that runs up-load holds it. */
void up_test_exclusive_load(void);

/* A field of /proc/pid/status in kB (field is "VmRSS:", "VmHWM:", ...), or
 * -1 if pid or the field is not there. */
long up_test_status_kib(pid_t pid, const char *field);

/* UP_TEST_LONG is set (not empty, not "0"): `make test-long` runs, and the
 * tests that take long or count high do their long version. */
bool up_test_long(void);

/* The binaries under test were built with SANITIZE=1 (the Makefile sets
 * UP_TEST_SANITIZED): memory figures then measure the sanitizer too. */
bool up_test_sanitized(void);

/* Remove a test's temp dir and everything in it, unless UP_TEST_KEEP is set
 * (to look at the logs after a failure). "" does nothing. */
void up_test_remove_dir(const char *dir);

/* The last 6 KiB of a file, NUL-terminated, for failure messages: a busy
 * log's news is at its end. Static buffer, overwritten by the next call. */
const char *up_test_file_tail(const char *path);

/* ---- another user ---- */

/* The uid and gid tests act as when they need "another user" of the
 * machine: nobody. */
#define UP_TEST_OTHER_UID 65534

/* Skip the running test unless it runs as root (only root can act as
 * another user, or chown a file to one). */
void up_test_require_root(void);

/* In a forked child of a test: drop every group and become
 * UP_TEST_OTHER_UID. Returns 0 or -errno. */
int up_test_become_other_user(void);
