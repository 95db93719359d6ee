/*
 * master: up-run's process: set-up, listeners, signals, reload and stop.
 * Connections are mconn.c's, generations gen.c's.
 */
#include "master.h"

#include "ctl.h"
#include "fd.h"
#include "gen.h"
#include "listen.h"
#include "log.h"
#include "mconn.h"
#include "metrics.h"
#include "notify.h"
#include "pidfile.h"
#include "watch.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* Connections not yet handed off at which accepting pauses (the kernel's
 * backlog holds the rest): bounds the master's memory and fds. Lower when
 * the fd limit is (see size_pending()), never below MIN_PENDING. */
#define MAX_PENDING 8192
#define MIN_PENDING 16
/* fds that come and go besides the pending connections: control and
 * metrics clients, the app's snapshot copy, a spawn's pipes. */
#define FD_MARGIN 64
/* While accepting is paused at the cap, look for slow heads to shed this
 * often (see up_mconn_shed()). */
#define SHED_EVERY_MS 250
/* After a stop's drain deadline, this long for workers to go before
 * they are killed. */
#define STOP_GRACE_MS 5000

/* ---- listeners ---- */

static void on_conn(struct up_acceptor *a, int fd)
{
    struct up_listener *l = a->ctx;
    struct up_master *m = l->m;
    up_mconn_accept_take(m, fd, l->unix_sock);
    up_mconn_shed(m);
    if (m->nmconns >= m->max_pending && !m->accept_paused) {
        m->accept_paused = true;
        for (int i = 0; i < m->nlisteners; i++) {
            up_acceptor_pause(&m->listeners[i].acceptor);
        }
        /* No accept comes to shed slow heads now: a timer does. */
        up_timer_start(m->loop, &m->shed_timer, SHED_EVERY_MS);
        up_log(UP_LOG_WARN, "%zu connections waiting for a worker: accepting paused", m->nmconns);
    }
}

static void on_accept_error(struct up_acceptor *a, int err, bool first)
{
    struct up_listener *l = a->ctx;
    if (first) {
        /* Once per streak: the retry runs ten times a second. */
        up_log(UP_LOG_WARN, "listener %s: accept failed: %s, retrying every %d ms", l->text,
               strerror(-err), UP_ACCEPTOR_RETRY_MS);
    }
}

static void on_accept_recovered(struct up_acceptor *a)
{
    struct up_listener *l = a->ctx;
    up_log(UP_LOG_INFO, "listener %s: accepting again", l->text);
}

static const struct up_acceptor_cbs listener_cbs = {
    .on_conn = on_conn,
    .on_error = on_accept_error,
    .on_recovered = on_accept_recovered,
};

static void on_shed_timer(struct up_loop *loop, struct up_timer *t)
{
    struct up_master *m = (struct up_master *)((char *)t - offsetof(struct up_master, shed_timer));
    up_mconn_shed(m);
    if (m->accept_paused) {
        up_timer_start(loop, t, SHED_EVERY_MS);
    }
}

void up_master_unpause(struct up_master *m)
{
    if (m->nmconns < m->max_pending) {
        up_gen_resume_rx(m); /* hand-backs waiting in draining workers' channels */
    }
    if (!m->accept_paused || m->nmconns > m->max_pending * 3 / 4 ||
        m->state == UP_MASTER_STOPPING) {
        return;
    }
    m->accept_paused = false;
    up_timer_stop(m->loop, &m->shed_timer);
    for (int i = 0; i < m->nlisteners; i++) {
        up_acceptor_resume(&m->listeners[i].acceptor);
    }
}

