#include "passfd.h"

#include "fd.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

void up_msg_init(struct up_msg *hdr, enum up_msg_kind kind)
{
    memset(hdr, 0, sizeof(*hdr));
    hdr->magic = UP_PASSFD_MAGIC;
    hdr->version = UP_PASSFD_VERSION;
    hdr->kind = (uint8_t)kind;
}

static const char *const up_msg_kind_names[] = {
    [UP_MSG_CONN] = "CONN",       [UP_MSG_DRAIN] = "DRAIN", [UP_MSG_READY] = "READY",
    [UP_MSG_FAIL] = "FAIL",       [UP_MSG_ACK] = "ACK",     [UP_MSG_STATS] = "STATS",
    [UP_MSG_DECLINE] = "DECLINE", [UP_MSG_ROOM] = "ROOM",   [UP_MSG_DRAINING] = "DRAINING",
    [UP_MSG_REOPEN] = "REOPEN",   [UP_MSG_CONNS] = "CONNS",
};

#define UP_MSG_KIND_COUNT (sizeof(up_msg_kind_names) / sizeof(up_msg_kind_names[0]))

static int kind_known(unsigned kind)
{
    return kind < UP_MSG_KIND_COUNT && up_msg_kind_names[kind] != NULL;
}

const char *up_msg_kind_name(unsigned kind)
{
    return kind_known(kind) ? up_msg_kind_names[kind] : "?";
}

/* The parts of an outgoing message, wherever its struct keeps them. */
struct out_parts {
    struct msghdr *msg;
    struct iovec *iov;  /* two */
    struct up_msg *hdr; /* the copy that goes out */
    char *cbuf;         /* room for CMSG_SPACE(nfds ints) */
};

