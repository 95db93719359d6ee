/*
 * crash_after: starts fine (init succeeds, so the worker is ready), then dies
 * of SIGSEGV 50 ms later, every time: a crash loop for the respawn back-off.
 * Requests that reach it in between are answered like hello, plus X-Up-Pid.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <up/app.h>

static void crash_after_crash(void *arg)
{
    (void)arg;
    /* raise() rather than a NULL store: the compiler may not remove it. */
    raise(SIGSEGV);
}

static int crash_after_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* The timer runs on the worker's loop, which starts after init returns
     * and the worker told the master it is ready. */
    return up_after(50, crash_after_crash, NULL) == 0 ? 0 : -1;
}

static void crash_after_handle(struct up_req *req, struct up_res *res)
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
    .name = "crash_after",
    .init = crash_after_init,
    .handle = crash_after_handle,
};
