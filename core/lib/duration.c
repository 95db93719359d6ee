#include "duration.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MS_PER_S 1000u
#define MS_PER_M (60u * MS_PER_S)
#define MS_PER_H (60u * MS_PER_M)

/* Fraction digits kept: 9 is below a millisecond for every unit (1 h =
 * 3.6e6 ms), and frac * unit stays far from overflowing 64 bits. */
#define FRAC_DIGITS_MAX 9

/* One "<digits>[.<digits>]" as an exact integer and fraction, so that "1.1s"
 * is 1100 ms and not whatever 1.1 rounds to in binary. */
struct duration_number {
    uint64_t whole;
    uint64_t frac;  /* the kept fraction digits as an integer */
    uint64_t scale; /* 10^(kept fraction digits) */
};

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int parse_number(const char **p, struct duration_number *ret)
{
    const char *s = *p;
    struct duration_number num = {0, 0, 1};

    if (!is_digit(*s)) {
        return -EINVAL;
    }
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (num.whole > (UINT64_MAX - d) / 10) {
            return -ERANGE;
        }
        num.whole = num.whole * 10 + d;
    }
    if (*s == '.') {
        s++;
        /* "1." and "1.s" are typos more often than intent: want a digit. */
        if (!is_digit(*s)) {
            return -EINVAL;
        }
        for (int kept = 0; is_digit(*s); s++, kept++) {
            if (kept < FRAC_DIGITS_MAX) {
                num.frac = num.frac * 10 + (uint64_t)(*s - '0');
                num.scale *= 10;
            }
        }
    }
    *p = s;
    *ret = num;
    return 0;
}

/* "ms" before "m": the longest unit name that matches wins. */
static int parse_unit(const char **p, uint64_t *ret_ms)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", MS_PER_S}, {"m", MS_PER_M}, {"h", MS_PER_H}};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t len = strlen(units[i].name);
        if (strncmp(*p, units[i].name, len) == 0) {
            *p += len;
            *ret_ms = units[i].ms;
            return 0;
        }
    }
    return -EINVAL;
}

static int to_ms(const struct duration_number *num, uint64_t unit, uint64_t *ret_ms)
{
    if (num->whole > UINT64_MAX / unit) {
        return -ERANGE;
    }
    uint64_t ms = num->whole * unit;
    uint64_t frac = num->frac * unit / num->scale; /* truncated below 1 ms */
    if (frac > UINT64_MAX - ms) {
        return -ERANGE;
    }
    *ret_ms = ms + frac;
    return 0;
}

int up_duration_parse(const char *text, uint64_t *ret_ms)
{
    const char *p = text;
    uint64_t total = 0;

    if (*p == '\0') {
        return -EINVAL;
    }
    for (int parts = 0; *p != '\0'; parts++) {
        struct duration_number num;
        uint64_t unit = MS_PER_S; /* a lone bare number is seconds */
        uint64_t ms;
        int r = parse_number(&p, &num);
        if (r < 0) {
            return r;
        }
        if (parts > 0 || *p != '\0') {
            r = parse_unit(&p, &unit);
            if (r < 0) {
                return r;
            }
        }
        r = to_ms(&num, unit, &ms);
        if (r < 0) {
            return r;
        }
        if (ms > UINT64_MAX - total) {
            return -ERANGE;
        }
        total += ms;
    }
    *ret_ms = total;
    return 0;
}

int up_duration_format(uint64_t ms, char *buf, size_t cap)
{
    static const struct {
        uint64_t ms;
        const char *name;
    } units[] = {{MS_PER_H, "h"}, {MS_PER_M, "m"}, {MS_PER_S, "s"}, {1, "ms"}};
    char tmp[32];
    int len = snprintf(tmp, sizeof(tmp), "0s");

    for (size_t i = 0; ms > 0 && i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].ms == 0) {
            len = snprintf(tmp, sizeof(tmp), "%" PRIu64 "%s", ms / units[i].ms, units[i].name);
            break;
        }
    }
    if (len < 0 || (size_t)len >= cap) {
        return -ENOSPC;
    }
    memcpy(buf, tmp, (size_t)len + 1);
    return len;
}
