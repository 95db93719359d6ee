/*
 * gen: the generations of workers (each started from one snapshot of the
 * app), and the one place that decides which of them serve, drain or die.
 *
 *     STARTING --first worker READY--> ACTIVE --a newer one ACTIVE--> DRAINING
 *        |                                                               |
 *        +--FAIL, death before READY, ready timeout, superseded--> FAILED |
 *                                                                        v
 *                              (every worker gone: the generation is freed)
 *
 * What a generation prepares and how its workers start, say they are
 * ready and stop depends on their kind (kind.h); what is decided here does
 * not.
 *
 * Each generation has a `state` (what was observed) and a `want` (what the
 * events ask for: serve, drain, or be killed), and each worker may be
 * wanted drained (it began on its own) or killed (late). Events only set
 * states and wants; up_gens_reconcile() alone compares them with what the
 * workers were told and sends DRAIN or kills. Nothing else here, and
 * nothing anywhere else, drains or kills a worker.
 *
 * Budget: at most (max_draining + 1) x N worker processes. A reload past it
 * is deferred (reloads coalesce, the latest code wins) while the oldest
 * draining generation hands its idle connections back at once (SHED); past
 * max_draining draining generations, the oldest are shed too.
 *
 * Respawn: a worker of the active generation that dies, or leaves on its
 * own, is replaced after a back-off (100 ms doubling to 10 s per death in a
 * row); one that cannot be started (fork failing, no fds) is retried with
 * the same back-off for as long as it takes.
 *
 * Upgrade: a generation may instead be one heir, a new master (kind.h:
 * HEIR) with its own workers. It becomes active when it says READY, as any
 * generation does; from then on every connection goes to it, and every
 * other generation hands its idle connections back at once (to be passed
 * on). It is never respawned: if it dies once active, heir_lost() tells
 * the owner, which takes over again.
 *
 * The set reports upward through its callbacks; it never calls its owner.
 * Never blocks, except the snapshot copy of the app (a short file copy, once
 * per reload).
 */
#ifndef UP_GEN_H
#define UP_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "list.h"
#include "loop.h"
#include "mworker.h"

struct up_pending;
struct up_gens;

enum up_gen_state {
    UP_GEN_STARTING, /* spawning; no worker ready yet */
    UP_GEN_ACTIVE,   /* takes every new connection */
    UP_GEN_DRAINING, /* replaced: its workers serve what they hold, then go */
    UP_GEN_FAILED,   /* did not start (or was superseded): its workers are killed */
};

enum up_gen_want {
    UP_GEN_WANT_SERVE, /* take connections once ready */
    UP_GEN_WANT_DRAIN, /* drain by drain_deadline, with drain_flags */
    UP_GEN_WANT_KILL,  /* gone now, with kill_sig */
};

struct up_gen {
    struct up_gens *set;
    struct up_list link; /* the set's list, newest first */
    unsigned id;
    enum up_gen_state state;
    enum up_gen_want want;
    uint32_t drain_flags;     /* UP_DRAIN_F_* wanted */
    uint64_t drain_deadline;  /* up_loop_now() ms */
    int kill_sig;             /* WANT_KILL: the signal */
    bool shed;                /* over --max-draining or the budget: idle ones back now */
    bool heir;                /* one worker, a new master (up_gens_upgrade) */
    struct up_kind_snap snap; /* what this generation runs (its app's snapshot) */
    struct up_list workers;   /* mworker.gen_link */
    unsigned nworkers;        /* alive (not GONE) */
    unsigned rr;              /* round-robin cursor */
    uint64_t started_at;
    struct up_timer ready_timer; /* --ready-timeout while STARTING */
    struct up_timer respawn_timer;
    unsigned crash_streak; /* deaths without a worker staying up */
    unsigned respawn_due;  /* workers to start when respawn_timer fires */
    char fail_reason[1024];
};

/* What the set reports to its owner. */
struct up_gens_cbs {
    /* g took over every new connection; old (or NULL) drains now. */
    void (*active)(struct up_gens *gs, struct up_gen *g, struct up_gen *old);
    /* g failed to start (why: g->fail_reason); whatever served before
     * still does. */
    void (*failed)(struct up_gens *gs, struct up_gen *g);
    /* No generation serves, and none is starting. */
    void (*none)(struct up_gens *gs);
    /* c (READY) could not be given to the worker it was sent to. */
    void (*requeue)(struct up_gens *gs, struct up_pending *c);
    /* A draining worker (pid from) handed a connection back; the callee
     * owns fd. */
    void (*handed_back)(struct up_gens *gs, int fd, const char *data, size_t len, unsigned tries,
                        pid_t from);
    /* A worker of the active generation can take connections again. */
    void (*routable)(struct up_gens *gs);
    /* Whether hand-backs may be read now (the owner's pending cap). */
    bool (*room)(struct up_gens *gs);
    /* A hand-back was dropped by the kernel at the master's fd limit. */
    void (*lost)(struct up_gens *gs);
    /* A worker came, went, or its health changed. */
    void (*changed)(struct up_gens *gs);
    /* The heir died after it took over; no generation serves now. */
    void (*heir_lost)(struct up_gens *gs, pid_t pid);
    /* Optional. Whether the owner stops, or a stop is on its way to it
     * (see up_mworker_cbs.stop_coming). */
    bool (*stop_coming)(struct up_gens *gs);
};

