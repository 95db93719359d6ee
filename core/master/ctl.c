#include "ctl.h"

#include "asrv.h"
#include "fd.h"
#include "listen.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct up_ctl {
    const struct up_ctl_cbs *cbs;
    void *ctx;
    struct up_asrv *srv;
    char path[108];
    bool handed; /* a new master serves the path: leave the file */
};

static bool line_complete(const char *buf, size_t len)
{
    return memchr(buf, '\n', len) != NULL;
}

static size_t run_command(void *ctx, uint64_t id, char *buf, size_t len, size_t cap)
{
    struct up_ctl *ctl = ctx;
    (void)len;
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "%.*s", (int)strcspn(buf, "\r\n"), buf);
    if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "reload wait") == 0) {
        size_t n = ctl->cbs->reload(ctl->ctx, id, cmd[6] != '\0', buf, cap);
        return n == UP_CTL_LATER ? UP_ASRV_LATER : n;
    }
    if (strcmp(cmd, "status") == 0 || strcmp(cmd, "status json") == 0) {
        return ctl->cbs->status(ctl->ctx, cmd[6] != '\0', buf, cap);
    }
    if (strcmp(cmd, "stop") == 0) {
        return ctl->cbs->stop(ctl->ctx, buf, cap);
    }
    if (strcmp(cmd, "upgrade") == 0) {
        size_t n = ctl->cbs->upgrade(ctl->ctx, id, buf, cap);
        return n == UP_CTL_LATER ? UP_ASRV_LATER : n;
    }
    int n = snprintf(buf, cap,
                     "error: unknown command '%s' (use reload [wait], status [json], stop or "
                     "upgrade)\n",
                     cmd);
    return n > 0 ? (size_t)n : 0;
}

int up_ctl_reply(struct up_ctl *ctl, uint64_t id, const char *text)
{
    return up_asrv_reply(ctl->srv, id, text, strlen(text));
}

/* How to get past a directory that is refused, by where it came from. */
static const char *ctl_dir_hint(enum up_ctl_place place)
{
    switch (place) {
    case UP_CTL_EXPLICIT:
        return "choose another path with --control PATH";
    case UP_CTL_XDG:
        return "fix $XDG_RUNTIME_DIR (a directory of mode 0700 owned by this user), or choose a "
               "socket with --control PATH";
    case UP_CTL_TMP:
        return "remove it, or choose a socket with --control PATH or $XDG_RUNTIME_DIR";
    }
    return "";
}

static const char *file_kind(mode_t mode)
{
    return S_ISREG(mode)    ? "regular file"
           : S_ISDIR(mode)  ? "directory"
           : S_ISLNK(mode)  ? "symbolic link"
           : S_ISFIFO(mode) ? "named pipe"
           : S_ISSOCK(mode) ? "socket"
                            : "device";
}

__attribute__((format(printf, 3, 4))) static int untrusted(char *err, size_t cap, const char *fmt,
                                                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -EPERM;
}

/* The directory part of path: "." for a bare name, "/" for "/name". */
static void dir_of(const char *path, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, cap, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }
}

static int stat_failed(const char *path, char *err, size_t cap)
{
    int r = -errno;
    snprintf(err, cap, "%s: %s", path, strerror(-r));
    return r;
}

int up_ctl_check_private_dir(const char *dir, char *err, size_t cap)
{
    return up_ctl_check_private_dir_of(dir, geteuid(), err, cap);
}

int up_ctl_check_private_dir_of(const char *dir, uid_t me, char *err, size_t cap)
{
    struct stat st;
    /* lstat: a symlink could point anywhere its owner likes later. */
    if (lstat(dir, &st) < 0) {
        return stat_failed(dir, err, cap);
    }
    if (!S_ISDIR(st.st_mode)) {
        return untrusted(err, cap, "%s is a %s, not a directory", dir, file_kind(st.st_mode));
    }
    if (st.st_uid != me) {
        return untrusted(err, cap, "%s belongs to uid %u, not to this user (uid %u)", dir,
                         (unsigned)st.st_uid, (unsigned)me);
    }
    if ((st.st_mode & 077) != 0) {
        return untrusted(err, cap, "%s has mode %04o: other users may use it (it must be 0700)",
                         dir, (unsigned)(st.st_mode & 07777));
    }
    return 0;
}

int up_ctl_check_shared_dir(const char *dir, char *err, size_t cap)
{
    struct stat st;
    uid_t me = geteuid();
    if (stat(dir, &st) < 0) {
        return stat_failed(dir, err, cap);
    }
    if (!S_ISDIR(st.st_mode)) {
        return untrusted(err, cap, "%s is a %s, not a directory", dir, file_kind(st.st_mode));
    }
    if (st.st_uid != me && st.st_uid != 0) {
        return untrusted(err, cap,
                         "%s belongs to uid %u, another user, who could replace the socket", dir,
                         (unsigned)st.st_uid);
    }
    /* Without the sticky bit anyone may unlink or rename our socket there. */
    if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0) {
        return untrusted(err, cap,
                         "%s is writable by every user and not sticky: anyone could replace the "
                         "socket",
                         dir);
    }
    return 0;
}

