/*
 * server: libup's up_server, the top of the master. It owns the loop, the
 * listeners, the signals, the pending connections, the router, the
 * generations, and the control, metrics and watch servers; each of those
 * reports up here through callbacks, and this file decides what follows
 * (route, reload, stop, exit). See up/server.h for the API, and the tree of
 * modules in README.md.
 */
#include "up/server.h"

#include "acceptor.h"
#include "child.h"
#include "ctl.h"
#include "fd.h"
#include "gen.h"
#include "heir.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "notifyd.h"
#include "pending.h"
#include "pidfile.h"
#include "privs.h"
#include "procstat.h"
#include "ratelimit.h"
#include "report.h"
#include "router.h"
#include "sig.h"
#include "sticky.h"
#include "strbuf.h"
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LISTENERS 16
/* Connections not yet handed off at which accepting pauses (the kernel's
 * backlog holds the rest): bounds the master's memory and fds. Lower when
 * the fd limit is (see size_pending()), never below MIN_PENDING. */
#define MAX_PENDING 8192
#define MIN_PENDING 16
/* fds that come and go besides the pending connections: control and
 * metrics clients, the app file while a snapshot is made, a spawn's pipes
 * (the snapshots themselves are counted apart: size_pending()). */
#define FD_MARGIN 64
/* While accepting is paused at the cap, look for slow heads to shed this
 * often (see up_pendings_shed()). */
#define SHED_EVERY_MS 250
/* After a stop's drain deadline, this long for workers to go before
 * they are killed. */
#define STOP_GRACE_MS 5000
/* A graceful stop first lets the workers take what was accepted (a head
 * still arriving, a connection on its way to a worker): at most this long,
 * then the rest is closed as in a stop at once; or, while nothing serves
 * but a generation is starting, until its start ends (at most
 * --ready-timeout and the drain timeout). */
#define STOP_FINISH_MS 1000

/* `up-run reload` clients waiting for an outcome (the control socket
 * serves at most as many clients). */
#define MAX_WAITERS 64

struct waiter {
    uint64_t id;  /* the control socket's request */
    unsigned gen; /* the first generation whose outcome answers it */
};

enum server_state {
    SERVER_NEW,      /* not running yet */
    SERVER_STARTING, /* first generation not ready yet */
    SERVER_RUNNING,  /* serving */
    SERVER_STOPPING, /* draining everything */
};

struct listener {
    struct up_server *s;
    int index;
    int fd; /* owned; never closed while the server runs */
    struct up_acceptor acceptor;
    bool unix_sock;
    char text[128];
};

struct sticky_mw {
    struct sticky_mw *next;
    struct up_sticky sticky;
};

struct up_server {
    struct up_server_opts opts; /* strings point into strs */
    char *strs;                 /* owned: copies of every string of opts */
    struct up_loop *loop;
    enum server_state state;
    int exit_code;
    char snap_dir[256];   /* private dir: each generation's app copy, the notify socket */
    char worker_bin[600]; /* what workers start as: up-worker, or up-exec */
    char command[4096];   /* EXEC, HANDOFF: exec_argv[0], found */
    unsigned long long nofile;
    unsigned long long nofile_before; /* the soft limit we were started with */
    struct up_privs privs;            /* opts.user, looked up */

    struct listener listeners[MAX_LISTENERS];
    int nlisteners;
    bool accept_paused;
    struct up_timer shed_timer;

    int sigfd; /* owned: signalfd */
    struct up_op sig_op;
    char sig_buf[128];
    int wake_fd; /* owned: eventfd for up_server_reload/stop from anywhere */
    struct up_op wake_op;
    uint64_t wake_buf;
    int want_reload, want_stop, want_stop_graceful; /* set from anywhere (atomics) */

    struct up_pendings pendings;
    struct up_router router;
    struct up_gens gens;
    struct up_gens_opts gens_opts;
    struct up_ctl *ctl;
    struct up_metrics *metrics;
    struct up_watch *watch;
    struct up_notifyd *notifyd; /* EXEC: the workers' NOTIFY_SOCKET */
    struct up_ratelimit notice_rl;
    int listen_fds[MAX_LISTENERS]; /* EXEC: what each worker gets (borrowed from listeners) */
    struct sticky_mw *stickies;

    struct up_timer stop_timer;   /* graceful stop deadline */
    struct up_timer finish_timer; /* the bound on a graceful stop's first step */
    bool finishing;               /* stopping: the workers still take what we accepted */
    uint64_t finish_ms;           /* its bound, chosen at the stop */
    bool stopping_now;            /* a stop at once was asked (SIGQUIT, SIGINT twice) */
    const char *health;           /* the last health logged */
    char last_error[1024];        /* why the last reload failed (the 503 page) */
    uint64_t build_fails;         /* --build failures */
    uint64_t lost;                /* hand-backs dropped at our fd limit */
    bool pidfile_written;
    unsigned reload_gen; /* the generation the last reload started, for its outcome */
    uint64_t reload_at;  /* ... and when (up_loop_now()) */
    uint64_t reload_us;  /* ... and when, finer (up_hist_now_us()) */
    struct waiter waiters[MAX_WAITERS];
    int nwaiters;
    struct up_hist reload_hist; /* a reload's request to its generation serving */

    /* Upgrade, the old master's side: the heir started (its fds and their
     * names, borrowed by gens while it runs), and whether it took over. */
    struct up_kind_params heir_spawn;
    int heir_fds[UP_KIND_MAX_HEIR_FDS];
    char heir_names[256];
    bool handed_over;
    pid_t heir_pid;
    char upgrade_error[600]; /* why the last upgrade failed */
    /* Upgrade, the new master's side: what the old one passed, the
     * channel to it, and whether we took over yet. */
    struct up_heir_fds heir_in;
    bool is_heir;
    struct up_heir *heir;
    bool took_over;
};

static const struct up_ctl_cbs ctl_cbs;
static const struct up_metrics_cbs metrics_cbs;
static void server_stop(struct up_server *s, bool graceful);
static void stop_routing(struct up_server *s);
static void maybe_finished(struct up_server *s);
static void finish_stop(struct up_server *s);
static void unlisten(struct up_server *s);
static int server_reload(struct up_server *s, const char *why);
static void check_done(struct up_server *s);
static void check_health(struct up_server *s);
static const char *health(const struct up_server *s);

/* ---- listeners ---- */

static void on_conn(struct up_acceptor *a, int fd)
{
    struct listener *l = a->ctx;
    struct up_server *s = l->s;
    up_pending_accept_take(&s->pendings, fd, l->index, l->unix_sock);
    up_pendings_shed(&s->pendings);
    if (up_pendings_full(&s->pendings) && !s->accept_paused) {
        s->accept_paused = true;
        for (int i = 0; i < s->nlisteners; i++) {
            up_acceptor_pause(&s->listeners[i].acceptor);
        }
        /* No accept comes to shed slow heads now: a timer does. */
        up_timer_start(s->loop, &s->shed_timer, SHED_EVERY_MS);
        up_log(UP_LOG_WARN, "%zu connections waiting for a worker: accepting paused",
               s->pendings.n);
    }
}

static void on_accept_error(struct up_acceptor *a, int err, bool first)
{
    struct listener *l = a->ctx;
    if (first) {
        /* Once per streak: the retry runs ten times a second. */
        up_log(UP_LOG_WARN, "listener %s: accept failed: %s, retrying every %d ms", l->text,
               strerror(-err), UP_ACCEPTOR_RETRY_MS);
    }
}

static void on_accept_recovered(struct up_acceptor *a)
{
    struct listener *l = a->ctx;
    up_log(UP_LOG_INFO, "listener %s: accepting again", l->text);
}

/* Whether no listener can bring a connection now: each stopped (a stop)
 * or paused (a hand-over), and no accept in flight. A multishot accept goes
 * on until the kernel sees its cancel, and what it brings is still ours to
 * route. */
static bool listeners_quiet(const struct up_server *s)
{
    for (int i = 0; i < s->nlisteners; i++) {
        if (!up_acceptor_quiet(&s->listeners[i].acceptor)) {
            return false;
        }
    }
    return true;
}

/* No accept of this listener's is in flight any more: a graceful stop
 * waits for that, because an accept the kernel finished before it saw the
 * stop still brings a connection (see maybe_finished()). */
static void on_accept_stopped(struct up_acceptor *a)
{
    struct listener *l = a->ctx;
    maybe_finished(l->s);
    unlisten(l->s);
}

/* Paused (at the pending cap, or handed over), and the accept that was in
 * flight ended: a handed-over master may retire now (see retired()). */
static void on_accept_paused(struct up_acceptor *a)
{
    struct listener *l = a->ctx;
    check_done(l->s);
}

static const struct up_acceptor_cbs listener_cbs = {
    .on_conn = on_conn,
    .on_error = on_accept_error,
    .on_recovered = on_accept_recovered,
    .on_stopped = on_accept_stopped,
    .on_paused = on_accept_paused,
};

static void on_shed_timer(struct up_loop *loop, struct up_timer *t)
{
    struct up_server *s = up_container_of(t, struct up_server, shed_timer);
    up_pendings_shed(&s->pendings);
    if (s->accept_paused) {
        up_timer_start(loop, t, SHED_EVERY_MS);
    }
}

/* Whether this master accepts at all: not once a new one took over, nor,
 * in a new one, before it does. */
static bool accepting(const struct up_server *s)
{
    return !s->handed_over && (!s->is_heir || s->took_over);
}

