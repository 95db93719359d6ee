#include "cli.h"

#include "cpus.h"
#include "duration.h"
#include "expr.h"
#include "privs.h"
#include "sticky.h"
#include "version.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define UP_CLI_VERSION "up-run " UP_VERSION
#define UP_CLI_WORKERS_HINT "try --workers=4, auto or 'cpus+2'"
#define UP_CLI_DURATION_HINT "try 500ms, 10s, 10m or 1h30m"
#define UP_CLI_HEAD_MIN 1024
#define UP_CLI_HEAD_MAX (1024 * 1024)
#define UP_CLI_TITLE_MAX 32
/* Absolute paths made: the app, the watched directory, each -r. */
#define UP_CLI_TMP_MAX (UP_CLI_MAX_REQUIRE + 2)
/* The room for a unix socket path, NUL included. */
#define UP_CLI_SUN_LEN sizeof(((struct sockaddr_un *)NULL)->sun_path)

/* Long-only options get values above any character. */
enum {
    OPT_BUILD = 256,
    OPT_NO_KEEPALIVE,
    OPT_READY,
    OPT_READY_TIMEOUT,
    OPT_MIGRATE,
    OPT_MAX_DRAINING,
    OPT_WS_DRAIN_GRACE,
    OPT_CLOSE_SPREAD,
    OPT_ACCESS_LOG,
    OPT_ACCESS_LOG_FORMAT,
    OPT_BACKEND,
    OPT_CONTROL,
    OPT_HEADER_TIMEOUT,
    OPT_QUEUE_TIMEOUT,
    OPT_MAX_HEAD,
    OPT_METRICS,
    OPT_STICKY,
    OPT_NO_WAIT,
    OPT_JSON,
    OPT_USER,
    OPT_ALLOW_ROOT,
    OPT_EXEC,
    OPT_PROTOCOL,
    OPT_STOP_SIGNAL,
    OPT_READY_AFTER,
    OPT_NOTIFY_ACCESS,
    OPT_REUSEPORT,
};

static const struct option cli_long[] = {
    {"listen", required_argument, NULL, 'l'},
    {"port", required_argument, NULL, 'p'},
    {"workers", required_argument, NULL, 'n'},
    {"timeout", required_argument, NULL, 't'},
    {"watch", optional_argument, NULL, 'w'},
    {"build", required_argument, NULL, OPT_BUILD},
    {"keepalive", no_argument, NULL, 'k'},
    {"no-keepalive", no_argument, NULL, OPT_NO_KEEPALIVE},
    {"pidfile", required_argument, NULL, 'f'},
    {"title", required_argument, NULL, 'T'},
    {"require", required_argument, NULL, 'r'},
    {"ready", required_argument, NULL, OPT_READY},
    {"ready-timeout", required_argument, NULL, OPT_READY_TIMEOUT},
    {"migrate", required_argument, NULL, OPT_MIGRATE},
    {"max-draining", required_argument, NULL, OPT_MAX_DRAINING},
    {"ws-drain-grace", required_argument, NULL, OPT_WS_DRAIN_GRACE},
    {"close-spread", required_argument, NULL, OPT_CLOSE_SPREAD},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"access-log-format", required_argument, NULL, OPT_ACCESS_LOG_FORMAT},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"queue-timeout", required_argument, NULL, OPT_QUEUE_TIMEOUT},
    {"max-head", required_argument, NULL, OPT_MAX_HEAD},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"sticky", required_argument, NULL, OPT_STICKY},
    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
    {"json", no_argument, NULL, OPT_JSON},
    {"user", required_argument, NULL, OPT_USER},
    {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
    {"reuseport", no_argument, NULL, OPT_REUSEPORT},
    {"exec", no_argument, NULL, OPT_EXEC},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"stop-signal", required_argument, NULL, OPT_STOP_SIGNAL},
    {"ready-after", required_argument, NULL, OPT_READY_AFTER},
    {"notify-access", required_argument, NULL, OPT_NOTIFY_ACCESS},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* '-': positional arguments come back in order as option 1, and getopt stops
 * at "--" with optind just past it, so the app's arguments are exactly
 * argv[optind..]. ':': report a missing value as ':' and print nothing. */
static const char cli_short[] = "-:l:p:n:t:w::kf:T:r:hV";

/* Everything the parser needs besides the result. Strings in c point into
 * argv, into string literals, or into tmp; cli_own() copies them all. */
