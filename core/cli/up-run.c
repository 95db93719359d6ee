/*
 * up-run: the master. Serves an app with zero-downtime reloads.
 *
 *   up-run [options] APP.so [-- app args]
 *   up-run reload | status | stop [-p PORT | --control PATH]
 *
 * Exit codes: 0 clean, 1 runtime failure, 2 usage, 3 start-up failure.
 */
#include "cli.h"
#include "ctl.h"
#include "log.h"
#include "master.h"
#include "title.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int serve(const struct up_cli *cli)
{
    static struct up_master m; /* static: reachable for leak checkers */
    int r = up_master_init(&m, cli);
    if (r < 0) {
        up_master_free(&m);
        return 3;
    }
    int pid = (int)getpid();
    up_log(UP_LOG_INFO, "pid=%d serving %s; reload with: kill -s USR2 %d", pid, cli->app, pid);
    int code = up_master_run(&m);
    up_log(UP_LOG_INFO, "stopped (exit %d)", code);
    up_master_free(&m);
    return code;
}

int main(int argc, char **argv)
{
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
    int code;
    if (r < 0) {
        fprintf(stderr, "up-run: %s\nTry 'up-run --help'.\n", err);
        code = 2;
    } else if (r > 0) {
        code = 0; /* --help or --version */
    } else if (cli.cmd == UP_CLI_RELOAD) {
        code = up_ctl_command(&cli, "reload");
    } else if (cli.cmd == UP_CLI_STATUS) {
        code = up_ctl_command(&cli, "status");
    } else if (cli.cmd == UP_CLI_STOP) {
        code = up_ctl_command(&cli, "stop");
    } else {
        char title[64];
        snprintf(title, sizeof(title), "%s master", cli.title);
        up_title_set(title);
        code = serve(&cli);
    }
    if (r == 0) {
        up_cli_free(&cli);
    }
    up_title_free_args(args);
    return code;
}
