/*
 * hello: the smallest app, and the one the benchmarks serve. Every request
 * gets 200 "Hello World" as text/plain.
 */
#include <up/app.h>

static void hello_handle(struct up_req *req, struct up_res *res)
{
    (void)req;
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, "Hello World", 11);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "hello",
    .handle = hello_handle,
};
