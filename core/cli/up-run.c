/*
 * up-run: the master. Serves an app with zero-downtime reloads.
 *
 *   up-run [options] APP.so [-- app args]
 *   up-run [options] --exec -- CMD [ARGS...]
 *   up-run reload | status | stop | upgrade [-p PORT | --control PATH]
 *
 * A master started by `up-run upgrade` finds UP_HEIR_FDS in its
 * environment: the sockets the old master passed (see core/master/kind.h,
 * HEIR), which it serves instead of binding its own.
 *
 * Exit codes: 0 clean, 1 runtime failure, 2 usage, 3 start-up failure.
 */
#include "cli.h"
#include "listeners.h"
#include "ctl.h"
#include "fd.h"
#include "kind.h"
#include "log.h"
#include "title.h"
#include "up/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The control socket cli names, and how its directory is checked. */
static int control_path(const struct up_cli *cli, char *buf, size_t cap,
                        enum up_ctl_place *ret_place)
{
    *ret_place = cli->control != NULL              ? UP_CTL_EXPLICIT
                 : up_cli_control_xdg(cli) != NULL ? UP_CTL_XDG
                                                   : UP_CTL_TMP;
    return up_cli_control_path(cli, buf, cap);
}

static int command(const struct up_cli *cli, const char *cmd)
{
    char path[256];
    enum up_ctl_place place;
    if (control_path(cli, path, sizeof(path), &place) < 0) {
        fprintf(stderr, "up-run: control socket path too long\n");
        return 1;
    }
    /* A master started with --user runs as that user: trust it. */
    return up_ctl_command(path, place, cmd, cli->wait_ms,
                          cli->user != NULL ? cli->user_uid : geteuid());
}

/* The command line, as the library's options. */
static void server_opts(const struct up_cli *cli, const char *control, struct up_server_opts *o)
{
    *o = (struct up_server_opts){
        .kind = !cli->exec     ? UP_WORKERS_APP
                : cli->handoff ? UP_WORKERS_HANDOFF
                               : UP_WORKERS_EXEC,
        .app = cli->app,
        .app_argv = cli->exec ? NULL : cli->app_argv + 1,
        .app_argc = cli->exec ? 0 : cli->app_argc - 1,
        .exec_argv = cli->exec ? cli->app_argv : NULL,
        .stop_signal = cli->stop_signal,
        .ready_after_ms = cli->ready_after_ms,
        .notify_access_all = cli->notify_access_all,
        .workers = cli->workers,
        .drain_timeout_ms = cli->drain_timeout_ms,
        .migrate_at_deadline = cli->migrate_at_deadline,
        .max_draining = cli->max_draining,
        .ws_drain_grace_ms = cli->ws_drain_grace_ms > 0 ? cli->ws_drain_grace_ms : UP_SERVER_ZERO,
        .close_spread_ms = cli->close_spread_ms > 0 ? cli->close_spread_ms : UP_SERVER_ZERO,
        .access_log = cli->access_log,
        .access_log_format = cli->access_log_format,
        .no_respawn = !cli->respawn,
        .ready_manual = cli->ready_manual,
        .ready_timeout_ms = cli->ready_timeout_ms,
        .header_timeout_ms = cli->header_timeout_ms,
        .queue_timeout_ms = cli->queue_timeout_ms,
        .max_head = cli->max_head,
        .backend = (int)cli->backend,
        .title = cli->title,
        .require = cli->require,
        .nrequire = cli->nrequire,
        .control = control,
        .control_private = cli->control == NULL,
        .metrics = cli->metrics,
        .pidfile = cli->pidfile,
        .build_cmd = cli->build_cmd,
        .signals = true,
        .user = cli->user,
        .reuseport = cli->reuseport,
    };
    if (cli->watch) {
        o->watch_dir = cli->watch_dir;
    }
}

/* Started by an old master's upgrade: UP_HEIR_FDS names fds 4 on
 * ("listen,listen,control,metrics,stderr"), fd 3 is the channel. The
 * listeners go into act, as if systemd had passed them, the rest into h.
 * Returns 1 when started so, 0 when not, -1 when the variable is bad. */
static int heir_take(struct up_heir_fds *h, struct up_activation *act)
{
    const char *names = getenv("UP_HEIR_FDS");
    *h = (struct up_heir_fds){.chan = -1, .control = -1, .metrics = -1, .stderr_fd = -1};
    memset(act, 0, sizeof(*act));
    if (names == NULL) {
        return 0;
    }
    h->chan = 3;
    int fd = 4;
    for (const char *p = names; *p != '\0'; fd++) {
        size_t n = strcspn(p, ",");
        if (n == 6 && strncmp(p, "listen", n) == 0 && act->n < UP_ACTIVATION_MAX) {
            act->fd[act->n++] = fd;
        } else if (n == 7 && strncmp(p, "control", n) == 0) {
            h->control = fd;
        } else if (n == 7 && strncmp(p, "metrics", n) == 0) {
            h->metrics = fd;
        } else if (n == 6 && strncmp(p, "stderr", n) == 0) {
            h->stderr_fd = fd;
        } else {
            up_log(UP_LOG_ERR, "UP_HEIR_FDS: '%.*s' is no socket an old master passes", (int)n, p);
            return -1;
        }
        p += n + (p[n] == ',');
    }
    unsetenv("UP_HEIR_FDS");
    return 1;
}

