/*
 * pidfile: the --pidfile of a running master.
 *
 * The file holds the master's pid and a newline. It belongs to the master
 * that wrote it, and only that master removes it: another up-run that fails
 * to start must not take away the running one's file. While it names a
 * live up-run master, no other master replaces it; a file naming a process
 * that is gone (or is not an up-run master) is stale and replaced.
 *
 * Writing never follows a link and never truncates in place: the pid goes
 * to a temp file PATH.PID.tmp beside it, created O_EXCL|O_NOFOLLOW, which is
 * then renamed over PATH, so a reader sees the old file or the new one,
 * whole. A leftover temp file of the same name is removed first only when it
 * is a regular file of this user.
 *
 * Reads /proc; never blocks on the network; never logs.
 */
#ifndef UP_PIDFILE_H
#define UP_PIDFILE_H

#include <stdbool.h>
#include <sys/types.h>

/* Write this process's pid to path. Returns 0; -EBUSY when path names a
 * live up-run master other than this process (*ret_owner is set to its
 * pid, and the file is left as it is); or -errno. */
int up_pidfile_write(const char *path, pid_t *ret_owner);

/* The same, for a master taking the place of master from (an upgrade):
 * a file naming from is replaced too. */
int up_pidfile_take_over(const char *path, pid_t from, pid_t *ret_owner);

/* Remove path if it still names this process. Returns 0 when removed,
 * -ESRCH when it names another pid (left in place), or -errno (-ENOENT:
 * already gone). */
int up_pidfile_remove(const char *path);

/* The pid the file at path holds: > 0, or -errno (-EINVAL: not a pid).
 * Opens with O_NOFOLLOW and O_NONBLOCK (a fifo there does not block). */
int up_pidfile_read(const char *path, pid_t *ret_pid);

/* Whether pid is a running up-run master: its command line (the process
 * title "NAME master" that up-run sets) says so. */
bool up_pidfile_is_master(pid_t pid);

#endif
