/*
 * fuzz_passfd: up_passfd_decode() (passfd/passfd.c) on any bytes, as if
 * recvmsg() had received them into a struct up_passfd_in; a CONNS of odd
 * length goes through up_passfd_decode_fds() instead.
 *
 * The first byte is the receive itself, the rest is the datagram:
 *
 *   bits 0-2  the control data (enum shape); fds are dups of /dev/null
 *   bit 3     SHAPE_SHORT: one fd more
 *   bits 4-5  payload room: 64 KiB, 0, 16 or 256 bytes
 *   bits 6-7  0 plain; 1 MSG_CTRUNC; 2 MSG_TRUNC; 3 the receive failed
 *
 * The datagram is copied into the header and payload iovecs as recvmsg()
 * would, with MSG_TRUNC when it does not fit, and the cmsg is laid out as
 * the kernel lays it out (or, SHAPE_SHORT, as a hand-built buffer might be,
 * never past the fds put in it: decode must close exactly those). decode owns every fd that
 * arrived: on failure each must be closed when it returns, on success the one it returns is ours
 * (closed here) and any other must be closed. The fds on /dev/null in
 * /proc/self/fd are counted every 1000 runs as well.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passfd.h"

#define MAX_FDS 4

/* The control data that arrived with the datagram. */
enum shape {
    SHAPE_NONE,      /* msg_controllen 0 */
    SHAPE_UNTOUCHED, /* msg_controllen as _prep left it, over a zeroed buffer */
    SHAPE_CREDS,     /* SCM_CREDENTIALS, no fd */
    SHAPE_SHORT,     /* SCM_RIGHTS whose cmsg_len claims two fds more than
                      * msg_controllen covers */
    SHAPE_FDS,       /* 4 to 7: SCM_RIGHTS with 1 to 4 fds */
};

static const uint8_t *g_data; /* the input, for the report of a failed check */
static size_t g_len;

static void dump_input(void)
{
    fprintf(stderr, "input (%zu bytes): ", g_len);
    for (size_t i = 0; i < g_len; i++) {
        fprintf(stderr, "%02x", g_data[i]);
    }
    fprintf(stderr, "\n");
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_passfd: check failed: %s: ", #cond);                             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            dump_input();                                                                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int devnull = -1; /* owned for the life of the process */
static int fd_baseline = -1;
static unsigned long runs;

/* The fds open on /dev/null, where every fd of this fuzzer points. Not all
 * fds: the sanitizers' symbolizer opens pipes of its own along the way. */
static int fd_count(void)
{
    DIR *dir = opendir("/proc/self/fd"); /* owned */
    CHECK(dir != NULL, "opendir: %s", strerror(errno));
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char target[64];
        ssize_t n = readlinkat(dirfd(dir), e->d_name, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            count += strcmp(target, "/dev/null") == 0;
        }
    }
    closedir(dir);
    return count;
}

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

static const size_t caps[4] = {UP_PASSFD_MAX_PAYLOAD, 0, 16, 256};

/* The control data as the kernel writes it: one cmsg, msg_controllen
 * covering it (CMSG_SPACE), the rest of the buffer untouched. */
static void put_cmsg(struct up_passfd_in *in, int type, const void *data, size_t len)
{
    struct cmsghdr *c = CMSG_FIRSTHDR(&in->msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), data, len);
    in->msg.msg_controllen = CMSG_SPACE(len);
}

/* Fill in as recvmsg() would have; returns its result. */
static ssize_t receive(struct up_passfd_in *in, uint8_t ctl, const uint8_t *dgram, size_t len,
                       int *fds, size_t nfds)
{
    if ((ctl >> 6) == 3) {
        return -ECONNRESET; /* nothing arrived, msg_controllen as _prep left it */
    }
    size_t hdr = len < sizeof(in->hdr) ? len : sizeof(in->hdr);
    memcpy(&in->hdr, dgram, hdr);
    size_t room = in->msg.msg_iovlen > 1 ? in->iov[1].iov_len : 0;
    size_t payload = len - hdr < room ? len - hdr : room;
    if (payload > 0) {
        memcpy(in->iov[1].iov_base, dgram + hdr, payload);
    }
    if (hdr + payload < len || (ctl >> 6) == 2) {
        in->msg.msg_flags |= MSG_TRUNC;
    }
    if ((ctl >> 6) == 1) {
        in->msg.msg_flags |= MSG_CTRUNC;
    }
    unsigned shape = ctl & 7;
    if (shape >= SHAPE_FDS) {
        put_cmsg(in, SCM_RIGHTS, fds, nfds * sizeof(int));
    } else if (shape == SHAPE_SHORT) {
        put_cmsg(in, SCM_RIGHTS, fds, nfds * sizeof(int));
        CMSG_FIRSTHDR(&in->msg)->cmsg_len = CMSG_LEN((nfds + 2) * sizeof(int));
        in->msg.msg_controllen = CMSG_LEN(nfds * sizeof(int));
    } else if (shape == SHAPE_CREDS) {
        struct ucred cred = {getpid(), getuid(), getgid()};
        put_cmsg(in, SCM_CREDENTIALS, &cred, sizeof(cred));
    } else if (shape == SHAPE_NONE) {
        in->msg.msg_controllen = 0;
    }
    return (ssize_t)(hdr + payload);
}

