/*
 * gen, alone: the generations and their workers, with real processes (the
 * fake worker, told what to do by FAKE_MODE, which each spawn inherits) and
 * a fake owner that counts what the set reports. Reaping is the owner's: a
 * timer here waits for our children and reports them.
 */
#include <criterion/criterion.h>

#include "../lib/testlib.h"
#include "../lib/testloop.h"
#include "gen.h"
#include "pending.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define GEN_OF(pos) up_container_of(pos, struct up_gen, link)
#define WORKER_OF(pos) up_container_of(pos, struct up_mworker, gen_link)

struct gt {
    struct up_loop *loop;
    struct up_gens gs;
    struct up_gens_opts opts;
    struct up_pendings set;
    struct up_timer reaper;
    char dir[64];
    int actives, fails, nones, handed_back;
    int want_actives;           /* for activated() */
    unsigned active_id, old_id; /* the last active() */
    char fail_reason[1024];     /* the last failed() */
};

static struct gt *the; /* for the timer */

static void g_active(struct up_gens *gs, struct up_gen *g, struct up_gen *old)
{
    struct gt *t = gs->ctx;
    t->actives++;
    t->active_id = g->id;
    t->old_id = old != NULL ? old->id : 0;
}

static void g_failed(struct up_gens *gs, struct up_gen *g)
{
    struct gt *t = gs->ctx;
    t->fails++;
    snprintf(t->fail_reason, sizeof(t->fail_reason), "%s", g->fail_reason);
}

static bool stop_on_none; /* none() stops the set, as the server does at start */

static void g_none(struct up_gens *gs)
{
    ((struct gt *)gs->ctx)->nones++;
    if (stop_on_none) {
        up_gens_stop(gs, false);
    }
}

static void g_requeue(struct up_gens *gs, struct up_pending *c)
{
    (void)gs;
    up_pending_answer(c, 503, "requeued");
}

static void g_handed_back(struct up_gens *gs, int fd, const char *data, size_t len, unsigned tries,
                          pid_t from)
{
    (void)data, (void)len, (void)tries, (void)from;
    ((struct gt *)gs->ctx)->handed_back++;
    close(fd);
}

static void g_nothing(struct up_gens *gs)
{
    (void)gs;
}

static bool g_room(struct up_gens *gs)
{
    (void)gs;
    return true;
}

static bool stop_coming; /* what the owner says when asked */

static bool g_stop_coming(struct up_gens *gs)
{
    (void)gs;
    return stop_coming;
}

static const struct up_gens_cbs gcbs = {
    .active = g_active,
    .failed = g_failed,
    .none = g_none,
    .requeue = g_requeue,
    .handed_back = g_handed_back,
    .routable = g_nothing,
    .room = g_room,
    .lost = g_nothing,
    .changed = g_nothing,
    .stop_coming = g_stop_coming,
};

/* A ready connection goes to a worker of the active generation. */
static void p_ready(struct up_pendings *set, struct up_pending *c, const struct up_head *head)
{
    (void)head;
    struct gt *t = set->ctx;
    struct up_mworker *w = up_gens_pick(&t->gs, 0);
    cr_assert_not_null(w, "no worker to send to");
    up_mworker_send_conn(w, c);
}

static void p_freed(struct up_pendings *set)
{
    (void)set;
}

static const struct up_pending_cbs pcbs = {.ready = p_ready, .freed = p_freed};

static void reap(struct up_loop *loop, struct up_timer *timer)
{
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        cr_assert(up_gens_reaped(&the->gs, pid, status), "pid %d is not a worker", (int)pid);
    }
    up_timer_start(loop, timer, 10);
}

