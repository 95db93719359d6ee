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
 * fds, not the child's). A plan may set any variable again for its child
 * (an --exec worker gets its own LISTEN_FDS and NOTIFY_SOCKET).
 */
#ifndef UP_CHILD_H
#define UP_CHILD_H

#include <spawn.h>
#include <stdbool.h>
#include <sys/types.h>

/* Run path with argv and the master's environment less the variables
 * above; fa (may be NULL) says which fds to set up. Returns 0 with *ret_pid
 * set, or -errno (-ENOMEM, or posix_spawn's error). */
int up_child_spawn(const char *path, const char *const argv[], const posix_spawn_file_actions_t *fa,
                   pid_t *ret_pid);

/* fds a plan may place: 0-3 and 16 listeners after them. */
#define UP_CHILD_MAX_FDS 20
#define UP_CHILD_MAX_ENV 8

/* A child to start: what it runs, what it gets. Everything is borrowed for
 * the call. */
struct up_child_plan {
    const char *path;
    const char *const *argv;               /* NULL-terminated */
    const char *env[UP_CHILD_MAX_ENV + 1]; /* "NAME=value" set for it, NULL-terminated */
    /* fds[i] >= 0 becomes fd i in the child (CLOEXEC cleared there: it is
     * inherited); -1 leaves fd i as the master's (0-2) or closed (3 on). */
    int fds[UP_CHILD_MAX_FDS];
    int nfds;
    bool own_group; /* a process group of its own, with its pid as id */
};

/* Start a child as plan says. fds of the plan may be any of the master's
 * (even one numbered like a target): each is moved out of the way first.
 * Returns 0 with *ret_pid set, or -errno (-EMFILE, -ENOMEM, posix_spawn's
 * error); the plan's fds stay the caller's either way. */
int up_child_start(const struct up_child_plan *plan, pid_t *ret_pid);

#endif
