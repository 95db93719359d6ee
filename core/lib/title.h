/*
 * title: the process title, as `ps` and `top` show it.
 *
 * Sets both the kernel's comm (PR_SET_NAME, 15 bytes, what `ps -o comm` and
 * /proc/PID/comm show) and the command line (/proc/PID/cmdline, what `ps aux`
 * shows) by writing over the argv area, as nginx and PostgreSQL do. The
 * environment strings that follow argv are copied away first so that the
 * title may use their room too. Never logs.
 */
#ifndef UP_TITLE_H
#define UP_TITLE_H

/* Remember the argv area. Call once, first thing in main(), before anything
 * reads environ: environ is moved to a copy. Returns a copy of argv (argc
 * strings and a NULL) for the program to parse, since up_title_set()
 * overwrites the original; free it with up_title_free_args(). NULL when out
 * of memory. */
char **up_title_init(int argc, char **argv);

/* Free what up_title_init() returned (NULL is fine). */
void up_title_free_args(char **args);

/* Set the title ("up master"). Longer titles are cut to fit the area. */
void up_title_set(const char *title);

#endif
