#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "expr.h"

static void expect_value(const char *text, long cpus, long want)
{
    long v = -12345;
    size_t pos = 999;
    int r = up_expr_eval_at(text, cpus, &v, &pos);
    cr_assert_eq(r, 0, "\"%s\" cpus=%ld: %d at %zu", text, cpus, r, pos);
    cr_assert_eq(v, want, "\"%s\" cpus=%ld: %ld, want %ld", text, cpus, v, want);
    cr_assert_eq(pos, 999, "\"%s\": ret_err_pos must be untouched on success", text);
}

static void expect_error(const char *text, long cpus, int want, size_t want_pos)
{
    long v = -12345;
    size_t pos = 999;
    int r = up_expr_eval_at(text, cpus, &v, &pos);
    cr_assert_eq(r, want, "\"%s\": %d, want %d", text, r, want);
    cr_assert_eq(pos, want_pos, "\"%s\": error at %zu, want %zu", text, pos, want_pos);
    cr_assert_eq(v, -12345, "\"%s\": ret_value must be untouched on failure", text);
}

Test(expr, numbers_and_cpus, .timeout = 10)
{
    expect_value("4", 8, 4);
    expect_value("cpus", 8, 8);
    expect_value("1024", 1, 1024);
    expect_value("007", 1, 7);
}

Test(expr, precedence_and_associativity, .timeout = 10)
{
    expect_value("2+3*4", 1, 14);
    expect_value("(2+3)*4", 1, 20);
    expect_value("10-4-3", 1, 3);
    expect_value("64/4/2", 1, 8);
    expect_value("cpus+2", 8, 10);
    expect_value("cpus*2-1", 8, 15);
    expect_value("2*cpus/3", 3, 2);
}

Test(expr, unary_minus, .timeout = 10)
{
    expect_value("-2+5", 1, 3);
    expect_value("--3", 1, 3);
    expect_value("4*-1*-1", 1, 4);
    expect_value("-(-(cpus))", 6, 6);
    expect_value("10 - -2", 1, 12);
}

Test(expr, division_truncates_the_result, .timeout = 10)
{
    expect_value("cpus/2", 3, 1);
    expect_value("cpus/2", 8, 4);
    expect_value("7/2", 1, 3);
    /* Exact division inside: (3/2)*2 is 3, not the 2 of C integers. */
    expect_value("cpus/2*2", 3, 3);
}

Test(expr, round_is_half_up, .timeout = 10)
{
    expect_value("round(cpus/2)", 3, 2);
    expect_value("round(cpus/2)", 5, 3);
    expect_value("round(cpus/4)", 5, 1);
    expect_value("round(2.5)", 1, 3);
    expect_value("round(2.49)", 1, 2);
    expect_value("round(-1.5)+3", 1, 2);
}

Test(expr, floor_and_ceil, .timeout = 10)
{
    expect_value("floor(cpus/2)", 3, 1);
    expect_value("ceil(cpus/2)", 3, 2);
    expect_value("ceil(cpus/2)", 4, 2);
    expect_value("floor(-0.5)+2", 1, 1);
    expect_value("ceil(-0.5)+2", 1, 2);
    expect_value("ceil(1.000001)", 1, 2);
}

Test(expr, min_and_max, .timeout = 10)
{
    expect_value("max(2,cpus)", 1, 2);
    expect_value("max(2,cpus)", 8, 8);
    expect_value("min(cpus, 4)", 16, 4);
    expect_value("min(max(1, cpus-1), 8)", 2, 1);
    expect_value("max(1, round(cpus*0.75))", 4, 3);
}

Test(expr, whitespace_anywhere_between_tokens, .timeout = 10)
{
    expect_value("  cpus  +  2  ", 2, 4);
    expect_value("\tmax ( 2 , cpus )\t", 1, 2);
    expect_value("round ( cpus / 2 )", 5, 3);
}

