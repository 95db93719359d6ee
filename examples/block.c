/*
 * block: a handler that blocks its worker, for tests of what the master does
 * with connections a busy worker has not taken yet.
 *
 *     /block?ms=N   writes "block: pid=P sleeping N ms" to stderr, then
 *                   sleeps N ms (default 5000) inside the handler, so the
 *                   single-threaded worker reads nothing meanwhile: not its
 *                   channel, not its other connections; then answers 200
 *     anything else 200 "Hello World", at once
 *
 * Every answer has X-Up-Pid and X-Up-Generation. This is exactly what an app
 * must not do (see up/app.h); it stands for a handler stuck in a slow
 * library call.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <up/app.h>

/* The value of ms= in the query, or def. */
static unsigned block_ms(const char *query, unsigned def)
{
    const char *p = strstr(query, "ms=");
    if (p == NULL || (p != query && p[-1] != '&')) {
        return def;
    }
    char *end;
    unsigned long v = strtoul(p + 3, &end, 10);
    return end == p + 3 || v > 600000 ? def : (unsigned)v;
}

static void block_handle(struct up_req *req, struct up_res *res)
{
    char num[32];

    snprintf(num, sizeof(num), "%ld", (long)getpid());
    up_res_header(res, "X-Up-Pid", num);
    snprintf(num, sizeof(num), "%u", up_generation());
    up_res_header(res, "X-Up-Generation", num);
    up_res_header(res, "Content-Type", "text/plain");
    if (strcmp(up_req_path(req), "/block") != 0) {
        up_res_send(res, "Hello World", 11);
        return;
    }

    unsigned ms = block_ms(up_req_query(req), 5000);
    char line[96];
    int n = snprintf(line, sizeof(line), "block: pid=%ld sleeping %u ms\n", (long)getpid(), ms);
    /* One write(2): the master passes worker output through line by line. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nothing to do: the sleep below is what matters. */
    }
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
    n = snprintf(line, sizeof(line), "blocked %u ms\n", ms);
    up_res_send(res, line, (size_t)n);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "block",
    .handle = block_handle,
};
