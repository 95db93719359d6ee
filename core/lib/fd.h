/*
 * fd: the one way up closes a file descriptor.
 *
 * Every fd has exactly one owner; "no fd" is -1. Closing goes through
 * up_close() so that a double close is impossible by construction:
 *
 *     c->fd = up_close(c->fd);
 *
 * Never blocks (close() of a socket lingers only with a non-zero SO_LINGER
 * timeout, and up sets none: the worker's send timeout sets a zero one, which
 * makes close() reset the connection at once). Never logs.
 */
#ifndef UP_FD_H
#define UP_FD_H

/* Close fd if it is >= 0, keep errno unchanged, and return -1 so that the
 * caller can overwrite its field in the same statement. */
int up_close(int fd);

/* Set or clear O_NONBLOCK. Returns 0 or -errno. */
int up_fd_set_nonblock(int fd, int on);

/* Raise the soft RLIMIT_NOFILE to the hard limit (capped at the kernel's
 * fs.nr_open), as nginx's worker_rlimit_nofile and Go's runtime do: the
 * soft limit of 1024 that systemd and most shells give is a relic of
 * select(), which up never uses, and a worker holding Keep-Alive clients
 * needs one fd each. *ret_before and *ret_now (may be NULL) get the soft
 * limit before and after. Returns 0, or -errno with the limit unchanged
 * (both are still filled in). */
int up_fd_raise_nofile(unsigned long long *ret_before, unsigned long long *ret_now);

/* Open /dev/null on whichever of fds 0, 1 and 2 is closed, first thing in
 * main(): a program started with its standard streams closed (by a
 * careless init script, `2>&-`) would otherwise get its event ring, a
 * listener or a client's socket at those numbers, and a log line or an
 * app's printf() would go into it. Where /dev/null cannot be opened (a
 * chroot without /dev), an O_PATH fd of "/" holds the number instead:
 * writes to it fail, harmlessly. */
void up_fd_std_guard(void);

#endif
