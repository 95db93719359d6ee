/*
 * cli: the command line of up-run, parsed and checked into one struct.
 *
 *     up-run [options] APP.so [-- app args...]
 *     up-run [options] --exec -- CMD [ARGS...]
 *     up-run reload [--no-wait] | status [--json] | stop [--control PATH] [-p PORT] [-t DUR]
 *
 * Every value is checked here, before anything starts, so that a typo is a
 * usage error (exit 2) with one line saying what was wrong and how to fix it,
 * never a failure half way through start-up. The defaults depend on the
 * environment: $PORT, $UP_BACKEND, and UP_ENV=development (1 worker, 500ms
 * drain timeout).
 *
 * The parsed struct owns copies of every string it points to (one block,
 * released by up_cli_free()): main may overwrite the argv area for the
 * process title right after parsing. The parser is re-entrant (it resets
 * getopt with optind = 0 and keeps no state of its own) and never logs; it
 * reads the environment, the current directory and the app file's metadata.
 */
#ifndef UP_CLI_H
#define UP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "loop.h"

#define UP_CLI_MAX_LISTEN 16
#define UP_CLI_MAX_REQUIRE 16
#define UP_CLI_MAX_DRAINING 64
/* How long a command waits for the master's answer, unless -t says. */
#define UP_CLI_WAIT_MS 60000

enum up_cli_cmd {
    UP_CLI_SERVE = 0, /* run the master: up-run APP.so */
    UP_CLI_RELOAD,    /* ask a running master to reload */
    UP_CLI_STATUS,    /* ask a running master for its state */
    UP_CLI_STOP,      /* ask a running master to stop gracefully */
    UP_CLI_UPGRADE,   /* ask a running master to hand over to a new up-run */
};

struct up_cli {
    enum up_cli_cmd cmd;
    /* APP.so as an absolute path (the working directory prefixed when it
     * was relative); checked to be a readable regular file. NULL unless
     * cmd is UP_CLI_SERVE. */
    const char *app;
    /* The app's argv: app_argv[0] is app, then every argument after `--`;
     * NULL-terminated. app_argc counts app_argv[0]. With --exec: the
     * command and its arguments, as written after `--` (app is NULL). */
    char **app_argv;
    int app_argc;
    bool exec;               /* --exec: each worker runs the command */
    bool handoff;            /* --protocol=handoff (default activation) */
    int stop_signal;         /* --stop-signal, default SIGTERM */
    uint64_t ready_after_ms; /* --ready-after DUR; 0: on READY=1 (--ready=notify) */
    bool notify_access_all;  /* --notify-access=all (default main) */
    /* -l/--listen, in order, as written. Empty: listen on -p. */
    char *listen[UP_CLI_MAX_LISTEN];
    int nlisten;
    int port;                  /* -p/--port, default $PORT or 3000 */
    bool port_given;           /* -p given (not only $PORT) */
    const char *workers_expr;  /* -n/--workers as written ("auto", "4", "cpus+2") */
    long workers;              /* ... evaluated: 1..UP_EXPR_MAX */
    uint64_t drain_timeout_ms; /* -t/--timeout, default 10m (500ms in development) */
    bool watch;                /* -w/--watch */
    const char *watch_dir;     /* ... the directory given, else the app's directory */
    const char *build_cmd;     /* --build CMD (needs --watch), or NULL */
    bool respawn;              /* -k/--keepalive (default), --no-keepalive */
    const char *pidfile;       /* -f/--pidfile, or NULL */
    const char *title;         /* -T/--title, default "up" */
    /* -r/--require, in order: a path (made absolute, checked readable) when it
     * has a '/', else a bare name for dlopen() to search. */
    const char *require[UP_CLI_MAX_REQUIRE];
    int nrequire;
    bool ready_manual;             /* --ready=manual: the app calls up_ready() */
    uint64_t ready_timeout_ms;     /* --ready-timeout, default 30s */
    bool migrate_at_deadline;      /* --migrate=deadline (default idle) */
    int max_draining;              /* --max-draining, 1..64, default 4 */
    uint64_t ws_drain_grace_ms;    /* --ws-drain-grace, default 5s */
    uint64_t close_spread_ms;      /* --close-spread, default 5s */
    const char *access_log;        /* --access-log: an absolute path, "-", or NULL */
    const char *access_log_format; /* --access-log-format: "combined", "json" or NULL */
    enum up_backend backend;       /* --backend, default $UP_BACKEND or auto */
    const char *control;           /* --control PATH, or NULL: see up_cli_control_path() */
    uint64_t header_timeout_ms;    /* --header-timeout, default 10s */
    uint64_t queue_timeout_ms;     /* --queue-timeout, default 10s */
    size_t max_head;               /* --max-head BYTES, default 16384 */
    const char *metrics;           /* --metrics host:port, or NULL */
    const char *sticky;            /* --sticky cookie:NAME|header:NAME|ip, or NULL */
    const char *user;              /* --user NAME[:GROUP], or NULL */
    uid_t user_uid;                /* ... its uid (looked up when parsed) */
    bool allow_root;               /* --allow-root */
    bool reuseport;                /* --reuseport */
    /* Commands (reload, status, stop). */
    bool no_wait;     /* reload --no-wait: do not wait for the outcome */
    bool json;        /* status --json */
    uint64_t wait_ms; /* -t with a command: how long to wait for the answer */
    bool development; /* UP_ENV=development */
    char *mem;        /* owned: the block holding every string above */
};

/* Parse argv (argv[0] is the program name) into *ret. Returns
 *   0        parsed and checked; release *ret with up_cli_free()
 *   1        --help or --version was printed to stdout: the caller exits 0
 *   -EINVAL  a usage error: err (cap bytes) holds one line, without the
 *            program name, saying what was wrong and how to fix it
 *   -ENOMEM  out of memory (err says so too)
 * *ret is written only when 0 is returned. Does not modify argv. */
int up_cli_parse(int argc, char **argv, struct up_cli *ret, char *err, size_t cap);

/* Release what up_cli_parse() allocated; the struct is zeroed. Harmless on a
 * zeroed struct and when called twice. */
void up_cli_free(struct up_cli *c);

/* Print the full --help text to f. */
void up_cli_usage(FILE *f);

/* "up-run 0.1.0": a static string. */
const char *up_cli_version(void);

/* The control socket path of the master c talks about, NUL-terminated in buf:
 * --control when given, else $XDG_RUNTIME_DIR/up-PORT.sock when that is set
 * (and --user is not given), else /tmp/up-UID/PORT.sock, UID being --user's
 * or this process's; PORT is the port of the first --listen that has
 * one, else -p. Returns 0, or -ENAMETOOLONG when it does not fit in cap or in
 * a unix socket address (buf is then untouched). */
int up_cli_control_path(const struct up_cli *c, char *buf, size_t cap);

/* $XDG_RUNTIME_DIR when the default control socket goes there, else NULL
 * (unset, or --user names another user). */
const char *up_cli_control_xdg(const struct up_cli *c);

/* Serving as root (euid 0) without --user or --allow-root: -EINVAL with
 * err saying what to give. 0 otherwise, and for commands. */
int up_cli_check_root(const struct up_cli *c, uid_t euid, char *err, size_t cap);

/* The TCP port in a --listen text ("3000", "host:3000", "[::1]:3000"), or -1
 * when it has none (unix:/path) or it is not a number from 1 to 65535. */
int up_cli_listen_port(const char *text);

#endif
