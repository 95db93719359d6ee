/*
 * kind: what a worker process is. The master runs workers of one kind, and
 * everything that differs between kinds is said here: what a generation
 * prepares before its workers start, what program each worker runs with
 * which fds and environment, how it says it is ready, and how it is told
 * to stop. mworker does what the kind says (it alone talks to a process);
 * gen decides when.
 *
 *   APP      up-worker loading the app .so. fd 3 is the channel (passfd.h):
 *            connections come one by one from the master; READY and DRAIN
 *            are messages. A generation loads a private snapshot of the app,
 *            made once: a sealed memfd that each of its workers gets as fd
 *            4 and maps (the same pages in all of them, in memory, whatever
 *            the state of the disk), or a file in the snapshot directory,
 *            opened as fd 4 alike, where no memfd can be had.
 *   HANDOFF  any program that speaks the channel protocol on fd 3
 *            (docs/PROTOCOL.md): what an APP worker gets, for another
 *            language. The command is started through up-exec.
 *   EXEC     any HTTP server. It gets the master's listening sockets by
 *            socket activation (fds 3.., LISTEN_FDS, LISTEN_PID,
 *            LISTEN_FDNAMES) and accepts on them itself; it is ready when
 *            it says READY=1 on NOTIFY_SOCKET (or after a delay); it drains
 *            on a signal, and is killed at the drain deadline.
 *   HEIR     a new up-run replacing this master (`up-run upgrade`): the
 *            channel at fd 3 as for HANDOFF, and from fd 4 the sockets it
 *            takes over (the listeners, the control and metrics sockets,
 *            this master's stderr), named by UP_HEIR_FDS. It is READY when
 *            its own first generation serves; then every connection this
 *            master still routes goes to it as a CONN. It starts directly
 *            (no up-exec: no parent-death signal, it outlives this master)
 *            in a process group of its own, with this master's stdout.
 *
 * HANDOFF and EXEC workers run in a process group of their own: a server
 * that forks its own workers is killed whole, and a Ctrl-C on the
 * terminal reaches only the master, which drains them. They start through
 * up-exec, a shim that sets what posix_spawn cannot (LISTEN_PID, the
 * parent-death signal, the fd limit up-run was given) and then execs the
 * command.
 *
 * Pure: builds argument vectors and checks files, never talks to a process
 * and never logs.
 */
#ifndef UP_KIND_H
#define UP_KIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "child.h"

enum up_kind {
    UP_KIND_APP,     /* up-worker with an app .so */
    UP_KIND_HANDOFF, /* a command speaking the channel protocol on fd 3 */
    UP_KIND_EXEC,    /* a command serving the listeners itself */
    UP_KIND_HEIR,    /* a new up-run taking this master's place */
};

/* How a worker says it is ready. */
enum up_ready_by {
    UP_READY_MESSAGE, /* READY on the channel (APP, HANDOFF) */
    UP_READY_NOTIFY,  /* READY=1 on NOTIFY_SOCKET, from its pid (EXEC) */
    UP_READY_AFTER,   /* alive ready_after_ms after its start (EXEC) */
};

/* Listeners an EXEC worker may get. */
#define UP_KIND_MAX_LISTEN 16
/* Sockets a HEIR may get (fd 4 on; see child.h's limit). */
#define UP_KIND_MAX_HEIR_FDS 16

