#include "snapshot.h"

#include "fd.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3 */
#endif

int up_snapshot_copy(int src, int dst)
{
    struct stat st;
    if (fstat(src, &st) < 0) {
        return -errno;
    }
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t n = sendfile(dst, src, &off, (size_t)(st.st_size - off));
        if (n < 0 && errno != EINTR) {
            return -errno;
        }
        if (n == 0) {
            break;
        }
    }
    return 0;
}

int up_snapshot_memfd(const char *name, int src, bool seal)
{
    unsigned flags = MFD_CLOEXEC | (seal ? MFD_ALLOW_SEALING : 0);
    int fd = memfd_create(name, flags | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) {
        fd = memfd_create(name, flags); /* before 6.3: no such flag */
    }
    if (fd < 0) {
        return -errno;
    }
    int r = up_snapshot_copy(src, fd);
    if (r == 0 && seal &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        r = -errno;
    }
    if (r < 0) {
        up_close(fd);
        return r;
    }
    return fd;
}
