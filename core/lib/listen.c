#include "listen.h"

#include "fd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int parse_port(const char *s, uint16_t *ret)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 65535) {
        return -EINVAL;
    }
    *ret = (uint16_t)v;
    return 0;
}

static int parse_unix(const char *path, struct up_listen_addr *a, char *err, size_t cap)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    if (path[0] == '\0' || strlen(path) >= sizeof(un->sun_path)) {
        snprintf(err, cap, "unix socket path must be 1 to %zu bytes", sizeof(un->sun_path) - 1);
        return -EINVAL;
    }
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    return 0;
}

static int resolve(const char *host, uint16_t port, struct up_listen_addr *a, char *err, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int g = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, cap, "cannot resolve host '%s': %s", host, gai_strerror(g));
        return -EINVAL;
    }
    /* A passive lookup with no host gives 0.0.0.0 first on Linux: the
     * "all IPv4 addresses" default most servers use. */
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int up_listen_parse(const char *text, struct up_listen_addr *ret, char *err, size_t cap)
{
    struct up_listen_addr a;
    memset(&a, 0, sizeof(a));
    snprintf(a.text, sizeof(a.text), "%s", text);
    int r;
    if (strncmp(text, "unix:", 5) == 0) {
        r = parse_unix(text + 5, &a, err, cap);
    } else {
        char host[128] = "";
        const char *port = text;
        const char *colon = strrchr(text, ':');
        if (text[0] == '[') {
            const char *close = strchr(text, ']');
            if (close == NULL || close[1] != ':' || (size_t)(close - text) > sizeof(host)) {
                snprintf(err, cap, "'%s': write IPv6 as [addr]:port", text);
                return -EINVAL;
            }
            memcpy(host, text + 1, (size_t)(close - text - 1));
            port = close + 2;
        } else if (colon != NULL) {
            if ((size_t)(colon - text) >= sizeof(host)) {
                snprintf(err, cap, "'%s': host name too long", text);
                return -EINVAL;
            }
            memcpy(host, text, (size_t)(colon - text));
            port = colon + 1;
        }
        uint16_t p;
        if (parse_port(port, &p) < 0) {
            snprintf(err, cap, "'%s': port must be a number from 1 to 65535", text);
            return -EINVAL;
        }
        r = resolve(strcmp(host, "*") == 0 ? "" : host, p, &a, err, cap);
    }
    if (r == 0) {
        *ret = a;
    }
    return r;
}

/* Make room at a unix socket path: remove a socket file left over by a
 * previous run (connecting to it is refused: nobody listens), and nothing
 * else. connect() says ECONNREFUSED for a regular file too, so what is at
 * the path is asked of lstat() first: a file that is not a socket (or a
 * symlink to anything) is someone's data, left alone, and the path is
 * refused with -EEXIST. A live socket stays, and bind() then says
 * EADDRINUSE. The probe does not block: a server whose backlog is full
 * would hold a blocking connect() until it accepts (EAGAIN: it lives). */
static int clear_unix_path(const struct sockaddr_un *un)
{
    struct stat st;
    if (lstat(un->sun_path, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) {
        return -errno;
    }
    if (connect(probe, (const struct sockaddr *)un, sizeof(*un)) < 0 && errno == ECONNREFUSED) {
        unlink(un->sun_path);
    }
    up_close(probe);
    return 0;
}

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

int up_listen_open(const struct up_listen_addr *a, const struct up_listen_opts *o, int *ret_fd)
{
    int family = a->ss.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    int r = 0;
    if (family == AF_UNIX) {
        r = clear_unix_path((const struct sockaddr_un *)&a->ss);
    } else {
        r = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (r == 0 && o->reuseport) {
            r = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        }
        if (r == 0 && family == AF_INET6) {
            r = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        }
        if (r == 0 && o->defer_accept_s > 0) {
            r = set_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, o->defer_accept_s);
        }
    }
    if (r == 0 && bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        r = -errno;
    }
    if (r == 0 && listen(fd, o->backlog > 0 ? o->backlog : SOMAXCONN) < 0) {
        r = -errno;
    }
    if (r < 0) {
        up_close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

bool up_listen_busy_wait(int *waited_ms)
{
    /* 10 ms, then twice as long each time up to 500: a restart normally
     * waits one step, and a live server at a unix path sees about ten
     * probes (each a connection it accepts), not two hundred. */
    if (*waited_ms >= UP_LISTEN_BUSY_WAIT_MS) {
        return false;
    }
    int step = *waited_ms + 10 < 500 ? *waited_ms + 10 : 500;
    struct timespec ts = {.tv_nsec = step * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    *waited_ms += step;
    return true;
}

int up_listen_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}
