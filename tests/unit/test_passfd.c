/*
 * passfd: the wire protocol between master and workers. Every test that moves
 * fds counts /proc/self/fd before and after: a refused message must close
 * every fd that came with it, and an accepted one hands exactly one over.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "passfd.h"

/* A pipe whose read end tells whether any write end is still open anywhere in
 * this process: read() returns 0 (EOF) only once every writer is closed. */
static void make_pipe(int fds[2])
{
    cr_assert_eq(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0, "pipe2: %s", strerror(errno));
}

static void assert_no_writer(int rfd)
{
    char c;
    cr_assert_eq(read(rfd, &c, 1), 0, "a write end of the pipe is still open (leaked fd)");
}

static void make_pair(int sv[2])
{
    cr_assert_eq(up_passfd_pair(sv), 0);
}

static void close_all(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        close(fds[i]);
    }
}

/* Send what up_passfd_prep() built, after the test has corrupted it. */
static void send_out(int sock, struct up_passfd_out *out)
{
    cr_assert_geq(sendmsg(sock, &out->msg, MSG_NOSIGNAL), 0, "sendmsg: %s", strerror(errno));
}

/* Send hdr with the write end of a fresh pipe attached, let the test corrupt
 * the header first, then expect recv to fail with want and the fd closed. */
static void expect_refused(void (*corrupt)(struct up_msg *), int want)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    struct up_passfd_out out;
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_prep(&out, &hdr, "abc", 3, p[1]), 0);
    corrupt(&out.hdr);
    send_out(sv[0], &out);
    close(p[1]);

    struct up_msg got;
    char buf[16];
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, buf, sizeof(buf), &fd, 0), want);
    cr_assert_eq(fd, 12345, "ret_fd must be untouched on failure");
    assert_no_writer(p[0]);
    close_all(sv, 2);
    close(p[0]);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, round_trip_carries_fd_header_and_payload, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    hdr.conn_id = 42;
    hdr.arg = 0x1122334455667788ull;
    hdr.arg2 = 17;
    hdr.flags = 4;
    cr_assert_eq(up_passfd_send(sv[0], &hdr, "GET / HTTP/1.1\r\n", 16, p[1], 0), 0);

    struct up_msg got;
    char buf[64];
    int fd = -1;
    cr_assert_eq(up_passfd_recv(sv[1], &got, buf, sizeof(buf), &fd, 0), 16);
    cr_assert_geq(fd, 0);
    cr_assert_neq(fd, p[1], "a new fd number is expected while the old one is open");
    cr_assert_eq(got.kind, UP_MSG_CONN);
    cr_assert_eq(got.magic, UP_PASSFD_MAGIC);
    cr_assert_eq(got.version, UP_PASSFD_VERSION);
    cr_assert_eq(got.payload_len, 16);
    cr_assert_eq(got.conn_id, 42);
    cr_assert_eq(got.arg, 0x1122334455667788ull);
    cr_assert_eq(got.arg2, 17);
    cr_assert_eq(got.flags, 4);
    cr_assert_eq(memcmp(buf, "GET / HTTP/1.1\r\n", 16), 0);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC, "received fd must be CLOEXEC");

    close(fd);
    close_all(sv, 2);
    close_all(p, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, received_fd_is_usable, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, NULL, 0, p[1], 0), 0);
    /* The sender keeps its own reference (borrowed): drop it, so that the
     * only write end left is the one that travelled. */
    close(p[1]);

    struct up_msg got;
    int fd = -1;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), 0);
    cr_assert_eq(write(fd, "hello", 5), 5);
    char buf[8];
    cr_assert_eq(read(p[0], buf, sizeof(buf)), 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    close(fd);
    assert_no_writer(p[0]);

    close(p[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, no_fd_gives_minus_one, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_FAIL);
    cr_assert_eq(up_passfd_send(sv[1], &hdr, "no symbol up_app", 16, -1, 0), 0);

    struct up_msg got;
    char buf[32];
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[0], &got, buf, sizeof(buf), &fd, 0), 16);
    cr_assert_eq(fd, -1);
    cr_assert_eq(got.kind, UP_MSG_FAIL);
    cr_assert_eq(memcmp(buf, "no symbol up_app", 16), 0);

    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

