/*
 * gen: generations of workers. See gen.h for the states, the wants, and
 * why reconcile is the only place that drains or kills.
 */
#include "gen.h"

#include "fd.h"
#include "log.h"
#include "passfd.h"
#include "pending.h"
#include "procstat.h"
#include "sticky.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Respawn back-off: 100 ms doubling per death in a row, up to 10 s. A
 * worker that stayed up STABLE_MS ends the streak. */
#define RESPAWN_BASE_MS 100
#define RESPAWN_MAX_MS 10000
#define STABLE_MS 10000

static const struct up_mworker_cbs worker_cbs;
static int start_gen(struct up_gens *gs, bool heir);

const char *up_gen_state_name(enum up_gen_state s)
{
    switch (s) {
    case UP_GEN_STARTING:
        return "starting";
    case UP_GEN_ACTIVE:
        return "active";
    case UP_GEN_DRAINING:
        return "draining";
    case UP_GEN_FAILED:
        return "failed";
    }
    return "?";
}

static void set_state(struct up_gen *g, enum up_gen_state to)
{
    /* allowed[from][to], as drawn in gen.h. */
    static const bool allowed[4][4] = {
        [UP_GEN_STARTING] = {[UP_GEN_ACTIVE] = true, [UP_GEN_FAILED] = true},
        [UP_GEN_ACTIVE] = {[UP_GEN_DRAINING] = true},
        [UP_GEN_DRAINING] = {[UP_GEN_DRAINING] = true},
        [UP_GEN_FAILED] = {[UP_GEN_FAILED] = true},
    };
    if (!allowed[g->state][to]) {
        up_log(UP_LOG_ERR, "generation %u: bad transition %s -> %s", g->id,
               up_gen_state_name(g->state), up_gen_state_name(to));
        abort();
    }
    g->state = to;
}

#define for_each_gen(pos, tmp, gs) up_list_for_each_safe(pos, tmp, &(gs)->list)
#define GEN(pos) up_container_of(pos, struct up_gen, link)
#define WORKER(pos) up_container_of(pos, struct up_mworker, gen_link)

void up_gens_init(struct up_gens *gs, struct up_loop *loop, const struct up_gens_opts *opts,
                  const struct up_gens_cbs *cbs, void *ctx)
{
    *gs = (struct up_gens){.loop = loop, .opts = opts, .cbs = cbs, .ctx = ctx};
    up_list_init(&gs->list);
}

unsigned up_gens_count_workers(const struct up_gens *gs)
{
    unsigned n = 0;
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        n += GEN(p)->nworkers;
    }
    return n;
}

bool up_gens_empty(const struct up_gens *gs)
{
    return up_list_empty(&gs->list);
}

bool up_gens_expected(const struct up_gens *gs)
{
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        if (GEN(p)->state == UP_GEN_ACTIVE || GEN(p)->state == UP_GEN_STARTING) {
            return true;
        }
    }
    return false;
}

/* ---- reconcile: the one place that drains or kills ---- */

static uint64_t left_ms(const struct up_gens *gs, uint64_t deadline)
{
    uint64_t now = up_loop_now(gs->loop);
    return deadline > now ? deadline - now : 0;
}

void up_gens_reconcile(struct up_gens *gs)
{
    struct up_list *p, *t, *q, *u;
    for_each_gen(p, t, gs)
    {
        struct up_gen *g = GEN(p);
        up_list_for_each_safe(q, u, &g->workers)
        {
            struct up_mworker *w = WORKER(q);
            if (w->state == UP_MW_GONE || w->pid == 0) {
                continue;
            }
            int sig = g->want == UP_GEN_WANT_KILL ? g->kill_sig : w->want_kill ? SIGKILL : 0;
            if (sig != 0) {
                /* Again only with another signal: SIGQUIT, then SIGKILL. */
                if (w->killed_sig != sig) {
                    w->killed_sig = sig;
                    up_mworker_kill(w, sig);
                }
            } else if (g->want == UP_GEN_WANT_DRAIN) {
                /* A worker only ever shortens its deadline and adds flags:
                 * sent again only when that changes something. */
                up_mworker_drain(w, left_ms(gs, g->drain_deadline), g->drain_flags);
            } else if (w->want_drain) {
                /* It began draining on its own: our deadline bounds it. */
                w->want_drain = false;
                up_mworker_drain(w, gs->opts->drain_timeout_ms, 0);
            }
        }
    }
}

