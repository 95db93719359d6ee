/*
 * embed: a master of your own, on libup. It serves APP.so like up-run, and
 * adds one rule in front of the workers: while the file MAINTENANCE exists,
 * every new connection gets a 503 with Retry-After from the master itself.
 * SIGUSR2 or SIGHUP reloads; the outcome of each reload is printed.
 *
 *     embed PORT APP.so MAINTENANCE
 *
 * Build: cc -Icore/include embed.c build/libup.a -luring -ldl
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/server.h>

static enum up_route maintenance(void *ctx, const struct up_request *req, struct up_route_out *out)
{
    (void)req;
    if (access(ctx, F_OK) != 0) {
        return UP_ROUTE_NEXT; /* the workers serve it */
    }
    static const char body[] = "down for maintenance\n";
    out->status = 503;
    out->headers = "Retry-After: 30\r\nContent-Type: text/plain\r\n";
    out->body = body;
    out->body_len = sizeof(body) - 1;
    return UP_ROUTE_ANSWER;
}

static void reloaded(void *ctx, const struct up_reload_outcome *o)
{
    (void)ctx;
    if (o->ok) {
        fprintf(stderr, "embed: generation %u serving after %llu ms\n", o->generation,
                (unsigned long long)o->ms);
    } else {
        fprintf(stderr, "embed: generation %u failed, the old code serves: %s\n", o->generation,
                o->why);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: embed PORT APP.so MAINTENANCE\n");
        return 2;
    }
    struct up_server_opts o = {
        .app = argv[2], .workers = 2, .signals = true, .on_reload = reloaded};
    struct up_server *s;
    if (up_server_new(&o, &s) < 0) {
        return 2;
    }
    int code = 3;
    if (up_server_listen(s, argv[1]) == 0 && up_server_use(s, maintenance, argv[3]) == 0) {
        code = up_server_run(s);
    }
    up_server_free(s);
    return code;
}
