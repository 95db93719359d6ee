/*
 * duration: the text form of timeouts on the command line ("500ms", "10s",
 * "10m", "1h", "1.5s", "1m30s") and back, in whole milliseconds.
 *
 * Owns nothing and holds no state; never blocks, never logs (the CLI says
 * what was wrong with the value it was given).
 */
#ifndef UP_DURATION_H
#define UP_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parse text into milliseconds. text is one or more <number><unit> parts,
 * largest unit first or not, with no spaces: "1h30m", "1m30s". A number is
 * digits with an optional fraction ("1.5s"); the unit is ms, s, m or h. A bare
 * number with no unit at all is seconds ("250" = 250 s), as in sleep(1) and
 * most CLI tools; "0" is zero. A fraction below 1 ms is dropped (truncated).
 * Returns 0 and sets *ret_ms, or -EINVAL (empty, sign, unknown unit, trailing
 * junk, a bare number mixed with parts) or -ERANGE (over UINT64_MAX ms).
 * *ret_ms is untouched on failure. */
int up_duration_parse(const char *text, uint64_t *ret_ms);

/* Format ms in the largest unit that holds it exactly ("500ms", "1500ms",
 * "10s", "10m", "1h"; 0 is "0s"), so that up_duration_parse() reads it back
 * unchanged. Writes a NUL-terminated string into buf. Returns its length, or
 * -ENOSPC when cap is too small (buf is then untouched). */
int up_duration_format(uint64_t ms, char *buf, size_t cap);

#endif