/* ---- life and death of a generation ---- */

static void gen_free(struct up_gen *g)
{
    struct up_gens *gs = g->set;
    up_list_remove(&g->link);
    if (gs->active == g) {
        gs->active = NULL;
    }
    up_timer_stop(gs->loop, &g->ready_timer);
    up_timer_stop(gs->loop, &g->respawn_timer);
    up_kind_release(&g->snap);
    up_log(UP_LOG_DEBUG, "generation %u gone", g->id);
    free(g);
}

/* The lowest index no live worker of g has: a replacement takes the place
 * (and the share of keys) of the one it replaces. */
static unsigned free_index(const struct up_gen *g)
{
    for (unsigned i = 0;; i++) {
        bool used = false;
        for (const struct up_list *p = g->workers.next; p != &g->workers && !used; p = p->next) {
            const struct up_mworker *w = WORKER(p);
            used = w->index == i && w->state != UP_MW_DRAINING && w->state != UP_MW_GONE;
        }
        if (!used) {
            return i;
        }
    }
}

/* Start one worker. false if it could not be started (fork or exec
 * failed, fds ran out: logged). */
static bool add_worker(struct up_gen *g, bool respawned)
{
    struct up_gens *gs = g->set;
    struct up_kind_params p = g->heir ? gs->heir_spawn : gs->opts->spawn;
    p.app = g->snap.path;
    p.app_fd = g->snap.fd;
    p.gen_id = g->id;
    p.index = free_index(g);
    int err = 0;
    struct up_mworker *w = up_mworker_spawn(gs->loop, &p, &worker_cbs, g, &err);
    if (w == NULL) {
        up_log(UP_LOG_ERR, "cannot start worker g%u#%u: %s", g->id, p.index, strerror(-err));
        return false;
    }
    w->respawned = respawned;
    up_list_push_front(&g->workers, &w->gen_link);
    g->nworkers++;
    return true;
}

const char *up_gen_tail(const struct up_gen *g, size_t *ret_len)
{
    for (const struct up_list *p = g->workers.next; p != &g->workers; p = p->next) {
        const struct up_mworker *w = WORKER(p);
        if (w->tail_len > 0) {
            *ret_len = w->tail_len;
            return w->tail; /* one worker's is enough: they run the same code */
        }
    }
    *ret_len = 0;
    return "";
}

static void log_tails(const struct up_gen *g)
{
    size_t len = 0;
    const char *tail = up_gen_tail(g, &len);
    if (len > 0) {
        up_log(UP_LOG_ERR, "generation %u last output of a worker:\n%.*s", g->id, (int)len, tail);
    }
}

static void want_kill(struct up_gen *g, int sig)
{
    g->want = UP_GEN_WANT_KILL;
    g->kill_sig = sig;
}

/* A starting generation is no longer wanted (a newer reload replaces it):
 * stop it without calling it a failure. Its workers were never ready, so
 * they hold no connection and are killed. */
static void gen_abandon(struct up_gen *g, const char *why)
{
    if (g->state != UP_GEN_STARTING) {
        return;
    }
    set_state(g, UP_GEN_FAILED);
    want_kill(g, SIGKILL);
    snprintf(g->fail_reason, sizeof(g->fail_reason), "%s", why);
    up_timer_stop(g->set->loop, &g->ready_timer);
    up_log(UP_LOG_INFO, "generation %u abandoned: %s", g->id, why);
}

static void gen_fail(struct up_gen *g, const char *why)
{
    struct up_gens *gs = g->set;
    if (g->state == UP_GEN_FAILED) {
        return;
    }
    set_state(g, UP_GEN_FAILED);
    want_kill(g, SIGKILL); /* never ready: it holds no connection */
    up_timer_stop(gs->loop, &g->ready_timer);
    if (g->fail_reason[0] == '\0') {
        snprintf(g->fail_reason, sizeof(g->fail_reason), "%s", why);
    }
    gs->stats.reload_fails++;
    up_log(UP_LOG_ERR, "generation %u failed to start: %.900s%s", g->id, g->fail_reason,
           gs->active ? "; the running generation keeps serving" : "");
    log_tails(g);
    gs->cbs->failed(gs, g);
    if (!up_gens_expected(gs)) {
        gs->cbs->none(gs);
    }
}

