/*
 * ctl: the control socket of a running master, and its client side.
 *
 * A unix stream socket at the path up_cli_control_path() gives. A client
 * connects, writes one command line, and reads the answer until EOF:
 *
 *   reload        start a reload; the answer says which generation starts
 *   reload wait   the same, answered once it ended: serving, or failed and
 *                 why (the answer then starts with "error")
 *   status        the status report; "status json" the same as one JSON
 *                 object
 *   stop          stop gracefully
 *   upgrade       start the up-run binary this master was started as, as a
 *                 new master taking over every socket; answered once it
 *                 serves (or failed, and why)
 * The master checks the peer's credentials: only
 * its own user (or root) may command it; the client checks the master's the
 * same way and prints nothing of an answer from anyone else.
 *
 * Other users of the machine may create files too, so the path is trusted
 * only under these rules, checked by the master before it binds (the
 * client checks a default directory and that the path is a socket before
 * it connects, then the master's credentials):
 *
 *   - The default directories (/tmp/up-UID, and $XDG_RUNTIME_DIR, which the
 *     XDG spec requires to be so anyway) must be private: a real directory
 *     (lstat: not a symlink), owned by this user, with no permission bit for
 *     group or others. Another user who made /tmp/up-UID first could
 *     otherwise squat or serve the socket name. The master creates
 *     /tmp/up-UID with mode 0700 when it is missing and refuses to start
 *     (exit 3) when it is not private, saying how to fix it.
 *   - An explicit --control PATH is the operator's choice, so its directory
 *     needs less: it must not belong to another user (root is fine), and if
 *     every user may write to it, it must be sticky (like /tmp), so that
 *     nobody else can remove or rename our socket. A group-writable
 *     directory is allowed: its group is trusted by whoever set it up.
 *   - The socket path itself is never followed: a symlink, a regular file or
 *     anything else that is not a socket is refused and left alone. A socket
 *     nobody answers on is stale and replaced, but only when it is this
 *     user's; one that answers means another master is running there.
 *
 * The socket is created with mode 0600 (bound under umask 0177, so it never
 * exists with a wider mode).
 */
#ifndef UP_CTL_H
#define UP_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"

struct up_ctl;

/* Where the control path comes from, which decides how its directory is
 * checked (see above). */
enum up_ctl_place {
    UP_CTL_EXPLICIT, /* --control PATH */
    UP_CTL_XDG,      /* $XDG_RUNTIME_DIR/up-PORT.sock */
    UP_CTL_TMP,      /* /tmp/up-UID/PORT.sock */
};

/* What the commands do: the owner's. Each writes its answer into buf (cap
 * bytes) and returns its length; an answer starting "error" makes the
 * client exit 1. reload with wait may return UP_CTL_LATER instead and
 * answer with up_ctl_reply(id) when the outcome is known. */
#define UP_CTL_LATER ((size_t)-1)
struct up_ctl_cbs {
    size_t (*reload)(void *ctx, uint64_t id, bool wait, char *buf, size_t cap);
    size_t (*status)(void *ctx, bool json, char *buf, size_t cap);
    size_t (*stop)(void *ctx, char *buf, size_t cap);
    size_t (*upgrade)(void *ctx, uint64_t id, char *buf, size_t cap);
};

/* Open the control socket at path. Returns 0 with *ret set, or -errno with
 * err saying what is wrong and how to fix it (the caller logs it):
 * -EADDRINUSE when another master answers there, -EPERM when the directory
 * or the path is not to be trusted under the rules above, -EEXIST when
 * something that is not a socket is at the path, -ENOSPC and the like when
 * its file system has no room (only after the path was found free of
 * another master). */
int up_ctl_open(struct up_loop *loop, const char *path, enum up_ctl_place place,
                const struct up_ctl_cbs *cbs, void *ctx, struct up_ctl **ret, char *err,
                size_t errcap);

/* Serve on fd, a control socket an old master bound at path and passed on
 * (taken). 0, or -errno. */
int up_ctl_open_fd(struct up_loop *loop, const char *path, int fd, const struct up_ctl_cbs *cbs,
                   void *ctx, struct up_ctl **ret);

/* The listening socket (still owned here), for a new master. */
int up_ctl_fd(const struct up_ctl *ctl);

/* A new master serves the path now (handed true): take no new client, and
 * leave the socket file to it when closed; false takes it back. */
void up_ctl_hand_over(struct up_ctl *ctl, bool handed);

/* The deferred answer to the command id. 0, or -ENOENT when its client
 * is gone (it gave up waiting). */
int up_ctl_reply(struct up_ctl *ctl, uint64_t id, const char *text);

/* Close the socket, end every client, and remove the socket file. NULL is
 * fine. */
void up_ctl_close(struct up_ctl *ctl);

/* Client side: send cmd to the master at path and print its answer on
 * stdout, waiting at most timeout_ms for it. Blocks (a command-line tool).
 * Returns the exit code: 0 done, 1 the master said no, is not there, is
 * not to be trusted, or gave no answer in time (a message on stderr says
 * why). owner: the user the master runs as (this one, or the one it became
 * with --user): a default directory of owner's, and a master running as
 * owner (or as this user, or root) are trusted. */
int up_ctl_command(const char *path, enum up_ctl_place place, const char *cmd, uint64_t timeout_ms,
                   uid_t owner);

/* The checks behind the rules above, for the master, the client and tests.
 * Each returns 0 when trusted, -ENOENT when dir does not exist, -EPERM (or
 * another -errno) with a sentence in err (cap bytes) naming dir and what is
 * wrong. None creates or changes anything; none logs. */

/* A default directory: private to this user (not a symlink, owned by the
 * effective uid, mode without group or other bits). The _of variant: to
 * the user owner. */
int up_ctl_check_private_dir(const char *dir, char *err, size_t cap);
int up_ctl_check_private_dir_of(const char *dir, uid_t owner, char *err, size_t cap);

/* The directory of an explicit --control PATH (symlinks to it followed):
 * owned by this user or root, and sticky if others may write to it. */
int up_ctl_check_shared_dir(const char *dir, char *err, size_t cap);

/* The peer of the connected unix socket fd runs as this user, as root, or
 * as owner: 0, or -EPERM with *ret_uid set to the peer's uid, or -errno
 * from getsockopt(SO_PEERCRED). */
int up_ctl_check_peer(int fd, uid_t owner, uid_t *ret_uid);

#endif
