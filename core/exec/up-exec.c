/*
 * up-exec: how up-run starts a command as a worker (--exec). up-run
 * spawns it (posix_spawn: cheap however large the master is, with a clean
 * signal state, the fds and environment in place, and a process group of
 * its own); it sets up what posix_spawn cannot, then becomes the command:
 *
 *     up-exec PPID NOFILE PATH ARGV0 ARGS...
 *
 *   - the parent-death signal: if the master dies, the worker gets SIGTERM
 *     and stops gracefully, rather than serving on unsupervised. Set, then
 *     checked against PPID: a master that died before the prctl() would
 *     never send it.
 *   - LISTEN_PID, when LISTEN_FDS is set: systemd's socket activation
 *     protocol names the process the fds are for, and only this process
 *     knows its pid before exec (the pid survives exec).
 *   - the soft fd limit up-run was started with (NOFILE, 0: leave it): the
 *     master raises its own, and a server should see the limits it would
 *     have had without up-run (as under systemd, one that needs more raises
 *     its own).
 *
 * Then execv(PATH, ARGV0 ARGS...). On failure it says why on stderr (which
 * the master relays and keeps for the failure report) and exits 127, or
 * 126 when the file is there but cannot be run, as a shell does.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static long number(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno != 0 || *end != '\0' || end == s || v < 0 ? -1 : v;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "up-exec: started by up-run to run a worker: up-exec PPID NOFILE PATH "
                        "ARGV0 [ARGS...]\n");
        return 2;
    }
    long ppid = number(argv[1]);
    long nofile = number(argv[2]);
    if (ppid <= 0 || nofile < 0) {
        fprintf(stderr, "up-exec: bad PPID '%s' or NOFILE '%s'\n", argv[1], argv[2]);
        return 2;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != (pid_t)ppid) {
        return 1; /* the master is already gone: nobody to serve for */
    }
    if (getenv("LISTEN_FDS") != NULL) {
        char pid[24];
        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        if (setenv("LISTEN_PID", pid, 1) < 0) {
            fprintf(stderr, "up-exec: cannot set LISTEN_PID: %s\n", strerror(errno));
            return 127;
        }
    }
    struct rlimit rl;
    if (nofile > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)nofile < rl.rlim_cur) {
        rl.rlim_cur = (rlim_t)nofile;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    execv(argv[3], argv + 4);
    int err = errno;
    fprintf(stderr, "up-exec: cannot run %s: %s\n", argv[3], strerror(err));
    return err == ENOENT ? 127 : 126;
}
