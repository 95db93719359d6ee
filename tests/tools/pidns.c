/*
 * pidns: run a command as pid 1 of a new pid namespace, with a /proc of its
 * own, the way a container runtime starts a container's first process
 * (`docker run IMAGE up-run ...`):
 *
 *   pidns -- CMD [ARGS...]
 *
 * It first writes "pidns: pid 1 is host pid N" to stderr, so that a test
 * can watch and signal CMD's processes from outside. Like a runtime's shim
 * it passes the signals an operator sends on to CMD (TERM, INT, QUIT, HUP,
 * USR1, USR2), and exits with CMD's status (128 + signal if it was killed).
 * When it ends, the kernel ends every process left in the namespace.
 * Needs CAP_SYS_ADMIN (root); exits 125 without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child;

static void forward(int sig)
{
    if (child > 0) {
        kill(child, sig);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--") != 0) {
        fprintf(stderr, "usage: pidns -- CMD [ARGS...]\n");
        return 2;
    }
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0) {
        fprintf(stderr, "pidns: unshare: %s\n", strerror(errno));
        return 125;
    }
    static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
    struct sigaction sa = {.sa_handler = forward};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sigaction(sigs[i], &sa, NULL);
    }
    int alive[2]; /* its write end closes when we end */
    if (pipe2(alive, O_CLOEXEC) < 0) {
        fprintf(stderr, "pidns: pipe: %s\n", strerror(errno));
        return 125;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "pidns: fork: %s\n", strerror(errno));
        return 125;
    }
    if (pid == 0) {
        /* Not outliving us, as a runtime's shim sees to it: ending pid 1
         * ends the namespace. */
        close(alive[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct pollfd p = {.fd = alive[0], .events = POLLIN};
        if (poll(&p, 1, 0) != 0) {
            _exit(125); /* gone before the prctl */
        }
        close(alive[0]);
        /* pid 1 here. A /proc of this namespace, as a runtime mounts one:
         * the pids the command reads in it are its own. The mount is
         * private to this mount namespace. */
        if (mount(NULL, "/proc", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
            fprintf(stderr, "pidns: mount /proc: %s\n", strerror(errno));
            _exit(125);
        }
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
            signal(sigs[i], SIG_DFL);
        }
        execv(argv[2], argv + 2);
        fprintf(stderr, "pidns: %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    close(alive[0]);
    child = pid;
    fprintf(stderr, "pidns: pid 1 is host pid %d\n", (int)pid);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            _exit(125);
        }
    }
    /* _exit: having unshared the pid namespace, we cannot fork again now
     * that its pid 1 is gone, and a sanitizer's leak check at exit would
     * (and fail the run). */
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}