struct cli_state {
    struct up_cli c;
    char **argv;
    int npos;           /* positional arguments seen */
    bool port_given;    /* -p given: $PORT is not read */
    bool backend_given; /* --backend given: $UP_BACKEND is not read */
    bool workers_given; /* -n given and already evaluated */
    bool timeout_given; /* -t given: for a command, its wait */
    /* What was given for --exec alone, to check once all is known: the
     * option's name as typed, or NULL. */
    const char *ready_given;     /* --ready, any value */
    bool ready_notify;           /* ... notify */
    const char *exec_only;       /* --protocol, --stop-signal, --ready-after, --notify-access */
    const char *activation_only; /* --stop-signal, --ready-after, --notify-access */
    char **rest;                 /* the app's arguments, after "--" */
    int nrest;
    char *tmp[UP_CLI_TMP_MAX]; /* owned: absolute paths made here */
    int ntmp;
    const char *name; /* the option being handled, as the user wrote it */
    char name_buf[64];
};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Digits only (no sign, no spaces), within min..max. */
static int parse_long(const char *text, long min, long max, long *ret)
{
    char *end;
    if (text[0] < '0' || text[0] > '9') {
        return -EINVAL;
    }
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*end != '\0' || errno != 0 || v < min || v > max) {
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

int up_cli_listen_port(const char *text)
{
    const char *port = text;
    if (strncmp(text, "unix:", 5) == 0) {
        return -1;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        port = close + 2;
    } else if (strrchr(text, ':') != NULL) {
        port = strrchr(text, ':') + 1;
    }
    long v;
    return parse_long(port, 1, 65535, &v) == 0 ? (int)v : -1;
}

/* Remember the option's name as typed ("-n", "--workers", "--wor"), for
 * messages: the user recognises what they wrote. optarg is either the next
 * argv element or the tail of the option's own. */
static void cli_name(struct cli_state *s, int opt)
{
    const char *typed = s->argv[optind - 1];
    if (optarg != NULL && optarg == typed && optind >= 2) {
        typed = s->argv[optind - 2];
    }
    if (strncmp(typed, "--", 2) == 0) {
        size_t n = strcspn(typed, "=");
        snprintf(s->name_buf, sizeof(s->name_buf), "%.*s", (int)n, typed);
    } else {
        snprintf(s->name_buf, sizeof(s->name_buf), "-%c", opt);
    }
    s->name = s->name_buf;
}

/* path made absolute by prefixing the working directory (no symlink
 * resolution: the operator's path stays recognisable). Kept in s->tmp. */
static int cli_abs(struct cli_state *s, const char *path, const char **ret, char *err, size_t cap)
{
    char *cwd = NULL;
    char *abs;
    if (s->ntmp == UP_CLI_TMP_MAX) {
        return fail(err, cap, "too many paths: '%s'", path); /* cannot happen */
    }
    if (path[0] != '/' && (cwd = getcwd(NULL, 0)) == NULL) {
        return fail(err, cap, "cannot make '%s' absolute: %s", path, strerror(errno));
    }
    while (cwd != NULL && strncmp(path, "./", 2) == 0) {
        path += 2;
    }
    bool slash = cwd != NULL && strcmp(cwd, "/") != 0 && path[0] != '\0';
    int n = asprintf(&abs, "%s%s%s", cwd != NULL ? cwd : "", slash ? "/" : "", path);
    free(cwd);
    if (n < 0) {
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    s->tmp[s->ntmp++] = abs;
    *ret = abs;
    return 0;
}

/* A file to load: exists, is a regular file, and we may read it. */
static int cli_check_file(const char *what, const char *path, char *err, size_t cap)
{
    struct stat st;
    if (stat(path, &st) == -1) {
        if (errno == ENOENT) {
            return fail(err, cap, "%s '%s' not found", what, path);
        }
        return fail(err, cap, "%s '%s': %s", what, path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return fail(err, cap, "%s '%s' is not a regular file", what, path);
    }
    if (access(path, R_OK) == -1) {
        return fail(err, cap, "%s '%s' is not readable: %s", what, path, strerror(errno));
    }
    return 0;
}

static int cli_duration(struct cli_state *s, const char *text, bool zero_ok, uint64_t *ret,
                        char *err, size_t cap)
{
    uint64_t ms;
    int r = up_duration_parse(text, &ms);
    if (r == -ERANGE) {
        return fail(err, cap, "%s: '%s' is too long a duration; %s", s->name, text,
                    UP_CLI_DURATION_HINT);
    }
    if (r < 0) {
        return fail(err, cap, "%s: '%s' is not a duration; %s", s->name, text,
                    UP_CLI_DURATION_HINT);
    }
    if (ms == 0 && !zero_ok) {
        return fail(err, cap, "%s: '%s' must be more than zero; %s", s->name, text,
                    UP_CLI_DURATION_HINT);
    }
    *ret = ms;
    return 0;
}

/* A whole number from 1 to max. */
static int cli_int(struct cli_state *s, const char *text, long max, const char *what, int *ret,
                   char *err, size_t cap)
{
    long v;
    if (parse_long(text, 1, max, &v) < 0) {
        return fail(err, cap, "%s: '%s' is not %s (1-%ld)", s->name, text, what, max);
    }
    *ret = (int)v;
    return 0;
}

/* -n: "auto" or an expression over cpus (a plain number is one). */
static int cli_workers(struct cli_state *s, const char *text, char *err, size_t cap)
{
    long cpus = up_cpus_usable();
    long v;
    size_t pos = 0;
    s->c.workers_expr = text;
    if (strcmp(text, "auto") == 0) {
        s->c.workers = cpus < UP_EXPR_MAX ? cpus : UP_EXPR_MAX;
        return 0;
    }
    int r = up_expr_eval_at(text, cpus, &v, &pos);
    if (r == -ERANGE) {
        return fail(err, cap, "%s: '%s' is not a worker count from %d to %d (cpus=%ld); %s",
                    s->name, text, UP_EXPR_MIN, UP_EXPR_MAX, cpus, UP_CLI_WORKERS_HINT);
    }
    if (r == -EDOM) {
        return fail(err, cap, "%s: '%s' divides by zero (at position %zu); %s", s->name, text, pos,
                    UP_CLI_WORKERS_HINT);
    }
    if (r < 0) {
        return fail(err, cap, "%s: '%s' is not a number or expression (at position %zu); %s",
                    s->name, text, pos, UP_CLI_WORKERS_HINT);
    }
    s->c.workers = v;
    return 0;
}

static int cli_listen(struct cli_state *s, const char *text, char *err, size_t cap)
{
    if (s->c.nlisten == UP_CLI_MAX_LISTEN) {
        return fail(err, cap, "%s: '%s' is one address too many (at most %d)", s->name, text,
                    UP_CLI_MAX_LISTEN);
    }
    bool ok;
    if (strncmp(text, "unix:", 5) == 0) {
        size_t n = strlen(text + 5);
        ok = n > 0 && n < UP_CLI_SUN_LEN;
    } else if (strncmp(text, "fd:", 3) == 0) {
        size_t n = strlen(text + 3);
        ok = n > 0 && n < 64 && strchr(text + 3, ':') == NULL;
    } else {
        ok = up_cli_listen_port(text) > 0;
    }
    if (!ok) {
        return fail(err, cap,
                    "%s: '%s' is not an address; try 3000, 127.0.0.1:3000, [::1]:3000, "
                    "unix:/path/to.sock or fd:NAME (a socket systemd passed)",
                    s->name, text);
    }
    s->c.listen[s->c.nlisten++] = (char *)text;
    return 0;
}

static int cli_require(struct cli_state *s, const char *text, char *err, size_t cap)
{
    if (s->c.nrequire == UP_CLI_MAX_REQUIRE) {
        return fail(err, cap, "%s: '%s' is one library too many (at most %d)", s->name, text,
                    UP_CLI_MAX_REQUIRE);
    }
    /* A bare name is for dlopen() to search the library path with. */
    if (strchr(text, '/') != NULL) {
        int r = cli_check_file("library", text, err, cap);
        if (r == 0) {
            r = cli_abs(s, text, &text, err, cap);
        }
        if (r < 0) {
            return r;
        }
    } else if (text[0] == '\0') {
        return fail(err, cap, "%s: the library name is empty", s->name);
    }
    s->c.require[s->c.nrequire++] = text;
    return 0;
}

static int cli_max_head(struct cli_state *s, const char *text, char *err, size_t cap)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned long long unit = 1;
    if (strcmp(end, "k") == 0 || strcmp(end, "K") == 0 || strcmp(end, "KiB") == 0) {
        unit = 1024;
    } else if (*end != '\0') {
        unit = 0;
    }
    if (text[0] < '0' || text[0] > '9' || errno != 0 || unit == 0 || v > UP_CLI_HEAD_MAX ||
        v * unit < UP_CLI_HEAD_MIN || v * unit > UP_CLI_HEAD_MAX) {
        return fail(err, cap, "%s: '%s' is not a size from %d to %d bytes; try 16384 or 16k",
                    s->name, text, UP_CLI_HEAD_MIN, UP_CLI_HEAD_MAX);
    }
    s->c.max_head = (size_t)(v * unit);
    return 0;
}

/* The options that take a word from a fixed set. */
static int cli_choice(struct cli_state *s, int opt, const char *text, char *err, size_t cap)
{
    if (opt == OPT_READY &&
        (strcmp(text, "auto") == 0 || strcmp(text, "manual") == 0 || strcmp(text, "notify") == 0)) {
        s->c.ready_manual = strcmp(text, "manual") == 0;
        s->ready_notify = strcmp(text, "notify") == 0;
        s->ready_given = text;
        return 0;
    }
    if (opt == OPT_PROTOCOL && (strcmp(text, "activation") == 0 || strcmp(text, "handoff") == 0)) {
        s->c.handoff = strcmp(text, "handoff") == 0;
        return 0;
    }
    if (opt == OPT_NOTIFY_ACCESS && (strcmp(text, "main") == 0 || strcmp(text, "all") == 0)) {
        s->c.notify_access_all = strcmp(text, "all") == 0;
        return 0;
    }
    if (opt == OPT_MIGRATE && (strcmp(text, "deadline") == 0 || strcmp(text, "idle") == 0)) {
        s->c.migrate_at_deadline = strcmp(text, "deadline") == 0;
        return 0;
    }
    if (opt == OPT_BACKEND && up_backend_parse(text, &s->c.backend) == 0) {
        s->backend_given = true;
        return 0;
    }
    const char *choices = opt == OPT_READY           ? "auto, manual or notify"
                          : opt == OPT_MIGRATE       ? "deadline or idle"
                          : opt == OPT_PROTOCOL      ? "activation or handoff"
                          : opt == OPT_NOTIFY_ACCESS ? "main or all"
                                                     : "io_uring, epoll or auto";
    return fail(err, cap, "%s: '%s' is not one of %s", s->name, text, choices);
}

/* --stop-signal: a name (TERM, SIGTERM, term) or a number. */
static int cli_signal(struct cli_state *s, const char *text, char *err, size_t cap)
{
    const char *name = strncasecmp(text, "SIG", 3) == 0 ? text + 3 : text;
    long v;
    if (parse_long(text, 1, SIGRTMAX, &v) == 0) {
        s->c.stop_signal = (int)v;
        return 0;
    }
    for (int sig = 1; sig < SIGRTMIN; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev != NULL && strcasecmp(name, abbrev) == 0) {
            s->c.stop_signal = sig;
            return 0;
        }
    }
    return fail(err, cap, "%s: '%s' is not a signal; try TERM, QUIT, INT or WINCH", s->name, text);
}

static int cli_string(struct cli_state *s, const char *text, size_t max, const char **ret,
                      char *err, size_t cap)
{
    if (text[0] == '\0' || strlen(text) > max) {
        return fail(err, cap, "%s: '%s' must be 1 to %zu characters", s->name, text, max);
    }
    *ret = text;
    return 0;
}

/* The directory is made absolute in cli_finish(), once: -w may repeat. */
static int cli_watch(struct cli_state *s, const char *dir, char *err, size_t cap)
{
    struct stat st;
    if (dir != NULL && (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))) {
        return fail(err, cap, "%s: '%s' is not a directory", s->name, dir);
    }
    s->c.watch = true;
    s->c.watch_dir = dir; /* NULL: the app's directory */
    return 0;
}