static void gt_init(struct gt *t, long workers, const char *mode)
{
    memset(t, 0, sizeof(*t));
    the = t;
    setenv("FAKE_MODE", mode, 1);
    snprintf(t->dir, sizeof(t->dir), "/tmp/up-test-gen.XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
    t->loop = up_test_new_loop(UP_BACKEND_EPOLL);
    t->opts = (struct up_gens_opts){
        .snap_dir = t->dir,
        .workers = workers,
        .max_draining = 1,
        .drain_timeout_ms = 5000,
        .ready_timeout_ms = 2000,
        .respawn = true,
        .spawn = {.bin = up_test_bin("tools/fake-worker"),
                  .app = up_test_bin("tools/fake-worker"), /* any file: it is only copied */
                  .title = "up-test",
                  .max_head = 16384},
    };
    up_gens_init(&t->gs, t->loop, &t->opts, &gcbs, t);
    up_pendings_init(&t->set, t->loop, 16384, 5000, 64, &pcbs, t);
    t->reaper.cb = reap;
    up_timer_start(t->loop, &t->reaper, 10);
}

static unsigned ngens(const struct gt *t)
{
    unsigned n = 0;
    for (const struct up_list *p = t->gs.list.next; p != &t->gs.list; p = p->next) {
        n++;
    }
    return n;
}

static struct up_gen *gen(struct gt *t, unsigned id)
{
    for (struct up_list *p = t->gs.list.next; p != &t->gs.list; p = p->next) {
        if (GEN_OF(p)->id == id) {
            return GEN_OF(p);
        }
    }
    return NULL;
}

static unsigned ready_workers(const struct gt *t)
{
    struct up_gens_counts n;
    up_gens_counts(&t->gs, &n);
    return n.ready;
}

/* Run the loop until cond(t) holds, for at most ms. */
static bool run_until(struct gt *t, int ms, bool (*cond)(struct gt *t))
{
    int done = 0;
    for (int waited = 0; waited < ms && !cond(t); waited += 10) {
        up_test_run_for(t->loop, 10, &done, -1);
    }
    return cond(t);
}

static bool all_ready(struct gt *t)
{
    return ready_workers(t) == (unsigned)t->opts.workers;
}

static bool activated(struct gt *t)
{
    return t->actives >= t->want_actives && all_ready(t);
}

static bool one_gen(struct gt *t)
{
    return ngens(t) == 1;
}

static bool empty(struct gt *t)
{
    return up_gens_empty(&t->gs);
}

static bool failed(struct gt *t)
{
    return t->fails > 0;
}

static bool no_pending(struct gt *t)
{
    return t->set.n == 0;
}

/* Stop without grace (SIGQUIT to every worker) and wait for them all. */
static void gt_fini(struct gt *t)
{
    up_gens_stop(&t->gs, false);
    cr_assert(run_until(t, 5000, empty), "workers left after stop");
    up_timer_stop(t->loop, &t->reaper);
    up_pendings_fini(&t->set);
    up_loop_free(t->loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    cr_assert_eq(system(cmd), 0);
    the = NULL;
}

/* Reload to workers in mode, and wait until that generation serves with
 * every worker ready. */
static void gt_serve(struct gt *t, const char *mode)
{
    setenv("FAKE_MODE", mode, 1);
    cr_assert_eq(up_gens_reload(&t->gs, "test"), 0);
    t->want_actives = t->actives + 1;
    cr_assert(run_until(t, 5000, activated), "generation %u did not serve", t->gs.next_id);
}

Test(gen, reload_activates_and_the_old_one_drains_away, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "good");
    cr_assert(!up_gens_expected(&t.gs));
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 0);
    cr_assert(up_gens_expected(&t.gs));
    cr_assert_eq(gen(&t, 1)->state, UP_GEN_STARTING);
    cr_assert(run_until(&t, 5000, all_ready));
    cr_assert_eq(t.actives, 1);
    cr_assert_eq(t.active_id, 1);
    cr_assert_eq(t.old_id, 0);
    cr_assert_eq(up_gens_count_workers(&t.gs), 2);
    /* One snapshot for the generation, in memory: nothing in the dir. */
    cr_assert_geq(gen(&t, 1)->snap.fd, 0, "no snapshot");
    cr_assert(!gen(&t, 1)->snap.file);
    char snap[128];
    snprintf(snap, sizeof(snap), "%s/gen-1.so", t.dir);
    cr_assert_eq(access(snap, F_OK), -1, "a snapshot file %s", snap);

    cr_assert_eq(up_gens_reload(&t.gs, "test"), 0);
    cr_assert(run_until(&t, 5000, one_gen), "generation 1 did not drain away");
    cr_assert_eq(t.actives, 2);
    cr_assert_eq(t.active_id, 2);
    cr_assert_eq(t.old_id, 1);
    cr_assert_null(gen(&t, 1));
    cr_assert_eq(gen(&t, 2)->state, UP_GEN_ACTIVE);
    cr_assert_eq(up_gens_count_workers(&t.gs), 2);
    cr_assert_eq(t.gs.stats.reloads, 2);
    cr_assert_eq(t.fails, 0);
    gt_fini(&t);
}

