/*
 * mconn: a connection the master holds before a worker owns it.
 *
 *   accept --> PEEK --head complete--> QUEUED --worker picked--> SENT --ACK--> (freed,
 *               |  ^                    ^  |                      |       master's fd closed)
 *               |  |more bytes          |  +--no worker: waits    |
 *               v  |                    +---worker died/full------+
 *              WAIT (poll)
 *   PEEK/WAIT --bad head, timeout--> ANSWER --sent--> LINGER --EOF/timer--> CLOSING
 *   QUEUED --queue timeout--> ANSWER (503), or LINGER when nothing was asked
 *   any --error--> CLOSING --ops done--> (fd closed, freed)
 *
 *   PEEK     recv(MSG_PEEK | MSG_DONTWAIT) on the ring into buf: nothing is
 *            consumed, the worker reads the request itself.
 *   WAIT     the head is partial (or nothing arrived yet): SO_RCVLOWAT is
 *            raised above what was peeked and a poll waits, so a trickling
 *            client costs one wakeup per step and never a spin. Where
 *            SO_RCVLOWAT does not work (unix sockets) a timer re-peeks at a
 *            low rate instead. No buffer is held while waiting. A peek that
 *            finds nothing new is not taken for the end of the stream: only
 *            the client's FIN, seen as POLLRDHUP, or a read of 0, is.
 *   QUEUED   ready to go; in the master's queue, or in a worker's send
 *            queue. A connection handed back by a draining worker starts
 *            here, with the bytes the worker had read as prefix.
 *   SENT     the CONN message is on (or being sent to) a worker's channel;
 *            the master keeps its copy of the fd until the ACK, so that a
 *            worker dying first loses nothing: the connection goes back to
 *            QUEUED.
 *   ANSWER   the master itself answers (400, 408, 431, 503).
 *   LINGER   after an answer: shutdown(SHUT_WR), then read and drop until
 *            the client's FIN, so that close() does not reset unread bytes.
 *   CLOSING  waiting for the op in flight to finish before close().
 *
 * The fd is valid in every state; the timer runs in PEEK/WAIT (header
 * timeout), QUEUED while in the master's queue (--queue-timeout: then 503
 * with Retry-After, or a graceful close for a handed-back connection with
 * no request in it yet), and ANSWER/LINGER.
 */
#ifndef UP_MCONN_H
#define UP_MCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "passfd.h"

struct up_master;
struct up_mworker;

enum up_mconn_state {
    UP_MCONN_PEEK,
    UP_MCONN_WAIT,
    UP_MCONN_QUEUED,
    UP_MCONN_SENT,
    UP_MCONN_ANSWER,
    UP_MCONN_LINGER,
    UP_MCONN_CLOSING,
};

struct up_mconn {
    struct up_master *m;
    struct up_mconn *prev, *next; /* the master's list of every mconn */
    struct up_mconn *qnext;       /* the queue it is in (master's or a worker's) */
    struct up_mconn *qprev;       /* the master's queue only */
    bool in_queue;                /* in the master's queue (QUEUED, waiting for a worker) */
    enum up_mconn_state state;
    int fd; /* owned until a worker ACKs it */
    uint64_t id;
    struct up_op op; /* the one op in flight: recv, poll or send */
    struct up_timer timer;
    char *buf;     /* peek buffer (max_head + 1), from the pool */
    size_t peeked; /* bytes seen by the last peek */
    int rcvlowat;  /* SO_RCVLOWAT we set, 0 if untouched */
    char *prefix;  /* owned: bytes a previous worker already read */
    size_t prefix_len;
    struct up_mworker *worker; /* SENT: who has it */
    struct up_passfd_out out;  /* the CONN message while it is sent */
    char *answer;              /* owned: ANSWER's response bytes */
    size_t answer_len, answer_off;
    bool timed_out;       /* the header timeout fired while an op ran */
    uint64_t queued_at;   /* up_loop_now() + 1 when it first waited in the queue; 0 never */
    pid_t avoid;          /* the worker it came back from: never routed there again */
    uint64_t accepted_at; /* up_loop_now() when it came (accept or hand-back) */
    bool shed;            /* answered 408 early to make room: short linger */
    uint64_t deadline;    /* header timeout, in up_loop_now() ms */
    bool repeek_timer;    /* no SO_RCVLOWAT (AF_UNIX, or refused): WAIT re-peeks by timer */
    bool peer_closed;     /* WAIT's poll saw the client's FIN (POLLRDHUP) or an error */
    unsigned tries;       /* times routed */
};

/* Take a freshly accepted fd and start peeking. unix_sock: it came from a
 * unix socket listener (no SO_RCVLOWAT there). */
void up_mconn_accept_take(struct up_master *m, int fd, bool unix_sock);

/* Take a connection a draining worker (pid from) handed back: fd, the
 * bytes it had read (copied), and its try count (nonzero when it was
 * bounced without a request served). Route it to the active generation,
 * never back to from. */
void up_mconn_handed_back_take(struct up_master *m, int fd, const char *data, size_t len,
                               unsigned tries, pid_t from);

/* Route every queued connection that a worker can take now. Called when a
 * worker becomes ready or its channel drains. */
void up_mconn_route_queued(struct up_master *m);

/* c is QUEUED: give it to a worker, or keep it queued. */
void up_mconn_route(struct up_mconn *c);

/* Route every queued connection once, whether a worker is there or not:
 * with no generation left, each gets its 503 page. */
void up_mconn_route_all(struct up_master *m);

/* The worker that had c (SENT) is gone, or its channel refused it: route
 * it again. */
void up_mconn_requeue(struct up_mconn *c);

/* The worker ACKed c: it owns the connection now. Closes the master's copy
 * and frees c. */
void up_mconn_acked(struct up_mconn *c);

/* Near the pending cap (7/8 of it), answer 408 to the oldest incomplete
 * heads, so that slow clients cannot keep fresh, complete requests out.
 * Called after each accept. */
void up_mconn_shed(struct up_master *m);

/* Answer every queued connection with 503 and close the waiting ones:
 * the master is stopping or has no worker to give them to. */
void up_mconn_flush_all(struct up_master *m, int status);

#endif
