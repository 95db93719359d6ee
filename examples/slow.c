/*
 * slow: answers late without blocking the worker, to test deferred and
 * streamed responses, drains that wait for in-flight requests, and timeouts.
 *
 *     /anything?ms=N             200 "slept N ms\n" after N ms (default 1000)
 *     /stream?chunks=N&ms=M      N chunks "chunk i\n", one every M ms
 *     /stream?...&size=B         each chunk padded with '.' before its
 *                                newline to B bytes (up to 1 MiB)
 *
 * The handler never sleeps: it defers the response and finishes it from
 * up_after() timers on the worker's loop, so other requests keep being served
 * meanwhile. A stream honours back-pressure as app.h suggests: while more
 * than SLOW_MAX_QUEUED bytes wait for the client, the next chunk waits, and
 * the stream ends once the client is gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

#define SLOW_MAX_QUEUED (64 * 1024)
#define SLOW_RETRY_MS 10
#define SLOW_MAX_SIZE (1024 * 1024)

struct slow_job {
    struct up_res *res;
    unsigned ms;
    unsigned chunks; /* chunks still to write; 0 for a plain delay */
    unsigned next;   /* index of the next chunk */
    unsigned size;   /* bytes per chunk, padded; 0: no padding */
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

static void slow_end(struct slow_job *job)
{
    up_res_end(job->res);
    free(job);
}

/* "chunk i\n", with a size padded with '.' before the newline to size
 * bytes (or none if "chunk i\n" is longer already). Returns the length, or
 * 0 when out of memory; *ret is then untouched. */
static size_t slow_format(const struct slow_job *job, char **ret)
{
    size_t cap = job->size > 32 ? job->size : 32;
    char *line = malloc(cap);
    if (line == NULL) {
        return 0;
    }
    size_t len = (size_t)snprintf(line, cap, "chunk %u", job->next);
    size_t want = job->size > len + 1 ? job->size : len + 1;
    memset(line + len, '.', want - 1 - len);
    line[want - 1] = '\n';
    *ret = line;
    return want;
}

static void slow_chunk(void *arg)
{
    struct slow_job *job = arg;
    long queued = up_res_pending(job->res);
    if (queued < 0) {
        slow_end(job); /* the client is gone */
        return;
    }
    if (queued > SLOW_MAX_QUEUED) {
        if (up_after(SLOW_RETRY_MS, slow_chunk, job) != 0) {
            slow_end(job);
        }
        return;
    }
    char *line;
    size_t len = slow_format(job, &line);
    if (len == 0) {
        slow_end(job);
        return;
    }
    up_res_write(job->res, line, len);
    free(line);
    job->next++;
    /* The last chunk ends the response at once: no timer outlives it. */
    if (job->next == job->chunks || up_after(job->ms, slow_chunk, job) != 0) {
        slow_end(job);
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
    job->size = slow_param(up_req_query(req), "size", 0);
    if (job->size > SLOW_MAX_SIZE) {
        job->size = SLOW_MAX_SIZE;
    }
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