Test(gen, connections_go_to_the_active_generation, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "good");
    gt_serve(&t, "good");
    int clients[8];
    for (int i = 0; i < 8; i++) {
        int sv[2];
        up_test_pair(false, sv);
        static const char get[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        up_pending_handed_back_take(&t.set, sv[0], get, sizeof(get) - 1, 0, 0);
        clients[i] = sv[1];
    }
    /* Each was sent, ACKed, and its fd closed by the fake: gone here. */
    cr_assert(run_until(&t, 5000, no_pending), "%zu not acknowledged", t.set.n);
    for (int i = 0; i < 8; i++) {
        char c;
        cr_assert_eq(recv(clients[i], &c, 1, 0), 0, "connection %d still open", i);
        close(clients[i]);
    }
    gt_fini(&t);
}

Test(gen, a_failing_reload_keeps_the_old_generation, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "good");
    gt_serve(&t, "good");
    setenv("FAKE_MODE", "fail", 1);
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 0);
    cr_assert(run_until(&t, 5000, failed));
    cr_assert_str_eq(t.fail_reason, "fake: init failed");
    cr_assert(run_until(&t, 5000, one_gen), "the failed generation stays");
    cr_assert_eq(t.gs.active, gen(&t, 1));
    cr_assert_eq(gen(&t, 1)->state, UP_GEN_ACTIVE);
    cr_assert_eq(ready_workers(&t), 2);
    cr_assert_eq(t.actives, 1);
    cr_assert_eq(t.nones, 0);
    cr_assert_eq(t.gs.stats.reload_fails, 1);
    gt_fini(&t);
}

Test(gen, a_first_generation_that_fails_leaves_none, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "crash");
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 0);
    cr_assert(run_until(&t, 5000, failed));
    cr_assert(strstr(t.fail_reason, "status 2") != NULL, "%s", t.fail_reason);
    cr_assert(run_until(&t, 5000, empty));
    cr_assert_eq(t.nones, 1);
    cr_assert(!up_gens_expected(&t.gs));
    cr_assert_null(t.gs.active);
    gt_fini(&t);
}

/* A first generation none of whose workers can even be started (the
 * worker program cannot be run: a user without access to it), with an
 * owner that stops the set when nothing serves: reported and freed once. */
Test(gen, a_generation_no_worker_can_start_is_freed_once, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "good");
    stop_on_none = true;
    t.opts.spawn.bin = "/nonexistent/up-worker";
    cr_assert_lt(up_gens_reload(&t.gs, "test"), 0);
    stop_on_none = false;
    cr_assert_eq(t.fails, 1);
    cr_assert_eq(t.nones, 1);
    cr_assert_str_eq(t.fail_reason, "no worker could be started");
    cr_assert(up_gens_empty(&t.gs));
    cr_assert_eq(up_gens_count_workers(&t.gs), 0);
    gt_fini(&t);
}

Test(gen, a_stuck_init_fails_at_the_ready_timeout, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 1, "never");
    t.opts.ready_timeout_ms = 300;
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 0);
    cr_assert(run_until(&t, 5000, failed));
    cr_assert(strstr(t.fail_reason, "--ready-timeout") != NULL, "%s", t.fail_reason);
    cr_assert(run_until(&t, 5000, empty), "the stuck worker was not killed");
    gt_fini(&t);
}

Test(gen, a_dead_worker_is_replaced_in_its_place, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 3, "good");
    gt_serve(&t, "good");
    struct up_mworker *w1 = up_gens_pick_index(&t.gs, 1, 0);
    cr_assert_not_null(w1);
    pid_t old = w1->pid;
    cr_assert_eq(kill(old, SIGKILL), 0);
    int done = 0;
    up_test_run_for(t.loop, 50, &done, -1);
    cr_assert_eq(up_gens_count_workers(&t.gs), 2, "the dead one is still counted");
    cr_assert_null(up_gens_pick_index(&t.gs, 1, 0));
    cr_assert(run_until(&t, 5000, all_ready), "not replaced");
    struct up_mworker *again = up_gens_pick_index(&t.gs, 1, 0);
    cr_assert_not_null(again, "the replacement does not have index 1");
    cr_assert_neq(again->pid, old);
    cr_assert(again->respawned);
    cr_assert_eq(t.gs.stats.respawns, 1);
    cr_assert_eq(t.actives, 1, "a respawn is not a new generation");
    gt_fini(&t);
}

/* Past the budget ((max_draining + 1) x workers processes) a reload waits;
 * reloads asked meanwhile coalesce, and it starts by itself once the old
 * workers are gone. */
