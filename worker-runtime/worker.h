/*
 * worker: one up-worker process. Owns the event loop, the master channel
 * (fd 3) or its own listener (--listen), the loaded app and every client
 * connection it serves (conn.h).
 *
 * Life of a worker:
 *
 *     STARTING --app loaded, init ok, READY sent--> SERVING
 *     SERVING  --DRAIN, channel EOF, SIGTERM-->     DRAINING
 *     DRAINING --no connection held-->              exit 0
 *     any      --SIGQUIT-->                         exit 0 at once
 *
 * SIGUSR1 or the master's REOPEN opens the access log's file again.
 *
 * While draining it takes no new connection (the master stops routing to
 * it; in --listen mode the listener is closed), serves what it holds, and
 * at the drain deadline hands idle connections back to the master (or, with
 * no master, closes them gracefully) and cuts the rest. Long-lived
 * connections (WebSockets, event streams) are never handed back: the app
 * hears of the drain (up_app.drain), and after a grace they are ended one
 * by one over a window that closes before the deadline (longlived.h).
 *
 * The app API (up_after, up_ready, up_generation) has no context argument,
 * so the running worker is reachable through one process-wide pointer set by
 * up_worker_main(); nothing else is global.
 */
#ifndef UP_WORKER_H
#define UP_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acceptor.h"
#include "accesslog.h"
#include "app.h"
#include "http.h"
#include "list.h"
#include "longlived.h"
#include "loop.h"
#include "passfd.h"

struct up_wconn;
struct up_chan_msg;

struct up_worker_cfg {
    const char *app_path;
    int app_fd; /* --app-fd N: the app, open (the master's snapshot); -1: load app_path */
    int app_argc;
    char **app_argv;
    const char *require[16];
    int nrequire;
    const char *listen;           /* --listen ADDR, NULL under a master */
    unsigned generation;          /* --generation N (0 without a master) */
    unsigned index;               /* --index I within the generation */
    bool ready_manual;            /* --ready=manual */
    enum up_backend backend;      /* UP_BACKEND */
    const char *title;            /* --title NAME (default "up") */
    struct up_http_limits limits; /* UP_BODY_LIMIT, --max-head */
    uint64_t idle_timeout_ms;     /* UP_IDLE_TIMEOUT: idle keep-alive */
    uint64_t read_timeout_ms;     /* UP_READ_TIMEOUT: a started request */
    uint64_t send_timeout_ms;     /* UP_SEND_TIMEOUT: queued output not moving */
    uint64_t drain_timeout_ms;    /* drain deadline when the master is gone */
    uint64_t ws_drain_grace_ms;   /* --ws-drain-grace: long-lived connections end after */
    uint64_t close_spread_ms;     /* --close-spread: ... spread over this */
    uint64_t ws_ping_ms;          /* UP_WS_PING: ping a WebSocket idle this long */
    const char *access_log;       /* --access-log PATH|-, or NULL */
    enum up_alog_format access_log_format;
};

enum up_worker_state {
    UP_WORKER_STARTING, /* loading the app; nothing is served */
    UP_WORKER_SERVING,  /* takes new connections */
    UP_WORKER_DRAINING, /* takes none; exits when it holds none */
};

struct up_worker {
    struct up_worker_cfg cfg;
    struct up_loop *loop;
    struct up_app_loaded app;
    enum up_worker_state state;
    bool ready_sent;
    bool migrate_idle;    /* DRAIN asked for idle connections back now */
    bool master_stopping; /* DRAIN with STOP: close idle ones, do not hand back */
    bool exiting;         /* leave the loop as soon as possible */
    bool last_stats;      /* the STATS before the exit is queued */
    int exit_code;

