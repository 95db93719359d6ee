/* fail_init: init fails, so the worker must not start (or a reload must keep the old code). */
#include <up/app.h>

static int fail_init_init(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return -1;
}

static void fail_init_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_send(res, "unreachable", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "fail_init",
    .init = fail_init_init,
    .handle = fail_init_handle,
};
