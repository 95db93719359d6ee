#include "metrics.h"

#include "asrv.h"
#include "gen.h"
#include "listen.h"
#include "log.h"
#include "master.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct up_metrics {
    struct up_master *m;
    struct up_asrv *srv;
};

struct appender {
    char *buf;
    size_t cap, len;
};

static void add(struct appender *a, const char *name, const char *type, const char *help,
                unsigned long long v)
{
    if (a->len >= a->cap) {
        return;
    }
    int n = snprintf(a->buf + a->len, a->cap - a->len, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
                     name, help, name, type, name, v);
    a->len += n > 0 ? (size_t)n : 0;
    if (a->len > a->cap) {
        a->len = a->cap;
    }
}

size_t up_metrics_text(const struct up_master *m, char *buf, size_t cap)
{
    struct appender a = {buf, cap, 0};
    const struct up_master_stats *s = &m->stats;
    unsigned ready = 0, total = 0;
    unsigned long long held = 0;
    for (const struct up_gen *g = m->gens; g != NULL; g = g->next) {
        for (const struct up_mworker *w = g->workers; w != NULL; w = w->next) {
            total++;
            ready += w->state == UP_MW_READY && w->pid > 0 && g == m->active;
            held += w->conns;
        }
    }
    add(&a, "up_connections_accepted_total", "counter", "Connections accepted.", s->accepted);
    add(&a, "up_connections_handed_total", "counter", "Connections a worker took.", s->handed);
    add(&a, "up_connections_rerouted_total", "counter",
        "Connections routed again after a worker died or was full.", s->rerouted);
    add(&a, "up_connections_handed_back_total", "counter",
        "Keep-Alive connections draining workers gave back.", s->handed_back);
    add(&a, "up_connections_answered_total", "counter",
        "Connections the master answered itself (400, 408, 431, 503).", s->answered);
    add(&a, "up_connections_pending", "gauge", "Connections not yet owned by a worker.",
        m->nmconns);
    add(&a, "up_worker_connections", "gauge", "Connections held by workers.", held);
    add(&a, "up_reloads_total", "counter", "Reloads started.", s->reloads);
    add(&a, "up_reload_failures_total", "counter", "Generations that failed to start.",
        s->reload_fails);
    add(&a, "up_respawns_total", "counter", "Workers replaced after dying.", s->respawns);
    add(&a, "up_connections_queue_timeouts_total", "counter",
        "Connections no worker could take within --queue-timeout (503 or closed).",
        s->queue_timeouts);
    add(&a, "up_connections_shed_total", "counter",
        "Incomplete request heads answered 408 early to make room (pending cap).", s->shed);
    add(&a, "up_connections_lost_total", "counter",
        "Connections handed back while the master was out of fds.", s->lost);
    add(&a, "up_healthy", "gauge",
        "1 when a worker of the active generation can take a connection.",
        up_master_health(m) == NULL);
    add(&a, "up_workers", "gauge", "Worker processes, every generation.", total);
    add(&a, "up_workers_ready", "gauge", "Workers taking new connections.", ready);
    add(&a, "up_generation", "gauge", "The generation taking new connections.",
        m->active ? m->active->id : 0);
    add(&a, "up_log_lines_dropped_total", "counter",
        "Log lines dropped because stderr was not writable.", up_log_lines_dropped());
    return a.len;
}

static bool head_complete(const char *buf, size_t len)
{
    (void)len;
    return strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL;
}

static size_t answer(void *ctx, char *buf, size_t len, size_t cap)
{
    struct up_metrics *mt = ctx;
    const struct up_master *m = mt->m;
    (void)len;
    char body[6144];
    size_t blen;
    int status = 200;
    const char *type = "text/plain; version=0.0.4";
    if (strncmp(buf, "GET /metrics ", 13) == 0) {
        blen = up_metrics_text(m, body, sizeof(body));
    } else if (strncmp(buf, "GET /healthz ", 13) == 0) {
        /* 503 while no worker can take a connection, so that a load
         * balancer sends its clients elsewhere meanwhile. */
        const char *why = up_master_health(m);
        status = why == NULL ? 200 : 503;
        type = "text/plain";
        blen = (size_t)snprintf(body, sizeof(body), "%s%s\n",
                                why == NULL ? "ok" : "degraded: ", why == NULL ? "" : why);
    } else {
        status = 404;
        type = "text/plain";
        blen = (size_t)snprintf(body, sizeof(body), "try /metrics or /healthz\n");
    }
    int n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%.*s",
                     status,
                     status == 200   ? "OK"
                     : status == 404 ? "Not Found"
                                     : "Unavailable",
                     type, blen, (int)blen, body);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
}

int up_metrics_open(struct up_master *m, const char *addr, struct up_metrics **ret)
{
    struct up_metrics *mt = calloc(1, sizeof(*mt));
    if (mt == NULL) {
        return -ENOMEM;
    }
    mt->m = m;
    struct up_listen_addr a;
    char err[256];
    int r = up_listen_parse(addr, &a, err, sizeof(err));
    if (r < 0) {
        up_log(UP_LOG_ERR, "--metrics: %s", err);
        free(mt);
        return r;
    }
    struct up_listen_opts o = {.backlog = 64};
    int fd = -1;
    r = up_listen_open(&a, &o, &fd);
    if (r == 0) {
        r = up_asrv_open_take(m->loop, fd, false, head_complete, answer, mt, &mt->srv);
    }
    if (r < 0) {
        up_log(UP_LOG_ERR, "--metrics: cannot listen on %s: %s", a.text, strerror(-r));
        free(mt);
        return r;
    }
    up_log(UP_LOG_INFO, "metrics on http://%s/metrics", a.text);
    *ret = mt;
    return 0;
}

void up_metrics_close(struct up_metrics *mt)
{
    if (mt != NULL) {
        up_asrv_close(mt->srv);
        free(mt);
    }
}
