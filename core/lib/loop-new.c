/*
 * loop-new: choosing a back end. It stands above loop.c and both back ends
 * (which build on loop.c), so that the loop's files read one way.
 */
#include "loop-impl.h"

#include <errno.h>
#include <string.h>

static int new_loop(enum up_backend backend, unsigned entries, bool one_thread,
                    struct up_loop **ret_loop, const char **ret_reason)
{
    const char *reason = NULL;
    if (entries == 0) {
        entries = 256;
    }
    if (backend != UP_BACKEND_EPOLL) {
        int r = up_loop_uring_new(entries, one_thread, ret_loop, &reason);
        if (r == 0) {
            return 0;
        }
        /* An explicit request for io_uring is not silently downgraded; AUTO
         * falls back only for "unavailable here" errors, as resource
         * errors (ENOMEM, EMFILE) would hit epoll just the same. */
        bool unavailable =
            r == -ENOSYS || r == -EPERM || r == -EINVAL || r == -EOPNOTSUPP || r == -EACCES;
        if (backend == UP_BACKEND_URING || !unavailable) {
            if (ret_reason != NULL) {
                *ret_reason = reason;
            }
            return r;
        }
    }
    int r = up_loop_epoll_new(entries, ret_loop);
    if (r == 0 && ret_reason != NULL) {
        *ret_reason = reason;
    }
    return r;
}

int up_loop_new(enum up_backend backend, unsigned entries, struct up_loop **ret_loop,
                const char **ret_reason)
{
    return new_loop(backend, entries, false, ret_loop, ret_reason);
}

int up_loop_new_one_thread(enum up_backend backend, unsigned entries, struct up_loop **ret_loop,
                           const char **ret_reason)
{
    return new_loop(backend, entries, true, ret_loop, ret_reason);
}

static const char *const backend_names[] = {
    [UP_BACKEND_AUTO] = "auto",
    [UP_BACKEND_URING] = "io_uring",
    [UP_BACKEND_EPOLL] = "epoll",
};

const char *up_backend_name(enum up_backend backend)
{
    return (unsigned)backend < sizeof(backend_names) / sizeof(backend_names[0])
               ? backend_names[backend]
               : "?";
}

int up_backend_parse(const char *text, enum up_backend *ret_backend)
{
    for (size_t i = 0; i < sizeof(backend_names) / sizeof(backend_names[0]); i++) {
        if (strcmp(text, backend_names[i]) == 0) {
            *ret_backend = (enum up_backend)i;
            return 0;
        }
    }
    if (strcmp(text, "uring") == 0) {
        *ret_backend = UP_BACKEND_URING;
        return 0;
    }
    return -EINVAL;
}
