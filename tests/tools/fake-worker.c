/*
 * fake-worker: a stand-in for up-worker that speaks the channel protocol
 * (fd 3) the way a test needs, started by the master in its place (the
 * generations' spawn bin, or UP_WORKER_BIN for up-run). It loads no app
 * and serves nothing: what it does comes from FAKE_MODE.
 *
 * Well-behaved, for tests of the generations:
 *   good      READY; ACK every CONN and close it; exit 0 at DRAIN or EOF
 *   leave     as good, and SIGTERM makes it send DRAINING (stopped by
 *             someone else than the master)
 *   hold      READY; ACK every CONN; ignore DRAIN: stays until killed
 *   fail      FAIL "fake: init failed", exit 1 (a broken app)
 *   never     never READY (a stuck init); exit at EOF
 *   crash     exit 2 at once, before READY
 *
 * Breaking the protocol on purpose, for the master's trust boundary:
 *   noack     READY, then take every CONN and never ACK one
 *   badacks   READY, then 100 ACKs of 8,192 ids nobody sent, then as noack
 *   handback  READY, then hand every CONN straight back, never DRAINING
 *   prefix    READY; at the first CONN, DRAINING, then that CONN (and
 *             every later one) back with 20,000 bytes "already read" (more
 *             than any request head may be)
 *
 * After each CONN it writes "fake: received N" to stderr (the master's
 * log). Blocking and single-minded on purpose.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "passfd.h"

#define CHAN 3
#define PREFIX 20000

static int send_msg(enum up_msg_kind kind, uint64_t conn_id, const void *payload, size_t len,
                    int fd)
{
    struct up_msg hdr;
    up_msg_init(&hdr, kind);
    hdr.conn_id = conn_id;
    if (kind == UP_MSG_ACK) {
        hdr.arg = len / sizeof(uint64_t);
    }
    return up_passfd_send(CHAN, &hdr, payload, len, fd, 0);
}

static bool is(const char *mode, const char *name)
{
    return strcmp(mode, name) == 0;
}

static void on_term(int sig)
{
    (void)sig;
    int saved = errno;
    (void)send_msg(UP_MSG_DRAINING, 0, NULL, 0, -1); /* sendmsg() is async-signal-safe */
    errno = saved;
}

int main(void)
{
    const char *mode = getenv("FAKE_MODE");
    mode = mode != NULL ? mode : "good";
    static char payload[UP_PASSFD_MAX_PAYLOAD];
    static uint64_t ids[8192];
    if (is(mode, "leave")) {
        /* No SA_RESTART: the blocking recvmsg() returns EINTR, and the loop
         * goes on. */
        struct sigaction sa = {.sa_handler = on_term};
        sigaction(SIGTERM, &sa, NULL);
        mode = "good";
    }
    if (is(mode, "crash")) {
        return 2;
    }
    if (is(mode, "fail")) {
        static const char why[] = "fake: init failed";
        (void)send_msg(UP_MSG_FAIL, 0, why, sizeof(why) - 1, -1);
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    if (!is(mode, "never") && send_msg(UP_MSG_READY, 0, NULL, 0, -1) < 0) {
        return 1;
    }
    if (is(mode, "badacks")) {
        for (size_t i = 0; i < 8192; i++) {
            ids[i] = 0xdead0000u + i;
        }
        for (int i = 0; i < 100; i++) {
            if (send_msg(UP_MSG_ACK, 0, ids, sizeof(ids), -1) < 0) {
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
        if (r >= 0 && hdr.kind == UP_MSG_DRAIN && !is(mode, "hold")) {
            return 0;
        }
        if (r < 0 || hdr.kind != UP_MSG_CONN || fd < 0) {
            if (fd >= 0) {
                close(fd);
            }
            continue;
        }
        n++;
        fprintf(stderr, "fake: received %ld\n", n);
        if (is(mode, "good") || is(mode, "hold")) {
            uint64_t id = hdr.conn_id;
            (void)send_msg(UP_MSG_ACK, 0, &id, sizeof(id), -1);
            close(fd);
        } else if (is(mode, "handback") || is(mode, "prefix")) {
            if (n == 1 && is(mode, "prefix") && send_msg(UP_MSG_DRAINING, 0, NULL, 0, -1) < 0) {
                return 1;
            }
            size_t len = is(mode, "prefix") ? PREFIX : 0;
            memset(payload, 'x', len);
            (void)send_msg(UP_MSG_CONN, hdr.conn_id, payload, len, fd);
            close(fd);
        } else if (n <= (long)(sizeof(held) / sizeof(held[0]))) {
            held[n - 1] = fd; /* never ACKed, never served: kept open */
        } else {
            close(fd);
        }
    }
}
