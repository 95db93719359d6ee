#include "child.h"

#include <signal.h>

extern char **environ;

int up_child_spawn(const char *path, const char *const argv[], const posix_spawn_file_actions_t *fa,
                   pid_t *ret_pid)
{
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int r = posix_spawn(ret_pid, path, fa, &attr, (char *const *)argv, environ);
    posix_spawnattr_destroy(&attr);
    return -r;
}