/* A positional argument: the subcommand or the app, then nothing more. */
static int cli_positional(struct cli_state *s, const char *text, char *err, size_t cap)
{
    static const char *const cmds[] = {"serve", "reload", "status", "stop", "upgrade"};
    if (s->npos++ == 0) {
        for (int i = UP_CLI_RELOAD; i <= UP_CLI_UPGRADE; i++) {
            if (strcmp(text, cmds[i]) == 0) {
                s->c.cmd = (enum up_cli_cmd)i;
                return 0;
            }
        }
        s->c.app = text;
        return 0;
    }
    if (s->c.cmd != UP_CLI_SERVE) {
        return fail(err, cap, "unexpected argument '%s': up-run %s takes only options", text,
                    cmds[s->c.cmd]);
    }
    return fail(
        err, cap, "unexpected argument '%s' after the app; put app arguments after '--'%s", text,
        s->c.watch && s->c.watch_dir == NULL ? " (and write --watch=DIR to watch DIR)" : "");
}

static int cli_option(struct cli_state *s, int opt, const char *arg, char *err, size_t cap)
{
    switch (opt) {
    case 1:
        return cli_positional(s, arg, err, cap);
    case 'h':
        up_cli_usage(stdout);
        return 1;
    case 'V':
        printf("%s\n", up_cli_version());
        return 1;
    case 'l':
        return cli_listen(s, arg, err, cap);
    case 'p':
        s->port_given = true;
        s->c.port_given = true;
        return cli_int(s, arg, 65535, "a port", &s->c.port, err, cap);
    case 'n':
        s->workers_given = true;
        return cli_workers(s, arg, err, cap);
    case 't':
        s->timeout_given = true;
        return cli_duration(s, arg, true, &s->c.drain_timeout_ms, err, cap);
    case OPT_NO_WAIT:
        s->c.no_wait = true;
        return 0;
    case OPT_JSON:
        s->c.json = true;
        return 0;
    case OPT_USER: {
        struct up_privs p;
        char why[256];
        if (up_privs_lookup(arg, &p, why, sizeof(why)) < 0) {
            return fail(err, cap, "%s: %s", s->name, why);
        }
        s->c.user = arg;
        s->c.user_uid = p.uid;
        return 0;
    }
    case OPT_ALLOW_ROOT:
        s->c.allow_root = true;
        return 0;
    case OPT_REUSEPORT:
        s->c.reuseport = true;
        return 0;
    case 'w':
        return cli_watch(s, arg, err, cap);
    case OPT_BUILD:
        return cli_string(s, arg, 4096, &s->c.build_cmd, err, cap);
    case 'k':
    case OPT_NO_KEEPALIVE:
        s->c.respawn = opt == 'k';
        return 0;
    case 'f':
        return cli_string(s, arg, PATH_MAX, &s->c.pidfile, err, cap);
    case 'T':
        return cli_string(s, arg, UP_CLI_TITLE_MAX, &s->c.title, err, cap);
    case 'r':
        return cli_require(s, arg, err, cap);
    case OPT_EXEC:
        s->c.exec = true;
        return 0;
    case OPT_PROTOCOL:
        s->exec_only = s->exec_only != NULL ? s->exec_only : "--protocol";
        return cli_choice(s, opt, arg, err, cap);
    case OPT_STOP_SIGNAL:
    case OPT_READY_AFTER:
    case OPT_NOTIFY_ACCESS:
        s->exec_only = s->activation_only = opt == OPT_STOP_SIGNAL   ? "--stop-signal"
                                            : opt == OPT_READY_AFTER ? "--ready-after"
                                                                     : "--notify-access";
        return opt == OPT_STOP_SIGNAL ? cli_signal(s, arg, err, cap)
               : opt == OPT_READY_AFTER
                   ? cli_duration(s, arg, false, &s->c.ready_after_ms, err, cap)
                   : cli_choice(s, opt, arg, err, cap);
    case OPT_READY:
    case OPT_MIGRATE:
    case OPT_BACKEND:
        return cli_choice(s, opt, arg, err, cap);
    case OPT_READY_TIMEOUT:
        return cli_duration(s, arg, false, &s->c.ready_timeout_ms, err, cap);
    case OPT_HEADER_TIMEOUT:
        return cli_duration(s, arg, false, &s->c.header_timeout_ms, err, cap);
    case OPT_QUEUE_TIMEOUT:
        return cli_duration(s, arg, false, &s->c.queue_timeout_ms, err, cap);
    case OPT_MAX_DRAINING:
        return cli_int(s, arg, UP_CLI_MAX_DRAINING, "a number", &s->c.max_draining, err, cap);
    case OPT_WS_DRAIN_GRACE:
        return cli_duration(s, arg, true, &s->c.ws_drain_grace_ms, err, cap);
    case OPT_CLOSE_SPREAD:
        return cli_duration(s, arg, true, &s->c.close_spread_ms, err, cap);
    case OPT_ACCESS_LOG:
        return cli_string(s, arg, PATH_MAX - 1, &s->c.access_log, err, cap);
    case OPT_ACCESS_LOG_FORMAT:
        if (strcmp(arg, "combined") != 0 && strcmp(arg, "json") != 0) {
            return fail(err, cap, "%s: '%s' is not one of combined or json", s->name, arg);
        }
        s->c.access_log_format = arg;
        return 0;
    case OPT_CONTROL:
        return cli_string(s, arg, UP_CLI_SUN_LEN - 1, &s->c.control, err, cap);
    case OPT_MAX_HEAD:
        return cli_max_head(s, arg, err, cap);
    case OPT_METRICS:
        if (strncmp(arg, "unix:", 5) == 0 || up_cli_listen_port(arg) < 0) {
            return fail(err, cap, "%s: '%s' is not host:port; try --metrics=127.0.0.1:9100",
                        s->name, arg);
        }
        s->c.metrics = arg;
        return 0;
    case OPT_STICKY: {
        struct up_sticky st;
        char why[256];
        if (up_sticky_parse(arg, &st, why, sizeof(why)) < 0) {
            return fail(err, cap, "%s: %s", s->name, why);
        }
        s->c.sticky = arg;
        return 0;
    }
    default:
        /* Unreachable: getopt returns only values of cli_long and cli_short,
         * and '?' and ':' are handled by cli_bad_option(). */
        return fail(err, cap, "unknown option %d; see up-run --help", opt);
    }
}

