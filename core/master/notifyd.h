/*
 * notifyd: the master's own NOTIFY_SOCKET, where --exec workers say that
 * they are ready (READY=1), what they are doing (STATUS=...) and that they
 * are stopping (STOPPING=1), as they would to systemd (sd_notify(3)).
 *
 * A unix datagram socket, "notify" in a directory private to the master
 * (this user's, mode 0700: checked before binding, as the control socket's
 * is), so that no other user can even reach it. SO_PASSCRED makes the
 * kernel attach each sender's pid and uid, which a sender cannot forge
 * without privileges; a datagram from another user (root aside) is
 * dropped here all the same. Which pid may speak for which worker is the
 * owner's to decide (it knows the workers): each notice comes with the
 * sender's process group and parent chain, read from /proc, for
 * --notify-access=all. A sender that exits before its datagram is read has
 * no chain any more: only its pid counts then.
 *
 * fds sent along (FDSTORE=1) are closed: the master keeps none. One
 * datagram is read at a time, on the loop; at most UP_NOTICE_MAX bytes of
 * it count. Never blocks (a few small reads of /proc aside), never logs:
 * what it drops it reports, for the owner to log.
 */
#ifndef UP_NOTIFYD_H
#define UP_NOTIFYD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "loop.h"

#define UP_NOTICE_MAX 4096
#define UP_NOTICE_MAX_ANCESTORS 8

/* One datagram, parsed. */
struct up_notice {
    pid_t pid; /* the sender, as the kernel says */
    uid_t uid;
    bool ready;         /* READY=1 */
    bool stopping;      /* STOPPING=1 */
    const char *status; /* STATUS=...'s value (not NUL-terminated), or NULL */
    size_t status_len;
    pid_t pgid;                               /* its process group; 0 unknown */
    pid_t ancestors[UP_NOTICE_MAX_ANCESTORS]; /* its parent, grandparent... */
    int nancestors;
};

struct up_notifyd;

struct up_notifyd_cbs {
    /* A datagram from this user (or root). n and its strings are valid
     * during the call. */
    void (*notice)(void *ctx, const struct up_notice *n);
    /* A datagram dropped: from another user, or without credentials. */
    void (*dropped)(void *ctx, pid_t pid, uid_t uid, const char *why);
};

/* Parse the lines of one datagram (KEY=VALUE, newline-separated; unknown
 * keys ignored) into n's flags and status; pid, uid and the chain are left
 * as they are. Pure. */
void up_notice_parse(const char *buf, size_t len, struct up_notice *n);

/* Bind dir/notify and read it on loop. dir must be private (see above).
 * Returns 0 with *ret, or -errno with err (cap bytes) saying why. */
int up_notifyd_open(struct up_loop *loop, const char *dir, const struct up_notifyd_cbs *cbs,
                    void *ctx, struct up_notifyd **ret, char *err, size_t cap);

/* The socket's path: what NOTIFY_SOCKET names. */
const char *up_notifyd_path(const struct up_notifyd *n);

/* Stop reading, remove the socket, and free n (once its read is done: the
 * loop must run on for that). NULL does nothing. */
void up_notifyd_close(struct up_notifyd *n);

#endif
