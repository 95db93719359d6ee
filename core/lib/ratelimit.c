#include "ratelimit.h"

#include <stddef.h>

bool up_ratelimit_ok(struct up_ratelimit *rl, uint64_t now, unsigned long long *ret_suppressed)
{
    if (rl->used == 0 || now - rl->start >= rl->interval_ms) {
        rl->start = now;
        rl->used = 0;
    }
    if (rl->used >= rl->burst) {
        rl->suppressed++;
        return false;
    }
    rl->used++;
    if (ret_suppressed != NULL) {
        *ret_suppressed = rl->suppressed;
    }
    rl->suppressed = 0;
    return true;
}
