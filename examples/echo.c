/*
 * echo: answers with what it understood of the request, so that tests can
 * check the runtime's parsing (method, target, headers, decoded body) and
 * which worker and generation served them (X-Up-Pid, X-Up-Generation).
 *
 * GET /body answers the raw request body alone, so an upload can be compared
 * byte for byte without parsing the listing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <up/app.h>

/* Append to a growing buffer; on allocation failure the buffer is freed and
 * set to NULL, and later appends are no-ops, so the caller checks once. */
struct echo_buf {
    char *data;
    size_t len;
    size_t cap;
};

static void echo_append(struct echo_buf *b, const char *p, size_t n)
{
    if (b->data == NULL && b->cap != 0) {
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            free(b->data);
            b->data = NULL;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void echo_line(struct echo_buf *b, const char *name, const char *value)
{
    echo_append(b, name, strlen(name));
    echo_append(b, ": ", 2);
    echo_append(b, value, strlen(value));
    echo_append(b, "\n", 1);
}

static void echo_handle(struct up_req *req, struct up_res *res)
{
    char num[32];
    size_t body_len;
    const char *body = up_req_body(req, &body_len);

    snprintf(num, sizeof(num), "%ld", (long)getpid());
    up_res_header(res, "X-Up-Pid", num);
    snprintf(num, sizeof(num), "%u", up_generation());
    up_res_header(res, "X-Up-Generation", num);
    up_res_header(res, "Content-Type", "text/plain");
    if (strcmp(up_req_path(req), "/body") == 0) {
        up_res_send(res, body, body_len);
        return;
    }

    struct echo_buf b = {0};
    const char *name;
    const char *value;
    echo_line(&b, "method", up_req_method(req));
    echo_line(&b, "target", up_req_target(req));
    echo_line(&b, "path", up_req_path(req));
    echo_line(&b, "query", up_req_query(req));
    for (size_t i = 0; up_req_header_at(req, i, &name, &value) == 0; i++) {
        echo_line(&b, name, value);
    }
    echo_append(&b, "\n", 1);
    echo_append(&b, body, body_len);
    if (b.data == NULL) {
        up_res_status(res, 500);
        up_res_send(res, "out of memory\n", 14);
        return;
    }
    up_res_send(res, b.data, b.len);
    free(b.data);
}

UP_APP_EXPORT const struct up_app up_app = {
    .abi_version = UP_APP_ABI_VERSION,
    .name = "echo",
    .handle = echo_handle,
};