static void on_ready_timeout(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_gen *g = up_container_of(t, struct up_gen, ready_timer);
    char why[768];
    int n = snprintf(why, sizeof(why), "no worker was ready within %llu ms (--ready-timeout)",
                     (unsigned long long)g->set->opts->ready_timeout_ms);
    /* What each one was doing: an init blocked on a connect or a lock
     * ("sleeping in wait_woken", "futex_do_wait") is not an app that
     * returned and never said READY (the worker loop's own wait:
     * "io_cqring_wait", "do_epoll_wait"). */
    struct up_list *q, *u;
    up_list_for_each_safe(q, u, &g->workers)
    {
        const struct up_mworker *w = WORKER(q);
        char doing[96];
        up_procstat_doing(w->pid, doing, sizeof(doing)); /* "" once reaped (pid 0) */
        if (doing[0] != '\0' && n > 0 && (size_t)n < sizeof(why)) {
            n += snprintf(why + n, sizeof(why) - (size_t)n, "; worker #%u pid=%d %s", w->index,
                          (int)w->pid, doing);
        }
    }
    gen_fail(g, why);
    up_gens_reconcile(g->set);
}

/* g drains by the drain timeout from now (or keeps an earlier deadline),
 * with flags added. */
static void want_drain(struct up_gen *g, uint32_t flags)
{
    uint64_t deadline = up_loop_now(g->set->loop) + g->set->opts->drain_timeout_ms;
    if (g->state == UP_GEN_ACTIVE) {
        set_state(g, UP_GEN_DRAINING);
        g->drain_deadline = deadline;
    }
    if (g->set->active == g) {
        g->set->active = NULL;
    }
    g->want = UP_GEN_WANT_DRAIN;
    g->drain_flags |= flags;
    up_timer_stop(g->set->loop, &g->respawn_timer);
    g->respawn_due = 0;
}

/* Past --max-draining draining generations, the oldest hand their idle
 * connections back at once, so a reload storm cannot pile up processes. */
static void enforce_max_draining(struct up_gens *gs)
{
    int n = 0;
    struct up_list *p, *t;
    for_each_gen(p, t, gs)
    {
        struct up_gen *g = GEN(p);
        if (g->state == UP_GEN_DRAINING && ++n > gs->opts->max_draining && !g->shed) {
            g->shed = true;
            up_log(UP_LOG_INFO,
                   "generation %u over --max-draining=%d: handing back its idle "
                   "connections now",
                   g->id, gs->opts->max_draining);
            want_drain(g, UP_DRAIN_F_SHED);
        }
    }
}

/* The cap on worker processes: the serving generation plus --max-draining
 * old ones, N each. */
static unsigned process_budget(const struct up_gens *gs)
{
    return (unsigned)(gs->opts->max_draining + 1) * (unsigned)gs->opts->workers;
}

/* Is there room under the budget for a new generation? If not, abandon any
 * generation still starting and make the oldest draining one hand back its
 * idle connections, and return false: a reload waits until a worker is
 * gone. */
static bool make_room(struct up_gens *gs)
{
    if (up_gens_count_workers(gs) + (unsigned)gs->opts->workers <= process_budget(gs)) {
        return true;
    }
    struct up_gen *oldest = NULL;
    bool shedding = false;
    struct up_list *p, *t;
    for_each_gen(p, t, gs)
    {
        struct up_gen *g = GEN(p);
        if (g->state == UP_GEN_STARTING) {
            gen_abandon(g, "superseded by a newer reload");
        } else if (g->state == UP_GEN_DRAINING) {
            shedding = shedding || g->shed;
            oldest = g->shed ? oldest : g;
        }
    }
    /* One at a time: its workers exit as soon as they hold none. */
    if (!shedding && oldest != NULL) {
        oldest->shed = true;
        up_log(UP_LOG_INFO,
               "%u workers alive, at the --max-draining budget of %u: generation %u hands "
               "back its idle connections now",
               up_gens_count_workers(gs), process_budget(gs), oldest->id);
        want_drain(oldest, UP_DRAIN_F_SHED);
    }
    up_gens_reconcile(gs);
    return false;
}

static uint64_t respawn_delay(const struct up_gen *g)
{
    uint64_t delay = RESPAWN_BASE_MS;
    for (unsigned i = 1; i < g->crash_streak && delay < RESPAWN_MAX_MS; i++) {
        delay *= 2;
    }
    return delay > RESPAWN_MAX_MS ? RESPAWN_MAX_MS : delay;
}

