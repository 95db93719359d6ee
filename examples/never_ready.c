/*
 * never_ready: for `--ready=manual`. It loads and inits fine but never calls
 * up_ready(), so a reload to it must fail at --ready-timeout and leave the
 * old workers serving. Its handler is never reached.
 */
#include <up/app.h>

static void never_ready_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_send(res, "unreachable", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "never_ready",
    .handle = never_ready_handle,
};
