#include "asrv.h"
#include "list.h"

#include "acceptor.h"

#include "fd.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ASRV_TIMEOUT_MS 2000
#define ASRV_MAX_CLIENTS 64

enum asrv_state {
    ASRV_READING,   /* the request */
    ASRV_WAITING,   /* for the owner's deferred answer; the client is watched */
    ASRV_ANSWERING, /* sending the answer */
};

struct asrv_client {
    struct up_asrv *s;
    struct asrv_client *next;
    int fd; /* owned */
    uint64_t id;
    enum asrv_state state;
    bool dead;             /* to be freed once no op is in flight */
    struct up_op op;       /* reads the request, sends the answer */
    struct up_op watch;    /* while WAITING: a hang-up (or any byte) ends it */
    struct up_timer timer; /* the request's deadline */
    char buf[UP_ASRV_BUF]; /* the request, then the answer */
    char scratch;
    size_t len, off;
};

struct up_asrv {
    struct up_loop *loop;
    int fd; /* owned: the listening socket */
    bool same_uid;
    struct up_acceptor acceptor; /* backs off when accept() fails (EMFILE) */
    up_asrv_complete_fn complete;
    up_asrv_answer_fn answer;
    void *ctx;
    struct asrv_client *clients;
    size_t nclients;
    uint64_t next_id;
};

/* End c: at once when none of its ops is in flight, else once the last
 * one's final callback has run (they are canceled here). */
static void client_end(struct asrv_client *c)
{
    struct up_asrv *s = c->s;
    c->dead = true;
    if (c->op.busy || c->watch.busy) {
        up_loop_cancel(s->loop, &c->op);
        up_loop_cancel(s->loop, &c->watch);
        return;
    }
    struct asrv_client **pp = &s->clients;
    while (*pp != c) {
        pp = &(*pp)->next;
    }
    *pp = c->next;
    s->nclients--;
    up_timer_stop(s->loop, &c->timer);
    c->fd = up_loop_close(s->loop, c->fd);
    free(c);
}

/* Send the rest of the answer, or end: closing is the end of the answer. */
static void send_rest(struct asrv_client *c)
{
    if (c->off >= c->len ||
        up_loop_send(c->s->loop, &c->op, c->fd, c->buf + c->off, c->len - c->off, 0) < 0) {
        client_end(c);
    }
}

static void on_client(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct asrv_client *c = up_container_of(op, struct asrv_client, op);
    struct up_asrv *s = c->s;
    if (c->dead || res <= 0) {
        client_end(c); /* gone, canceled (timeout), or an error */
        return;
    }
    if (c->state == ASRV_ANSWERING) {
        c->off += (size_t)res;
        send_rest(c);
        return;
    }
    c->len += (size_t)res;
    c->buf[c->len] = '\0';
    if (!s->complete(c->buf, c->len) && c->len < sizeof(c->buf) - 1) {
        if (up_loop_recv(loop, &c->op, c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0) <
            0) {
            client_end(c);
        }
        return;
    }
    size_t n = s->answer(s->ctx, c->id, c->buf, c->len, sizeof(c->buf));
    if (n == UP_ASRV_LATER) {
        /* No deadline of ours now: the owner answers, or the client leaves. */
        c->state = ASRV_WAITING;
        up_timer_stop(loop, &c->timer);
        if (up_loop_recv(loop, &c->watch, c->fd, &c->scratch, 1, 0) < 0) {
            client_end(c);
        }
        return;
    }
    c->len = n < sizeof(c->buf) ? n : sizeof(c->buf);
    c->off = 0;
    c->state = ASRV_ANSWERING;
    send_rest(c);
}

static void on_watch(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)loop, (void)res, (void)flags;
    struct asrv_client *c = up_container_of(op, struct asrv_client, watch);
    /* While waiting, any event means the client hung up (or broke the
     * protocol); once answering, this is the cancel of the watch. */
    if (c->dead || c->state == ASRV_WAITING) {
        client_end(c);
    }
}

