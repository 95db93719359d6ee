/*
 * pending, alone: the set of connections before handoff on a real loop
 * (both back ends) and real sockets (unix and TCP, since only TCP has
 * SO_RCVLOWAT), with fake owner callbacks that record what is reported.
 */
#include <criterion/criterion.h>

#include "../lib/fdcount.h"
#include "../lib/testloop.h"
#include "fd.h"
#include "pending.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pt {
    struct up_loop *loop;
    struct up_pendings set;
    int ready, freed;
    struct up_pending *last; /* the last one reported ready */
    bool had_head;
    char method[16], target[64];
};

static void pt_ready(struct up_pendings *set, struct up_pending *c, const struct up_head *head)
{
    struct pt *t = set->ctx;
    t->ready++;
    t->last = c;
    t->had_head = head != NULL;
    if (head != NULL) {
        snprintf(t->method, sizeof(t->method), "%.*s", (int)head->method_len, head->method);
        snprintf(t->target, sizeof(t->target), "%.*s", (int)head->target_len, head->target);
    }
}

static void pt_freed(struct up_pendings *set)
{
    ((struct pt *)set->ctx)->freed++;
}

static const struct up_pending_cbs pt_cbs = {.ready = pt_ready, .freed = pt_freed};

static void pt_init(struct pt *t, enum up_backend be, size_t max_pending, uint64_t header_ms)
{
    memset(t, 0, sizeof(*t));
    t->loop = up_test_new_loop(be);
    up_pendings_init(&t->set, t->loop, 16384, header_ms, max_pending, &pt_cbs, t);
}

static void pt_fini(struct pt *t)
{
    up_pendings_close_peeking(&t->set, false);
    up_loop_drain(t->loop, 3000);
    cr_assert_eq(t->set.n, 0, "%zu connections left", t->set.n);
    up_pendings_fini(&t->set);
    up_loop_free(t->loop);
}

/* A new pending connection, accepted from a pair; *peer gets the other end. */
static void pt_accept(struct pt *t, bool tcp, int *peer)
{
    int sv[2];
    up_test_pair(tcp, sv);
    up_pending_accept_take(&t->set, sv[0], 0, !tcp);
    *peer = sv[1];
}

