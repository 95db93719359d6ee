/*
 * conn: one client connection held by a worker, driven through the HTTP
 * engine (http.h) on the worker's loop.
 *
 *     OPEN ----graceful close----> LINGER ----EOF or timer----> CLOSING
 *      |  \---hand back (idle)---> HANDBACK --rx done--> (fd sent to master)
 *      \------abort (error)-----------------------------------> CLOSING
 *
 *   OPEN      fd valid; reads when no request is with the app and the out
 *             queue is not backlogged; writes the out queue; one timer,
 *             whose meaning `wait` names: send (output queued), idle
 *             (nothing started), read (a request started) or none (the app
 *             has it and nothing is queued).
 *   LINGER    shutdown(SHUT_WR) done; what the client still sends is read
 *             and dropped, so that close() finds an empty receive queue and
 *             sends FIN rather than RST. Skipped (FIN, then CLOSING) when
 *             the client said it closes and all it sent was read: nothing
 *             more should come (conn.c, client_done()).
 *   HANDBACK  the read in flight is being canceled; its bytes, if any, go
 *             back to the master with the fd.
 *   CLOSING   ops are being canceled; the fd is closed once none is in
 *             flight, and the struct freed once the app let go of the
 *             response (a deferred response may outlive the socket).
 *
 * A connection whose request the app answered with up_ws_accept() carries
 * a WebSocket (ws.h) from the 101 on, still OPEN: what it reads is fed to
 * the engine, what the engine queues goes out, and its timer pings an
 * idle client (WAIT_PING) or waits for the client's close frame
 * (WAIT_CLOSE). It is never idle, so never handed back; once the closing
 * handshake is over it closes gracefully like any other. A handshake that
 * reaches a draining worker is handed back to the master unanswered (when
 * a master takes it, and its bytes are all still in rbuf), so that the
 * WebSocket opens on the new generation rather than on one about to close
 * it; else the app's up_ws_accept() answers 503.
 *
 * An OPEN connection idle for a second gives its buffers back (read
 * buffer, parser and response buffers, out queue chunks) and waits for the
 * client's next bytes with a POLLIN wait; the bytes take them again. It is
 * still OPEN and idle: handed back, closed or lingering as any other.
 *
 * Requests are served one at a time, in order: the next pipelined request is
 * parsed only after the previous response is complete (queued), so
 * responses can never be reordered.
 *
 * Memory per connection is bounded whatever the client does. Input: one
 * UP_WCONN_RBUF buffer plus the parser's limits (head, body). Output: past
 * UP_WCONN_OUT_HIGH bytes queued, no new request is read or parsed until
 * the queue is back under UP_WCONN_OUT_LOW, so a client that pipelines and
 * never reads holds about UP_WCONN_OUT_HIGH plus one response. The size of
 * that one response (a large body, a long stream) is the app's: it can see
 * the queue with up_res_pending(). And queued output that makes no progress
 * for the send timeout gets the connection reset: see send_tick() in
 * conn.c.
 */
#ifndef UP_WORKER_CONN_H
#define UP_WORKER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "http.h"
#include "list.h"
#include "loop.h"

struct up_worker;

enum up_wconn_state {
    UP_WCONN_OPEN,
    UP_WCONN_LINGER,
    UP_WCONN_HANDBACK,
    UP_WCONN_CLOSING,
};

#define UP_WCONN_RBUF 8192
#define UP_WCONN_IOV 16

/* Back-pressure marks for the out queue, in bytes. Keeping the link busy is
 * the kernel's socket buffer's job (hundreds of KiB to MiBs); this queue
 * only holds what is produced while a send is in flight, so a few dozen
 * typical responses are plenty. Higher would only let a client that does
 * not read pin more of the worker's memory. The low mark is half, so that a
 * connection does not stop and go on at every send. */
#define UP_WCONN_OUT_HIGH (64u * 1024u)
#define UP_WCONN_OUT_LOW (UP_WCONN_OUT_HIGH / 2)

/* What the connection's one timer stands for while OPEN. */
enum up_wconn_wait {
    UP_WCONN_WAIT_NONE,  /* not armed: the app has the request, nothing queued */
    UP_WCONN_WAIT_IDLE,  /* between requests: the idle timeout */
    UP_WCONN_WAIT_READ,  /* a request begun: the read timeout */
    UP_WCONN_WAIT_SEND,  /* output queued: ticks that check its progress */
    UP_WCONN_WAIT_PING,  /* a WebSocket, nothing queued: the idle ping */
    UP_WCONN_WAIT_CLOSE, /* a WebSocket we closed: the client's close frame */
};

/* What a connection needs only while in use: the parser, the response,
 * and the iovecs and msghdr of a send in flight. A slim connection (idle,
 * below) has none, which is most of a connection's size. The app's
 * struct up_res * is &busy->res: it lives from the request until the
 * response is done (a slim connection is idle, so no app holds it). */