int up_asrv_reply(struct up_asrv *s, uint64_t id, const char *text, size_t len)
{
    struct asrv_client *c = s->clients;
    while (c != NULL && (c->id != id || c->state != ASRV_WAITING || c->dead)) {
        c = c->next;
    }
    if (c == NULL) {
        return -ENOENT;
    }
    c->len = len < sizeof(c->buf) ? len : sizeof(c->buf);
    memcpy(c->buf, text, c->len);
    c->off = 0;
    c->state = ASRV_ANSWERING;
    up_loop_cancel(s->loop, &c->watch);
    send_rest(c);
    return 0;
}

static void on_client_timeout(struct up_loop *loop, struct up_timer *t)
{
    struct asrv_client *c = up_container_of(t, struct asrv_client, timer);
    up_loop_cancel(loop, &c->op); /* on_client ends it */
}

static bool peer_allowed(const struct up_asrv *s, int fd)
{
    if (!s->same_uid) {
        return true;
    }
    struct ucred cred;
    socklen_t len = sizeof(cred);
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
           (cred.uid == getuid() || cred.uid == 0);
}

static void client_start(struct up_asrv *s, int fd)
{
    struct asrv_client *c = NULL;
    if (s->nclients >= ASRV_MAX_CLIENTS || !peer_allowed(s, fd) ||
        (c = calloc(1, sizeof(*c))) == NULL) {
        up_log(UP_LOG_WARN, "refused a client (another user, too many, or no memory)");
        up_close(fd);
        return;
    }
    c->s = s;
    c->fd = fd;
    c->id = ++s->next_id;
    c->op.cb = on_client;
    c->watch.cb = on_watch;
    c->timer.cb = on_client_timeout;
    c->next = s->clients;
    s->clients = c;
    s->nclients++;
    up_timer_start(s->loop, &c->timer, ASRV_TIMEOUT_MS);
    if (up_loop_recv(s->loop, &c->op, c->fd, c->buf, sizeof(c->buf) - 1, 0) < 0) {
        client_end(c);
    }
}

static void on_conn(struct up_acceptor *a, int fd)
{
    client_start(a->ctx, fd);
}

static const struct up_acceptor_cbs asrv_acceptor_cbs = {.on_conn = on_conn};

int up_asrv_open_take(struct up_loop *loop, int lfd, bool same_uid, up_asrv_complete_fn complete,
                      up_asrv_answer_fn answer, void *ctx, struct up_asrv **ret)
{
    struct up_asrv *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        up_close(lfd);
        return -ENOMEM;
    }
    *s = (struct up_asrv){.loop = loop,
                          .fd = lfd,
                          .same_uid = same_uid,
                          .complete = complete,
                          .answer = answer,
                          .ctx = ctx};
    up_acceptor_init(&s->acceptor, loop, lfd, &asrv_acceptor_cbs, s);
    /* A failure to start is retried by the acceptor itself. */
    (void)up_acceptor_start(&s->acceptor);
    *ret = s;
    return 0;
}

int up_asrv_fd(const struct up_asrv *s)
{
    return s->fd;
}

void up_asrv_accepting(struct up_asrv *s, bool on)
{
    if (on) {
        up_acceptor_resume(&s->acceptor);
    } else {
        up_acceptor_pause(&s->acceptor);
    }
}

void up_asrv_close(struct up_asrv *s)
{
    if (s == NULL) {
        return;
    }
    for (struct asrv_client *c = s->clients; c != NULL; c = c->next) {
        up_loop_cancel(s->loop, &c->op);
        up_loop_cancel(s->loop, &c->watch);
    }
    up_acceptor_stop(&s->acceptor);
    /* The clients' and the accept's final callbacks run here. */
    up_loop_drain(s->loop, 2000);
    s->fd = up_loop_close(s->loop, s->fd);
    free(s);
}
