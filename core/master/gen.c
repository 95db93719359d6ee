/*
 * gen: generations of workers. See gen.h for the state diagrams.
 */
#include "gen.h"

#include "fd.h"
#include "log.h"
#include "master.h"
#include "mconn.h"
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Respawn back-off: 100 ms doubling per death in a row, up to 10 s. A
 * worker that stayed up STABLE_MS ends the streak. */
#define RESPAWN_BASE_MS 100
#define RESPAWN_MAX_MS 10000
#define STABLE_MS 10000

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

unsigned up_gen_count_workers(const struct up_master *m)
{
    unsigned n = 0;
    for (const struct up_gen *g = m->gens; g != NULL; g = g->next) {
        n += g->nworkers;
    }
    return n;
}

/* Copy the app into the private snapshot directory, so that rewriting it in
 * place cannot change what this generation loads. The copy is a short
 * blocking file operation, done once per reload. */
static int snapshot(struct up_gen *g)
{
    struct up_master *m = g->m;
    snprintf(g->app, sizeof(g->app), "%s/gen-%u.so", m->snap_dir, g->id);
    int src = open(m->cli->app, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        return -errno;
    }
    int dst = open(g->app, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    struct stat st;
    int r = dst < 0 || fstat(src, &st) < 0 ? -errno : 0;
    off_t off = 0;
    while (r == 0 && off < st.st_size) {
        ssize_t n = sendfile(dst, src, &off, (size_t)(st.st_size - off));
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
    }
    up_close(src);
    up_close(dst);
    return r;
}

static void gen_free(struct up_gen *g)
{
    struct up_master *m = g->m;
    struct up_gen **pp = &m->gens;
    while (*pp != NULL && *pp != g) {
        pp = &(*pp)->next;
    }
    if (*pp == g) {
        *pp = g->next;
    }
    if (m->active == g) {
        m->active = NULL;
    }
    up_timer_stop(m->loop, &g->ready_timer);
    up_timer_stop(m->loop, &g->respawn_timer);
    unlink(g->app);
    up_log(UP_LOG_DEBUG, "generation %u gone", g->id);
    free(g);
}

/* Start one worker. false if it could not be started (fork or exec
 * failed, fds ran out: logged). */
static bool add_worker(struct up_gen *g, unsigned index, bool respawned)
{
    struct up_mworker *w = up_mworker_spawn(g, index);
    if (w == NULL) {
        return false;
    }
    w->respawned = respawned;
    w->next = g->workers;
    g->workers = w;
    g->nworkers++;
    return true;
}

/* ---- failure and success ---- */

static void log_tails(const struct up_gen *g)
{
    for (const struct up_mworker *w = g->workers; w != NULL; w = w->next) {
        if (w->tail_len > 0) {
            up_log(UP_LOG_ERR, "generation %u worker #%u last output:\n%.*s", g->id, w->index,
                   (int)w->tail_len, w->tail);
            return; /* one worker's is enough: they run the same code */
        }
    }
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
    g->want = UP_GEN_WANT_STOP;
    snprintf(g->fail_reason, sizeof(g->fail_reason), "%s", why);
    up_timer_stop(g->m->loop, &g->ready_timer);
    up_log(UP_LOG_INFO, "generation %u abandoned: %s", g->id, why);
    up_gen_kill_all_of(g, SIGKILL);
}

static void gen_fail(struct up_gen *g, const char *why)
{
    struct up_master *m = g->m;
    if (g->state == UP_GEN_FAILED) {
        return;
    }
    set_state(g, UP_GEN_FAILED);
    g->want = UP_GEN_WANT_STOP;
    up_timer_stop(m->loop, &g->ready_timer);
    if (g->fail_reason[0] == '\0') {
        snprintf(g->fail_reason, sizeof(g->fail_reason), "%s", why);
    }
    m->stats.reload_fails++;
    snprintf(m->last_error, sizeof(m->last_error), "generation %u failed to start: %.900s", g->id,
             g->fail_reason);
    up_log(UP_LOG_ERR, "%s%s", m->last_error,
           m->active ? "; the running generation keeps serving" : "");
    if (m->active != NULL) {
        /* systemd waits for READY=1 after RELOADING=1, failed or not. */
        up_notify("READY=1\nSTATUS=reload failed; the running generation keeps serving");
    }
    log_tails(g);
    up_gen_kill_all_of(g, SIGKILL); /* never ready: it holds no connection */
    bool starting = false;
    for (struct up_gen *o = m->gens; o != NULL; o = o->next) {
        starting = starting || (o != g && o->state == UP_GEN_STARTING);
    }
    if (m->active == NULL && !starting) {
        up_master_no_generation(m);
    }
}

static void on_ready_timeout(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_gen *g = (struct up_gen *)((char *)t - offsetof(struct up_gen, ready_timer));
    char why[128];
    snprintf(why, sizeof(why), "no worker was ready within %llu ms (--ready-timeout)",
             (unsigned long long)g->m->cli->ready_timeout_ms);
    gen_fail(g, why);
}

/* Drain the generations past --max-draining at once: their idle
 * connections come back, so a reload storm cannot pile up processes. */
static void enforce_max_draining(struct up_master *m)
{
    int n = 0;
    for (struct up_gen *g = m->gens; g != NULL; g = g->next) {
        if (g->state == UP_GEN_DRAINING && ++n > m->cli->max_draining && !g->shed) {
            g->shed = true;
            up_log(UP_LOG_INFO,
                   "generation %u over --max-draining=%d: handing back its idle "
                   "connections now",
                   g->id, m->cli->max_draining);
            up_gen_stop(g, UP_DRAIN_F_SHED);
        }
    }
}

/* The cap on worker processes: the serving generation plus --max-draining
 * old ones, N each. A reload storm, or connections that outlive many
 * reloads, must not pile up processes and fds. */
static unsigned process_budget(const struct up_master *m)
{
    return (unsigned)(m->cli->max_draining + 1) * (unsigned)m->cli->workers;
}

bool up_gen_make_room(struct up_master *m)
{
    if (up_gen_count_workers(m) + (unsigned)m->cli->workers <= process_budget(m)) {
        return true;
    }
    /* A generation still starting is obsolete: a newer reload is waiting. */
    struct up_gen *oldest = NULL;
    bool shedding = false;
    for (struct up_gen *g = m->gens; g != NULL; g = g->next) {
        if (g->state == UP_GEN_STARTING) {
            gen_abandon(g, "superseded by a newer reload");
        } else if (g->state == UP_GEN_DRAINING) {
            shedding = shedding || g->shed;
            oldest = g->shed ? oldest : g;
        }
    }
    /* Make the oldest draining generation give its idle connections back
     * now (one at a time: its workers exit as soon as they hold none). */
    if (!shedding && oldest != NULL) {
        oldest->shed = true;
        up_log(UP_LOG_INFO,
               "%u workers alive, at the --max-draining budget of %u: generation %u hands "
               "back its idle connections now",
               up_gen_count_workers(m), process_budget(m), oldest->id);
        up_gen_stop(oldest, UP_DRAIN_F_SHED);
    }
    return false;
}

static uint64_t respawn_delay(const struct up_gen *g);

static void activate(struct up_gen *g)
{
    struct up_master *m = g->m;
    struct up_gen *old = m->active;
    set_state(g, UP_GEN_ACTIVE);
    up_timer_stop(m->loop, &g->ready_timer);
    m->active = g;
    m->last_error[0] = '\0';
    if (old != NULL) {
        up_log(UP_LOG_INFO, "generation %u serving; generation %u draining", g->id, old->id);
        up_gen_stop(old, m->cli->migrate_idle ? UP_DRAIN_F_MIGRATE_IDLE : 0);
    } else {
        up_log(UP_LOG_INFO, "generation %u serving", g->id);
    }
    enforce_max_draining(m);
    if (g->respawn_due > 0 && m->cli->respawn) {
        g->crash_streak++;
        up_timer_start(m->loop, &g->respawn_timer, respawn_delay(g));
    }
    up_master_generation_active(m);
}

void up_gen_worker_ready(struct up_mworker *w)
{
    struct up_gen *g = w->gen;
    if (w->state != UP_MW_STARTING) {
        return;
    }
    w->state = UP_MW_READY;
    up_log(UP_LOG_DEBUG, "worker g%u#%u pid=%d ready", g->id, w->index, (int)w->pid);
    if (g->m->state == UP_MASTER_STOPPING) {
        return; /* being stopped: nothing to activate */
    }
    if (g->state == UP_GEN_STARTING) {
        activate(g);
    } else if (g->state == UP_GEN_DRAINING) {
        up_mworker_drain(w); /* ready too late: the generation was replaced */
        return;
    }
    up_master_check_health(g->m);
    up_mconn_route_queued(g->m);
}

/* ---- respawn ---- */

/* The back-off for the current crash streak: 100 ms doubling, at most 10 s. */
static uint64_t respawn_delay(const struct up_gen *g)
{
    uint64_t delay = RESPAWN_BASE_MS;
    for (unsigned i = 1; i < g->crash_streak && delay < RESPAWN_MAX_MS; i++) {
        delay *= 2;
    }
    return delay > RESPAWN_MAX_MS ? RESPAWN_MAX_MS : delay;
}

/* Start the workers the generation is short of. One that cannot start now
 * (fork failing at a process limit, no fds) is retried with the back-off,
 * for as long as it takes: a generation left with no worker must not stay
 * "active" and silent. Meanwhile connections wait in the queue, at most
 * --queue-timeout each, and health says degraded. */
static void on_respawn(struct up_loop *loop, struct up_timer *t)
{
    (void)loop;
    struct up_gen *g = (struct up_gen *)((char *)t - offsetof(struct up_gen, respawn_timer));
    if (g->state != UP_GEN_ACTIVE || g->m->state == UP_MASTER_STOPPING) {
        g->respawn_due = 0;
        return;
    }
    while (g->respawn_due > 0) {
        /* The index is reused for logs only; any free number will do. */
        if (!add_worker(g, g->nworkers + g->respawn_due - 1, true)) {
            g->crash_streak++;
            uint64_t delay = respawn_delay(g);
            up_log(UP_LOG_WARN, "generation %u is %u worker%s short: retrying in %llu ms", g->id,
                   g->respawn_due, g->respawn_due == 1 ? "" : "s", (unsigned long long)delay);
            up_timer_start(g->m->loop, &g->respawn_timer, delay);
            up_master_check_health(g->m);
            return;
        }
        g->respawn_due--;
        g->m->stats.respawns++;
    }
}

/* w is leaving the active generation unasked (why, for the log): start a
 * replacement after the back-off. */
static void schedule_respawn(struct up_gen *g, const struct up_mworker *w, const char *why)
{
    struct up_master *m = g->m;
    /* The streak ends only when a worker stayed up: the time between two
     * deaths is no measure, since the back-off itself stretches it. */
    if (up_loop_now(m->loop) - w->spawned_at > STABLE_MS) {
        g->crash_streak = 0;
    }
    g->crash_streak++;
    uint64_t delay = respawn_delay(g);
    g->respawn_due++;
    if (!up_timer_armed(&g->respawn_timer)) {
        /* One line per back-off step, not one per death. */
        up_log(UP_LOG_WARN, "worker g%u#%u %s; respawning in %llu ms", g->id, w->index, why,
               (unsigned long long)delay);
        up_timer_start(m->loop, &g->respawn_timer, delay);
    }
}

void up_gen_worker_leaving(struct up_mworker *w)
{
    struct up_gen *g = w->gen;
    if (g->state == UP_GEN_ACTIVE && g->m->state != UP_MASTER_STOPPING && g->m->cli->respawn) {
        schedule_respawn(g, w, "drains on its own");
    }
    up_master_check_health(g->m);
}

/* ---- a worker's end ---- */

static void describe_exit(const struct up_mworker *w, char *buf, size_t cap)
{
    if (WIFSIGNALED(w->status)) {
        snprintf(buf, cap, "worker #%u was killed by signal %d (%s) before it was ready", w->index,
                 WTERMSIG(w->status), strsignal(WTERMSIG(w->status)));
    } else {
        snprintf(buf, cap, "worker #%u exited with status %d before it was ready", w->index,
                 WEXITSTATUS(w->status));
    }
}

void up_gen_worker_gone(struct up_mworker *w)
{
    struct up_gen *g = w->gen;
    struct up_master *m = g->m;
    bool was_ready = w->state == UP_MW_READY;
    char why[256];
    describe_exit(w, why, sizeof(why));
    if (g->state == UP_GEN_STARTING && m->state != UP_MASTER_STOPPING) {
        gen_fail(g, why); /* logs the tail: w is still on the list */
    } else if (g->state == UP_GEN_ACTIVE && m->state != UP_MASTER_STOPPING &&
               w->state != UP_MW_DRAINING && m->cli->respawn) {
        (void)was_ready;
        char how[64];
        snprintf(how, sizeof(how), "exited unexpectedly (%s %d)",
                 WIFSIGNALED(w->status) ? "signal" : "status",
                 WIFSIGNALED(w->status) ? WTERMSIG(w->status) : WEXITSTATUS(w->status));
        schedule_respawn(g, w, how);
    }
    struct up_mworker **pp = &g->workers;
    while (*pp != w) {
        pp = &(*pp)->next;
    }
    *pp = w->next;
    g->nworkers--;
    up_mworker_free(w);
    up_master_worker_freed(m);
    up_master_check_health(m);
    /* A generation with no worker left is done if it is not serving, or
     * if the master is stopping (a starting one is abandoned then). */
    if (g->nworkers == 0 && g->respawn_due == 0 &&
        (g->state == UP_GEN_DRAINING || g->state == UP_GEN_FAILED ||
         m->state == UP_MASTER_STOPPING)) {
        gen_free(g);
    }
    up_master_check_done(m);
}

void up_gen_reap(struct up_master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        bool found = false;
        for (struct up_gen *g = m->gens; g != NULL && !found; g = g->next) {
            for (struct up_mworker *w = g->workers; w != NULL; w = w->next) {
                if (w->pid == pid) {
                    found = true;
                    up_mworker_reaped(w, status); /* may free w and g */
                    break;
                }
            }
        }
        if (!found) {
            up_master_child_exited(m, pid, status);
        }
    }
}

