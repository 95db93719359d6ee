#include "fdcount.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int up_test_fd_count(void)
{
    DIR *dir = opendir("/proc/self/fd"); /* owned */
    if (dir == NULL) {
        return -errno;
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            count++;
        }
    }
    /* The listing includes the fd opendir() itself holds: leave it out, so
     * the count is the same as the caller sees outside this function. */
    closedir(dir);
    return count - 1;
}

int up_test_fd_limit_reached(struct rlimit *ret_saved)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return -errno;
    }
    int lowest = dup(0); /* the lowest free fd */
    if (lowest < 0) {
        return -errno;
    }
    close(lowest);
    struct rlimit low = rl;
    low.rlim_cur = (rlim_t)lowest;
    if (setrlimit(RLIMIT_NOFILE, &low) < 0) {
        return -errno;
    }
    *ret_saved = rl;
    return 0;
}
