#include "expr.h"

#include <errno.h>
#include <string.h>

/* Recursive descent, one function per precedence level:
 *
 *     expr    = term { ("+" | "-") term }
 *     term    = unary { ("*" | "/") unary }
 *     unary   = "-" unary | primary
 *     primary = number | "cpus" | name "(" expr { "," expr } ")" | "(" expr ")"
 *
 * Every level returns 0 or -errno; the first error also records where it
 * happened, and every caller returns at once, so that position is the one
 * reported. */
struct expr_parser {
    const char *text;
    const char *p;
    double cpus;
    int depth;
    const char *err_at;
};

/* 2^52: every double at or beyond it is already an integer. */
#define EXPR_INTEGRAL 4503599627370496.0

/* floor() without libm (the binaries do not link it). */
static double expr_floor(double x)
{
    if (!(x > -EXPR_INTEGRAL && x < EXPR_INTEGRAL)) {
        return x; /* integral, infinite or NaN: unchanged, as floor() */
    }
    double t = (double)(long long)x; /* truncates toward zero */
    return t > x ? t - 1.0 : t;
}

static double fn_round(const double *a)
{
    return expr_floor(a[0] + 0.5);
}

static double fn_floor(const double *a)
{
    return expr_floor(a[0]);
}

static double fn_ceil(const double *a)
{
    return -expr_floor(-a[0]);
}

static double fn_min(const double *a)
{
    return a[0] < a[1] ? a[0] : a[1];
}

static double fn_max(const double *a)
{
    return a[0] > a[1] ? a[0] : a[1];
}

#define EXPR_MAX_ARGS 2

static const struct expr_func {
    const char *name;
    int nargs;
    double (*fn)(const double *args);
} expr_funcs[] = {
    {"round", 1, fn_round}, {"floor", 1, fn_floor}, {"ceil", 1, fn_ceil},
    {"min", 2, fn_min},     {"max", 2, fn_max},
};

static int fail(struct expr_parser *ep, const char *at, int err)
{
    ep->err_at = at;
    return err;
}

