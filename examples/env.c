/*
 * env: answers with what a worker sees of the environment variables that
 * systemd sets for a service, one header each (X-Env-NOTIFY_SOCKET: ...),
 * "(unset)" when the variable is not there. Tests use it to check that the
 * master keeps its own systemd variables to itself. And what a process the
 * app starts gets of the worker's signal state (X-Child-SigBlk, and
 * X-Child-SigIgn: /proc/self/status of a cat(1) it spawns, in hex), which
 * must be nothing blocked and nothing ignored.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <up/app.h>

extern char **environ;

/* The SigBlk and SigIgn lines of a child's /proc/self/status. */
static void child_signals(char *blk, char *ign, size_t cap)
{
    snprintf(blk, cap, "(unknown)");
    snprintf(ign, cap, "(unknown)");
    int p[2];
    if (pipe(p) < 0) {
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *const argv[] = {"cat", "/proc/self/status", NULL};
    pid_t pid;
    int r = posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while (r == 0 && len < sizeof(buf) - 1 &&
           (n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(p[0]);
    if (r == 0) {
        waitpid(pid, NULL, 0);
    }
    const char *b = strstr(buf, "SigBlk:\t"), *i = strstr(buf, "SigIgn:\t");
    if (b != NULL) {
        snprintf(blk, cap, "%.16s", b + 8);
    }
    if (i != NULL) {
        snprintf(ign, cap, "%.16s", i + 8);
    }
}

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
    char blk[32], ign[32];
    child_signals(blk, ign, sizeof(blk));
    up_res_header(res, "X-Child-SigBlk", blk);
    up_res_header(res, "X-Child-SigIgn", ign);
    up_res_header(res, "Content-Type", "text/plain");
    up_res_send(res, "env\n", 4);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "env",
    .handle = env_handle,
};