int up_ctl_check_peer(int fd, uid_t owner, uid_t *ret_uid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return -errno;
    }
    if (cred.uid != geteuid() && cred.uid != 0 && cred.uid != owner) {
        *ret_uid = cred.uid;
        return -EPERM;
    }
    return 0;
}

/* Check path's directory by the rules for place; err ends with the way out. */
/* owner: whose a default directory must be. */
static int check_dir(const char *path, enum up_ctl_place place, uid_t owner, char *err, size_t cap)
{
    char dir[108];
    dir_of(path, dir, sizeof(dir));
    int r = place == UP_CTL_EXPLICIT ? up_ctl_check_shared_dir(dir, err, cap)
                                     : up_ctl_check_private_dir_of(dir, owner, err, cap);
    if (r == -EPERM) {
        size_t n = strlen(err);
        snprintf(err + n, cap - n, "; %s", ctl_dir_hint(place));
    }
    return r;
}

/* Make path's directory if it is missing (mode 0700, one level), then check
 * it: mkdir neither follows a symlink nor changes an existing directory, so
 * the check sees whatever was there before. */
static int prepare_dir(const char *path, enum up_ctl_place place, char *err, size_t cap)
{
    char dir[108];
    dir_of(path, dir, sizeof(dir));
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int r = -errno;
        snprintf(err, cap, "cannot create %s: %s", dir, strerror(-r));
        return r;
    }
    return check_dir(path, place, geteuid(), err, cap);
}

/* Make room at the socket's path: nothing there, or a stale socket of ours
 * (nobody answers on it), which is removed. A socket that answers is
 * another master: -EADDRINUSE. Anything else stays as it is: a file that is
 * not a socket (connect() says ECONNREFUSED for a regular file too) or
 * another user's socket. */
static int clear_path(const struct sockaddr_un *a, char *err, size_t cap)
{
    const char *path = a->sun_path;
    struct stat st;
    if (lstat(path, &st) < 0) {
        return errno == ENOENT ? 0 : stat_failed(path, err, cap);
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, cap,
                 "%s is a %s, not a socket; up-run leaves it alone: remove it or choose another "
                 "path with --control PATH",
                 path, file_kind(st.st_mode));
        return -EEXIST;
    }
    if (st.st_uid != geteuid()) {
        return untrusted(err, cap,
                         "%s is a socket of uid %u, not of this user; up-run leaves it alone: "
                         "choose another path with --control PATH",
                         path, (unsigned)st.st_uid);
    }
    int live = up_listen_unix_live(a);
    if (live > 0) {
        snprintf(err, cap, "%s is in use: another up-run is running there; use --control PATH",
                 path);
        return -EADDRINUSE;
    }
    if (live < 0) {
        snprintf(err, cap, "%s: %s", path, strerror(-live));
        return live;
    }
    return unlink(path) < 0 ? stat_failed(path, err, cap) : 0;
}

/* Bind and listen on the control socket at path, after the checks of
 * ctl.h. Returns 0 with *ret_fd, or -errno with err saying why. */
static int bind_socket(const char *path, enum up_ctl_place place, int *ret_fd, char *err,
                       size_t cap)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int r = prepare_dir(path, place, err, cap);
    if (r == 0) {
        r = clear_path(&a, err, cap);
    }
    int fd = r < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r < 0 || fd < 0) {
        return r < 0 ? r : stat_failed("socket", err, cap);
    }
    /* bind() creates the file with mode 0777 & ~umask: under 0177 it is
     * 0600 from its first moment, where a chmod() afterwards would leave a
     * window. The umask is the process's, and the master has one thread. */
    mode_t old = umask(0177);
    int b = bind(fd, (struct sockaddr *)&a, sizeof(a));
    r = b < 0 ? -errno : 0;
    umask(old);
    if (r == 0 && listen(fd, 16) < 0) {
        r = -errno;
        unlink(path);
    }
    if (r < 0) {
        snprintf(err, cap, "%s: %s", path, strerror(-r));
        up_close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int up_ctl_open(struct up_loop *loop, const char *path, enum up_ctl_place place,
                const struct up_ctl_cbs *cbs, void *ctx, struct up_ctl **ret, char *err,
                size_t errcap)
{
    struct up_ctl *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        snprintf(err, errcap, "%s", strerror(ENOMEM));
        return -ENOMEM;
    }
    ctl->cbs = cbs;
    ctl->ctx = ctx;
    int fd = -1;
    int r = 0;
    if (strlen(path) >= sizeof(ctl->path)) {
        snprintf(err, errcap, "the path does not fit a unix socket address");
        r = -ENAMETOOLONG;
    } else {
        snprintf(ctl->path, sizeof(ctl->path), "%s", path);
        /* A master killed just now may still listen here a few ms more,
         * so the probe connects (listen.h). */
        int waited = 0;
        while ((r = bind_socket(ctl->path, place, &fd, err, errcap)) == -EADDRINUSE &&
               up_listen_busy_wait(&waited)) {
        }
    }
    if (r >= 0 &&
        (r = up_asrv_open_take(loop, fd, true, line_complete, run_command, ctl, &ctl->srv)) < 0) {
        snprintf(err, errcap, "%s: %s", ctl->path, strerror(-r));
        unlink(ctl->path);
    }
    if (r < 0) {
        free(ctl);
        return r;
    }
    *ret = ctl;
    return 0;
}