/* A message decode accepted: the header agrees with what arrived. */
static void check_accepted(const struct up_passfd_in *in, int r, ssize_t n, size_t cap)
{
    CHECK(r >= 0 && (size_t)r == in->hdr.payload_len, "returned %d, payload_len %u", r,
          in->hdr.payload_len);
    CHECK((size_t)n == sizeof(struct up_msg) + (size_t)r, "n %zd, payload %d", n, r);
    CHECK((size_t)r <= cap, "payload %d over the room %zu", r, cap);
    CHECK(in->hdr.magic == UP_PASSFD_MAGIC && in->hdr.version == UP_PASSFD_VERSION, "magic");
    CHECK(strcmp(up_msg_kind_name(in->hdr.kind), "?") != 0, "unknown kind %u", in->hdr.kind);
    CHECK(!(in->msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)), "truncated message accepted");

    /* What the sender would have prepared for it is the same header. */
    struct up_passfd_out out;
    CHECK(up_passfd_prep(&out, &in->hdr, in->iov[1].iov_base, (size_t)r, -1) == 0, "prep");
    CHECK(memcmp(&out.hdr, &in->hdr, sizeof(out.hdr)) == 0, "prep changes the header");
    CHECK(out.msg.msg_iovlen == (r > 0 ? 2u : 1u) && out.msg.msg_controllen == 0, "prep msg");
}

/* A CONNS, through the decoder of a worker that takes them: on success
 * every fd that came is returned, in order, with as many entries or more
 * (fewer fds only when the kernel said it dropped some); on failure every
 * one is closed. */
static void decode_many(struct up_passfd_in *in, ssize_t n, const int *sent, size_t nsent)
{
    int got[UP_PASSFD_MAX_FDS];
    size_t ngot = 99;
    int r = up_passfd_decode_fds(in, n, got, UP_PASSFD_MAX_FDS, &ngot);
    if (r < 0) {
        CHECK(ngot == 99, "ret_nfds written on failure (%d)", r);
        CHECK(r == -EPROTO || r == -EPROTONOSUPPORT || r == -EPIPE || r == n, "error %d", r);
        for (size_t i = 0; i < nsent; i++) {
            CHECK(!fd_open(sent[i]), "fd %d left open after failure %d", sent[i], r);
        }
        return;
    }
    uint64_t k = in->hdr.arg;
    CHECK(k >= 1 && k <= UP_PASSFD_MAX_FDS && (size_t)r == k * sizeof(struct up_conn_entry),
          "%llu entries in %d bytes", (unsigned long long)k, r);
    CHECK(!(in->msg.msg_flags & MSG_TRUNC), "truncated message accepted");
    CHECK(ngot == nsent, "%zu of the %zu fds returned", ngot, nsent);
    CHECK(ngot == k || (ngot < k && (in->msg.msg_flags & MSG_CTRUNC)), "%zu fds for %llu entries",
          ngot, (unsigned long long)k);
    for (size_t i = 0; i < ngot; i++) {
        CHECK(got[i] == sent[i] && fd_open(got[i]), "fd %zu", i);
        close(got[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    static uint8_t payload[UP_PASSFD_MAX_PAYLOAD];
    g_data = data;
    g_len = len;
    if (devnull < 0) {
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        CHECK(devnull >= 0, "open /dev/null: %s", strerror(errno));
        fd_baseline = fd_count();
    }
    uint8_t ctl = len > 0 ? data[0] : 0;
    size_t cap = caps[(ctl >> 4) & 3];
    int fds[MAX_FDS];
    size_t nfds = 0;
    if ((ctl >> 6) != 3) {
        nfds = (ctl & 7) >= SHAPE_FDS ? (ctl & 7) - SHAPE_FDS + 1u : 0;
        nfds = (ctl & 7) == SHAPE_SHORT ? 1u + ((ctl >> 3) & 1) : nfds;
    }
    for (size_t i = 0; i < nfds; i++) {
        fds[i] = fcntl(devnull, F_DUPFD_CLOEXEC, 0);
        CHECK(fds[i] >= 0, "dup: %s", strerror(errno));
    }

    struct up_passfd_in in;
    up_passfd_in_prep(&in, payload, cap);
    ssize_t n = receive(&in, ctl, len > 0 ? data + 1 : data, len > 0 ? len - 1 : 0, fds, nfds);
    if (n >= (ssize_t)sizeof(in.hdr) && in.hdr.kind == UP_MSG_CONNS && (len & 1)) {
        decode_many(&in, n, fds, nfds); /* half of them: the other half as a CONN receiver */
        (void)up_msg_kind_name(ctl);
        runs++;
        return 0;
    }
    int fd = -2;
    int r = up_passfd_decode(&in, n, &fd);
    if (r < 0) {
        CHECK(fd == -2, "ret_fd written on failure (%d)", r);
        CHECK(r == -EPROTO || r == -EPROTONOSUPPORT || r == -EPIPE || r == -EMFILE || r == n,
              "error %d", r);
        /* Out of fds: only a whole, good message whose fd never came. */
        CHECK(r != -EMFILE || ((in.msg.msg_flags & MSG_CTRUNC) && nfds == 0 &&
                               !(in.msg.msg_flags & MSG_TRUNC) && n >= (ssize_t)sizeof(in.hdr)),
              "-EMFILE for a message that is not a whole one without its fd");
        CHECK(n != 0 || r == -EPIPE || r == -EPROTO, "n 0 gives %d", r);
        for (size_t i = 0; i < nfds; i++) {
            CHECK(!fd_open(fds[i]), "fd %d left open after failure %d", fds[i], r);
        }
    } else {
        check_accepted(&in, r, n, cap);
        CHECK(nfds <= 1, "%zu fds accepted", nfds);
        CHECK(fd == (nfds == 1 ? fds[0] : -1), "ret_fd %d", fd);
        CHECK(fd < 0 || fd_open(fd), "the fd returned is closed");
        if (fd >= 0) {
            close(fd);
        }
    }
    (void)up_msg_kind_name(ctl);
    if (++runs % 1000 == 0) {
        int now = fd_count();
        CHECK(now <= fd_baseline, "%d fds open, %d at the start", now, fd_baseline);
    }
    return 0;
}
