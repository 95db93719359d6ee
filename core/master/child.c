#include "child.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* What systemd tells the master about itself: its notify socket (a child
 * that wrote to it would speak for the whole service) and the fds it was
 * started with (numbers and a pid that mean nothing in a child). */
static const char *const child_env_dropped[] = {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                                                "LISTEN_FDNAMES"};

/* Whether entry ("NAME=value") sets the variable that name ("NAME=..." or
 * "NAME") names. */
static bool same_name(const char *entry, const char *name)
{
    size_t n = strcspn(name, "=");
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static bool child_env_drops(const char *entry, const char *const *set)
{
    for (size_t i = 0; i < sizeof(child_env_dropped) / sizeof(child_env_dropped[0]); i++) {
        if (same_name(entry, child_env_dropped[i])) {
            return true;
        }
    }
    for (size_t i = 0; set != NULL && set[i] != NULL; i++) {
        if (same_name(entry, set[i])) {
            return true;
        }
    }
    return false;
}

/* The master's environment without the dropped variables, then set: a
 * NULL-terminated array (to free) of pointers into environ and set, or NULL
 * when out of memory. The master keeps its own environment as it is:
 * notify.c reads NOTIFY_SOCKET there at every notification. */
static char **child_env(const char *const *set)
{
    size_t n = 0, nset = 0;
    while (environ[n] != NULL) {
        n++;
    }
    while (set != NULL && set[nset] != NULL) {
        nset++;
    }
    char **env = malloc((n + nset + 1) * sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!child_env_drops(environ[i], set)) {
            env[k++] = environ[i];
        }
    }
    for (size_t i = 0; i < nset; i++) {
        env[k++] = (char *)set[i];
    }
    env[k] = NULL;
    return env;
}

static int spawn_env(const char *path, const char *const argv[],
                     const posix_spawn_file_actions_t *fa, bool own_group, const char *const *set,
                     pid_t *ret_pid)
{
    char **env = child_env(set);
    if (env == NULL) {
        return -ENOMEM;
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (own_group) {
        /* pgroup 0: the child's own pid becomes its group's id. */
        posix_spawnattr_setpgroup(&attr, 0);
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attr, flags);
    int r = posix_spawn(ret_pid, path, fa, &attr, (char *const *)argv, env);
    posix_spawnattr_destroy(&attr);
    free(env);
    return -r;
}

int up_child_spawn(const char *path, const char *const argv[], const posix_spawn_file_actions_t *fa,
                   pid_t *ret_pid)
{
    return spawn_env(path, argv, fa, false, NULL, ret_pid);
}

int up_child_start(const struct up_child_plan *plan, pid_t *ret_pid)
{
    /* The file actions run in order in the child: a source numbered like
     * an earlier target would be overwritten before its own dup2, and a
     * source already at its target would keep CLOEXEC (dup2 onto itself
     * does nothing). So every source below nfds is first duplicated above
     * the targets (CLOEXEC: the copies die at exec), then placed. */
    int lifted[UP_CHILD_MAX_FDS]; /* owned: those copies, -1 none */
    int src[UP_CHILD_MAX_FDS];
    int r = 0;
    for (int i = 0; i < plan->nfds; i++) {
        lifted[i] = -1;
        src[i] = plan->fds[i];
        if (src[i] >= 0 && src[i] < plan->nfds) {
            lifted[i] = src[i] = fcntl(plan->fds[i], F_DUPFD_CLOEXEC, plan->nfds);
            if (src[i] < 0) {
                r = -errno;
            }
        }
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int i = 0; r == 0 && i < plan->nfds; i++) {
        if (src[i] >= 0) {
            posix_spawn_file_actions_adddup2(&fa, src[i], i);
        }
    }
    if (r == 0) {
        r = spawn_env(plan->path, plan->argv, &fa, plan->own_group, plan->env, ret_pid);
    }
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < plan->nfds; i++) {
        up_close(lifted[i]);
    }
    return r;
}
