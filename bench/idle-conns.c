/*
 * idle-conns: open K Keep-Alive connections, send one request on each, read
 * the whole answer, then hold them idle until told to stop. The benchmark
 * uses it to measure the master's memory while the workers hold many idle
 * connections.
 *
 *     idle-conns HOST PORT K [FIRST]
 *
 * Prints to stdout (one line each, flushed):
 *
 *     idle-conns: ready open=N ok=N failed=N ms=T
 *         once every connection was opened and answered (ok) or failed;
 *     idle-conns: check open=N closed=N
 *         on SIGUSR1: how many of the held connections are still open
 *         (a connection the server closed reads EOF or an error);
 *
 * and exits on SIGTERM or SIGINT, closing everything (stdin is not read:
 * a background job's stdin is /dev/null).
 * Exit status 1 if fewer than K connections could be opened and answered.
 *
 * Connections are opened in waves of at most WAVE at a time with
 * non-blocking connect() and poll(), so that a listener's backlog is never
 * flooded, and each one has IO_TIMEOUT_MS to connect and answer.
 *
 * One source address has some 28,000 ephemeral ports towards one server
 * port (net.ipv4.ip_local_port_range). Towards a loopback HOST, with K above
 * PER_SOURCE, connection i comes from 127.1.0.(1 + i / PER_SOURCE) instead:
 * all of 127.0.0.0/8 is the loopback interface's, so 100,000 connections
 * need no setup. Several idle-conns share the work when one process may not
 * hold them all (the open-file limit): each is given its K and the number
 * of its first connection (FIRST, default 0), so that together they count
 * connections as one would.
 *
 * The caller raises `ulimit -n` above K (plus a few).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAVE 256
#define PER_SOURCE 20000
#define IO_TIMEOUT_MS 10000
#define BUF_MAX 4096

enum state { ST_CONNECTING, ST_SENDING, ST_READING, ST_DONE, ST_FAILED };

struct conn {
    int fd;
    enum state st;
    size_t sent;
    size_t got;
    char buf[512];
};

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t check_flag;

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_check(int sig)
{
    (void)sig;
    check_flag = 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n";

/* 1: a complete answer is in c->buf, 0: need more, -1: malformed. */
static int answer_complete(struct conn *c)
{
    c->buf[c->got] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (end == NULL) {
        return c->got >= sizeof(c->buf) - 1 ? -1 : 0;
    }
    if (strncmp(c->buf, "HTTP/1.", 7) != 0) {
        return -1;
    }
    size_t head = (size_t)(end - c->buf) + 4;
    long len = -1;
    for (char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            len = strtol(p + 15, NULL, 10);
        }
    }
    if (len < 0) {
        return -1; /* hello.so always sends Content-Length */
    }
    return c->got >= head + (size_t)len ? 1 : 0;
}

static void fail(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->st = ST_FAILED;
}

/* Bind fd to the source address of connection i (see PER_SOURCE), the
 * port left to connect(), which picks one unique for the four-tuple. */
static int bind_source(int fd, long i)
{
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24 | 1u << 16) + 1u + (uint32_t)(i / PER_SOURCE));
    return bind(fd, (const struct sockaddr *)&src, sizeof(src));
}

/* Drive one wave of connections (the first is connection first) until each
 * is done or failed. spread: bind each to its source address. */
