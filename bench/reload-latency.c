/*
 * reload-latency: how long from a reload signal to the first answer from
 * the new generation, as a client sees it.
 *
 *     reload-latency PID PORT N
 *
 * PID is an up-run master serving examples/echo.so on 127.0.0.1:PORT (its
 * answers carry X-Up-Generation). N times: ask once which generation
 * answers, send SIGUSR2 to PID, then ask again on fresh connections, one
 * after the other, until a higher generation answers; the time from the
 * signal to that answer is one sample. Between two reloads it waits
 * GAP_MS, so that the old generation is gone. Prints (flushed)
 *
 *     reload-latency: n=N median=M min=A max=B ms
 *
 * and exits 1 if the server never answered or a reload never showed
 * within TIMEOUT_MS.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GAP_MS 300
#define TIMEOUT_MS 10000
#define MAX_N 1000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One GET on a fresh connection: the generation that answered, or -1. */
static long generation(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    char buf[4096];
    size_t got = 0;
    long gen = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1)) {
        ssize_t n;
        while (got < sizeof(buf) - 1 && (n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n") != NULL) {
                break;
            }
        }
        buf[got] = '\0';
        const char *h = strcasestr(buf, "\r\nX-Up-Generation:");
        if (h != NULL) {
            gen = strtol(h + strlen("\r\nX-Up-Generation:"), NULL, 10);
        }
    }
    close(fd);
    return gen;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: reload-latency PID PORT N\n");
        return 2;
    }
    pid_t pid = (pid_t)atol(argv[1]);
    int port = atoi(argv[2]);
    int n = atoi(argv[3]);
    if (pid <= 0 || port <= 0 || port > 65535 || n < 1 || n > MAX_N) {
        fprintf(stderr, "reload-latency: bad PID, PORT or N (1..%d)\n", MAX_N);
        return 2;
    }
    static double samples[MAX_N];
    double start = now_ms();
    long g0;
    while ((g0 = generation(port)) < 0) {
        if (now_ms() - start > TIMEOUT_MS) {
            fprintf(stderr, "reload-latency: nothing answers on port %d\n", port);
            return 1;
        }
        usleep(20000);
    }
    for (int i = 0; i < n; i++) {
        g0 = generation(port);
        double t0 = now_ms();
        if (kill(pid, SIGUSR2) < 0) {
            fprintf(stderr, "reload-latency: kill %d: %s\n", (int)pid, strerror(errno));
            return 1;
        }
        while (generation(port) <= g0) {
            if (now_ms() - t0 > TIMEOUT_MS) {
                fprintf(stderr, "reload-latency: reload %d not serving after %d ms\n", i + 1,
                        TIMEOUT_MS);
                return 1;
            }
        }
        samples[i] = now_ms() - t0;
        usleep(GAP_MS * 1000);
    }
    qsort(samples, (size_t)n, sizeof(samples[0]), cmp);
    double median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    printf("reload-latency: n=%d median=%.2f min=%.2f max=%.2f ms\n", n, median, samples[0],
           samples[n - 1]);
    fflush(stdout);
    return 0;
}
