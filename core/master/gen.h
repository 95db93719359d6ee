/*
 * gen: generations of workers, and each worker process as the master sees
 * it: spawning, its channel, its READY/FAIL/ACK/CONN/STATS messages, reload,
 * drain, respawn and reaping.
 *
 * A generation (all workers started from one snapshot of the app):
 *
 *     STARTING --first worker READY--> ACTIVE --next generation ACTIVE--> DRAINING
 *        |                                                                  |
 *        +--FAIL, death before READY, ready timeout, superseded--> FAILED   |
 *                                                                           v
 *                               (every worker gone: the generation is freed) DONE
 *
 * `want` is what reload code asks for (SERVE or STOP); `state` is what was
 * observed. up_gen_reconcile() moves state toward want, and is the only
 * place that sends DRAIN or kills.
 *
 * A worker:
 *
 *     STARTING --READY--> READY --DRAIN sent, or DRAINING received--> DRAINING
 *        \________\__________\____process reaped + channel closed____> GONE
 *
 *   Only a DRAINING worker may hand connections back. A READY one is
 *   routable unless its channel is full, it holds UP_MW_MAX_UNACKED
 *   connections it has not ACKed, or it said DECLINE (out of fds) and not
 *   yet ROOM.
 *
 *   chan is valid until the channel is closed (EOF, or the worker reaped);
 *   every connection sent to it but not yet ACKed stays owned by the master
 *   (the fd kept) and is routed again if the worker goes first.
 */
#ifndef UP_GEN_H
#define UP_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"
#include "loop.h"
#include "passfd.h"
#include "ratelimit.h"

struct up_master;
struct up_mconn;

enum up_gen_state {
    UP_GEN_STARTING, /* spawning; no worker ready yet */
    UP_GEN_ACTIVE,   /* takes every new connection */
    UP_GEN_DRAINING, /* DRAIN sent; its workers exit when they hold nothing */
    UP_GEN_FAILED,   /* did not start; its workers are being killed */
};

enum up_gen_want {
    UP_GEN_WANT_SERVE,
    UP_GEN_WANT_STOP,
};

enum up_mworker_state {
    UP_MW_STARTING, /* spawned, not READY */
    UP_MW_READY,    /* routable while its generation is active */
    UP_MW_DRAINING, /* DRAIN sent */
    UP_MW_GONE,     /* reaped and channel closed; about to be freed */
};

#define UP_MW_ERR_TAIL 2048 /* bytes of a worker's last stderr output kept */
/* Connections sent to one worker and not yet ACKed: each holds an fd in
 * the master, so a worker that reads them and never ACKs (stuck, or
 * hostile: it runs the user's code) must not collect the master's fds. */
#define UP_MW_MAX_UNACKED 512

struct up_mworker {
    struct up_gen *gen;
    struct up_mworker *next; /* the generation's list */
    enum up_mworker_state state;
    unsigned index;
    pid_t pid;           /* 0 once reaped */
    pid_t pid_was;       /* pid, kept after the reap for the logs */
    int status;          /* wait status once reaped */
    bool respawned;      /* this one replaces a dead worker */
    uint64_t spawned_at; /* up_loop_now() ms at spawn: lived long enough? */

    int chan; /* owned: the master's end of the channel */
    struct up_op rx;
    struct up_passfd_in in;
    char *payload; /* owned, UP_PASSFD_MAX_PAYLOAD bytes */
    struct up_op tx;
    bool chan_full;      /* the last CONN met a full channel: polling POLLOUT */
    bool drain_queued;   /* DRAIN to send */
    bool drain_inflight; /* DRAIN being sent (tx) */
    bool drain_sent;
    bool tx_dead;                         /* a send failed: send nothing more (rx goes on to EOF) */
    bool chan_dead;                       /* EOF, error or reaped: no more sends; closing */
    bool rx_paused;                       /* draining, and the master at its pending cap: its
                                           * hand-backs wait in the channel (see recv_next) */
    bool fd_pressure;                     /* DECLINE: out of fds; not routable until ROOM */
    bool on_its_own;                      /* it said DRAINING: signalled by someone else */
    struct up_ratelimit warn_rl;          /* warnings its messages cause */
    struct up_passfd_out drain_out;       /* DRAIN message in flight */
    struct up_mconn *tx_conn;             /* CONN in flight */
    struct up_mconn *txq_head, *txq_tail; /* CONNs to send */
    struct up_mconn *unacked_head, *unacked_tail; /* sent, not ACKed */
    size_t nqueued;                               /* in txq + unacked */

    int errfd; /* owned: read end of the worker's stderr pipe */
    struct up_op err_op;
    char errbuf[512];
    char tail[UP_MW_ERR_TAIL]; /* last stderr bytes, for failure reports */
    size_t tail_len;
    struct up_log_relay err_lines; /* stderr passed on line by line */

