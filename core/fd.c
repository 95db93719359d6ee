#include "fd.h"

#include <errno.h>
#include <fcntl.h>
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
