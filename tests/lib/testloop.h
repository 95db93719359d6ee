/*
 * testloop: what unit tests of loop-driven modules share: a loop on a
 * given back end (skipped, or failed under UP_REQUIRE_IO_URING, when
 * io_uring is unavailable), running it with a deadline until something
 * happened, and connected socket pairs to drive a module from the other
 * end.
 */
#ifndef UP_TESTLOOP_H
#define UP_TESTLOOP_H

#include <stdbool.h>

#include "loop.h"

/* A new loop on back end be (the test is skipped when io_uring is
 * unavailable, unless UP_REQUIRE_IO_URING is set). */
struct up_loop *up_test_new_loop(enum up_backend be);

/* The same from up_loop_new_one_thread(). */
struct up_loop *up_test_new_loop_one_thread(enum up_backend be);

/* Run loop for up to ms; return early once *count >= want (want < 0:
 * never). A 10 ms timer bounds every wait. */
void up_test_run_for(struct up_loop *loop, int ms, const int *count, int want);

/* A non-blocking listening socket on 127.0.0.1, on a port the kernel
 * picks (*ret_port). */
int up_test_listener(int *ret_port);

/* A blocking TCP connection to 127.0.0.1:port (asserted). */
int up_test_dial(int port);

/* A connected pair: sv[0] non-blocking and CLOEXEC for the module, sv[1]
 * blocking with a 2 s receive timeout for the test. tcp: over loopback,
 * else a unix stream socketpair. */
void up_test_pair(bool tcp, int sv[2]);

/* Read from fd until EOF or 2 s, at most cap - 1 bytes, NUL-terminated.
 * Returns how many arrived. */
int up_test_read_all(int fd, char *buf, int cap);

#endif