static void activate(struct up_gen *g)
{
    struct up_gens *gs = g->set;
    struct up_gen *old = gs->active;
    set_state(g, UP_GEN_ACTIVE);
    up_timer_stop(gs->loop, &g->ready_timer);
    gs->active = g;
    if (g->heir) {
        /* Every connection goes on to the new master: the idle ones too,
         * now, from every generation still draining. */
        up_log(UP_LOG_INFO, "the new master took over; every generation here drains");
        struct up_list *p, *t;
        for_each_gen(p, t, gs)
        {
            if (GEN(p) != g && GEN(p)->state != UP_GEN_FAILED) {
                want_drain(GEN(p), UP_DRAIN_F_MIGRATE_IDLE);
            }
        }
    } else if (old != NULL) {
        up_log(UP_LOG_INFO, "generation %u serving; generation %u draining", g->id, old->id);
        want_drain(old, gs->opts->migrate_at_deadline ? 0 : UP_DRAIN_F_MIGRATE_IDLE);
    } else {
        up_log(UP_LOG_INFO, "generation %u serving", g->id);
    }
    enforce_max_draining(gs);
    if (g->respawn_due > 0 && gs->opts->respawn) {
        /* Some of its workers could not start: they are retried now. */
        g->crash_streak++;
        up_timer_start(gs->loop, &g->respawn_timer, respawn_delay(g));
    }
    gs->cbs->active(gs, g, old);
}

/* ---- respawn ---- */

/* Start the workers the generation is short of. One that cannot start now
 * (fork failing at a process limit, no fds) is retried with the back-off,
 * for as long as it takes: a generation left with no worker must not stay
 * "active" and silent. */
static void on_respawn(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_gen *g = up_container_of(t, struct up_gen, respawn_timer);
    struct up_gens *gs = g->set;
    if (g->state != UP_GEN_ACTIVE || gs->stopping) {
        g->respawn_due = 0;
        return;
    }
    while (g->respawn_due > 0) {
        if (!add_worker(g, true)) {
            g->crash_streak++;
            uint64_t delay = respawn_delay(g);
            up_log(UP_LOG_WARN, "generation %u is %u worker%s short: retrying in %llu ms", g->id,
                   g->respawn_due, g->respawn_due == 1 ? "" : "s", (unsigned long long)delay);
            up_timer_start(gs->loop, &g->respawn_timer, delay);
            gs->cbs->changed(gs);
            return;
        }
        g->respawn_due--;
        gs->stats.respawns++;
    }
}

/* w is leaving the active generation unasked (why, for the log): start a
 * replacement after the back-off. */
static void schedule_respawn(struct up_gen *g, const struct up_mworker *w, const char *why)
{
    struct up_gens *gs = g->set;
    /* The streak ends only when a worker stayed up: the time between two
     * deaths is no measure, since the back-off itself stretches it. */
    if (up_loop_now(gs->loop) - w->spawned_at > STABLE_MS) {
        g->crash_streak = 0;
    }
    g->crash_streak++;
    uint64_t delay = respawn_delay(g);
    g->respawn_due++;
    if (!up_timer_armed(&g->respawn_timer)) {
        /* One line per back-off step, not one per death. */
        up_log(UP_LOG_WARN, "worker g%u#%u %s; respawning in %llu ms", g->id, w->index, why,
               (unsigned long long)delay);
        up_timer_start(gs->loop, &g->respawn_timer, delay);
    }
}

/* ---- what the workers report ---- */

static struct up_gen *gen_of(const struct up_mworker *w)
{
    return w->owner;
}

static void on_worker_ready(struct up_mworker *w)
{
    struct up_gen *g = gen_of(w);
    struct up_gens *gs = g->set;
    if (g->state == UP_GEN_STARTING && g->want == UP_GEN_WANT_SERVE && !gs->stopping) {
        activate(g);
    }
    /* Ready too late (its generation replaced, failed or stopping): the
     * generation's want says what to do with it. */
    up_gens_reconcile(gs);
    if (g->state == UP_GEN_ACTIVE) {
        gs->cbs->changed(gs);
        gs->cbs->routable(gs);
    }
}

