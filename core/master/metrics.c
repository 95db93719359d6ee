#include "metrics.h"

#include "asrv.h"
#include "fd.h"
#include "listen.h"
#include "log.h"
#include "strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct up_metrics {
    const struct up_metrics_cbs *cbs;
    void *ctx;
    struct up_asrv *srv;
};

static void format_hist(struct up_strbuf *out, const struct up_metric *m)
{
    const struct up_hist *h = m->hist;
    const char *sep = m->labels != NULL ? "," : "";
    const char *labels = m->labels != NULL ? m->labels : "";
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= h->n; b++) {
        cumulative += h->counts[b];
        if (b < h->n) {
            up_strbuf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", m->name, labels, sep,
                             h->bounds[b], (unsigned long long)cumulative);
        } else {
            up_strbuf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", m->name, labels, sep,
                             (unsigned long long)cumulative);
        }
    }
    const char *open = m->labels != NULL ? "{" : "";
    const char *close = m->labels != NULL ? "}" : "";
    up_strbuf_printf(out, "%s_sum%s%s%s %.9g\n", m->name, open, labels, close, h->sum);
    up_strbuf_printf(out, "%s_count%s%s%s %llu\n", m->name, open, labels, close,
                     (unsigned long long)h->count);
}

size_t up_metrics_format(const struct up_metric *v, size_t count, char *buf, size_t cap)
{
    struct up_strbuf out = up_strbuf_on(buf, cap);
    for (size_t i = 0; i < count; i++) {
        const struct up_metric *m = &v[i];
        if (i == 0 || strcmp(v[i - 1].name, m->name) != 0) {
            up_strbuf_printf(&out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                             m->type);
        }
        if (m->hist != NULL) {
            format_hist(&out, m);
        } else if (m->labels != NULL) {
            up_strbuf_printf(&out, "%s{%s} %.17g\n", m->name, m->labels, m->value);
        } else {
            up_strbuf_printf(&out, "%s %.17g\n", m->name, m->value);
        }
    }
    return out.cut ? 0 : out.len;
}

static bool head_complete(const char *buf, size_t len)
{
    (void)len;
    return strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL;
}

static size_t answer(void *ctx, uint64_t id, char *buf, size_t len, size_t cap)
{
    struct up_metrics *mt = ctx;
    (void)id, (void)len;
    /* The loop is single-threaded, and the page is copied out at once. */
    static char body[UP_ASRV_BUF - 256];
    size_t blen;
    int status = 200;
    const char *type = "text/plain; version=0.0.4";
    if (strncmp(buf, "GET /metrics ", 13) == 0) {
        blen = mt->cbs->page(mt->ctx, body, sizeof(body));
        if (blen == 0) {
            status = 500;
            type = "text/plain";
            blen = (size_t)snprintf(body, sizeof(body), "the metrics do not fit the page\n");
        }
    } else if (strncmp(buf, "GET /healthz ", 13) == 0) {
        /* 503 while no worker can take a connection, so that a load
         * balancer sends its clients elsewhere meanwhile. */
        const char *why = mt->cbs->health(mt->ctx);
        status = why == NULL ? 200 : 503;
        type = "text/plain";
        blen = (size_t)snprintf(body, sizeof(body), "%s%s\n",
                                why == NULL ? "ok" : "degraded: ", why == NULL ? "" : why);
    } else {
        status = 404;
        type = "text/plain";
        blen = (size_t)snprintf(body, sizeof(body), "try /metrics or /healthz\n");
    }
    int k = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%.*s",
                     status,
                     status == 200   ? "OK"
                     : status == 404 ? "Not Found"
                     : status == 500 ? "Internal Server Error"
                                     : "Unavailable",
                     type, blen, (int)blen, body);
    return k < 0 ? 0 : (size_t)k < cap ? (size_t)k : cap;
}

int up_metrics_open(struct up_loop *loop, const char *addr, const struct up_metrics_cbs *cbs,
                    void *ctx, struct up_metrics **ret)
{
    struct up_metrics *mt = calloc(1, sizeof(*mt));
    if (mt == NULL) {
        return -ENOMEM;
    }
    mt->cbs = cbs;
    mt->ctx = ctx;
    struct up_listen_addr a;
    char err[256];
    int r = up_listen_parse(addr, &a, 1, err, sizeof(err));
    if (r < 0) {
        up_log(UP_LOG_ERR, "--metrics: %s", err);
        free(mt);
        return r;
    }
    struct up_listen_opts o = {.backlog = 64};
    int fd = -1;
    r = up_listen_open(&a, &o, &fd, NULL);
    if (r == 0) {
        r = up_asrv_open_take(loop, fd, false, head_complete, answer, mt, &mt->srv);
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

int up_metrics_open_fd(struct up_loop *loop, int fd, const struct up_metrics_cbs *cbs, void *ctx,
                       struct up_metrics **ret)
{
    struct up_metrics *mt = calloc(1, sizeof(*mt));
    if (mt == NULL) {
        up_close(fd);
        return -ENOMEM;
    }
    mt->cbs = cbs;
    mt->ctx = ctx;
    (void)up_fd_set_nonblock(fd, 1);
    int r = up_asrv_open_take(loop, fd, false, head_complete, answer, mt, &mt->srv);
    if (r < 0) {
        up_log(UP_LOG_ERR, "--metrics: %s", strerror(-r));
        free(mt);
        return r;
    }
    *ret = mt;
    return 0;
}

int up_metrics_fd(const struct up_metrics *mt)
{
    return up_asrv_fd(mt->srv);
}

void up_metrics_accepting(struct up_metrics *mt, bool on)
{
    up_asrv_accepting(mt->srv, on);
}

void up_metrics_close(struct up_metrics *mt)
{
    if (mt != NULL) {
        up_asrv_close(mt->srv);
        free(mt);
    }
}
