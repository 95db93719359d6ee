/*
 * ctl: the control socket of a running master, and its client side.
 *
 * A unix stream socket (mode 0600, in a directory of mode 0700) at the path
 * up_cli_control_path() gives. A client connects, writes one command line
 * ("reload", "status" or "stop"), and reads the answer until EOF. The
 * master checks the peer's credentials: only its own user (or root) may
 * command it.
 */
#ifndef UP_CTL_H
#define UP_CTL_H

#include "cli.h"

struct up_master;
struct up_ctl;

/* Open the control socket for m. Returns 0 with *ret set, or -errno
 * (logged). A stale socket file (no master behind it) is replaced; a live
 * one is an error: another master runs on the same port. */
int up_ctl_open(struct up_master *m, struct up_ctl **ret);

/* Close the socket, end every client, and remove the socket file. NULL is
 * fine. */
void up_ctl_close(struct up_ctl *ctl);

/* Client side: send cmd to the master that cli names and print its answer
 * on stdout. Blocks (a command-line tool). Returns the exit code: 0 done,
 * 1 the master said no or is not there. */
int up_ctl_command(const struct up_cli *cli, const char *cmd);

#endif