static void run_wave(struct conn *cs, int n, const struct sockaddr_in *sa, long first, bool spread)
{
    struct pollfd *pfd = calloc((size_t)n, sizeof(*pfd));
    if (pfd == NULL) {
        perror("idle-conns: calloc");
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            fail(c);
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (spread && bind_source(c->fd, first + i) < 0) {
            fail(c);
            continue;
        }
        if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
            c->st = ST_SENDING;
        } else if (errno == EINPROGRESS) {
            c->st = ST_CONNECTING;
        } else {
            fail(c);
        }
    }
    long long deadline = now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        int live = 0;
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[i];
            pfd[i].fd = -1;
            pfd[i].events = 0;
            pfd[i].revents = 0;
            if (c->st == ST_CONNECTING || c->st == ST_SENDING) {
                pfd[i].fd = c->fd;
                pfd[i].events = POLLOUT;
                live++;
            } else if (c->st == ST_READING) {
                pfd[i].fd = c->fd;
                pfd[i].events = POLLIN;
                live++;
            }
        }
        if (live == 0 || stop_flag) {
            break;
        }
        long long left = deadline - now_ms();
        if (left <= 0) {
            for (int i = 0; i < n; i++) {
                if (cs[i].st != ST_DONE) {
                    fail(&cs[i]);
                }
            }
            break;
        }
        int r = poll(pfd, (nfds_t)n, (int)left);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("idle-conns: poll");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = &cs[i];
            if (pfd[i].fd < 0 || pfd[i].revents == 0) {
                continue;
            }
            if (c->st == ST_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                    fail(c);
                    continue;
                }
                c->st = ST_SENDING;
            }
            if (c->st == ST_SENDING) {
                ssize_t w =
                    send(c->fd, request + c->sent, sizeof(request) - 1 - c->sent, MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno != EAGAIN && errno != EINTR) {
                        fail(c);
                    }
                    continue;
                }
                c->sent += (size_t)w;
                if (c->sent == sizeof(request) - 1) {
                    c->st = ST_READING;
                }
                continue;
            }
            if (c->st == ST_READING) {
                ssize_t rd = recv(c->fd, c->buf + c->got, sizeof(c->buf) - 1 - c->got, 0);
                if (rd < 0) {
                    if (errno != EAGAIN && errno != EINTR) {
                        fail(c);
                    }
                    continue;
                }
                if (rd == 0) {
                    fail(c);
                    continue;
                }
                c->got += (size_t)rd;
                int done = answer_complete(c);
                if (done < 0) {
                    fail(c);
                } else if (done > 0) {
                    c->st = ST_DONE;
                }
            }
        }
    }
    free(pfd);
}

/* How many held connections are still open: an open idle connection has
 * nothing to read; a closed one reads EOF or an error. */
static int count_open(struct conn *cs, int k)
{
    int open_n = 0;
    for (int i = 0; i < k; i++) {
        struct conn *c = &cs[i];
        if (c->st != ST_DONE) {
            continue;
        }
        char b[64];
        ssize_t r = recv(c->fd, b, sizeof(b), MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            open_n++;
        } else if (r > 0) {
            open_n++; /* unexpected bytes, but still open */
        } else {
            close(c->fd);
            c->fd = -1;
            c->st = ST_FAILED;
        }
    }
    return open_n;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: idle-conns HOST PORT K [FIRST]\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "idle-conns: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    long port = strtol(argv[2], NULL, 10);
    long k = strtol(argv[3], NULL, 10);
    long first = argc == 5 ? strtol(argv[4], NULL, 10) : 0;
    if (port < 1 || port > 65535 || k < 1 || k > 1000000 || first < 0 || first > 10000000) {
        fprintf(stderr, "idle-conns: bad PORT, K or FIRST\n");
        return 2;
    }
    sa.sin_port = htons((unsigned short)port);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)k + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)k + 16) {
            fprintf(stderr, "idle-conns: open-file limit %llu is too low for %ld connections\n",
                    (unsigned long long)rl.rlim_cur, k);
            return 1;
        }
    }

    struct sigaction act = {0};
    act.sa_handler = on_stop;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    act.sa_handler = on_check;
    sigaction(SIGUSR1, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct conn *cs = calloc((size_t)k, sizeof(*cs));
    if (cs == NULL) {
        perror("idle-conns: calloc");
        return 1;
    }
    bool spread = first + k > PER_SOURCE && (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
    long long t0 = now_ms();
    for (long i = 0; i < k && !stop_flag; i += WAVE) {
        int n = (int)(k - i < WAVE ? k - i : WAVE);
        run_wave(cs + i, n, &sa, first + i, spread);
    }
    int ok = 0;
    int failed = 0;
    for (long i = 0; i < k; i++) {
        if (cs[i].st == ST_DONE) {
            ok++;
        } else {
            failed++;
        }
    }
    printf("idle-conns: ready open=%d ok=%d failed=%d ms=%lld\n", ok, ok, failed, now_ms() - t0);
    fflush(stdout);

    /* Hold until told to stop (SIGTERM/SIGINT); SIGUSR1 asks for a check. */
    while (!stop_flag) {
        if (check_flag) {
            check_flag = 0;
            int open_n = count_open(cs, (int)k);
            printf("idle-conns: check open=%d closed=%d\n", open_n, ok - open_n);
            fflush(stdout);
        }
        poll(NULL, 0, 100);
    }
    for (long i = 0; i < k; i++) {
        if (cs[i].fd >= 0) {
            close(cs[i].fd);
        }
    }
    free(cs);
    return failed == 0 ? 0 : 1;
}