/* ---- reload, drain, stop ---- */

struct up_gen *up_gen_start(struct up_master *m)
{
    struct up_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        up_log(UP_LOG_ERR, "reload failed: out of memory");
        return NULL;
    }
    g->m = m;
    g->id = ++m->next_gen;
    g->want = UP_GEN_WANT_SERVE;
    g->started_at = up_loop_now(m->loop);
    g->ready_timer.cb = on_ready_timeout;
    g->respawn_timer.cb = on_respawn;
    g->next = m->gens;
    m->gens = g;
    m->stats.reloads++;
    /* The latest code wins: a generation still starting is abandoned. */
    for (struct up_gen *o = g->next; o != NULL; o = o->next) {
        char why[64];
        snprintf(why, sizeof(why), "superseded by generation %u", g->id);
        gen_abandon(o, why);
    }
    int r = snapshot(g);
    if (r < 0) {
        char why[600];
        snprintf(why, sizeof(why), "cannot copy %s: %s", m->cli->app, strerror(-r));
        gen_fail(g, why);
        gen_free(g);
        return NULL;
    }
    up_log(UP_LOG_INFO, "starting generation %u: %ld workers", g->id, m->cli->workers);
    for (long i = 0; i < m->cli->workers; i++) {
        add_worker(g, (unsigned)i, false);
    }
    if (g->nworkers == 0) {
        gen_fail(g, "no worker could be started");
        gen_free(g);
        return NULL;
    }
    /* Some could not start (fork failing, no fds): the rest serve, and the
     * missing ones are retried once the generation is active. */
    g->respawn_due = (unsigned)m->cli->workers - g->nworkers;
    up_timer_start(m->loop, &g->ready_timer, m->cli->ready_timeout_ms);
    return g;
}

