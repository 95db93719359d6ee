/*
 * testlib: see testlib.h.
 */
#include "testlib.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <sys/file.h>
#include <limits.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- time ---- */

static int64_t tl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline, 0 once it passed. */
static int tl_left(int64_t deadline)
{
    int64_t left = deadline - tl_now_ms();
    return left > 0 ? (int)(left > INT_MAX ? INT_MAX : left) : 0;
}

/* The short pause of the loops that poll for a state no fd can signal (a
 * port that starts listening, a line in a log). */
static void tl_nap(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 5 * 1000000};
    nanosleep(&ts, NULL);
}

long long up_test_now_ms(void)
{
    return (long long)tl_now_ms();
}

void up_test_nap(long ms)
{
    struct timespec ts = {.tv_sec = ms > 0 ? ms / 1000 : 0,
                          .tv_nsec = ms > 0 ? (ms % 1000) * 1000000 : 0};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

void up_test_sleep_until(long long at_ms)
{
    long long left = at_ms - up_test_now_ms();
    if (left > 0) {
        up_test_nap((long)left);
    }
}

/* ---- processes ---- */

const char *up_test_bin(const char *name)
{
    static char ring[16][PATH_MAX];
    static unsigned next;
    const char *dir = getenv("UP_BUILD_DIR");
    char *buf = ring[next++ % 16];

    snprintf(buf, PATH_MAX, "%s/%s", dir != NULL && *dir != '\0' ? dir : "build", name);
    return buf;
}

static char public_dir[64];

static void public_dir_remove(void)
{
    if (public_dir[0] != '\0') {
        up_test_remove_dir(public_dir);
    }
}

/* Copy build/name to public_dir/base(name), readable and runnable by all. */
static void public_copy(const char *name)
{
    const char *base = strrchr(name, '/') != NULL ? strrchr(name, '/') + 1 : name;
    char to[PATH_MAX], cmd[2 * PATH_MAX + 32];
    snprintf(to, sizeof(to), "%s/%s", public_dir, base);
    if (access(to, F_OK) == 0) {
        return;
    }
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s'", up_test_bin(name), to, to);
    if (system(cmd) != 0) {
        fprintf(stderr, "up-tests: cannot copy %s to %s\n", up_test_bin(name), to);
        abort();
    }
}

const char *up_test_public_bin(const char *name)
{
    if (public_dir[0] == '\0') {
        snprintf(public_dir, sizeof(public_dir), "/tmp/up-test-pub.XXXXXX");
        if (mkdtemp(public_dir) == NULL || chmod(public_dir, 0755) < 0) {
            fprintf(stderr, "up-tests: cannot make %s: %s\n", public_dir, strerror(errno));
            abort();
        }
        atexit(public_dir_remove);
        public_copy("up-run");
        public_copy("up-worker");
        public_copy("up-exec");
    }
    public_copy(name);
    static char ring[8][PATH_MAX];
    static unsigned next;
    char *buf = ring[next++ % 8];
    const char *base = strrchr(name, '/') != NULL ? strrchr(name, '/') + 1 : name;
    snprintf(buf, PATH_MAX, "%s/%s", public_dir, base);
    return buf;
}

/* Bind 127.0.0.1:port (0: any) without SO_REUSEPORT: this fails while any
 * socket, a SO_REUSEPORT listener included, holds the port. Returns the port
 * bound or -errno; the socket is closed either way. */
static int tl_try_port(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ret;

    if (fd == -1) {
        return -errno;
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) == -1) {
        ret = -errno;
    } else {
        ret = ntohs(sa.sin_port);
    }
    close(fd);
    return ret;
}

/* Claim port for this test process: a lock file held until the process
 * exits. The servers under test bind with SO_REUSEPORT, so two tests that
 * drew the same port would both bind it and silently share its traffic;
 * the bind check alone cannot see a port another test drew but has not
 * bound yet. Returns true if the port is ours. */
static bool tl_claim_port(int port)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/up-test-port-%d.lock", port);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return true; /* no lock possible: the bind check still applies */
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return false;
    }
    return true; /* fd never closed: the claim ends with the process */
}

