#include "watch.h"

#include "child.h"
#include "fd.h"
#include "list.h"
#include "log.h"

#include <spawn.h>

#include <errno.h>
#include <fcntl.h>
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
    struct up_loop *loop;
    const struct up_watch_cbs *cbs;
    void *ctx;
    const char *build_cmd;
    int fd; /* owned: inotify */
    struct up_op op;
    struct up_timer debounce;
    char dir[512];
    pid_t build_pid; /* the build running, or 0 */
    bool again;      /* a change came while building: build again */
    bool stopped;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
};

/* The per-user limits inotify reports as EMFILE and ENOSPC. */
struct inotify_limit {
    const char *sysctl, *what, *example;
};
static const struct inotify_limit instances = {"max_user_instances", "instances", "1024"};
static const struct inotify_limit watches = {"max_user_watches", "watches", "524288"};

/* EMFILE from inotify_init1(): this process's fd limit, or the user's
 * inotify instances? The fd limit, if no fd can be had either. */
static bool out_of_fds(void)
{
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        return errno == EMFILE;
    }
    close(fd);
    return false;
}

/* fs.inotify.NAME as text ("?" if unreadable), in a static buffer. */
static const char *sysctl_value(const char *name)
{
    static char v[32];
    char path[96];
    snprintf(path, sizeof(path), "/proc/sys/fs/inotify/%s", name);
    snprintf(v, sizeof(v), "?");
    FILE *f = fopen(path, "re");
    if (f != NULL) {
        if (fgets(v, sizeof(v), f) != NULL) {
            v[strcspn(v, "\n")] = '\0';
        }
        fclose(f);
    }
    return v;
}

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
    const char *argv[] = {"sh", "-c", w->build_cmd, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, w->dir);
    up_log(UP_LOG_INFO, "change detected: running build: %s", w->build_cmd);
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
    struct up_watch *w = up_container_of(t, struct up_watch, debounce);
    if (w->stopped) {
        return;
    }
    if (w->build_pid > 0) {
        w->again = true; /* let the running build finish first */
        return;
    }
    if (w->build_cmd != NULL) {
        start_build(w);
        return;
    }
    w->cbs->reload(w->ctx, "file change");
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
        w->cbs->reload(w->ctx, "build done");
        return;
    }
    char why[600];
    snprintf(why, sizeof(why), "the build (%s) failed with %s %d", w->build_cmd,
             WIFEXITED(status) ? "status" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    up_log(UP_LOG_ERR, "%s; the old code keeps serving", why);
    w->cbs->build_failed(w->ctx, why);
}

static void on_events(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_watch *w = up_container_of(op, struct up_watch, op);
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

int up_watch_start(struct up_loop *loop, const char *dir, const char *build_cmd,
                   const struct up_watch_cbs *cbs, void *ctx, struct up_watch **ret)
{
    struct up_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->loop = loop;
    w->cbs = cbs;
    w->ctx = ctx;
    w->build_cmd = build_cmd;
    w->op.cb = on_events;
    w->debounce.cb = on_debounce;
    snprintf(w->dir, sizeof(w->dir), "%s", dir);
    int r = 0;
    const struct inotify_limit *limit = NULL;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        r = -errno;
        limit = r == -EMFILE && !out_of_fds() ? &instances : NULL;
    } else if (inotify_add_watch(w->fd, w->dir,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0) {
        r = -errno;
        limit = r == -ENOSPC ? &watches : NULL;
    }
    if (r == 0) {
        r = up_loop_read(loop, &w->op, w->fd, w->buf, sizeof(w->buf));
    }
    if (r < 0 && limit != NULL) {
        /* The kernel says "Too many open files" or "No space left on
         * device" for these: say which limit, shared by every program
         * of this user (editors, file sync tools), and how to raise it. */
        up_log(UP_LOG_ERR,
               "cannot watch %s: this user's inotify %s are all taken (fs.inotify.%s = %s): "
               "raise it, e.g. `sysctl fs.inotify.%s=%s`",
               w->dir, limit->what, limit->sysctl, sysctl_value(limit->sysctl), limit->sysctl,
               limit->example);
    } else if (r < 0) {
        up_log(UP_LOG_ERR, "cannot watch %s: %s", w->dir, strerror(-r));
    }
    if (r < 0) {
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
    up_timer_stop(w->loop, &w->debounce);
    up_loop_cancel(w->loop, &w->op);
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
    up_loop_drain(w->loop, 2000);
    w->fd = up_loop_close(w->loop, w->fd);
    free(w);
}