/* getopt said '?' (unknown, ambiguous, or a value given to a flag) or ':'
 * (value missing). optopt is the option's value, or 0 for an unknown long
 * option; argv[optind - 1] is what the user wrote in the long cases. */
static int cli_bad_option(struct cli_state *s, int opt, char *err, size_t cap)
{
    const char *typed = s->argv[optind - 1];
    int n = (int)strcspn(typed, "=");
    bool is_long = strncmp(typed, "--", 2) == 0;
    if (opt == ':') {
        if (is_long) {
            return fail(err, cap, "option '%.*s' needs a value; see up-run --help", n, typed);
        }
        return fail(err, cap, "option '-%c' needs a value; see up-run --help", optopt);
    }
    if (optopt != 0 && is_long) {
        return fail(err, cap, "option '%.*s' takes no value; see up-run --help", n, typed);
    }
    if (optopt != 0) {
        return fail(err, cap, "unknown option '-%c'; see up-run --help", optopt);
    }
    /* glibc takes any unique prefix of a long option ("--wor"): name the
     * candidates of one that is not unique. */
    char alts[256] = "";
    for (const struct option *o = cli_long; is_long && o->name != NULL; o++) {
        if (n > 2 && strncmp(o->name, typed + 2, (size_t)n - 2) == 0) {
            size_t len = strlen(alts);
            snprintf(alts + len, sizeof(alts) - len, "%s--%s", len ? ", " : "", o->name);
        }
    }
    if (alts[0] != '\0') {
        return fail(err, cap, "option '%.*s' is ambiguous (%s); write it in full", n, typed, alts);
    }
    return fail(err, cap, "unknown option '%.*s'; see up-run --help", n, typed);
}

