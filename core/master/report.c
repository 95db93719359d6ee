#include "report.h"

#include "list.h"
#include "metrics.h"
#include "mworker.h"
#include "strbuf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
            up_strbuf_printf(&out, "  worker #%u pid=%d %s conns=%llu requests=%llu", w->index,
                             (int)w->pid, worker_state(w), (unsigned long long)w->conns,
                             (unsigned long long)w->requests);
            uint64_t stalled = up_mworker_stalled_ms(w);
            if (stalled > 0) {
                up_strbuf_printf(&out, " stalled=%llums", (unsigned long long)stalled);
            }
            /* What an --exec worker said last (STATUS=, kept printable). */
            up_strbuf_printf(&out, w->status_text[0] != '\0' ? " status=\"%s\"\n" : "\n",
                             w->status_text);
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
    if (r->alog_lines > 0) {
        up_strbuf_printf(&out, "access log: %llu lines, %llu dropped\n", r->alog_lines,
                         r->alog_dropped);
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
                                 "\"requests\":%llu",
                                 wsep, w->index, (int)w->pid, worker_state(w),
                                 (unsigned long long)w->conns, (unsigned long long)w->requests);
                if (w->status_text[0] != '\0') {
                    up_strbuf_printf(out, ",\"status\":");
                    up_strbuf_json(out, w->status_text);
                }
                up_strbuf_printf(out, "}");
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
                     "\"shed\":%llu,\"lost\":%llu,\"log_lines_dropped\":%llu,"
                     "\"access_log_lines\":%llu,\"access_log_dropped\":%llu},\"last_error\":",
                     r->pending, r->pending_cap, r->nofile, r->accepted, r->handed, r->rerouted,
                     r->handed_back, r->answered, r->reloads, r->reload_failures, r->respawns,
                     r->queue_timeouts, r->shed, r->lost, r->log_dropped, r->alog_lines,
                     r->alog_dropped);
    up_strbuf_json(&out, r->last_error);
    up_strbuf_printf(&out, "}\n");
    return out.cut ? 0 : out.len;
}

size_t up_report_json(const struct up_report *r, char *buf, size_t cap)
{
    size_t n = json(r, buf, cap, true);
    return n > 0 ? n : json(r, buf, cap, false);
}

/* Workers of every generation by state, each a sample with its labels
 * (written into labels, cap bytes). Returns how many samples. */
static size_t worker_samples(const struct up_report *r, struct up_metric *v, size_t cap,
                             char (*labels)[48])
{
    static const enum up_mworker_state states[] = {UP_MW_STARTING, UP_MW_READY, UP_MW_DRAINING};
    size_t n = 0;
    const struct up_list *gl = &r->gens->list;
    for (const struct up_list *p = gl->next; p != gl; p = p->next) {
        const struct up_gen *g = GEN_OF(p);
        for (size_t s = 0; s < sizeof(states) / sizeof(states[0]) && n < cap; s++) {
            unsigned count = 0;
            for (const struct up_list *q = g->workers.next; q != &g->workers; q = q->next) {
                const struct up_mworker *w = WORKER_OF(q);
                count += w->pid > 0 && w->state == states[s];
            }
            if (count == 0) {
                continue;
            }
            snprintf(labels[n], sizeof(labels[n]), "generation=\"%u\",state=\"%s\"", g->id,
                     up_mworker_state_name(states[s]));
            v[n] = (struct up_metric){
                "up_workers", "gauge", "Worker processes by generation and state.",
                labels[n],    count,   NULL};
            n++;
        }
    }
    if (n == 0 && cap > 0) {
        /* An empty gauge still says that there are none. */
        v[n++] = (struct up_metric){
            "up_workers", "gauge", "Worker processes by generation and state.", NULL, 0, NULL};
    }
    return n;
}

