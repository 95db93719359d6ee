/*
 * kind: what a worker process is. See kind.h.
 */
#include "kind.h"

#include "fd.h"
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *up_kind_name(enum up_kind k)
{
    switch (k) {
    case UP_KIND_APP:
        return "app";
    case UP_KIND_HANDOFF:
        return "handoff";
    case UP_KIND_EXEC:
        return "exec";
    case UP_KIND_HEIR:
        return "heir";
    }
    return "?";
}

bool up_kind_has_channel(enum up_kind k)
{
    return k != UP_KIND_EXEC;
}

bool up_kind_own_group(enum up_kind k)
{
    return k != UP_KIND_APP;
}

int up_kind_quit_signal(enum up_kind k)
{
    /* A heir is a master: SIGQUIT stops it and its workers at once. */
    return k == UP_KIND_EXEC ? SIGTERM : SIGQUIT;
}

/* The file snapshot of src in dir, opened for the workers. */
static int snapshot_file(int src, unsigned gen_id, const char *dir, struct up_kind_snap *snap)
{
    snprintf(snap->path, sizeof(snap->path), "%s/gen-%u.so", dir, gen_id);
    snap->file = true;
    int dst = open(snap->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = dst < 0 ? -errno : up_snapshot_copy(src, dst);
    up_close(dst);
    if (r == 0 && (snap->fd = open(snap->path, O_RDONLY | O_CLOEXEC)) < 0) {
        r = -errno;
    }
    return r;
}

/* Snapshot the app, so that rewriting it in place cannot change what this
 * generation loads: into a sealed memfd, or into a file in dir where no
 * memfd can be had (a kernel or sandbox without memfd_create(), or memory
 * short for the copy; dir "": none, server.c could not make it). Either
 * way snap->fd is the copy, open, for the workers: none of them copies the
 * app again. */
static int snapshot(const char *app, unsigned gen_id, const char *dir, struct up_kind_snap *snap)
{
    int src = open(app, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        return -errno;
    }
    char name[32];
    snprintf(name, sizeof(name), "up-app-g%u", gen_id);
    int fd = up_snapshot_memfd(name, src, true);
    int r = 0;
    if (fd >= 0) {
        snap->fd = fd;
        snprintf(snap->path, sizeof(snap->path), "%s", app);
    } else {
        snap->memfd_err = fd;
        r = dir[0] != '\0' ? snapshot_file(src, gen_id, dir, snap) : fd;
    }
    up_close(src);
    return r;
}

/* A command may be run: a regular file we may execute. */
static int runnable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return -EACCES;
    }
    return access(path, X_OK) < 0 ? -errno : 0;
}

int up_kind_find_command(const char *cmd, char *buf, size_t cap)
{
    if (strchr(cmd, '/') != NULL) {
        int r = runnable(cmd);
        if (r == 0 && (size_t)snprintf(buf, cap, "%s", cmd) >= cap) {
            r = -ENAMETOOLONG;
        }
        return r;
    }
    const char *path = getenv("PATH");
    path = path != NULL && path[0] != '\0' ? path : "/usr/local/bin:/usr/bin:/bin";
    int found = -ENOENT;
    /* As execvp: the first directory where it may be run; one where it is
     * found but may not be run says so, if no later one has it. */
    for (const char *p = path; found != 0;) {
        size_t n = strcspn(p, ":");
        char full[4096];
        int len = snprintf(full, sizeof(full), "%.*s%s%s", (int)n, n > 0 ? p : ".", "/", cmd);
        if (len > 0 && (size_t)len < sizeof(full)) {
            int r = runnable(full);
            if (r == 0) {
                if ((size_t)len >= cap) {
                    return -ENAMETOOLONG;
                }
                memcpy(buf, full, (size_t)len + 1);
                found = 0;
            } else if (r == -EACCES) {
                found = r;
            }
        }
        if (p[n] == '\0') {
            break;
        }
        p += n + 1;
    }
    return found;
}

/* A file the master may not read or run: whose access it was, for the
 * master that left root for --user (the app under /root, mode 0700). */
static void refused(char *why, size_t why_cap, const char *what, const char *path, int err)
{
    int n = snprintf(why, why_cap, "cannot %s %s: %s", what, path, strerror(-err));
    if (err == -EACCES && n > 0 && (size_t)n < why_cap) {
        snprintf(why + n, why_cap - (size_t)n,
                 " (running as uid %u: give that uid access to the file and its directories)",
                 (unsigned)geteuid());
    }
}

