/*
 * env: answers with what a worker sees of the environment variables that
 * systemd sets for a service, one header each (X-Env-NOTIFY_SOCKET: ...),
 * "(unset)" when the variable is not there. Tests use it to check that the
 * master keeps its own systemd variables to itself.
 */
#include <stdio.h>
#include <stdlib.h>

#include <up/app.h>

static void env_handle(struct up_req *req, struct up_res *res)
{
    static const char *const names[] = {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                                        "LISTEN_FDNAMES"};
    (void)req;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char header[64];
        const char *value = getenv(names[i]);
        snprintf(header, sizeof(header), "X-Env-%s", names[i]);
        up_res_header(res, header, value != NULL ? value : "(unset)");
    }
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, "env\n", 4);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "env",
    .handle = env_handle,
};
