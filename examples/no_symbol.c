/*
 * no_symbol: a valid shared object that does not export `up_app` (the name is
 * misspelt), so loading it fails in dlsym() and dlerror() names the symbol.
 */
#include <up/app.h>

static void no_symbol_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_send(res, "unreachable", 11);
}

UP_APP_EXPORT const struct up_app up_app_typo = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "no_symbol",
    .handle = no_symbol_handle,
};
