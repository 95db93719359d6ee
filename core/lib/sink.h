/*
 * sink: whole lines written to an fd that must never block the loop (a
 * log's stderr, an access log), through a bounded buffer.
 *
 * A line that does not fit is dropped whole (never cut) and counted. Once
 * the fd takes lines again, a sink made with a notice puts a line saying how
 * many were lost where they would have been (the master's log); one without
 * (an access log, read by parsers) only counts them. The file status flags
 * of the fd are left alone: its open file description may be shared with
 * whoever started us; how to write it without blocking is chosen by its
 * type (see choose() in sink.c).
 *
 * A batching sink writes once per batch period (or once a quarter of the
 * buffer waits) rather than once per line: one write(2) for many lines is
 * what keeps a per-request access log cheap.
 *
 * Several processes may write one pipe (workers on up-run's stdout): a
 * pipe's writes of whole lines up to PIPE_BUF bytes are atomic, so a sink
 * never writes more than that to a pipe in one call, cut after a newline,
 * and lines of two writers never mix.
 *
 * Uses the loop (both are infrastructure); never logs.
 */
#ifndef UP_SINK_H
#define UP_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

/* How the fd is written (chosen by its type). */
enum up_sink_how {
    UP_SINK_BLOCKING, /* write(2): a regular file or /dev/null, which never wait for a reader */
    UP_SINK_PRIVATE,  /* write(2) on our own O_NONBLOCK description of the pipe or tty */
    UP_SINK_SOCKET,   /* send(MSG_DONTWAIT | MSG_NOSIGNAL): journald's stream */
    UP_SINK_NOWAIT,   /* pwritev2(RWF_NOWAIT): a pipe we could not reopen */
    UP_SINK_SHARED,   /* the fd itself set O_NONBLOCK: the last resort */
};

/* Writes the start of the notice line (a log's prefix) into line; returns
 * its length. */
typedef size_t (*up_sink_prefix_fn)(char *line, size_t cap);

struct up_sink {
    enum up_sink_how how;
    int target;           /* borrowed: the fd lines are for */
    int fd;               /* what is written: target, or our private description (owned) */
    struct up_loop *loop; /* borrowed; NULL before up_sink_start(), after _end() */
    struct up_op op;      /* POLLOUT on fd while data waits */
    struct up_timer tick; /* the batch period, or a retry where fd cannot be polled */
    bool poll_failed;     /* the loop could not poll fd: retry by timer */
    bool pipe;            /* writes of at most PIPE_BUF bytes, whole lines */
    char *buf;            /* owned: whole lines waiting in [off, len) */
    size_t cap, off, len;
    uint64_t batch_ms;   /* 0: write at each line */
    uint64_t lines;      /* put since start */
    uint64_t dropped;    /* since start */
    uint64_t unreported; /* dropped since the last notice */
    const char *notice;  /* borrowed: the notice's text after the count, or NULL */
    up_sink_prefix_fn prefix;
    bool freed;    /* up_sink_free() ran while op was in flight: it closes our fds */
    bool replaced; /* the target changed while op waited on the old fd */
    int stale_fd;  /* ... and that private fd, closed once op is done */
};

/* Set s up for target (borrowed) with a buffer of cap bytes. notice: the
 * text after the count on the line that stands for dropped ones (borrowed,
 * with prefix for the start of that line), or NULL for none. batch_ms: 0
 * writes at each line, else at most that long after a line (needs a loop).
 * Returns 0 or -ENOMEM. */
int up_sink_init(struct up_sink *s, int target, size_t cap, uint64_t batch_ms, const char *notice,
                 up_sink_prefix_fn prefix);

/* From now on, waits for the fd to take more are armed on loop (borrowed
 * until up_sink_end()). Without a loop a full fd drops lines. */
void up_sink_start(struct up_sink *s, struct up_loop *loop);

/* Buffer one line of n bytes (its newline added) and write what the batch
 * rule says. Never blocks; a line that does not fit is dropped whole. */
void up_sink_put(struct up_sink *s, const char *line, size_t n);

/* Write what waits now, as far as the fd takes it without blocking. */
void up_sink_flush(struct up_sink *s);

/* The target fd is another file now (dup2 onto it, or a new fd after a log
 * file was reopened): write there from now on. target is borrowed. */
void up_sink_retarget(struct up_sink *s, int target);

/* Stop using the loop (before it is drained and freed): cancels the wait,
 * then makes one last non-blocking attempt to write what is buffered.
 * Later lines are still written without blocking, each with one attempt,
 * so a stuck reader cannot hang an exit. */
void up_sink_end(struct up_sink *s);

/* Free the buffer and our private fd (after up_sink_end()). While the
 * canceled wait is still in flight the fd stays open until its callback,
 * when the caller drains the loop: then the loop forgets it first. */
void up_sink_free(struct up_sink *s);

#endif
