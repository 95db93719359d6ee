/*
 * proc: what /proc says about other processes (a master, its workers, the
 * processes of a uid), for tests that count what a server holds: fds,
 * children, CPU time, start time. (fdcount.h counts the test's own fds.)
 *
 * Never asserts, never logs. A process that is gone, or a file that cannot
 * be read, is -1 (or false, or 0 processes), for the test to assert on.
 * Only the functions named "wait" or "settled" sleep, each up to the
 * timeout it is given. Linux only.
 */
#ifndef UP_TEST_PROC_H
#define UP_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* /proc/PID/what (a small file: "comm", "cmdline", "stat") into buf,
 * cap - 1 bytes at most, with a NUL after them (NULs inside stay). Returns
 * the length, or -1 if it cannot be read. */
ssize_t proc_read(pid_t pid, const char *what, char *buf, size_t cap);

/* The state letter ('R', 'S', 'Z', ...), parent and process group of pid,
 * from /proc/PID/stat (any of the out-params may be NULL). Returns false,
 * with them untouched, if pid is gone. */
bool proc_stat(pid_t pid, char *ret_state, pid_t *ret_ppid, pid_t *ret_pgrp);

/* Whether pid is gone: no /proc entry, or a zombie nobody reaped yet (an
 * orphan's reaper may be slow, and a zombie serves nothing). */
bool proc_gone(pid_t pid);

/* The parent of pid, or -1 if it is gone. */
pid_t proc_ppid(pid_t pid);

/* How many fds pid has open (/proc/PID/fd), or -1 if it cannot be read. */
int proc_fds(pid_t pid);

/* How many of pid's fds lead to target ("anon_inode:[io_uring]", a path),
 * or -1 if they cannot be read. */
int proc_fds_of(pid_t pid, const char *target);

/* pid's fd count once it is stable: the same over 5 samples 20 ms apart (a
 * connection being handed off holds an fd for a moment) and, if want >= 0,
 * equal to want. Waits up to timeout_ms, then returns the last count (-1:
 * pid is gone). */
int proc_fds_settled(pid_t pid, int want, int timeout_ms);

/* The CPU time pid's threads have spent so far, in seconds, or -1 if it is
 * gone: the scheduler's count in ns (/proc/PID/task/N/schedstat), which sees
 * every burst, where the kernel has it; else utime + stime, which are
 * sampled at the clock tick and miss most of a process that wakes briefly
 * and often (a seventh of it on a VM seen here). */
double proc_cpu_s(pid_t pid);

/* When pid started, in ms of CLOCK_BOOTTIME (the clock of /proc/PID/stat's
 * starttime, at clock-tick resolution), or -1 if it is gone. */
long long proc_start_ms(pid_t pid);

/* CLOCK_BOOTTIME now, in ms: the clock of proc_start_ms(). */
long long proc_boottime_ms(void);

/* The children of pid, up to cap of them into pids (may be NULL when cap is
 * 0), zombies too if zombies is true (an unreaped worker still counts
 * against a cap, and is a leak too). Reads /proc/PID/task/PID/children, or
 * scans every /proc/N/stat where the kernel has no children file. Returns
 * how many there are (possibly more than cap), or -1 if pid is gone. */
int proc_children(pid_t pid, bool zombies, pid_t *pids, int cap);

/* The live (not zombie) processes of process group pgrp, up to cap of them
 * into pids. Returns how many there are (possibly more than cap). */
int proc_group(pid_t pgrp, pid_t *pids, int cap);

/* " 123(S) 456(Z)": pids[0..n) with their states (a gone one as "(-)"),
 * into buf for failure messages; cut at cap. */
void proc_desc(const pid_t *pids, int n, char *buf, size_t cap);

/* How many tasks (threads included: io_uring's io-wq workers count too)
 * run as uid. */
int proc_tasks_of(uid_t uid);

/* Wait until every pid of pids[0..n) is gone (proc_gone()). Returns the ms
 * it took, or -1 if one was still there after timeout_ms. */
long long proc_wait_gone(const pid_t *pids, int n, int timeout_ms);

#endif
