#include "listeners.h"

#include "listen.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Every passed socket, rather than what -l/-p name. */
static bool all_passed(const struct up_cli *cli, const struct up_activation *act)
{
    return act->n > 0 && cli->nlisten == 0 && !cli->port_given;
}

int up_cli_listeners_port(const struct up_cli *cli, const struct up_activation *act)
{
    for (int i = 0; i < cli->nlisten; i++) {
        int port = up_cli_listen_port(cli->listen[i]);
        if (port > 0) {
            return port;
        }
    }
    for (int i = 0; all_passed(cli, act) && i < act->n; i++) {
        int port = act->fd[i] >= 0 ? up_listen_port(act->fd[i]) : -1;
        if (port > 0) {
            return port;
        }
    }
    return cli->port;
}

static int listen_passed(struct up_server *s, struct up_activation *act, const char *spec)
{
    int fd = up_activation_claim(act, spec);
    if (fd == -ENOENT) {
        up_log(UP_LOG_ERR,
               "--listen fd:%s: no socket of that name was passed (LISTEN_FDS %d%s); name it in "
               "the .socket unit with FileDescriptorName=",
               spec, act->n, act->n == 0 ? ": none, is up-run started by a .socket unit?" : "");
        return -ENOENT;
    }
    if (fd == -EBUSY) {
        up_log(UP_LOG_ERR, "--listen fd:%s: named twice", spec);
        return -EBUSY;
    }
    return up_server_listen_fd(s, fd);
}

int up_cli_listen_all(struct up_server *s, const struct up_cli *cli, struct up_activation *act)
{
    int r = 0;
    if (all_passed(cli, act)) {
        for (int i = 0; r == 0 && i < act->n; i++) {
            char num[16];
            snprintf(num, sizeof(num), "%d", act->fd[i]);
            r = listen_passed(s, act, num);
        }
        if (r == 0) {
            up_log(UP_LOG_INFO, "listening on the %d socket%s systemd passed", act->n,
                   act->n == 1 ? "" : "s");
        }
        return r;
    }
    for (int i = 0; r == 0 && i < cli->nlisten; i++) {
        const char *addr = cli->listen[i];
        r = strncmp(addr, "fd:", 3) == 0 ? listen_passed(s, act, addr + 3)
                                         : up_server_listen(s, addr);
    }
    if (r == 0 && cli->nlisten == 0) {
        char port[16];
        snprintf(port, sizeof(port), "%d", cli->port);
        r = up_server_listen(s, port);
    }
    char first[64] = "";
    int closed = up_activation_close_rest(act, first, sizeof(first));
    if (closed > 0) {
        up_log(UP_LOG_WARN, "closed %d passed socket%s no --listen fd:NAME names (first: %s)",
               closed, closed == 1 ? "" : "s", first);
    }
    return r;
}
