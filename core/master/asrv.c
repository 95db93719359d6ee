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

struct asrv_client {
    struct up_asrv *s;
    struct asrv_client *next;
    int fd; /* owned */
    struct up_op op;
    struct up_timer timer;
    char buf[UP_ASRV_BUF]; /* the request, then the answer */
    size_t len, off;
    bool answering;
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
};

static void client_free(struct asrv_client *c)
{
    struct up_asrv *s = c->s;
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

static void on_client(struct up_loop *loop, struct up_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct asrv_client *c = up_container_of(op, struct asrv_client, op);
    struct up_asrv *s = c->s;
    if (res <= 0) {
        client_free(c); /* gone, canceled (timeout), or an error */
        return;
    }
    if (!c->answering) {
        c->len += (size_t)res;
        c->buf[c->len] = '\0';
        if (!s->complete(c->buf, c->len) && c->len < sizeof(c->buf) - 1) {
            if (up_loop_recv(loop, &c->op, c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0) <
                0) {
                client_free(c);
            }
            return;
        }
        c->len = s->answer(s->ctx, c->buf, c->len, sizeof(c->buf));
        c->off = 0;
        c->answering = true;
    } else {
        c->off += (size_t)res;
    }
    if (c->off >= c->len ||
        up_loop_send(loop, &c->op, c->fd, c->buf + c->off, c->len - c->off, 0) < 0) {
        client_free(c); /* answered: closing is the end of the answer */
    }
}

static void on_client_timeout(struct up_loop *loop, struct up_timer *t)
{
    struct asrv_client *c = up_container_of(t, struct asrv_client, timer);
    up_loop_cancel(loop, &c->op); /* on_client frees it */
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
    c->op.cb = on_client;
    c->timer.cb = on_client_timeout;
    c->next = s->clients;
    s->clients = c;
    s->nclients++;
    up_timer_start(s->loop, &c->timer, ASRV_TIMEOUT_MS);
    if (up_loop_recv(s->loop, &c->op, c->fd, c->buf, sizeof(c->buf) - 1, 0) < 0) {
        client_free(c);
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

void up_asrv_close(struct up_asrv *s)
{
    if (s == NULL) {
        return;
    }
    for (struct asrv_client *c = s->clients; c != NULL; c = c->next) {
        up_loop_cancel(s->loop, &c->op);
    }
    up_acceptor_stop(&s->acceptor);
    /* The clients' and the accept's final callbacks run here. */
    up_loop_drain(s->loop, 2000);
    s->fd = up_loop_close(s->loop, s->fd);
    free(s);
}