int up_test_free_port(void)
{
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    /* Two calls in the same millisecond must not draw the same port. */
    static unsigned calls;
    unsigned seed = (unsigned)getpid() ^ (unsigned)tl_now_ms() ^ (++calls * 2654435761u);

    if (f != NULL) {
        if (fscanf(f, "%d", &low) != 1) {
            low = 32768;
        }
        fclose(f);
    }
    /* Below the ephemeral range no connect() picks the port as its local
     * end, so only another test's random pick can collide with ours. */
    for (int i = 0; i < 64 && low > 11000; i++) {
        int port = 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000));
        if (tl_claim_port(port) && tl_try_port(port) == port) {
            return port;
        }
    }
    return tl_try_port(0);
}

/* The environment for the child: ours without the names extra sets, then
 * extra. Built before fork, since the child may only call async-signal-safe
 * functions. Returns a malloc'd array (the strings are borrowed) or NULL. */
static char **tl_env(char *const extra[])
{
    size_t n = 0;
    size_t n_extra = 0;
    size_t k = 0;
    char **env;

    while (environ[n] != NULL) {
        n++;
    }
    while (extra != NULL && extra[n_extra] != NULL) {
        n_extra++;
    }
    env = calloc(n + n_extra + 1, sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < n_extra && !overridden; j++) {
            size_t len = strcspn(extra[j], "=");
            overridden = strncmp(environ[i], extra[j], len) == 0 && environ[i][len] == '=';
        }
        if (!overridden) {
            env[k++] = environ[i];
        }
    }
    for (size_t j = 0; j < n_extra; j++) {
        env[k++] = extra[j];
    }
    return env;
}

/* In the child, between fork and exec: only async-signal-safe calls. Any
 * failure is written to err_fd (CLOEXEC, so a successful exec closes it and
 * the parent reads EOF). */
static void tl_child(char *const argv[], char **env, int out_fd, int err_fd, pid_t parent)
{
    sigset_t none;
    int e;
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    setpgid(0, 0);
    /* Survive no test process that dies (a timeout, a crash); the getppid()
     * check closes the race with a parent that died before the prctl. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            signal(sig, SIG_DFL);
        }
    }
    if (null_fd >= 0) {
        dup2(null_fd, 0);
    }
    if (out_fd >= 0) {
        dup2(out_fd, 1);
        dup2(out_fd, 2);
    }
    /* A worker inherits exactly 0-2: whatever else the test runner left
     * open is closed by the exec, err_fd included. */
    if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == -1) {
        for (int fd = 3; fd < 1024; fd++) {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    execve(argv[0], argv, env);
    e = errno;
    if (write(err_fd, &e, sizeof(e)) < 0) {
        /* Nothing left to tell anyone. */
    }
    _exit(127);
}

pid_t up_test_spawn(char *const argv[], char *const envp_extra[], const char *stderr_path)
{
    int out_fd = -1;
    int pipe_fd[2] = {-1, -1};
    char **env = tl_env(envp_extra);
    pid_t parent = getpid();
    pid_t pid = -ENOMEM;
    int e = 0;

    if (env == NULL) {
        goto fail;
    }
    if (stderr_path != NULL) {
        out_fd = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (out_fd == -1) {
            pid = -errno;
            goto fail;
        }
    }
    if (pipe2(pipe_fd, O_CLOEXEC) == -1) {
        pid = -errno;
        goto fail;
    }
    pid = fork();
    if (pid == -1) {
        pid = -errno;
        goto fail;
    }
    if (pid == 0) {
        tl_child(argv, env, out_fd, pipe_fd[1], parent);
    }
    /* Also from this side: whichever runs first, the group exists before
     * anyone signals it. EACCES once the child exec'd is fine. */
    setpgid(pid, pid);
    close(pipe_fd[1]);
    pipe_fd[1] = -1;
    if (read(pipe_fd[0], &e, sizeof(e)) == sizeof(e)) {
        waitpid(pid, NULL, 0);
        pid = -e;
    }
fail:
    if (pipe_fd[0] >= 0) {
        close(pipe_fd[0]);
    }
    if (pipe_fd[1] >= 0) {
        close(pipe_fd[1]);
    }
    if (out_fd >= 0) {
        close(out_fd);
    }
    free(env);
    return pid;
}

/* One connect() attempt to 127.0.0.1:port: 0 if it was accepted. */
static int tl_probe_port(int port)
{
    int fd = up_test_connect(port);
    if (fd < 0) {
        return fd;
    }
    close(fd);
    return 0;
}

int up_test_wait_port(int port, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    for (;;) {
        if (tl_probe_port(port) == 0) {
            return 0;
        }
        if (tl_left(deadline) == 0) {
            return -ETIMEDOUT;
        }
        tl_nap();
    }
}

int up_test_wait_ready(pid_t pid, int port, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    for (;;) {
        if (tl_probe_port(port) == 0) {
            return 0;
        }
        if (!up_test_alive(pid)) {
            return -ECHILD;
        }
        if (tl_left(deadline) == 0) {
            return -ETIMEDOUT;
        }
        tl_nap();
    }
}

int up_test_file_contains(const char *path, const char *needle)
{
    char buf[65536];
    size_t len = 0;
    size_t nlen = strlen(needle);
    int found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd == -1) {
        return -errno;
    }
    /* Read in windows that overlap by nlen - 1 bytes, so that a needle
     * across a window boundary is still found. */
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (memmem(buf, len, needle, nlen) != NULL) {
            found = 1;
            break;
        }
        if (len >= nlen && nlen > 0) {
            memmove(buf, buf + len - (nlen - 1), nlen - 1);
            len = nlen - 1;
        }
    }
    close(fd);
    return found;
}

