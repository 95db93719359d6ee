/*
 * up-worker: serves HTTP/1.1 with the app it loads.
 *
 *   up-worker [options] APP.so [-- app args]
 *
 * Started by up-run with the master channel on fd 3, or alone with
 * `--listen [host:]port` (its own SO_REUSEPORT listener, no master: the
 * benchmark's no-handoff baseline).
 */
#include "duration.h"
#include "fd.h"
#include "log.h"
#include "title.h"
#include "version.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: up-worker [options] APP.so [-- app args]\n"
               "Serve the HTTP app APP.so: a worker of up-run, or alone with --listen.\n"
               "\n"
               "  -l, --listen [HOST:]PORT  serve on its own listener (no master)\n"
               "  -r, --require LIB.so      load LIB before the app (repeatable)\n"
               "  -T, --title NAME          process title prefix (default: up)\n"
               "      --ready=auto|manual   manual: ready when the app calls up_ready()\n"
               "      --max-head BYTES      largest request head (default 16384)\n"
               "      --body-limit BYTES    largest request body and WebSocket message\n"
               "                            (default 1048576)\n"
               "      --ws-drain-grace DUR  on a drain, end WebSockets and event streams\n"
               "                            after DUR (default 5s)...\n"
               "      --close-spread DUR    ...one by one over DUR (default 5s)\n"
               "      --access-log PATH|-   one line per request to PATH or standard output;\n"
               "                            SIGUSR1 reopens it\n"
               "      --access-log-format combined|json   (default combined)\n"
               "      --generation N, --index I, --app-fd N   set by up-run\n"
               "  -h, --help                this text;  -V, --version  the version\n"
               "environment: UP_BACKEND=io_uring|epoll, UP_BODY_LIMIT, UP_LOG=debug, and\n"
               "  durations (like 5s): UP_IDLE_TIMEOUT (60s), UP_READ_TIMEOUT (30s),\n"
               "  UP_DRAIN_TIMEOUT (10s), UP_SEND_TIMEOUT (60s: reset a client that takes\n"
               "  no byte of its answers for that long), UP_WS_PING (30s: ping a WebSocket\n"
               "  idle that long, close it when idle twice that)\n");
}

static int env_duration(const char *name, uint64_t def, uint64_t *ret)
{
    const char *v = getenv(name);
    *ret = def;
    if (v == NULL || *v == '\0') {
        return 0;
    }
    if (up_duration_parse(v, ret) < 0) {
        fprintf(stderr, "up-worker: %s='%s' is not a duration (try 500ms, 5s, 1m)\n", name, v);
        return -EINVAL;
    }
    return 0;
}

static int parse_size(const char *what, const char *v, size_t *ret)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n == 0) {
        fprintf(stderr, "up-worker: %s '%s' is not a positive byte count\n", what, v);
        return -EINVAL;
    }
    *ret = (size_t)n;
    return 0;
}

