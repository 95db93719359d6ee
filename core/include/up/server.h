/*
 * libup: the up master as a library. A server owns listening sockets and
 * generations of worker processes (up-worker running an app .so), peeks at
 * each new connection's first request head, and passes the connection to a
 * worker with SCM_RIGHTS; up_server_reload() starts a new generation and
 * drains the old one without failing a request or resetting a Keep-Alive
 * connection. up-run is this library behind a command line.
 *
 *     #include <up/server.h>              cc ... -lup -luring -ldl
 *
 *     struct up_server_opts o = {.app = "/srv/app.so", .workers = 4};
 *     struct up_server *s;
 *     if (up_server_new(&o, &s) < 0 ...
 *     up_server_listen(s, "8080");
 *     up_server_use(s, my_middleware, my_ctx);   // optional, in order
 *     int code = up_server_run(s);               // until stopped
 *     up_server_free(s);
 *
 * Threads and signals: a server runs on the thread that calls
 * up_server_run(), on its own event loop (io_uring, or epoll), and every
 * function here is for that thread, except up_server_reload() and
 * up_server_stop(), which may be called from any thread or a signal
 * handler (they write to an eventfd the loop reads). The server reaps its
 * workers through a signalfd: it blocks SIGCHLD (and, with .signals, USR2,
 * HUP, TERM, INT and QUIT, which it then handles as up-run does) in the
 * calling thread when created; block them in every other thread too.
 *
 * Errors are -errno; a function that fails changes nothing.
 */
#ifndef UP_SERVER_H
#define UP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "up/middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

struct up_server;

/* A built-in middleware: sticky routing, by cookie:NAME, header:NAME or ip
 * (spec), keeps a client on one worker of the serving generation (after a
 * reload, on one worker of the new one). Requests without the cookie or
 * header go round-robin. Returns 0, or -EINVAL for a bad spec. */
int up_server_use_sticky(struct up_server *s, const char *spec);

/* ---- the server ---- */

/* Why a reload ended as it did (the reload callback). */
struct up_reload_outcome {
    unsigned generation; /* the generation the reload started */
    bool ok;             /* it serves now; false: it failed, the old one serves */
    const char *why;     /* !ok: the reason (the dlerror() text and the like) */
    uint64_t ms;         /* from the reload to this outcome */
};

/* What the workers are (see core/master/kind.h). */
enum up_worker_kind {
    UP_WORKERS_APP = 0, /* up-worker loading .app */
    UP_WORKERS_EXEC,    /* .exec_argv, any HTTP server: it gets the listeners
                         * by socket activation (LISTEN_FDS) and accepts on
                         * them itself; ready on READY=1 (NOTIFY_SOCKET) or
                         * after .ready_after_ms; drains on .stop_signal */
    UP_WORKERS_HANDOFF, /* .exec_argv speaking the handoff protocol on fd 3
                         * (docs/PROTOCOL.md): connections come from the
                         * master one by one, as to up-worker */
};

/* What a master started by another's upgrade takes over (see
 * core/master/heir.h): fds it was passed, -1 for none. */
struct up_heir_fds {
    int chan;      /* the channel to the old master */
    int control;   /* the control socket, listening (at .control's path) */
    int metrics;   /* the metrics socket, listening */
    int stderr_fd; /* the old master's stderr: ours once we take over */
};

/* A duration of zero, for the options below whose 0 means their default. */
#define UP_SERVER_ZERO UINT64_MAX