static void bad_magic(struct up_msg *hdr)
{
    hdr->magic = 0xdead;
}

static void other_version(struct up_msg *hdr)
{
    hdr->version = UP_PASSFD_VERSION + 1;
}

static void wrong_payload_len(struct up_msg *hdr)
{
    hdr->payload_len += 1;
}

static void unknown_kind(struct up_msg *hdr)
{
    hdr->kind = 200;
}

Test(passfd, bad_magic_is_eproto_and_closes_fd, .timeout = 10)
{
    expect_refused(bad_magic, -EPROTO);
}

Test(passfd, other_version_is_eprotonosupport_and_closes_fd, .timeout = 10)
{
    expect_refused(other_version, -EPROTONOSUPPORT);
}

Test(passfd, payload_len_mismatch_is_eproto_and_closes_fd, .timeout = 10)
{
    expect_refused(wrong_payload_len, -EPROTO);
}

Test(passfd, unknown_kind_is_eproto_and_closes_fd, .timeout = 10)
{
    expect_refused(unknown_kind, -EPROTO);
}

/* Send a 3-byte header prefix with two fds in one SCM_RIGHTS, by hand: the
 * API cannot produce it, a confused or hostile peer can. */
static void send_two_fds(int sock, int a, int b, const void *data, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 2)];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    msg.msg_control = cm.buf;
    msg.msg_controllen = sizeof(cm.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * 2);
    int fds[2] = {a, b};
    memcpy(CMSG_DATA(c), fds, sizeof(fds));
    cr_assert_eq(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)len, "%s", strerror(errno));
}

Test(passfd, two_fds_are_eproto_and_both_closed, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2], q[2];
    make_pair(sv);
    make_pipe(p);
    make_pipe(q);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    send_two_fds(sv[0], p[1], q[1], &hdr, sizeof(hdr));
    close(p[1]);
    close(q[1]);

    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), -EPROTO);
    cr_assert_eq(fd, 12345);
    assert_no_writer(p[0]);
    assert_no_writer(q[0]);

    close(p[0]);
    close(q[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, truncated_control_is_eproto_and_closes_fd, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2], q[2];
    make_pair(sv);
    make_pipe(p);
    make_pipe(q);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    send_two_fds(sv[0], p[1], q[1], &hdr, sizeof(hdr));
    close(p[1]);
    close(q[1]);

    /* Room for one fd only: the kernel installs the first, closes the second
     * and sets MSG_CTRUNC. The one installed is ours to close. */
    struct up_passfd_in in;
    up_passfd_in_prep(&in, NULL, 0);
    in.msg.msg_controllen = CMSG_LEN(sizeof(int));
    ssize_t n = recvmsg(sv[1], &in.msg, MSG_CMSG_CLOEXEC);
    cr_assert_eq(n, (ssize_t)sizeof(hdr));
    cr_assert(in.msg.msg_flags & MSG_CTRUNC);
    int fd = 12345;
    cr_assert_eq(up_passfd_decode(&in, n, &fd), -EPROTO);
    cr_assert_eq(fd, 12345);
    assert_no_writer(p[0]);
    assert_no_writer(q[0]);

    close(p[0]);
    close(q[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

/* The receiver at its fd limit: the kernel drops the fd and sets
 * MSG_CTRUNC, the message itself is whole. decode says -EMFILE and leaves
 * the header readable, so that a worker can decline that one connection
 * by its id and keep its channel. */
Test(passfd, receiver_out_of_fds_is_emfile_with_the_header, .timeout = 10)
{
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);
    int before = up_test_fd_count();

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    hdr.conn_id = 4242;
    cr_assert_eq(up_passfd_send(sv[0], &hdr, "ab", 2, p[1], 0), 0);

    /* No fd can be installed: the kernel drops it. */
    struct rlimit saved;
    cr_assert_eq(up_test_fd_limit_reached(&saved), 0);
    char payload[16];
    struct up_passfd_in in;
    up_passfd_in_prep(&in, payload, sizeof(payload));
    ssize_t n = recvmsg(sv[1], &in.msg, MSG_CMSG_CLOEXEC);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    cr_assert_eq(n, (ssize_t)sizeof(hdr) + 2);
    cr_assert(in.msg.msg_flags & MSG_CTRUNC);
    int fd = 12345;
    cr_assert_eq(up_passfd_decode(&in, n, &fd), -EMFILE);
    cr_assert_eq(fd, 12345);
    cr_assert_eq(in.hdr.kind, UP_MSG_CONN);
    cr_assert_eq(in.hdr.conn_id, 4242);
    cr_assert_eq(up_test_fd_count(), before);

    /* The channel goes on: the next message arrives, fd and all. */
    cr_assert_eq(up_passfd_send(sv[0], &hdr, NULL, 0, p[1], 0), 0);
    struct up_msg got;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), 0);
    cr_assert_geq(fd, 0);
    close(fd);
    close_all(p, 2);
    close_all(sv, 2);
}

