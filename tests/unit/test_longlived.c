/* longlived: a drain ends long-lived connections one by one over a
 * window, on a real loop. */
#include <criterion/criterion.h>

#include "../lib/testloop.h"
#include "list.h"
#include "longlived.h"
#include "loop.h"

struct member {
    struct up_list node;
    uint64_t ended_at; /* loop ms; 0: not yet */
};

struct ends {
    struct up_loop *loop;
    int n;
};

static void on_end(struct up_list *node, void *ctx)
{
    struct ends *e = ctx;
    struct member *m = up_container_of(node, struct member, node);
    cr_assert_not(up_list_linked(node), "a member is off the list before end()");
    m->ended_at = up_loop_now(e->loop);
    e->n++;
}

/* Run the loop until want members ended, counting its iterations. */
static int run_until_ended(struct up_loop *loop, const struct ends *e, int want, int max_ms)
{
    uint64_t end = up_loop_now(loop) + (uint64_t)max_ms;
    int iterations = 0;
    while (e->n < want && up_loop_now(loop) < end) {
        cr_assert_eq(up_loop_run_once(loop), 0);
        iterations++;
    }
    cr_assert_eq(e->n, want, "%d of %d ended within %d ms", e->n, want, max_ms);
    return iterations;
}

/* Three members over 200 ms: at 0, 66.7 and 133.3 ms into the window, a
 * step the loop's whole milliseconds cannot hit exactly. Each wakes the
 * loop once: a step that rounded down would find nothing due yet and re-arm
 * for "now" until the clock caught up, a spin of thousands of iterations. */
static void members_end_one_by_one_over_the_window(enum up_backend be)
{
    struct up_loop *loop = up_test_new_loop(be);
    struct ends e = {.loop = loop};
    struct up_longlived ll;
    struct member m[3] = {0};
    up_longlived_init(&ll, loop, on_end, &e);
    for (int i = 0; i < 3; i++) {
        up_longlived_add(&ll, &m[i].node);
    }
    uint64_t t0 = up_loop_now(loop);
    up_longlived_plan(&ll, 30, 200, 10000);
    int iterations = run_until_ended(loop, &e, 3, 2000);
    cr_assert_lt(iterations, 20, "%d loop iterations for 3 ends", iterations);
    for (int i = 0; i < 3; i++) {
        uint64_t due = t0 + 30 + (200 * (uint64_t)i + 2) / 3;
        cr_assert_geq(m[i].ended_at, due, "member %d ended %llu ms early", i,
                      (unsigned long long)(due - m[i].ended_at));
        cr_assert_lt(m[i].ended_at, due + 100, "member %d ended late", i);
    }
    up_longlived_stop(&ll);
    up_loop_free(loop);
}

/* A member that joins once the window is open ends at the next step, and
 * one removed before its turn is never ended. */
static void late_members_end_and_removed_ones_do_not(enum up_backend be)
{
    struct up_loop *loop = up_test_new_loop(be);
    struct ends e = {.loop = loop};
    struct up_longlived ll;
    struct member m[3] = {0};
    up_longlived_init(&ll, loop, on_end, &e);
    up_longlived_add(&ll, &m[0].node);
    up_longlived_add(&ll, &m[1].node);
    up_longlived_plan(&ll, 0, 100, 10000);
    up_longlived_remove(&ll, &m[1].node);
    run_until_ended(loop, &e, 1, 1000);
    up_longlived_add(&ll, &m[2].node);
    run_until_ended(loop, &e, 2, 1000);
    cr_assert_neq(m[2].ended_at, 0);
    cr_assert_eq(m[1].ended_at, 0, "a removed member was ended");
    up_longlived_stop(&ll);
    up_loop_free(loop);
}

/* The window fits inside the drain deadline with a margin: the spread is
 * kept whole where it fits, the grace shortened first. */
Test(longlived, window_fits_the_deadline, .timeout = 10)
{
    uint64_t start, window;
    up_longlived_fit(5000, 5000, 600000, &start, &window);
    cr_assert(start == 5000 && window == 5000, "%llu %llu", (unsigned long long)start,
              (unsigned long long)window);
    up_longlived_fit(5000, 5000, 8000, &start, &window);
    cr_assert(start == 2000 && window == 5000, "%llu %llu", (unsigned long long)start,
              (unsigned long long)window);
    up_longlived_fit(5000, 5000, 2000, &start, &window);
    cr_assert(start == 0 && window == 1600, "%llu %llu", (unsigned long long)start,
              (unsigned long long)window);
}

#define BOTH(name)                                                                                 \
    Test(longlived, name##_io_uring, .timeout = 10)                                                \
    {                                                                                              \
        name(UP_BACKEND_URING);                                                                    \
    }                                                                                              \
    Test(longlived, name##_epoll, .timeout = 10)                                                   \
    {                                                                                              \
        name(UP_BACKEND_EPOLL);                                                                    \
    }

BOTH(members_end_one_by_one_over_the_window)
BOTH(late_members_end_and_removed_ones_do_not)
