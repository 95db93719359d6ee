/* bad_abi: claims an ABI version no worker speaks, which must be refused. */
#include <up/app.h>

static void bad_abi_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_send(res, "unreachable", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = 999,
    .name = "bad_abi",
    .handle = bad_abi_handle,
};
