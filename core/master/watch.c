#include "watch.h"

#include "fd.h"
#include "log.h"
#include "master.h"
#include "child.h"

#include <spawn.h>

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

/* Changes closer together than this are one change: an editor's save or a
 * compiler's output is several events. */
#define DEBOUNCE_MS 300

struct up_watch {
    struct up_master *m;
    int fd; /* owned: inotify */
    struct up_op op;
    struct up_timer debounce;
    char dir[512];
    pid_t build_pid; /* the build running, or 0 */
    bool again;      /* a change came while building: build again */
    bool stopped;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
};

int up_watch_ignored(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || name[0] == '.' || name[0] == '#' || name[n - 1] == '~') {
        return 1; /* .git, .swp of vim, .#emacs locks, #emacs#, backup~ */
    }
    if (strcmp(name, "build") == 0 || strcmp(name, "4913") == 0) {
        return 1; /* our build dir; vim's probe file */
    }
    const char *dot = strrchr(name, '.');
    return dot != NULL &&
           (strcmp(dot, ".swp") == 0 || strcmp(dot, ".swx") == 0 || strcmp(dot, ".tmp") == 0 ||
            strcmp(dot, ".o") == 0 || strcmp(dot, ".d") == 0);
}

static void start_build(struct up_watch *w)
{
    const char *argv[] = {"sh", "-c", w->m->cli->build_cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, w->dir);
    up_log(UP_LOG_INFO, "change detected: running build: %s", w->m->cli->build_cmd);
    int r = up_child_spawn("/bin/sh", argv, &fa, &w->build_pid);
    posix_spawn_file_actions_destroy(&fa);
    if (r < 0) {
        w->build_pid = 0;
        up_log(UP_LOG_ERR, "cannot run the build: %s; the old code keeps serving", strerror(-r));
    }
}

static void on_debounce(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_watch *w = (struct up_watch *)((char *)t - offsetof(struct up_watch, debounce));
    if (w->stopped) {
        return;
    }
    if (w->build_pid > 0) {
        w->again = true; /* let the running build finish first */
        return;
    }
    if (w->m->cli->build_cmd != NULL) {
        start_build(w);
        return;
    }
    up_master_reload(w->m, "file change");
}

void up_watch_child_exited(struct up_watch *w, pid_t pid, int status)
{
    if (w == NULL || pid != w->build_pid) {
        return;
    }
    w->build_pid = 0;
    if (w->stopped) {
        return;
    }
    if (w->again) {
        w->again = false;
        start_build(w);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        up_master_reload(w->m, "build done");
        return;
    }
    w->m->stats.reload_fails++;
    snprintf(w->m->last_error, sizeof(w->m->last_error), "the build (%s) failed with %s %d",
             w->m->cli->build_cmd, WIFEXITED(status) ? "status" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    up_log(UP_LOG_ERR, "%s; the old code keeps serving", w->m->last_error);
}

static void on_events(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_watch *w = (struct up_watch *)((char *)op - offsetof(struct up_watch, op));
    if (res <= 0 || w->stopped) {
        if (res < 0 && res != -ECANCELED) {
            up_log(UP_LOG_ERR, "watch: reading inotify failed: %s, no longer watching",
                   strerror(-res));
        }
        return;
    }
    bool relevant = false;
    for (char *p = w->buf; p < w->buf + res;) {
        struct inotify_event *ev = (struct inotify_event *)(void *)p;
        if (ev->len > 0 && !up_watch_ignored(ev->name)) {
            relevant = true;
        }
        p += sizeof(*ev) + ev->len;
    }
    if (relevant) {
        up_timer_start(loop, &w->debounce, DEBOUNCE_MS);
    }
    (void)up_loop_read(loop, &w->op, w->fd, w->buf, sizeof(w->buf));
}

int up_watch_start(struct up_master *m, struct up_watch **ret)
{
    struct up_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->m = m;
    w->op.cb = on_events;
    w->debounce.cb = on_debounce;
    if (m->cli->watch_dir != NULL) {
        snprintf(w->dir, sizeof(w->dir), "%s", m->cli->watch_dir);
    } else {
        char app[512];
        snprintf(app, sizeof(app), "%s", m->cli->app);
        snprintf(w->dir, sizeof(w->dir), "%s", dirname(app));
    }
    int r = 0;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0 || inotify_add_watch(w->fd, w->dir,
                                       IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0) {
        r = -errno;
    }
    if (r == 0) {
        r = up_loop_read(m->loop, &w->op, w->fd, w->buf, sizeof(w->buf));
    }
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot watch %s: %s", w->dir, strerror(-r));
        up_close(w->fd);
        free(w);
        return r;
    }
    up_log(UP_LOG_INFO, "watching %s for changes", w->dir);
    *ret = w;
    return 0;
}

void up_watch_stop(struct up_watch *w)
{
    w->stopped = true;
    up_timer_stop(w->m->loop, &w->debounce);
    up_loop_cancel(w->m->loop, &w->op);
    if (w->build_pid > 0) {
        kill(w->build_pid, SIGTERM);
    }
}

void up_watch_free(struct up_watch *w)
{
    if (w == NULL) {
        return;
    }
    if (!w->stopped) {
        up_watch_stop(w);
    }
    up_loop_drain(w->m->loop, 2000);
    w->fd = up_loop_close(w->m->loop, w->fd);
    free(w);
}
