/*
 * watch: `--watch [DIR]` and `--build CMD`. Reload when a file in DIR (the
 * app's directory by default) changes, after a quiet period, and after the
 * build command succeeds if one is given. A failing build is a failed
 * reload: the old code keeps serving, and the build's own output (on the
 * master's stderr) shows why.
 *
 * Changes under .git and build, and editor files (dot files, name~, #name#,
 * *.swp, *.tmp) are ignored. The build runs as `sh -c CMD` in DIR without
 * blocking the master: its exit arrives as a SIGCHLD.
 */
#ifndef UP_WATCH_H
#define UP_WATCH_H

#include <sys/types.h>

#include "loop.h"

struct up_watch;

/* What a change leads to: the owner's. */
struct up_watch_cbs {
    /* Reload now (why: "file change", "build done"). */
    void (*reload)(void *ctx, const char *why);
    /* The build failed (why says how): the old code keeps serving. */
    void (*build_failed)(void *ctx, const char *why);
};

/* Start watching dir, running build_cmd (NULL: none) before each reload.
 * Both strings are borrowed for the watch's life. Returns 0 with *ret set,
 * or -errno (logged). */
int up_watch_start(struct up_loop *loop, const char *dir, const char *build_cmd,
                   const struct up_watch_cbs *cbs, void *ctx, struct up_watch **ret);

/* Stop reacting to changes (the master is stopping). */
void up_watch_stop(struct up_watch *w);

/* Free it (NULL is fine); any op must be done (the loop is run after
 * up_watch_stop() by the caller). */
void up_watch_free(struct up_watch *w);

/* A child exited that is not a worker: the build, if pid is ours. */
void up_watch_child_exited(struct up_watch *w, pid_t pid, int status);

/* Whether name (a file name, no directory) is ignored. */
int up_watch_ignored(const char *name);

#endif