struct up_gens_opts {
    const char *snap_dir; /* where the app's copies go (kind.h: prepare) */
    long workers;
    int max_draining;
    uint64_t drain_timeout_ms;
    uint64_t ready_timeout_ms;
    bool respawn;
    bool migrate_at_deadline; /* idle connections of old workers stay until the deadline */
    /* kind, bin, app (the .so, or the command), title, ...; gen_id, index
     * and the generation's prepared app are set here. */
    struct up_kind_params spawn;
};

struct up_gens_stats {
    uint64_t reloads;      /* generations started */
    uint64_t reload_fails; /* generations that failed to start */
    uint64_t respawns;     /* workers replaced */
    /* Access log lines of workers gone (the live ones count in theirs). */
    uint64_t alog_lines_gone, alog_dropped_gone;
};

struct up_gens {
    struct up_loop *loop;
    const struct up_gens_opts *opts;
    const struct up_gens_cbs *cbs;
    void *ctx;           /* the owner's */
    struct up_list list; /* newest first */
    struct up_gen *active;
    unsigned next_id;
    bool stopping;
    bool reload_pending;              /* a reload waits for room under the budget */
    struct up_kind_params heir_spawn; /* the heir's (up_gens_upgrade); borrowed strings */
    struct up_gens_stats stats;
};

void up_gens_init(struct up_gens *gs, struct up_loop *loop, const struct up_gens_opts *opts,
                  const struct up_gens_cbs *cbs, void *ctx);

/* Start a new generation (why is for the log). Returns 0 when it starts,
 * 1 when it waits for room under the budget (it starts by itself later),
 * or -errno when it could not start (reported as failed() too). */
int up_gens_reload(struct up_gens *gs, const char *why);

/* Start a heir generation: one worker started as heir says (a HEIR, see
 * above; heir and what it points to must stay valid while it runs).
 * Returns 0 when it starts, or -errno (reported as failed() too). */
int up_gens_upgrade(struct up_gens *gs, const struct up_kind_params *heir);

/* The active heir serves alone now: forget it (its channel closed, never
 * signalled or waited for; it outlives us) and stop, with nothing left.
 * Only when no other generation is left. */
void up_gens_let_go(struct up_gens *gs);

/* The worker of the heir generation (starting or active), or NULL. */
struct up_mworker *up_gens_heir(const struct up_gens *gs);

/* Stop: graceful, every generation drains within the drain timeout (idle
 * connections closed, not handed back); else every worker gets SIGQUIT. */
void up_gens_stop(struct up_gens *gs, bool graceful);

/* Kill every worker of every generation with sig (the stop deadline). */
void up_gens_kill_all(struct up_gens *gs, int sig);

/* Compare what each generation and worker is with what it should be, and
 * drain or kill to match. Called after every event here; the owner needs
 * it only after changing wants itself (it does not). */
void up_gens_reconcile(struct up_gens *gs);

/* A notice on the master's NOTIFY_SOCKET: given to the worker whose pid
 * sent it (with descendants, also to the one the sender descends from).
 * false if no worker is the sender. */
bool up_gens_notice(struct up_gens *gs, const struct up_notice *n, bool descendants);

/* waitpid() reported pid: true if it was one of our workers. */
bool up_gens_reaped(struct up_gens *gs, pid_t pid, int status);

/* No generation left at all (nothing to wait for when stopping). */
bool up_gens_empty(const struct up_gens *gs);

/* A generation active or starting: a worker will come. */
bool up_gens_expected(const struct up_gens *gs);

/* Workers alive, in every generation. */
unsigned up_gens_count_workers(const struct up_gens *gs);

/* Workers of the active generation: ready (alive, channel open), how many
 * of those have fds (no DECLINE pending), and how many are stalled
 * (mworker.h: routed around). */
struct up_gens_counts {
    unsigned ready, with_fds, stalled;
};
void up_gens_counts(const struct up_gens *gs, struct up_gens_counts *ret);

/* Pick a worker of the active generation that takes connections now,
 * never the one with pid avoid (0: none): round-robin; by key (the same
 * key, the same worker while the set of workers stays, and a worker
 * joining or leaving moves only its share: rendezvous hashing over the
 * workers' indexes); or the one with that index. NULL if none. */
struct up_mworker *up_gens_pick(struct up_gens *gs, pid_t avoid);
struct up_mworker *up_gens_pick_key(struct up_gens *gs, uint64_t key, pid_t avoid);
struct up_mworker *up_gens_pick_index(struct up_gens *gs, unsigned index, pid_t avoid);

/* The master has room again: read the channels paused at the cap. */
void up_gens_resume_rx(struct up_gens *gs);

/* The last output (stderr) of one of g's workers, for failure reports:
 * *ret_len bytes, 0 when none wrote anything. */
const char *up_gen_tail(const struct up_gen *g, size_t *ret_len);

/* Totals over every worker: processes, connections they hold. */
void up_gens_totals(const struct up_gens *gs, unsigned *ret_workers, unsigned long long *ret_conns);

/* Tell every worker to open its log files again. */
void up_gens_reopen(struct up_gens *gs);

/* Access log lines every worker, gone or alive, wrote and dropped. */
void up_gens_alog_totals(const struct up_gens *gs, uint64_t *ret_lines, uint64_t *ret_dropped);

const char *up_gen_state_name(enum up_gen_state s);

#endif
