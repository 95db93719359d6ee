/*
 * app: load the user's app into this worker.
 *
 * Alone, the worker first copies the file into a memfd and dlopen()s it from
 * there, so that rewriting app.so in place (a build, a deploy) can neither
 * crash this worker, whose code would otherwise change under it, nor hand it
 * a half-written file that it maps lazily later. Under up-run the master has
 * made that copy already, once per generation, sealed so that nobody can
 * change it, and gives it to every worker of the generation open on an fd:
 * they map the same pages, and none copies the app again. Libraries from
 * `-r/--require` are loaded before the app with RTLD_GLOBAL so that the app
 * can use their symbols.
 *
 * Never logs: every failure is returned with a one-line reason (the dlerror()
 * text where there is one) for the caller to print and send to the master.
 */
#ifndef UP_WORKER_APP_H
#define UP_WORKER_APP_H

#include <stddef.h>

#include "up/app.h"

struct up_app_loaded {
    void *dl;                 /* dlopen handle; never closed (see app.c) */
    const struct up_app *app; /* copy: the exported up_app, in this ABI's shape */
    struct up_app copy;
    char path[512]; /* the file it came from */
};

/* Load lib with RTLD_NOW | RTLD_GLOBAL (no snapshot: a library of the
 * operator's, not code that is reloaded). 0, or -errno/-ENOEXEC with the
 * reason in err. */
int up_app_require(const char *lib, char *err, size_t cap);

/* Load the app, find up_app and check its ABI version and handler. fd >= 0
 * is the app already open as a snapshot nobody can change (the master's
 * sealed copy, shared by the generation's workers): it is loaded as it is,
 * and closed. fd -1: path is snapshotted into a memfd of this process's
 * own first, so that a file rewritten in place cannot change or crash the
 * running code. path names the app in messages either way. Returns 0 and
 * fills *ret, or a negative code with the reason in err:
 * -ENOENT/-EACCES/... (cannot read the file), -ENOEXEC (dlopen refused
 * it), -ENOSYS (no up_app symbol), -EPROTONOSUPPORT (other ABI), -EINVAL
 * (no handler). */
int up_app_load(const char *path, int fd, struct up_app_loaded *ret, char *err, size_t cap);

/* Run the app's init (if any) with argc/argv. 0, or -ECANCELED with the
 * reason in err when init returned non-zero. */
int up_app_init(const struct up_app_loaded *a, int argc, char **argv, char *err, size_t cap);

/* Run the app's fini, if any. */
void up_app_fini(const struct up_app_loaded *a);

#endif