static int open_listeners(struct up_master *m)
{
    const struct up_cli *cli = m->cli;
    char port_text[32];
    char *defaults[1];
    char *const *addrs = cli->listen;
    int n = cli->nlisten;
    if (n == 0) {
        snprintf(port_text, sizeof(port_text), "%d", cli->port);
        defaults[0] = port_text;
        addrs = defaults;
        n = 1;
    }
    for (int i = 0; i < n; i++) {
        struct up_listener *l = &m->listeners[i];
        struct up_listen_addr a;
        char err[256];
        if (up_listen_parse(addrs[i], &a, err, sizeof(err)) < 0) {
            up_log(UP_LOG_ERR, "listen: %s", err);
            return -EINVAL;
        }
        /* SO_REUSEPORT lets a new master bind beside this one during an
         * upgrade; TCP_DEFER_ACCEPT makes most accepts arrive with the
         * request already there, so the first peek succeeds. */
        struct up_listen_opts o = {.backlog = 4096, .reuseport = true, .defer_accept_s = 1};
        int r = up_listen_open(&a, &o, &l->fd);
        if (r < 0) {
            up_log(UP_LOG_ERR, "cannot listen on %s: %s%s", a.text, strerror(-r),
                   r == -EEXIST ? " (something that is not a socket is at that path: move it, "
                                  "or listen elsewhere)"
                                : "");
            return r;
        }
        l->m = m;
        l->unix_sock = a.ss.ss_family == AF_UNIX;
        up_acceptor_init(&l->acceptor, m->loop, l->fd, &listener_cbs, l);
        snprintf(l->text, sizeof(l->text), "%s", a.text);
        m->nlisteners++;
    }
    return 0;
}

/* ---- signals: read from a signalfd on the loop, never handled inline ---- */

static void on_signal(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_master *m = (struct up_master *)((char *)op - offsetof(struct up_master, sig_op));
    if (res == (int)sizeof(struct signalfd_siginfo)) {
        struct signalfd_siginfo si;
        memcpy(&si, m->sig_buf, sizeof(si));
        switch (si.ssi_signo) {
        case SIGCHLD:
            up_gen_reap(m);
            break;
        case SIGUSR2:
        case SIGHUP:
            up_master_reload(m, si.ssi_signo == SIGUSR2 ? "SIGUSR2" : "SIGHUP");
            break;
        case SIGTERM:
        case SIGINT:
            up_log(UP_LOG_INFO, "%s: stopping gracefully",
                   si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            up_master_stop(m, true);
            break;
        case SIGQUIT:
            up_log(UP_LOG_INFO, "SIGQUIT: stopping now");
            up_master_stop(m, false);
            break;
        default:
            break;
        }
    }
    if (!op->canceling && m->sigfd >= 0) {
        (void)up_loop_read(loop, &m->sig_op, m->sigfd, m->sig_buf, sizeof(struct signalfd_siginfo));
    }
}

static int setup_signals(struct up_master *m)
{
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGUSR2, SIGHUP, SIGTERM, SIGINT, SIGQUIT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaddset(&set, sigs[i]);
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
        return -errno;
    }
    signal(SIGPIPE, SIG_IGN);
    m->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->sigfd < 0) {
        return -errno;
    }
    m->sig_op.cb = on_signal;
    return up_loop_read(m->loop, &m->sig_op, m->sigfd, m->sig_buf, sizeof(struct signalfd_siginfo));
}

/* ---- reload and stop ---- */

void up_master_reload(struct up_master *m, const char *why)
{
    if (m->state == UP_MASTER_STOPPING) {
        up_log(UP_LOG_INFO, "%s: ignoring reload, stopping", why);
        return;
    }
    up_notify_reloading();
    if (!up_gen_make_room(m)) {
        /* Reloads asked for meanwhile coalesce: the latest code wins. */
        if (!m->reload_pending) {
            up_log(UP_LOG_INFO, "%s: reload deferred until old workers exit", why);
        }
        m->reload_pending = true;
        return;
    }
    m->reload_pending = false;
    up_log(UP_LOG_INFO, "%s: reloading", why);
    if (up_gen_start(m) == NULL && m->active != NULL) {
        up_notify("READY=1\nSTATUS=reload failed; the running generation keeps serving");
    }
}

void up_master_worker_freed(struct up_master *m)
{
    if (m->reload_pending && m->state != UP_MASTER_STOPPING && up_gen_make_room(m)) {
        up_master_reload(m, "deferred reload");
    }
}

void up_master_no_generation(struct up_master *m)
{
    if (m->state == UP_MASTER_STOPPING) {
        return;
    }
    if (m->watch != NULL) {
        up_log(UP_LOG_ERR, "no generation is serving; answering 503 until a change fixes it");
        up_mconn_route_all(m); /* each one now gets the 503 page */
        return;
    }
    if (m->state == UP_MASTER_STARTING) {
        up_log(UP_LOG_ERR, "the app could not start; exiting");
        m->exit_code = 3;
        up_master_stop(m, false);
    }
}