static int parse_env(struct up_worker_cfg *cfg)
{
    const char *be = getenv("UP_BACKEND");
    if (be != NULL && *be != '\0' && up_backend_parse(be, &cfg->backend) < 0) {
        fprintf(stderr, "up-worker: UP_BACKEND='%s': use io_uring, epoll or auto\n", be);
        return -EINVAL;
    }
    const char *bl = getenv("UP_BODY_LIMIT");
    if (bl != NULL && *bl != '\0' && parse_size("UP_BODY_LIMIT", bl, &cfg->limits.max_body) < 0) {
        return -EINVAL;
    }
    if (env_duration("UP_IDLE_TIMEOUT", 60000, &cfg->idle_timeout_ms) < 0 ||
        env_duration("UP_READ_TIMEOUT", 30000, &cfg->read_timeout_ms) < 0 ||
        env_duration("UP_SEND_TIMEOUT", 60000, &cfg->send_timeout_ms) < 0 ||
        env_duration("UP_DRAIN_TIMEOUT", 10000, &cfg->drain_timeout_ms) < 0 ||
        env_duration("UP_WS_PING", 30000, &cfg->ws_ping_ms) < 0) {
        return -EINVAL;
    }
    if (cfg->ws_ping_ms == 0) {
        fprintf(stderr, "up-worker: UP_WS_PING must be more than 0 (try 30s)\n");
        return -EINVAL;
    }
    /* 0 would reset every connection whose answer is not sent at once. */
    if (cfg->send_timeout_ms == 0) {
        fprintf(stderr, "up-worker: UP_SEND_TIMEOUT must be more than 0 (try 60s)\n");
        return -EINVAL;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct up_worker_cfg *cfg)
{
    enum {
        OPT_READY = 256,
        OPT_MAX_HEAD,
        OPT_BODY,
        OPT_GEN,
        OPT_INDEX,
        OPT_GRACE,
        OPT_SPREAD,
        OPT_ALOG,
        OPT_ALOG_FORMAT,
        OPT_APP_FD,
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"require", required_argument, NULL, 'r'},
        {"title", required_argument, NULL, 'T'},
        {"ready", required_argument, NULL, OPT_READY},
        {"max-head", required_argument, NULL, OPT_MAX_HEAD},
        {"body-limit", required_argument, NULL, OPT_BODY},
        {"generation", required_argument, NULL, OPT_GEN},
        {"index", required_argument, NULL, OPT_INDEX},
        {"ws-drain-grace", required_argument, NULL, OPT_GRACE},
        {"close-spread", required_argument, NULL, OPT_SPREAD},
        {"access-log", required_argument, NULL, OPT_ALOG},
        {"access-log-format", required_argument, NULL, OPT_ALOG_FORMAT},
        {"app-fd", required_argument, NULL, OPT_APP_FD},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "+l:r:T:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            cfg->listen = optarg;
            break;
        case 'r':
            if (cfg->nrequire == 16) {
                fprintf(stderr, "up-worker: at most 16 --require libraries\n");
                return -EINVAL;
            }
            cfg->require[cfg->nrequire++] = optarg;
            break;
        case 'T':
            cfg->title = optarg;
            break;
        case OPT_READY:
            if (strcmp(optarg, "manual") != 0 && strcmp(optarg, "auto") != 0) {
                fprintf(stderr, "up-worker: --ready takes auto or manual, not '%s'\n", optarg);
                return -EINVAL;
            }
            cfg->ready_manual = strcmp(optarg, "manual") == 0;
            break;
        case OPT_MAX_HEAD:
            if (parse_size("--max-head", optarg, &cfg->limits.max_head) < 0) {
                return -EINVAL;
            }
            break;
        case OPT_BODY:
            if (parse_size("--body-limit", optarg, &cfg->limits.max_body) < 0) {
                return -EINVAL;
            }
            break;
        case OPT_GEN:
            cfg->generation = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case OPT_INDEX:
            cfg->index = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case OPT_GRACE:
        case OPT_SPREAD:
            if (up_duration_parse(optarg, c == OPT_GRACE ? &cfg->ws_drain_grace_ms
                                                         : &cfg->close_spread_ms) < 0) {
                fprintf(stderr, "up-worker: '%s' is not a duration (try 500ms, 5s)\n", optarg);
                return -EINVAL;
            }
            break;
        case OPT_ALOG:
            cfg->access_log = optarg;
            break;
        case OPT_ALOG_FORMAT:
            if (up_alog_format_parse(optarg, &cfg->access_log_format) < 0) {
                fprintf(stderr, "up-worker: --access-log-format takes combined or json, not '%s'\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case OPT_APP_FD: {
            char *end;
            long fd = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || fd < 3 || fd > INT_MAX ||
                fcntl((int)fd, F_GETFD) < 0) {
                fprintf(stderr, "up-worker: --app-fd %s is not an open fd above 2\n", optarg);
                return -EINVAL;
            }
            /* Inherited without CLOEXEC: set it, so that nothing the app
             * runs keeps it (the app's load closes it). */
            (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
            cfg->app_fd = (int)fd;
            break;
        }
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("up-worker %s\n", UP_VERSION);
            return 1;
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "up-worker: no app given\n");
        usage(stderr);
        return -EINVAL;
    }
    cfg->app_path = argv[optind];
    /* The app's argv: its own path, then what follows `--` (borrowed from
     * argv; only the array is ours). */
    int first = optind + 1;
    if (first < argc && strcmp(argv[first], "--") == 0) {
        first++;
    }
    cfg->app_argv = calloc((size_t)(argc - first + 2), sizeof(char *));
    if (cfg->app_argv == NULL) {
        return -ENOMEM;
    }
    cfg->app_argv[0] = argv[optind];
    cfg->app_argc = 1;
    for (int i = first; i < argc; i++) {
        cfg->app_argv[cfg->app_argc++] = argv[i];
    }
    return 0;
}

int main(int argc, char **argv)
{
    up_fd_std_guard();
    /* Parse a copy: the process title overwrites argv. */
    char **args = up_title_init(argc, argv);
    if (args == NULL) {
        return 1;
    }
    struct up_worker_cfg cfg = {
        .title = "up", .app_fd = -1, .ws_drain_grace_ms = 5000, .close_spread_ms = 5000};
    int r = parse_env(&cfg);
    if (r == 0) {
        r = parse_args(argc, args, &cfg);
    }
    if (r != 0) {
        up_title_free_args(args);
        return r > 0 ? 0 : 2;
    }
    char tag[64];
    if (cfg.generation > 0) {
        snprintf(tag, sizeof(tag), "worker g%u#%u pid=%d", cfg.generation, cfg.index,
                 (int)getpid());
    } else {
        snprintf(tag, sizeof(tag), "up-worker pid=%d", (int)getpid());
    }
    up_log_init(tag);
    char title[64];
    snprintf(title, sizeof(title), "%s worker", cfg.title);
    up_title_set(title);
    int code = up_worker_main(&cfg);
    free(cfg.app_argv);
    up_title_free_args(args);
    return code;
}