struct up_server_opts {
    enum up_worker_kind kind;
    const char *app; /* APP: the app .so (an absolute path is best: the
                      * cwd may change); required */
    /* EXEC, HANDOFF: the command and its arguments, NULL-terminated (found
     * in $PATH unless it has a '/'); required. */
    char *const *exec_argv;
    int stop_signal;         /* EXEC: what makes an old worker drain; 0: SIGTERM */
    uint64_t ready_after_ms; /* EXEC: ready this long after its start, not on
                              * READY=1; 0: READY=1 */
    bool notify_access_all;  /* EXEC: READY=1 from a worker's descendants counts */
    const char *exec_bin;    /* EXEC, HANDOFF: up-exec; NULL: $UP_EXEC_BIN, else
                              * beside this program */
    char *const *app_argv;   /* its arguments after argv[0], or NULL */
    int app_argc;
    long workers;              /* per generation; 0: 1 */
    uint64_t drain_timeout_ms; /* old workers drain this long; 0: 10 min */
    /* Idle Keep-Alive connections of old workers move to the new
     * generation at once, so that every request after a reload meets the
     * new code (a proxy's pooled connections are never idle long enough to
     * be let go); true: only at the drain deadline. */
    bool migrate_at_deadline;
    int max_draining; /* old generations draining at once; 0: 4 */
    /* A draining worker's long-lived connections (WebSockets, event
     * streams) end this long after its drain begins, WebSockets with close
     * code 1012, one by one over close_spread_ms, all within the drain
     * timeout. 0: 5 s each; UP_SERVER_ZERO: none. */
    uint64_t ws_drain_grace_ms;
    uint64_t close_spread_ms;
    /* APP: each worker writes one line per request to access_log (a path,
     * or "-" for standard output; NULL: none) as access_log_format says
     * ("combined" or "json"; NULL: combined). Borrowed for the server's
     * life. SIGUSR1 (with signals) has the workers reopen it. */
    const char *access_log;
    const char *access_log_format;
    bool no_respawn;            /* do not replace workers that die */
    bool ready_manual;          /* the app calls up_ready() */
    uint64_t ready_timeout_ms;  /* 0: 30 s */
    uint64_t header_timeout_ms; /* 0: 10 s */
    uint64_t queue_timeout_ms;  /* 0: 10 s */
    size_t max_head;            /* 0: 16384 */
    int backend;                /* 0 auto, 1 io_uring, 2 epoll */
    const char *title;          /* process titles "TITLE worker"; NULL: "up" */
    const char *const *require; /* libraries each worker loads first */
    int nrequire;
    const char *worker_bin; /* up-worker; NULL: $UP_WORKER_BIN, else beside this program */
    const char *control;    /* control socket path, or NULL: none */
    bool control_private;   /* its directory must be private to this user (up-run's
                             * default path): made 0700 when missing, refused when not */
    const char *metrics;    /* HOST:PORT for /metrics and /healthz, or NULL */
    const char *pidfile;    /* or NULL */
    const char *watch_dir;  /* reload on changes there, or NULL */
    const char *build_cmd;  /* with watch_dir: run first, reload if it succeeds */
    bool signals;           /* handle USR2/HUP (reload), TERM/INT (stop), QUIT (stop now) */
    const char *user;       /* "NAME[:GROUP]": started as root, become NAME once the
                             * listeners are bound, before anything else is created
                             * (control socket, pidfile, snapshots) or started */
    /* Master upgrade (the control socket's "upgrade"): the program that
     * takes this master's place, and its arguments (argv[0] its absolute
     * path), NULL-terminated, borrowed for the server's life. It is started
     * with this master's sockets (see core/master/kind.h, HEIR); when it
     * serves, this master hands every connection over and exits. NULL:
     * upgrades are refused. */
    char *const *upgrade_argv;
    /* This master takes another's place: what that one passed. Its
     * listeners are added with up_server_listen_fd(); it accepts on them,
     * and opens the control and metrics sockets and the pidfile, once its
     * first generation serves. NULL: it does not. */
    const struct up_heir_fds *heir;
    /* The outcome of every reload (and of the first start); may be NULL. */
    void (*on_reload)(void *ctx, const struct up_reload_outcome *o);
    void *ctx;
    /* up_server_listen() binds with SO_REUSEPORT: other servers of this
     * user may bind the port too, and the kernel spreads new connections
     * among them (one master per NUMA node). false: the port is this
     * server's alone, and one in use fails with -EADDRINUSE. */
    bool reuseport;
};

/* Create a server (nothing listens or runs yet). Returns 0 with *ret set,
 * or -errno (-EINVAL: a bad option; the log says which). */
int up_server_new(const struct up_server_opts *opts, struct up_server **ret);

/* Listen on addr: "PORT", "HOST:PORT", "[V6]:PORT" or "unix:/PATH"; a HOST
 * name is a socket on each address it resolves to (one the host does not
 * have is skipped, with a warning in the log), and an address still held
 * by a server killed a moment ago is waited for, up to 2 s (-EADDRINUSE
 * after). Or take a listening socket fd (the server owns it from now on,
 * also on failure). Call before up_server_run(). Returns 0 or -errno. */
int up_server_listen(struct up_server *s, const char *addr);
int up_server_listen_fd(struct up_server *s, int fd);

/* Add a middleware at the end of the chain (before the built-in
 * round-robin). Returns 0, or -ENOSPC past 16. */
int up_server_use(struct up_server *s, up_middleware_fn fn, void *ctx);

/* Start the first generation and serve until stopped. Returns the exit
 * code: 0 stopped, 1 a runtime failure, 3 the start failed (the app could
 * not start, a listener or the control socket could not be set up). */
int up_server_run(struct up_server *s);

/* Reload (start a new generation; the old one drains once it serves), or
 * stop (graceful: drain within the drain timeout; else at once). A stop
 * closes the listeners as soon as no accept is in flight, so that new
 * clients are refused during the stop (while nothing serves yet but the
 * first generation starts, a graceful stop waits for it, at most the
 * ready and drain timeouts). Safe from any thread and from a signal
 * handler. */
void up_server_reload(struct up_server *s);
void up_server_stop(struct up_server *s, bool graceful);

/* The status report `up-run status` prints, into buf. Returns its length.
 * The server's thread only. */
size_t up_server_status(struct up_server *s, char *buf, size_t cap);

/* Free a server that is not running (before or after up_server_run()). */
void up_server_free(struct up_server *s);

#ifdef __cplusplus
}
#endif

#endif