Test(passfd, short_message_is_eproto_and_closes_fd, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2], q[2];
    make_pair(sv);
    make_pipe(p);
    make_pipe(q);

    /* Two fds, but also only 4 bytes: both faults at once must still close
     * both fds. */
    send_two_fds(sv[0], p[1], q[1], "up\x01\x01", 4);
    close(p[1]);
    close(q[1]);

    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), -EPROTO);
    assert_no_writer(p[0]);
    assert_no_writer(q[0]);

    close(p[0]);
    close(q[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, payload_over_cap_is_eproto_and_closes_fd, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    char big[100];
    memset(big, 'x', sizeof(big));
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, big, sizeof(big), p[1], 0), 0);
    close(p[1]);

    struct up_msg got;
    char small[10];
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, small, sizeof(small), &fd, 0), -EPROTO);
    cr_assert_eq(fd, 12345);
    assert_no_writer(p[0]);

    close(p[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, unexpected_cmsg_is_eproto, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);
    /* With SO_PASSCRED the kernel attaches SCM_CREDENTIALS to every message:
     * a control message passfd never asked for. */
    int on = 1;
    cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_READY);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, NULL, 0, -1, 0), 0);

    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), -EPROTO);
    cr_assert_eq(fd, 12345);

    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, unexpected_cmsg_next_to_fd_closes_fd, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);
    int on = 1;
    cr_assert_eq(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, NULL, 0, p[1], 0), 0);
    close(p[1]);

    /* A control buffer big enough for both, so that the fd really arrives
     * next to the credentials (no MSG_CTRUNC): decode must close it. */
    union {
        char buf[256];
        struct cmsghdr align;
    } cm;
    struct up_passfd_in in;
    up_passfd_in_prep(&in, NULL, 0);
    in.msg.msg_control = cm.buf;
    in.msg.msg_controllen = sizeof(cm.buf);
    ssize_t n = recvmsg(sv[1], &in.msg, MSG_CMSG_CLOEXEC);
    cr_assert_eq(n, (ssize_t)sizeof(hdr));
    cr_assert_eq(in.msg.msg_flags & MSG_CTRUNC, 0);
    int fd = 12345;
    cr_assert_eq(up_passfd_decode(&in, n, &fd), -EPROTO);
    cr_assert_eq(fd, 12345);
    assert_no_writer(p[0]);

    close(p[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, peer_closed_is_epipe, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);
    close(sv[0]);

    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, 0), -EPIPE);
    cr_assert_eq(fd, 12345);

    close(sv[1]);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, send_to_closed_peer_is_epipe_without_sigpipe, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);
    close(sv[1]);

    /* Without MSG_NOSIGNAL this would kill the test process with SIGPIPE. */
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, "x", 1, p[1], 0), -EPIPE);

    close(sv[0]);
    close_all(p, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, nonblocking_recv_with_nothing_is_eagain, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);

    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, MSG_DONTWAIT), -EAGAIN);
    cr_assert_eq(fd, 12345);

    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, send_on_full_channel_is_eagain, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);

    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_STATS);
    char payload[1024] = {0};
    int r = 0;
    int sent = 0;
    while (sent < 100000) {
        r = up_passfd_send(sv[0], &hdr, payload, sizeof(payload), -1, MSG_DONTWAIT);
        if (r != 0) {
            break;
        }
        sent++;
    }
    cr_assert_eq(r, -EAGAIN, "after %d messages: %d", sent, r);
    cr_assert_gt(sent, 0);

    /* One message out makes room for one message in. */
    struct up_msg got;
    char buf[1024];
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, buf, sizeof(buf), &fd, MSG_DONTWAIT), 1024);
    cr_assert_eq(fd, -1);

    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, oversized_payload_is_e2big, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    size_t len = UP_PASSFD_MAX_PAYLOAD + 1;
    char *big = calloc(1, len);
    cr_assert_not_null(big);
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, big, len, p[1], 0), -E2BIG);
    struct up_passfd_out out;
    cr_assert_eq(up_passfd_prep(&out, &hdr, big, len, -1), -E2BIG);

    /* Nothing went out, fd included. */
    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, NULL, 0, &fd, MSG_DONTWAIT), -EAGAIN);

    free(big);
    close_all(sv, 2);
    close_all(p, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, max_payload_round_trips, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);

    size_t len = UP_PASSFD_MAX_PAYLOAD;
    char *data = malloc(len);
    char *back = malloc(len);
    cr_assert(data != NULL && back != NULL);
    for (size_t i = 0; i < len; i++) {
        data[i] = (char)(i * 7);
    }
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    cr_assert_eq(up_passfd_send(sv[0], &hdr, data, len, -1, 0), 0);
    struct up_msg got;
    int fd = 12345;
    cr_assert_eq(up_passfd_recv(sv[1], &got, back, len, &fd, 0), (int)len);
    cr_assert_eq(memcmp(data, back, len), 0);

    free(data);
    free(back);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, uring_style_prep_sendmsg_recvmsg_decode, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2];
    make_pair(sv);
    make_pipe(p);

    /* What the ring does: the structs stay put, a plain sendmsg()/recvmsg()
     * stands in for IORING_OP_SENDMSG/RECVMSG, and cqe->res goes to decode. */
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONN);
    hdr.conn_id = 7;
    hdr.magic = 0; /* prep sets magic, version and payload_len itself */
    hdr.payload_len = 999;
    struct up_passfd_out out;
    cr_assert_eq(up_passfd_prep(&out, &hdr, "prefix", 6, p[1]), 0);
    cr_assert_eq(sendmsg(sv[0], &out.msg, MSG_NOSIGNAL), (ssize_t)(sizeof(hdr) + 6));
    close(p[1]);

    struct up_passfd_in in;
    char buf[16];
    up_passfd_in_prep(&in, buf, sizeof(buf));
    ssize_t n = recvmsg(sv[1], &in.msg, MSG_CMSG_CLOEXEC);
    int fd = -1;
    cr_assert_eq(up_passfd_decode(&in, n, &fd), 6);
    cr_assert_eq(in.hdr.conn_id, 7);
    cr_assert_eq(in.hdr.kind, UP_MSG_CONN);
    cr_assert_eq(memcmp(buf, "prefix", 6), 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "z", 1), 1);
    char c;
    cr_assert_eq(read(p[0], &c, 1), 1);
    close(fd);
    assert_no_writer(p[0]);

    /* A failed CQE passes through unchanged, and so does EOF. */
    up_passfd_in_prep(&in, buf, sizeof(buf));
    fd = 12345;
    cr_assert_eq(up_passfd_decode(&in, -ECONNRESET, &fd), -ECONNRESET);
    cr_assert_eq(up_passfd_decode(&in, 0, &fd), -EPIPE);
    cr_assert_eq(fd, 12345);

    close(p[0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, pair_is_cloexec_seqpacket, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2];
    make_pair(sv);
    for (int i = 0; i < 2; i++) {
        int type = 0;
        socklen_t len = sizeof(type);
        cr_assert_eq(getsockopt(sv[i], SOL_SOCKET, SO_TYPE, &type, &len), 0);
        cr_assert_eq(type, SOCK_SEQPACKET);
        cr_assert(fcntl(sv[i], F_GETFD) & FD_CLOEXEC);
    }
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, msg_init_zeroes_all_but_identity, .timeout = 10)
{
    struct up_msg hdr;
    memset(&hdr, 0xab, sizeof(hdr));
    up_msg_init(&hdr, UP_MSG_DRAIN);
    cr_assert_eq(hdr.magic, UP_PASSFD_MAGIC);
    cr_assert_eq(hdr.version, UP_PASSFD_VERSION);
    cr_assert_eq(hdr.kind, UP_MSG_DRAIN);
    cr_assert_eq(hdr.payload_len, 0);
    cr_assert_eq(hdr.conn_id, 0);
    cr_assert_eq(hdr.flags, 0);
    cr_assert_eq(hdr.reserved, 0);
}

