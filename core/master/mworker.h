/*
 * mworker: one worker process as the master sees it: spawning it (as its
 * kind says, kind.h: up-worker with its channel at fd 3, or a command
 * through up-exec; its output into a pipe we read), its channel (CONN and
 * DRAIN out; READY, FAIL, ACK, CONN back, STATS, DECLINE, ROOM, DRAINING
 * in), what it says on the master's NOTIFY_SOCKET (EXEC: READY=1,
 * STATUS=, STOPPING=1), its output, the signals it gets, and its end.
 *
 *     STARTING --READY--> READY --drain(), or DRAINING from it--> DRAINING
 *        \________\__________\____process reaped + channel read to EOF__> GONE
 *
 * A worker without a channel (EXEC) is ready when it says READY=1 (or
 * after a delay), drains on its stop signal, and is never routable: it
 * accepts on the listeners itself.
 *
 * A READY worker is routable unless its channel is full, it holds
 * UP_MW_MAX_UNACKED connections it has not ACKed, or it said DECLINE (out
 * of fds) and not yet ROOM. Only a DRAINING one may hand connections back.
 *
 * chan is valid until GONE. Every connection sent but not yet ACKed stays
 * the master's (its pending keeps the fd) and goes back to the owner
 * (requeue) if the worker goes first, declines it, or is told to drain
 * before it was sent.
 *
 * The worker runs the user's code: everything it sends is checked, and the
 * warnings it can cause are rate-limited. This module never decides to kill
 * or drain: it does what its owner says (up_mworker_drain/kill) and reports
 * upward through the callbacks; it never blocks.
 */
#ifndef UP_MWORKER_H
#define UP_MWORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kind.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "notifyd.h"
#include "passfd.h"
#include "ratelimit.h"

struct up_pending;
struct up_mworker;

enum up_mworker_state {
    UP_MW_STARTING, /* spawned, not READY */
    UP_MW_READY,    /* routable while its generation is active */
    UP_MW_DRAINING, /* DRAIN sent, or it said DRAINING */
    UP_MW_GONE,     /* reaped and channel read to its end; about to be freed */
};

#define UP_MW_ERR_TAIL 2048 /* bytes of a worker's last stderr output kept */
/* Connections sent to one worker and not yet ACKed: each holds an fd in
 * the master, so a worker that reads them and never ACKs (stuck, or
 * hostile: it runs the user's code) must not collect the master's fds. */
#define UP_MW_MAX_UNACKED 512
/* A worker that has ACKed nothing for this long while connections wait
 * for it is stalled: its loop is not running (a handler that blocks, a
 * stop by a debugger), and it reads nothing it is sent. New connections go
 * to the other workers, or wait in the master for the first one that
 * takes again, rather than behind it: one handler stuck for 8 s held half
 * the new connections for those 8 s while the other worker idled. What it
 * was sent before stays its own (it holds the fds; another worker taking
 * them too would have two serve one socket). A loop that runs ACKs within
 * a turn, so 100 ms is far from the healthy case. */
#define UP_MW_STALL_MS 100

