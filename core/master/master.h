/*
 * master: the up-run process. It owns the listening sockets, the event loop,
 * the generations of workers (gen.h), the connections not yet handed to a
 * worker (mconn.h), the control socket (ctl.h) and the file watcher
 * (watch.h). This header is the state they share; each module keeps to its
 * own part of it.
 *
 * The master never blocks and never spins: every wait is on the loop. Its
 * memory and fds are bounded by the number of workers and of connections
 * not yet handed off (at most max_pending, after which accepting pauses and
 * the kernel's backlog holds the rest): a connection a worker holds costs the
 * master nothing.
 */
#ifndef UP_MASTER_H
#define UP_MASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "acceptor.h"
#include "cli.h"
#include "loop.h"
#include "ratelimit.h"

struct up_gen;
struct up_mconn;
struct up_ctl;
struct up_metrics;
struct up_watch;

#define UP_MAX_LISTENERS UP_CLI_MAX_LISTEN

struct up_listener {
    struct up_master *m;
    int fd; /* owned; never closed while up-run runs */
    struct up_acceptor acceptor;
    bool unix_sock; /* AF_UNIX listener */
    char text[128];
};

enum up_master_state {
    UP_MASTER_STARTING, /* first generation not ready yet */
    UP_MASTER_RUNNING,  /* serving */
    UP_MASTER_STOPPING, /* SIGTERM/SIGINT: draining everything */
};

struct up_master_stats {
    uint64_t accepted;       /* connections accepted */
    uint64_t handed;         /* connections a worker took (ACK) */
    uint64_t rerouted;       /* handed again after a worker died or was full */
    uint64_t handed_back;    /* connections a draining worker gave back */
    uint64_t answered;       /* answered by the master itself (4xx/503) */
    uint64_t reloads;        /* reloads started */
    uint64_t reload_fails;   /* generations that failed to start */
    uint64_t respawns;       /* workers replaced after dying */
    uint64_t queue_timeouts; /* waited --queue-timeout for a worker: 503 or closed */
    uint64_t lost;           /* handed back while the master was out of fds */
    uint64_t shed;           /* incomplete heads answered 408 early: pending cap */
};

struct up_master {
    const struct up_cli *cli;
    struct up_loop *loop;
    enum up_master_state state;
    int exit_code;
    char self_dir[512]; /* where up-run lives: up-worker is beside it */
    char snap_dir[256]; /* private dir holding each generation's app copy */

    bool pidfile_written; /* this master wrote --pidfile: only it removes it */

    struct up_listener listeners[UP_MAX_LISTENERS];
    int nlisteners;

    int sigfd; /* owned: signalfd */
    struct up_op sig_op;
    char sig_buf[128];

    /* Generations, newest first. active serves new connections. */
    struct up_gen *gens;
    struct up_gen *active;
    unsigned next_gen;
    char last_error[1024]; /* why the last generation failed (503 page) */
    bool reload_pending;   /* a reload waits for room under the process budget */

    /* Connections not yet owned by a worker. */
    struct up_mconn *mconns; /* every one (list, newest first) */
    struct up_mconn *mconns_tail;
    size_t nmconns;
    size_t nleaving;             /* of those: answered or closing, the fd about to go */
    size_t nshedding;            /* ... and those chosen to be shed, not answered yet */
    size_t max_pending;          /* accepting pauses at this many */
    bool accept_paused;          /* ... and has not resumed yet */
    struct up_mconn *queue_head; /* head complete, waiting for a worker */
    struct up_mconn *queue_tail;
    size_t nqueued;
    struct up_ratelimit queue_rl; /* queue timeout warnings */
    uint64_t next_conn_id;
    char *bufs; /* free list of peek buffers */

    struct up_ctl *ctl;
    struct up_metrics *metrics;
    struct up_watch *watch;
    struct up_timer stop_timer; /* graceful stop deadline */
    struct up_timer shed_timer; /* accepting paused: shed slow heads (mconn.h) */
    unsigned long long nofile;  /* RLIMIT_NOFILE, raised to the hard limit at start */
    const char *health;         /* the last health logged (up_master_health()) */
    struct up_master_stats stats;
};

/* ---- master.c ---- */

/* Set up everything from cli and start the first generation. Returns 0 or
 * a start-up failure (the caller exits 3). */
int up_master_init(struct up_master *m, const struct up_cli *cli);

/* Run until stopped; returns the exit code. */
int up_master_run(struct up_master *m);

void up_master_free(struct up_master *m);

/* Start a reload (SIGUSR2, SIGHUP, control socket, watcher). why is for
 * the log. */
void up_master_reload(struct up_master *m, const char *why);

/* Stop: graceful drains within the drain timeout; otherwise at once. */
void up_master_stop(struct up_master *m, bool graceful);

/* Something changed that may let the master exit (a worker gone, a
 * connection done): exit when stopping and nothing is left. */
void up_master_check_done(struct up_master *m);

/* Accepting may resume: a pending connection went away. */
void up_master_unpause(struct up_master *m);

/* gen.c tells the master: no generation serves any more (the first one
 * failed, or every one did): exit 3 at start-up, or answer 503 in watch
 * mode until a change fixes the app. */
void up_master_no_generation(struct up_master *m);

/* gen.c tells the master: a worker process is gone (a deferred reload may
 * fit now). */
void up_master_worker_freed(struct up_master *m);

/* gen.c tells the master: a generation just became active. */
void up_master_generation_active(struct up_master *m);

/* A child that is not a worker exited (the --build command). */
void up_master_child_exited(struct up_master *m, pid_t pid, int status);

/* Write a status report (generations, workers, counters) into buf. */
size_t up_master_status(const struct up_master *m, char *buf, size_t cap);

/* NULL while the master can serve: it runs and a worker of the active
 * generation is ready and has fds. Otherwise why not, in a few words
 * ("no ready worker"), for /healthz, status and the log. */
const char *up_master_health(const struct up_master *m);

/* Something that health depends on changed: log a change of health once
 * (degraded, why; and recovered). */
void up_master_check_health(struct up_master *m);

#endif