static void prep_parts(const struct out_parts *o, const struct up_msg *hdr, const void *payload,
                       size_t len, const int *fds, size_t nfds)
{
    *o->hdr = *hdr;
    o->hdr->magic = UP_PASSFD_MAGIC;
    o->hdr->version = UP_PASSFD_VERSION;
    o->hdr->payload_len = (uint32_t)len;

    /* The header and the payload go out as one datagram: SOCK_SEQPACKET sends
     * it whole or not at all, so the receiver never sees half a message. */
    o->iov[0].iov_base = o->hdr;
    o->iov[0].iov_len = sizeof(*o->hdr);
    o->iov[1].iov_base = (void *)payload;
    o->iov[1].iov_len = len;
    o->msg->msg_iov = o->iov;
    o->msg->msg_iovlen = len > 0 ? 2 : 1;
    if (nfds == 0) {
        return;
    }

    /* SCM_RIGHTS makes the kernel install a new reference in the receiver;
     * the fds themselves stay the caller's (borrowed). */
    o->msg->msg_control = o->cbuf;
    o->msg->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(o->msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
}

int up_passfd_prep(struct up_passfd_out *out, const struct up_msg *hdr, const void *payload,
                   size_t len, int fd)
{
    if (len > UP_PASSFD_MAX_PAYLOAD) {
        return -E2BIG;
    }
    memset(out, 0, sizeof(*out));
    struct out_parts o = {&out->msg, out->iov, &out->hdr, out->cmsg.buf};
    prep_parts(&o, hdr, payload, len, &fd, fd >= 0 ? 1 : 0);
    return 0;
}

int up_passfd_prep_fds(struct up_passfd_out_fds *out, const struct up_msg *hdr, const void *payload,
                       size_t len, const int *fds, size_t nfds)
{
    if (len > UP_PASSFD_MAX_PAYLOAD) {
        return -E2BIG;
    }
    if (nfds == 0 || nfds > UP_PASSFD_MAX_FDS) {
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    struct out_parts o = {&out->msg, out->iov, &out->hdr, out->cmsg.buf};
    prep_parts(&o, hdr, payload, len, fds, nfds);
    return 0;
}

void up_passfd_in_prep(struct up_passfd_in *in, void *payload, size_t cap)
{
    memset(in, 0, sizeof(*in));
    in->iov[0].iov_base = &in->hdr;
    in->iov[0].iov_len = sizeof(in->hdr);
    in->iov[1].iov_base = payload;
    in->iov[1].iov_len = cap;
    in->msg.msg_iov = in->iov;
    in->msg.msg_iovlen = cap > 0 ? 2 : 1;
    /* recvmsg() shrinks msg_controllen to what arrived: a buffer is good for
     * one receive, and _prep must run again before the next one. */
    in->msg.msg_control = in->cmsg.buf;
    in->msg.msg_controllen = sizeof(in->cmsg.buf);
}

/* How many fds one SCM_RIGHTS cmsg carries, counting only the bytes that lie
 * inside msg_controllen (the kernel writes cmsg_len, but a hand-built or
 * truncated buffer must not make us read past the end). */
static size_t cmsg_fd_count(const struct msghdr *msg, const struct cmsghdr *c)
{
    const char *end = (const char *)msg->msg_control + msg->msg_controllen;
    const char *data = (const char *)CMSG_DATA(c);
    if (data > end) {
        return 0;
    }
    size_t len = c->cmsg_len - CMSG_LEN(0);
    if (len > (size_t)(end - data)) {
        len = (size_t)(end - data);
    }
    return len / sizeof(int);
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fds[i] = up_close(fds[i]);
    }
}

/* Take every fd of one SCM_RIGHTS cmsg into fds[*n..cap); one past cap is
 * closed at once. Returns 1 when the cmsg breaks the rules (no fd, or more
 * than cap in the message), else 0. */
static int take_cmsg_fds(const struct msghdr *msg, struct cmsghdr *c, int *fds, size_t cap,
                         size_t *n)
{
    size_t k = cmsg_fd_count(msg, c);
    int bad = k == 0;

    for (size_t i = 0; i < k; i++) {
        int got;
        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (*n < cap) {
            fds[(*n)++] = got;
        } else {
            /* More than allowed, in this cmsg or another one: refuse the
             * message, but never leave an fd open in this process. */
            up_close(got);
            bad = 1;
        }
    }
    return bad;
}

/* Walk every cmsg and take ownership of every fd in them. Returns 0 with
 * the fds in fds[0..*ret_n); or -EPROTO, after closing all of them, when
 * anything but SCM_RIGHTS, or more than cap fds, arrived. */
static int take_fds(struct msghdr *msg, int *fds, size_t cap, size_t *ret_n)
{
    size_t n = 0; /* fds[0..n) owned */
    int bad = 0;

    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        /* The kernel never writes a cmsg shorter than its header: this is the
         * zeroed rest of a buffer that nothing was received into. */
        if (c->cmsg_len < CMSG_LEN(0)) {
            break;
        }
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            bad = 1; /* SCM_CREDENTIALS and the like: never asked for */
            continue;
        }
        bad |= take_cmsg_fds(msg, c, fds, cap, &n);
    }
    if (bad) {
        close_fds(fds, n);
        return -EPROTO;
    }
    *ret_n = n;
    return 0;
}

/* A CONNS: arg entries in the payload, 1 to UP_PASSFD_MAX_FDS, and an fd
 * for each, or fewer when the kernel dropped the rest (MSG_CTRUNC). */
static int check_conns(const struct up_passfd_in *in, size_t nfds)
{
    uint64_t k = in->hdr.arg;
    if (k == 0 || k > UP_PASSFD_MAX_FDS ||
        in->hdr.payload_len != k * sizeof(struct up_conn_entry)) {
        return -EPROTO;
    }
    bool ctrunc = (in->msg.msg_flags & MSG_CTRUNC) != 0;
    if (nfds > k || (nfds < k && !ctrunc)) {
        return -EPROTO;
    }
    return 0;
}

/* The checks on the bytes, once the fds are taken care of; nfds of them
 * arrived. */