void up_master_generation_active(struct up_master *m)
{
    if (m->state == UP_MASTER_STARTING) {
        m->state = UP_MASTER_RUNNING;
    }
    char status[96];
    snprintf(status, sizeof(status), "READY=1\nSTATUS=generation %u serving", m->active->id);
    up_notify(status);
    up_master_check_health(m);
    up_mconn_route_queued(m);
}

static void on_stop_deadline(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_master *m = (struct up_master *)((char *)t - offsetof(struct up_master, stop_timer));
    up_log(UP_LOG_WARN, "stop deadline passed with %u workers left: killing them",
           up_gen_count_workers(m));
    up_gen_kill_all(m, SIGKILL);
}

void up_master_stop(struct up_master *m, bool graceful)
{
    bool first = m->state != UP_MASTER_STOPPING;
    m->state = UP_MASTER_STOPPING;
    if (first) {
        up_notify("STOPPING=1");
    }
    for (int i = 0; i < m->nlisteners; i++) {
        up_acceptor_stop(&m->listeners[i].acceptor);
    }
    if (m->watch != NULL) {
        up_watch_stop(m->watch);
    }
    if (!graceful) {
        up_gen_kill_all(m, SIGQUIT);
        up_timer_start(m->loop, &m->stop_timer, STOP_GRACE_MS);
    } else if (first) {
        for (struct up_gen *g = m->gens; g != NULL; g = g->next) {
            if (g->state == UP_GEN_ACTIVE || g->state == UP_GEN_DRAINING) {
                up_gen_stop(g, UP_DRAIN_F_STOP);
            } else {
                up_gen_kill_all_of(g, SIGKILL);
            }
        }
        up_timer_start(m->loop, &m->stop_timer, m->cli->drain_timeout_ms + STOP_GRACE_MS);
    }
    up_mconn_flush_all(m, 503);
    up_master_check_done(m);
}

void up_master_check_done(struct up_master *m)
{
    if (m->state == UP_MASTER_STOPPING && m->gens == NULL && m->nmconns == 0) {
        up_loop_stop(m->loop);
    }
}

void up_master_child_exited(struct up_master *m, pid_t pid, int status)
{
    if (m->watch != NULL) {
        up_watch_child_exited(m->watch, pid, status);
    }
}

/* ---- health and status ---- */

const char *up_master_health(const struct up_master *m)
{
    switch (m->state) {
    case UP_MASTER_STARTING:
        return "starting";
    case UP_MASTER_STOPPING:
        return "stopping";
    case UP_MASTER_RUNNING:
        break;
    }
    if (m->active == NULL) {
        return "no generation serving";
    }
    unsigned ready, with_fds;
    up_gen_ready_counts(m, &ready, &with_fds);
    if (ready == 0) {
        return "no ready worker";
    }
    if (with_fds == 0) {
        return "every worker is out of fds";
    }
    return NULL;
}

void up_master_check_health(struct up_master *m)
{
    const char *h = up_master_health(m);
    if (h == m->health) {
        return;
    }
    if (m->state == UP_MASTER_RUNNING && h != NULL) {
        up_log(UP_LOG_WARN,
               "degraded: %s; new connections wait for one (at most --queue-timeout, then 503)", h);
    } else if (m->state == UP_MASTER_RUNNING && m->health != NULL && m->active != NULL) {
        up_log(UP_LOG_INFO, "healthy again: generation %u has a ready worker", m->active->id);
    }
    m->health = h;
}

/* ---- status ---- */

