/*
 * conns: see conns.h.
 */
#include "conns.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>

/* How long the rest of a response that began to arrive may take. */
#define HT_ANSWER_MS 2000

int ht_connect_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int ht_connect_bufs(int port, int rcvbuf, int sndbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(rcvbuf == 0 || setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
    cr_assert(sndbuf == 0 || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
    cr_assert_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect to %d: %s", port,
                 strerror(errno));
    return fd;
}

long ht_send_some(int fd, const char *buf, size_t len, size_t *sent)
{
    long went = 0;
    while (*sent < len) {
        ssize_t n = send(fd, buf + *sent, len - *sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            *sent += (size_t)n;
            went += n;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -errno;
        }
    }
    return went;
}

int ht_inq(int fd)
{
    int n = 0;
    cr_assert_eq(ioctl(fd, FIONREAD, &n), 0, "FIONREAD: %s", strerror(errno));
    return n;
}

pid_t ht_resp_pid(const struct up_test_resp *r)
{
    const char *pid = up_test_resp_header(r, "X-Up-Pid");
    cr_assert_not_null(pid, "no X-Up-Pid:\n%s", r->head);
    return (pid_t)atol(pid);
}

unsigned ht_resp_gen(const struct up_test_resp *r)
{
    const char *gen = up_test_resp_header(r, "X-Up-Generation");
    cr_assert_not_null(gen, "no X-Up-Generation:\n%s", r->head);
    return (unsigned)strtoul(gen, NULL, 10);
}

bool ht_pid_in(pid_t pid, const pid_t *set, int n)
{
    for (int i = 0; i < n; i++) {
        if (set[i] == pid) {
            return true;
        }
    }
    return false;
}

void ht_read_answer(int fd, struct ht_answer *a, long long t0, int timeout_ms)
{
    struct up_test_resp r = {0};
    a->ret = up_test_read_response(fd, &r, timeout_ms);
    a->status = a->ret == 0 ? r.status : -1;
    const char *pid = a->ret == 0 ? up_test_resp_header(&r, "X-Up-Pid") : NULL;
    a->pid = pid != NULL ? (pid_t)atol(pid) : 0;
    a->at = up_test_now_ms() - t0;
    a->done = true;
    up_test_resp_free(&r);
}

/* The end of fd, which must come with no byte before it. */
static void ht_read_close(int fd, struct ht_answer *a, long long t0)
{
    char c;
    ssize_t got = recv(fd, &c, 1, MSG_DONTWAIT);
    if (got == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    a->ret = got == 0 ? 0 : got > 0 ? -EPROTO : -errno;
    a->status = -1;
    a->at = up_test_now_ms() - t0;
    a->done = true;
}

/* Poll the fds whose answers are not done for up to timeout_ms, and end
 * each that is readable with one of the two readers. */
static int ht_collect_with(const int *fds, int n, struct ht_answer *a, long long t0, int timeout_ms,
                           bool closed)
{
    struct pollfd *p = calloc((size_t)n, sizeof(*p));
    long long deadline = up_test_now_ms() + timeout_ms;
    int done = 0;

    cr_assert_not_null(p);
    for (int i = 0; i < n; i++) {
        done += a[i].done;
    }
    for (long long left = timeout_ms; done < n && left > 0; left = deadline - up_test_now_ms()) {
        for (int i = 0; i < n; i++) {
            p[i] = (struct pollfd){.fd = a[i].done ? -1 : fds[i], .events = POLLIN};
        }
        int ready = poll(p, (nfds_t)n, left < 50 ? (int)left : 50);
        cr_assert(ready >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        for (int i = 0; i < n && ready > 0; i++) {
            if (p[i].fd < 0 || p[i].revents == 0) {
                continue;
            }
            ready--;
            if (closed) {
                ht_read_close(fds[i], &a[i], t0);
            } else {
                ht_read_answer(fds[i], &a[i], t0, HT_ANSWER_MS);
            }
            done += a[i].done;
        }
    }
    free(p);
    return done;
}

int ht_collect(const int *fds, int n, struct ht_answer *a, long long t0, int timeout_ms)
{
    return ht_collect_with(fds, n, a, t0, timeout_ms, false);
}

int ht_collect_closed(const int *fds, int n, struct ht_answer *a, long long t0, int timeout_ms)
{
    return ht_collect_with(fds, n, a, t0, timeout_ms, true);
}