Test(passfd, kind_names, .timeout = 10)
{
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_CONN), "CONN");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_DRAIN), "DRAIN");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_READY), "READY");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_FAIL), "FAIL");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_ACK), "ACK");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_STATS), "STATS");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_DECLINE), "DECLINE");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_ROOM), "ROOM");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_DRAINING), "DRAINING");
    cr_assert_str_eq(up_msg_kind_name(0), "?");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_REOPEN), "REOPEN");
    cr_assert_str_eq(up_msg_kind_name(UP_MSG_CONNS), "CONNS");
    cr_assert_str_eq(up_msg_kind_name(12), "?");
    cr_assert_str_eq(up_msg_kind_name(1000000), "?");
}

/* ---- CONNS: several connections in one message ---- */

/* Send a CONNS of nfds pipe write ends with arg entries (ids 100, 101, ...),
 * through up_passfd_prep_fds(). */
static void send_conns(int sock, const int *fds, size_t nfds, uint64_t arg)
{
    struct up_conn_entry ent[UP_PASSFD_MAX_FDS];
    for (size_t i = 0; i < arg; i++) {
        ent[i].conn_id = 100 + i;
        ent[i].tries = i;
    }
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONNS);
    hdr.arg = arg;
    struct up_passfd_out_fds out;
    cr_assert_eq(up_passfd_prep_fds(&out, &hdr, ent, arg * sizeof(ent[0]), fds, nfds), 0);
    cr_assert_geq(sendmsg(sock, &out.msg, MSG_NOSIGNAL), 0, "sendmsg: %s", strerror(errno));
}

