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

#endif
