/*
 * list: an intrusive doubly linked list, and up_container_of() to get from
 * an embedded member back to the struct that holds it (an op, a timer, a
 * list node).
 *
 * A list is a head node whose next and prev point at itself when empty; an
 * element embeds a node. A node not on any list is either zeroed or points
 * at itself (up_list_linked() tells), so that removing it twice, or from a
 * struct just calloc'ed, is harmless. O(1) everything; no allocation; never
 * logs.
 */
#ifndef UP_LIST_H
#define UP_LIST_H

#include <stdbool.h>
#include <stddef.h>

/* The struct of type that holds member at ptr. */
#define up_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct up_list {
    struct up_list *prev, *next;
};

static inline void up_list_init(struct up_list *l)
{
    l->prev = l->next = l;
}

static inline bool up_list_empty(const struct up_list *l)
{
    return l->next == l;
}

/* Whether node n is on a list (n is not a head). */
static inline bool up_list_linked(const struct up_list *n)
{
    return n->next != NULL && n->next != n;
}

static inline void up_list_insert_between(struct up_list *n, struct up_list *prev,
                                          struct up_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

/* Append n (not on a list) at the tail of l. */
static inline void up_list_push_back(struct up_list *l, struct up_list *n)
{
    up_list_insert_between(n, l->prev, l);
}

/* Put n (not on a list) at the head of l. */
static inline void up_list_push_front(struct up_list *l, struct up_list *n)
{
    up_list_insert_between(n, l, l->next);
}

/* Take n off its list; harmless if it is on none. */
static inline void up_list_remove(struct up_list *n)
{
    if (up_list_linked(n)) {
        n->prev->next = n->next;
        n->next->prev = n->prev;
    }
    n->prev = n->next = n;
}

/* The first / last node of l, or NULL when it is empty. */
static inline struct up_list *up_list_first(const struct up_list *l)
{
    return up_list_empty(l) ? NULL : l->next;
}

static inline struct up_list *up_list_last(const struct up_list *l)
{
    return up_list_empty(l) ? NULL : l->prev;
}

/* Take the first node off l; NULL when l is empty. */
static inline struct up_list *up_list_pop_front(struct up_list *l)
{
    struct up_list *n = up_list_first(l);
    if (n != NULL) {
        up_list_remove(n);
    }
    return n;
}

/* Walk l; the body may remove (or free) the node at pos. */
#define up_list_for_each_safe(pos, tmp, l)                                                         \
    for ((pos) = (l)->next, (tmp) = (pos)->next; (pos) != (l); (pos) = (tmp), (tmp) = (pos)->next)

/* Walk l from the tail; the body may remove (or free) the node at pos. */
#define up_list_for_each_reverse_safe(pos, tmp, l)                                                 \
    for ((pos) = (l)->prev, (tmp) = (pos)->prev; (pos) != (l); (pos) = (tmp), (tmp) = (pos)->prev)

#endif