/* What a worker reports to its owner (its generation). */
struct up_mworker_cbs {
    void (*ready)(struct up_mworker *w);
    /* It said why it could not start (FAIL: dlerror() and the like), or it
     * speaks another protocol version. */
    void (*fail)(struct up_mworker *w, const char *text, size_t len);
    /* c (READY again) could not be given to w: route it elsewhere. */
    void (*requeue)(struct up_mworker *w, struct up_pending *c);
    /* A draining w handed a connection back (checked: from a draining
     * worker, no more read than a head may hold). The callee owns fd. */
    void (*handed_back)(struct up_mworker *w, int fd, const char *data, size_t len, unsigned tries);
    /* w can take connections again (channel drained, under the un-ACKed
     * cap, ROOM). */
    void (*routable)(struct up_mworker *w);
    /* w began draining on its own (a SIGTERM from someone else). */
    void (*draining)(struct up_mworker *w);
    /* Optional. Whether a stop of the master is under way or on its way:
     * w's DRAINING is then that same stop reaching w first, and w stays
     * routable until the stop drains it. */
    bool (*stop_coming)(struct up_mworker *w);
    /* w should not run any more: alive past its drain deadline and grace,
     * or its channel ended while it runs. The owner decides (and kills). */
    void (*late)(struct up_mworker *w);
    /* Out of fds, or back to having them (DECLINE / ROOM). */
    void (*pressure)(struct up_mworker *w, bool on);
    /* A hand-back whose fd the kernel dropped at the master's fd limit. */
    void (*lost)(struct up_mworker *w);
    /* Whether the master has room for hand-backs now; if not, a draining
     * worker's channel is left unread until up_mworker_resume_rx(). */
    bool (*room)(struct up_mworker *w);
    /* Reaped and its channel read to the end: the owner frees it. */
    void (*gone)(struct up_mworker *w);
};

struct up_mworker {
    struct up_loop *loop;
    const struct up_mworker_cbs *cbs;
    void *owner;             /* the generation's */
    struct up_list gen_link; /* the owner's list of workers */
    enum up_mworker_state state;
    enum up_mworker_state left_as; /* GONE: the state it was in before */
    unsigned gen_id, index;        /* for logs: "worker g3#1" */
    size_t max_head;               /* a hand-back's bytes already read may not pass it */
    pid_t pid;                     /* 0 once reaped */
    pid_t pid_was;                 /* pid, kept after the reap for the logs */
    int status;                    /* wait status once reaped */
    bool respawned;                /* this one replaces a dead worker */
    uint64_t spawned_at;           /* up_loop_now() ms at spawn: lived long enough? */
    bool on_its_own;               /* it said DRAINING: signalled by someone else */
    enum up_kind kind;
    enum up_ready_by ready_by;
    int stop_signal;             /* EXEC: what makes it drain */
    bool stop_sent;              /* EXEC: stop_signal sent */
    bool chan_closed_early;      /* its channel ended before it was READY, while it ran */
    struct up_timer ready_timer; /* UP_READY_AFTER */
    char status_text[128];       /* EXEC: its last STATUS= */

    /* The owner's: what its generation wants of this worker. */
    bool want_kill;  /* late, or its channel ended: reconcile kills it */
    bool want_drain; /* it began draining on its own: reconcile bounds it */
    int killed_sig;  /* the signal reconcile sent it, 0 none */

    int chan; /* owned: the master's end of the channel */
    struct up_op rx;
    struct up_passfd_in in;
    char *payload; /* owned, UP_PASSFD_MAX_PAYLOAD bytes */
    struct up_op tx;
    bool chan_full;               /* the last CONN met a full channel: polling POLLOUT */
    bool drain_queued;            /* DRAIN to send */
    bool reopen_queued;           /* REOPEN to send */
    bool ctl_inflight;            /* DRAIN or REOPEN being sent (tx) */
    uint32_t drain_flags;         /* UP_DRAIN_F_* asked for (sent or queued) */
    uint64_t drain_deadline;      /* up_loop_now() ms */
    bool tx_dead;                 /* a send failed: send nothing more (rx goes on to EOF) */
    bool chan_dead;               /* EOF, error or reaped: no more sends; closing */
    bool rx_paused;               /* draining, and the master at its pending cap */
    bool fd_pressure;             /* DECLINE: out of fds; not routable until ROOM */
    struct up_passfd_out ctl_out; /* DRAIN or REOPEN in flight */
    struct up_pending *tx_conn;   /* CONN in flight */
    bool takes_conns;             /* READY said UP_READY_F_CONNS */
    struct up_list tx_batch;      /* CONNS in flight (pending.link), in order */
    struct up_passfd_out_fds batch_out;
    struct up_conn_entry batch_ent[UP_PASSFD_MAX_FDS];
    struct up_list txq;          /* CONNs to send (pending.link) */
    struct up_list unacked;      /* sent, not ACKed (pending.link) */
    size_t nqueued;              /* in txq, in flight and unacked */
    uint64_t waiting_since;      /* up_loop_now() ms: nqueued > 0 and no ACK since */
    struct up_ratelimit warn_rl; /* warnings its messages cause */

