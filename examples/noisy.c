/*
 * noisy: an app that logs a lot. Every request writes lines to stderr, one
 * write(2) each, then gets 200 "logged N lines\n":
 *
 *     /anything?lines=N    N lines of about 100 bytes (default 8, at most 1000)
 *
 * A worker's stderr is a pipe that the master reads and passes on to its own
 * stderr; tests use this app to check that a master whose stderr is stuck
 * still reads that pipe, so that the worker never blocks in its write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

static unsigned noisy_lines(const char *query)
{
    const char *p = strstr(query, "lines=");
    if (p == NULL) {
        return 8;
    }
    unsigned long n = strtoul(p + 6, NULL, 10);
    return n > 1000 ? 1000 : (unsigned)n;
}

static void noisy_handle(struct up_req *req, struct up_res *res)
{
    static unsigned long seq;
    unsigned n = noisy_lines(up_req_query(req));
    char line[160];
    seq++;
    for (unsigned i = 0; i < n; i++) {
        int len = snprintf(line, sizeof(line),
                           "noisy pid=%ld: request %lu line %u of %u: "
                           "the quick brown fox jumps over the lazy dog\n",
                           (long)getpid(), seq, i + 1, n);
        if (write(STDERR_FILENO, line, (size_t)len) < 0) {
            break;
        }
    }
    int len = snprintf(line, sizeof(line), "logged %u lines\n", n);
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, line, (size_t)len);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "noisy",
    .handle = noisy_handle,
};
