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

static bool seen(const struct up_listen_addr *a, int n, const struct addrinfo *ai)
{
    for (int i = 0; i < n; i++) {
        if (a[i].len == ai->ai_addrlen && memcmp(&a[i].ss, ai->ai_addr, ai->ai_addrlen) == 0) {
            return true;
        }
    }
    return false;
}

/* Every address host resolves to, in the resolver's order, into ret[0..n):
 * a name is all of its addresses (localhost on a stock /etc/hosts is ::1
 * and 127.0.0.1, and a client may try either), as nginx binds them. No
 * host is the first of the passive lookup only: 0.0.0.0 on Linux, the
 * "all IPv4 addresses" default most servers use. */
static int resolve(const char *text, const char *host, uint16_t port, struct up_listen_addr *ret,
                   int cap, char *err, size_t errcap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int g = getaddrinfo(host[0] ? host : NULL, ports, &hints, &res);
    if (g != 0) {
        snprintf(err, errcap, "cannot resolve host '%s': %s", host, gai_strerror(g));
        return -EINVAL;
    }
    struct up_listen_addr all[UP_LISTEN_MAX_ADDRS + 1];
    int n = 0;
    for (struct addrinfo *ai = res; ai != NULL && n <= UP_LISTEN_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen <= sizeof(all[n].ss) && !seen(all, n, ai)) {
            memset(&all[n], 0, sizeof(all[n]));
            memcpy(&all[n].ss, ai->ai_addr, ai->ai_addrlen);
            all[n].len = ai->ai_addrlen;
            n++;
        }
        if (host[0] == '\0') {
            break;
        }
    }
    freeaddrinfo(res);
    if (n == 0) {
        snprintf(err, errcap, "'%s': no address to listen on", text);
        return -EINVAL;
    }
    char nums[256] = "";
    for (int i = 0; i < n; i++) {
        char num[INET6_ADDRSTRLEN] = "?";
        const struct sockaddr_storage *ss = &all[i].ss;
        inet_ntop(ss->ss_family,
                  ss->ss_family == AF_INET6
                      ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                      : (const void *)&((const struct sockaddr_in *)ss)->sin_addr,
                  num, sizeof(num));
        /* "localhost:80 (::1)": which of the name's addresses a log means. */
        if (n > 1) {
            snprintf(all[i].text, sizeof(all[i].text), "%.100s (%s)", text, num);
        } else {
            snprintf(all[i].text, sizeof(all[i].text), "%s", text);
        }
        size_t used = strlen(nums);
        snprintf(nums + used, sizeof(nums) - used, "%s%s", i > 0 ? ", " : "", num);
    }
    if (n > cap) {
        snprintf(err, errcap,
                 "'%s' is %s%d addresses (%s), more than can be served here (%d): give %s by "
                 "number, like 127.0.0.1:%u or [::1]:%u",
                 text, n > UP_LISTEN_MAX_ADDRS ? "more than " : "",
                 n > UP_LISTEN_MAX_ADDRS ? UP_LISTEN_MAX_ADDRS : n, nums, cap,
                 cap == 1 ? "one" : "fewer", port, port);
        return -EINVAL;
    }
    memcpy(ret, all, (size_t)n * sizeof(all[0]));
    return n;
}

int up_listen_parse(const char *text, struct up_listen_addr *ret, int cap, char *err, size_t errcap)
{
    if (strncmp(text, "unix:", 5) == 0) {
        memset(&ret[0], 0, sizeof(ret[0]));
        snprintf(ret[0].text, sizeof(ret[0].text), "%s", text);
        int r = parse_unix(text + 5, &ret[0], err, errcap);
        return r < 0 ? r : 1;
    }
    char host[128] = "";
    const char *port = text;
    const char *colon = strrchr(text, ':');
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - text) > sizeof(host)) {
            snprintf(err, errcap, "'%s': write IPv6 as [addr]:port", text);
            return -EINVAL;
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        port = close + 2;
    } else if (colon != NULL) {
        if ((size_t)(colon - text) >= sizeof(host)) {
            snprintf(err, errcap, "'%s': host name too long", text);
            return -EINVAL;
        }
        memcpy(host, text, (size_t)(colon - text));
        port = colon + 1;
    }
    uint16_t p;
    if (parse_port(port, &p) < 0) {
        snprintf(err, errcap, "'%s': port must be a number from 1 to 65535", text);
        return -EINVAL;
    }
    return resolve(text, strcmp(host, "*") == 0 ? "" : host, p, ret, cap, err, errcap);
}

/* Make room at a unix socket path: remove a socket file left over by a
 * previous run (connecting to it is refused: nobody listens), and nothing
 * else. connect() says ECONNREFUSED for a regular file too, so what is at
 * the path is asked of lstat() first: a file that is not a socket (or a
 * symlink to anything) is someone's data, left alone, and the path is
 * refused with -EEXIST. A live socket stays, and bind() then says
 * EADDRINUSE. */
static int clear_unix_path(const struct sockaddr_un *un)
{
    struct stat st;
    if (lstat(un->sun_path, &st) < 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        return -EEXIST;
    }
    if (up_listen_unix_live(un) == 0) {
        unlink(un->sun_path);
    }
    return 0;
}

int up_listen_unix_live(const struct sockaddr_un *un)
{
    /* Not blocking: a server whose backlog is full would hold a blocking
     * connect() until it accepted; EAGAIN says it lives. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0) {
        return -errno;
    }
    int r = connect(probe, (const struct sockaddr *)un, sizeof(*un)) == 0 ? 1 : -errno;
    up_close(probe);
    return r == -EAGAIN ? 1 : r == -ECONNREFUSED ? 0 : r;
}

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? -errno : 0;
}

static int open_once(const struct up_listen_addr *a, const struct up_listen_opts *o, int *ret_fd)
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

int up_listen_open(const struct up_listen_addr *a, const struct up_listen_opts *o, int *ret_fd,
                   int *ret_waited_ms)
{
    int waited = 0;
    int r = 0;
    while ((r = open_once(a, o, ret_fd)) == -EADDRINUSE && up_listen_busy_wait(&waited)) {
    }
    if (ret_waited_ms != NULL) {
        *ret_waited_ms = waited;
    }
    return r;
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