void up_gen_stop(struct up_gen *g, uint32_t flags)
{
    struct up_master *m = g->m;
    uint64_t deadline = up_loop_now(m->loop) + m->cli->drain_timeout_ms;
    if (g->state == UP_GEN_ACTIVE) {
        set_state(g, UP_GEN_DRAINING);
        g->drain_deadline = deadline;
    } else if (g->state != UP_GEN_DRAINING) {
        return;
    }
    g->want = UP_GEN_WANT_STOP;
    g->drain_flags |= flags;
    if (m->active == g) {
        m->active = NULL;
    }
    up_timer_stop(m->loop, &g->respawn_timer);
    g->respawn_due = 0;
    for (struct up_mworker *w = g->workers; w != NULL; w = w->next) {
        up_mworker_drain(w);
    }
    if (g->nworkers == 0) {
        gen_free(g);
    }
}

void up_gen_kill_all_of(struct up_gen *g, int sig)
{
    for (struct up_mworker *w = g->workers; w != NULL; w = w->next) {
        if (w->pid > 0) {
            kill(w->pid, sig);
        }
    }
}

void up_gen_kill_all(struct up_master *m, int sig)
{
    for (struct up_gen *g = m->gens; g != NULL; g = g->next) {
        up_gen_kill_all_of(g, sig);
    }
}