int up_test_wait_log(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    for (;;) {
        if (up_test_file_contains(path, needle) == 1) {
            return 0;
        }
        if (tl_left(deadline) == 0) {
            return -ETIMEDOUT;
        }
        tl_nap();
    }
}

static int tl_status(int status)
{
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

int up_test_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    /* A pidfd turns "the child exited" into POLLIN, so this waits without
     * polling; without pidfd_open (Linux < 5.3) it naps between checks. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int status;

    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) {
            if (pidfd >= 0) {
                close(pidfd);
            }
            return tl_status(status);
        }
        if (got == -1 || tl_left(deadline) == 0) {
            int ret = got == -1 ? -errno : -ETIMEDOUT;
            if (pidfd >= 0) {
                close(pidfd);
            }
            return ret;
        }
        if (pidfd >= 0) {
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            poll(&p, 1, tl_left(deadline));
        } else {
            tl_nap();
        }
    }
}

int up_test_stop(pid_t pid, int timeout_ms)
{
    int ret;

    if (pid <= 0) {
        return -1;
    }
    kill(pid, SIGTERM);
    ret = up_test_wait_exit(pid, timeout_ms);
    if (ret == -ETIMEDOUT) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        ret = -1;
    } else if (ret < 0) {
        ret = -1;
    }
    /* The group outlives its leader while a member lives, and its id cannot
     * be reused meanwhile, so this reaches only what pid started. */
    kill(-pid, SIGKILL);
    return ret;
}

int up_test_alive(pid_t pid)
{
    siginfo_t info = {0};
    /* WNOWAIT: look without reaping, so that the status stays for
     * up_test_wait_exit() or up_test_stop(). */
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == -1) {
        return 0;
    }
    return info.si_pid == 0;
}

/* ---- the HTTP client: reading exactly what belongs to one response ---- */

/* Wait until fd is readable or the deadline passed, then recv() once. Returns
 * the byte count (0 at EOF) or -errno. */
static ssize_t tl_recv(int fd, void *buf, size_t len, int flags, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int n = poll(&p, 1, tl_left(deadline));
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1) {
            return -errno;
        }
        if (n == 0) {
            return -ETIMEDOUT;
        }
        ssize_t got = recv(fd, buf, len, flags | MSG_DONTWAIT);
        if (got >= 0) {
            return got;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
    }
}

