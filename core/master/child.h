/*
 * child: start a child program from the master with a clean signal state.
 *
 * The master blocks the signals it reads from its signalfd and ignores
 * SIGPIPE; both would be inherited across exec. Every child (workers, the
 * --build command) starts with no signal blocked and every disposition at
 * its default. posix_spawn (vfork-based in glibc) keeps this cheap however
 * large the master is. Never logs.
 *
 * A child gets the master's environment except what describes the master
 * to systemd: NOTIFY_SOCKET (app code must not report READY or STOPPING for
 * the service) and LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES (the master's
 * fds, not the child's).
 */
#ifndef UP_CHILD_H
#define UP_CHILD_H

#include <spawn.h>
#include <sys/types.h>

/* Run path with argv and the master's environment less the variables
 * above; fa (may be NULL) says which fds to set up. Returns 0 with *ret_pid
 * set, or -errno (-ENOMEM, or posix_spawn's error). */
int up_child_spawn(const char *path, const char *const argv[], const posix_spawn_file_actions_t *fa,
                   pid_t *ret_pid);

#endif
