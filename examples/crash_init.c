/* crash_init: init dies of SIGSEGV, a worker that crashes before it is ready. */
#include <signal.h>

#include <up/app.h>

static int crash_init_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* raise() rather than a NULL store: the compiler may not remove it. */
    raise(SIGSEGV);
    return 0;
}

static void crash_init_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_send(res, "unreachable", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "crash_init",
    .init = crash_init_init,
    .handle = crash_init_handle,
};
