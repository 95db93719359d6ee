/*
 * listen: parse listen addresses and open listening sockets.
 *
 * Accepted forms: "3000" (all IPv4 addresses), "host:port", "[v6addr]:port",
 * "unix:/path". The master and `up-worker --listen` both use it. Sockets are
 * created CLOEXEC and non-blocking; the caller owns them. Never logs; the
 * calls that may block are name resolution in up_listen_parse() and
 * up_listen_busy_wait(), which sleeps.
 */
#ifndef UP_LISTEN_H
#define UP_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>

struct up_listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[128]; /* as the operator wrote it, for logs */
};

/* Most addresses one host name may stand for. */
#define UP_LISTEN_MAX_ADDRS 8

/* Parse text into ret[0..n), n <= cap: a host name stands for every
 * address it resolves to (a stock /etc/hosts makes localhost ::1 and
 * 127.0.0.1, and clients try either), as nginx binds them all; each one's
 * text then names its address too. No host ("3000", "*:3000") is 0.0.0.0
 * alone. Returns n >= 1, or -EINVAL (bad form or port, or more addresses
 * than cap, with a message that says to give one) with a message in err
 * (errcap bytes) saying what was wrong. */
int up_listen_parse(const char *text, struct up_listen_addr *ret, int cap, char *err,
                    size_t errcap);

struct up_listen_opts {
    int backlog;        /* listen() backlog; 0 = SOMAXCONN */
    bool reuseport;     /* SO_REUSEPORT (TCP only) */
    int defer_accept_s; /* TCP_DEFER_ACCEPT seconds; 0 = off */
};

/* Create, bind and listen, waiting for an address that is taken (below)
 * up to UP_LISTEN_BUSY_WAIT_MS. A unix socket left over by a previous run
 * (nobody accepting on it) is removed first; anything at the path that is
 * not a socket (a regular file, a symlink, ...) is left untouched and the
 * call fails with -EEXIST. Returns 0 with *ret_fd owned by the caller, or
 * -errno (-EADDRINUSE: a live socket is there still); *ret_waited_ms (may
 * be NULL) says how long it waited. */
int up_listen_open(const struct up_listen_addr *a, const struct up_listen_opts *o, int *ret_fd,
                   int *ret_waited_ms);

/* Whether something listens at the unix socket un: 1 (it accepts, or its
 * backlog is full), 0 (connecting is refused: nobody; a stale socket file),
 * or -errno (it cannot tell). Never blocks. */
int up_listen_unix_live(const struct sockaddr_un *un);

/* An address can stay taken for a while after the server that held it
 * was killed and reaped: when it accepted through io_uring, the ring's
 * pending accept holds the listening socket until the kernel's exit work
 * cancels it, 5-12 ms after the reap (measured on a 6.18 kernel),
 * and until then the socket still listens. A supervisor that restarts at
 * once (systemd's RestartSec=0, runit, a container's restart policy)
 * would meet -EADDRINUSE, at the port or at a unix path whose probe still
 * connects. So a bind that finds its address taken tries again for up to
 * UP_LISTEN_BUSY_WAIT_MS, as nginx does (five binds, 500 ms apart): a
 * live server there is still refused, just that much later.
 * up_listen_open() does so; a socket bound elsewhere (the control socket)
 * loops on up_listen_busy_wait() itself:
 *
 *     int waited = 0;
 *     while ((r = bind_it(...)) == -EADDRINUSE && up_listen_busy_wait(&waited)) {
 *     }
 */
#define UP_LISTEN_BUSY_WAIT_MS 2000

/* Sleep one step of that wait and add it to *waited_ms; false, without
 * sleeping, once *waited_ms has reached UP_LISTEN_BUSY_WAIT_MS. */
bool up_listen_busy_wait(int *waited_ms);

/* The TCP port a listening socket is bound to, or -1 (unix socket). */
int up_listen_port(int fd);

#endif