static int cli_options(struct cli_state *s, int argc, char **argv, char *err, size_t cap)
{
    /* optind = 0 makes glibc forget everything from an earlier parse (its
     * position inside a bundle of short options, the permutation state). */
    optind = 0;
    opterr = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, cli_short, cli_long, NULL);
        if (opt == -1) {
            break;
        }
        if (opt == '?' || opt == ':') {
            return cli_bad_option(s, opt, err, cap);
        }
        cli_name(s, opt);
        int r = cli_option(s, opt, optarg, err, cap);
        if (r != 0) {
            return r;
        }
    }
    s->rest = argv + optind;
    s->nrest = argc - optind;
    return 0;
}

/* Defaults that come from the environment, unless an option overrode them. */
static int cli_env(struct cli_state *s, char *err, size_t cap)
{
    const char *port = getenv("PORT");
    if (!s->port_given && port != NULL && port[0] != '\0') {
        s->name = "$PORT";
        int r = cli_int(s, port, 65535, "a port", &s->c.port, err, cap);
        if (r < 0) {
            return r;
        }
    }
    const char *backend = getenv("UP_BACKEND");
    if (!s->backend_given && backend != NULL && backend[0] != '\0' &&
        up_backend_parse(backend, &s->c.backend) < 0) {
        return fail(err, cap, "$UP_BACKEND: '%s' is not one of io_uring, epoll or auto", backend);
    }
    if (!s->workers_given) {
        s->name = "--workers";
        return cli_workers(s, s->c.workers_expr, err, cap);
    }
    return 0;
}

/* The watched directory, absolute. A bare --watch watches the app's own
 * directory: a copy of the absolute app path cut at its last '/' ("/x.so"
 * gives "/"). */
static int cli_watch_dir(struct cli_state *s, char *err, size_t cap)
{
    if (s->c.watch_dir != NULL) {
        return cli_abs(s, s->c.watch_dir, &s->c.watch_dir, err, cap);
    }
    int r = cli_abs(s, s->c.app, &s->c.watch_dir, err, cap);
    if (r == 0) {
        char *dir = s->tmp[s->ntmp - 1];
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
    }
    return r;
}

/* --build needs --watch, for an app as for a command. */
static int cli_check_build(const struct cli_state *s, char *err, size_t cap)
{
    if (s->c.build_cmd != NULL && !s->c.watch) {
        return fail(err, cap,
                    "--build '%s' needs --watch: add --watch (or --watch=DIR) to "
                    "rebuild on changes",
                    s->c.build_cmd);
    }
    return 0;
}

/* --exec: the command after "--" instead of an APP.so, and the options
 * that go with it. */
static int cli_finish_exec(struct cli_state *s, char *err, size_t cap)
{
    const char *protocol = s->c.handoff ? "--protocol=handoff" : "--exec";
    if (!s->c.exec) {
        return fail(err, cap, "%s is for --exec: up-run [options] --exec -- CMD [ARGS...]",
                    s->exec_only);
    }
    if (s->c.app != NULL) {
        return fail(err, cap,
                    "--exec runs the command after '--', not an APP.so ('%s'): write up-run "
                    "[options] --exec -- CMD [ARGS...], or drop --exec",
                    s->c.app);
    }
    if (s->nrest == 0 || s->rest[0][0] == '\0') {
        return fail(err, cap, "--exec needs a command: up-run [options] --exec -- CMD [ARGS...]");
    }
    if (s->c.nrequire > 0) {
        return fail(err, cap, "--require loads a library into up-worker; it is not for %s",
                    protocol);
    }
    if (s->c.access_log != NULL) {
        return fail(err, cap,
                    "--access-log is written by up-worker; a server started with %s writes "
                    "its own access log",
                    protocol);
    }
    if (s->c.handoff && s->activation_only != NULL) {
        return fail(err, cap,
                    "%s is for --protocol=activation: a handoff worker says READY and is "
                    "told DRAIN on its channel",
                    s->activation_only);
    }
    if (s->ready_given != NULL && (s->c.handoff || !s->ready_notify)) {
        return fail(err, cap, "--ready=%s: %s", s->ready_given,
                    s->c.handoff ? "a handoff worker says READY on its channel"
                                 : "an --exec worker is ready on READY=1 (--ready=notify, the "
                                   "default) or after a delay (--ready-after DUR)");
    }
    if (s->ready_notify && s->c.ready_after_ms > 0) {
        return fail(err, cap, "--ready=notify and --ready-after: choose one");
    }
    if (s->c.ready_after_ms >= s->c.ready_timeout_ms) {
        return fail(err, cap, "--ready-after must be shorter than --ready-timeout (%llu ms)",
                    (unsigned long long)s->c.ready_timeout_ms);
    }
    if (s->c.notify_access_all && s->c.ready_after_ms > 0) {
        return fail(err, cap, "--notify-access is for --ready=notify, not --ready-after");
    }
    int r = cli_check_build(s, err, cap);
    if (r == 0 && s->c.watch) {
        /* A bare --watch: the working directory, where a server's code is
         * (cli_abs() of "" is the directory itself). */
        r = cli_abs(s, s->c.watch_dir != NULL ? s->c.watch_dir : "", &s->c.watch_dir, err, cap);
    }
    return r;
}