size_t up_report_metrics(const struct up_report *r, char *buf, size_t cap)
{
    enum { MAX_WORKER_SAMPLES = 3 * 70 };
    struct up_metric v[40 + MAX_WORKER_SAMPLES];
    char labels[MAX_WORKER_SAMPLES][48];
    const struct up_metric fixed[] = {
        {"up_connections_accepted_total", "counter", "Connections accepted.", NULL, r->accepted,
         NULL},
        {"up_connections_handed_total", "counter", "Connections a worker took.", NULL, r->handed,
         NULL},
        {"up_connections_rerouted_total", "counter",
         "Connections routed again after a worker died or was full.", NULL, r->rerouted, NULL},
        {"up_connections_handed_back_total", "counter",
         "Keep-Alive connections draining workers gave back.", NULL, r->handed_back, NULL},
        {"up_connections_answered_total", "counter",
         "Connections the master answered itself (400, 408, 431, 503, middleware).", NULL,
         r->answered, NULL},
        {"up_connections_queue_timeouts_total", "counter",
         "Connections no worker could take within --queue-timeout (503 or closed).", NULL,
         r->queue_timeouts, NULL},
        {"up_connections_shed_total", "counter",
         "Incomplete request heads answered 408 early to make room (pending cap).", NULL, r->shed,
         NULL},
        {"up_connections_lost_total", "counter",
         "Connections handed back while the master was out of fds.", NULL, r->lost, NULL},
        {"up_connections_pending", "gauge", "Connections not yet owned by a worker.", NULL,
         (double)r->pending, NULL},
        {"up_worker_connections", "gauge", "Connections held by workers.", NULL, r->held, NULL},
        {"up_handoff_duration_seconds", "histogram",
         "From accepting a connection to a worker taking it.", NULL, 0, r->handoff},
        {"up_reloads_total", "counter", "Reloads started.", NULL, r->reloads, NULL},
        {"up_reload_failures_total", "counter", "Generations that failed to start.", NULL,
         r->reload_failures, NULL},
        {"up_reload_duration_seconds", "histogram",
         "From a reload's request to its generation serving.", NULL, 0, r->reload},
        {"up_respawns_total", "counter", "Workers replaced after dying.", NULL, r->respawns, NULL},
        {"up_healthy", "gauge", "1 when a worker of the active generation can take a connection.",
         NULL, r->health == NULL, NULL},
        {"up_workers_ready", "gauge", "Workers of the active generation taking connections.", NULL,
         r->workers.ready, NULL},
        {"up_workers_stalled", "gauge",
         "Workers of the active generation that took nothing for 100 ms while connections "
         "waited for them (a handler blocking its loop): routed around.",
         NULL, r->workers.stalled, NULL},
        {"up_generation", "gauge", "The generation taking new connections.", NULL,
         r->gens->active ? r->gens->active->id : 0, NULL},
        {"up_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr was not writable.", NULL, r->log_dropped, NULL},
        {"up_access_log_lines_total", "counter", "Access log lines the workers wrote or dropped.",
         NULL, r->alog_lines, NULL},
        {"up_access_log_dropped_total", "counter",
         "Access log lines dropped because the log did not take them (a stuck pipe, a full "
         "disk).",
         NULL, r->alog_dropped, NULL},
        {"process_open_fds", "gauge", "Open file descriptors of the master.", NULL, r->open_fds,
         NULL},
        {"process_max_fds", "gauge", "The master's limit on open file descriptors.", NULL,
         r->max_fds, NULL},
        {"process_resident_memory_bytes", "gauge", "Resident memory of the master.", NULL,
         r->rss_bytes, NULL},
        {"process_cpu_seconds_total", "counter", "CPU time of the master, user and system.", NULL,
         r->cpu_seconds, NULL},
        {"process_start_time_seconds", "gauge",
         "When the master started, in seconds since the Unix epoch.", NULL, r->start_seconds, NULL},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        /* What /proc could not tell is left out, not shown as -1. */
        if (strncmp(fixed[i].name, "process_", 8) != 0 || fixed[i].value >= 0) {
            v[n++] = fixed[i];
        }
    }
    n += worker_samples(r, v + n, MAX_WORKER_SAMPLES, labels);
    return up_metrics_format(v, n, buf, cap);
}