/* A pending connection went: room for hand-backs and new connections. */
static void room_again(struct up_server *s)
{
    if (!up_pendings_full(&s->pendings)) {
        up_gens_resume_rx(&s->gens); /* hand-backs waiting in draining workers' channels */
    }
    if (!s->accept_paused || s->pendings.n > s->pendings.max_pending * 3 / 4 ||
        s->state == SERVER_STOPPING || !accepting(s)) {
        return;
    }
    s->accept_paused = false;
    up_timer_stop(s->loop, &s->shed_timer);
    for (int i = 0; i < s->nlisteners; i++) {
        up_acceptor_resume(&s->listeners[i].acceptor);
    }
}

static int add_listener(struct up_server *s, int fd, const char *text, bool unix_sock)
{
    if (s->nlisteners == MAX_LISTENERS) {
        up_close(fd);
        return -ENOSPC;
    }
    struct listener *l = &s->listeners[s->nlisteners];
    l->s = s;
    l->index = s->nlisteners;
    l->fd = fd;
    l->unix_sock = unix_sock;
    snprintf(l->text, sizeof(l->text), "%s", text);
    up_acceptor_init(&l->acceptor, s->loop, l->fd, &listener_cbs, l);
    s->nlisteners++;
    return 0;
}

/* Open a listener on a, waiting for it if a server killed just now still
 * holds it (listen.h). Returns 0 with *fd, or -errno, said in the log
 * unless it is -EADDRNOTAVAIL and quiet_notavail. */
static int open_listener(struct up_server *s, const struct up_listen_addr *a, bool quiet_notavail,
                         int *fd)
{
    /* The port is this master's alone unless asked (opts.reuseport): a
     * second server started on it by mistake (a forgotten up-run, old
     * code) fails at once instead of silently taking a share of the
     * connections. An upgrade passes the listeners on; it never binds
     * again. TCP_DEFER_ACCEPT makes most accepts arrive with the request
     * already there, so the first peek succeeds. */
    struct up_listen_opts o = {
        .backlog = 4096, .reuseport = s->opts.reuseport, .defer_accept_s = 1};
    int waited = 0;
    int r = up_listen_open(a, &o, fd, &waited);
    if (r == 0 && waited > 0) {
        up_log(UP_LOG_INFO, "%s was taken for %d ms, then free (a server that had just exited)",
               a->text, waited);
    }
    if (r < 0 && !(r == -EADDRNOTAVAIL && quiet_notavail)) {
        up_log(UP_LOG_ERR, "cannot listen on %s: %s%s", a->text, strerror(-r),
               r == -EEXIST ? " (something that is not a socket is at that path: move it, "
                              "or listen elsewhere)"
               : r == -EADDRINUSE && a->ss.ss_family == AF_UNIX
                   ? " (another server listens there: `ss -lxp` shows which; stop it, or listen "
                     "elsewhere)"
               : r == -EADDRINUSE ? " (another server listens there: `ss -ltnp` shows which; "
                                    "stop it, or listen elsewhere; --reuseport shares a port "
                                    "among up-run masters on purpose)"
               : r == -EACCES && a->ss.ss_family != AF_UNIX
                   ? " (a port below net.ipv4.ip_unprivileged_port_start, 1024 by default, "
                     "needs root: start up-run as root with --user NAME, which binds first and "
                     "then runs as NAME, or give it CAP_NET_BIND_SERVICE)"
                   : "");
    }
    return r;
}

int up_server_listen(struct up_server *s, const char *addr)
{
    struct up_listen_addr a[UP_LISTEN_MAX_ADDRS];
    char err[256];
    int n = up_listen_parse(addr, a, UP_LISTEN_MAX_ADDRS, err, sizeof(err));
    if (n < 0) {
        up_log(UP_LOG_ERR, "listen: %s", err);
        return -EINVAL;
    }
    if (s->nlisteners + n > MAX_LISTENERS) {
        up_log(UP_LOG_ERR, "listen: %s: more than %d listening sockets in all", addr,
               MAX_LISTENERS);
        return -ENOSPC;
    }
    int fds[UP_LISTEN_MAX_ADDRS]; /* on a[i]; -1: not open */
    int opened = 0;
    int r = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = -1;
    }
    for (int i = 0; i < n && r == 0; i++) {
        r = open_listener(s, &a[i], n > 1, &fds[i]);
        if (r == -EADDRNOTAVAIL && n > 1) {
            /* One of a name's addresses this host does not have (::1
             * where IPv6 is off, as in many containers): the others
             * serve; if none can, the start fails below. */
            up_log(UP_LOG_WARN, "%s is not an address of this host (%s): left out", a[i].text,
                   strerror(-r));
            r = 0;
        } else if (r == 0) {
            opened++;
        }
    }
    if (r == 0 && opened == 0) {
        up_log(UP_LOG_ERR, "cannot listen on %s: none of its addresses is this host's", addr);
        r = -EADDRNOTAVAIL;
    }
    for (int i = 0; i < n; i++) {
        if (fds[i] >= 0 && r < 0) {
            up_close(fds[i]);
        } else if (fds[i] >= 0) {
            /* Cannot fail: the room was checked above. */
            (void)add_listener(s, fds[i], a[i].text, a[i].ss.ss_family == AF_UNIX);
        }
    }
    return r;
}

int up_server_listen_fd(struct up_server *s, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int listening = 0;
    socklen_t ilen = sizeof(listening);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) < 0 || !listening) {
        up_close(fd);
        return -ENOTSOCK;
    }
    (void)up_fd_set_nonblock(fd, 1);
    char text[32];
    snprintf(text, sizeof(text), "fd %d", fd);
    return add_listener(s, fd, text, ss.ss_family == AF_UNIX);
}

/* ---- what the pending connections report ---- */

static void on_pending_ready(struct up_pendings *set, struct up_pending *c,
                             const struct up_head *head)
{
    struct up_server *s = set->ctx;
    up_router_ready(&s->router, c, head);
}

static void on_pending_freed(struct up_pendings *set)
{
    struct up_server *s = set->ctx;
    room_again(s);
    maybe_finished(s);
    check_done(s);
}

static const struct up_pending_cbs pending_cbs = {
    .ready = on_pending_ready,
    .freed = on_pending_freed,
};

/* ---- how the router reaches the workers ---- */

static void *route_pick(void *ctx, const struct up_pending *c)
{
    struct up_server *s = ctx;
    struct up_mworker *w = NULL;
    if (c->route_index >= 0) {
        w = up_gens_pick_index(&s->gens, (unsigned)c->route_index, c->avoid);
    } else if (c->keyed) {
        w = up_gens_pick_key(&s->gens, c->key, c->avoid);
    }
    /* The worker asked for cannot take it now: routing never waits for one
     * worker while another can. */
    return w != NULL ? w : up_gens_pick(&s->gens, c->avoid);
}

static void route_send(void *ctx, void *worker, struct up_pending *c)
{
    (void)ctx;
    up_mworker_send_conn(worker, c);
}

static bool route_any(void *ctx)
{
    struct up_server *s = ctx;
    return up_gens_pick(&s->gens, 0) != NULL;
}

static bool route_expected(void *ctx)
{
    struct up_server *s = ctx;
    return up_gens_expected(&s->gens);
}

static const struct up_router_cbs router_cbs = {
    .pick = route_pick,
    .send = route_send,
    .any = route_any,
    .expected = route_expected,
};

/* ---- what the generations report ---- */

/* Answer every `up-run reload` waiting for generation gen or an older
 * one (a newer reload supersedes the one asked for: the latest code is
 * what it gets). text NULL: the outcome of g, else text. */
static void answer_waiters(struct up_server *s, unsigned gen, const char *text)
{
    for (int i = 0; i < s->nwaiters;) {
        if (s->waiters[i].gen > gen) {
            i++;
            continue;
        }
        /* -ENOENT: it gave up waiting; nothing to tell. */
        (void)up_ctl_reply(s->ctl, s->waiters[i].id, text);
        s->waiters[i] = s->waiters[--s->nwaiters];
    }
}

/* What a waiting `up-run reload` prints. */
static void outcome_text(struct up_server *s, const struct up_gen *g, bool ok, char *buf,
                         size_t cap)
{
    struct up_strbuf out = up_strbuf_on(buf, cap);
    uint64_t ms = up_loop_now(s->loop) - s->reload_at;
    if (g->heir) {
        if (ok) {
            up_strbuf_printf(&out, "upgraded: master pid=%d serving (took over in %llu ms)\n",
                             (int)s->heir_pid, (unsigned long long)ms);
            return;
        }
        up_strbuf_printf(&out, "error: upgrade failed: %s\n", g->fail_reason);
    } else if (ok) {
        unsigned draining = up_gens_count_workers(&s->gens) - g->nworkers;
        up_strbuf_printf(&out, "generation %u serving (ready in %llu ms; %u worker%s draining)\n",
                         g->id, (unsigned long long)ms, draining, draining == 1 ? "" : "s");
        return;
    } else {
        up_strbuf_printf(&out, "error: reload failed: generation %u: %s\n", g->id, g->fail_reason);
    }
    size_t len = 0;
    const char *tail = up_gen_tail(g, &len);
    if (len > 0) {
        up_strbuf_printf(&out, "its last output:\n%.*s%s", (int)len, tail,
                         tail[len - 1] == '\n' ? "" : "\n");
    }
    up_strbuf_printf(&out, "%sgeneration %u keeps serving\n", g->heir ? "this master and its " : "",
                     s->gens.active != NULL ? s->gens.active->id : 0);
}