static void on_worker_fail(struct up_mworker *w, const char *text, size_t len)
{
    struct up_gen *g = gen_of(w);
    snprintf(g->fail_reason, sizeof(g->fail_reason), "%.*s", (int)len, text);
    if (w->state == UP_MW_STARTING) {
        w->want_kill = true; /* it cannot work: never ready, it holds nothing */
        up_gens_reconcile(g->set);
    }
}

static void on_worker_requeue(struct up_mworker *w, struct up_pending *c)
{
    struct up_gens *gs = gen_of(w)->set;
    gs->cbs->requeue(gs, c);
}

static void on_worker_handed_back(struct up_mworker *w, int fd, const char *data, size_t len,
                                  unsigned tries)
{
    struct up_gens *gs = gen_of(w)->set;
    gs->cbs->handed_back(gs, fd, data, len, tries, w->pid_was);
}

static void on_worker_routable(struct up_mworker *w)
{
    struct up_gens *gs = gen_of(w)->set;
    if (gs->active == gen_of(w)) {
        gs->cbs->routable(gs);
    }
}

static void on_worker_draining(struct up_mworker *w)
{
    struct up_gen *g = gen_of(w);
    struct up_gens *gs = g->set;
    w->want_drain = true;
    if (g->state == UP_GEN_ACTIVE && !gs->stopping && gs->opts->respawn && !g->heir) {
        schedule_respawn(g, w, "drains on its own");
    }
    up_gens_reconcile(gs);
    gs->cbs->changed(gs);
}

static bool on_worker_stop_coming(struct up_mworker *w)
{
    struct up_gens *gs = gen_of(w)->set;
    return gs->stopping || (gs->cbs->stop_coming != NULL && gs->cbs->stop_coming(gs));
}

static void on_worker_late(struct up_mworker *w)
{
    w->want_kill = true;
    up_gens_reconcile(gen_of(w)->set);
}

static void on_worker_pressure(struct up_mworker *w, bool on)
{
    (void)on;
    struct up_gens *gs = gen_of(w)->set;
    gs->cbs->changed(gs);
}

static void on_worker_lost(struct up_mworker *w)
{
    struct up_gens *gs = gen_of(w)->set;
    gs->cbs->lost(gs);
}

static bool on_worker_room(struct up_mworker *w)
{
    struct up_gens *gs = gen_of(w)->set;
    return gs->cbs->room(gs);
}

static void describe_exit(const struct up_mworker *w, char *buf, size_t cap)
{
    /* Killed by us because it closed its channel and ran on: it did not
     * crash. One that exited by itself says how. */
    if (w->chan_closed_early && w->killed_sig == SIGKILL && WIFSIGNALED(w->status) &&
        WTERMSIG(w->status) == SIGKILL) {
        snprintf(buf, cap, "worker #%u closed its channel (fd 3) before it was ready", w->index);
    } else if (WIFSIGNALED(w->status)) {
        snprintf(buf, cap, "worker #%u was killed by signal %d (%s) before it was ready", w->index,
                 WTERMSIG(w->status), strsignal(WTERMSIG(w->status)));
    } else {
        snprintf(buf, cap, "worker #%u exited with status %d before it was ready", w->index,
                 WEXITSTATUS(w->status));
    }
}

static void on_worker_gone(struct up_mworker *w)
{
    struct up_gen *g = gen_of(w);
    struct up_gens *gs = g->set;
    char why[256];
    describe_exit(w, why, sizeof(why));
    if (g->state == UP_GEN_STARTING && !gs->stopping) {
        gen_fail(g, why); /* logs the tail: w is still on the list */
    } else if (g->state == UP_GEN_ACTIVE && !gs->stopping && w->left_as != UP_MW_DRAINING &&
               gs->opts->respawn && !g->heir) {
        /* Not one that drained: the one that left on its own was replaced
         * when it said so (on_worker_draining), and is not again now. */
        char how[64];
        snprintf(how, sizeof(how), "exited unexpectedly (%s %d)",
                 WIFSIGNALED(w->status) ? "signal" : "status",
                 WIFSIGNALED(w->status) ? WTERMSIG(w->status) : WEXITSTATUS(w->status));
        schedule_respawn(g, w, how);
    }
    pid_t pid = w->pid_was;
    up_list_remove(&w->gen_link);
    g->nworkers--;
    gs->stats.alog_lines_gone += w->alog_lines;
    gs->stats.alog_dropped_gone += w->alog_dropped;
    up_mworker_free(w);
    if (g->heir && g->state == UP_GEN_ACTIVE && !gs->stopping) {
        /* The new master died after it took over: nothing serves here
         * until the owner starts a generation again. */
        up_log(UP_LOG_ERR, "the new master pid=%d is gone after it took over", (int)pid);
        want_drain(g, 0);
        gen_free(g);
        gs->cbs->heir_lost(gs, pid);
        up_gens_reconcile(gs);
        gs->cbs->changed(gs);
        return;
    }
    /* A generation with no worker left is done if it is not serving, or
     * if the master is stopping (a starting one is abandoned then). */
    if (g->nworkers == 0 && g->respawn_due == 0 &&
        (g->state == UP_GEN_DRAINING || g->state == UP_GEN_FAILED || gs->stopping)) {
        gen_free(g);
    }
    if (gs->reload_pending && !gs->stopping && make_room(gs)) {
        (void)up_gens_reload(gs, "deferred reload");
    }
    up_gens_reconcile(gs);
    gs->cbs->changed(gs);
}

