#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool numeric(const char *s, unsigned long *ret)
{
    char *end;
    if (s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    *ret = strtoul(s, &end, 10);
    return *end == '\0' && errno == 0 && *ret < 0xffffffffUL;
}

int up_privs_lookup(const char *spec, struct up_privs *ret, char *err, size_t cap)
{
    char name[64];
    const char *colon = strchr(spec, ':');
    size_t len = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    if (len == 0 || len >= sizeof(name) || (colon != NULL && colon[1] == '\0')) {
        snprintf(err, cap, "'%s' is not NAME or NAME:GROUP", spec);
        return -EINVAL;
    }
    memcpy(name, spec, len);
    name[len] = '\0';
    unsigned long num;
    struct passwd *pw = numeric(name, &num) ? getpwuid((uid_t)num) : getpwnam(name);
    if (pw == NULL) {
        snprintf(err, cap, "no user '%s' on this machine", name);
        return -EINVAL;
    }
    struct up_privs p = {.uid = pw->pw_uid, .gid = pw->pw_gid};
    snprintf(p.user, sizeof(p.user), "%s", pw->pw_name);
    if (colon != NULL) {
        const char *gname = colon + 1;
        struct group *gr = numeric(gname, &num) ? getgrgid((gid_t)num) : getgrnam(gname);
        if (gr == NULL) {
            snprintf(err, cap, "no group '%s' on this machine", gname);
            return -EINVAL;
        }
        p.gid = gr->gr_gid;
    }
    *ret = p;
    return 0;
}

int up_privs_drop(const struct up_privs *p, char *err, size_t cap)
{
    if (geteuid() == p->uid && getegid() == p->gid) {
        return 0; /* already */
    }
    if (initgroups(p->user, p->gid) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
        int r = -errno;
        snprintf(err, cap, "cannot become %s (uid %u, gid %u): %s%s", p->user, (unsigned)p->uid,
                 (unsigned)p->gid, strerror(-r),
                 r == -EPERM ? " (only root may change its user)" : "");
        return r;
    }
    if (p->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, cap, "became %s but could become root again", p->user);
        return -EPERM;
    }
    return 0;
}