size_t up_master_status(const struct up_master *m, char *buf, size_t cap)
{
    static const char *const states[] = {"starting", "running", "stopping"};
    size_t n = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (n < cap) {                                                                             \
            int k_ = snprintf(buf + n, cap - n, __VA_ARGS__);                                      \
            n += k_ > 0 ? (size_t)k_ : 0;                                                          \
        }                                                                                          \
    } while (0)
    const char *health = up_master_health(m);
    OUT("master pid=%d state=%s backend=%s pending=%zu health=%s%s%s\n", (int)getpid(),
        states[m->state], up_loop_backend_name(m->loop), m->nmconns,
        health == NULL ? "ok" : "degraded", health == NULL ? "" : ": ", health ? health : "");
    for (const struct up_gen *g = m->gens; g != NULL; g = g->next) {
        OUT("generation %u %s workers=%u\n", g->id, up_gen_state_name(g->state), g->nworkers);
        for (const struct up_mworker *w = g->workers; w != NULL; w = w->next) {
            /* Reaped but its channel not yet read to the end: "exited". */
            OUT("  worker #%u pid=%d %s conns=%llu requests=%llu\n", w->index, (int)w->pid,
                w->pid > 0 ? up_mworker_state_name(w->state) : "exited",
                (unsigned long long)w->conns, (unsigned long long)w->requests);
        }
    }
    const struct up_master_stats *s = &m->stats;
    OUT("accepted=%llu handed=%llu rerouted=%llu handed_back=%llu answered=%llu reloads=%llu "
        "reload_failures=%llu respawns=%llu queue_timeouts=%llu shed=%llu lost=%llu\n",
        (unsigned long long)s->accepted, (unsigned long long)s->handed,
        (unsigned long long)s->rerouted, (unsigned long long)s->handed_back,
        (unsigned long long)s->answered, (unsigned long long)s->reloads,
        (unsigned long long)s->reload_fails, (unsigned long long)s->respawns,
        (unsigned long long)s->queue_timeouts, (unsigned long long)s->shed,
        (unsigned long long)s->lost);
    OUT("fd limit %llu, pending cap %zu\n", m->nofile, m->max_pending);
    if (m->last_error[0] != '\0') {
        OUT("last error: %s\n", m->last_error);
    }
    if (up_log_lines_dropped() > 0) {
        OUT("log: %llu lines dropped\n", (unsigned long long)up_log_lines_dropped());
    }
#undef OUT
    return n < cap ? n : cap;
}

/* ---- set-up and tear-down ---- */

static int find_self(struct up_master *m)
{
    char exe[sizeof(m->self_dir)];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0) {
        return -errno;
    }
    exe[n] = '\0';
    snprintf(m->self_dir, sizeof(m->self_dir), "%s", dirname(exe));
    return 0;
}

static int make_snap_dir(struct up_master *m)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (base == NULL || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
    }
    if (base == NULL || access(base, W_OK) != 0) {
        base = "/tmp";
    }
    snprintf(m->snap_dir, sizeof(m->snap_dir), "%s/up-%d-XXXXXX", base, (int)getpid());
    return mkdtemp(m->snap_dir) == NULL ? -errno : 0;
}

/* Write --pidfile, and remember that this master did: only the master
 * that wrote it removes it (up_master_free). */
static int write_pidfile(struct up_master *m)
{
    pid_t owner = 0;
    int r = up_pidfile_write(m->cli->pidfile, &owner);
    if (r == -EBUSY) {
        up_log(UP_LOG_ERR,
               "pidfile %s names pid=%d, an up-run master that is running: stop it first or "
               "use another --pidfile",
               m->cli->pidfile, (int)owner);
    } else if (r < 0) {
        up_log(UP_LOG_ERR, "cannot write pidfile %s: %s", m->cli->pidfile, strerror(-r));
    }
    m->pidfile_written = r == 0;
    return r;
}

/* fds open in this process now, from /proc/self/fd; -errno if unreadable. */
static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -errno;
    }
    long n = -1; /* the directory's own fd */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* Size the pending cap to the fd limit: what the master holds now, two fds
 * per worker process the budget allows (channel, stderr pipe), a margin,
 * and one per pending connection. Accepting then pauses before accept()
 * or a hand-back could fail for lack of fds. */
static void size_pending(struct up_master *m, unsigned long long raised_from)
{
    const struct up_cli *cli = m->cli;
    long fixed = count_fds();
    long long workers = 2LL * (cli->max_draining + 1) * cli->workers;
    long long room = (long long)m->nofile - (fixed > 0 ? fixed : 32) - workers - FD_MARGIN;
    m->max_pending = room > MAX_PENDING ? MAX_PENDING : room < MIN_PENDING ? MIN_PENDING : room;
    char from[64] = "";
    if (raised_from != m->nofile) {
        snprintf(from, sizeof(from), " (raised from %llu)", raised_from);
    }
    up_log(UP_LOG_INFO, "fd limit %llu%s: up to %zu connections wait for a worker", m->nofile, from,
           m->max_pending);
    if (room < MIN_PENDING) {
        up_log(UP_LOG_WARN,
               "fd limit %llu is too low for %ld workers with --max-draining=%d; raise it "
               "(LimitNOFILE= in the unit, ulimit -n)",
               m->nofile, cli->workers, cli->max_draining);
    }
}

