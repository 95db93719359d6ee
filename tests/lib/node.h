/*
 * node: the WebSocket client scripts of tests/ws (node, with the npm
 * package ws that make installs into build/npm), run from a test: to their
 * end, or in the background while the test drives the server, talking
 * through their output file (one line per event; see tests/ws/wslib.js).
 *
 * Like harness.h's, these assert: a script that cannot start, or does not
 * end in time, fails the test with its output in the message. A script
 * started in the background is stopped by ht_fini().
 */
#ifndef UP_TEST_NODE_H
#define UP_TEST_NODE_H

#include <sys/types.h>

/* A script running in the background: its pid and output file. */
struct nd {
    pid_t pid;
    char out[4096]; /* the path of its stdout and stderr */
};

/* Start `node tests/ws/SCRIPT ARGS...` (args NULL-terminated) with its
 * output to DIR/SCRIPT.out. */
void nd_start(struct nd *n, const char *script, const char *const *args);

/* Wait up to timeout_ms for the script's output to hold needle (asserted,
 * and that the script still runs or ended well). */
void nd_wait_line(const struct nd *n, const char *needle, int timeout_ms);

/* Wait up to timeout_ms for the script to end (asserted); returns its exit
 * status. */
int nd_finish(struct nd *n, int timeout_ms);

/* nd_start() then nd_finish(), asserting exit 0; the output is printed on
 * stderr either way, tagged, for the record. */
void nd_run(const char *tag, const char *script, const char *const *args, int timeout_ms);

/* The last 6 KiB of the script's output. */
const char *nd_text(const struct nd *n);

#endif
