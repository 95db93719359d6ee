/*
 * child: what a child of the master inherits.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "child.h"

Test(child, systemd_variables_stay_with_the_master, .timeout = 10)
{
    int before = up_test_fd_count();
    setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDNAMES", "web:ctl", 1);
    setenv("NOTIFY_SOCKETS", "kept", 1); /* a longer name is another variable */
    setenv("UP_CHILD_TEST", "kept", 1);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    const char *argv[] = {"env", NULL};
    pid_t pid;
    int r = up_child_spawn("/usr/bin/env", argv, &fa, &pid);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    cr_assert_eq(r, 0, "spawn: %s", strerror(-r));
    /* A newline first, so that every variable is found as "\nNAME=". */
    static char out[65536] = "\n";
    size_t len = 1;
    ssize_t n;
    while ((n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    out[len] = '\0';
    close(p[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_not_null(strstr(out, "\nUP_CHILD_TEST=kept\n"), "%s", out);
    cr_assert_not_null(strstr(out, "\nNOTIFY_SOCKETS=kept\n"), "%s", out);
    static const char *const gone[] = {
        "\nNOTIFY_SOCKET=", "\nLISTEN_FDS=", "\nLISTEN_PID=", "\nLISTEN_FDNAMES="};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        cr_assert_null(strstr(out, gone[i]), "the child sees%s:%s", gone[i], out);
    }
    cr_assert_str_eq(getenv("NOTIFY_SOCKET"), "/run/systemd/notify", "the master's own changed");
    cr_assert_eq(up_test_fd_count(), before);
}
