/*
 * expr: the worker count expressions of -n/--workers ("cpus+2",
 * "round(cpus/2)", "max(2,cpus)"), evaluated to a number of workers.
 *
 * The language: numbers (digits with an optional fraction, "1.5"), the
 * variable cpus, + - * / with the usual precedence, unary minus, parentheses,
 * round(x) (half up: round(2.5) = 3), floor(x), ceil(x), min(a,b), max(a,b);
 * spaces and tabs anywhere between tokens. It is computed in double so that
 * round(cpus/2) sees the half; "/" is exact division, and the final result is
 * truncated toward zero, so a bare cpus/2 reads as integer division. "auto" is
 * not an expression: the CLI handles it.
 *
 * Owns nothing, holds no state; never blocks, never logs (the CLI reports the
 * error and where it is). Recursion is bounded (UP_EXPR_MAX_DEPTH).
 */
#ifndef UP_EXPR_H
#define UP_EXPR_H

#include <stddef.h>

/* The range a result must fall in: at least one worker, and a bound that no
 * machine needs and that keeps a typo ("cpus*100") from forking thousands. */
#define UP_EXPR_MIN 1
#define UP_EXPR_MAX 1024
/* Deepest nesting of parentheses, unary minus and calls accepted. */
#define UP_EXPR_MAX_DEPTH 64

/* Evaluate text (NUL-terminated) with cpus as the value of the variable cpus.
 * Returns 0 and sets *ret_value; or
 *   -EINVAL  a syntax error: unexpected character or end, unknown name, wrong
 *            number of arguments, nesting deeper than UP_EXPR_MAX_DEPTH
 *   -EDOM    division by zero
 *   -ERANGE  the result is not within UP_EXPR_MIN..UP_EXPR_MAX
 * On failure *ret_value is untouched and, when ret_err_pos is not NULL,
 * *ret_err_pos is the byte offset in text where evaluation failed (the
 * divisor for -EDOM, 0 for -ERANGE: the whole expression is at fault). */
int up_expr_eval_at(const char *text, long cpus, long *ret_value, size_t *ret_err_pos);

/* up_expr_eval_at() without the error position. */
int up_expr_eval(const char *text, long cpus, long *ret_value);

#endif