int up_kind_prepare(const struct up_kind_params *p, unsigned gen_id, const char *dir,
                    struct up_kind_snap *snap, char *why, size_t why_cap)
{
    *snap = (struct up_kind_snap){.fd = -1};
    int r = 0;
    switch (p->kind) {
    case UP_KIND_APP:
        r = snapshot(p->app, gen_id, dir, snap);
        if (r < 0) {
            refused(why, why_cap, "copy", p->app, r);
            up_kind_release(snap);
        }
        return r;
    case UP_KIND_HANDOFF:
    case UP_KIND_EXEC:
    case UP_KIND_HEIR:
        /* Checked again at each reload: a deploy may have replaced it. */
        r = runnable(p->app);
        if (r < 0) {
            refused(why, why_cap, "run", p->app, r);
            return r;
        }
        snprintf(snap->path, sizeof(snap->path), "%s", p->app);
        return 0;
    }
    return -EINVAL;
}

void up_kind_release(struct up_kind_snap *snap)
{
    up_close(snap->fd);
    if (snap->file) {
        unlink(snap->path);
    }
    *snap = (struct up_kind_snap){.fd = -1};
}

/* Append s to plan's argv; false when it is full. */
static bool arg(struct up_kind_plan *plan, int *a, const char *s)
{
    if (*a >= (int)(sizeof(plan->argv) / sizeof(plan->argv[0])) - 1) {
        return false;
    }
    plan->argv[(*a)++] = s;
    return true;
}

/* Set NAME=value in plan's environment (e is the next free slot). */
static void env(struct up_kind_plan *plan, int *e, const char *name, const char *value)
{
    if (*e < UP_CHILD_MAX_ENV) {
        snprintf(plan->env[*e], sizeof(plan->env[*e]), "%s=%s", name, value);
        plan->child.env[*e] = plan->env[*e];
        (*e)++;
    }
}

static int plan_app(const struct up_kind_params *p, struct up_kind_plan *plan)
{
    int a = 0;
    snprintf(plan->num[0], sizeof(plan->num[0]), "%u", p->gen_id);
    snprintf(plan->num[1], sizeof(plan->num[1]), "%u", p->index);
    snprintf(plan->num[2], sizeof(plan->num[2]), "%zu", p->max_head);
    snprintf(plan->num[3], sizeof(plan->num[3]), "%llums",
             (unsigned long long)p->ws_drain_grace_ms);
    snprintf(plan->num[4], sizeof(plan->num[4]), "%llums", (unsigned long long)p->close_spread_ms);
    bool ok = arg(plan, &a, p->bin) && arg(plan, &a, "--generation") &&
              arg(plan, &a, plan->num[0]) && arg(plan, &a, "--index") &&
              arg(plan, &a, plan->num[1]) && arg(plan, &a, "--title") && arg(plan, &a, p->title) &&
              arg(plan, &a, "--max-head") && arg(plan, &a, plan->num[2]) &&
              arg(plan, &a, "--ws-drain-grace") && arg(plan, &a, plan->num[3]) &&
              arg(plan, &a, "--close-spread") && arg(plan, &a, plan->num[4]);
    if (ok && p->ready_manual) {
        ok = arg(plan, &a, "--ready=manual");
    }
    if (ok && p->access_log != NULL) {
        ok = arg(plan, &a, "--access-log") && arg(plan, &a, p->access_log);
    }
    if (ok && p->access_log_format != NULL) {
        ok = arg(plan, &a, "--access-log-format") && arg(plan, &a, p->access_log_format);
    }
    for (int i = 0; ok && i < p->nrequire; i++) {
        ok = arg(plan, &a, "--require") && arg(plan, &a, p->require[i]);
    }
    if (ok && p->app_fd >= 0) {
        ok = arg(plan, &a, "--app-fd") && arg(plan, &a, "4");
    }
    ok = ok && arg(plan, &a, p->app) && arg(plan, &a, "--");
    for (int i = 0; ok && i < p->app_argc; i++) {
        ok = arg(plan, &a, p->app_argv[i]);
    }
    plan->argv[a] = NULL;
    if (p->backend != NULL) {
        int e = 0;
        env(plan, &e, "UP_BACKEND", p->backend);
    }
    return ok ? 0 : -E2BIG;
}

/* up-exec PPID NOFILE PATH ARGV0 ARGS...: see core/exec/up-exec.c. */
static int plan_command(const struct up_kind_params *p, struct up_kind_plan *plan)
{
    int a = 0;
    snprintf(plan->num[0], sizeof(plan->num[0]), "%d", (int)getpid());
    snprintf(plan->num[1], sizeof(plan->num[1]), "%llu", p->nofile);
    bool ok = arg(plan, &a, p->bin) && arg(plan, &a, plan->num[0]) && arg(plan, &a, plan->num[1]) &&
              arg(plan, &a, p->app);
    for (int i = 0; ok && i < p->app_argc; i++) {
        ok = arg(plan, &a, p->app_argv[i]);
    }
    plan->argv[a] = NULL;
    return ok ? 0 : -E2BIG;
}

