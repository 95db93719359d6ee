/*
 * slow: answers late without blocking the worker, to test deferred and
 * streamed responses, drains that wait for in-flight requests, and timeouts.
 *
 *     /anything?ms=N             200 "slept N ms\n" after N ms (default 1000)
 *     /stream?chunks=N&ms=M      N chunks "chunk i\n", one every M ms
 *
 * The handler never sleeps: it defers the response and finishes it from
 * up_after() timers on the worker's loop, so other requests keep being served
 * meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

struct slow_job {
    struct up_res *res;
    unsigned ms;
    unsigned chunks; /* chunks still to write; 0 for a plain delay */
    unsigned next;   /* index of the next chunk */
};

/* The value of key in a "a=1&b=2" query, or def when absent or malformed. */
static unsigned slow_param(const char *query, const char *key, unsigned def)
{
    size_t klen = strlen(key);
    const char *p = query;
    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            char *end;
            unsigned long v = strtoul(p + klen + 1, &end, 10);
            if (end == p + klen + 1 || v > 3600000) {
                return def;
            }
            return (unsigned)v;
        }
        p = strchr(p, '&');
        if (p != NULL) {
            p++;
        }
    }
    return def;
}

static void slow_done(void *arg)
{
    struct slow_job *job = arg;
    char body[64];
    int n = snprintf(body, sizeof(body), "slept %u ms\n", job->ms);
    up_res_send(job->res, body, (size_t)n);
    free(job);
}

static void slow_chunk(void *arg)
{
    struct slow_job *job = arg;
    char line[32];
    int n = snprintf(line, sizeof(line), "chunk %u\n", job->next);
    up_res_write(job->res, line, (size_t)n);
    job->next++;
    /* The last chunk ends the response at once: no timer outlives it. */
    if (job->next == job->chunks || up_after(job->ms, slow_chunk, job) != 0) {
        up_res_end(job->res);
        free(job);
    }
}

static void slow_handle(struct up_req *req, struct up_res *res)
{
    char pid[32];
    int stream = strcmp(up_req_path(req), "/stream") == 0;
    struct slow_job *job = calloc(1, sizeof(*job));

    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    up_res_header(res, "X-Up-Pid", pid);
    up_res_header(res, "Content-Type", "text/plain");
    if (job == NULL) {
        up_res_status(res, 500);
        up_res_send(res, "out of memory\n", 14);
        return;
    }
    job->res = res;
    job->ms = slow_param(up_req_query(req), "ms", stream ? 100 : 1000);
    job->chunks = stream ? slow_param(up_req_query(req), "chunks", 5) : 0;
    if (stream && job->chunks == 0) {
        free(job);
        up_res_send(res, "", 0);
        return;
    }
    up_res_defer(res);
    if (up_after(job->ms, stream ? slow_chunk : slow_done, job) != 0) {
        free(job);
        up_res_status(res, 500);
        up_res_send(res, "out of memory\n", 14);
    }
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "slow",
    .handle = slow_handle,
};