static void reload_outcome(struct up_server *s, const struct up_gen *g, bool ok)
{
    if (g->heir) {
        if (s->nwaiters > 0) {
            char text[4096];
            outcome_text(s, g, ok, text, sizeof(text));
            answer_waiters(s, g->id, text);
        }
        return;
    }
    if (ok && g->id >= s->reload_gen) {
        up_hist_observe(&s->reload_hist, (double)(up_hist_now_us() - s->reload_us) / 1e6);
    }
    if (s->nwaiters > 0) {
        char text[4096];
        outcome_text(s, g, ok, text, sizeof(text));
        answer_waiters(s, g->id, text);
    }
    unsigned gen = g->id;
    const char *why = ok ? NULL : g->fail_reason;
    if (s->opts.on_reload == NULL || gen < s->reload_gen) {
        return;
    }
    struct up_reload_outcome o = {
        .generation = gen,
        .ok = ok,
        .why = why,
        .ms = up_loop_now(s->loop) - s->reload_at,
    };
    s->opts.on_reload(s->opts.ctx, &o);
}

/* Upgrade, the old master: the heir serves. Everything new goes to it
 * from now on: it accepts on the listeners, answers the control socket
 * and the metrics; we route what we still hold to it and exit once our
 * own workers are gone (check_done). systemd follows the new main pid. */
static void hand_over(struct up_server *s, struct up_gen *g)
{
    struct up_mworker *w = up_gens_heir(&s->gens);
    s->heir_pid = w != NULL ? w->pid : 0;
    s->handed_over = true;
    for (int i = 0; i < s->nlisteners; i++) {
        up_acceptor_pause(&s->listeners[i].acceptor);
    }
    if (s->ctl != NULL) {
        up_ctl_hand_over(s->ctl, true);
    }
    if (s->metrics != NULL) {
        up_metrics_accepting(s->metrics, false);
    }
    if (s->watch != NULL) {
        up_watch_stop(s->watch);
    }
    char status[128];
    snprintf(status, sizeof(status), "MAINPID=%d\nREADY=1\nSTATUS=handed over to pid %d",
             (int)s->heir_pid, (int)s->heir_pid);
    up_notify(status);
    up_log(UP_LOG_INFO, "upgrade: the new master pid=%d serves; passing on what is left here",
           (int)s->heir_pid);
    reload_outcome(s, g, true);
    up_router_kick(&s->router);
    check_done(s);
}

/* Upgrade, the new master: our first generation serves, so we take over:
 * the sockets the old master passed, the pidfile, our stderr, and then
 * READY to it (after which it stops accepting). */
static void take_over(struct up_server *s)
{
    const struct up_server_opts *o = &s->opts;
    s->took_over = true;
    if (s->heir_in.stderr_fd >= 0) {
        (void)dup2(s->heir_in.stderr_fd, STDERR_FILENO);
        s->heir_in.stderr_fd = up_close(s->heir_in.stderr_fd);
        up_log_stderr_changed();
    }
    if (s->heir_in.control >= 0 && o->control != NULL &&
        up_ctl_open_fd(s->loop, o->control, s->heir_in.control, &ctl_cbs, s, &s->ctl) < 0) {
        up_log(UP_LOG_ERR, "upgrade: cannot serve the control socket %s", o->control);
    }
    s->heir_in.control = -1;
    if (s->heir_in.metrics >= 0 &&
        up_metrics_open_fd(s->loop, s->heir_in.metrics, &metrics_cbs, s, &s->metrics) < 0) {
        up_log(UP_LOG_ERR, "upgrade: cannot serve the metrics");
    }
    s->heir_in.metrics = -1;
    pid_t old = getppid();
    if (o->pidfile != NULL) {
        pid_t owner = 0;
        s->pidfile_written = up_pidfile_take_over(o->pidfile, old, &owner) == 0;
    }
    for (int i = 0; i < s->nlisteners && o->kind != UP_WORKERS_EXEC; i++) {
        (void)up_acceptor_start(&s->listeners[i].acceptor);
    }
    int r = s->heir != NULL ? up_heir_ready(s->heir) : -EPIPE;
    up_log(UP_LOG_INFO, "upgrade: taking over from pid=%d%s%s", (int)old, r < 0 ? ": " : "",
           r < 0 ? strerror(-r) : "");
}

static void on_gen_active(struct up_gens *gs, struct up_gen *g, struct up_gen *old)
{
    (void)old;
    struct up_server *s = gs->ctx;
    if (g->heir) {
        hand_over(s, g);
        return;
    }
    if (s->is_heir && !s->took_over && s->state != SERVER_STOPPING) {
        take_over(s); /* not when stopped first: the old master keeps serving */
    }
    if (s->state == SERVER_STARTING) {
        s->state = SERVER_RUNNING;
    }
    s->last_error[0] = '\0';
    up_router_error_page(&s->router, NULL);
    if (s->state != SERVER_STOPPING) { /* else it serves what a stop accepted */
        char status[96];
        snprintf(status, sizeof(status), "READY=1\nSTATUS=generation %u serving", g->id);
        up_notify(status);
    }
    check_health(s);
    reload_outcome(s, g, true);
    up_router_kick(&s->router);
}

static void on_gen_failed(struct up_gens *gs, struct up_gen *g)
{
    struct up_server *s = gs->ctx;
    if (g->heir) {
        snprintf(s->upgrade_error, sizeof(s->upgrade_error), "%.590s", g->fail_reason);
        up_log(UP_LOG_ERR, "upgrade failed: %.900s; this master keeps serving", g->fail_reason);
        char status[512];
        snprintf(status, sizeof(status), "STATUS=upgrade failed: %.300s", g->fail_reason);
        up_notify(status);
        reload_outcome(s, g, false);
        return;
    }
    snprintf(s->last_error, sizeof(s->last_error), "generation %u failed to start: %.900s", g->id,
             g->fail_reason);
    if (gs->active != NULL) {
        /* systemd waits for READY=1 after RELOADING=1, failed or not. */
        char status[512];
        snprintf(status, sizeof(status),
                 "READY=1\nSTATUS=reload failed: generation %u: %.300s; generation %u keeps "
                 "serving",
                 g->id, g->fail_reason, gs->active->id);
        up_notify(status);
    }
    reload_outcome(s, g, false);
}

static void on_gen_none(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    if (s->state == SERVER_STOPPING) {
        /* What a stop's first step kept for a starting generation: it
         * will not come. */
        if (s->finishing) {
            finish_stop(s);
        }
        return;
    }
    if (s->watch != NULL) {
        up_log(UP_LOG_ERR, "no generation is serving; answering 503 until a change fixes it");
        up_router_error_page(&s->router, s->last_error);
        return;
    }
    if (s->state == SERVER_STARTING) {
        up_log(UP_LOG_ERR, "the app could not start; exiting");
        s->exit_code = 3;
        server_stop(s, false);
    }
}

static void on_gen_requeue(struct up_gens *gs, struct up_pending *c)
{
    struct up_server *s = gs->ctx;
    up_router_requeue(&s->router, c);
}

static void on_gen_handed_back(struct up_gens *gs, int fd, const char *data, size_t len,
                               unsigned tries, pid_t from)
{
    struct up_server *s = gs->ctx;
    up_pending_handed_back_take(&s->pendings, fd, data, len, tries, from);
}

static void on_gen_routable(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    up_router_kick(&s->router);
}

static bool on_gen_room(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    return !up_pendings_full(&s->pendings);
}

static void on_gen_lost(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    s->lost++;
}

static void on_gen_changed(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    check_health(s);
    check_done(s);
}

/* The heir died after it took over: serve again, with a new generation of
 * our own (the old ones drain on; the listeners never closed). */
static void on_gen_heir_lost(struct up_gens *gs, pid_t pid)
{
    struct up_server *s = gs->ctx;
    s->handed_over = false;
    if (s->state == SERVER_STOPPING) {
        return;
    }
    up_log(UP_LOG_ERR, "upgrade: the new master pid=%d died; this master (pid=%d) serves again",
           (int)pid, (int)getpid());
    char status[96];
    snprintf(status, sizeof(status), "MAINPID=%d\nSTATUS=the new master died; serving again",
             (int)getpid());
    up_notify(status);
    for (int i = 0; i < s->nlisteners && s->opts.kind != UP_WORKERS_EXEC; i++) {
        up_acceptor_resume(&s->listeners[i].acceptor);
    }
    if (s->ctl != NULL) {
        up_ctl_hand_over(s->ctl, false);
    }
    if (s->metrics != NULL) {
        up_metrics_accepting(s->metrics, true);
    }
    (void)server_reload(s, "the new master died");
}

/* Stopping, or a stop signal waiting in the signalfd: one sent to our
 * whole process group or cgroup (Ctrl-C, systemd's default KillMode)
 * reaches the workers too, and a worker's DRAINING may come before we
 * read ours. */
static bool on_gen_stop_coming(struct up_gens *gs)
{
    struct up_server *s = gs->ctx;
    sigset_t pending;
    return s->state == SERVER_STOPPING ||
           (s->opts.signals && sigpending(&pending) == 0 &&
            (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1 ||
             sigismember(&pending, SIGQUIT) == 1));
}

static const struct up_gens_cbs gens_cbs = {
    .active = on_gen_active,
    .failed = on_gen_failed,
    .none = on_gen_none,
    .requeue = on_gen_requeue,
    .handed_back = on_gen_handed_back,
    .routable = on_gen_routable,
    .room = on_gen_room,
    .lost = on_gen_lost,
    .changed = on_gen_changed,
    .heir_lost = on_gen_heir_lost,
    .stop_coming = on_gen_stop_coming,
};

/* ---- reload and stop ---- */

/* Returns 0 (started, or waiting for room), or -errno when no generation
 * could even be made (its failure was reported if it was). */
