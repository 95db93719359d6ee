/*
 * manual_ready: for `--ready=manual`. It warms up for 300 ms after init and
 * only then calls up_ready(); until then the master must not route to it.
 * Answers like hello, plus X-Up-Pid.
 */
#include <stdio.h>
#include <unistd.h>

#include <up/app.h>

static void manual_ready_warm(void *arg)
{
    (void)arg;
    up_ready();
}

static int manual_ready_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* The timer runs on the worker's loop, which starts after init returns. */
    return up_after(300, manual_ready_warm, NULL) == 0 ? 0 : -1;
}

static void manual_ready_handle(struct up_req *req, struct up_res *res)
{
    char pid[32];
    (void)req;
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    up_res_header(res, "X-Up-Pid", pid);
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, "Hello World", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "manual_ready",
    .init = manual_ready_init,
    .handle = manual_ready_handle,
};