/* What a worker is started with. Strings and arrays are borrowed. */
struct up_kind_params {
    enum up_kind kind;
    const char *bin; /* APP: up-worker; HANDOFF, EXEC: up-exec */
    const char *app; /* APP: the app (its snapshot file without app_fd); else the command, found */
    int app_fd;      /* APP: the generation's sealed snapshot, or -1 */
    unsigned gen_id, index;
    /* APP */
    const char *title;
    size_t max_head;
    uint64_t ws_drain_grace_ms;    /* --ws-drain-grace */
    uint64_t close_spread_ms;      /* --close-spread */
    const char *access_log;        /* --access-log, or NULL */
    const char *access_log_format; /* --access-log-format, or NULL */
    const char *backend;           /* UP_BACKEND for it ("epoll"...), or NULL */
    bool ready_manual;
    const char *const *require;
    int nrequire;
    /* APP: the app's arguments after argv[0]; HANDOFF, EXEC: the command
     * as written, argv[0] included (app is where it was found). */
    char *const *app_argv;
    int app_argc;
    /* EXEC: the master's listeners, in order; HEIR: the fds it takes over,
     * heir_names naming them ("listen,listen,control,stderr"). Borrowed. */
    const int *listen_fds;
    int nlisten;
    const char *heir_names;
    int port;                  /* PORT for it, 0: none (no TCP listener) */
    enum up_ready_by ready;    /* how it says it is ready */
    uint64_t ready_after_ms;   /* UP_READY_AFTER */
    const char *notify_path;   /* UP_READY_NOTIFY: the master's socket; HEIR:
                                * the master's own NOTIFY_SOCKET, or NULL */
    int stop_signal;           /* what makes it drain */
    unsigned long long nofile; /* HANDOFF, EXEC: its soft fd limit; 0: the master's */
};

/* Storage for a plan's strings: lives as long as the plan is used. */
struct up_kind_plan {
    struct up_child_plan child;
    const char *argv[160];
    char num[6][24];
    char env[UP_CHILD_MAX_ENV][256];
};

const char *up_kind_name(enum up_kind k);

/* Whether fd 3 is the channel, and connections come from the master. */
bool up_kind_has_channel(enum up_kind k);

/* Whether the worker leads a process group of its own. */
bool up_kind_own_group(enum up_kind k);

/* The signal that stops a worker at once (a master's SIGQUIT): SIGQUIT for
 * up-worker and the handoff protocol, SIGTERM for any server (a SIGQUIT
 * would make most dump core). */
int up_kind_quit_signal(enum up_kind k);

/* What a generation's workers run, made by up_kind_prepare(). */
struct up_kind_snap {
    char path[512]; /* APP: the app, or its snapshot file; else the command */
    int fd;         /* APP: the snapshot, open (ours): a sealed memfd, or the file */
    bool file;      /* path is our snapshot file: removed at release */
    int memfd_err;  /* APP with a file: why not a memfd (-errno) */
};

/* Before generation gen_id starts: APP copies p->app into a sealed memfd,
 * or where none can be had, into a file in dir (snap->path; "" for none:
 * then the memfd's error), and opens it (snap->fd, what each worker gets
 * as fd 4); HANDOFF, EXEC and HEIR
 * check that the command (p->app, an absolute path) may be run, and name
 * it in snap->path. Returns 0, or -errno with why (cap bytes) saying what
 * failed; snap is then empty (nothing to release, but harmless to). APP
 * may block: a short copy, once per reload. */
int up_kind_prepare(const struct up_kind_params *p, unsigned gen_id, const char *dir,
                    struct up_kind_snap *snap, char *why, size_t why_cap);

/* What up_kind_prepare() made, no longer needed (the generation is gone):
 * the memfd closed, the file removed. snap is empty after. */
void up_kind_release(struct up_kind_snap *snap);

/* Fill plan to start one worker of p with its channel (chan, -1 for EXEC)
 * and its output pipe (out: stderr, and stdout for HANDOFF and EXEC).
 * Returns 0, or -E2BIG when the command is too long to fit. */
int up_kind_plan(const struct up_kind_params *p, int chan, int out, struct up_kind_plan *plan);

/* Find cmd as a shell would (in $PATH unless it has a '/'): the absolute
 * path into buf. Returns 0, -ENOENT, -EACCES (found, not executable), or
 * -ENAMETOOLONG. Reads the file system. */
int up_kind_find_command(const char *cmd, char *buf, size_t cap);

#endif