/* A channel, three pipes, and a CONNS of their write ends sent on it. */
static void send_three(int sv[2], int p[3][2])
{
    make_pair(sv);
    int w[3];
    for (int i = 0; i < 3; i++) {
        make_pipe(p[i]);
        w[i] = p[i][1];
    }
    send_conns(sv[0], w, 3, 3);
}

static int recv_conns(int sock, struct up_passfd_in *in, char *payload, size_t cap, int *fds,
                      size_t *nfds)
{
    up_passfd_in_prep(in, payload, cap);
    ssize_t n = recvmsg(sock, &in->msg, MSG_CMSG_CLOEXEC);
    return up_passfd_decode_fds(in, n, fds, UP_PASSFD_MAX_FDS, nfds);
}

Test(passfd, conns_carry_each_fd_with_its_entry, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[3][2];
    send_three(sv, p);
    for (int i = 0; i < 3; i++) {
        close(p[i][1]);
    }
    struct up_passfd_in in;
    char payload[256];
    int fds[UP_PASSFD_MAX_FDS];
    size_t nfds = 0;
    int n = recv_conns(sv[1], &in, payload, sizeof(payload), fds, &nfds);
    cr_assert_eq(n, 3 * (int)sizeof(struct up_conn_entry));
    cr_assert_eq(in.hdr.kind, UP_MSG_CONNS);
    cr_assert_eq(nfds, 3);
    for (int i = 0; i < 3; i++) {
        struct up_conn_entry e;
        memcpy(&e, payload + (size_t)i * sizeof(e), sizeof(e));
        cr_assert_eq(e.conn_id, 100 + (uint64_t)i);
        cr_assert_eq(e.tries, (uint64_t)i);
        /* fds[i] is the write end of pipe i: the order holds. */
        cr_assert_eq(write(fds[i], "x", 1), 1);
        char c;
        cr_assert_eq(read(p[i][0], &c, 1), 1);
        close(fds[i]);
        assert_no_writer(p[i][0]);
        close(p[i][0]);
    }
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

/* At the fd limit part-way: the kernel installs the first fds and drops
 * the rest; the message checks out with fewer fds than entries, and the
 * dropped ones are closed everywhere (only the sender's copies remain). */
Test(passfd, conns_at_the_fd_limit_bring_the_first_fds, .timeout = 10)
{
    int sv[2], p[3][2];
    send_three(sv, p);
    /* The write ends stay open until the receive: no hole below the
     * lowest free fd, so the two after it are free too. */
    int before = up_test_fd_count();
    struct rlimit saved;
    cr_assert_eq(up_test_fd_limit_reached(&saved), 0);
    struct rlimit two = saved;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &two), 0);
    cr_assert_eq(fcntl((int)two.rlim_cur + 1, F_GETFD), -1, "the fd after the lowest free is open");
    two.rlim_cur += 2; /* room for two */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &two), 0);
    struct up_passfd_in in;
    char payload[256];
    int fds[UP_PASSFD_MAX_FDS];
    size_t nfds = 0;
    int n = recv_conns(sv[1], &in, payload, sizeof(payload), fds, &nfds);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    cr_assert_eq(n, 3 * (int)sizeof(struct up_conn_entry));
    cr_assert(in.msg.msg_flags & MSG_CTRUNC);
    cr_assert_eq(nfds, 2);
    cr_assert_eq(up_test_fd_count(), before + 2);
    close_all(fds, 2);
    for (int i = 0; i < 3; i++) {
        close(p[i][1]);
        assert_no_writer(p[i][0]); /* the third was dropped, the others closed */
        close(p[i][0]);
    }
    close_all(sv, 2);
}

