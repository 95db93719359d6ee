/*
 * chat: a WebSocket broadcast app, and what a reload looks like to the
 * people using one.
 *
 *     GET /      the page (index.html, built into the .so): it connects to
 *                /ws, shows the messages, and comes back by itself within a
 *                second when a reload closes its WebSocket with 1012
 *     GET /ws    the chat: a message a client sends goes to every client of
 *                this worker, the sender included
 *
 * The protocol, text messages:
 *
 *     server -> client  "hello GEN PID"   on open: who serves this socket
 *                       "msg ID TEXT"     someone said TEXT; ID is theirs
 *                       "error ID WHY"    your message ID was refused (malformed,
 *                                         too long; ID "-" if it had none)
 *     client -> server  "say ID TEXT"     ID (no spaces) is the client's, so
 *                                         that it knows its message came back
 *
 * Every message a client sends comes back to it, either as itself or as an
 * error. One still in flight when a reload closes the socket (the server
 * sent its close frame first) may be broadcast to the others but not echoed
 * to its sender: the page shows such a message as not sent, since it knows
 * what it sent and never saw come back.
 *
 * On a reload nothing here needs to be done: the runtime closes each
 * WebSocket with 1012 after --ws-drain-grace, spread over --close-spread,
 * and the page reconnects to the new code. The drain hook only says so in
 * the log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

#define MAX_TEXT 1000

/* The page, as the file is: .incbin puts index.html into read-only data.
 * The assembler finds it on its include path: build with -Wa,-I and this
 * directory (the Makefile does). */
__asm__(".section .rodata\n"
        "chat_page:\n"
        ".incbin \"index.html\"\n"
        "chat_page_end:\n"
        ".previous\n");
__attribute__((visibility("hidden"))) extern const char chat_page[], chat_page_end[];

/* The clients of this worker, in a ring. */
struct client {
    struct up_ws *ws;
    struct client *prev, *next;
};

static struct client clients = {.prev = &clients, .next = &clients};
static int nclients;

static void on_open(struct up_ws *ws, void *ctx)
{
    struct client *c = ctx;
    c->ws = ws;
    c->prev = clients.prev;
    c->next = &clients;
    clients.prev->next = c;
    clients.prev = c;
    nclients++;
    char hello[64];
    int n = snprintf(hello, sizeof(hello), "hello %u %d", up_generation(), (int)getpid());
    up_ws_send_text(ws, hello, (size_t)n);
}

static void on_close(struct up_ws *ws, void *ctx, int code, const char *reason)
{
    (void)ws;
    (void)code;
    (void)reason;
    struct client *c = ctx;
    if (c->ws != NULL) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        nclients--;
    }
    free(c);
}

static void reply_error(struct up_ws *ws, const char *id, int id_len, const char *why)
{
    char line[160];
    int n = snprintf(line, sizeof(line), "error %.*s %s", id_len, id, why);
    up_ws_send_text(ws, line, (size_t)n);
}

/* "say ID TEXT" goes to everyone as "msg ID TEXT" (data has a NUL after
 * it). A client too slow to take it (its queue full) misses it. */
static void on_message(struct up_ws *ws, void *ctx, int type, const void *data, size_t len)
{
    (void)ctx;
    const char *s = data;
    if (type != UP_WS_TEXT || len < 5 || strncmp(s, "say ", 4) != 0) {
        reply_error(ws, "-", 1, "not a say message");
        return;
    }
    const char *id = s + 4;
    int id_len = (int)strcspn(id, " ");
    if (id_len == 0 || id_len > 64 || id[id_len] != ' ') {
        reply_error(ws, "-", 1, "no message id");
        return;
    }
    if (len - 5 - (size_t)id_len > MAX_TEXT) {
        reply_error(ws, id, id_len, "too long");
        return;
    }
    char line[MAX_TEXT + 80];
    int n = snprintf(line, sizeof(line), "msg %s", s + 4);
    for (struct client *c = clients.next; c != &clients; c = c->next) {
        if (up_ws_send_text(c->ws, line, (size_t)n) == UP_WS_ERR_FULL) {
            fprintf(stderr, "chat: a client takes nothing, a message to it was dropped\n");
        }
    }
}

static const struct up_ws_callbacks chat_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

static void chat_handle(struct up_req *req, struct up_res *res)
{
    const char *path = up_req_path(req);
    if (strcmp(path, "/ws") == 0) {
        struct client *c = calloc(1, sizeof(*c));
        if (c == NULL || up_ws_accept(req, res, &chat_cbs, c) < 0) {
            free(c); /* res was answered: 426, 503, 500 */
        }
        return;
    }
    char gen[16];
    snprintf(gen, sizeof(gen), "%u", up_generation());
    up_res_header(res, "X-Up-Generation", gen);
    if (strcmp(path, "/") != 0) {
        up_res_status(res, 404);
        up_res_header(res, "Content-Type", "text/plain");
        up_res_send(res, "not found\n", 10);
        return;
    }
    up_res_header(res, "Content-Type", "text/html; charset=utf-8");
    up_res_header(res, "Cache-Control", "no-cache");
    up_res_send(res, chat_page, (size_t)(chat_page_end - chat_page));
}

static void chat_drain(void)
{
    fprintf(stderr, "chat: generation %u drains with %d clients; they will be back\n",
            up_generation(), nclients);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "chat",
    .handle = chat_handle,
    .drain = chat_drain,
};
