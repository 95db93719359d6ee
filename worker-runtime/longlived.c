/*
 * longlived: ending long-lived connections over a window. See longlived.h.
 */
#include "longlived.h"

/* Room left before the deadline for the closing handshakes: a round trip,
 * and the client's own wait to answer. */
#define MARGIN_MS 1000
#define MARGIN_SHARE 5 /* at most a fifth of a short drain */

void up_longlived_fit(uint64_t grace_ms, uint64_t spread_ms, uint64_t deadline_ms,
                      uint64_t *ret_start, uint64_t *ret_window)
{
    uint64_t margin =
        deadline_ms / MARGIN_SHARE < MARGIN_MS ? deadline_ms / MARGIN_SHARE : MARGIN_MS;
    uint64_t room = deadline_ms - margin;
    uint64_t latest = room > spread_ms ? room - spread_ms : 0;
    uint64_t start = grace_ms < latest ? grace_ms : latest;
    *ret_start = start;
    *ret_window = spread_ms < room - start ? spread_ms : room - start;
}

/* When member i is due: the quotient rounded up. Rounded down, the timer
 * would wake a little before due() counts member i, find nothing to do,
 * and re-arm for "now" until the clock caught up. */
static uint64_t step_at(const struct up_longlived *ll, size_t i)
{
    return ll->start + (ll->window * i + ll->total - 1) / ll->total;
}

static void on_step(struct up_loop *loop, struct up_timer *t);

void up_longlived_init(struct up_longlived *ll, struct up_loop *loop,
                       void (*end)(struct up_list *member, void *ctx), void *ctx)
{
    *ll = (struct up_longlived){.loop = loop, .end = end, .ctx = ctx};
    up_list_init(&ll->members);
    ll->timer.cb = on_step;
}

void up_longlived_add(struct up_longlived *ll, struct up_list *member)
{
    up_list_push_back(&ll->members, member);
    ll->n++;
    if (ll->planned && up_loop_now(ll->loop) >= ll->start && !up_timer_armed(&ll->timer)) {
        up_timer_start(ll->loop, &ll->timer, 0);
    }
}

void up_longlived_remove(struct up_longlived *ll, struct up_list *member)
{
    if (up_list_linked(member)) {
        up_list_remove(member);
        ll->n--;
    }
}

/* How many should have ended by now: member i (from 0) at start +
 * window * i / total, so the first goes at once and the last a step
 * before the window closes. In whole ms, member i is due once
 * now - start >= window * i / total, that is at step_at(i). */
static size_t due(const struct up_longlived *ll, uint64_t now)
{
    uint64_t in = now - ll->start;
    if (ll->window == 0 || in >= ll->window) {
        return ll->total;
    }
    return (size_t)(in * ll->total / ll->window) + 1;
}

static void on_step(struct up_loop *loop, struct up_timer *t)
{
    struct up_longlived *ll = up_container_of(t, struct up_longlived, timer);
    uint64_t now = up_loop_now(loop);
    if (ll->total == 0 && ll->ended == 0) {
        ll->total = ll->n; /* the window opens: this many to spread */
    }
    size_t want = due(ll, now);
    struct up_list *m;
    while ((ll->ended < want || ll->ended >= ll->total) && (m = up_list_pop_front(&ll->members))) {
        ll->n--;
        ll->ended++;
        ll->end(m, ll->ctx);
    }
    if (ll->ended < ll->total && ll->n > 0) {
        uint64_t next = step_at(ll, ll->ended);
        up_timer_start(loop, t, next > now ? next - now : 0);
    }
}

void up_longlived_plan(struct up_longlived *ll, uint64_t grace_ms, uint64_t spread_ms,
                       uint64_t deadline_ms)
{
    uint64_t now = up_loop_now(ll->loop);
    uint64_t start, window;
    up_longlived_fit(grace_ms, spread_ms, deadline_ms, &start, &window);
    if (ll->planned && (now + start >= ll->start || now >= ll->start)) {
        return; /* under way, or planned sooner already */
    }
    ll->planned = true;
    ll->start = now + start;
    ll->window = window;
    ll->total = ll->ended = 0;
    up_timer_start(ll->loop, &ll->timer, start);
}

void up_longlived_stop(struct up_longlived *ll)
{
    up_timer_stop(ll->loop, &ll->timer);
}
