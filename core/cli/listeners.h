/*
 * listeners: what up-run listens on, from its command line and from the
 * sockets systemd passed (socket activation):
 *
 *   -l ADDR ...   each address; -l fd:NAME takes the passed socket NAME
 *   no -l, no -p  every passed socket, if any was passed; else $PORT / 3000
 *
 * Passed sockets nobody named are closed (logged), so that a .socket unit
 * with a port up-run does not serve cannot hold connections forever.
 */
#ifndef UP_CLI_LISTENERS_H
#define UP_CLI_LISTENERS_H

#include "activation.h"
#include "cli.h"
#include "up/server.h"

/* The port the default control path is named after: the first TCP
 * listener's, a passed socket's included; else cli->port. */
int up_cli_listeners_port(const struct up_cli *cli, const struct up_activation *act);

/* Make s listen as above. Returns 0, or -errno (logged with what to fix). */
int up_cli_listen_all(struct up_server *s, const struct up_cli *cli, struct up_activation *act);

#endif
