#include "cpus.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Read a small file whole into buf (NUL-terminated). /proc files may return
 * less than asked per read(), so read until EOF or buf is full. Returns the
 * length or -errno. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC); /* owned */
    size_t len = 0;
    ssize_t r;

    if (fd == -1) {
        return -errno;
    }
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n == -1) {
            r = -errno;
            goto fail;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
    }
    buf[len] = '\0';
    r = (ssize_t)len;
fail:
    fd = up_close(fd);
    return r;
}

static int parse_u64(const char **p, uint64_t *ret)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9') {
        return -EINVAL;
    }
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -EINVAL;
        }
        v = v * 10 + d;
    }
    *p = s;
    *ret = v;
    return 0;
}

long up_cpus_from_cgroup_max(const char *cpu_max_text)
{
    const char *p = cpu_max_text;
    uint64_t quota = 0;
    uint64_t period = 0;
    int unlimited = strncmp(p, "max", 3) == 0;

    if (unlimited) {
        p += 3;
    } else if (parse_u64(&p, &quota) < 0) {
        return -EINVAL;
    }
    if (*p != ' ') {
        return -EINVAL;
    }
    p++;
    if (parse_u64(&p, &period) < 0 || period == 0) {
        return -EINVAL;
    }
    if (*p == '\n') {
        p++;
    }
    if (*p != '\0') {
        return -EINVAL;
    }
    if (unlimited) {
        return -1;
    }
    /* 1.5 CPUs of quota keep 2 workers busy part of the time, better than 1
     * worker busy all of it: round up, and never below one. */
    uint64_t n = quota / period + (quota % period != 0);
    if (n < 1) {
        n = 1;
    }
    return n > LONG_MAX ? LONG_MAX : (long)n;
}

int up_cpus_cgroup_path(const char *proc_cgroup_text, char *buf, size_t cap)
{
    const char *line = proc_cgroup_text;

    /* cgroup v2 is hierarchy 0 with no controller list: "0::/path". Under
     * v1 or hybrid mounts the other lines name v1 hierarchies; skip them. */
    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > 3 && strncmp(line, "0::/", 4) == 0) {
            if (len - 3 >= cap) {
                return -ENAMETOOLONG;
            }
            memcpy(buf, line + 3, len - 3);
            buf[len - 3] = '\0';
            return 0;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return -ENOENT;
}

/* The limit in dir/cpu.max, or -1 when it has none or cannot be read: the
 * root cgroup has no cpu.max, and no file is no limit. */
static long read_cpu_max(const char *dir)
{
    char path[PATH_MAX];
    char text[64];

    int n = snprintf(path, sizeof(path), "%s/cpu.max", dir);
    if (n < 0 || (size_t)n >= sizeof(path) || read_small_file(path, text, sizeof(text)) < 0) {
        return -1;
    }
    long cpus = up_cpus_from_cgroup_max(text);
    return cpus > 0 ? cpus : -1;
}

long up_cpus_cgroup_limit(const char *root, const char *path)
{
    char dir[PATH_MAX];
    size_t root_len = strlen(root);
    long best = -1;

    int n = snprintf(dir, sizeof(dir), "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        return -1;
    }
    /* Walk up one component at a time, ending with root itself. */
    for (;;) {
        long cpus = read_cpu_max(dir);
        if (cpus > 0 && (best < 0 || cpus < best)) {
            best = cpus;
        }
        char *slash = strrchr(dir + root_len, '/');
        if (slash == NULL) {
            break;
        }
        *slash = '\0';
    }
    return best;
}

/* CPUs in the affinity mask, or -errno. The mask can be wider than the 1024
 * CPUs of a static cpu_set_t (the kernel then says EINVAL): grow it. */
static long affinity_count(void)
{
    for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpus); /* owned */
        if (set == NULL) {
            return -ENOMEM;
        }
        size_t size = CPU_ALLOC_SIZE(ncpus);
        int r = sched_getaffinity(0, size, set) == 0 ? CPU_COUNT_S(size, set) : -errno;
        CPU_FREE(set);
        if (r != -EINVAL) {
            return r;
        }
    }
    return -EINVAL;
}

static long cgroup_self_limit(void)
{
    char text[8192];
    char path[PATH_MAX];

    if (read_small_file("/proc/self/cgroup", text, sizeof(text)) < 0 ||
        up_cpus_cgroup_path(text, path, sizeof(path)) < 0) {
        return -1;
    }
    return up_cpus_cgroup_limit(UP_CPUS_CGROUP_ROOT, path);
}

long up_cpus_usable(void)
{
    long n = affinity_count();
    if (n < 1) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (n < 1) {
        n = 1;
    }
    long quota = cgroup_self_limit();
    if (quota > 0 && quota < n) {
        n = quota;
    }
    return n;
}
