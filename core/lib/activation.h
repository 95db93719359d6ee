/*
 * activation: the listening sockets systemd passes to a service (socket
 * activation: LISTEN_FDS sockets from fd 3, for the process LISTEN_PID,
 * named by LISTEN_FDNAMES), so that a .socket unit owns the port and the
 * service can be restarted without a connection refused: what arrives
 * meanwhile waits in the socket's accept queue.
 *
 * Each passed fd is checked to be a listening stream socket, and made
 * non-blocking and close-on-exec. The LISTEN_* variables are removed from
 * the environment once read (they describe this process, not its
 * children). Never logs.
 */
#ifndef UP_ACTIVATION_H
#define UP_ACTIVATION_H

#include <stdbool.h>
#include <stddef.h>

#define UP_ACTIVATION_MAX 16

struct up_activation {
    int n;                            /* sockets passed; 0: none */
    int fd[UP_ACTIVATION_MAX];        /* owned until taken; -1 once taken */
    char name[UP_ACTIVATION_MAX][64]; /* LISTEN_FDNAMES, or "" */
};

/* Read what systemd passed. Returns 0 (a->n is 0 when nothing was passed
 * to this process), or -EINVAL with err (cap bytes) saying what is wrong:
 * a passed fd that is not a listening stream socket, more than
 * UP_ACTIVATION_MAX, malformed variables. */
int up_activation_take(struct up_activation *a, char *err, size_t cap);

/* The socket named spec (a LISTEN_FDNAMES name, or its fd number): taken
 * (the caller owns it). -ENOENT when there is none, -EBUSY when it was
 * taken already. */
int up_activation_claim(struct up_activation *a, const char *spec);

/* Close what nobody claimed; returns how many, naming the first in
 * first_name (cap bytes) for the log. */
int up_activation_close_rest(struct up_activation *a, char *first_name, size_t cap);

#endif