static void skip_ws(struct expr_parser *ep)
{
    while (*ep->p == ' ' || *ep->p == '\t') {
        ep->p++;
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || is_digit(c);
}

/* Take c if it is the next token. */
static int accept_char(struct expr_parser *ep, char c)
{
    skip_ws(ep);
    if (*ep->p != c) {
        return 0;
    }
    ep->p++;
    return 1;
}

static int parse_expr(struct expr_parser *ep, double *ret);

/* Digits, then an optional "." and digits. No strtod(): it would also take
 * "inf", "nan", hex and exponents, and depends on the locale. */
static int parse_number(struct expr_parser *ep, double *ret)
{
    double v = 0.0;
    double scale = 1.0;

    while (is_digit(*ep->p)) {
        v = v * 10.0 + (double)(*ep->p++ - '0');
    }
    if (*ep->p == '.') {
        ep->p++;
        if (!is_digit(*ep->p)) {
            return fail(ep, ep->p, -EINVAL);
        }
        while (is_digit(*ep->p)) {
            scale /= 10.0;
            v += scale * (double)(*ep->p++ - '0');
        }
    }
    *ret = v;
    return 0;
}

/* name "(" expr { "," expr } ")", with the arity checked at the ")". */
static int parse_call(struct expr_parser *ep, const struct expr_func *f, double *ret)
{
    double args[EXPR_MAX_ARGS];
    int n = 0;

    if (!accept_char(ep, '(')) {
        return fail(ep, ep->p, -EINVAL);
    }
    do {
        if (n == f->nargs) {
            return fail(ep, ep->p, -EINVAL); /* one argument too many */
        }
        int r = parse_expr(ep, &args[n++]);
        if (r < 0) {
            return r;
        }
    } while (accept_char(ep, ','));
    if (n != f->nargs || !accept_char(ep, ')')) {
        return fail(ep, ep->p, -EINVAL);
    }
    *ret = f->fn(args);
    return 0;
}

static int parse_name(struct expr_parser *ep, double *ret)
{
    const char *start = ep->p;
    while (is_name_char(*ep->p)) {
        ep->p++;
    }
    size_t len = (size_t)(ep->p - start);
    if (len == 4 && strncmp(start, "cpus", 4) == 0) {
        *ret = ep->cpus;
        return 0;
    }
    for (size_t i = 0; i < sizeof(expr_funcs) / sizeof(expr_funcs[0]); i++) {
        if (strlen(expr_funcs[i].name) == len && strncmp(start, expr_funcs[i].name, len) == 0) {
            return parse_call(ep, &expr_funcs[i], ret);
        }
    }
    return fail(ep, start, -EINVAL);
}

static int parse_primary(struct expr_parser *ep, double *ret)
{
    skip_ws(ep);
    if (is_digit(*ep->p)) {
        return parse_number(ep, ret);
    }
    if (is_name_char(*ep->p)) {
        return parse_name(ep, ret);
    }
    if (!accept_char(ep, '(')) {
        return fail(ep, ep->p, -EINVAL);
    }
    int r = parse_expr(ep, ret);
    if (r < 0) {
        return r;
    }
    if (!accept_char(ep, ')')) {
        return fail(ep, ep->p, -EINVAL);
    }
    return 0;
}

/* Every recursion ("(", "-", a call's arguments) passes through here, so the
 * depth bound here bounds the C stack for any input. */
static int parse_unary(struct expr_parser *ep, double *ret)
{
    int r;

    skip_ws(ep);
    if (ep->depth >= UP_EXPR_MAX_DEPTH) {
        return fail(ep, ep->p, -EINVAL);
    }
    ep->depth++;
    if (accept_char(ep, '-')) {
        r = parse_unary(ep, ret);
        if (r == 0) {
            *ret = -*ret;
        }
    } else {
        r = parse_primary(ep, ret);
    }
    ep->depth--;
    return r;
}

static int parse_term(struct expr_parser *ep, double *ret)
{
    double v;
    int r = parse_unary(ep, &v);

    while (r == 0) {
        int op = accept_char(ep, '*') ? '*' : accept_char(ep, '/') ? '/' : 0;
        if (op == 0) {
            break;
        }
        skip_ws(ep);
        const char *at = ep->p;
        double rhs;
        r = parse_unary(ep, &rhs);
        if (r == 0 && op == '/' && rhs == 0.0) {
            r = fail(ep, at, -EDOM);
        }
        if (r == 0) {
            v = (op == '*') ? v * rhs : v / rhs;
        }
    }
    if (r == 0) {
        *ret = v;
    }
    return r;
}

static int parse_expr(struct expr_parser *ep, double *ret)
{
    double v;
    int r = parse_term(ep, &v);

    while (r == 0) {
        int op = accept_char(ep, '+') ? '+' : accept_char(ep, '-') ? '-' : 0;
        if (op == 0) {
            break;
        }
        double rhs;
        r = parse_term(ep, &rhs);
        if (r == 0) {
            v = (op == '+') ? v + rhs : v - rhs;
        }
    }
    if (r == 0) {
        *ret = v;
    }
    return r;
}

int up_expr_eval_at(const char *text, long cpus, long *ret_value, size_t *ret_err_pos)
{
    struct expr_parser ep = {.text = text, .p = text, .cpus = (double)cpus};
    double v = 0.0;

    int r = parse_expr(&ep, &v);
    if (r == 0) {
        skip_ws(&ep);
        if (*ep.p != '\0') {
            r = fail(&ep, ep.p, -EINVAL); /* trailing junk, or a stray ")" */
        }
    }
    /* Truncate toward zero, then range-check; NaN fails both comparisons. */
    if (r == 0 && !(v >= (double)UP_EXPR_MIN && v < (double)UP_EXPR_MAX + 1.0)) {
        r = fail(&ep, text, -ERANGE);
    }
    if (r < 0) {
        if (ret_err_pos != NULL) {
            *ret_err_pos = (size_t)(ep.err_at - text);
        }
        return r;
    }
    *ret_value = (long)v;
    return 0;
}

int up_expr_eval(const char *text, long cpus, long *ret_value)
{
    return up_expr_eval_at(text, cpus, ret_value, NULL);
}