static int server_reload(struct up_server *s, const char *why)
{
    if (s->state == SERVER_STOPPING) {
        up_log(UP_LOG_INFO, "%s: ignoring reload, stopping", why);
        return -ECANCELED;
    }
    up_notify_reloading();
    s->reload_gen = s->gens.next_id + 1;
    s->reload_at = up_loop_now(s->loop);
    s->reload_us = up_hist_now_us();
    int r = up_gens_reload(&s->gens, why);
    if (r < 0 && r != -ECANCELED && s->gens.active != NULL) {
        up_notify("READY=1\nSTATUS=reload failed; the running generation keeps serving");
    }
    return r < 0 ? r : 0;
}

static void on_stop_deadline(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_server *s = up_container_of(t, struct up_server, stop_timer);
    up_log(UP_LOG_WARN, "stop deadline passed with %u workers left: killing them",
           up_gens_count_workers(&s->gens));
    up_gens_kill_all(&s->gens, SIGKILL);
}

static void server_stop(struct up_server *s, bool graceful)
{
    if (s->handed_over) {
        /* A new master serves; stopping here would stop it too. */
        up_log(UP_LOG_INFO, "handed over to pid=%d: not stopping it, finishing the hand-over",
               (int)s->heir_pid);
        return;
    }
    if (!graceful && s->stopping_now) {
        return; /* under way: a second one would only put off its deadline */
    }
    bool first = s->state != SERVER_STOPPING;
    s->state = SERVER_STOPPING;
    if (first) {
        up_notify("STOPPING=1");
        answer_waiters(s, UINT_MAX, "error: stopping before the reload ended\n");
    }
    for (int i = 0; i < s->nlisteners; i++) {
        up_acceptor_stop(&s->listeners[i].acceptor);
    }
    up_timer_stop(s->loop, &s->shed_timer);
    if (s->watch != NULL) {
        up_watch_stop(s->watch);
    }
    if (!graceful) {
        s->stopping_now = true;
        s->finishing = false;
        up_timer_stop(s->loop, &s->finish_timer);
        up_gens_stop(&s->gens, false);
        up_timer_start(s->loop, &s->stop_timer, STOP_GRACE_MS);
        stop_routing(s);
    } else if (first) {
        /* What the listeners gave us was accepted: a client that connected
         * just before the stop gets its answer from a worker that still
         * serves, not a 503 or a close (with a socket systemd holds, the
         * next master takes only what we left in the backlog). Idle
         * connections handed back are simply closed. */
        s->finishing = true;
        up_pendings_close_peeking(&s->pendings, true);
        /* A stop right after a start (a restart in a hurry): what we
         * accepted waits for the first generation rather than get a 503 a
         * moment before an answer. Bounded by its --ready-timeout (a
         * failure ends the wait: on_gen_none()) and by --timeout, which
         * operators keep inside their runtime's grace before SIGKILL: a
         * 503 then is better than a reset. */
        uint64_t drain = s->opts.drain_timeout_ms;
        bool for_start =
            s->gens.active == NULL && up_gens_expected(&s->gens) && drain > STOP_FINISH_MS;
        s->finish_ms = for_start ? drain : STOP_FINISH_MS;
        up_timer_start(s->loop, &s->finish_timer, s->finish_ms);
        maybe_finished(s);
        if (s->finishing && for_start) {
            up_log(UP_LOG_INFO,
                   "stopping: %zu accepted connections wait for the starting generation (at "
                   "most --ready-timeout and --timeout)",
                   up_pendings_owed(&s->pendings));
        }
    }
    check_done(s);
}

/* No routing any more: what waits for a worker gets 503, what is still
 * peeking is closed. */
static void stop_routing(struct up_server *s)
{
    up_router_stop(&s->router);
    up_pendings_close_peeking(&s->pendings, false);
    unlisten(s);
}

/* Stopping and no accept in flight: the listeners go at once, not at the
 * exit after the drain, nor after the first step, which may wait for a
 * starting generation: what is accepted is ours to route without them. A
 * client that connects during the stop is then refused (a load balancer
 * tries another server) instead of waiting in a queue nobody serves, to be
 * reset when we exit. A socket systemd passed stays open in systemd, and
 * what arrives waits in its queue for the next master. A worker that
 * starts in the first step needs no listener: with --exec, where servers
 * accept for themselves, nothing is accepted, so the first step ends at
 * once and up_gens_stop() comes before the close. */
static void unlisten(struct up_server *s)
{
    if (s->state != SERVER_STOPPING || !listeners_quiet(s)) {
        return;
    }
    for (int i = 0; i < s->nlisteners; i++) {
        s->listeners[i].fd = up_close(s->listeners[i].fd);
    }
}

/* A graceful stop's second step, once the workers took what we accepted
 * (or at the bound): drain every worker. */
static void finish_stop(struct up_server *s)
{
    s->finishing = false;
    up_timer_stop(s->loop, &s->finish_timer);
    up_gens_stop(&s->gens, true);
    up_timer_start(s->loop, &s->stop_timer, s->opts.drain_timeout_ms + STOP_GRACE_MS);
    stop_routing(s);
    check_done(s);
}

/* The first step is over when no accept can bring a connection any more
 * (a multishot accept goes on until the kernel sees its cancel, so the
 * stop's own turn may not be the last to get one) and the workers took
 * all that came: routing then stops, and a connection accepted after that
 * would get a 503. */
static void maybe_finished(struct up_server *s)
{
    if (s->finishing && listeners_quiet(s) && up_pendings_owed(&s->pendings) == 0) {
        finish_stop(s);
    }
}

static void on_finish_deadline(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_server *s = up_container_of(t, struct up_server, finish_timer);
    if (s->finishing) {
        up_log(UP_LOG_INFO, "stopping: %zu accepted connections not taken by a worker in %llu ms",
               up_pendings_owed(&s->pendings), (unsigned long long)s->finish_ms);
        finish_stop(s);
    }
}

/* Handed over, and nothing of ours left: no worker but the heir, no
 * connection not yet taken by it, no accept that could still bring one
 * (its end calls check_done() through on_accept_paused()). */
static bool retired(struct up_server *s)
{
    struct up_mworker *w = up_gens_heir(&s->gens);
    return s->handed_over && s->state != SERVER_STOPPING && w != NULL &&
           up_gens_count_workers(&s->gens) == 1 && s->pendings.n == 0 && w->nqueued == 0 &&
           listeners_quiet(s);
}

static void check_done(struct up_server *s)
{
    if (retired(s)) {
        up_log(UP_LOG_INFO, "upgrade: everything handed over to pid=%d; exiting", (int)s->heir_pid);
        s->state = SERVER_STOPPING;
        up_router_stop(&s->router);
        up_gens_let_go(&s->gens);
    }
    if (s->state == SERVER_STOPPING && up_gens_empty(&s->gens) && s->pendings.n == 0) {
        up_loop_stop(s->loop);
    }
}

/* Wake-ups from up_server_reload/stop, from any thread. */
static void on_wake(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_server *s = up_container_of(op, struct up_server, wake_op);
    if (op->canceling) {
        return; /* up_server_free(): as on_signal() */
    }
    if (__atomic_exchange_n(&s->want_stop, 0, __ATOMIC_ACQ_REL) != 0) {
        server_stop(s, __atomic_load_n(&s->want_stop_graceful, __ATOMIC_ACQUIRE) != 0);
    }
    if (__atomic_exchange_n(&s->want_reload, 0, __ATOMIC_ACQ_REL) != 0) {
        server_reload(s, "reload requested");
    }
    if (res >= 0 && s->wake_fd >= 0) {
        (void)up_loop_read(loop, &s->wake_op, s->wake_fd, &s->wake_buf, sizeof(s->wake_buf));
    }
}

static void wake(struct up_server *s)
{
    uint64_t one = 1;
    ssize_t w = write(s->wake_fd, &one, sizeof(one)); /* async-signal-safe */
    (void)w;
}

void up_server_reload(struct up_server *s)
{
    __atomic_store_n(&s->want_reload, 1, __ATOMIC_RELEASE);
    wake(s);
}

void up_server_stop(struct up_server *s, bool graceful)
{
    __atomic_store_n(&s->want_stop_graceful, graceful, __ATOMIC_RELEASE);
    __atomic_store_n(&s->want_stop, 1, __ATOMIC_RELEASE);
    wake(s);
}

/* ---- signals: read from a signalfd on the loop, never handled inline ---- */

static void reap(struct up_server *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (!up_gens_reaped(&s->gens, pid, status) && s->watch != NULL) {
            up_watch_child_exited(s->watch, pid, status);
        }
    }
}

static void on_signal(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct up_server *s = up_container_of(op, struct up_server, sig_op);
    if (op->canceling) {
        /* up_server_free()'s last drain: a signal read now (one sent while
         * a failed start waited for its port) would start or stop what is
         * being torn down. It dies with us, as any still blocked does. */
        return;
    }
    if (res == (int)sizeof(struct signalfd_siginfo)) {
        struct signalfd_siginfo si;
        memcpy(&si, s->sig_buf, sizeof(si));
        switch (si.ssi_signo) {
        case SIGCHLD:
            reap(s);
            break;
        case SIGUSR2:
        case SIGHUP:
            server_reload(s, si.ssi_signo == SIGUSR2 ? "SIGUSR2" : "SIGHUP");
            break;
        case SIGINT:
            if (s->state == SERVER_STOPPING && !s->stopping_now) {
                /* Ctrl-C again, for one who will not wait for the drain. */
                up_log(UP_LOG_INFO, "SIGINT again: stopping now");
                server_stop(s, false);
                break;
            }
            up_log(UP_LOG_INFO, "SIGINT: stopping gracefully (again to stop now)");
            server_stop(s, true);
            break;
        case SIGTERM:
            up_log(UP_LOG_INFO, "SIGTERM: stopping gracefully");
            server_stop(s, true);
            break;
        case SIGQUIT:
            up_log(UP_LOG_INFO, "SIGQUIT: stopping now");
            server_stop(s, false);
            break;
        case SIGUSR1:
            up_log(UP_LOG_INFO, "SIGUSR1: workers reopen their log files");
            up_gens_reopen(&s->gens);
            break;
        default:
            break;
        }
    }
    if (s->sigfd >= 0) {
        (void)up_loop_read(loop, &s->sig_op, s->sigfd, s->sig_buf, sizeof(struct signalfd_siginfo));
    }
}

