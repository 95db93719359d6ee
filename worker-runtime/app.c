#include "app.h"

#include "fd.h"
#include "snapshot.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int up_app_require(const char *lib, char *err, size_t cap)
{
    if (dlopen(lib, RTLD_NOW | RTLD_GLOBAL) == NULL) {
        snprintf(err, cap, "cannot load required library %s: %s", lib, dlerror());
        return -ENOEXEC;
    }
    return 0;
}

/* Copy the file at path into a new memfd. Returns the memfd, or -errno. */
static int snapshot(const char *path, char *err, size_t cap)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        int r = -errno;
        snprintf(err, cap, "cannot open app %s: %s", path, strerror(-r));
        return r;
    }
    int mfd = up_snapshot_memfd("up-app", src, false);
    up_close(src);
    if (mfd < 0) {
        snprintf(err, cap, "cannot copy app %s: %s", path, strerror(-mfd));
    }
    return mfd;
}

int up_app_load(const char *path, int fd, struct up_app_loaded *ret, char *err, size_t cap)
{
    int mfd = fd >= 0 ? fd : snapshot(path, err, cap);
    if (mfd < 0) {
        return mfd;
    }
    char name[64];
    snprintf(name, sizeof(name), "/proc/self/fd/%d", mfd);
    void *dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    /* The mapping keeps the memfd's pages alive; the fd is not needed. */
    up_close(mfd);
    if (dl == NULL) {
        snprintf(err, cap, "cannot load app %s: %s", path, dlerror());
        return -ENOEXEC;
    }
    /* dlclose() is never called: an app may leave threads or atexit
     * handlers behind, and a worker only ever loads one app. */
    const struct up_app *app = dlsym(dl, "up_app");
    if (app == NULL) {
        snprintf(err, cap, "app %s does not export the symbol up_app: %s", path, dlerror());
        return -ENOSYS;
    }
    if (app->abi_version != UP_APP_ABI_VERSION && app->abi_version != 1) {
        snprintf(err, cap, "app %s was built for app ABI %u, this worker speaks ABI 1 and %u", path,
                 app->abi_version, UP_APP_ABI_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (app->handle == NULL) {
        snprintf(err, cap, "app %s: up_app.handle is NULL", path);
        return -EINVAL;
    }
    /* An app built for ABI 1 exports a struct that ends before drain: only
     * what it has is read, the rest stays NULL. */
    memset(&ret->copy, 0, sizeof(ret->copy));
    memcpy(&ret->copy, app, app->abi_version == 1 ? offsetof(struct up_app, drain) : sizeof(*app));
    ret->dl = dl;
    ret->app = &ret->copy;
    snprintf(ret->path, sizeof(ret->path), "%s", path);
    return 0;
}

int up_app_init(const struct up_app_loaded *a, int argc, char **argv, char *err, size_t cap)
{
    if (a->app->init == NULL) {
        return 0;
    }
    int r = a->app->init(argc, argv);
    if (r != 0) {
        snprintf(err, cap, "app %s: init failed (returned %d)", a->path, r);
        return -ECANCELED;
    }
    return 0;
}

void up_app_fini(const struct up_app_loaded *a)
{
    if (a->app != NULL && a->app->fini != NULL) {
        a->app->fini();
    }
}