    int chan; /* owned: the master channel (fd 3), or -1 */
    struct up_op chan_rx;
    struct up_passfd_in chan_in;
    char *chan_payload; /* owned, UP_PASSFD_MAX_PAYLOAD bytes */
    struct up_op chan_tx;
    struct up_list txq;              /* owned: messages to send (up_chan_msg.link) */
    struct up_chan_msg *tx_inflight; /* owned: being sent */
    uint64_t *acks;                  /* owned: conn ids received, not yet ACKed */
    size_t nacks, acks_cap;
    /* Connections from the master are numbered as they arrive; a connection
     * is not touched until the ACK covering its number has been sent, so
     * that the master never re-routes a connection we began to read. */
    uint64_t arrivals;   /* numbers given so far */
    uint64_t acks_taken; /* numbers put into ACK messages */
    uint64_t acked_upto; /* numbers whose ACK has been sent */
    size_t nwaiting;     /* connections waiting for their ACK to go */

    bool chan_lost;   /* the master is gone: close chan once ops end */
    bool fd_pressure; /* a CONN's fd was dropped at our fd limit: DECLINE sent */

    int lfd; /* owned: --listen socket, or -1 */
    struct up_acceptor acceptor;

    int sigfd; /* owned: eventfd the signal handlers wake (setup_signals()) */
    struct up_op sig_op;
    char sig_buf[128];

    struct up_timer drain_timer; /* the drain deadline */
    /* Armed: stopped by someone else than the master, DRAINING sent,
     * serving on until the master's DRAIN (or until it fires). */
    struct up_timer leave_timer;
    struct up_timer close_grace; /* draining, nobody to hand back to: see begin_drain() */
    bool close_idle;             /* ... and that grace is over: idle connections go */
    struct up_timer stats_timer; /* periodic STATS to the master */
    struct up_list conns;        /* every connection held (up_wconn.link), newest first */
    size_t nconns;
    uint64_t nrequests;
    struct up_longlived longlived;   /* WebSockets and event streams, for the drain */
    bool app_drained;                /* up_app.drain was called */
    size_t nws;                      /* WebSockets open */
    uint64_t ws_total;               /* WebSockets accepted */
    uint64_t send_timeouts;          /* connections reset for taking no output */
    uint64_t slimmed;                /* idle connections that gave their buffers back */
    uint64_t slimmed_trimmed;        /* ... as of the last malloc_trim() */
    struct up_alog alog;             /* the access log, when alog.open */
    char date[UP_HTTP_DATE_LEN + 1]; /* Date field, refreshed each second */
    long long date_sec;
};

/* Run a worker with cfg until it exits; returns the process exit code. */
int up_worker_main(const struct up_worker_cfg *cfg);

/* ---- used by conn.c ---- */

/* The Date field value for now (cached per second). */
const char *up_worker_date(struct up_worker *w);

/* A connection was closed and freed: exit if draining and none is left. */
void up_worker_conn_gone(struct up_worker *w);

/* Hand a connection back to the master: takes fd (closed once sent, or at
 * once if the channel is gone) and copies data[0..len) (bytes already read
 * from it). tries: the CONN's try count when it is bounced straight back
 * (it came while draining), 0 for a connection that was in service here.
 * Returns 0, or -EPIPE when there is no master to take it (the fd is
 * closed either way). */
int up_worker_hand_back_take(struct up_worker *w, int fd, uint64_t conn_id, const char *data,
                             size_t len, uint64_t tries);

/* Connections held back until their ACK is sent may go on now. */
void up_worker_release_acked(struct up_worker *w);

/* Whether connections go back to the master rather than being closed. */
bool up_worker_has_master(const struct up_worker *w);

/* The close code for WebSockets a drain ends: 1012 Service Restart when a
 * master is there to pass the clients' new connections to new workers,
 * 1001 Going Away when the server stops or runs without a master. */
int up_worker_close_code(const struct up_worker *w);

/* Whether an idle connection should go back to the master now (it is there
 * and not stopping), rather than be closed gracefully. */
bool up_worker_takes_back(const struct up_worker *w);

#endif