static int setup_signals(struct up_server *s)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (s->opts.signals) {
        int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGTERM, SIGINT, SIGQUIT};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
            sigaddset(&set, sigs[i]);
        }
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
        return -errno;
    }
    /* Left ignored by the parent, SIGCHLD would have the kernel reap our
     * workers itself: a dead one would never be seen, nor replaced. */
    up_sig_unignore_chld();
    /* A worker or client gone away is an EPIPE to handle, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    s->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->sigfd < 0) {
        return -errno;
    }
    s->sig_op.cb = on_signal;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        return -errno;
    }
    s->wake_op.cb = on_wake;
    int r =
        up_loop_read(s->loop, &s->sig_op, s->sigfd, s->sig_buf, sizeof(struct signalfd_siginfo));
    if (r == 0) {
        r = up_loop_read(s->loop, &s->wake_op, s->wake_fd, &s->wake_buf, sizeof(s->wake_buf));
    }
    return r;
}

/* ---- health and status ---- */

static const char *health(const struct up_server *s)
{
    switch (s->state) {
    case SERVER_NEW:
    case SERVER_STARTING:
        return "starting";
    case SERVER_STOPPING:
        return "stopping";
    case SERVER_RUNNING:
        break;
    }
    if (s->gens.active == NULL) {
        return "no generation serving";
    }
    struct up_gens_counts n;
    up_gens_counts(&s->gens, &n);
    if (n.ready == 0) {
        return "no ready worker";
    }
    if (n.with_fds == 0) {
        return "every worker is out of fds";
    }
    return NULL;
}

/* Something health depends on changed: log a change of health once. */
static void check_health(struct up_server *s)
{
    const char *h = health(s);
    if (h == s->health) {
        return;
    }
    if (s->state == SERVER_RUNNING && h != NULL) {
        up_log(UP_LOG_WARN,
               "degraded: %s; new connections wait for one (at most --queue-timeout, then 503)", h);
    } else if (s->state == SERVER_RUNNING && s->health != NULL && s->gens.active != NULL) {
        up_log(UP_LOG_INFO, "healthy again: generation %u has a ready worker", s->gens.active->id);
    }
    s->health = h;
}

/* The state as the report shows it. */
static void report_of(const struct up_server *s, struct up_report *r)
{
    static const char *const states[] = {"starting", "starting", "running", "stopping"};
    const struct up_pending_stats *p = &s->pendings.stats;
    const struct up_router_stats *rs = &s->router.stats;
    const struct up_gens_stats *g = &s->gens.stats;
    *r = (struct up_report){
        .pid = (int)getpid(),
        .state = states[s->state],
        .backend = up_loop_backend_name(s->loop),
        .health = health(s),
        .gens = &s->gens,
        .pending = s->pendings.n,
        .pending_cap = s->pendings.max_pending,
        .nofile = s->nofile,
        .accepted = p->accepted,
        .handed = p->handed,
        .rerouted = rs->rerouted,
        .handed_back = p->handed_back,
        .answered = p->answered,
        .reloads = g->reloads,
        .reload_failures = g->reload_fails + s->build_fails,
        .respawns = g->respawns,
        .queue_timeouts = rs->queue_timeouts,
        .shed = p->shed,
        .lost = s->lost,
        .log_dropped = up_log_lines_dropped(),
        .last_error = s->last_error,
    };
    uint64_t lines, dropped;
    up_gens_alog_totals(&s->gens, &lines, &dropped);
    r->alog_lines = lines;
    r->alog_dropped = dropped;
}

size_t up_server_status(struct up_server *s, char *buf, size_t cap)
{
    struct up_report r;
    report_of(s, &r);
    return up_report_text(&r, buf, cap);
}

/* ---- what the control socket, metrics and watcher ask ---- */

static size_t ctl_reload(void *ctx, uint64_t id, bool wait, char *buf, size_t cap)
{
    struct up_server *s = ctx;
    int n;
    if (s->state == SERVER_STOPPING) {
        n = snprintf(buf, cap, "error: stopping, not reloading\n");
    } else if (wait && s->nwaiters < MAX_WAITERS) {
        /* Before the reload: a reload that fails at once reports at once. */
        unsigned gen = s->gens.next_id + 1;
        s->waiters[s->nwaiters++] = (struct waiter){.id = id, .gen = gen};
        int r = server_reload(s, "control socket");
        if (r < 0) {
            /* Failed at once (the app or the command could not even be
             * prepared): its outcome came while this request was still
             * being answered, too early for a reply to reach it. It is
             * answered now, here. */
            for (int i = 0; i < s->nwaiters; i++) {
                if (s->waiters[i].id == id) {
                    s->waiters[i--] = s->waiters[--s->nwaiters];
                }
            }
            n = s->last_error[0] != '\0' && s->gens.next_id >= gen
                    ? snprintf(buf, cap, "error: reload failed: %s\ngeneration %u keeps serving\n",
                               s->last_error, s->gens.active != NULL ? s->gens.active->id : 0)
                    : snprintf(buf, cap, "error: reload failed: %s\n", strerror(-r));
            return n > 0 ? (size_t)n : 0;
        }
        return UP_CTL_LATER;
    } else {
        server_reload(s, "control socket");
        n = snprintf(buf, cap, "reloading: generation %u starting\n", s->gens.next_id);
    }
    return n > 0 ? (size_t)n : 0;
}

static size_t ctl_status(void *ctx, bool json, char *buf, size_t cap)
{
    struct up_server *s = ctx;
    struct up_report r;
    report_of(s, &r);
    return json ? up_report_json(&r, buf, cap) : up_report_text(&r, buf, cap);
}

static size_t ctl_stop(void *ctx, char *buf, size_t cap)
{
    server_stop(ctx, true);
    int n = snprintf(buf, cap, "stopping\n");
    return n > 0 ? (size_t)n : 0;
}

/* The heir's parameters: the program and its arguments, the sockets it
 * takes over (listeners, control, metrics, our stderr), our NOTIFY_SOCKET. */
static int heir_params(struct up_server *s)
{
    struct up_strbuf names = up_strbuf_on(s->heir_names, sizeof(s->heir_names));
    int n = 0;
    for (int i = 0; i < s->nlisteners && n < UP_KIND_MAX_HEIR_FDS; i++) {
        s->heir_fds[n++] = s->listeners[i].fd;
        up_strbuf_printf(&names, "%slisten", n > 1 ? "," : "");
    }
    int extra[3] = {s->ctl != NULL ? up_ctl_fd(s->ctl) : -1,
                    s->metrics != NULL ? up_metrics_fd(s->metrics) : -1, STDERR_FILENO};
    static const char *const extra_names[3] = {"control", "metrics", "stderr"};
    for (int i = 0; i < 3; i++) {
        if (extra[i] >= 0 && n < UP_KIND_MAX_HEIR_FDS) {
            s->heir_fds[n++] = extra[i];
            up_strbuf_printf(&names, "%s%s", n > 1 ? "," : "", extra_names[i]);
        }
    }
    if (n + 4 > UP_CHILD_MAX_FDS) {
        return -E2BIG;
    }
    int argc = 0;
    while (s->opts.upgrade_argv[argc] != NULL) {
        argc++;
    }
    s->heir_spawn = (struct up_kind_params){
        .kind = UP_KIND_HEIR,
        .bin = s->opts.upgrade_argv[0],
        .app = s->opts.upgrade_argv[0],
        .app_argv = s->opts.upgrade_argv + 1,
        .app_argc = argc - 1,
        .listen_fds = s->heir_fds,
        .nlisten = n,
        .heir_names = s->heir_names,
        .notify_path = getenv("NOTIFY_SOCKET"),
        .max_head = s->opts.max_head,
        .title = s->opts.title,
    };
    return 0;
}

static size_t ctl_upgrade(void *ctx, uint64_t id, char *buf, size_t cap)
{
    struct up_server *s = ctx;
    const char *no =
        s->state == SERVER_STOPPING    ? "stopping"
        : s->opts.upgrade_argv == NULL ? "this master was started without a program to upgrade to"
        /* The kernel ends every process of a pid namespace when its init
         * exits: the new master with the old one. */
        : getpid() == 1 ? "this master is pid 1 (a container's init): its exit would end the new "
                          "master too; restart the container instead"
        : s->is_heir && s->heir != NULL && !s->took_over   ? "still starting"
        : s->handed_over || up_gens_heir(&s->gens) != NULL ? "an upgrade is under way already"
        : s->nwaiters == MAX_WAITERS                       ? "too many commands waiting"
                                                           : NULL;
    int n;
    if (no == NULL && heir_params(s) < 0) {
        no = "too many sockets to pass on";
    }
    if (no != NULL) {
        n = snprintf(buf, cap, "error: upgrade refused: %s\n", no);
        return n > 0 ? (size_t)n : 0;
    }
    unsigned gen = s->gens.next_id + 1;
    s->waiters[s->nwaiters++] = (struct waiter){.id = id, .gen = gen};
    s->reload_at = up_loop_now(s->loop);
    s->upgrade_error[0] = '\0';
    up_log(UP_LOG_INFO, "upgrade: starting %s", s->opts.upgrade_argv[0]);
    int r = up_gens_upgrade(&s->gens, &s->heir_spawn);
    if (r < 0) {
        /* Failed at once: answered here, as for a reload (ctl_reload). */
        for (int i = 0; i < s->nwaiters; i++) {
            if (s->waiters[i].id == id) {
                s->waiters[i--] = s->waiters[--s->nwaiters];
            }
        }
        n = snprintf(buf, cap, "error: upgrade failed: %s\nthis master keeps serving\n",
                     s->upgrade_error[0] != '\0' ? s->upgrade_error : strerror(-r));
        return n > 0 ? (size_t)n : 0;
    }
    return UP_CTL_LATER;
}

