#include "child.h"

#include <errno.h>
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

static bool child_env_drops(const char *entry)
{
    for (size_t i = 0; i < sizeof(child_env_dropped) / sizeof(child_env_dropped[0]); i++) {
        size_t n = strlen(child_env_dropped[i]);
        if (strncmp(entry, child_env_dropped[i], n) == 0 && entry[n] == '=') {
            return true;
        }
    }
    return false;
}

/* The master's environment without the dropped variables: a NULL-terminated
 * array (to free) of pointers into environ, or NULL when out of memory. The
 * master keeps its own environment as it is: notify.c reads NOTIFY_SOCKET
 * there at every notification. */
static char **child_env(void)
{
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **env = malloc((n + 1) * sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!child_env_drops(environ[i])) {
            env[k++] = environ[i];
        }
    }
    env[k] = NULL;
    return env;
}

int up_child_spawn(const char *path, const char *const argv[], const posix_spawn_file_actions_t *fa,
                   pid_t *ret_pid)
{
    char **env = child_env();
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
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int r = posix_spawn(ret_pid, path, fa, &attr, (char *const *)argv, env);
    posix_spawnattr_destroy(&attr);
    free(env);
    return -r;
}
