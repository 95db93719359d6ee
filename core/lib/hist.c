#include "hist.h"

#include <string.h>
#include <time.h>

void up_hist_init(struct up_hist *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n = n < UP_HIST_MAX ? n : UP_HIST_MAX;
}

void up_hist_observe(struct up_hist *h, double seconds)
{
    size_t i = 0;
    while (i < h->n && seconds > h->bounds[i]) {
        i++;
    }
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

uint64_t up_hist_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