    int errfd; /* owned: read end of the worker's stderr pipe */
    struct up_op err_op;
    char errbuf[512];
    struct up_log_relay err_lines; /* stderr passed on line by line */
    char tail[UP_MW_ERR_TAIL];     /* last stderr bytes, for failure reports */
    size_t tail_len;

    uint64_t conns;             /* STATS: connections held */
    uint64_t requests;          /* STATS: requests served */
    uint64_t alog_lines;        /* STATS: access log lines written */
    uint64_t alog_dropped;      /* STATS: ... and dropped (the sink did not take them) */
    struct up_timer kill_timer; /* past the drain deadline; the reaped channel's guard */
};

/* A heir that serves alone now: never signal or wait for it again (it
 * outlives us); its channel is shut, and once it has ended, gone(). */
void up_mworker_let_go(struct up_mworker *w);

/* Start a worker. Returns it, or NULL with *ret_err (-errno: fork or exec
 * failed, no fds) and nothing left behind. */
struct up_mworker *up_mworker_spawn(struct up_loop *loop, const struct up_kind_params *p,
                                    const struct up_mworker_cbs *cbs, void *owner, int *ret_err);

/* What w's process said on the master's NOTIFY_SOCKET (the owner decided
 * that it speaks for w): READY=1 makes a starting worker ready (with
 * UP_READY_NOTIFY), STATUS= is kept for the status report, STOPPING=1
 * unasked means it stops on its own (draining() is reported). */
void up_mworker_notice(struct up_mworker *w, const struct up_notice *n);

/* Queue c (READY, fd owned by the master) on w's channel. */
void up_mworker_send_conn(struct up_mworker *w, struct up_pending *c);

/* Tell w to drain: deadline_ms from now, flags UP_DRAIN_F_*. A second call
 * sends DRAIN again only if it adds flags (a worker only ever shortens its
 * deadline). What waits to be sent goes back to the owner. Past the
 * deadline and a grace, late() is reported. A worker without a channel
 * gets its stop signal once, and late() comes at the deadline itself. */
void up_mworker_drain(struct up_mworker *w, uint64_t deadline_ms, uint32_t flags);

/* Tell w to open its log files again (SIGUSR1 to the master: logrotate).
 * Only up-worker (UP_KIND_APP) has files of ours. */
void up_mworker_reopen(struct up_mworker *w);

/* Send sig to the process, if it still runs; SIGKILL to a worker with a
 * process group of its own goes to the whole group. */
void up_mworker_kill(struct up_mworker *w, int sig);

/* waitpid() reported w's exit with this wait status. Its channel is read
 * on to its end (a FAIL with the reason, the last hand-backs), with a guard
 * timer in case something the worker started keeps it open. */
void up_mworker_reaped(struct up_mworker *w, int status);

/* The master has room again: read a channel paused at the cap. */
void up_mworker_resume_rx(struct up_mworker *w);

/* Whether w takes new connections now (see above): ready, its channel
 * not full, under the un-ACKed cap, not out of fds, and not stalled. */
bool up_mworker_routable(const struct up_mworker *w);

/* Whether w is stalled (UP_MW_STALL_MS): the ms it has ACKed nothing
 * while connections waited for it, or 0. */
uint64_t up_mworker_stalled_ms(const struct up_mworker *w);

/* Whether w is ready (alive, channel open), whatever its load. */
bool up_mworker_ready(const struct up_mworker *w);

/* Free a GONE worker. */
void up_mworker_free(struct up_mworker *w);

const char *up_mworker_state_name(enum up_mworker_state s);

#endif