/* What can only be checked once every option is known. */
static int cli_finish(struct cli_state *s, char *err, size_t cap)
{
    int r = cli_env(s, err, cap);
    if (r < 0) {
        return r;
    }
    if (s->c.no_wait && s->c.cmd != UP_CLI_RELOAD) {
        return fail(err, cap,
                    "--no-wait is for 'up-run reload' (which otherwise waits for the "
                    "outcome)");
    }
    if (s->c.json && s->c.cmd != UP_CLI_STATUS) {
        return fail(err, cap, "--json is for 'up-run status'");
    }
    if (s->c.cmd != UP_CLI_SERVE) {
        if (s->nrest > 0) {
            return fail(err, cap,
                        "unexpected argument '%s': up-run reload, status, stop and "
                        "upgrade take no app arguments",
                        s->rest[0]);
        }
        s->c.wait_ms = s->timeout_given ? s->c.drain_timeout_ms : UP_CLI_WAIT_MS;
        return 0;
    }
    if (s->c.access_log_format != NULL && s->c.access_log == NULL) {
        return fail(err, cap, "--access-log-format needs --access-log PATH (or - for stdout)");
    }
    if (s->c.exec || s->exec_only != NULL) {
        return cli_finish_exec(s, err, cap);
    }
    if (s->c.app == NULL) {
        return fail(err, cap,
                    "missing APP.so: write up-run [options] APP.so [-- app args...], or "
                    "up-run [options] --exec -- CMD [ARGS...]");
    }
    if (s->ready_notify) {
        return fail(err, cap,
                    "--ready=notify is for --exec workers; an app is ready at init "
                    "(auto) or when it calls up_ready() (manual)");
    }
    r = cli_check_build(s, err, cap);
    if (r == 0) {
        r = cli_check_file("app file", s->c.app, err, cap);
    }
    if (r == 0) {
        r = cli_abs(s, s->c.app, &s->c.app, err, cap);
    }
    if (r == 0 && s->c.watch) {
        r = cli_watch_dir(s, err, cap);
    }
    if (r == 0 && s->c.access_log != NULL && strcmp(s->c.access_log, "-") != 0) {
        /* Absolute: the workers, and a master that upgrades us, may run
         * elsewhere. */
        r = cli_abs(s, s->c.access_log, &s->c.access_log, err, cap);
    }
    return r;
}

/* Copies strings into one block. With at == NULL it only counts. */
struct cli_arena {
    char *at;
    size_t used;
};

static char *arena_put(struct cli_arena *a, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    a->used += n;
    if (a->at == NULL) {
        return NULL;
    }
    char *r = a->at;
    memcpy(r, s, n);
    a->at += n;
    return r;
}

/* Point every string of d at a copy of the same string of s->c. */
static void cli_copy(const struct cli_state *s, struct up_cli *d, struct cli_arena *a)
{
    const struct up_cli *c = &s->c;
    d->app = arena_put(a, c->app);
    d->workers_expr = arena_put(a, c->workers_expr);
    d->watch_dir = arena_put(a, c->watch_dir);
    d->build_cmd = arena_put(a, c->build_cmd);
    d->pidfile = arena_put(a, c->pidfile);
    d->title = arena_put(a, c->title);
    d->control = arena_put(a, c->control);
    d->metrics = arena_put(a, c->metrics);
    d->sticky = arena_put(a, c->sticky);
    d->access_log = arena_put(a, c->access_log);
    d->access_log_format = arena_put(a, c->access_log_format);
    d->user = arena_put(a, c->user);
    for (int i = 0; i < c->nlisten; i++) {
        d->listen[i] = arena_put(a, c->listen[i]);
    }
    for (int i = 0; i < c->nrequire; i++) {
        d->require[i] = arena_put(a, c->require[i]);
    }
    if (c->cmd != UP_CLI_SERVE) {
        return;
    }
    /* app_argv is NULL while counting. With --exec there is no app: the
     * command is argv[0]. */
    int first = c->exec ? 1 : 0;
    for (int i = first; i <= s->nrest; i++) {
        char *p = arena_put(a, i == 0 ? c->app : s->rest[i - 1]);
        if (d->app_argv != NULL) {
            d->app_argv[i - first] = p;
        }
    }
    if (d->app_argv != NULL) {
        d->app_argv[s->nrest + 1 - first] = NULL;
    }
}

static int cli_own(const struct cli_state *s, struct up_cli *ret, char *err, size_t cap)
{
    struct up_cli d = s->c;
    struct cli_arena count = {NULL, 0};
    d.app_argv = NULL;
    cli_copy(s, &d, &count);
    /* The app's argv: the app, its arguments, and the NULL at the end. */
    size_t nargv = s->c.cmd == UP_CLI_SERVE ? (size_t)s->nrest + (s->c.exec ? 1 : 2) : 0;
    d.mem = malloc(nargv * sizeof(char *) + count.used);
    if (d.mem == NULL) {
        snprintf(err, cap, "out of memory");
        return -ENOMEM;
    }
    /* The pointer array first, so that it is aligned; strings after it. */
    struct cli_arena a = {d.mem + nargv * sizeof(char *), 0};
    d.app_argv = nargv > 0 ? (char **)(void *)d.mem : NULL;
    d.app_argc = nargv > 0 ? (int)nargv - 1 : 0;
    cli_copy(s, &d, &a);
    *ret = d;
    return 0;
}