    uint64_t conns;             /* STATS: connections held */
    uint64_t requests;          /* STATS: requests served */
    struct up_timer kill_timer; /* SIGKILL if still alive after the drain */
};

struct up_gen {
    struct up_master *m;
    struct up_gen *next; /* the master's list, newest first */
    unsigned id;
    enum up_gen_state state;
    enum up_gen_want want;
    char app[512]; /* the snapshot this generation loads */
    struct up_mworker *workers;
    unsigned nworkers;       /* alive (not GONE) */
    unsigned rr;             /* round-robin cursor */
    uint64_t drain_deadline; /* up_loop_now() ms, when DRAINING */
    uint32_t drain_flags;    /* UP_DRAIN_F_* sent with DRAIN */
    bool shed;               /* over --max-draining: idle connections handed back */
    uint64_t started_at;
    struct up_timer ready_timer; /* --ready-timeout while STARTING */
    struct up_timer respawn_timer;
    unsigned crash_streak; /* deaths without a worker staying up */
    unsigned respawn_due;  /* workers to start when respawn_timer fires */
    char fail_reason[1024];
};

/* Start a new generation from the app: snapshot it, spawn N workers. It
 * becomes active when its first worker is READY. Returns the generation, or
 * NULL with the reason logged (the reload counts as failed). */
struct up_gen *up_gen_start(struct up_master *m);

/* Move every generation toward what it wants (see above). */
void up_gen_reconcile(struct up_master *m);

/* Is there room under the process budget ((max-draining + 1) x N) for a
 * new generation? If not, abandon any generation still starting and make
 * the oldest draining one hand back its idle connections, and return false:
 * the caller retries when a worker is gone. */
bool up_gen_make_room(struct up_master *m);

/* Ask gen to stop: drain with the master's timeout. flags: DRAIN flags
 * (UP_DRAIN_F_*) to send with it. */
void up_gen_stop(struct up_gen *g, uint32_t flags);

/* Send sig to every worker of every generation, or of g. */
void up_gen_kill_all(struct up_master *m, int sig);
void up_gen_kill_all_of(struct up_gen *g, int sig);

/* A SIGCHLD arrived: reap every exited child. */
void up_gen_reap(struct up_master *m);

/* Pick a worker for a connection: round-robin over the routable workers
 * (see above) of the active generation, never the one with pid avoid (the
 * worker a connection came back from; 0 for none). NULL if none. */
struct up_mworker *up_gen_pick(struct up_master *m, pid_t avoid);

/* Whether w takes new connections now (see the diagram). */
bool up_mworker_routable(const struct up_mworker *w);

/* Ready workers of the active generation (alive, channel open), and how
 * many of them have fds (no DECLINE pending): for health. */
void up_gen_ready_counts(const struct up_master *m, unsigned *ret_ready, unsigned *ret_with_fds);

/* The master has room for connections again: read on the channels paused
 * at the pending cap. */
void up_gen_resume_rx(struct up_master *m);

/* Queue c (QUEUED, fd owned by the master) on w's channel. */
void up_mworker_send_conn(struct up_mworker *w, struct up_mconn *c);

/* Workers alive, in every generation. */
unsigned up_gen_count_workers(const struct up_master *m);

const char *up_gen_state_name(enum up_gen_state s);
const char *up_mworker_state_name(enum up_mworker_state s);

/* ---- between gen.c and mworker.c ---- */

/* Spawn worker index of g (fork+exec of up-worker, channel at its fd 3,
 * stderr into a pipe we read). NULL on failure (logged). */
struct up_mworker *up_mworker_spawn(struct up_gen *g, unsigned index);
void up_mworker_free(struct up_mworker *w);
/* Send DRAIN with g's deadline and flags; arm the kill-after-deadline. */
void up_mworker_drain(struct up_mworker *w);
/* Start the next send on w's channel, if any and none is in flight. */
void up_mworker_kick(struct up_mworker *w);
/* The channel is finished: route again what w had not taken. */
void up_mworker_chan_dead(struct up_mworker *w);
/* waitpid() reported w's exit with this wait status. */
void up_mworker_reaped(struct up_mworker *w, int status);
/* Free w once it is reaped and no op is in flight (calls up_gen_worker_gone). */
void up_mworker_maybe_gone(struct up_mworker *w);
/* Read w's channel again after a pause at the pending cap. */
void up_mworker_resume_rx(struct up_mworker *w);
/* Callbacks from mworker.c into gen.c. */
void up_gen_worker_ready(struct up_mworker *w);
void up_gen_worker_gone(struct up_mworker *w);
/* w said DRAINING: it will leave; replace it if it served. */
void up_gen_worker_leaving(struct up_mworker *w);

#endif
