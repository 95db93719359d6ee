/*
 * procstat: what another process is doing, for the log line about a worker
 * that was not ready in time.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procstat.h"

/* A child that sleeps in pause(), spins, or is stopped. */
static pid_t child(char what)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (what == 'R') {
            for (volatile unsigned long i = 0;; i++) {
            }
        }
        pause();
        _exit(0);
    }
    if (what == 'T') {
        cr_assert_eq(kill(pid, SIGSTOP), 0);
    }
    usleep(100 * 1000); /* asleep, spinning or stopped by now */
    return pid;
}

static void end(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(procstat, says_what_a_process_is_doing, .timeout = 10)
{
    char buf[96];
    pid_t s = child('S');
    up_procstat_doing(s, buf, sizeof(buf));
    cr_assert_eq(strncmp(buf, "sleeping", 8), 0, "%s", buf);
    end(s);

    pid_t r = child('R');
    up_procstat_doing(r, buf, sizeof(buf));
    cr_assert_str_eq(buf, "running"); /* no wait channel for a running one */
    end(r);

    pid_t t = child('T');
    up_procstat_doing(t, buf, sizeof(buf));
    cr_assert_eq(strncmp(buf, "stopped", 7), 0, "%s", buf);
    end(t);

    /* Gone and reaped: nothing to say. */
    up_procstat_doing(t, buf, sizeof(buf));
    cr_assert_str_eq(buf, "");
}

/* The fields after the command, whatever the command holds. */
Test(procstat, reads_the_fields_after_the_command, .timeout = 10)
{
    char line[512];
    const char *self = up_procstat_stat(0, line, sizeof(line));
    cr_assert_not_null(self);
    cr_assert_eq(self[0], 'R', "%s", self); /* reading it, it runs */
    pid_t s = child('S');
    const char *p = up_procstat_stat(s, line, sizeof(line));
    int ppid = 0;
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p, "S %d", &ppid), 1, "%s", p);
    cr_assert_eq(ppid, getpid());
    end(s);
    cr_assert_null(up_procstat_stat(s, line, sizeof(line)));
}

Test(procstat, fits_a_small_buffer, .timeout = 10)
{
    char buf[6];
    pid_t s = child('S');
    up_procstat_doing(s, buf, sizeof(buf));
    cr_assert_str_eq(buf, "sleep");
    end(s);
}