static const struct up_ctl_cbs ctl_cbs = {
    .reload = ctl_reload,
    .status = ctl_status,
    .stop = ctl_stop,
    .upgrade = ctl_upgrade,
};

static size_t metric_page(void *ctx, char *buf, size_t cap)
{
    const struct up_server *s = ctx;
    struct up_report r;
    report_of(s, &r);
    up_gens_counts(&s->gens, &r.workers);
    unsigned total;
    up_gens_totals(&s->gens, &total, &r.held);
    r.reload = &s->reload_hist;
    r.handoff = &s->pendings.stats.handoff;
    struct up_procstat ps;
    up_procstat_self(&ps);
    r.open_fds = ps.open_fds;
    r.max_fds = ps.max_fds;
    r.rss_bytes = ps.rss_bytes;
    r.cpu_seconds = ps.cpu_seconds;
    r.start_seconds = ps.start_seconds;
    return up_report_metrics(&r, buf, cap);
}

static const char *metric_health(void *ctx)
{
    return health(ctx);
}

static const struct up_metrics_cbs metrics_cbs = {
    .page = metric_page,
    .health = metric_health,
};

static void watch_reload(void *ctx, const char *why)
{
    server_reload(ctx, why);
}

static void watch_build_failed(void *ctx, const char *why)
{
    struct up_server *s = ctx;
    s->build_fails++;
    snprintf(s->last_error, sizeof(s->last_error), "%s", why);
}

static const struct up_watch_cbs watch_cbs = {
    .reload = watch_reload,
    .build_failed = watch_build_failed,
};

/* ---- what --exec workers say on the notify socket ---- */

static void notice_ignored(struct up_server *s, pid_t pid, const char *why)
{
    unsigned long long held = 0;
    if (up_ratelimit_ok(&s->notice_rl, up_loop_now(s->loop), &held)) {
        up_log(UP_LOG_WARN, "notify socket: a message from pid=%d ignored: %s%s", (int)pid, why,
               held > 0 ? " (and more not logged)" : "");
    }
}

static void on_notice(void *ctx, const struct up_notice *n)
{
    struct up_server *s = ctx;
    if (!up_gens_notice(&s->gens, n, s->opts.notify_access_all) && n->ready) {
        /* Only a READY=1 ignored matters: a worker may not be ready. */
        notice_ignored(s, n->pid,
                       s->opts.notify_access_all
                           ? "it is no worker, nor started by one"
                           : "it is no worker's main process (--notify-access=all accepts "
                             "what a worker started)");
    }
}

static void on_notice_dropped(void *ctx, pid_t pid, uid_t uid, const char *why)
{
    struct up_server *s = ctx;
    char text[96];
    snprintf(text, sizeof(text), "%s (uid %u)", why, (unsigned)uid);
    notice_ignored(s, pid, text);
}

static const struct up_notifyd_cbs notifyd_cbs = {
    .notice = on_notice,
    .dropped = on_notice_dropped,
};

/* ---- upgrade, the new master: what the old one says ---- */

static void heir_conn(void *ctx, int fd, const char *data, size_t len)
{
    struct up_server *s = ctx;
    /* As a connection our own draining worker handed back: its head is
     * checked again, then it is routed. */
    up_pending_handed_back_take(&s->pendings, fd, data, len, 0, 0);
}

static void heir_stop(void *ctx)
{
    server_stop(ctx, true);
}

static void heir_alone(void *ctx)
{
    struct up_server *s = ctx;
    if (!s->took_over) {
        /* The old master died before we took over: nobody accepts. */
        up_log(UP_LOG_WARN, "upgrade: the old master is gone before the hand-over: taking over");
        take_over(s);
    }
}

static const struct up_heir_cbs heir_cbs = {
    .conn = heir_conn,
    .stop = heir_stop,
    .alone = heir_alone,
};

/* ---- set-up and tear-down ---- */

static int make_snap_dir(struct up_server *s)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    if (base == NULL || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
    }
    if (base == NULL || access(base, W_OK) != 0) {
        base = "/tmp";
    }
    snprintf(s->snap_dir, sizeof(s->snap_dir), "%s/up-%d-XXXXXX", base, (int)getpid());
    if (mkdtemp(s->snap_dir) == NULL) {
        s->snap_dir[0] = '\0';
        return -errno;
    }
    return 0;
}

/* An error that says the file system has no room for a new file. */
static bool no_room(int r)
{
    return r == -ENOSPC || r == -EDQUOT || r == -EROFS;
}

/* What workers start as: up-worker (opts.worker_bin, else $UP_WORKER_BIN)
 * or, for a command, up-exec (opts.exec_bin, else $UP_EXEC_BIN); else the
 * one beside this program. */
static int worker_bin_path(struct up_server *s)
{
    bool app = s->opts.kind == UP_WORKERS_APP;
    const char *opt = app ? s->opts.worker_bin : s->opts.exec_bin;
    const char *env = getenv(app ? "UP_WORKER_BIN" : "UP_EXEC_BIN");
    if (opt != NULL || (env != NULL && env[0] != '\0')) {
        snprintf(s->worker_bin, sizeof(s->worker_bin), "%s", opt != NULL ? opt : env);
        return 0;
    }
    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0) {
        return -errno;
    }
    exe[n] = '\0';
    snprintf(s->worker_bin, sizeof(s->worker_bin), "%s/%s", dirname(exe),
             app ? "up-worker" : "up-exec");
    return 0;
}

/* The worker program, found: checked once here, so that a missing one is
 * one clear error at start rather than every spawn failing. */
static int find_worker_bin(struct up_server *s)
{
    bool app = s->opts.kind == UP_WORKERS_APP;
    const char *name = app ? "up-worker" : "up-exec";
    int r = worker_bin_path(s);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot find %s: %s", name, strerror(-r));
        return r;
    }
    if (access(s->worker_bin, X_OK) < 0) {
        r = -errno;
        up_log(UP_LOG_ERR,
               "%s %s: %s; install it beside this program, or name it with %s (or the %s "
               "option)",
               name, s->worker_bin, strerror(-r), app ? "UP_WORKER_BIN" : "UP_EXEC_BIN",
               app ? "worker_bin" : "exec_bin");
        return r;
    }
    if (app) {
        return 0;
    }
    /* The command, found once here: a typo is one clear error at start. A
     * reload checks again that it may still be run (kind.h). */
    r = up_kind_find_command(s->opts.exec_argv[0], s->command, sizeof(s->command));
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot run %s: %s", s->opts.exec_argv[0],
               r == -ENOENT && strchr(s->opts.exec_argv[0], '/') == NULL ? "not found in $PATH"
                                                                         : strerror(-r));
    }
    return r;
}

/* Write the pidfile, and remember that this master did: only the master
 * that wrote it removes it. */
