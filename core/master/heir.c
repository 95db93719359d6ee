/*
 * heir: the new master's end of the channel to the one it replaces. See
 * heir.h.
 */
#include "heir.h"

#include "fd.h"
#include "list.h"
#include "log.h"
#include "passfd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ACKs kept while the channel is full; one message carries them all. */
#define MAX_ACKS (UP_PASSFD_MAX_PAYLOAD / sizeof(uint64_t))

struct up_heir {
    struct up_loop *loop;
    const struct up_heir_cbs *cbs;
    void *ctx;
    int chan;            /* owned */
    struct up_op rx, tx; /* POLLIN, and POLLOUT while ACKs wait */
    bool closing;
    uint64_t taken;
    uint64_t acks[MAX_ACKS];
    size_t nacks;
    char payload[UP_PASSFD_MAX_PAYLOAD];
};

static void watch_rx(struct up_heir *h);

/* Send the ACKs kept: 0, or -EAGAIN (kept; sent on POLLOUT), or -errno. */
static int flush_acks(struct up_heir *h)
{
    if (h->nacks == 0) {
        return 0;
    }
    struct up_msg m;
    up_msg_init(&m, UP_MSG_ACK);
    m.arg = h->nacks;
    int r = up_passfd_send(h->chan, &m, h->acks, h->nacks * sizeof(h->acks[0]), -1, MSG_DONTWAIT);
    if (r == 0) {
        h->nacks = 0;
    } else if (r == -EAGAIN && !h->tx.busy) {
        (void)up_loop_poll(h->loop, &h->tx, h->chan, POLLOUT);
    }
    return r;
}

static void on_tx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_heir *h = up_container_of(op, struct up_heir, tx);
    if (res >= 0 && !h->closing) {
        (void)flush_acks(h);
    }
}

/* One message from the old master; false when the channel is done. */
static bool on_message(struct up_heir *h, const struct up_msg *m, int fd, size_t len)
{
    switch (m->kind) {
    case UP_MSG_CONN:
        if (fd < 0) {
            break;
        }
        if (h->nacks == MAX_ACKS && flush_acks(h) < 0) {
            /* Not taken: the old master still has it and routes it again
             * once the channel moves. */
            up_close(fd);
            return true;
        }
        h->acks[h->nacks++] = m->conn_id;
        h->taken++;
        h->cbs->conn(h->ctx, fd, h->payload, len);
        return true;
    case UP_MSG_DRAIN:
        up_log(UP_LOG_INFO, "the old master stops before the hand-over: stopping too");
        h->cbs->stop(h->ctx);
        return true;
    default:
        break;
    }
    up_close(fd);
    return true;
}

static void on_rx(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_heir *h = up_container_of(op, struct up_heir, rx);
    if (h->closing || res < 0) {
        return;
    }
    for (;;) {
        struct up_msg m;
        int fd = -1;
        int n = up_passfd_recv(h->chan, &m, h->payload, sizeof(h->payload), &fd, MSG_DONTWAIT);
        if (n == -EAGAIN) {
            break;
        }
        if (n == -EPIPE || n == -ECONNRESET || n == -EBADF) {
            up_log(UP_LOG_INFO,
                   "the old master is gone (%llu connections passed on): serving "
                   "alone",
                   (unsigned long long)h->taken);
            h->closing = true;
            h->cbs->alone(h->ctx);
            return;
        }
        if (n < 0) {
            /* A message we cannot use (its fd, if any, closed): the old
             * master routes that connection again when we do not ACK. */
            up_log(UP_LOG_WARN, "the old master's channel: %s, message dropped", strerror(-n));
            continue;
        }
        (void)on_message(h, &m, fd, (size_t)n);
    }
    (void)flush_acks(h);
    watch_rx(h);
}

static void watch_rx(struct up_heir *h)
{
    if (!h->closing && up_loop_poll(h->loop, &h->rx, h->chan, POLLIN) < 0) {
        h->closing = true;
        h->cbs->alone(h->ctx);
    }
}

int up_heir_open(struct up_loop *loop, int chan, const struct up_heir_cbs *cbs, void *ctx,
                 struct up_heir **ret)
{
    struct up_heir *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        up_close(chan);
        return -ENOMEM;
    }
    h->loop = loop;
    h->cbs = cbs;
    h->ctx = ctx;
    h->chan = chan;
    h->rx.cb = on_rx;
    h->tx.cb = on_tx;
    (void)up_fd_set_nonblock(chan, 1);
    (void)fcntl(chan, F_SETFD, FD_CLOEXEC); /* nothing we start may keep it */
    watch_rx(h);
    *ret = h;
    return 0;
}

int up_heir_ready(struct up_heir *h)
{
    struct up_msg m;
    up_msg_init(&m, UP_MSG_READY);
    /* A READY is one small message on an idle channel: it fits. */
    return up_passfd_send(h->chan, &m, NULL, 0, -1, MSG_DONTWAIT);
}

uint64_t up_heir_taken(const struct up_heir *h)
{
    return h->taken;
}

void up_heir_close(struct up_heir *h)
{
    if (h == NULL) {
        return;
    }
    h->closing = true;
    up_loop_cancel(h->loop, &h->rx);
    up_loop_cancel(h->loop, &h->tx);
    up_loop_drain(h->loop, 1000);
    h->chan = up_loop_close(h->loop, h->chan);
    free(h);
}