/* What an EXEC worker is told: systemd's socket activation and readiness
 * variables, and PORT, UP_GENERATION, UP_WORKER for servers that read only
 * an environment variable. LISTEN_PID is the up-exec shim's to set. */
static void exec_env(const struct up_kind_params *p, struct up_kind_plan *plan, int *e)
{
    char names[160] = "";
    size_t len = 0;
    for (int i = 0; i < p->nlisten && len + 6 < sizeof(names); i++) {
        len += (size_t)snprintf(names + len, sizeof(names) - len, "%shttp", i > 0 ? ":" : "");
    }
    snprintf(plan->num[2], sizeof(plan->num[2]), "%d", p->nlisten);
    env(plan, e, "LISTEN_FDS", plan->num[2]);
    env(plan, e, "LISTEN_FDNAMES", names);
    if (p->ready == UP_READY_NOTIFY && p->notify_path != NULL) {
        env(plan, e, "NOTIFY_SOCKET", p->notify_path);
    }
    if (p->port > 0) {
        snprintf(plan->num[3], sizeof(plan->num[3]), "%d", p->port);
        env(plan, e, "PORT", plan->num[3]);
    }
}

/* HEIR: the new up-run itself with this master's arguments, the channel at
 * fd 3, the sockets it takes over from fd 4, and this master's stdout (it
 * outlives this master: its own log goes to this master's stderr, passed
 * too, once it takes over; until then to out, for a failure report). */
static int plan_heir(const struct up_kind_params *p, int chan, struct up_kind_plan *plan, int e)
{
    struct up_child_plan *c = &plan->child;
    c->fds[STDOUT_FILENO] = -1;
    c->fds[3] = chan;
    int n = p->nlisten < UP_KIND_MAX_HEIR_FDS ? p->nlisten : UP_KIND_MAX_HEIR_FDS;
    if (4 + n > UP_CHILD_MAX_FDS) {
        return -E2BIG;
    }
    for (int i = 0; i < n; i++) {
        c->fds[4 + i] = p->listen_fds[i];
    }
    c->nfds = 4 + n;
    env(plan, &e, "UP_HEIR_FDS", p->heir_names != NULL ? p->heir_names : "");
    if (p->notify_path != NULL) {
        env(plan, &e, "NOTIFY_SOCKET", p->notify_path);
    }
    int a = 0;
    bool ok = arg(plan, &a, p->app);
    for (int i = 0; ok && i < p->app_argc; i++) {
        ok = arg(plan, &a, p->app_argv[i]);
    }
    plan->argv[a] = NULL;
    c->path = p->app;
    return ok ? 0 : -E2BIG;
}

int up_kind_plan(const struct up_kind_params *p, int chan, int out, struct up_kind_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    struct up_child_plan *c = &plan->child;
    for (int i = 0; i < UP_CHILD_MAX_FDS; i++) {
        c->fds[i] = -1;
    }
    c->path = p->bin;
    c->argv = plan->argv;
    c->fds[STDERR_FILENO] = out;
    c->nfds = 4;
    if (p->kind == UP_KIND_APP) {
        c->fds[3] = chan;
        if (p->app_fd >= 0) {
            c->fds[4] = p->app_fd;
            c->nfds = 5;
        }
        return plan_app(p, plan);
    }
    /* A program of any kind may write to either: both are relayed. */
    c->fds[STDOUT_FILENO] = out;
    c->own_group = true;
    char gen[24], idx[24];
    snprintf(gen, sizeof(gen), "%u", p->gen_id);
    snprintf(idx, sizeof(idx), "%u", p->index);
    int e = 0;
    env(plan, &e, "UP_GENERATION", gen);
    env(plan, &e, "UP_WORKER", idx);
    if (p->kind == UP_KIND_HEIR) {
        return plan_heir(p, chan, plan, e);
    }
    if (p->kind == UP_KIND_HANDOFF) {
        c->fds[3] = chan;
    } else {
        for (int i = 0; i < p->nlisten && 3 + i < UP_CHILD_MAX_FDS; i++) {
            c->fds[3 + i] = p->listen_fds[i];
        }
        c->nfds = 3 + (p->nlisten < UP_KIND_MAX_LISTEN ? p->nlisten : UP_KIND_MAX_LISTEN);
        exec_env(p, plan, &e);
    }
    return plan_command(p, plan);
}