Test(gen, a_reload_past_the_budget_waits_for_room, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "hold");
    gt_serve(&t, "hold"); /* generation 1 ignores DRAIN */
    gt_serve(&t, "good");
    cr_assert_eq(t.active_id, 2);
    cr_assert_eq(gen(&t, 1)->state, UP_GEN_DRAINING);
    cr_assert_eq(up_gens_count_workers(&t.gs), 4);
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 1);
    cr_assert_eq(up_gens_reload(&t.gs, "test"), 1);
    cr_assert(gen(&t, 1)->shed, "the oldest draining generation was not told to shed");
    cr_assert_eq(t.gs.stats.reloads, 2);
    /* Generation 1's workers go: the waiting reload starts, once. */
    for (struct up_list *p = gen(&t, 1)->workers.next; p != &gen(&t, 1)->workers; p = p->next) {
        kill(WORKER_OF(p)->pid, SIGKILL);
    }
    cr_assert(run_until(&t, 5000, one_gen));
    cr_assert_eq(t.active_id, 3);
    cr_assert_eq(t.gs.stats.reloads, 3);
    cr_assert(!t.gs.reload_pending);
    gt_fini(&t);
}

/* A draining worker still there at its deadline plus the grace is killed. */
Test(gen, a_worker_that_will_not_drain_is_killed, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 1, "hold");
    t.opts.drain_timeout_ms = 200;
    gt_serve(&t, "hold");
    pid_t held = up_gens_pick(&t.gs, 0)->pid;
    gt_serve(&t, "good");
    cr_assert_eq(kill(held, 0), 0, "it should hold on past DRAIN");
    cr_assert(run_until(&t, 10000, one_gen), "the late worker was not killed");
    cr_assert_eq(kill(held, 0), -1);
    gt_fini(&t);
}

/* A graceful stop drains every generation; no respawn meanwhile. */
Test(gen, a_graceful_stop_drains_everything, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 2, "good");
    gt_serve(&t, "good");
    up_gens_stop(&t.gs, true);
    cr_assert_null(t.gs.active);
    cr_assert(!up_gens_expected(&t.gs));
    cr_assert_eq(up_gens_reload(&t.gs, "test"), -ECANCELED);
    cr_assert(run_until(&t, 5000, empty));
    cr_assert_eq(t.gs.stats.respawns, 0);
    gt_fini(&t);
}

/* A worker stopped by someone else (it says DRAINING) gets nothing more,
 * is told to drain (it leaves), and is replaced. */
Test(gen, a_worker_stopped_by_someone_else_is_drained_and_replaced, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 1, "leave");
    gt_serve(&t, "leave");
    setenv("FAKE_MODE", "good", 1); /* the replacement */
    pid_t old = up_gens_pick(&t.gs, 0)->pid;
    cr_assert_eq(kill(old, SIGTERM), 0);
    int done = 0;
    for (int i = 0; i < 100 && t.gs.stats.respawns == 0; i++) {
        up_test_run_for(t.loop, 10, &done, -1);
    }
    cr_assert_eq(t.gs.stats.respawns, 1, "not replaced");
    cr_assert(run_until(&t, 5000, all_ready), "the replacement is not ready");
    cr_assert_neq(up_gens_pick(&t.gs, 0)->pid, old, "routed to the worker that drains");
    for (int i = 0; i < 300 && kill(old, 0) == 0; i++) {
        up_test_run_for(t.loop, 10, &done, -1);
    }
    cr_assert_neq(kill(old, 0), 0, "it was never told to drain");
    gt_fini(&t);
}

/* The same DRAINING while a stop of the owner is coming (the signal went
 * to the whole process group or cgroup): the worker stays routable and
 * unreplaced, so that what the owner accepted finds it, until the stop
 * drains it. */
Test(gen, a_worker_stopped_with_its_owner_serves_until_the_stop, .timeout = 30)
{
    struct gt t;
    gt_init(&t, 1, "leave");
    gt_serve(&t, "leave");
    pid_t old = up_gens_pick(&t.gs, 0)->pid;
    stop_coming = true;
    cr_assert_eq(kill(old, SIGTERM), 0);
    int done = 0;
    up_test_run_for(t.loop, 300, &done, -1);
    struct up_mworker *w = up_gens_pick(&t.gs, 0);
    cr_assert_not_null(w, "no worker to route to");
    cr_assert_eq(w->pid, old);
    cr_assert_eq(t.gs.stats.respawns, 0);
    cr_assert_eq(kill(old, 0), 0, "it left before the stop");
    up_gens_stop(&t.gs, true);
    cr_assert(run_until(&t, 5000, empty), "the stop did not drain it");
    stop_coming = false;
    gt_fini(&t);
}