int up_master_init(struct up_master *m, const struct up_cli *cli)
{
    memset(m, 0, sizeof(*m));
    m->cli = cli;
    m->sigfd = -1;
    m->max_pending = MAX_PENDING;
    m->queue_rl = (struct up_ratelimit)UP_RATELIMIT_INIT(10000, 5);
    m->stop_timer.cb = on_stop_deadline;
    m->shed_timer.cb = on_shed_timer;
    unsigned long long nofile_before = 0;
    int rr = up_fd_raise_nofile(&nofile_before, &m->nofile);
    if (rr < 0) {
        up_log(UP_LOG_WARN, "cannot raise the fd limit from %llu: %s, keeping it", nofile_before,
               strerror(-rr));
    }
    for (int i = 0; i < UP_MAX_LISTENERS; i++) {
        m->listeners[i].fd = -1;
    }
    const char *why = NULL;
    int r = up_loop_new(cli->backend, 4096, &m->loop, &why);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot set up the event loop: %s%s%s", strerror(-r), why ? ": " : "",
               why ? why : "");
        return r;
    }
    /* From here on a stuck stderr (a log reader that stopped) costs log
     * lines, never the loop. */
    if ((r = up_log_async(m->loop)) < 0) {
        up_log(UP_LOG_WARN, "cannot buffer the log: %s, writing it blocking", strerror(-r));
    }
    up_log(UP_LOG_INFO, "event loop: %s%s%s", up_loop_backend_name(m->loop),
           why ? " (io_uring unavailable: " : "", why ? why : "");
    if ((r = find_self(m)) < 0 || (r = make_snap_dir(m)) < 0) {
        up_log(UP_LOG_ERR, "cannot prepare a private directory: %s", strerror(-r));
        return r;
    }
    if ((r = setup_signals(m)) < 0) {
        up_log(UP_LOG_ERR, "cannot set up signals: %s", strerror(-r));
        return r;
    }
    if ((r = open_listeners(m)) < 0) {
        return r;
    }
    if ((r = up_ctl_open(m, &m->ctl)) < 0) {
        return r;
    }
    if (cli->metrics != NULL && (r = up_metrics_open(m, cli->metrics, &m->metrics)) < 0) {
        return r;
    }
    if (cli->watch && (r = up_watch_start(m, &m->watch)) < 0) {
        return r;
    }
    size_pending(m, nofile_before);
    if (cli->pidfile != NULL && (r = write_pidfile(m)) < 0) {
        return r;
    }
    if (up_gen_start(m) == NULL && m->watch == NULL) {
        return -ENOEXEC;
    }
    for (int i = 0; i < m->nlisteners; i++) {
        (void)up_acceptor_start(&m->listeners[i].acceptor);
    }
    return 0;
}

int up_master_run(struct up_master *m)
{
    int r = up_loop_run(m->loop);
    if (r < 0) {
        up_log(UP_LOG_ERR, "event loop failed: %s", strerror(-r));
        return 1;
    }
    return m->exit_code;
}

void up_master_free(struct up_master *m)
{
    if (m->loop != NULL) {
        /* First: its wait for stderr would hold up every drain below. One
         * last try to write the log, never waiting. */
        up_log_async_end();
        up_loop_cancel(m->loop, &m->sig_op);
        for (int i = 0; i < m->nlisteners; i++) {
            up_acceptor_stop(&m->listeners[i].acceptor);
        }
        up_ctl_close(m->ctl);
        up_metrics_close(m->metrics);
        up_watch_free(m->watch);
        up_loop_drain(m->loop, 2000);
    }
    for (int i = 0; i < m->nlisteners; i++) {
        m->listeners[i].fd = up_close(m->listeners[i].fd);
    }
    m->sigfd = up_close(m->sigfd);
    while (m->bufs != NULL) {
        char *b = m->bufs;
        memcpy(&m->bufs, b, sizeof(char *));
        free(b);
    }
    if (m->snap_dir[0] != '\0') {
        rmdir(m->snap_dir);
    }
    if (m->pidfile_written && up_pidfile_remove(m->cli->pidfile) == -ESRCH) {
        up_log(UP_LOG_WARN, "pidfile %s names another process now, leaving it", m->cli->pidfile);
    }
    m->pidfile_written = false;
    up_loop_free(m->loop);
    m->loop = NULL;
}
