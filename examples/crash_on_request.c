/*
 * crash_on_request: dies of SIGSEGV in the handler of GET /crash, a worker
 * that crashes in the middle of a request. Any other path answers 200
 * "Hello World" with X-Up-Pid and X-Up-Generation.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

static void crash_on_request_handle(struct up_req *req, struct up_res *res)
{
    char num[32];

    if (strcmp(up_req_path(req), "/crash") == 0) {
        /* raise() rather than a NULL store: the compiler may not remove it. */
        raise(SIGSEGV);
    }
    snprintf(num, sizeof(num), "%ld", (long)getpid());
    up_res_header(res, "X-Up-Pid", num);
    snprintf(num, sizeof(num), "%u", up_generation());
    up_res_header(res, "X-Up-Generation", num);
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, "Hello World", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "crash_on_request",
    .handle = crash_on_request_handle,
};
