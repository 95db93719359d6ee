/*
 * fd: the one way up closes a file descriptor.
 *
 * Every fd has exactly one owner; "no fd" is -1. Closing goes through
 * up_close() so that a double close is impossible by construction:
 *
 *     c->fd = up_close(c->fd);
 *
 * Never blocks (close() of a socket does not linger unless SO_LINGER is set,
 * and up never sets it). Never logs.
 */
#ifndef UP_FD_H
#define UP_FD_H

/* Close fd if it is >= 0, keep errno unchanged, and return -1 so that the
 * caller can overwrite its field in the same statement. */
int up_close(int fd);

/* Set or clear O_NONBLOCK. Returns 0 or -errno. */
int up_fd_set_nonblock(int fd, int on);

#endif
