#include "ctl.h"

#include "asrv.h"
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

struct up_ctl {
    struct up_master *m;
    struct up_asrv *srv;
    char path[108];
};

static bool line_complete(const char *buf, size_t len)
{
    return memchr(buf, '\n', len) != NULL;
}

static size_t run_command(void *ctx, char *buf, size_t len, size_t cap)
{
    struct up_ctl *ctl = ctx;
    struct up_master *m = ctl->m;
    (void)len;
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "%.*s", (int)strcspn(buf, "\r\n"), buf);
    int n;
    if (strcmp(cmd, "reload") == 0) {
        up_master_reload(m, "control socket");
        n = snprintf(buf, cap, "reloading: generation %u starting\n", m->next_gen);
    } else if (strcmp(cmd, "status") == 0) {
        return up_master_status(m, buf, cap);
    } else if (strcmp(cmd, "stop") == 0) {
        up_master_stop(m, true);
        n = snprintf(buf, cap, "stopping\n");
    } else {
        n = snprintf(buf, cap, "error: unknown command '%s' (use reload, status or stop)\n", cmd);
    }
    return n > 0 ? (size_t)n : 0;
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

/* Bind the control socket at path. A socket file nobody answers on is stale
 * and replaced; a live one means another master: -EADDRINUSE. */
static int bind_socket(const char *path, int *ret_fd)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int r = make_parent_dir(path);
    int fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r == 0 && fd < 0) {
        r = -errno;
    }
    if (r == 0) {
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
            r = -EADDRINUSE;
        } else {
            unlink(path);
        }
        up_close(probe);
    }
    if (r == 0 && (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, 0600) < 0 ||
                   listen(fd, 16) < 0)) {
        r = -errno;
    }
    if (r < 0) {
        up_close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int up_ctl_open(struct up_master *m, struct up_ctl **ret)
{
    struct up_ctl *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        return -ENOMEM;
    }
    ctl->m = m;
    int fd = -1;
    int r = up_cli_control_path(m->cli, ctl->path, sizeof(ctl->path));
    if (r >= 0) {
        r = bind_socket(ctl->path, &fd);
    }
    if (r >= 0) {
        r = up_asrv_open_take(m->loop, fd, true, line_complete, run_command, ctl, &ctl->srv);
    }
    if (r < 0) {
        up_log(UP_LOG_ERR, "control socket %s: %s%s", ctl->path, strerror(-r),
               r == -EADDRINUSE ? " (another up-run is running there; use --control)" : "");
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
    up_asrv_close(ctl->srv);
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
    bool error = false, first = true;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        error = error || (first && strncmp(buf, "error", 5) == 0);
        first = false;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    up_close(fd);
    return code != 0 || error ? 1 : 0;
}
