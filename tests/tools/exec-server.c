/*
 * exec-server: a small HTTP/1.1 server started by up-run --exec, the way
 * an unmodified server would be: it takes its listener from socket
 * activation (fd 3, LISTEN_FDS, LISTEN_PID naming itself) and says
 * READY=1 on $NOTIFY_SOCKET. What else it does comes from EXEC_MODE:
 *
 *   notify      READY=1 and STATUS=serving once it listens (the default)
 *   silent      never a word on the notify socket
 *   grandchild  READY=1 sent by a grandchild (which then stays, asleep)
 *   otheruser   READY=1 sent by a child running as uid 65534; it writes
 *               "exec-server: as uid 65534: <result>" to stderr
 *   stubborn    as notify, but ignores SIGTERM (and so does a child it
 *               starts in its process group): only SIGKILL ends them
 *   exit0       exits 0 at once
 *
 * EXEC_MODE_FILE, when it names a file, overrides EXEC_MODE with its first
 * word: a test changes what the next generation does.
 *
 * Every answer is 200 with X-Up-Pid and X-Up-Generation headers; GET /env
 * answers with what it was started with (LISTEN_FDS, LISTEN_PID == pid,
 * UP_GENERATION, UP_WORKER, PORT, LISTEN_FDNAMES). On SIGTERM it says
 * STOPPING=1, stops accepting (closes its fd 3: the master keeps the
 * listener), answers what it holds, closes idle connections and exits 0.
 * A connection it accepted but that has not sent a request yet is not
 * idle: its request may be on the way (closing it would reset it), so it
 * is answered first, or closed after 2 s of silence.
 * Single-threaded, poll-based; one request at a time per connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 512

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static int notify(const char *text)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL) {
        return -ENOENT;
    }
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int r = fd < 0 || sendto(fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof(a)) < 0
                ? -errno
                : 0;
    close(fd);
    return r;
}

static void modes(const char *mode)
{
    if (strcmp(mode, "grandchild") == 0) {
        if (fork() == 0) {
            if (fork() == 0) {
                notify("READY=1");
                pause();
                _exit(0);
            }
            wait(NULL);
            _exit(0);
        }
    } else if (strcmp(mode, "otheruser") == 0) {
        if (fork() == 0) {
            int r = setgid(65534) == 0 && setuid(65534) == 0 ? notify("READY=1") : -errno;
            fprintf(stderr, "exec-server: as uid 65534: %s\n", r == 0 ? "sent" : strerror(-r));
            _exit(0);
        }
    } else if (strcmp(mode, "silent") != 0) {
        notify("READY=1\nSTATUS=serving");
    }
    if (strcmp(mode, "stubborn") == 0) {
        signal(SIGTERM, SIG_IGN);
        if (fork() == 0) {
            pause(); /* a helper of its own, in its process group */
            _exit(0);
        }
    }
}

static void answer(int fd, const char *req)
{
    char body[1024], head[512];
    const char *g = getenv("UP_GENERATION");
    int n;
    if (strncmp(req, "GET /env ", 9) == 0) {
        const char *lp = getenv("LISTEN_PID");
        n = snprintf(body, sizeof(body),
                     "LISTEN_FDS=%s\nLISTEN_PID_OK=%d\nLISTEN_FDNAMES=%s\nUP_GENERATION=%s\n"
                     "UP_WORKER=%s\nPORT=%s\n",
                     getenv("LISTEN_FDS"), lp != NULL && atoi(lp) == (int)getpid(),
                     getenv("LISTEN_FDNAMES"), g, getenv("UP_WORKER"), getenv("PORT"));
    } else {
        n = snprintf(body, sizeof(body), "generation %s pid %d\n", g, (int)getpid());
    }
    bool close_it = strstr(req, "Connection: close") != NULL || stopping;
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nX-Up-Pid: %d\r\nX-Up-Generation: %s\r\n"
                     "Content-Length: %d\r\n%s\r\n",
                     (int)getpid(), g, n, close_it ? "Connection: close\r\n" : "");
    (void)!write(fd, head, (size_t)h);
    (void)!write(fd, body, (size_t)n);
}

int main(void)
{
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    if (fds == NULL || pid == NULL || atoi(pid) != (int)getpid() || atoi(fds) < 1) {
        fprintf(stderr, "exec-server: no listener from socket activation\n");
        return 1;
    }
    const char *mode = getenv("EXEC_MODE") != NULL ? getenv("EXEC_MODE") : "notify";
    static char word[32];
    FILE *f = getenv("EXEC_MODE_FILE") != NULL ? fopen(getenv("EXEC_MODE_FILE"), "re") : NULL;
    if (f != NULL && fscanf(f, "%31s", word) == 1) {
        mode = word;
    }
    if (f != NULL) {
        fclose(f);
    }
    if (strcmp(mode, "exit0") == 0) {
        return 0;
    }
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    modes(mode);
    static struct pollfd p[MAX_CONNS + 1];
    static char buf[MAX_CONNS + 1][4096];
    static size_t len[MAX_CONNS + 1];
    static int served[MAX_CONNS + 1];
    long long stop_polls = 0;
    int n = 1;
    p[0] = (struct pollfd){.fd = 3, .events = POLLIN};
    bool told = false;
    for (;;) {
        if (stopping && !told) {
            told = true;
            notify("STOPPING=1");
            close(3); /* our copy: the listener lives on in the master */
            p[0].fd = -1;
        }
        int live = 0;
        stop_polls += stopping;
        for (int i = 1; i < n; i++) {
            bool idle = len[i] == 0 && (served[i] > 0 || stop_polls > 10);
            if (stopping && p[i].fd >= 0 && idle) {
                close(p[i].fd); /* idle: closed, as most servers do */
                p[i].fd = -1;
            }
            live += p[i].fd >= 0;
        }
        if (stopping && live == 0) {
            return 0;
        }
        if (poll(p, (nfds_t)n, 200) < 0 && errno != EINTR) {
            return 1;
        }
        if (p[0].fd >= 0 && (p[0].revents & POLLIN)) {
            int c = accept4(3, NULL, NULL, SOCK_CLOEXEC);
            int slot = 1;
            while (slot < n && p[slot].fd >= 0) {
                slot++;
            }
            if (c >= 0 && slot <= MAX_CONNS) {
                p[slot] = (struct pollfd){.fd = c, .events = POLLIN};
                len[slot] = 0;
                served[slot] = 0;
                n = slot == n ? n + 1 : n;
            } else if (c >= 0) {
                close(c);
            }
        }
        for (int i = 1; i < n; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }
            ssize_t r = read(p[i].fd, buf[i] + len[i], sizeof(buf[i]) - 1 - len[i]);
            if (r <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                continue;
            }
            len[i] += (size_t)r;
            buf[i][len[i]] = '\0';
            if (strstr(buf[i], "\r\n\r\n") != NULL) {
                answer(p[i].fd, buf[i]);
                served[i]++;
                bool close_it = strstr(buf[i], "Connection: close") != NULL || stopping;
                len[i] = 0;
                if (close_it) {
                    close(p[i].fd);
                    p[i].fd = -1;
                }
            }
        }
    }
}
