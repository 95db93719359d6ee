/*
 * log: one line per event on stderr, `key=value` fields.
 *
 * Only policy code logs (main, master, generations, the worker loop); library
 * modules return -errno and let their caller log once. Under systemd
 * (JOURNAL_STREAM set) each line starts with the <N> priority prefix so that
 * journald keeps the level. Lines are written with a single write(2) so that
 * master and workers sharing stderr never interleave inside a line.
 */
#ifndef UP_LOG_H
#define UP_LOG_H

#include <stdarg.h>

enum up_log_level {
    UP_LOG_ERR = 3,   /* something failed and was not retried */
    UP_LOG_WARN = 4,  /* something failed and was retried or ignored */
    UP_LOG_INFO = 6,  /* lifecycle: start, reload, generation switch, stop */
    UP_LOG_DEBUG = 7, /* per connection; only with UP_LOG=debug */
};

/* Set once at start: the tag printed on every line ("up-run", "worker g3#1")
 * and the maximum level printed. Reads UP_LOG (err|warn|info|debug) and
 * JOURNAL_STREAM from the environment. */
void up_log_init(const char *tag);

/* Change the tag (a worker learns its generation after start). */
void up_log_set_tag(const char *tag);

/* True when lines of this level are printed: lets hot paths skip formatting. */
int up_log_enabled(enum up_log_level level);

void up_log(enum up_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void up_vlog(enum up_log_level level, const char *fmt, va_list ap);

#endif