Test(expr, syntax_errors_say_where, .timeout = 10)
{
    expect_error("", 4, -EINVAL, 0);
    expect_error("   ", 4, -EINVAL, 3);
    expect_error("cpus+", 4, -EINVAL, 5);
    expect_error("cpus + x", 4, -EINVAL, 7);
    expect_error("cpu", 4, -EINVAL, 0);
    expect_error("cpus2", 4, -EINVAL, 0);
    expect_error("2cpus", 4, -EINVAL, 1);
    expect_error("(cpus", 4, -EINVAL, 5);
    expect_error("cpus)", 4, -EINVAL, 4);
    expect_error("2 3", 4, -EINVAL, 2);
    expect_error("1.", 4, -EINVAL, 2);
    expect_error(".5", 4, -EINVAL, 0);
    expect_error("1e3", 4, -EINVAL, 1);
    expect_error("+3", 4, -EINVAL, 0);
    expect_error("2**3", 4, -EINVAL, 2);
    expect_error("auto", 4, -EINVAL, 0);
    expect_error("round", 4, -EINVAL, 5);
    expect_error("round()", 4, -EINVAL, 6);
    expect_error("round(1,2)", 4, -EINVAL, 8);
    expect_error("min(1)", 4, -EINVAL, 5);
    expect_error("max(1,2,3)", 4, -EINVAL, 8);
    expect_error("sqrt(4)", 4, -EINVAL, 0);
    expect_error("cpus(2)", 4, -EINVAL, 4);
    expect_error("CPUS", 4, -EINVAL, 0);
}

Test(expr, division_by_zero_is_edom, .timeout = 10)
{
    expect_error("cpus/0", 4, -EDOM, 5);
    expect_error("cpus / (cpus - 4)", 4, -EDOM, 7);
    expect_error("8/round(0.4)", 4, -EDOM, 2);
    expect_value("cpus / (cpus - 4)", 5, 5);
}

Test(expr, result_out_of_range_is_erange, .timeout = 10)
{
    expect_error("0", 4, -ERANGE, 0);
    expect_error("cpus-4", 4, -ERANGE, 0);
    expect_error("-1", 4, -ERANGE, 0);
    expect_error("cpus/5", 4, -ERANGE, 0);
    expect_error("0.99", 4, -ERANGE, 0);
    expect_error("1025", 4, -ERANGE, 0);
    expect_error("cpus*1000", 4, -ERANGE, 0);
    expect_error("99999999999999999999999999", 4, -ERANGE, 0);
    expect_value("1024.9", 1, 1024);
}

Test(expr, huge_numbers_do_not_escape_the_range_check, .timeout = 10)
{
    /* 400 digits: infinity; infinity minus itself: NaN. Both are refused. */
    char big[900];
    memset(big, '9', 400);
    big[400] = '\0';
    expect_error(big, 4, -ERANGE, 0);
    memcpy(big + 400, "-", 1);
    memset(big + 401, '9', 400);
    big[801] = '\0';
    expect_error(big, 4, -ERANGE, 0);
}

Test(expr, nesting_is_bounded, .timeout = 10)
{
    char text[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        text[n++] = '(';
    }
    text[n++] = '1';
    text[n] = '\0';
    long v = 0;
    size_t pos = 0;
    cr_assert_eq(up_expr_eval_at(text, 4, &v, &pos), -EINVAL);
    cr_assert_lt(pos, 1000);

    memset(text, '-', 2000);
    memcpy(text + 2000, "1", 2);
    cr_assert_eq(up_expr_eval(text, 4, &v), -EINVAL);

    /* Within the bound it works. */
    n = 0;
    for (int i = 0; i < 20; i++) {
        text[n++] = '(';
    }
    text[n++] = '3';
    for (int i = 0; i < 20; i++) {
        text[n++] = ')';
    }
    text[n] = '\0';
    expect_value(text, 4, 3);
}

Test(expr, eval_without_position, .timeout = 10)
{
    long v = 0;
    cr_assert_eq(up_expr_eval("max(2,cpus)", 3, &v), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(up_expr_eval("cpus/0", 3, &v), -EDOM);
    cr_assert_eq(v, 3);
}