/* Read exactly len bytes. Returns 0, -EPIPE at an early EOF, or -errno. */
static int tl_recv_exact(int fd, char *buf, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = tl_recv(fd, buf, len, 0, deadline);
        if (n <= 0) {
            return n == 0 ? -EPIPE : (int)n;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Append to buf[*len] up to and including the first delim, and not one byte
 * more: peek at what arrived, then consume only up to the delimiter, so
 * that the next pipelined response stays in the socket. A NUL follows the
 * result. Returns 0, -E2BIG if cap is too small, -EPIPE, or -errno. */
static int tl_recv_until(int fd, char *buf, size_t cap, size_t *len, const char *delim,
                         int64_t deadline)
{
    size_t dlen = strlen(delim);
    for (;;) {
        if (*len + 1 >= cap) {
            return -E2BIG;
        }
        ssize_t n = tl_recv(fd, buf + *len, cap - 1 - *len, MSG_PEEK, deadline);
        if (n <= 0) {
            return n == 0 ? -EPIPE : (int)n;
        }
        size_t from = *len >= dlen ? *len - (dlen - 1) : 0;
        char *hit = memmem(buf + from, *len + (size_t)n - from, delim, dlen);
        size_t take = hit != NULL ? (size_t)(hit + dlen - (buf + *len)) : (size_t)n;
        /* The bytes were peeked, so they are queued: this does not wait. */
        int ret = tl_recv_exact(fd, buf + *len, take, deadline);
        if (ret < 0) {
            return ret;
        }
        *len += take;
        buf[*len] = '\0';
        if (hit != NULL) {
            return 0;
        }
    }
}

/* Append len bytes to r->body, keeping a NUL after them. */
static int tl_body_grow(struct up_test_resp *r, size_t len, size_t *cap)
{
    if (r->body_len + len + 1 > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < r->body_len + len + 1) {
            ncap *= 2;
        }
        char *b = realloc(r->body, ncap);
        if (b == NULL) {
            return -ENOMEM;
        }
        r->body = b;
        *cap = ncap;
    }
    return 0;
}

static int tl_body_exact(int fd, struct up_test_resp *r, size_t len, size_t *cap, int64_t deadline)
{
    int ret = tl_body_grow(r, len, cap);
    if (ret == 0) {
        ret = tl_recv_exact(fd, r->body + r->body_len, len, deadline);
    }
    if (ret == 0) {
        r->body_len += len;
        r->body[r->body_len] = '\0';
    }
    return ret;
}

static int tl_body_chunked(int fd, struct up_test_resp *r, size_t *cap, int64_t deadline)
{
    char line[1024];
    for (;;) {
        size_t len = 0;
        char *end;
        int ret = tl_recv_until(fd, line, sizeof(line), &len, "\r\n", deadline);
        if (ret < 0) {
            return ret;
        }
        unsigned long size = strtoul(line, &end, 16);
        if (end == line || (*end != '\r' && *end != ';' && *end != ' ')) {
            return -EPROTO;
        }
        if (size == 0) {
            break;
        }
        ret = tl_body_exact(fd, r, size, cap, deadline);
        len = 0;
        if (ret == 0) {
            ret = tl_recv_until(fd, line, sizeof(line), &len, "\r\n", deadline);
        }
        if (ret < 0) {
            return ret;
        }
        if (len != 2) {
            return -EPROTO;
        }
    }
    /* Trailers, up to the empty line that ends the message. */
    for (;;) {
        size_t len = 0;
        int ret = tl_recv_until(fd, line, sizeof(line), &len, "\r\n", deadline);
        if (ret < 0 || len == 2) {
            return ret;
        }
    }
}

static int tl_body_until_close(int fd, struct up_test_resp *r, size_t *cap, int64_t deadline)
{
    r->until_close = true;
    for (;;) {
        int ret = tl_body_grow(r, 16384, cap);
        if (ret < 0) {
            return ret;
        }
        ssize_t n = tl_recv(fd, r->body + r->body_len, 16384, 0, deadline);
        if (n < 0) {
            return (int)n;
        }
        if (n == 0) {
            return 0;
        }
        r->body_len += (size_t)n;
        r->body[r->body_len] = '\0';
    }
}

/* Parse the status line and the header lines of r->head into r. */
static int tl_parse_head(struct up_test_resp *r)
{
    char *line;
    char *save = NULL;
    char *end;

    if (strncmp(r->head, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)r->head[7]) ||
        r->head[8] != ' ') {
        return -EPROTO;
    }
    r->minor = r->head[7] - '0';
    r->status = (int)strtol(r->head + 9, &end, 10);
    if (end != r->head + 12 || r->status < 100 || r->status > 999) {
        return -EPROTO;
    }
    memcpy(r->fields, r->head, r->head_len + 1);
    strtok_r(r->fields, "\r\n", &save); /* the status line */
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        char *value;
        if (colon == NULL || r->n_headers == UP_TEST_MAX_HEADERS) {
            return -EPROTO;
        }
        *colon = '\0';
        value = colon + 1;
        value += strspn(value, " \t");
        for (char *t = value + strlen(value); t > value && (t[-1] == ' ' || t[-1] == '\t');) {
            *--t = '\0';
        }
        r->headers[r->n_headers].name = line;
        r->headers[r->n_headers].value = value;
        r->n_headers++;
    }
    return 0;
}

