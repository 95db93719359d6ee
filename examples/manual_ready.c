/*
 * manual_ready: for `--ready=manual`. It warms up for 300 ms after init (or
 * for its first argument's milliseconds: `manual_ready.so -- 2000`) and only
 * then calls up_ready(); until then the master must not route to it.
 * Answers like hello, plus X-Up-Pid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <up/app.h>

static void manual_ready_warm(void *arg)
{
    (void)arg;
    up_ready();
}

static int manual_ready_init(int argc, char **argv)
{
    long ms = argc > 1 ? strtol(argv[1], NULL, 10) : 300;
    /* The timer runs on the worker's loop, which starts after init returns. */
    return ms > 0 && up_after((unsigned)ms, manual_ready_warm, NULL) == 0 ? 0 : -1;
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
