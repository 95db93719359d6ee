#include "testloop.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fd.h"
#include "testlib.h"

static struct up_loop *new_loop(enum up_backend be, bool one_thread)
{
    struct up_loop *loop = NULL;
    const char *why = NULL;
    int r =
        one_thread ? up_loop_new_one_thread(be, 64, &loop, &why) : up_loop_new(be, 64, &loop, &why);
    if (r < 0 && be == UP_BACKEND_URING && getenv("UP_REQUIRE_IO_URING") == NULL) {
        cr_skip_test("io_uring unavailable: %s", why ? why : strerror(-r));
    }
    cr_assert_eq(r, 0, "up_loop_new: %s", strerror(-r));
    cr_assert_eq(up_loop_backend(loop), be);
    return loop;
}

struct up_loop *up_test_new_loop(enum up_backend be)
{
    return new_loop(be, false);
}

struct up_loop *up_test_new_loop_one_thread(enum up_backend be)
{
    return new_loop(be, true);
}

static void tick(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    (void)t;
}

void up_test_run_for(struct up_loop *loop, int ms, const int *count, int want)
{
    long long end = up_test_now_ms() + ms;
    struct up_timer t = {.cb = tick};
    while (up_test_now_ms() < end && (want < 0 || *count < want)) {
        up_timer_start(loop, &t, 10);
        cr_assert_eq(up_loop_run_once(loop), 0);
    }
    up_timer_stop(loop, &t);
}

int up_test_listener(int *ret_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 64), 0);
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *ret_port = ntohs(a.sin_port);
    return fd;
}

int up_test_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

void up_test_pair(bool tcp, int sv[2])
{
    if (!tcp) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    } else {
        int port = 0;
        int l = up_test_listener(&port);
        sv[1] = up_test_dial(port);
        do {
            sv[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        } while (sv[0] < 0 && errno == EAGAIN);
        cr_assert_geq(sv[0], 0);
        close(l);
    }
    cr_assert_eq(up_fd_set_nonblock(sv[0], 1), 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

int up_test_read_all(int fd, char *buf, int cap)
{
    int n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, (size_t)(cap - 1 - n), 0);
        if (r <= 0 || n + r >= cap - 1) {
            n += r > 0 ? (int)r : 0;
            break;
        }
        n += (int)r;
    }
    buf[n] = '\0';
    return n;
}
