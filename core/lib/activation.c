#include "activation.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FIRST_FD 3

/* A decimal number from 0 to max, nothing else. */
static bool number(const char *s, long max, long *ret)
{
    char *end;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return false;
    }
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > max) {
        return false;
    }
    *ret = v;
    return true;
}

static int check_listener(int fd, char *err, size_t cap)
{
    int type = 0, listening = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        snprintf(err, cap, "passed fd %d is not a socket (%s)", fd, strerror(errno));
        return -EINVAL;
    }
    len = sizeof(listening);
    if (type != SOCK_STREAM || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
        !listening) {
        snprintf(err, cap,
                 "passed fd %d is not a listening stream socket (give the .socket unit "
                 "ListenStream= and no Accept=yes)",
                 fd);
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        snprintf(err, cap, "passed fd %d: %s", fd, strerror(errno));
        return -EINVAL;
    }
    return 0;
}

int up_activation_take(struct up_activation *a, char *err, size_t cap)
{
    memset(a, 0, sizeof(*a));
    const char *pid_s = getenv("LISTEN_PID");
    const char *fds_s = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    long pid = 0, n = 0;
    if (fds_s == NULL) {
        return 0;
    }
    if (!number(pid_s, 0x7fffffff, &pid) || !number(fds_s, 1 << 20, &n)) {
        snprintf(err, cap, "LISTEN_PID '%s' or LISTEN_FDS '%s' is not a number", pid_s ? pid_s : "",
                 fds_s);
        return -EINVAL;
    }
    if (pid != (long)getpid()) {
        return 0; /* for another process (an ancestor's leftovers) */
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (n > UP_ACTIVATION_MAX) {
        snprintf(err, cap, "%ld sockets passed (LISTEN_FDS): at most %d", n, UP_ACTIVATION_MAX);
        return -EINVAL;
    }
    const char *p = names;
    for (int i = 0; i < (int)n; i++) {
        a->fd[i] = FIRST_FD + i;
        size_t len = p != NULL ? strcspn(p, ":") : 0;
        snprintf(a->name[i], sizeof(a->name[i]), "%.*s", (int)len, p != NULL ? p : "");
        p = p != NULL && p[len] == ':' ? p + len + 1 : NULL;
    }
    a->n = (int)n;
    for (int i = 0; i < a->n; i++) {
        int r = check_listener(a->fd[i], err, cap);
        if (r < 0) {
            for (int j = 0; j < a->n; j++) {
                up_close(a->fd[j]);
            }
            a->n = 0;
            return r;
        }
    }
    return 0;
}

int up_activation_claim(struct up_activation *a, const char *spec)
{
    long fdnum = -1;
    bool by_number = number(spec, 0x7fffffff, &fdnum);
    for (int i = 0; i < a->n; i++) {
        bool match = by_number ? FIRST_FD + i == fdnum : strcmp(a->name[i], spec) == 0;
        if (!match) {
            continue;
        }
        if (a->fd[i] < 0) {
            return -EBUSY;
        }
        int fd = a->fd[i];
        a->fd[i] = -1;
        return fd;
    }
    return -ENOENT;
}

int up_activation_close_rest(struct up_activation *a, char *first_name, size_t cap)
{
    int closed = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->fd[i] >= 0) {
            if (closed == 0) {
                snprintf(first_name, cap, "%s", a->name[i][0] ? a->name[i] : "(unnamed)");
            }
            up_close(a->fd[i]);
            a->fd[i] = -1;
            closed++;
        }
    }
    return closed;
}
