/*
 * conns: client connections at the level of the socket, for tests that
 * hold many at once or push one to its limits: a unix socket, a socket with
 * its buffers set, sends that take what fits, the receive queue, and one
 * answer on each of many connections collected with poll(). No server
 * state: harness.h, which includes this, drives the servers.
 *
 * Functions named "ht_collect" wait up to the timeout they are given; the
 * others do not block. Like harness.h's, they assert where it says so.
 */
#ifndef UP_TEST_CONNS_H
#define UP_TEST_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "testlib.h"

/* Connect to the unix stream socket at path, non-blocking (a send that does
 * not fit fails at once instead of waiting). Returns the fd (the caller
 * owns it) or -errno: -EAGAIN while its listen backlog is full. Does not
 * assert. */
int ht_connect_unix(const char *path);

/* Connect to 127.0.0.1:port with the socket buffers set first (0 leaves
 * one as the kernel sizes it; only before connect() do they size the TCP
 * window) and TCP_NODELAY; blocking, no timeouts. Asserts it. */
int ht_connect_bufs(int port, int rcvbuf, int sndbuf);

/* Send what the kernel takes of buf[*sent..len) now, without blocking,
 * moving *sent on. Returns how many bytes went, or -errno when the
 * connection failed. */
long ht_send_some(int fd, const char *buf, size_t len, size_t *sent);

/* How many bytes wait in fd's receive queue (FIONREAD), asserted. */
int ht_inq(int fd);

/* X-Up-Pid and X-Up-Generation of an answer, asserted present. */
pid_t ht_resp_pid(const struct up_test_resp *r);
unsigned ht_resp_gen(const struct up_test_resp *r);

/* Whether pid is one of set[0..n). */
bool ht_pid_in(pid_t pid, const pid_t *set, int n);

/* How a connection of many ended. Zero it before the first collect. */
struct ht_answer {
    bool done;
    int ret;      /* 0, or how reading it failed (-errno, as up_test_read_response()) */
    int status;   /* the HTTP status, -1 if the connection ended without a whole response */
    pid_t pid;    /* X-Up-Pid, 0 if none */
    long long at; /* ms after t0 when it ended */
};

/* Read one response on fd (up to timeout_ms) into a. */
void ht_read_answer(int fd, struct ht_answer *a, long long t0, int timeout_ms);

/* One response on each fds[i] whose a[i] is not done yet (set done for an
 * fd not to wait for), as they come, for up to timeout_ms: poll() them
 * all, and read each that is readable with ht_read_answer() (2 s for the
 * rest of a response that began). Returns how many of the n are done. */
int ht_collect(const int *fds, int n, struct ht_answer *a, long long t0, int timeout_ms);

/* The same, for connections that must end with no answer: a[i] is done at
 * the end of fds[i], with ret 0 for a clean EOF, -errno for an error, or
 * -EPROTO if bytes came (the first one is read). */
int ht_collect_closed(const int *fds, int n, struct ht_answer *a, long long t0, int timeout_ms);

#endif