struct up_mworker *up_gen_pick(struct up_master *m, pid_t avoid)
{
    struct up_gen *g = m->active;
    if (g == NULL || g->nworkers == 0) {
        return NULL;
    }
    /* Round-robin: start after the last pick; skip what cannot take one. */
    for (unsigned tries = 0; tries < g->nworkers; tries++) {
        unsigned k = g->rr++ % g->nworkers;
        struct up_mworker *w = g->workers;
        for (unsigned i = 0; i < k && w != NULL; i++) {
            w = w->next;
        }
        if (w != NULL && up_mworker_routable(w) && w->pid != avoid) {
            return w;
        }
    }
    return NULL;
}

void up_gen_ready_counts(const struct up_master *m, unsigned *ret_ready, unsigned *ret_with_fds)
{
    unsigned ready = 0, with_fds = 0;
    const struct up_gen *g = m->active;
    for (const struct up_mworker *w = g != NULL ? g->workers : NULL; w != NULL; w = w->next) {
        bool r = w->state == UP_MW_READY && w->pid > 0 && !w->chan_dead;
        ready += r;
        with_fds += r && !w->fd_pressure;
    }
    *ret_ready = ready;
    *ret_with_fds = with_fds;
}

void up_gen_resume_rx(struct up_master *m)
{
    for (struct up_gen *g = m->gens; g != NULL && m->nmconns < m->max_pending; g = g->next) {
        for (struct up_mworker *w = g->workers; w != NULL; w = w->next) {
            up_mworker_resume_rx(w);
        }
    }
}