static void cli_defaults(struct cli_state *s, char **argv)
{
    memset(s, 0, sizeof(*s));
    const char *env = getenv("UP_ENV");
    s->argv = argv;
    s->c.development = env != NULL && strcmp(env, "development") == 0;
    s->c.cmd = UP_CLI_SERVE;
    s->c.port = 3000;
    s->c.workers_expr = s->c.development ? "1" : "auto";
    s->c.drain_timeout_ms = s->c.development ? 500 : 10 * 60 * 1000;
    s->c.respawn = true;
    s->c.title = "up";
    s->c.ready_timeout_ms = 30 * 1000;
    s->c.max_draining = 4;
    s->c.ws_drain_grace_ms = 5000;
    s->c.close_spread_ms = 5000;
    s->c.backend = UP_BACKEND_AUTO;
    s->c.header_timeout_ms = 10 * 1000;
    s->c.queue_timeout_ms = 10 * 1000;
    s->c.max_head = 16384;
    s->c.stop_signal = SIGTERM;
}

int up_cli_parse(int argc, char **argv, struct up_cli *ret, char *err, size_t cap)
{
    struct cli_state s;
    cli_defaults(&s, argv);
    int r = cli_options(&s, argc, argv, err, cap);
    if (r == 0) {
        r = cli_finish(&s, err, cap);
    }
    if (r == 0) {
        r = cli_own(&s, ret, err, cap);
    }
    for (int i = 0; i < s.ntmp; i++) {
        free(s.tmp[i]);
    }
    return r;
}

void up_cli_free(struct up_cli *c)
{
    free(c->mem);
    memset(c, 0, sizeof(*c));
}

const char *up_cli_version(void)
{
    return UP_CLI_VERSION;
}

int up_cli_control_path(const struct up_cli *c, char *buf, size_t cap)
{
    char path[UP_CLI_SUN_LEN];
    int port = c->port;
    for (int i = 0; i < c->nlisten; i++) {
        if (up_cli_listen_port(c->listen[i]) > 0) {
            port = up_cli_listen_port(c->listen[i]);
            break;
        }
    }
    const char *xdg = up_cli_control_xdg(c);
    int n;
    if (c->control != NULL) {
        n = snprintf(path, sizeof(path), "%s", c->control);
    } else if (xdg != NULL) {
        n = snprintf(path, sizeof(path), "%s/up-%d.sock", xdg, port);
    } else {
        n = snprintf(path, sizeof(path), "/tmp/up-%u/%d.sock",
                     (unsigned)(c->user != NULL ? c->user_uid : getuid()), port);
    }
    if (n < 0 || (size_t)n >= sizeof(path) || (size_t)n >= cap) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, (size_t)n + 1);
    return 0;
}

const char *up_cli_control_xdg(const struct up_cli *c)
{
    /* $XDG_RUNTIME_DIR is the invoking user's: not where a master that
     * becomes another user (--user) can make its socket. */
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    return c->user == NULL && xdg != NULL && xdg[0] != '\0' ? xdg : NULL;
}

int up_cli_check_root(const struct up_cli *c, uid_t euid, char *err, size_t cap)
{
    if (c->cmd != UP_CLI_SERVE || euid != 0 || c->user != NULL || c->allow_root) {
        return 0;
    }
    return fail(err, cap,
                "running as root, the workers would run the app as root: give --user NAME "
                "(up-run binds its ports first, then becomes NAME), or --allow-root to run "
                "them as root all the same");
}