static int write_pidfile(struct up_server *s)
{
    pid_t owner = 0;
    int r = up_pidfile_write(s->opts.pidfile, &owner);
    if (r == -EBUSY) {
        up_log(UP_LOG_ERR,
               "pidfile %s names pid=%d, an up-run master that is running: stop it first or "
               "use another --pidfile",
               s->opts.pidfile, (int)owner);
    } else if (r < 0) {
        up_log(UP_LOG_ERR, "cannot write pidfile %s: %s", s->opts.pidfile, strerror(-r));
    }
    s->pidfile_written = r == 0;
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
 * per worker process the budget allows (channel, stderr pipe), one per
 * generation that may live at once (its app's snapshot: draining, active
 * and starting ones), a margin, and one per pending connection. Accepting
 * then pauses before accept() or a hand-back could fail for lack of fds. */
static size_t size_pending(struct up_server *s, unsigned long long raised_from)
{
    long fixed = count_fds();
    long long workers = 2LL * (s->opts.max_draining + 1) * s->opts.workers;
    long long snapshots = s->opts.max_draining + 2;
    long long room =
        (long long)s->nofile - (fixed > 0 ? fixed : 32) - workers - snapshots - FD_MARGIN;
    size_t max = room > MAX_PENDING ? MAX_PENDING : room < MIN_PENDING ? MIN_PENDING : (size_t)room;
    char from[64] = "";
    if (raised_from != s->nofile) {
        snprintf(from, sizeof(from), " (raised from %llu)", raised_from);
    }
    up_log(UP_LOG_INFO, "fd limit %llu%s: up to %zu connections wait for a worker", s->nofile, from,
           max);
    if (room < MIN_PENDING) {
        up_log(UP_LOG_WARN,
               "fd limit %llu is too low for %ld workers with --max-draining=%d; raise it "
               "(LimitNOFILE= in the unit, ulimit -n)",
               s->nofile, s->opts.workers, s->opts.max_draining);
    }
    return max;
}

/* A duration option: 0 is its default dflt, UP_SERVER_ZERO an explicit 0. */
static uint64_t opt_ms(uint64_t v, uint64_t dflt)
{
    return v == UP_SERVER_ZERO ? 0 : v > 0 ? v : dflt;
}

/* Copy every string of opts into one block the server owns. */
static int copy_opts(struct up_server *s, const struct up_server_opts *o)
{
    s->opts = *o;
    const char **strs[] = {&s->opts.app,       &s->opts.title,     &s->opts.worker_bin,
                           &s->opts.control,   &s->opts.metrics,   &s->opts.pidfile,
                           &s->opts.watch_dir, &s->opts.build_cmd, &s->opts.user,
                           &s->opts.exec_bin};
    int nexec = 0;
    while (o->exec_argv != NULL && o->exec_argv[nexec] != NULL) {
        nexec++;
    }
    size_t nstrs = sizeof(strs) / sizeof(strs[0]);
    size_t need = 0;
    for (size_t i = 0; i < nstrs; i++) {
        need += *strs[i] != NULL ? strlen(*strs[i]) + 1 : 0;
    }
    for (int i = 0; i < o->app_argc; i++) {
        need += strlen(o->app_argv[i]) + 1;
    }
    for (int i = 0; i < o->nrequire; i++) {
        need += strlen(o->require[i]) + 1;
    }
    for (int i = 0; i < nexec; i++) {
        need += strlen(o->exec_argv[i]) + 1;
    }
    size_t ptrs = (size_t)(o->app_argc + o->nrequire + nexec + 3) * sizeof(char *);
    s->strs = malloc(ptrs + need + 1);
    if (s->strs == NULL) {
        return -ENOMEM;
    }
    char **argv = (char **)(void *)s->strs;
    char **req = argv + o->app_argc + 1;
    char **cmd = req + o->nrequire;
    char *p = s->strs + ptrs;
    for (size_t i = 0; i < nstrs; i++) {
        if (*strs[i] != NULL) {
            size_t n = strlen(*strs[i]) + 1;
            memcpy(p, *strs[i], n);
            *strs[i] = p;
            p += n;
        }
    }
    for (int i = 0; i < o->app_argc; i++) {
        size_t n = strlen(o->app_argv[i]) + 1;
        argv[i] = memcpy(p, o->app_argv[i], n);
        p += n;
    }
    argv[o->app_argc] = NULL;
    for (int i = 0; i < o->nrequire; i++) {
        size_t n = strlen(o->require[i]) + 1;
        req[i] = memcpy(p, o->require[i], n);
        p += n;
    }
    for (int i = 0; i < nexec; i++) {
        size_t n = strlen(o->exec_argv[i]) + 1;
        cmd[i] = memcpy(p, o->exec_argv[i], n);
        p += n;
    }
    cmd[nexec] = NULL;
    s->opts.app_argv = argv;
    s->opts.require = (const char *const *)req;
    s->opts.exec_argv = nexec > 0 ? cmd : NULL;
    /* Defaults for what was left zero. */
    s->opts.workers = o->workers > 0 ? o->workers : 1;
    s->opts.drain_timeout_ms = o->drain_timeout_ms > 0 ? o->drain_timeout_ms : 10 * 60 * 1000;
    s->opts.max_draining = o->max_draining > 0 ? o->max_draining : 4;
    s->opts.ws_drain_grace_ms = opt_ms(o->ws_drain_grace_ms, 5000);
    s->opts.close_spread_ms = opt_ms(o->close_spread_ms, 5000);
    s->opts.ready_timeout_ms = o->ready_timeout_ms > 0 ? o->ready_timeout_ms : 30 * 1000;
    s->opts.header_timeout_ms = o->header_timeout_ms > 0 ? o->header_timeout_ms : 10 * 1000;
    s->opts.queue_timeout_ms = o->queue_timeout_ms > 0 ? o->queue_timeout_ms : 10 * 1000;
    s->opts.max_head = o->max_head > 0 ? o->max_head : UP_HEAD_MAX_DEFAULT;
    s->opts.title = s->opts.title != NULL ? s->opts.title : "up";
    s->is_heir = o->heir != NULL;
    s->heir_in =
        s->is_heir
            ? *o->heir
            : (struct up_heir_fds){.chan = -1, .control = -1, .metrics = -1, .stderr_fd = -1};
    s->opts.heir = NULL;
    return 0;
}

int up_server_new(const struct up_server_opts *opts, struct up_server **ret)
{
    bool app = opts->kind == UP_WORKERS_APP;
    bool what = app ? opts->app != NULL
                    : opts->exec_argv != NULL && opts->exec_argv[0] != NULL &&
                          opts->exec_argv[0][0] != '\0';
    if (!what || opts->workers < 0 || opts->max_draining < 0 || opts->backend < 0 ||
        opts->backend > UP_BACKEND_EPOLL || opts->kind < UP_WORKERS_APP ||
        opts->kind > UP_WORKERS_HANDOFF || opts->stop_signal < 0 || opts->stop_signal >= NSIG) {
        up_log(UP_LOG_ERR, "up_server_new: %s",
               what  ? "a bad option"
               : app ? "no app"
                     : "no command");
        return -EINVAL;
    }
    struct up_privs privs = {0};
    char err[256];
    if (opts->user != NULL && up_privs_lookup(opts->user, &privs, err, sizeof(err)) < 0) {
        up_log(UP_LOG_ERR, "user: %s", err);
        return -EINVAL;
    }
    struct up_server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    s->privs = privs;
    s->sigfd = s->wake_fd = -1;
    static const double reload_bounds[] = {5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
                                           1,    2.5,   5,     10,    30,     60};
    up_hist_init(&s->reload_hist, reload_bounds, sizeof(reload_bounds) / sizeof(reload_bounds[0]));
    s->notice_rl = (struct up_ratelimit)UP_RATELIMIT_INIT(60000, 5);
    s->stop_timer.cb = on_stop_deadline;
    s->finish_timer.cb = on_finish_deadline;
    s->shed_timer.cb = on_shed_timer;
    int r = copy_opts(s, opts);
    if (r < 0) {
        free(s);
        return r;
    }
    int rr = up_fd_raise_nofile(&s->nofile_before, &s->nofile);
    if (rr < 0) {
        up_log(UP_LOG_WARN, "cannot raise the fd limit from %llu: %s, keeping it", s->nofile_before,
               strerror(-rr));
    }
    const char *why = NULL;
    r = up_loop_new((enum up_backend)s->opts.backend, 4096, &s->loop, &why);
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot set up the event loop: %s%s%s", strerror(-r), why ? ": " : "",
               why ? why : "");
        free(s->strs);
        free(s);
        return r;
    }
    /* From here on a stuck stderr (a log reader that stopped) costs log
     * lines, never the loop. */
    if ((r = up_log_async(s->loop)) < 0) {
        up_log(UP_LOG_WARN, "cannot buffer the log: %s, writing it blocking", strerror(-r));
    }
    up_log(UP_LOG_INFO, "event loop: %s%s%s%s", up_loop_backend_name(s->loop),
           why ? " (io_uring unavailable: " : "", why ? why : "", why ? ")" : "");
    up_gens_init(&s->gens, s->loop, &s->gens_opts, &gens_cbs, s);
    up_router_init(&s->router, s->loop, s->opts.queue_timeout_ms, &router_cbs, s);
    up_pendings_init(&s->pendings, s->loop, s->opts.max_head, s->opts.header_timeout_ms,
                     MAX_PENDING, &pending_cbs, s);
    if ((r = setup_signals(s)) < 0) {
        up_log(UP_LOG_ERR, "cannot set up signals: %s", strerror(-r));
        up_server_free(s);
        return r;
    }
    *ret = s;
    return 0;
}

int up_server_use(struct up_server *s, up_middleware_fn fn, void *ctx)
{
    return up_router_use(&s->router, fn, ctx);
}

int up_server_use_sticky(struct up_server *s, const char *spec)
{
    struct sticky_mw *m = calloc(1, sizeof(*m));
    char err[256];
    if (m == NULL) {
        return -ENOMEM;
    }
    if (up_sticky_parse(spec, &m->sticky, err, sizeof(err)) < 0) {
        up_log(UP_LOG_ERR, "sticky: %s", err);
        free(m);
        return -EINVAL;
    }
    int r = up_router_use(&s->router, up_sticky_route, &m->sticky);
    if (r < 0) {
        free(m);
        return r;
    }
    m->next = s->stickies;
    s->stickies = m;
    return 0;
}

/* The TCP port of a listener, 0 for a unix one. */
static int listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

/* The workers' event loop is the one --backend asked for (their
 * environment's UP_BACKEND, which the option overrides, is not). When
 * io_uring failed here under auto, it fails there too (the same kernel,
 * seccomp profile and limits): they take epoll at once, without each
 * logging why at every start. */
static const char *worker_backend(const struct up_server *s)
{
    enum up_backend b = (enum up_backend)s->opts.backend;
    if (b == UP_BACKEND_AUTO && up_loop_backend(s->loop) == UP_BACKEND_EPOLL) {
        b = UP_BACKEND_EPOLL;
    }
    return up_backend_name(b);
}