/* What `up-run upgrade` starts: this program as it was found (a new build
 * installed at that path is what runs), with the same arguments. */
static char **upgrade_argv(int argc, char **args)
{
    static char self[8192], found[4096];
    if (up_kind_find_command(args[0], found, sizeof(found)) < 0) {
        return NULL;
    }
    /* Absolute, but not resolved: a link a deploy moves is followed at
     * the upgrade, not now. */
    char cwd[2048];
    if (found[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL) {
        snprintf(self, sizeof(self), "%s/%s", cwd, found);
    } else {
        snprintf(self, sizeof(self), "%s", found);
    }
    char **argv = calloc((size_t)argc + 1, sizeof(char *));
    if (argv != NULL) {
        argv[0] = self;
        for (int i = 1; i < argc; i++) {
            argv[i] = args[i];
        }
    }
    return argv;
}

static int serve(const struct up_cli *cli, int argc, char **args)
{
    char control[256], app_dir[512], err[256];
    enum up_ctl_place place;
    struct up_activation act;
    struct up_heir_fds heir;
    int is_heir = heir_take(&heir, &act);
    if (is_heir < 0) {
        return 3;
    }
    if (is_heir == 0 && up_activation_take(&act, err, sizeof(err)) < 0) {
        up_log(UP_LOG_ERR, "socket activation: %s", err);
        return 3;
    }
    /* The default control socket is named after the port served. */
    struct up_cli named = *cli;
    named.port = up_cli_listeners_port(cli, &act);
    if (control_path(&named, control, sizeof(control), &place) < 0) {
        up_log(UP_LOG_ERR, "control socket: the path does not fit a unix socket address");
        return 3;
    }
    struct up_server_opts o;
    server_opts(cli, control, &o);
    char **up_argv = upgrade_argv(argc, args);
    o.upgrade_argv = up_argv;
    o.heir = is_heir ? &heir : NULL;
    if (cli->watch && cli->watch_dir == NULL) {
        /* --watch alone: the app's directory. */
        snprintf(app_dir, sizeof(app_dir), "%s", cli->app);
        char *slash = strrchr(app_dir, '/');
        if (slash != NULL) {
            *slash = '\0';
        }
        o.watch_dir = app_dir;
    }
    struct up_server *s = NULL;
    int r = up_server_new(&o, &s);
    if (r == 0 && cli->sticky != NULL) {
        r = up_server_use_sticky(s, cli->sticky);
    }
    if (r == 0 && is_heir) {
        for (int i = 0; r == 0 && i < act.n; i++) {
            r = up_server_listen_fd(s, act.fd[i]);
        }
    } else if (r == 0) {
        r = up_cli_listen_all(s, cli, &act);
    } else {
        char first[64];
        (void)up_activation_close_rest(&act, first, sizeof(first));
    }
    int code = r < 0 ? 3 : up_server_run(s);
    if (r == 0) {
        up_log(UP_LOG_INFO, "stopped (exit %d)", code);
    }
    up_server_free(s);
    free(up_argv);
    return code;
}

int main(int argc, char **argv)
{
    up_fd_std_guard();
    /* A log reader or control client gone away is an EPIPE to handle, not
     * a signal that ends us: from the first write on (children get the
     * default back, see child.h). */
    signal(SIGPIPE, SIG_IGN);
    /* Parse a copy: the process title overwrites argv. */
    char **args = up_title_init(argc, argv);
    if (args == NULL) {
        return 1;
    }
    up_log_init("up-run");
    struct up_cli cli;
    char err[512];
    int r = up_cli_parse(argc, args, &cli, err, sizeof(err));
    if (r == 0 && up_cli_check_root(&cli, geteuid(), err, sizeof(err)) < 0) {
        up_cli_free(&cli);
        r = -EINVAL;
    }
    int code;
    if (r < 0) {
        fprintf(stderr, "up-run: %s\nTry 'up-run --help'.\n", err);
        code = 2;
    } else if (r > 0) {
        code = 0; /* --help or --version */
    } else if (cli.cmd == UP_CLI_RELOAD) {
        code = command(&cli, cli.no_wait ? "reload" : "reload wait");
    } else if (cli.cmd == UP_CLI_STATUS) {
        code = command(&cli, cli.json ? "status json" : "status");
    } else if (cli.cmd == UP_CLI_STOP) {
        code = command(&cli, "stop");
    } else if (cli.cmd == UP_CLI_UPGRADE) {
        code = command(&cli, "upgrade");
    } else {
        char title[64];
        snprintf(title, sizeof(title), "%s master", cli.title);
        up_title_set(title);
        code = serve(&cli, argc, args);
    }
    if (r == 0) {
        up_cli_free(&cli);
    }
    up_title_free_args(args);
    return code;
}