static int check_msg(const struct up_passfd_in *in, size_t n, size_t nfds)
{
    /* MSG_TRUNC: the datagram was longer than header + cap, and SEQPACKET
     * dropped the rest: it cannot be trusted. */
    if (in->msg.msg_flags & MSG_TRUNC) {
        return -EPROTO;
    }
    if (n < sizeof(struct up_msg) || in->hdr.magic != UP_PASSFD_MAGIC) {
        return -EPROTO;
    }
    if (in->hdr.version != UP_PASSFD_VERSION) {
        return -EPROTONOSUPPORT;
    }
    if (in->hdr.payload_len != n - sizeof(struct up_msg)) {
        return -EPROTO;
    }
    /* An unknown kind is a peer we do not understand, even at our version. */
    if (!kind_known(in->hdr.kind)) {
        return -EPROTO;
    }
    if (in->hdr.kind == UP_MSG_CONNS) {
        return check_conns(in, nfds);
    }
    if (nfds > 1) {
        return -EPROTO; /* one fd per message, but in a CONNS */
    }
    /* MSG_CTRUNC: the kernel could not hand over every fd. It installs
     * them in order and stops at the first one the receiver has no room
     * for (RLIMIT_NOFILE), and we leave room for four while a message
     * carries one: none at all arrived means the receiver is out of fds,
     * and the message itself is good. Some arrived means more were sent
     * than the protocol allows. */
    if (in->msg.msg_flags & MSG_CTRUNC) {
        return nfds == 0 ? -EMFILE : -EPROTO;
    }
    return 0;
}

int up_passfd_decode_fds(struct up_passfd_in *in, ssize_t n, int *fds, size_t cap, size_t *ret_nfds)
{
    size_t nfds = 0; /* fds[0..nfds) owned */

    /* A failed receive delivered nothing, and msg_controllen still holds
     * what _prep put there: there is nothing to walk. */
    if (n < 0) {
        return (int)n;
    }
    int r = take_fds(&in->msg, fds, cap, &nfds);
    if (r < 0) {
        return r;
    }
    /* n == 0 is the end of the channel: SOCK_SEQPACKET reports the peer's
     * close as an empty read, and every real message has a header. */
    if (n == 0) {
        r = -EPIPE;
        goto fail;
    }
    r = check_msg(in, (size_t)n, nfds);
    if (r < 0) {
        goto fail;
    }
    *ret_nfds = nfds;
    return (int)in->hdr.payload_len;
fail:
    close_fds(fds, nfds);
    return r;
}

int up_passfd_decode(struct up_passfd_in *in, ssize_t n, int *ret_fd)
{
    /* Room for two: a second fd is then refused by check_msg() as "more
     * than one", not closed unseen as over the cap. */
    int fds[2];
    size_t nfds = 0;
    int r = up_passfd_decode_fds(in, n, fds, 2, &nfds);
    if (r >= 0 && in->hdr.kind == UP_MSG_CONNS) {
        close_fds(fds, nfds); /* a receiver of single CONNs never asked for it */
        return -EPROTO;
    }
    if (r >= 0) {
        *ret_fd = nfds > 0 ? fds[0] : -1;
    }
    return r;
}

int up_passfd_send(int sock, const struct up_msg *hdr, const void *payload, size_t len, int fd,
                   int flags)
{
    struct up_passfd_out out;
    int r = up_passfd_prep(&out, hdr, payload, len, fd);
    if (r < 0) {
        return r;
    }
    /* MSG_NOSIGNAL: a dead peer is an -EPIPE to handle, not a SIGPIPE that
     * kills the master. SOCK_SEQPACKET never sends part of a message. */
    if (sendmsg(sock, &out.msg, flags | MSG_NOSIGNAL) == -1) {
        if (errno == EPIPE || errno == ECONNRESET) {
            return -EPIPE;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return -EAGAIN;
        }
        return -errno;
    }
    return 0;
}

int up_passfd_recv(int sock, struct up_msg *ret_hdr, void *payload, size_t cap, int *ret_fd,
                   int flags)
{
    struct up_passfd_in in;
    int fd = -1; /* owned once decode succeeded */

    up_passfd_in_prep(&in, payload, cap);
    /* MSG_CMSG_CLOEXEC: the fd is CLOEXEC from the moment it exists, so a
     * concurrent fork+exec of a worker can never inherit it. */
    ssize_t n = recvmsg(sock, &in.msg, flags | MSG_CMSG_CLOEXEC);
    if (n == -1) {
        n = (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    }
    int r = up_passfd_decode(&in, n, &fd);
    if (r < 0) {
        return r;
    }
    *ret_hdr = in.hdr;
    *ret_fd = fd;
    return r;
}

int up_passfd_pair(int ret_fds[2])
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == -1) {
        return -errno;
    }
    ret_fds[0] = fds[0];
    ret_fds[1] = fds[1];
    return 0;
}
