/*
 * passfd: one message = one fixed, versioned header + optional payload bytes
 * + at most one fd (SCM_RIGHTS), over a SOCK_SEQPACKET unix socket.
 *
 * This is the whole wire protocol between the master (up-run) and a worker
 * (up-worker). The channel is the worker's fd 3. SOCK_SEQPACKET keeps message
 * boundaries, so one recvmsg() returns exactly one message, and an fd can
 * never be attached to the wrong message.
 *
 * Messages (DESIGN.md section 3):
 *   master -> worker  CONN   fd = the client socket (nothing of it read by the
 *                            master: it only peeked); payload = prefix bytes
 *                            the worker must treat as
 *                            already read (a connection handed back and routed
 *                            again); conn_id; arg = times the master has
 *                            routed it since a worker last took it in.
 *                     DRAIN  arg = drain deadline, ms from now;
 *                            flags UP_DRAIN_F_*: see below.
 *                     CONNS  several CONNs in one message, to a worker whose
 *                            READY carried UP_READY_F_CONNS: fds = the
 *                            client sockets, in order; payload = one
 *                            struct up_conn_entry each; arg = how many. No
 *                            prefix bytes (a connection with some goes as a
 *                            CONN).
 *                     REOPEN open log files again (logrotate moved them).
 *   worker -> master  READY  the app loaded and is ready; flags UP_READY_F_*.
 *                     FAIL   payload = reason text (dlerror() and the like).
 *                     ACK    payload = the conn_ids (uint64_t each) of CONNs
 *                            now owned by the worker; arg = how many.
 *                     CONN   hand a connection back: fd, payload = bytes the
 *                            worker already read from it, conn_id; arg = the
 *                            CONN's arg when it is bounced straight back (it
 *                            came while the worker drained), else 0.
 *                     STATS  arg = connections held, arg2 = requests served;
 *                            payload = access log lines written and lines
 *                            dropped since start (uint64_t each), or none.
 *                     DECLINE  conn_id of a CONN whose fd never arrived: the
 *                            worker is at its fd limit. The master still
 *                            owns the connection and routes it elsewhere.
 *                     ROOM   the worker has fds again after a DECLINE.
 *                     DRAINING  the worker began draining on its own (a
 *                            SIGTERM not from the master): route nothing
 *                            more to it; it hands back what comes anyway.
 *
 * The module owns no fd of its own and holds no state. It uses libc and
 * the shared fd helper (core/lib/fd.h) only, never logs, and never blocks unless the socket itself
 * is blocking (functions take MSG_* flags, so MSG_DONTWAIT makes a call non-blocking).
 *
 * Two layers: up_passfd_send()/up_passfd_recv() do the syscall; the
 * up_passfd_out/up_passfd_in structs plus _prep/_decode let an io_uring
 * SENDMSG/RECVMSG do it instead, with the same encoding and checks.
 */
#ifndef UP_PASSFD_H
#define UP_PASSFD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define UP_PASSFD_MAGIC 0x7570u /* "up" */
#define UP_PASSFD_VERSION 2u
/* Largest payload: a handed-back connection's already-read bytes are bounded
 * by the worker's read buffer, which is smaller than this. */
#define UP_PASSFD_MAX_PAYLOAD 65536u

enum up_msg_kind {
    UP_MSG_CONN = 1,
    UP_MSG_DRAIN = 2,
    UP_MSG_READY = 3,
    UP_MSG_FAIL = 4,
    UP_MSG_ACK = 5,
    UP_MSG_STATS = 6,
    UP_MSG_DECLINE = 7,
    UP_MSG_ROOM = 8,
    UP_MSG_DRAINING = 9,
    UP_MSG_REOPEN = 10,
    UP_MSG_CONNS = 11,
};

/* READY: the worker takes CONNS. A worker of another language that speaks
 * only CONN leaves it unset and gets one connection per message. */
#define UP_READY_F_CONNS 0x1u

/* Most connections one CONNS carries. One message per connection costs the
 * master a sendmsg() and the worker a wakeup, a recvmsg() and an ACK; a
 * master that routes a burst to one worker sends it in one. */
#define UP_PASSFD_MAX_FDS 16

/* One connection of a CONNS: a CONN's conn_id and arg. */
struct up_conn_entry {
    uint64_t conn_id;
    uint64_t tries;
};

#define UP_DRAIN_F_MIGRATE_IDLE 0x1u /* DRAIN: hand idle connections back now */
#define UP_DRAIN_F_SHED 0x2u         /* DRAIN: hand every idle one back now (cap) */
#define UP_DRAIN_F_STOP 0x4u         /* DRAIN: the master stops; close idle ones */

/* Fixed-size header, host byte order (both ends are on the same machine).
 * Fields not used by a kind are zero. */
struct up_msg {
    uint16_t magic;       /* UP_PASSFD_MAGIC */
    uint8_t version;      /* UP_PASSFD_VERSION */
    uint8_t kind;         /* enum up_msg_kind */
    uint32_t payload_len; /* bytes after the header */
    uint64_t conn_id;
    uint64_t arg;
    uint64_t arg2;
    uint32_t flags;
    uint32_t reserved; /* zero */
};

/* Fill hdr for kind with everything else zero. */
void up_msg_init(struct up_msg *hdr, enum up_msg_kind kind);

