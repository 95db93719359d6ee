/*
 * cpus: how many CPUs this process may really use, for --workers=auto and
 * the cpus variable of worker count expressions.
 *
 * That is the smaller of two limits: the CPUs in the affinity mask
 * (taskset, cpusets) and the cgroup v2 CPU quota (cpu.max, as set by
 * `docker --cpus` or systemd's CPUQuota=) of this process's cgroup or of any
 * ancestor, rounded up. A cgroup v1 quota is not read.
 *
 * Owns nothing and holds no state (every call reads the kernel afresh);
 * never logs. Reads a few small files under /proc and /sys/fs/cgroup, which
 * does not block in practice. The parsing helpers take text so tests can
 * feed them any file content.
 */
#ifndef UP_CPUS_H
#define UP_CPUS_H

#include <stddef.h>

/* Where the cgroup v2 hierarchy is mounted. */
#define UP_CPUS_CGROUP_ROOT "/sys/fs/cgroup"

/* The usable CPU count: min(affinity mask, cgroup quota), always >= 1. Falls
 * back to the online CPU count when the affinity mask cannot be read, and
 * ignores a cgroup it cannot read (no limit found is no limit). */
long up_cpus_usable(void);

/* Parse the content of a cgroup v2 cpu.max file ("$MAX $PERIOD", MAX being a
 * number or "max", optionally ending in a newline). Returns the quota in
 * CPUs rounded up and at least 1 ("150000 100000" -> 2, "50000 100000" ->
 * 1), -1 when there is no limit ("max 100000"), or -EINVAL when the text is
 * not in that form. */
long up_cpus_from_cgroup_max(const char *cpu_max_text);

/* Find this process's cgroup v2 path in the content of /proc/self/cgroup
 * (the "0::/path" line) and copy it, NUL-terminated, into buf. Returns 0,
 * -ENOENT when there is no v2 line, or -ENAMETOOLONG when cap is too small
 * (buf is then untouched). */
int up_cpus_cgroup_path(const char *proc_cgroup_text, char *buf, size_t cap);

/* The tightest cpu.max quota from root/path up to root itself, inclusive: a
 * limit set on an ancestor caps every cgroup below it. Returns CPUs (>= 1) or
 * -1 when no level has a readable limit. root is a directory such as
 * UP_CPUS_CGROUP_ROOT, path as found by up_cpus_cgroup_path(). */
long up_cpus_cgroup_limit(const char *root, const char *path);

#endif
