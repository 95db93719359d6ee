/*
 * pending: the connections the master holds before a worker owns them, and
 * the set of them. A connection's own life is here: peeking at its first
 * request head without consuming it, answering what is bad (400, 408, 431,
 * or what its owner decides), and closing gracefully. Where it goes once its
 * head is complete is its owner's business (the router, then a worker):
 * pending reports upward through the callbacks of its set and never calls
 * an owner.
 *
 *   accept --> PEEK --head complete--> READY --owner sends it--> SENT --ACK--> (freed,
 *               |  ^                   ^  |                       |       master's fd closed)
 *               |  |more bytes         |  +--owner waits (queue)  |
 *               v  |                   +---worker died/declined---+
 *              WAIT (poll)
 *   PEEK/WAIT --bad head, timeout--> ANSWER --sent--> LINGER --EOF/timer--> CLOSING
 *   READY --owner answers--> ANSWER (503...), or LINGER when nothing was asked
 *   any --error--> CLOSING --op done--> (fd closed, freed)
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
 *   READY    the head is complete (or a draining worker handed it back, with
 *            the bytes it had read as prefix): the owner's, no op of ours
 *            runs. The owner may keep it in a list (link) with a timer
 *            (owner_timer) of its own.
 *   SENT     the CONN message is on (or being sent to) a worker's channel;
 *            the master keeps its copy of the fd until the ACK, so that a
 *            worker dying first loses nothing: it goes back to READY.
 *   ANSWER   the master itself answers.
 *   LINGER   after an answer: shutdown(SHUT_WR), then read and drop until
 *            the client's FIN, so that close() does not reset unread bytes.
 *   CLOSING  waiting for the op in flight to finish before close().
 *
 * The fd is valid in every state; the timer runs in PEEK/WAIT (header
 * timeout) and ANSWER/LINGER. Memory and fds are bounded by the set's cap:
 * the owner stops accepting at it (up_pendings_full()), and near it the
 * oldest incomplete heads are shed (408) so that slow clients cannot keep
 * complete requests out. Never blocks.
 */
#ifndef UP_PENDING_H
#define UP_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bufpool.h"
#include "head.h"
#include "hist.h"
#include "list.h"
#include "loop.h"
#include "passfd.h"
#include "ratelimit.h"

enum up_pending_state {
    UP_PENDING_PEEK,
    UP_PENDING_WAIT,
    UP_PENDING_READY,
    UP_PENDING_SENT,
    UP_PENDING_ANSWER,
    UP_PENDING_LINGER,
    UP_PENDING_CLOSING,
};

struct up_pendings;

struct up_pending {
    struct up_pendings *set;
    struct up_list all; /* the set's list, in arrival order */
    enum up_pending_state state;
    int fd; /* owned until a worker ACKs it */
    uint64_t id;
    int listener;    /* index of the listener it came in on; -1: handed back */
    struct up_op op; /* the one op in flight: recv, poll or send */
    struct up_timer timer;
    char *buf;     /* peek buffer (max_head + 1), from the set's pool */
    size_t peeked; /* bytes seen by the last peek */
    int rcvlowat;  /* SO_RCVLOWAT we set, 0 if untouched */
    char *prefix;  /* owned: bytes a previous worker already read */
    size_t prefix_len;
    char *answer; /* owned: ANSWER's response bytes */
    size_t answer_len, answer_off;
    bool timed_out;      /* the header timeout fired while an op ran */
    bool repeek_timer;   /* no SO_RCVLOWAT (AF_UNIX, or refused): WAIT re-peeks by timer */
    bool peer_closed;    /* WAIT's poll saw the client's FIN (POLLRDHUP) or an error */
    bool shed;           /* answered 408 early to make room: short linger */
    uint64_t deadline;   /* header timeout, in up_loop_now() ms */
    uint64_t arrived_at; /* up_loop_now() when it came (accept or hand-back) */

    /* The owner's while READY or SENT (the router, a worker); pending
     * itself only makes sure the link is off every list before freeing. */
    struct up_list link;         /* the router's queue, a worker's send queue... */
    struct up_timer owner_timer; /* the router's queue timeout */
    uint64_t queued_at;          /* up_loop_now() + 1 when it first waited; 0 never */
    uint64_t accepted_us;        /* up_hist_now_us() at accept; 0: handed back */
    void *queued_by;             /* the router, while in its queue */
    unsigned tries;              /* routings since a worker last took it in */
    pid_t avoid;                 /* the worker it came back from: never routed there */
    bool keyed;                  /* route by key (sticky), else round-robin */
    int route_index;             /* a worker index the middleware chose, or -1 */
    uint64_t key;                /* ... the key when keyed */
    void *worker;                /* SENT: the worker that has it */
    struct up_passfd_out out;    /* SENT: the CONN message while it is sent */
};