static void pt_send(int fd, const char *s)
{
    cr_assert_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

#define BOTH(name)                                                                                 \
    static void name(enum up_backend be, bool tcp);                                                \
    Test(pending, name##_io_uring_unix, .timeout = 20)                                             \
    {                                                                                              \
        name(UP_BACKEND_URING, false);                                                             \
    }                                                                                              \
    Test(pending, name##_io_uring_tcp, .timeout = 20)                                              \
    {                                                                                              \
        name(UP_BACKEND_URING, true);                                                              \
    }                                                                                              \
    Test(pending, name##_epoll_unix, .timeout = 20)                                                \
    {                                                                                              \
        name(UP_BACKEND_EPOLL, false);                                                             \
    }                                                                                              \
    Test(pending, name##_epoll_tcp, .timeout = 20)                                                 \
    {                                                                                              \
        name(UP_BACKEND_EPOLL, true);                                                              \
    }                                                                                              \
    static void name(enum up_backend be, bool tcp)

/* A whole head is reported once, with its spans; sent and ACKed, the
 * master's copy is closed (the worker has its own). Also in two pieces
 * 200 ms apart: a peek with nothing new is not the end. */
BOTH(head_ready_once_then_acked)
{
    int before = up_test_fd_count();
    struct pt t;
    pt_init(&t, be, 64, 5000);
    int peer;
    pt_accept(&t, tcp, &peer);
    pt_send(peer, "GET /a?b HTTP/1.1\r\nHo");
    up_test_run_for(t.loop, 200, &t.ready, 1);
    cr_assert_eq(t.ready, 0, "ready with half a head");
    pt_send(peer, "st: h\r\n\r\n");
    up_test_run_for(t.loop, 2000, &t.ready, 1);
    cr_assert_eq(t.ready, 1);
    cr_assert(t.had_head);
    cr_assert_str_eq(t.method, "GET");
    cr_assert_str_eq(t.target, "/a?b");
    cr_assert_eq(t.last->state, UP_PENDING_READY);
    cr_assert_eq(t.last->listener, 0);
    up_pending_sent(t.last, &t);
    up_pending_acked(t.last);
    cr_assert_eq(t.freed, 1);
    cr_assert_eq(t.set.stats.handed, 1);
    char buf[64];
    cr_assert_eq(up_test_read_all(peer, buf, sizeof(buf)), 0, "bytes to the client: %s", buf);
    close(peer);
    pt_fini(&t);
    cr_assert_eq(up_test_fd_count(), before);
}

/* A bad head is answered 400 and closed with a FIN, never reported. */
BOTH(bad_head_answered_400)
{
    struct pt t;
    pt_init(&t, be, 64, 5000);
    int peer;
    pt_accept(&t, tcp, &peer);
    pt_send(peer, "GET /a b c\r\n\r\n");
    up_test_run_for(t.loop, 3000, &t.freed, 1);
    char buf[512];
    int n = up_test_read_all(peer, buf, sizeof(buf));
    cr_assert(n > 12 && strncmp(buf, "HTTP/1.1 400 ", 13) == 0, "%s", buf);
    cr_assert_eq(t.ready, 0);
    cr_assert_eq(t.set.stats.answered, 1);
    close(peer);
    pt_fini(&t);
}

/* At the header timeout: nothing sent is closed without a word, part of a
 * head gets 408. A FIN after part of a head closes at once. */
BOTH(timeouts_and_fin)
{
    struct pt t;
    pt_init(&t, be, 64, 300);
    int silent, partial, fin;
    pt_accept(&t, tcp, &silent);
    pt_accept(&t, tcp, &partial);
    pt_accept(&t, tcp, &fin);
    pt_send(partial, "GET / HTTP/1.1\r\n");
    pt_send(fin, "GET / HTTP/1.1\r\n");
    shutdown(fin, SHUT_WR);
    up_test_run_for(t.loop, 200, &t.freed, 1);
    cr_assert_eq(t.freed, 1, "the FIN did not close at once");
    up_test_run_for(t.loop, 3000, &t.freed, 3);
    cr_assert_eq(t.freed, 3);
    char buf[512];
    cr_assert_eq(up_test_read_all(silent, buf, sizeof(buf)), 0, "%s", buf);
    int n = up_test_read_all(partial, buf, sizeof(buf));
    cr_assert(n > 12 && strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "%s", buf);
    cr_assert_eq(up_test_read_all(fin, buf, sizeof(buf)), 0, "%s", buf);
    close(silent);
    close(partial);
    close(fin);
    pt_fini(&t);
}

/* The owner's answers from READY: a 503 says Retry-After; a graceful close
 * says nothing at all. */
BOTH(owner_answers_and_closes)
{
    struct pt t;
    pt_init(&t, be, 64, 5000);
    int a, b;
    pt_accept(&t, tcp, &a);
    pt_send(a, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    up_test_run_for(t.loop, 2000, &t.ready, 1);
    cr_assert(up_pending_has_request(t.last));
    up_pending_answer(t.last, 503, NULL);
    pt_accept(&t, tcp, &b);
    pt_send(b, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    up_test_run_for(t.loop, 2000, &t.ready, 2);
    up_pending_close_gracefully(t.last);
    shutdown(a, SHUT_WR);
    shutdown(b, SHUT_WR);
    up_test_run_for(t.loop, 3000, &t.freed, 2);
    char buf[512];
    int n = up_test_read_all(a, buf, sizeof(buf));
    cr_assert(n > 12 && strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
    cr_assert_not_null(strstr(buf, "\r\nRetry-After: 1\r\n"), "%s", buf);
    cr_assert_eq(up_test_read_all(b, buf, sizeof(buf)), 0, "%s", buf);
    close(a);
    close(b);
    pt_fini(&t);
}

/* A connection handed back: ready at once, with its try count and the
 * worker to avoid; with a head only when the bytes read hold a whole one;
 * asking something only if bytes were read or are waiting. */
Test(pending, handed_back_reported_ready, .timeout = 20)
{
    struct pt t;
    pt_init(&t, UP_BACKEND_EPOLL, 64, 5000);
    int sv[2], sw[2];
    up_test_pair(false, sv);
    up_test_pair(false, sw);
    static const char head[] = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    up_pending_handed_back_take(&t.set, sv[0], head, sizeof(head) - 1, 2, 1234);
    cr_assert_eq(t.ready, 1);
    cr_assert(t.had_head);
    cr_assert_str_eq(t.target, "/x");
    cr_assert_eq(t.last->tries, 2);
    cr_assert_eq(t.last->avoid, 1234);
    cr_assert_eq(t.last->listener, -1);
    cr_assert(up_pending_has_request(t.last));
    up_pending_close_gracefully(t.last);
    up_pending_handed_back_take(&t.set, sw[0], NULL, 0, 0, 99);
    cr_assert_eq(t.ready, 2);
    cr_assert(!t.had_head);
    cr_assert(!up_pending_has_request(t.last), "an idle connection asks nothing");
    pt_send(sw[1], "G");
    cr_assert(up_pending_has_request(t.last), "bytes waiting are a request");
    up_pending_close_gracefully(t.last);
    shutdown(sv[1], SHUT_WR);
    shutdown(sw[1], SHUT_WR);
    up_test_run_for(t.loop, 3000, &t.freed, 2);
    cr_assert_eq(t.freed, 2);
    cr_assert_eq(t.set.stats.handed_back, 2);
    close(sv[1]);
    close(sw[1]);
    pt_fini(&t);
}

/* Near the cap, the oldest incomplete heads are answered 408 (down to half
 * the cap); a young one is kept. */
Test(pending, shed_the_oldest_incomplete_heads, .timeout = 20)
{
    enum { CAP = 8 };
    struct pt t;
    pt_init(&t, UP_BACKEND_EPOLL, CAP, 30000);
    int peers[CAP];
    for (int i = 0; i < CAP - 1; i++) {
        pt_accept(&t, true, &peers[i]);
        pt_send(peers[i], "GET / HTTP/1.1\r\n");
    }
    int dummy = 0;
    up_test_run_for(t.loop, 300, &dummy, -1); /* older than the minimum age */
    pt_accept(&t, true, &peers[CAP - 1]);
    pt_send(peers[CAP - 1], "GET / HTTP/1.1\r\n");
    up_test_run_for(t.loop, 50, &dummy, -1);
    up_pendings_shed(&t.set);
    up_test_run_for(t.loop, 3000, &t.freed, CAP / 2);
    cr_assert_eq(t.set.stats.shed, CAP / 2, "%llu shed", (unsigned long long)t.set.stats.shed);
    char buf[512];
    for (int i = 0; i < CAP / 2; i++) {
        int n = up_test_read_all(peers[i], buf, sizeof(buf));
        cr_assert(n > 12 && strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "oldest %d: %s", i, buf);
    }
    cr_assert_eq(t.ready, 0);
    cr_assert_eq(t.set.n, CAP - CAP / 2, "%zu left", t.set.n);
    for (int i = 0; i < CAP; i++) {
        close(peers[i]);
    }
    pt_fini(&t);
}
