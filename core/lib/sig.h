/*
 * sig: the signal state a process of up must not keep from its parent.
 *
 * An ignored disposition survives exec, and for SIGCHLD it makes the kernel
 * reap children itself: waitpid() then finds none, a master never sees its
 * workers die, an app's system() fails. (Other ignored signals do no such
 * harm to a process that blocks them and reads them from a signalfd, or
 * installs handlers: a blocked signal is never discarded as ignored.)
 */
#ifndef UP_SIG_H
#define UP_SIG_H

/* Set SIGCHLD back to its default if it is ignored. A handler (one a
 * program embedding libup set) stays. */
void up_sig_unignore_chld(void);

#endif
