/*
 * evil-worker: a worker that breaks the channel protocol on purpose. up-run
 * starts it instead of up-worker when UP_WORKER_BIN names it, and it plays
 * the user's code gone wrong, or hostile: the master must treat its channel
 * as a trust boundary. What it does comes from EVIL_MODE:
 *
 *   noack     READY, then take every CONN and never ACK one
 *   badacks   READY, then 100 ACKs of 8,192 ids nobody sent, then as noack
 *   handback  READY, then hand every CONN straight back, never DRAINING
 *   prefix    READY; at the first CONN, DRAINING, then that CONN (and
 *             every later one) back with 20,000 bytes "already read" (more
 *             than any request head may be)
 *
 * After each CONN it writes "evil: received N" to stderr (the master's log).
 * It exits when the channel ends. Blocking and single-minded on purpose.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passfd.h"

#define CHAN 3
#define EVIL_PREFIX 20000

static int send_simple(enum up_msg_kind kind, const void *payload, size_t len)
{
    struct up_msg hdr;
    up_msg_init(&hdr, kind);
    if (kind == UP_MSG_ACK) {
        hdr.arg = len / sizeof(uint64_t);
    }
    return up_passfd_send(CHAN, &hdr, payload, len, -1, 0);
}

int main(void)
{
    const char *mode = getenv("EVIL_MODE");
    mode = mode != NULL ? mode : "noack";
    static char payload[UP_PASSFD_MAX_PAYLOAD];
    static uint64_t ids[8192];
    if (send_simple(UP_MSG_READY, NULL, 0) < 0) {
        return 1;
    }
    if (strcmp(mode, "badacks") == 0) {
        for (size_t i = 0; i < 8192; i++) {
            ids[i] = 0xdead0000u + i;
        }
        for (int i = 0; i < 100; i++) {
            if (send_simple(UP_MSG_ACK, ids, sizeof(ids)) < 0) {
                return 1;
            }
        }
    }
    int held[4096];
    long n = 0;
    for (;;) {
        struct up_msg hdr;
        int fd = -1;
        int r = up_passfd_recv(CHAN, &hdr, payload, sizeof(payload), &fd, 0);
        if (r == -EPIPE || (r < 0 && r != -EINTR && r != -EPROTO)) {
            return 0;
        }
        if (r < 0 || hdr.kind != UP_MSG_CONN || fd < 0) {
            if (fd >= 0) {
                close(fd);
            }
            continue;
        }
        n++;
        fprintf(stderr, "evil: received %ld\n", n);
        if (n == 1 && strcmp(mode, "prefix") == 0 && send_simple(UP_MSG_DRAINING, NULL, 0) < 0) {
            return 1;
        }
        if (strcmp(mode, "handback") == 0 || strcmp(mode, "prefix") == 0) {
            struct up_msg back;
            up_msg_init(&back, UP_MSG_CONN);
            back.conn_id = hdr.conn_id;
            size_t len = strcmp(mode, "prefix") == 0 ? EVIL_PREFIX : 0;
            memset(payload, 'x', len);
            (void)up_passfd_send(CHAN, &back, payload, len, fd, 0);
            close(fd);
        } else if (n <= (long)(sizeof(held) / sizeof(held[0]))) {
            held[n - 1] = fd; /* never ACKed, never served: kept open */
        } else {
            close(fd);
        }
    }
}
