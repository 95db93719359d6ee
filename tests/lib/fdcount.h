/*
 * fdcount: how many fds this process has open, for tests that must prove
 * they leaked none (STYLE.md: count /proc/self/fd before and after).
 *
 * Never logs, never blocks. Linux only (reads /proc).
 */
#ifndef UP_TEST_FDCOUNT_H
#define UP_TEST_FDCOUNT_H

/* Number of open fds of the calling process, not counting the directory fd
 * used to list them. Returns >= 0, or -errno if /proc/self/fd cannot be
 * read. */
int up_test_fd_count(void);

struct rlimit;

/* Lower this process's soft RLIMIT_NOFILE to its lowest free fd, so that
 * the next fd it would get (an accept, an fd received with SCM_RIGHTS) is
 * refused: EMFILE, or MSG_CTRUNC. *ret_saved gets the limits to restore
 * with setrlimit(). Returns 0 or -errno. */
int up_test_fd_limit_reached(struct rlimit *ret_saved);
#endif
