#include "ctl.h"

#include "fd.h"
#include "log.h"
#include "master.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A client that does not send its command line within this time is
 * dropped: the control socket must not collect stuck connections. */
#define CLIENT_TIMEOUT_MS 2000

struct ctl_client {
    struct up_ctl *ctl;
    struct ctl_client *next;
    int fd; /* owned */
    struct up_op op;
    struct up_timer timer;
    char buf[4096]; /* the command, then the answer */
    size_t len, off;
    bool answering;
};

struct up_ctl {
    struct up_master *m;
    int fd; /* owned: the listening socket */
    struct up_op accept;
    char path[108];
    struct ctl_client *clients;
};

static void client_free(struct ctl_client *c)
{
    struct up_ctl *ctl = c->ctl;
    struct ctl_client **pp = &ctl->clients;
    while (*pp != c) {
        pp = &(*pp)->next;
    }
    *pp = c->next;
    up_timer_stop(ctl->m->loop, &c->timer);
    c->fd = up_loop_close(ctl->m->loop, c->fd);
    free(c);
}

static void client_end(struct ctl_client *c)
{
    if (c->op.busy) {
        up_loop_cancel(c->ctl->m->loop, &c->op); /* on_client frees it */
        return;
    }
    client_free(c);
}

static void run_command(struct ctl_client *c)
{
    struct up_master *m = c->ctl->m;
    c->buf[c->len] = '\0';
    c->buf[strcspn(c->buf, "\r\n")] = '\0';
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "%.31s", c->buf);
    if (strcmp(cmd, "reload") == 0) {
        up_master_reload(m, "control socket");
        c->len = (size_t)snprintf(c->buf, sizeof(c->buf), "reloading: generation %u starting\n",
                                  m->next_gen);
    } else if (strcmp(cmd, "status") == 0) {
        c->len = up_master_status(m, c->buf, sizeof(c->buf));
    } else if (strcmp(cmd, "stop") == 0) {
        c->len = (size_t)snprintf(c->buf, sizeof(c->buf), "stopping\n");
        up_master_stop(m, true);
    } else {
        c->len =
            (size_t)snprintf(c->buf, sizeof(c->buf),
                             "error: unknown command '%s' (use reload, status or stop)\n", cmd);
    }
    c->off = 0;
    c->answering = true;
}

static void on_client(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct ctl_client *c = (struct ctl_client *)((char *)op - offsetof(struct ctl_client, op));
    if (res <= 0) {
        client_free(c);
        return;
    }
    if (!c->answering) {
        c->len += (size_t)res;
        if (memchr(c->buf, '\n', c->len) == NULL && c->len < sizeof(c->buf) - 1) {
            if (up_loop_recv(loop, &c->op, c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0) <
                0) {
                client_free(c);
            }
            return;
        }
        run_command(c);
    } else {
        c->off += (size_t)res;
    }
    if (c->off >= c->len ||
        up_loop_send(loop, &c->op, c->fd, c->buf + c->off, c->len - c->off, 0) < 0) {
        client_free(c); /* answered (or the client left): EOF ends it */
    }
}

static void on_client_timeout(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    client_end((struct ctl_client *)((char *)t - offsetof(struct ctl_client, timer)));
}

static void on_accept(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    struct up_ctl *ctl = (struct up_ctl *)((char *)op - offsetof(struct up_ctl, accept));
    if (res >= 0) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        struct ctl_client *c = NULL;
        if (getsockopt(res, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
            (cred.uid != getuid() && cred.uid != 0) || (c = calloc(1, sizeof(*c))) == NULL) {
            up_log(UP_LOG_WARN, "control socket: refused a client (uid or memory)");
            up_close(res);
        } else {
            c->ctl = ctl;
            c->fd = res;
            c->op.cb = on_client;
            c->timer.cb = on_client_timeout;
            c->next = ctl->clients;
            ctl->clients = c;
            up_timer_start(loop, &c->timer, CLIENT_TIMEOUT_MS);
            if (up_loop_recv(loop, &c->op, c->fd, c->buf, sizeof(c->buf) - 1, 0) < 0) {
                client_free(c);
            }
        }
    }
    if (!(flags & UP_OP_F_MORE) && res != -ECANCELED && ctl->fd >= 0) {
        (void)up_loop_accept(loop, &ctl->accept, ctl->fd);
    }
}

static int make_parent_dir(const char *path)
{
    char dir[108];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        return 0;
    }
    *slash = '\0';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

int up_ctl_open(struct up_master *m, struct up_ctl **ret)
{
    struct up_ctl *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        return -ENOMEM;
    }
    ctl->m = m;
    ctl->fd = -1;
    ctl->accept.cb = on_accept;
    int r = up_cli_control_path(m->cli, ctl->path, sizeof(ctl->path));
    if (r >= 0) {
        r = make_parent_dir(ctl->path);
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (r >= 0) {
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", ctl->path);
        ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        r = ctl->fd < 0 ? -errno : 0;
    }
    if (r >= 0) {
        /* Only a socket nobody answers on is stale and may be replaced. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
            r = -EADDRINUSE;
        } else {
            unlink(ctl->path);
        }
        up_close(probe);
    }
    if (r >= 0 && (bind(ctl->fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
                   chmod(ctl->path, 0600) < 0 || listen(ctl->fd, 16) < 0)) {
        r = -errno;
    }
    if (r >= 0) {
        r = up_loop_accept(m->loop, &ctl->accept, ctl->fd);
    }
    if (r < 0) {
        up_log(UP_LOG_ERR, "control socket %s: %s%s", ctl->path, strerror(-r),
               r == -EADDRINUSE ? " (another up-run is running there; use --control)" : "");
        ctl->fd = up_close(ctl->fd);
        free(ctl);
        return r;
    }
    *ret = ctl;
    return 0;
}

void up_ctl_close(struct up_ctl *ctl)
{
    if (ctl == NULL) {
        return;
    }
    struct up_loop *loop = ctl->m->loop;
    while (ctl->clients != NULL) {
        struct ctl_client *c = ctl->clients;
        up_loop_cancel(loop, &c->op);
        while (c->op.busy) {
            up_loop_run_once(loop);
        }
        if (ctl->clients == c) {
            client_free(c);
        }
    }
    up_loop_cancel(loop, &ctl->accept);
    while (ctl->accept.busy) {
        up_loop_run_once(loop);
    }
    ctl->fd = up_loop_close(loop, ctl->fd);
    unlink(ctl->path);
    free(ctl);
}

int up_ctl_command(const struct up_cli *cli, const char *cmd)
{
    char path[108];
    if (up_cli_control_path(cli, path, sizeof(path)) < 0) {
        fprintf(stderr, "up-run: control socket path too long\n");
        return 1;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr,
                "up-run: no master answers on %s: %s\n"
                "Is up-run running? Name it with -p PORT or --control PATH.\n",
                path, strerror(errno));
        up_close(fd);
        return 1;
    }
    char line[64];
    int len = snprintf(line, sizeof(line), "%s\n", cmd);
    int code = write(fd, line, (size_t)len) == len ? 0 : 1;
    char buf[4096];
    ssize_t n;
    bool error = false;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        error = error || strncmp(buf, "error", 5) == 0;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    up_close(fd);
    return code != 0 || error ? 1 : 0;
}