struct up_wconn_busy {
    struct up_http_parser parser;
    struct up_res res;
    struct iovec iov[UP_WCONN_IOV];
    struct msghdr msg;
};

struct up_wconn {
    struct up_worker *w;
    struct up_list link; /* the worker's list */
    enum up_wconn_state state;
    int fd;          /* owned */
    uint64_t id;     /* the master's connection id; 0 without a master */
    struct up_op rx; /* recv into rbuf */
    struct up_op tx; /* sendmsg of the out queue */
    struct up_timer timer;
    enum up_wconn_wait wait; /* what timer stands for (OPEN) */
    int tx_kernel;           /* the kernel's send queue at the last tick, or -1 */
    uint64_t tx_progress;    /* loop time the out queue last moved (WAIT_SEND) */
    char *rbuf;              /* owned, UP_WCONN_RBUF bytes; [roff, rlen) not yet fed */
    size_t roff, rlen;
    struct up_wconn_busy *busy; /* owned; NULL while slim */
    struct up_http_out out;
    uint64_t ack_seq; /* arrival number; untouched until its ACK is sent */

    /* Long-lived: a WebSocket, or a stream of server-sent events. */
    struct up_ws *ws;       /* owned: what the connection became after a 101, or NULL */
    struct up_list ll_link; /* the worker's long-lived connections, while one */
    uint64_t rx_at;         /* loop time input last came (the WebSocket idle ping) */
    /* rbuf[req_off..] holds the request being parsed from its first byte
     * (req_whole), so that a draining worker can hand a WebSocket
     * handshake back to the master unanswered; see upgrade_goes_back(). */
    size_t req_off;
    uint64_t req_t0;  /* CLOCK_MONOTONIC µs the request's first bytes were fed (access log) */
    uint64_t idle_at; /* loop time it became idle (WAIT_IDLE) */

    /* Flags, together: the struct is per connection, idle ones included. */
    bool req_active;   /* a request is with the app, its response not done */
    bool started;      /* bytes of the next request were fed to the parser */
    bool close_after;  /* close gracefully once the out queue is sent */
    bool backlogged;   /* past UP_WCONN_OUT_HIGH, not yet under _LOW */
    bool in_run;       /* inside up_wconn_run(): on_output must not recurse */
    bool zombie;       /* socket gone; waiting for the app to finish res */
    bool wait_ack;     /* not read nor served yet: the ACK is not sent */
    bool ws_cut;       /* close the connection once our close frame is sent */
    bool stream_ended; /* the runtime ended or cut the response stream: close */
    bool req_whole;    /* see req_off */
    bool slim;         /* idle, its buffers given back: rbuf NULL, rx a POLLIN wait */
    bool slimming;     /* the receive is being canceled to slim down */
    bool give_back;    /* hand the connection back once out of conn_run()'s loop */
    bool drained;      /* the last recv took all the socket had: the next waits first */
};

/* Take fd (a connected, non-blocking socket) and serve it. prefix (len
 * bytes, copied) are bytes already read from it by a previous owner.
 * ack_seq: serve it only once up_wconn_acked() says its ACK went to the
 * master (0: at once, no master). On failure the fd is closed. Returns 0 or
 * -errno. */
int up_wconn_new_take(struct up_worker *w, int fd, uint64_t id, const char *prefix, size_t len,
                      uint64_t ack_seq);

/* The process's pool of read buffers gives back the pages of its spare
 * past UP_BUFPOOL_KEPT: a burst of connections that closed (each put its
 * buffer back resident) leaves no memory behind. For a timer. Returns how
 * many went. */
size_t up_wconn_trim_pool(void);

/* The ACK for c was sent: the connection is ours, serve it. */
void up_wconn_acked(struct up_wconn *c);

/* Nothing is in progress on c: no request started or with the app, nothing
 * queued to send (so a connection held back by a backlogged out queue is
 * never idle). An idle connection can be handed back or closed without
 * losing anything. */
bool up_wconn_idle(const struct up_wconn *c);

/* Drain step for c: hand it back to the master if idle (or close it
 * gracefully when there is no master, or the master stops). With deadline,
 * a busy connection is told to close after its current response. Returns
 * false when c is left as it was (a request waits unread in an idle-looking
 * connection that would be closed: it is answered first), true when c was
 * dealt with (and may be gone). */
bool up_wconn_drain(struct up_wconn *c, bool deadline);

/* Close at once (SIGQUIT, fatal errors). */
void up_wconn_abort(struct up_wconn *c);

/* A drain ends this long-lived connection (longlived.h): a WebSocket gets
 * our close frame with code (1012 or 1001), a stream of server-sent events
 * its end. */
void up_wconn_end_long(struct up_wconn *c, int code);

#endif