int up_ctl_open_fd(struct up_loop *loop, const char *path, int fd, const struct up_ctl_cbs *cbs,
                   void *ctx, struct up_ctl **ret)
{
    struct up_ctl *ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) {
        up_close(fd);
        return -ENOMEM;
    }
    ctl->cbs = cbs;
    ctl->ctx = ctx;
    snprintf(ctl->path, sizeof(ctl->path), "%s", path);
    (void)up_fd_set_nonblock(fd, 1);
    int r = up_asrv_open_take(loop, fd, true, line_complete, run_command, ctl, &ctl->srv);
    if (r < 0) {
        up_log(UP_LOG_ERR, "control socket %s: %s", path, strerror(-r));
        free(ctl);
        return r;
    }
    *ret = ctl;
    return 0;
}

int up_ctl_fd(const struct up_ctl *ctl)
{
    return up_asrv_fd(ctl->srv);
}

void up_ctl_hand_over(struct up_ctl *ctl, bool handed)
{
    ctl->handed = handed;
    up_asrv_accepting(ctl->srv, !handed);
}

void up_ctl_close(struct up_ctl *ctl)
{
    if (ctl == NULL) {
        return;
    }
    up_asrv_close(ctl->srv);
    if (!ctl->handed) {
        unlink(ctl->path);
    }
    free(ctl);
}

/* Client side: whether path may be connected to. A default directory must
 * be private, as for the master; an explicit one is the operator's word,
 * and the peer's credentials, checked after connecting, decide whether the
 * answer is trusted. A path that does not exist is left for connect() to
 * report. */
static int client_check(enum up_ctl_place place, const char *path, uid_t owner, char *err,
                        size_t cap)
{
    int r = place == UP_CTL_EXPLICIT ? 0 : check_dir(path, place, owner, err, cap);
    if (r < 0) {
        return r == -ENOENT ? 0 : r;
    }
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        snprintf(err, cap, "%s is a %s, not a socket", path, file_kind(st.st_mode));
        return -EEXIST;
    }
    return 0;
}

int up_ctl_command(const char *path, enum up_ctl_place place, const char *cmd, uint64_t timeout_ms,
                   uid_t owner)
{
    char err[512];
    if (strlen(path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        fprintf(stderr, "up-run: control socket path too long: %s\n", path);
        return 1;
    }
    if (client_check(place, path, owner, err, sizeof(err)) < 0) {
        fprintf(stderr, "up-run: not connecting: %s\n", err);
        return 1;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        fprintf(stderr,
                "up-run: no master answers on %s: %s\n"
                "Is up-run running? Name it with -p PORT or --control PATH.\n",
                path, strerror(errno));
        up_close(fd);
        return 1;
    }
    uid_t peer = 0;
    int r = up_ctl_check_peer(fd, owner, &peer);
    if (r < 0) {
        if (r == -EPERM) {
            fprintf(stderr,
                    "up-run: %s is served by uid %u, neither this user nor root: not trusting "
                    "its answer (to command a master of another user, run up-run as that "
                    "user)\n",
                    path, (unsigned)peer);
        } else {
            fprintf(stderr, "up-run: %s: cannot check the peer: %s\n", path, strerror(-r));
        }
        up_close(fd);
        return 1;
    }
    char line[64];
    int len = snprintf(line, sizeof(line), "%s\n", cmd);
    int code = write(fd, line, (size_t)len) == len ? 0 : 1;
    /* One deadline for the whole answer (a reload's outcome may take the
     * app's start-up time). */
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n;
    bool error = false, first = true;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        error = error || (first && strncmp(buf, "error", 5) == 0);
        first = false;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    if (n < 0) {
        fflush(stdout);
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            fprintf(stderr,
                    "up-run: no answer from %s within %llu ms (--timeout); whatever the master "
                    "was doing goes on: see 'up-run status'\n",
                    path, (unsigned long long)timeout_ms);
        } else {
            fprintf(stderr, "up-run: reading from %s: %s\n", path, strerror(errno));
        }
        error = true;
    }
    up_close(fd);
    return code != 0 || error ? 1 : 0;
}
