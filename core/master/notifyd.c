/*
 * notifyd: the master's own NOTIFY_SOCKET. See notifyd.h.
 */
#include "notifyd.h"

#include "ctl.h"
#include "fd.h"
#include "list.h"
#include "procstat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct up_notifyd {
    struct up_loop *loop;
    const struct up_notifyd_cbs *cbs;
    void *ctx;
    int fd; /* owned: the datagram socket */
    struct up_op op;
    bool closing; /* freed when the read in flight ends */
    struct msghdr msg;
    struct iovec iov;
    union {
        /* Credentials, and room for fds a sender may attach (closed). */
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } cmsg;
    char data[UP_NOTICE_MAX];
    char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
};

/* Whether line (len bytes) is KEY=VALUE with this key: the value, or NULL. */
static const char *value_of(const char *line, size_t len, const char *key, size_t *ret_len)
{
    size_t k = strlen(key);
    if (len <= k || memcmp(line, key, k) != 0 || line[k] != '=') {
        return NULL;
    }
    *ret_len = len - k - 1;
    return line + k + 1;
}

void up_notice_parse(const char *buf, size_t len, struct up_notice *n)
{
    n->ready = n->stopping = false;
    n->status = NULL;
    n->status_len = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t end = nl != NULL ? (size_t)(nl - buf) : len;
        const char *line = buf + at;
        size_t llen = end - at, vlen = 0;
        const char *v;
        if ((v = value_of(line, llen, "READY", &vlen)) != NULL) {
            n->ready = vlen == 1 && v[0] == '1';
        } else if ((v = value_of(line, llen, "STOPPING", &vlen)) != NULL) {
            n->stopping = vlen == 1 && v[0] == '1';
        } else if ((v = value_of(line, llen, "STATUS", &vlen)) != NULL) {
            n->status = v;
            n->status_len = vlen;
        }
        at = end + 1;
    }
}

/* pid's parent and process group from /proc/PID/stat ("state ppid pgrp
 * ..." after the command). Returns 0, or -ESRCH when it is gone. */
static int proc_parent(pid_t pid, pid_t *ret_ppid, pid_t *ret_pgid)
{
    char buf[512];
    const char *p = up_procstat_stat(pid, buf, sizeof(buf));
    int ppid, pgid;
    char state;
    if (p == NULL || sscanf(p, "%c %d %d", &state, &ppid, &pgid) != 3) {
        return -ESRCH;
    }
    *ret_ppid = ppid;
    *ret_pgid = pgid;
    return 0;
}

/* The sender's process group and parents, up to the master or init. */
static void lineage(struct up_notice *n)
{
    pid_t me = getpid(), pid = n->pid, ppid = 0, pgid = 0;
    n->pgid = 0;
    n->nancestors = 0;
    while (n->nancestors < UP_NOTICE_MAX_ANCESTORS && proc_parent(pid, &ppid, &pgid) == 0) {
        if (pid == n->pid) {
            n->pgid = pgid;
        }
        if (ppid <= 1 || ppid == me) {
            break;
        }
        n->ancestors[n->nancestors++] = ppid;
        pid = ppid;
    }
}

/* Close every fd a datagram brought; the credentials, or NULL. */
static const struct ucred *take_cmsgs(struct msghdr *msg)
{
    const struct ucred *cred = NULL;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) {
            continue;
        }
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            cred = (const struct ucred *)(const void *)CMSG_DATA(c);
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfds; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                up_close(fd);
            }
        }
    }
    return cred;
}

static void on_datagram(struct up_notifyd *nd, size_t len)
{
    const struct ucred *cred = take_cmsgs(&nd->msg);
    if (cred == NULL) {
        nd->cbs->dropped(nd->ctx, 0, 0, "no credentials");
        return;
    }
    if (cred->uid != geteuid() && cred->uid != 0) {
        nd->cbs->dropped(nd->ctx, cred->pid, cred->uid, "another user");
        return;
    }
    struct up_notice n = {.pid = cred->pid, .uid = cred->uid};
    up_notice_parse(nd->data, len, &n);
    lineage(&n);
    nd->cbs->notice(nd->ctx, &n);
}

static void read_next(struct up_notifyd *nd);

static void on_read(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop;
    (void)flags;
    struct up_notifyd *nd = up_container_of(op, struct up_notifyd, op);
    if (nd->closing) {
        if (res >= 0) {
            (void)take_cmsgs(&nd->msg);
        }
        nd->fd = up_loop_close(nd->loop, nd->fd);
        free(nd);
        return;
    }
    if (res >= 0) {
        on_datagram(nd, (size_t)res);
    }
    /* An error (ENOBUFS, a truncated control part) is one datagram lost,
     * never the socket. */
    read_next(nd);
}

static void read_next(struct up_notifyd *nd)
{
    nd->iov = (struct iovec){.iov_base = nd->data, .iov_len = sizeof(nd->data)};
    nd->msg = (struct msghdr){
        .msg_iov = &nd->iov,
        .msg_iovlen = 1,
        .msg_control = nd->cmsg.buf,
        .msg_controllen = sizeof(nd->cmsg.buf),
    };
    (void)up_loop_recvmsg(nd->loop, &nd->op, nd->fd, &nd->msg, 0);
}

static int bind_notify(struct up_notifyd *nd, const char *dir, char *err, size_t cap)
{
    int r = up_ctl_check_private_dir(dir, err, cap);
    if (r < 0) {
        return r;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", dir) >= sizeof(a.sun_path)) {
        snprintf(err, cap, "%s/notify: too long for a unix socket address", dir);
        return -ENAMETOOLONG;
    }
    nd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;
    if (nd->fd < 0 || setsockopt(nd->fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0 ||
        bind(nd->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        r = -errno;
        snprintf(err, cap, "%s: %s", a.sun_path, strerror(-r));
        return r;
    }
    memcpy(nd->path, a.sun_path, sizeof(nd->path));
    return 0;
}

int up_notifyd_open(struct up_loop *loop, const char *dir, const struct up_notifyd_cbs *cbs,
                    void *ctx, struct up_notifyd **ret, char *err, size_t cap)
{
    struct up_notifyd *nd = calloc(1, sizeof(*nd));
    if (nd == NULL) {
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    *nd = (struct up_notifyd){.loop = loop, .cbs = cbs, .ctx = ctx, .fd = -1};
    nd->op.cb = on_read;
    int r = bind_notify(nd, dir, err, cap);
    if (r < 0) {
        up_close(nd->fd);
        free(nd);
        return r;
    }
    read_next(nd);
    *ret = nd;
    return 0;
}

const char *up_notifyd_path(const struct up_notifyd *n)
{
    return n->path;
}

void up_notifyd_close(struct up_notifyd *nd)
{
    if (nd == NULL) {
        return;
    }
    unlink(nd->path);
    if (nd->op.busy) {
        nd->closing = true;
        up_loop_cancel(nd->loop, &nd->op);
        return;
    }
    nd->fd = up_loop_close(nd->loop, nd->fd);
    free(nd);
}
