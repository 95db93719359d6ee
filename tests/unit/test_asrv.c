/*
 * asrv, alone: answers now or later by the request's id; a client that
 * leaves while it waits is freed, and a late reply to it finds nobody.
 */
#include <criterion/criterion.h>

#include "../lib/fdcount.h"
#include "../lib/testloop.h"
#include "asrv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct at {
    uint64_t ids[4];
    int asked;
};

static bool line(const char *buf, size_t len)
{
    return memchr(buf, '\n', len) != NULL;
}

static size_t answer(void *ctx, uint64_t id, char *buf, size_t len, size_t cap)
{
    struct at *t = ctx;
    (void)len;
    t->ids[t->asked++ % 4] = id;
    if (strncmp(buf, "now", 3) == 0) {
        return (size_t)snprintf(buf, cap, "here\n");
    }
    return UP_ASRV_LATER;
}

static int at_connect(const char *path, const char *req)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void run(struct up_loop *loop, int ms)
{
    int none = 0;
    up_test_run_for(loop, ms, &none, -1);
}

static void later_or_gone(enum up_backend be)
{
    int before = up_test_fd_count();
    struct up_loop *loop = up_test_new_loop(be);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/up-test-asrv-%d.sock", (int)getpid());
    unlink(path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 8), 0);
    struct at t = {0};
    struct up_asrv *s = NULL;
    cr_assert_eq(up_asrv_open_take(loop, l, true, line, answer, &t, &s), 0);

    int now = at_connect(path, "now\n");
    int waits = at_connect(path, "later\n");
    int leaves = at_connect(path, "later\n");
    run(loop, 100);
    cr_assert_eq(t.asked, 3);
    char buf[64] = "";
    cr_assert_eq(read(now, buf, sizeof(buf)), 5);
    cr_assert_eq(memcmp(buf, "here\n", 5), 0);

    /* The leaver hangs up while it waits: freed, a reply finds nobody. */
    close(leaves);
    run(loop, 100);
    cr_assert_eq(up_asrv_reply(s, t.ids[2], "late\n", 5), -ENOENT);
    cr_assert_eq(up_asrv_reply(s, t.ids[0], "again\n", 6), -ENOENT, "answered already");
    cr_assert_eq(up_asrv_reply(s, t.ids[1], "outcome\n", 8), 0);
    run(loop, 100);
    cr_assert_eq(read(waits, buf, sizeof(buf)), 8);
    cr_assert_eq(memcmp(buf, "outcome\n", 8), 0);
    cr_assert_eq(read(waits, buf, sizeof(buf)), 0, "not closed after the answer");

    close(now);
    close(waits);
    up_asrv_close(s);
    up_loop_free(loop);
    unlink(path);
    cr_assert_eq(up_test_fd_count(), before, "fds leaked");
}

Test(asrv, later_or_gone_epoll, .timeout = 20)
{
    later_or_gone(UP_BACKEND_EPOLL);
}

Test(asrv, later_or_gone_io_uring, .timeout = 20)
{
    later_or_gone(UP_BACKEND_URING);
}