static int tl_read_body(int fd, struct up_test_resp *r, bool no_body, int64_t deadline)
{
    size_t cap = 0;
    const char *te = up_test_resp_header(r, "Transfer-Encoding");
    const char *cl = up_test_resp_header(r, "Content-Length");
    int ret = tl_body_grow(r, 0, &cap);

    if (ret < 0) {
        return ret;
    }
    r->body[0] = '\0';
    if (no_body || r->status < 200 || r->status == 204 || r->status == 304) {
        return 0;
    }
    if (te != NULL && strcasestr(te, "chunked") != NULL) {
        r->chunked = true;
        return tl_body_chunked(fd, r, &cap, deadline);
    }
    if (cl != NULL) {
        char *end;
        unsigned long long len = strtoull(cl, &end, 10);
        if (end == cl || *end != '\0' || len > SIZE_MAX / 2) {
            return -EPROTO;
        }
        return tl_body_exact(fd, r, (size_t)len, &cap, deadline);
    }
    return tl_body_until_close(fd, r, &cap, deadline);
}

int up_test_read_response(int fd, struct up_test_resp *r, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    bool no_body = r->no_body;
    int ret;

    /* Everything but the two big buffers, which are overwritten anyway. */
    free(r->body);
    memset(r, 0, offsetof(struct up_test_resp, head));
    r->head_len = 0;
    r->n_headers = 0;
    r->body = NULL;
    r->body_len = 0;
    r->chunked = false;
    r->until_close = false;
    ret = tl_recv_until(fd, r->head, sizeof(r->head), &r->head_len, "\r\n\r\n", deadline);
    if (ret == 0) {
        ret = tl_parse_head(r);
    }
    if (ret == 0) {
        ret = tl_read_body(fd, r, no_body, deadline);
    }
    return ret;
}

const char *up_test_resp_header(const struct up_test_resp *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            return r->headers[i].value;
        }
    }
    return NULL;
}

void up_test_resp_free(struct up_test_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* A connect() cut short (EINTR: with a send timeout set, the kernel does
 * not restart it after a stop or a signal; EINPROGRESS: the timeout ran
 * out) goes on in the background: wait for it like a non-blocking one.
 * Returns 0 or the errno it ended with. */
static int connect_finish(int fd, int timeout_ms)
{
    long long deadline = up_test_now_ms() + timeout_ms;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do {
        r = poll(&p, 1, (int)(deadline - up_test_now_ms()));
    } while (r == -1 && errno == EINTR && up_test_now_ms() < deadline);
    if (r <= 0) {
        return r == 0 ? ETIMEDOUT : errno;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) {
        return errno;
    }
    return err;
}

int up_test_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = UP_TEST_TIMEOUT_MS / 1000,
                         .tv_usec = (UP_TEST_TIMEOUT_MS % 1000) * 1000};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd == -1) {
        return -errno;
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The timeouts bound a blocking connect() and send(); reads wait in
     * poll() with their own deadline. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        int e = errno;
        if (e == EINTR || e == EINPROGRESS) {
            e = connect_finish(fd, UP_TEST_TIMEOUT_MS);
        }
        if (e != 0) {
            close(fd);
            return -e;
        }
    }
    return fd;
}

