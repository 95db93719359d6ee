/* ratelimit: bursts per interval, and the count of what was held back. */
#include <criterion/criterion.h>

#include "ratelimit.h"

Test(ratelimit, burst_then_refused_then_counted, .timeout = 10)
{
    struct up_ratelimit rl = UP_RATELIMIT_INIT(1000, 3);
    unsigned long long held = 99;
    for (int i = 0; i < 3; i++) {
        cr_assert(up_ratelimit_ok(&rl, 5000 + (uint64_t)i, &held));
        cr_assert_eq(held, 0);
    }
    for (int i = 0; i < 8192; i++) {
        cr_assert_not(up_ratelimit_ok(&rl, 5100, &held));
    }
    /* Still inside the interval: refused. */
    cr_assert_not(up_ratelimit_ok(&rl, 5999, NULL));
    /* The next interval: allowed again, and told what was held back. */
    cr_assert(up_ratelimit_ok(&rl, 6000, &held));
    cr_assert_eq(held, 8193);
    cr_assert(up_ratelimit_ok(&rl, 6001, &held));
    cr_assert_eq(held, 0);
}

Test(ratelimit, quiet_spells_reset_the_interval, .timeout = 10)
{
    struct up_ratelimit rl = UP_RATELIMIT_INIT(100, 1);
    unsigned long long held;
    cr_assert(up_ratelimit_ok(&rl, 0, &held));
    cr_assert_not(up_ratelimit_ok(&rl, 50, &held));
    cr_assert(up_ratelimit_ok(&rl, 100, &held));
    cr_assert_eq(held, 1);
    cr_assert(up_ratelimit_ok(&rl, 1000000, &held));
    cr_assert_eq(held, 0);
}
