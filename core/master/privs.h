/*
 * privs: the user a master started as root runs as once its listeners are
 * bound (--user NAME[:GROUP]): looked up before anything starts, dropped
 * for good (supplementary groups, gid, uid) before the master creates its
 * files or starts a worker, so that neither the master, which reads every
 * client's first request, nor the app runs as root. Never logs.
 */
#ifndef UP_PRIVS_H
#define UP_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct up_privs {
    uid_t uid;
    gid_t gid;
    char user[64];
};

/* Look up "NAME" or "NAME:GROUP" (names or numbers; without GROUP the
 * user's primary group). Returns 0, or -EINVAL with err (cap bytes) saying
 * which name is unknown. */
int up_privs_lookup(const char *spec, struct up_privs *ret, char *err, size_t cap);

/* Become p->uid and p->gid, with the user's supplementary groups, and check
 * that root cannot be regained. Returns 0, or -errno with err. */
int up_privs_drop(const struct up_privs *p, char *err, size_t cap);

#endif