/* What the set reports upward. */
struct up_pending_cbs {
    /* c is READY: its head is complete (head, valid only during the call:
     * it points into a buffer that goes back to the pool), or a worker
     * handed it back (head NULL, unless the bytes it had read hold a whole
     * head). The callee routes it (up_pending_sent()), answers it, or keeps
     * it for later. */
    void (*ready)(struct up_pendings *set, struct up_pending *c, const struct up_head *head);
    /* A connection left the set (closed, or a worker has it for good):
     * there is room again. */
    void (*freed)(struct up_pendings *set);
};

struct up_pending_stats {
    uint64_t accepted;      /* connections accepted */
    uint64_t handed;        /* connections a worker took (ACK) */
    uint64_t handed_back;   /* connections a draining worker gave back */
    uint64_t answered;      /* answered by the master itself (4xx/503) */
    uint64_t shed;          /* incomplete heads answered 408 early: the cap */
    struct up_hist handoff; /* accept to a worker's ACK, accepted ones */
};

struct up_pendings {
    struct up_loop *loop;
    const struct up_pending_cbs *cbs;
    void *ctx; /* the owner's */
    size_t max_head;
    uint64_t header_timeout_ms;
    size_t max_pending; /* the owner pauses accepting at this many */
    struct up_list all; /* every pending connection, oldest first */
    size_t n;
    size_t nleaving;            /* of those: answered or closing, the fd about to go */
    size_t nshedding;           /* ... and those chosen to be shed, not answered yet */
    struct up_bufpool bufs;     /* peek buffers */
    struct up_timer trim_timer; /* gives back the spare buffers' pages */
    uint64_t next_id;
    struct up_ratelimit shed_rl;
    struct up_pending_stats stats;
};

/* Set up an empty set. */
void up_pendings_init(struct up_pendings *set, struct up_loop *loop, size_t max_head,
                      uint64_t header_timeout_ms, size_t max_pending,
                      const struct up_pending_cbs *cbs, void *ctx);

/* Free the pooled buffers. Every connection must be gone. */
void up_pendings_fini(struct up_pendings *set);

/* Whether the set holds max_pending connections: stop accepting. */
bool up_pendings_full(const struct up_pendings *set);

/* Take a freshly accepted fd (from listener number listener) and start
 * peeking. unix_sock: no SO_RCVLOWAT there. */
void up_pending_accept_take(struct up_pendings *set, int fd, int listener, bool unix_sock);

/* Take a connection a draining worker (pid from) handed back: fd, the bytes
 * it had read (copied), its try count (nonzero when bounced straight back).
 * It is reported ready at once. */
void up_pending_handed_back_take(struct up_pendings *set, int fd, const char *data, size_t len,
                                 unsigned tries, pid_t from);

/* READY -> SENT: c is on its way to worker (the owner's). */
void up_pending_sent(struct up_pending *c, void *worker);

/* SENT -> READY: the worker could not take c; its owner routes it again. */
void up_pending_unsent(struct up_pending *c);

/* SENT: the worker ACKed c and owns the connection: our copy is closed
 * and c freed. c must be off every list. */
void up_pending_acked(struct up_pending *c);

/* READY: answer status (detail: a body text, or NULL for the reason) with
 * Connection: close, then close gracefully. A 503 says Retry-After: 1. */
void up_pending_answer(struct up_pending *c, int status, const char *detail);

/* READY: answer with these bytes (a whole response; copied), then close
 * gracefully. */
void up_pending_answer_raw(struct up_pending *c, const char *bytes, size_t len);

/* READY: close gracefully without an answer (FIN, then drop what comes). */
void up_pending_close_gracefully(struct up_pending *c);

/* Whether c has a request to answer: a head peeked, bytes a worker had
 * read, or bytes waiting now. A connection handed back idle has none, and
 * an answer then would be taken for the answer to its next request. */
bool up_pending_has_request(const struct up_pending *c);

/* Near the cap (7/8 of it): answer 408 to the oldest incomplete heads, down
 * to half of it. Call after each accept, and now and then while accepting
 * is paused. */
void up_pendings_shed(struct up_pendings *set);

/* Stopping: close every connection still peeking (nothing was asked of a
 * worker yet); with handed_back_only, only those a draining worker gave
 * back (idle keep-alive connections: a graceful stop closes them, while
 * fresh ones still get their answer). */
void up_pendings_close_peeking(struct up_pendings *set, bool handed_back_only);

/* Connections no worker has taken yet and the master neither answers nor
 * closes: what a graceful stop still owes (after it closed the idle
 * hand-backs; one handed back later counts until the stop's bound). */
size_t up_pendings_owed(const struct up_pendings *set);

const char *up_pending_state_name(enum up_pending_state s);

#endif