/* Name of a kind for logs ("CONN"), "?" for an unknown one. */
const char *up_msg_kind_name(unsigned kind);

/* An outgoing message, ready for sendmsg() or IORING_OP_SENDMSG. It must stay
 * alive (not move) until the send completed: msg points into it. */
struct up_passfd_out {
    struct msghdr msg;
    struct iovec iov[2];
    struct up_msg hdr;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cmsg;
};

/* Prepare out to send hdr (its magic, version and payload_len are set here),
 * payload (borrowed: must stay valid until the send completed) and fd
 * (borrowed; -1 for none). Returns 0, or -E2BIG if len is over
 * UP_PASSFD_MAX_PAYLOAD. */
int up_passfd_prep(struct up_passfd_out *out, const struct up_msg *hdr, const void *payload,
                   size_t len, int fd);

/* The same for a CONNS: room for UP_PASSFD_MAX_FDS fds. */
struct up_passfd_out_fds {
    struct msghdr msg;
    struct iovec iov[2];
    struct up_msg hdr;
    union {
        char buf[CMSG_SPACE(sizeof(int) * UP_PASSFD_MAX_FDS)];
        struct cmsghdr align;
    } cmsg;
};

/* up_passfd_prep() with nfds fds (1 to UP_PASSFD_MAX_FDS, borrowed).
 * Returns 0, -E2BIG (payload), or -EINVAL (nfds). */
int up_passfd_prep_fds(struct up_passfd_out_fds *out, const struct up_msg *hdr, const void *payload,
                       size_t len, const int *fds, size_t nfds);

/* A buffer for one incoming message, for recvmsg() or IORING_OP_RECVMSG. */
struct up_passfd_in {
    struct msghdr msg;
    struct iovec iov[2];
    struct up_msg hdr;
    union {
        /* Room for more fds than any message may carry, so that a peer
         * sending too many is detected (and all closed) rather than
         * silently truncated. */
        char buf[CMSG_SPACE(sizeof(int) * (UP_PASSFD_MAX_FDS + 4))];
        struct cmsghdr align;
    } cmsg;
};

/* Prepare in to receive into payload (cap bytes, borrowed). Call it again
 * before every receive: the kernel shrinks msg_controllen and sets
 * msg_flags on each one. */
void up_passfd_in_prep(struct up_passfd_in *in, void *payload, size_t cap);

/* Check a message received into in; n is recvmsg()'s result (or cqe->res).
 * Takes ownership of every fd that arrived. On success returns the payload
 * length (>= 0) and stores the fd (or -1) in *ret_fd, which the caller then
 * owns. On failure closes every fd that arrived and returns:
 *   -EPIPE   n == 0: the peer closed the channel
 *   -EMFILE  the message arrived whole and checked out (in->hdr is valid),
 *            but the kernel dropped its fd: the receiver is at its fd limit
 *            (MSG_CTRUNC with no fd at all). The sender's copy of the fd is
 *            all that is left of it.
 *   -EPROTO  truncated message or control data (MSG_TRUNC, or MSG_CTRUNC
 *            with fds), bad magic, unknown kind, payload_len not matching,
 *            unexpected cmsg, more than one fd
 *   -EPROTONOSUPPORT  another protocol version (a mismatched binary)
 *   n        when n < 0 (an errno from the receive itself)
 * *ret_fd is untouched on failure. */
int up_passfd_decode(struct up_passfd_in *in, ssize_t n, int *ret_fd);

/* up_passfd_decode() for a receiver that takes CONNS: the fds go to
 * fds[0..*ret_nfds) (cap at least UP_PASSFD_MAX_FDS). A CONNS checks out
 * when its payload holds arg entries (1 to UP_PASSFD_MAX_FDS) and as many
 * fds came, or fewer with MSG_CTRUNC: the receiver is at its fd limit and
 * the kernel dropped the rest, whose entries it declines (the sender's
 * copies are all that is left of them). Every other kind as
 * up_passfd_decode(), one fd at most. */
int up_passfd_decode_fds(struct up_passfd_in *in, ssize_t n, int *fds, size_t cap,
                         size_t *ret_nfds);

/* Send one message with sendmsg(). flags: MSG_DONTWAIT for a non-blocking
 * send on a blocking socket (MSG_NOSIGNAL is always added). Borrows fd: the
 * caller still owns its copy. Returns 0, -EAGAIN when the channel is full,
 * -EPIPE when the peer is gone, -E2BIG, or another -errno. */
int up_passfd_send(int sock, const struct up_msg *hdr, const void *payload, size_t len, int fd,
                   int flags);

/* Receive one message with recvmsg() (MSG_CMSG_CLOEXEC always added). On
 * success fills *ret_hdr, copies the payload into payload (cap bytes) and
 * returns its length; *ret_fd gets the fd or -1, owned by the caller.
 * Errors as up_passfd_decode(), plus -EAGAIN when nothing is there (a
 * non-blocking socket or MSG_DONTWAIT). A payload longer than cap is -EPROTO. */
int up_passfd_recv(int sock, struct up_msg *ret_hdr, void *payload, size_t cap, int *ret_fd,
                   int flags);

/* Create a channel: socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC).
 * Returns 0 or -errno. */
int up_passfd_pair(int ret_fds[2]);

#endif