void up_cli_usage(FILE *f)
{
    fputs("Usage: up-run [options] APP.so [-- app args...]\n"
          "       up-run [options] --exec -- CMD [ARGS...]\n"
          "       up-run reload [--no-wait] | status [--json] | stop | upgrade\n"
          "              [--control PATH] [-p PORT] [-t DUR]\n"
          "\n"
          "Serve the HTTP app APP.so with a master and N workers, and replace its code\n"
          "at any time without failing a request or resetting a Keep-Alive connection.\n"
          "With --exec, each worker is any HTTP server, CMD ARGS.\n"
          "\n"
          "Listening:\n"
          "  -p, --port PORT          TCP port on all IPv4 addresses\n"
          "                           (default $PORT, else 3000)\n"
          "  -l, --listen ADDR        listen on ADDR instead: PORT, HOST:PORT,\n"
          "                           [V6]:PORT, unix:/PATH, or fd:NAME for a socket\n"
          "                           systemd passed (LISTEN_FDS; without -l or -p,\n"
          "                           every passed socket is used); HOST: all of its\n"
          "                           addresses; repeatable, up to 16 sockets\n"
          "      --reuseport          share the port with other up-run masters of this\n"
          "                           user that listen on the same address (one per\n"
          "                           NUMA node); without it a port in use fails the\n"
          "                           start\n"
          "      --queue-timeout DUR  answer 503 (Retry-After) to a request no worker\n"
          "                           could take within DUR (default 10s)\n"
          "      --sticky cookie:NAME|header:NAME|ip\n"
          "                           keep a client on one worker by its cookie NAME,\n"
          "                           its header field NAME, or its address\n"
          "      --header-timeout DUR answer 408 to a request head not complete\n"
          "                           within DUR (default 10s)\n"
          "      --max-head BYTES     answer 431 to a request head over BYTES\n"
          "                           (default 16384; 1024 to 1048576; 16k works)\n"
          "      --backend NAME       io_uring, epoll or auto\n"
          "                           (default $UP_BACKEND, else auto)\n"
          "\n"
          "Workers:\n"
          "  -n, --workers N|auto|EXPR\n"
          "                           how many workers (default auto: the CPUs this\n"
          "                           process may use; 1 when UP_ENV=development);\n"
          "                           EXPR is arithmetic over cpus: 'cpus+2',\n"
          "                           'round(cpus/2)', 'max(2,cpus)'; 1 to 1024\n"
          "  -k, --keepalive          replace a worker that dies, with back-off (default)\n"
          "      --no-keepalive       do not replace workers that die\n"
          "  -r, --require LIB.so     load LIB.so in each worker before the app (up to 16)\n"
          "  -T, --title NAME         process titles 'NAME master' and 'NAME worker'\n"
          "                           (default up)\n"
          "      --ready auto|manual  a worker is ready when the app's init returned\n"
          "                           (auto, default) or when it calls up_ready()\n"
          "      --ready-timeout DUR  a reload whose workers are not ready within DUR\n"
          "                           fails; the old workers keep serving (default 30s)\n"
          "\n"
          "Any server as the workers:\n"
          "      --exec               run CMD ARGS (after --) as each worker, not an app\n"
          "      --protocol activation|handoff\n"
          "                           activation (default): each worker gets the\n"
          "                           listeners as fds 3.. (LISTEN_FDS, LISTEN_PID,\n"
          "                           LISTEN_FDNAMES; also PORT, UP_GENERATION,\n"
          "                           UP_WORKER) and accepts on them itself; handoff:\n"
          "                           it gets connections one by one on fd 3\n"
          "                           (docs/PROTOCOL.md), as an app does\n"
          "      --ready notify       a worker is ready when it sends READY=1 to\n"
          "                           $NOTIFY_SOCKET (default with --exec)\n"
          "      --ready-after DUR    or when it has run DUR (servers without notify)\n"
          "      --notify-access main|all\n"
          "                           READY=1 counts from the worker's own pid (main,\n"
          "                           default) or from what it started too (all)\n"
          "      --stop-signal SIG    what makes an old worker stop gracefully: TERM\n"
          "                           (default), QUIT, INT, WINCH...; at the drain\n"
          "                           deadline it is killed\n"
          "\n"
          "Reload and drain:\n"
          "  -t, --timeout DUR        how long old workers may finish what they serve\n"
          "                           (default 10m; 500ms when UP_ENV=development)\n"
          "      --migrate idle|deadline\n"
          "                           move idle Keep-Alive connections to the new\n"
          "                           workers at once (idle, default: every request\n"
          "                           after a reload meets the new code, a proxy's\n"
          "                           pooled connections too), or only at the drain\n"
          "                           deadline (until then, old code answers them)\n"
          "      --max-draining N     old generations draining at once, 1-64 (default 4)\n"
          "      --ws-drain-grace DUR WebSockets and event streams of draining workers\n"
          "                           end after DUR (default 5s): a WebSocket gets\n"
          "                           close code 1012 (Service Restart) and comes back\n"
          "                           to the new workers; all within --timeout\n"
          "      --close-spread DUR   ... one by one, spread over DUR (default 5s), so\n"
          "                           that the clients do not come back all at once\n"
          "      --access-log PATH|-  one line per request served, written by the\n"
          "                           workers to PATH (appended) or - (standard\n"
          "                           output); kill -USR1 reopens it (logrotate)\n"
          "      --access-log-format combined|json\n"
          "                           combined (default: nginx's, plus gen= and us=)\n"
          "                           or one JSON object per line\n"
          "  -w, --watch[=DIR]        reload when a file in DIR changes (default: the\n"
          "                           app's directory); write -wDIR or --watch=DIR\n"
          "      --build CMD          with --watch: run the shell command CMD before\n"
          "                           each reload; a failed build does not reload\n"
          "\n"
          "Operating:\n"
          "      --user NAME[:GROUP]  started as root: bind the listeners, then run the\n"
          "                           master and its workers as NAME (and GROUP); the\n"
          "                           control socket, pidfile and snapshots are NAME's\n"
          "      --allow-root         run the workers as root (refused without it)\n"
          "  -f, --pidfile FILE       write the master's pid to FILE\n"
          "      --control PATH       the control socket (default\n"
          "                           $XDG_RUNTIME_DIR/up-PORT.sock, else\n"
          "                           /tmp/up-UID/PORT.sock)\n"
          "      --metrics HOST:PORT  serve Prometheus metrics on HOST:PORT\n"
          "  -h, --help               print this help and exit\n"
          "  -V, --version            print the version and exit\n"
          "\n"
          "DUR is a duration: 500ms, 10s, 10m, 1h, 1m30s (a bare number is seconds).\n"
          "\n"
          "Commands, sent to the running master over its control socket (found with\n"
          "-p, --listen or --control):\n"
          "  reload                   start new workers, then drain the old ones; waits\n"
          "                           for the outcome: 'generation N serving (...)' and\n"
          "                           exit 0, or 'reload failed: WHY' with the workers'\n"
          "                           last output and exit 1\n"
          "      --no-wait            only start the reload\n"
          "  status                   show generations, workers, pids, connections\n"
          "      --json               as one JSON object\n"
          "  stop                     stop gracefully, like SIGTERM\n"
          "  upgrade                  replace the master itself: the up-run program it\n"
          "                           was started as (a new build installed there) starts\n"
          "                           with the same options, takes over every socket, and\n"
          "                           the old master hands it every connection and exits;\n"
          "                           waits for the outcome ('upgraded: master pid=N\n"
          "                           serving', or 'upgrade failed: WHY' and exit 1)\n"
          "  -t, --timeout DUR        with a command: how long to wait for the answer\n"
          "                           (default 60s)\n"
          "\n"
          "Signals to the master:\n"
          "  USR2, HUP                reload\n"
          "  TERM, INT                graceful stop: drain within --timeout, then exit\n"
          "                           (INT again: stop at once)\n"
          "  QUIT                     immediate stop\n"
          "  USR1                     the workers reopen --access-log (logrotate)\n"
          "\n"
          "Environment:\n"
          "  UP_ENV=development       1 worker and a 500ms drain timeout by default\n"
          "  UP_LOG=err|warn|info|debug\n"
          "                           log level on stderr (default info)\n"
          "  UP_BACKEND=io_uring|epoll|auto\n"
          "                           default for --backend\n"
          "  UP_SEND_TIMEOUT=DUR      reset a client that takes no output for DUR (60s)\n"
          "  UP_IDLE_TIMEOUT=DUR      close a Keep-Alive connection idle for DUR (60s);\n"
          "                           behind a load balancer that pools connections,\n"
          "                           make it longer than the balancer's own\n"
          "  PORT                     default for --port\n"
          "\n"
          "Exit codes: 0 clean stop, 1 runtime failure, 2 usage error,\n"
          "3 start-up failure (bind, io_uring, app load).\n",
          f);
}