/* A receiver of single CONNs (up_passfd_recv) refuses a CONNS and closes
 * what came with it; so does a CONNS whose entries do not match its fds. */
Test(passfd, conns_that_do_not_check_out_are_eproto_and_close_fds, .timeout = 10)
{
    int before = up_test_fd_count();
    int sv[2], p[2][2];
    make_pair(sv);
    make_pipe(p[0]);
    make_pipe(p[1]);
    int w[2] = {p[0][1], p[1][1]};
    struct up_msg got;
    char buf[256];
    int fd = 12345;

    send_conns(sv[0], w, 2, 2);
    cr_assert_eq(up_passfd_recv(sv[1], &got, buf, sizeof(buf), &fd, 0), -EPROTO);

    struct up_passfd_in in;
    int fds[UP_PASSFD_MAX_FDS];
    size_t nfds = 0;
    send_conns(sv[0], w, 2, 3); /* three entries, two fds, no MSG_CTRUNC */
    cr_assert_eq(recv_conns(sv[1], &in, buf, sizeof(buf), fds, &nfds), -EPROTO);
    send_conns(sv[0], w, 2, 1); /* more fds than entries */
    cr_assert_eq(recv_conns(sv[1], &in, buf, sizeof(buf), fds, &nfds), -EPROTO);
    cr_assert_eq(fd, 12345);
    close(p[0][1]);
    close(p[1][1]);
    assert_no_writer(p[0][0]);
    assert_no_writer(p[1][0]);
    close(p[0][0]);
    close(p[1][0]);
    close_all(sv, 2);
    cr_assert_eq(up_test_fd_count(), before);
}

Test(passfd, conns_take_one_to_max_fds, .timeout = 10)
{
    struct up_passfd_out_fds out;
    struct up_msg hdr;
    up_msg_init(&hdr, UP_MSG_CONNS);
    int fds[UP_PASSFD_MAX_FDS + 1] = {0};
    cr_assert_eq(up_passfd_prep_fds(&out, &hdr, NULL, 0, fds, 0), -EINVAL);
    cr_assert_eq(up_passfd_prep_fds(&out, &hdr, NULL, 0, fds, UP_PASSFD_MAX_FDS + 1), -EINVAL);
    cr_assert_eq(up_passfd_prep_fds(&out, &hdr, NULL, 0, fds, UP_PASSFD_MAX_FDS), 0);
}