static const struct up_mworker_cbs worker_cbs = {
    .ready = on_worker_ready,
    .fail = on_worker_fail,
    .requeue = on_worker_requeue,
    .handed_back = on_worker_handed_back,
    .routable = on_worker_routable,
    .draining = on_worker_draining,
    .stop_coming = on_worker_stop_coming,
    .late = on_worker_late,
    .pressure = on_worker_pressure,
    .lost = on_worker_lost,
    .room = on_worker_room,
    .gone = on_worker_gone,
};

bool up_gens_reaped(struct up_gens *gs, pid_t pid, int status)
{
    struct up_list *p, *t, *q, *u;
    for_each_gen(p, t, gs)
    {
        up_list_for_each_safe(q, u, &GEN(p)->workers)
        {
            struct up_mworker *w = WORKER(q);
            if (w->pid == pid) {
                up_mworker_reaped(w, status); /* may free w and its generation */
                return true;
            }
        }
    }
    return false;
}

/* The worker pid is (or, with descendants, the worker pid descends from,
 * by its parents or its process group), of every generation; NULL if
 * none. */
static struct up_mworker *find_worker(struct up_gens *gs, const struct up_notice *n,
                                      bool descendants)
{
    struct up_list *p, *t, *q, *u;
    for_each_gen(p, t, gs)
    {
        up_list_for_each_safe(q, u, &GEN(p)->workers)
        {
            struct up_mworker *w = WORKER(q);
            /* pid_was: one reaped whose last words (STOPPING=1) came after. */
            bool match = w->pid_was == n->pid;
            if (!match && descendants && w->pid > 0) {
                match = n->pgid == w->pid;
                for (int i = 0; i < n->nancestors && !match; i++) {
                    match = n->ancestors[i] == w->pid;
                }
            }
            if (match) {
                return w;
            }
        }
    }
    return NULL;
}

bool up_gens_notice(struct up_gens *gs, const struct up_notice *n, bool descendants)
{
    struct up_mworker *w = find_worker(gs, n, descendants);
    if (w == NULL) {
        return false;
    }
    up_mworker_notice(w, n); /* may report ready or draining: reconcile runs there */
    return true;
}

/* ---- reload and stop ---- */

int up_gens_reload(struct up_gens *gs, const char *why)
{
    if (gs->stopping) {
        up_log(UP_LOG_INFO, "%s: ignoring reload, stopping", why);
        return -ECANCELED;
    }
    if (!make_room(gs)) {
        /* Reloads asked for meanwhile coalesce: the latest code wins. */
        if (!gs->reload_pending) {
            up_log(UP_LOG_INFO, "%s: reload deferred until old workers exit", why);
        }
        gs->reload_pending = true;
        return 1;
    }
    gs->reload_pending = false;
    if (gs->next_id > 0) { /* the first generation is a start, not a reload */
        up_log(UP_LOG_INFO, "%s: reloading", why);
    }
    return start_gen(gs, false);
}

int up_gens_upgrade(struct up_gens *gs, const struct up_kind_params *heir)
{
    if (gs->stopping) {
        return -ECANCELED;
    }
    gs->heir_spawn = *heir;
    return start_gen(gs, true);
}

struct up_mworker *up_gens_heir(const struct up_gens *gs)
{
    const struct up_list *p;
    for (p = gs->list.next; p != &gs->list; p = p->next) {
        const struct up_gen *g = GEN(p);
        if (g->heir && g->nworkers > 0 &&
            (g->state == UP_GEN_STARTING || g->state == UP_GEN_ACTIVE)) {
            return WORKER(g->workers.next);
        }
    }
    return NULL;
}