/* What each worker starts with (gen sets the generation and index). */
static void spawn_params(struct up_server *s, struct up_kind_params *p)
{
    const struct up_server_opts *o = &s->opts;
    static const enum up_kind kinds[] = {
        [UP_WORKERS_APP] = UP_KIND_APP,
        [UP_WORKERS_EXEC] = UP_KIND_EXEC,
        [UP_WORKERS_HANDOFF] = UP_KIND_HANDOFF,
    };
    *p = (struct up_kind_params){
        .kind = kinds[o->kind],
        .bin = s->worker_bin,
        .app = o->app,
        .title = o->title,
        .max_head = o->max_head,
        .ws_drain_grace_ms = o->ws_drain_grace_ms,
        .close_spread_ms = o->close_spread_ms,
        .access_log = o->access_log,
        .access_log_format = o->access_log_format,
        .backend = worker_backend(s),
        .ready_manual = o->ready_manual,
        .require = o->require,
        .nrequire = o->nrequire,
        .app_argv = o->app_argv,
        .app_argc = o->app_argc,
    };
    if (o->kind == UP_WORKERS_APP) {
        return;
    }
    int argc = 0;
    while (o->exec_argv[argc] != NULL) {
        argc++;
    }
    p->app = s->command;
    p->app_argv = o->exec_argv;
    p->app_argc = argc;
    /* The operator's fd limit, not the one this master raised itself to. */
    p->nofile = s->nofile_before;
    if (o->kind == UP_WORKERS_HANDOFF) {
        return;
    }
    for (int i = 0; i < s->nlisteners; i++) {
        s->listen_fds[i] = s->listeners[i].fd;
        p->port = p->port > 0 ? p->port : listener_port(s->listeners[i].fd);
    }
    p->listen_fds = s->listen_fds;
    p->nlisten = s->nlisteners;
    p->ready = o->ready_after_ms > 0 ? UP_READY_AFTER : UP_READY_NOTIFY;
    p->ready_after_ms = o->ready_after_ms;
    p->notify_path = s->notifyd != NULL ? up_notifyd_path(s->notifyd) : NULL;
    p->stop_signal = o->stop_signal > 0 ? o->stop_signal : SIGTERM;
}

/* EXEC: the notify socket the workers say READY=1 on, in the private
 * directory. 0, or -errno (logged). */
static int start_exec(struct up_server *s)
{
    if (s->opts.kind != UP_WORKERS_EXEC || s->opts.ready_after_ms > 0) {
        return 0;
    }
    char err[512];
    int r = up_notifyd_open(s->loop, s->snap_dir, &notifyd_cbs, s, &s->notifyd, err, sizeof(err));
    if (r < 0) {
        up_log(UP_LOG_ERR, "cannot open the workers' notify socket: %s", err);
    }
    return r;
}

/* What needs the options to be final: snapshot dir, control socket,
 * metrics, watch, pidfile, the pending cap. 0, or -errno (logged). */
static int start(struct up_server *s)
{
    const struct up_server_opts *o = &s->opts;
    int r;
    if ((r = find_worker_bin(s)) < 0) {
        return r;
    }
    if (o->user != NULL) {
        /* The listeners are bound (a port below 1024 needed root); all
         * that is made from here on is the user's. */
        char err[256];
        if ((r = up_privs_drop(&s->privs, err, sizeof(err))) < 0) {
            up_log(UP_LOG_ERR, "--user %s: %s", o->user, err);
            return r;
        }
        up_log(UP_LOG_INFO, "running as %s (uid %u, gid %u)", s->privs.user, (unsigned)s->privs.uid,
               (unsigned)s->privs.gid);
    }
    if ((r = make_snap_dir(s)) < 0) {
        /* An app's workers need it only where no memfd can be had (kind.h):
         * a full disk must not keep the service from starting. The notify
         * socket of --exec workers lives in it. */
        if (o->kind == UP_WORKERS_EXEC) {
            up_log(UP_LOG_ERR, "cannot prepare a private directory: %s", strerror(-r));
            return r;
        }
        up_log(UP_LOG_WARN,
               "cannot prepare a private directory (%s): the app's snapshots stay in memory",
               strerror(-r));
    }
    if (s->nlisteners == 0) {
        up_log(UP_LOG_ERR, "nothing to listen on");
        return -EINVAL;
    }
    if (s->is_heir) {
        /* The control and metrics sockets and the pidfile are the old
         * master's until we take over (take_over()). */
        int chan = s->heir_in.chan;
        s->heir_in.chan = -1;
        if ((r = up_heir_open(s->loop, chan, &heir_cbs, s, &s->heir)) < 0) {
            return r;
        }
    } else if (o->control != NULL) {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        enum up_ctl_place place = UP_CTL_EXPLICIT;
        if (o->control_private) {
            place = xdg != NULL && xdg[0] != '\0' && strncmp(o->control, xdg, strlen(xdg)) == 0
                        ? UP_CTL_XDG
                        : UP_CTL_TMP;
        }
        char err[512];
        if ((r = up_ctl_open(s->loop, o->control, place, &ctl_cbs, s, &s->ctl, err, sizeof(err))) <
            0) {
            if (!o->control_private || !no_room(r)) {
                up_log(UP_LOG_ERR, "control socket: %s", err);
                return r;
            }
            /* A socket nobody asked for by name, on a disk that is full:
             * not a reason to leave the port unserved. */
            up_log(UP_LOG_WARN,
                   "control socket: %s; serving without one: `up-run reload|status|stop` cannot "
                   "reach this master, signals can (kill -USR2 %d reloads, -TERM stops), or "
                   "give --control PATH on a file system with room",
                   err, (int)getpid());
        }
    }
    if (o->metrics != NULL && !s->is_heir &&
        (r = up_metrics_open(s->loop, o->metrics, &metrics_cbs, s, &s->metrics)) < 0) {
        return r;
    }
    if (o->watch_dir != NULL &&
        (r = up_watch_start(s->loop, o->watch_dir, o->build_cmd, &watch_cbs, s, &s->watch)) < 0) {
        return r;
    }
    s->pendings.max_pending = size_pending(s, s->nofile_before);
    if (o->pidfile != NULL && !s->is_heir && (r = write_pidfile(s)) < 0) {
        return r;
    }
    if ((r = start_exec(s)) < 0) {
        return r;
    }
    s->gens_opts = (struct up_gens_opts){
        .snap_dir = s->snap_dir,
        .workers = o->workers,
        .max_draining = o->max_draining,
        .drain_timeout_ms = o->drain_timeout_ms,
        .ready_timeout_ms = o->ready_timeout_ms,
        .respawn = !o->no_respawn,
        .migrate_at_deadline = o->migrate_at_deadline,
    };
    spawn_params(s, &s->gens_opts.spawn);
    return 0;
}

/* What the log says is served: the app, or the command. */
static const char *serving(const struct up_server *s)
{
    return s->opts.kind == UP_WORKERS_APP ? s->opts.app : s->command;
}

int up_server_run(struct up_server *s)
{
    if (s->state != SERVER_NEW) {
        return 1;
    }
    s->state = SERVER_STARTING;
    if (start(s) < 0) {
        return 3;
    }
    s->reload_gen = 1;
    s->reload_at = up_loop_now(s->loop);
    s->reload_us = up_hist_now_us();
    if (up_gens_reload(&s->gens, "start") < 0 && s->watch == NULL) {
        return 3;
    }
    /* --exec workers accept on the listeners themselves: the master only
     * keeps them open, so that no reload ever closes one. */
    for (int i = 0; i < s->nlisteners && s->opts.kind != UP_WORKERS_EXEC && accepting(s); i++) {
        (void)up_acceptor_start(&s->listeners[i].acceptor);
    }
    int pid = (int)getpid();
    if (s->opts.signals) {
        up_log(UP_LOG_INFO, "pid=%d serving %s; reload with: kill -s USR2 %d", pid, serving(s),
               pid);
    } else {
        up_log(UP_LOG_INFO, "pid=%d serving %s", pid, serving(s));
    }
    int r = up_loop_run(s->loop);
    if (r < 0) {
        up_log(UP_LOG_ERR, "event loop failed: %s", strerror(-r));
        return 1;
    }
    return s->exit_code;
}

void up_server_free(struct up_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->loop != NULL) {
        /* First: its wait for stderr would hold up every drain below. One
         * last try to write the log, never waiting. */
        up_log_async_end();
        up_loop_cancel(s->loop, &s->sig_op);
        up_loop_cancel(s->loop, &s->wake_op);
        s->finishing = false; /* a last on_stopped finishes no stop */
        for (int i = 0; i < s->nlisteners; i++) {
            up_acceptor_stop(&s->listeners[i].acceptor);
        }
        up_timer_stop(s->loop, &s->shed_timer);
        up_timer_stop(s->loop, &s->stop_timer);
        up_timer_stop(s->loop, &s->finish_timer);
        up_ctl_close(s->ctl);
        up_heir_close(s->heir);
        up_notifyd_close(s->notifyd);
        up_metrics_close(s->metrics);
        up_watch_free(s->watch);
        up_loop_drain(s->loop, 2000);
    }
    for (int i = 0; i < s->nlisteners; i++) {
        s->listeners[i].fd = up_close(s->listeners[i].fd);
    }
    s->sigfd = up_close(s->sigfd);
    s->wake_fd = up_close(s->wake_fd);
    up_pendings_fini(&s->pendings);
    if (s->snap_dir[0] != '\0') {
        rmdir(s->snap_dir);
    }
    (void)up_close(s->heir_in.chan);
    (void)up_close(s->heir_in.control);
    (void)up_close(s->heir_in.metrics);
    (void)up_close(s->heir_in.stderr_fd);
    if (s->pidfile_written && up_pidfile_remove(s->opts.pidfile) == -ESRCH && !s->handed_over) {
        up_log(UP_LOG_WARN, "pidfile %s names another process now, leaving it", s->opts.pidfile);
    }
    while (s->stickies != NULL) {
        struct sticky_mw *m = s->stickies;
        s->stickies = m->next;
        free(m);
    }
    up_loop_free(s->loop);
    free(s->strs);
    free(s);
}
