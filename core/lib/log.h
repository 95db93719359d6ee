/*
 * log: one line per event on stderr, `key=value` fields.
 *
 * Only policy code logs (main, master, generations, the worker loop); library
 * modules return -errno and let their caller log once. Under systemd
 * (JOURNAL_STREAM set) each line starts with the <N> priority prefix so that
 * journald keeps the level.
 *
 * Two modes. By default (a worker, and the master until it has a loop) each
 * line is one write(2) to fd 2, which may block: a worker's stderr is a pipe
 * the master always reads. The master switches to the non-blocking mode with
 * up_log_async(): lines go into a bounded buffer of whole lines, written to
 * stderr without ever blocking, the rest retried when the loop reports stderr
 * writable (sink.h). A line that does not fit is dropped whole (never cut)
 * and counted; once stderr takes lines again, a line saying how many were
 * lost stands where they would have been. The file status flags of fd 2 are
 * left alone: that open file description is shared with whoever started us.
 *
 * The log module uses the loop (both are infrastructure); it never calls the
 * master, and never logs about itself.
 */
#ifndef UP_LOG_H
#define UP_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct up_loop;

enum up_log_level {
    UP_LOG_ERR = 3,   /* something failed and was not retried */
    UP_LOG_WARN = 4,  /* something failed and was retried or ignored */
    UP_LOG_INFO = 6,  /* lifecycle: start, reload, generation switch, stop */
    UP_LOG_DEBUG = 7, /* per connection; only with UP_LOG=debug */
};

/* The longest line, newline included; a longer one is cut to this. */
#define UP_LOG_LINE_MAX 2048

/* Set once at start: the tag printed on every line ("up-run", "worker g3#1")
 * and the maximum level printed. Reads UP_LOG (err|warn|info|debug) and
 * JOURNAL_STREAM from the environment. */
void up_log_init(const char *tag);

/* Change the tag (a worker learns its generation after start). */
void up_log_set_tag(const char *tag);

/* True when lines of this level are printed: lets hot paths skip formatting. */
int up_log_enabled(enum up_log_level level);

/* Never blocks in the non-blocking mode; may block in the default mode. */
void up_log(enum up_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void up_vlog(enum up_log_level level, const char *fmt, va_list ap);

/* Switch to the non-blocking mode (the master, once, right after creating
 * its loop): allocates the buffer and picks how to write fd 2 without
 * blocking, by its type. loop is borrowed until up_log_async_end(). Returns 0,
 * or -ENOMEM (the default mode stays). */
int up_log_async(struct up_loop *loop);

/* Stop using the loop (before it is drained and freed): cancels the wait
 * for stderr, then makes one last non-blocking attempt to write what is
 * buffered. Later lines are still written without blocking, each with one
 * attempt and no retry, so a stuck reader cannot hang an exit. The buffer
 * and the private fd stay until the process exits. No-op if not async. */
void up_log_async_end(void);

/* fd 2 was replaced (dup2) with another file: write there from now on (a
 * master taking over from the one it upgrades gets that one's stderr). */
void up_log_stderr_changed(void);

/* Lines dropped since start because stderr was not writable (or broken). */
uint64_t up_log_lines_dropped(void);

/* Relaying another process's stderr (a worker's pipe, read in chunks) line
 * by line, each line as one unit of the log: in the non-blocking mode a
 * relayed line is buffered, or dropped and counted, like our own. Zero the
 * struct before first use. */
struct up_log_relay {
    size_t len;                 /* bytes in part */
    char part[UP_LOG_LINE_MAX]; /* a line whose newline has not come yet */
};

/* Feed n bytes read from the other process. A line longer than
 * UP_LOG_LINE_MAX is passed on in pieces of that size, each ended by a
 * newline. */
void up_log_relay(struct up_log_relay *r, const char *data, size_t n);

/* The other side reached EOF: pass on its unfinished last line, if any. */
void up_log_relay_end(struct up_log_relay *r);

#endif