void up_gens_let_go(struct up_gens *gs)
{
    struct up_mworker *w = up_gens_heir(gs);
    gs->stopping = true;
    gs->reload_pending = false;
    if (w != NULL) {
        up_mworker_let_go(w); /* gone, and its generation freed, once its channel ends */
    }
}

/* g could not even start (no worker runs): report it and free it. Off
 * the list first: what failed() and none() make the owner do (stop the
 * set, which frees every empty generation on it) must not free it too. */
static void fail_unstarted(struct up_gen *g, const char *why)
{
    struct up_gens *gs = g->set;
    up_list_remove(&g->link);
    gen_fail(g, why);
    gen_free(g);
    up_gens_reconcile(gs);
}

/* Start generation next_id + 1: the app's workers, or the heir. */
static int start_gen(struct up_gens *gs, bool heir)
{
    const struct up_kind_params *spawn = heir ? &gs->heir_spawn : &gs->opts->spawn;
    long want = heir ? 1 : gs->opts->workers;
    struct up_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        up_log(UP_LOG_ERR, "reload failed: out of memory");
        return -ENOMEM;
    }
    g->set = gs;
    g->heir = heir;
    g->snap.fd = -1;
    g->id = ++gs->next_id;
    g->want = UP_GEN_WANT_SERVE;
    g->started_at = up_loop_now(gs->loop);
    g->ready_timer.cb = on_ready_timeout;
    g->respawn_timer.cb = on_respawn;
    up_list_init(&g->workers);
    /* The latest code wins: a generation still starting is abandoned. */
    struct up_list *p, *t;
    for_each_gen(p, t, gs)
    {
        char reason[64];
        snprintf(reason, sizeof(reason), "superseded by generation %u", g->id);
        gen_abandon(GEN(p), reason);
    }
    up_list_push_front(&gs->list, &g->link);
    gs->stats.reloads++;
    char reason[600];
    int r = up_kind_prepare(spawn, g->id, gs->opts->snap_dir, &g->snap, reason, sizeof(reason));
    if (r < 0) {
        fail_unstarted(g, reason);
        return r;
    }
    if (g->snap.file) {
        /* No memfd to be had (kind.c): the disk, then. */
        up_log(UP_LOG_INFO, "generation %u: the app's snapshot is a file, %s (no memfd: %s)", g->id,
               g->snap.path, strerror(-g->snap.memfd_err));
    }
    if (heir) {
        up_log(UP_LOG_INFO, "starting generation %u: a new master, %s", g->id, g->snap.path);
    } else {
        up_log(UP_LOG_INFO, "starting generation %u: %ld worker%s", g->id, want,
               want == 1 ? "" : "s");
    }
    for (long i = 0; i < want; i++) {
        (void)add_worker(g, false);
    }
    if (g->nworkers == 0) {
        fail_unstarted(g, "no worker could be started");
        return -EAGAIN;
    }
    /* Some could not start (fork failing, no fds): the rest serve, and the
     * missing ones are retried once the generation is active. */
    g->respawn_due = (unsigned)want - g->nworkers;
    up_timer_start(gs->loop, &g->ready_timer, gs->opts->ready_timeout_ms);
    up_gens_reconcile(gs);
    return 0;
}

void up_gens_stop(struct up_gens *gs, bool graceful)
{
    gs->stopping = true;
    gs->reload_pending = false;
    struct up_list *p, *t;
    for_each_gen(p, t, gs)
    {
        struct up_gen *g = GEN(p);
        up_timer_stop(gs->loop, &g->respawn_timer);
        g->respawn_due = 0;
        if (!graceful) {
            want_kill(g, up_kind_quit_signal(gs->opts->spawn.kind));
        } else if (g->state == UP_GEN_ACTIVE || g->state == UP_GEN_DRAINING) {
            /* Idle connections are closed, not handed back: nobody takes
             * them now. */
            want_drain(g, UP_DRAIN_F_STOP);
        } else {
            gen_abandon(g, "stopping");
            want_kill(g, SIGKILL);
        }
        if (g->nworkers == 0) {
            gen_free(g);
        }
    }
    gs->active = NULL;
    up_gens_reconcile(gs);
}

