#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

int up_close(int fd)
{
    if (fd >= 0) {
        int saved = errno;
        /* Linux releases the fd even when close() fails (EINTR included),
         * so a retry could close an fd another thread just got. */
        (void)close(fd);
        errno = saved;
    }
    return -1;
}

int up_fd_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl == -1) {
        return -errno;
    }
    int want = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    if (want != fl && fcntl(fd, F_SETFL, want) == -1) {
        return -errno;
    }
    return 0;
}

/* fs.nr_open: no RLIMIT_NOFILE may go above it (setrlimit says EPERM). */
static rlim_t nr_open(void)
{
    unsigned long long v = 0;
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    if (f != NULL) {
        if (fscanf(f, "%llu", &v) != 1) {
            v = 0;
        }
        fclose(f);
    }
    return v > 0 ? (rlim_t)v : (rlim_t)1048576; /* the kernel's default */
}

int up_fd_raise_nofile(unsigned long long *ret_before, unsigned long long *ret_now)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return -errno;
    }
    rlim_t before = rl.rlim_cur;
    int r = 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t cap = nr_open();
        rl.rlim_cur = rl.rlim_max > cap ? cap : rl.rlim_max;
        if (rl.rlim_cur > before && setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            r = -errno;
            rl.rlim_cur = before;
        }
        if (rl.rlim_cur < before) {
            rl.rlim_cur = before;
        }
    }
    if (ret_before != NULL) {
        *ret_before = (unsigned long long)before;
    }
    if (ret_now != NULL) {
        *ret_now = (unsigned long long)rl.rlim_cur;
    }
    return r;
}

void up_fd_std_guard(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) {
            continue;
        }
        /* The lowest free number is fd: the lower ones are open. Not
         * CLOEXEC: children inherit their standard streams from us. */
        int got = open("/dev/null", O_RDWR);
        if (got < 0) {
            got = open("/", O_PATH);
        }
        if (got >= 0 && got != fd) {
            (void)close(got); /* only if another thread took fd meanwhile */
        }
    }
}
