/*
 * sig: see sig.h.
 */
#include "sig.h"

#include <signal.h>
#include <stddef.h>

void up_sig_unignore_chld(void)
{
    struct sigaction old;
    if (sigaction(SIGCHLD, NULL, &old) == 0 && old.sa_handler == SIG_IGN) {
        (void)signal(SIGCHLD, SIG_DFL);
    }
}