int up_test_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1) {
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int up_test_request(int port, const char *raw, struct up_test_resp *r)
{
    int fd = up_test_connect(port);
    int ret;

    if (fd < 0) {
        return fd;
    }
    r->no_body = strncmp(raw, "HEAD ", 5) == 0;
    ret = up_test_send_all(fd, raw, strlen(raw));
    if (ret == 0) {
        ret = up_test_read_response(fd, r, UP_TEST_TIMEOUT_MS);
    }
    close(fd);
    return ret;
}

int up_test_read_until_close(int fd, char *buf, size_t cap, int timeout_ms)
{
    int64_t deadline = tl_now_ms() + timeout_ms;
    char scratch[4096];
    size_t stored = 0;
    size_t total = 0;

    for (;;) {
        bool room = stored + 1 < cap;
        ssize_t n = room ? tl_recv(fd, buf + stored, cap - 1 - stored, 0, deadline)
                         : tl_recv(fd, scratch, sizeof(scratch), 0, deadline);
        if (n <= 0) {
            if (cap > 0) {
                buf[stored] = '\0';
            }
            errno = n == 0 ? 0 : (int)-n;
            return total > INT_MAX ? INT_MAX : (int)total;
        }
        if (room) {
            stored += (size_t)n;
        }
        total += (size_t)n;
    }
}

/* ---- back ends ---- */

int up_test_io_uring_probe(const char **ret_reason)
{
    struct io_uring ring;
    int ret = io_uring_queue_init(8, &ring, 0);

    if (ret < 0) {
        if (ret_reason != NULL) {
            *ret_reason = ret == -ENOSYS   ? "io_uring_setup: ENOSYS (kernel without io_uring)"
                          : ret == -EPERM  ? "io_uring_setup: EPERM (io_uring_disabled or seccomp)"
                          : ret == -EINVAL ? "io_uring_setup: EINVAL"
                                           : "io_uring_setup failed";
        }
        return ret;
    }
    io_uring_queue_exit(&ring);
    return 0;
}

void up_test_require_io_uring(void)
{
    const char *reason = NULL;
    const char *require = getenv("UP_REQUIRE_IO_URING");

    if (up_test_io_uring_probe(&reason) == 0) {
        return;
    }
    if (require != NULL && strcmp(require, "1") == 0) {
        cr_assert_fail("io_uring unavailable: %s (and UP_REQUIRE_IO_URING=1)", reason);
    }
    cr_skip_test("io_uring unavailable: %s", reason);
}

void up_test_exclusive_load(void)
{
    static bool held; /* a second open's flock would wait for our own */
    if (held) {
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "/tmp/up-tests-load-%d.lock", (int)getuid());
    /* Never closed: the lock ends with this test's process. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        while (flock(fd, LOCK_EX) < 0 && errno == EINTR) {
        }
        held = true;
    }
}

long up_test_status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    long v = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field), NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

bool up_test_long(void)
{
    const char *v = getenv("UP_TEST_LONG");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

bool up_test_sanitized(void)
{
    const char *v = getenv("UP_TEST_SANITIZED");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static int tl_rm(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

void up_test_remove_dir(const char *dir)
{
    if (dir[0] != '\0' && getenv("UP_TEST_KEEP") == NULL) {
        nftw(dir, tl_rm, 8, FTW_DEPTH | FTW_PHYS);
    }
}

const char *up_test_file_tail(const char *path)
{
    static char buf[6144];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, from) : -1;

    buf[n > 0 ? n : 0] = '\0';
    if (fd >= 0) {
        close(fd);
    }
    return buf;
}

void up_test_require_root(void)
{
    if (geteuid() != 0) {
        cr_skip_test("acting as another user needs root");
    }
}

int up_test_become_other_user(void)
{
    gid_t gid = UP_TEST_OTHER_UID;
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(UP_TEST_OTHER_UID) < 0) {
        return -errno;
    }
    return 0;
}