void up_gens_kill_all(struct up_gens *gs, int sig)
{
    struct up_list *p, *t;
    for_each_gen(p, t, gs)
    {
        want_kill(GEN(p), sig);
    }
    up_gens_reconcile(gs);
}

/* ---- picking a worker ---- */

struct up_mworker *up_gens_pick(struct up_gens *gs, pid_t avoid)
{
    struct up_gen *g = gs->active;
    if (g == NULL || g->nworkers == 0) {
        return NULL;
    }
    /* Round-robin: start after the last pick; skip what cannot take one. */
    for (unsigned tries = 0; tries < g->nworkers; tries++) {
        unsigned k = g->rr++ % g->nworkers;
        struct up_list *p = g->workers.next;
        for (unsigned i = 0; i < k && p != &g->workers; i++) {
            p = p->next;
        }
        if (p != &g->workers && up_mworker_routable(WORKER(p)) && WORKER(p)->pid != avoid) {
            return WORKER(p);
        }
    }
    return NULL;
}

struct up_mworker *up_gens_pick_key(struct up_gens *gs, uint64_t key, pid_t avoid)
{
    struct up_gen *g = gs->active;
    if (g == NULL) {
        return NULL;
    }
    /* Rendezvous hashing over the routable workers' indexes (sticky.h). */
    unsigned indexes[g->nworkers + 1];
    struct up_mworker *workers[g->nworkers + 1];
    size_t n = 0;
    for (struct up_list *p = g->workers.next; p != &g->workers && n < g->nworkers; p = p->next) {
        struct up_mworker *w = WORKER(p);
        if (up_mworker_routable(w) && w->pid != avoid) {
            indexes[n] = w->index;
            workers[n++] = w;
        }
    }
    return n > 0 ? workers[up_sticky_pick(key, indexes, n)] : NULL;
}

struct up_mworker *up_gens_pick_index(struct up_gens *gs, unsigned index, pid_t avoid)
{
    struct up_gen *g = gs->active;
    for (struct up_list *p = g != NULL ? g->workers.next : NULL; p != NULL && p != &g->workers;
         p = p->next) {
        struct up_mworker *w = WORKER(p);
        if (w->index == index && up_mworker_routable(w) && w->pid != avoid) {
            return w;
        }
    }
    return NULL;
}

/* ---- what the owner asks ---- */

void up_gens_counts(const struct up_gens *gs, struct up_gens_counts *ret)
{
    *ret = (struct up_gens_counts){0};
    const struct up_gen *g = gs->active;
    for (const struct up_list *p = g != NULL ? g->workers.next : NULL;
         p != NULL && p != &g->workers; p = p->next) {
        const struct up_mworker *w = WORKER(p);
        bool r = up_mworker_ready(w);
        ret->ready += r;
        ret->with_fds += r && !w->fd_pressure;
        ret->stalled += r && up_mworker_stalled_ms(w) > 0;
    }
}

void up_gens_resume_rx(struct up_gens *gs)
{
    struct up_list *p, *t, *q, *u;
    for_each_gen(p, t, gs)
    {
        up_list_for_each_safe(q, u, &GEN(p)->workers)
        {
            up_mworker_resume_rx(WORKER(q));
        }
    }
}

void up_gens_alog_totals(const struct up_gens *gs, uint64_t *ret_lines, uint64_t *ret_dropped)
{
    uint64_t lines = gs->stats.alog_lines_gone, dropped = gs->stats.alog_dropped_gone;
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        for (const struct up_list *q = GEN(p)->workers.next; q != &GEN(p)->workers; q = q->next) {
            lines += WORKER(q)->alog_lines;
            dropped += WORKER(q)->alog_dropped;
        }
    }
    *ret_lines = lines;
    *ret_dropped = dropped;
}

void up_gens_reopen(struct up_gens *gs)
{
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        for (struct up_list *q = GEN(p)->workers.next; q != &GEN(p)->workers; q = q->next) {
            up_mworker_reopen(WORKER(q));
        }
    }
}

void up_gens_totals(const struct up_gens *gs, unsigned *ret_workers, unsigned long long *ret_conns)
{
    unsigned total = 0;
    unsigned long long held = 0;
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        for (const struct up_list *q = GEN(p)->workers.next; q != &GEN(p)->workers; q = q->next) {
            total++;
            held += WORKER(q)->conns;
        }
    }
    *ret_workers = total;
    *ret_conns = held;
}
