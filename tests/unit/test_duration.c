#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "duration.h"

static void expect_ms(const char *text, uint64_t want)
{
    uint64_t ms = 12345;
    int r = up_duration_parse(text, &ms);
    cr_assert_eq(r, 0, "\"%s\": %d", text, r);
    cr_assert_eq(ms, want, "\"%s\": %llu, want %llu", text, (unsigned long long)ms,
                 (unsigned long long)want);
}

static void expect_err(const char *text, int want)
{
    uint64_t ms = 12345;
    int r = up_duration_parse(text, &ms);
    cr_assert_eq(r, want, "\"%s\": %d, want %d", text, r, want);
    cr_assert_eq(ms, 12345, "\"%s\": ret_ms must be untouched on failure", text);
}

Test(duration, units, .timeout = 10)
{
    expect_ms("500ms", 500);
    expect_ms("10s", 10000);
    expect_ms("10m", 600000);
    expect_ms("1h", 3600000);
    expect_ms("0ms", 0);
    expect_ms("0h", 0);
}

Test(duration, bare_number_is_seconds, .timeout = 10)
{
    expect_ms("250", 250000);
    expect_ms("0", 0);
    expect_ms("1.5", 1500);
}

Test(duration, fractions_are_exact, .timeout = 10)
{
    expect_ms("1.5s", 1500);
    expect_ms("1.1s", 1100);
    expect_ms("0.5m", 30000);
    expect_ms("0.25h", 900000);
    expect_ms("0.001s", 1);
}

Test(duration, fraction_below_one_ms_is_truncated, .timeout = 10)
{
    expect_ms("1.9ms", 1);
    expect_ms("0.0001s", 0);
    expect_ms("1.123456789123456s", 1123);
}

Test(duration, parts_add_up, .timeout = 10)
{
    expect_ms("1m30s", 90000);
    expect_ms("1h30m", 5400000);
    expect_ms("1s500ms", 1500);
    expect_ms("2m1.5s", 121500);
}

Test(duration, rejects_malformed, .timeout = 10)
{
    expect_err("", -EINVAL);
    expect_err("10x", -EINVAL);
    expect_err("-1s", -EINVAL);
    expect_err("+1s", -EINVAL);
    expect_err("s", -EINVAL);
    expect_err("ms", -EINVAL);
    expect_err("1.", -EINVAL);
    expect_err("1.s", -EINVAL);
    expect_err(".5s", -EINVAL);
    expect_err("10s5", -EINVAL);
    expect_err("10sx", -EINVAL);
    expect_err("10 s", -EINVAL);
    expect_err(" 10s", -EINVAL);
    expect_err("10s ", -EINVAL);
    expect_err("1h30", -EINVAL);
    expect_err("1e3s", -EINVAL);
    expect_err("10S", -EINVAL);
    expect_err("10min", -EINVAL);
}

Test(duration, rejects_overflow, .timeout = 10)
{
    expect_ms("18446744073709551615ms", UINT64_MAX);
    expect_err("18446744073709551616ms", -ERANGE);
    expect_err("99999999999999999999999", -ERANGE);
    expect_err("18446744073709552s", -ERANGE);
    expect_err("5124095576030432h", -ERANGE);
    expect_err("18446744073709551615ms1ms", -ERANGE);
    expect_err("18446744073709551.616s", -ERANGE);
}

static void expect_format(uint64_t ms, const char *want)
{
    char buf[32];
    memset(buf, 'X', sizeof(buf));
    int r = up_duration_format(ms, buf, sizeof(buf));
    cr_assert_eq(r, (int)strlen(want), "%llu: %d", (unsigned long long)ms, r);
    cr_assert_str_eq(buf, want);
    uint64_t back = 0;
    cr_assert_eq(up_duration_parse(buf, &back), 0, "\"%s\" must parse back", buf);
    cr_assert_eq(back, ms, "\"%s\" must parse back to %llu", buf, (unsigned long long)ms);
}

Test(duration, format_uses_largest_exact_unit, .timeout = 10)
{
    expect_format(0, "0s");
    expect_format(1, "1ms");
    expect_format(500, "500ms");
    expect_format(1500, "1500ms");
    expect_format(10000, "10s");
    expect_format(90000, "90s");
    expect_format(600000, "10m");
    expect_format(3600000, "1h");
    expect_format(5400000, "90m");
    expect_format(UINT64_MAX, "18446744073709551615ms");
}

Test(duration, format_needs_room_for_nul, .timeout = 10)
{
    char buf[4] = "abc";
    cr_assert_eq(up_duration_format(10000, buf, 3), -ENOSPC);
    cr_assert_str_eq(buf, "abc", "buf must be untouched on failure");
    cr_assert_eq(up_duration_format(10000, buf, 4), 3);
    cr_assert_str_eq(buf, "10s");
    cr_assert_eq(up_duration_format(10000, buf, 0), -ENOSPC);
}
