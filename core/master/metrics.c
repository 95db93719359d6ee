#include "metrics.h"

#include "asrv.h"
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

size_t up_metrics_format(const struct up_metric *v, size_t count, char *buf, size_t cap)
{
    struct up_strbuf out = up_strbuf_on(buf, cap);
    for (size_t i = 0; i < count; i++) {
        up_strbuf_printf(&out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", v[i].name, v[i].help,
                         v[i].name, v[i].type, v[i].name, v[i].value);
    }
    return out.len;
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
    char body[6144];
    size_t blen;
    int status = 200;
    const char *type = "text/plain; version=0.0.4";
    if (strncmp(buf, "GET /metrics ", 13) == 0) {
        struct up_metric v[48];
        size_t n = mt->cbs->values(mt->ctx, v, sizeof(v) / sizeof(v[0]));
        blen = up_metrics_format(v, n, body, sizeof(body));
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

void up_metrics_close(struct up_metrics *mt)
{
    if (mt != NULL) {
        up_asrv_close(mt->srv);
        free(mt);
    }
}
