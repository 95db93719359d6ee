#include "report.h"

#include "list.h"
#include "mworker.h"
#include "strbuf.h"

#include <stdbool.h>

#define GEN_OF(pos) up_container_of(pos, const struct up_gen, link)
#define WORKER_OF(pos) up_container_of(pos, const struct up_mworker, gen_link)

/* A worker reaped but whose channel is not yet read to its end: "exited". */
static const char *worker_state(const struct up_mworker *w)
{
    return w->pid > 0 ? up_mworker_state_name(w->state) : "exited";
}

size_t up_report_text(const struct up_report *r, char *buf, size_t cap)
{
    struct up_strbuf out = up_strbuf_on(buf, cap);
    up_strbuf_printf(&out, "master pid=%d state=%s backend=%s pending=%zu health=%s%s%s\n", r->pid,
                     r->state, r->backend, r->pending, r->health ? "degraded" : "ok",
                     r->health ? ": " : "", r->health ? r->health : "");
    const struct up_list *gl = &r->gens->list;
    for (const struct up_list *p = gl->next; p != gl; p = p->next) {
        const struct up_gen *g = GEN_OF(p);
        up_strbuf_printf(&out, "generation %u %s workers=%u\n", g->id, up_gen_state_name(g->state),
                         g->nworkers);
        for (const struct up_list *q = g->workers.next; q != &g->workers; q = q->next) {
            const struct up_mworker *w = WORKER_OF(q);
            up_strbuf_printf(&out, "  worker #%u pid=%d %s conns=%llu requests=%llu\n", w->index,
                             (int)w->pid, worker_state(w), (unsigned long long)w->conns,
                             (unsigned long long)w->requests);
        }
    }
    up_strbuf_printf(
        &out,
        "accepted=%llu handed=%llu rerouted=%llu handed_back=%llu answered=%llu reloads=%llu "
        "reload_failures=%llu respawns=%llu queue_timeouts=%llu shed=%llu lost=%llu\n",
        r->accepted, r->handed, r->rerouted, r->handed_back, r->answered, r->reloads,
        r->reload_failures, r->respawns, r->queue_timeouts, r->shed, r->lost);
    up_strbuf_printf(&out, "fd limit %llu, pending cap %zu\n", r->nofile, r->pending_cap);
    if (r->last_error[0] != '\0') {
        up_strbuf_printf(&out, "last error: %s\n", r->last_error);
    }
    if (r->log_dropped > 0) {
        up_strbuf_printf(&out, "log: %llu lines dropped\n", r->log_dropped);
    }
    return out.len;
}

static void json_gens(struct up_strbuf *out, const struct up_gens *gs, bool workers)
{
    up_strbuf_printf(out, "\"generations\":[");
    const char *sep = "";
    for (const struct up_list *p = gs->list.next; p != &gs->list; p = p->next) {
        const struct up_gen *g = GEN_OF(p);
        up_strbuf_printf(out, "%s{\"id\":%u,\"state\":\"%s\",\"workers\":%u", sep, g->id,
                         up_gen_state_name(g->state), g->nworkers);
        if (g->state == UP_GEN_FAILED && g->fail_reason[0] != '\0') {
            up_strbuf_printf(out, ",\"fail_reason\":");
            up_strbuf_json(out, g->fail_reason);
        }
        if (workers) {
            up_strbuf_printf(out, ",\"worker_list\":[");
            const char *wsep = "";
            for (const struct up_list *q = g->workers.next; q != &g->workers; q = q->next) {
                const struct up_mworker *w = WORKER_OF(q);
                up_strbuf_printf(out,
                                 "%s{\"index\":%u,\"pid\":%d,\"state\":\"%s\",\"conns\":%llu,"
                                 "\"requests\":%llu}",
                                 wsep, w->index, (int)w->pid, worker_state(w),
                                 (unsigned long long)w->conns, (unsigned long long)w->requests);
                wsep = ",";
            }
            up_strbuf_printf(out, "]");
        }
        up_strbuf_printf(out, "}");
        sep = ",";
    }
    up_strbuf_printf(out, "]");
}

static size_t json(const struct up_report *r, char *buf, size_t cap, bool workers)
{
    struct up_strbuf out = up_strbuf_on(buf, cap);
    up_strbuf_printf(
        &out, "{\"pid\":%d,\"state\":\"%s\",\"backend\":\"%s\",\"healthy\":%s,\"health\":", r->pid,
        r->state, r->backend, r->health ? "false" : "true");
    up_strbuf_json(&out, r->health ? r->health : "ok");
    up_strbuf_printf(&out, ",\"active_generation\":%u,",
                     r->gens->active != NULL ? r->gens->active->id : 0);
    json_gens(&out, r->gens, workers);
    if (!workers) {
        up_strbuf_printf(&out, ",\"workers_omitted\":true");
    }
    up_strbuf_printf(&out,
                     ",\"pending\":%zu,\"pending_cap\":%zu,\"fd_limit\":%llu,"
                     "\"counters\":{\"accepted\":%llu,\"handed\":%llu,\"rerouted\":%llu,"
                     "\"handed_back\":%llu,\"answered\":%llu,\"reloads\":%llu,"
                     "\"reload_failures\":%llu,\"respawns\":%llu,\"queue_timeouts\":%llu,"
                     "\"shed\":%llu,\"lost\":%llu,\"log_lines_dropped\":%llu},\"last_error\":",
                     r->pending, r->pending_cap, r->nofile, r->accepted, r->handed, r->rerouted,
                     r->handed_back, r->answered, r->reloads, r->reload_failures, r->respawns,
                     r->queue_timeouts, r->shed, r->lost, r->log_dropped);
    up_strbuf_json(&out, r->last_error);
    up_strbuf_printf(&out, "}\n");
    return out.cut ? 0 : out.len;
}

size_t up_report_json(const struct up_report *r, char *buf, size_t cap)
{
    size_t n = json(r, buf, cap, true);
    return n > 0 ? n : json(r, buf, cap, false);
}
