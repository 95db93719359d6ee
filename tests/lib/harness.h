/*
 * harness: what every integration suite drives, in one place. The master
 * under test (`ma`: up-run in the test's temp dir, its control socket, its
 * log, `up-run status` parsed), a lone `up-worker --listen` (`wk`), runs of
 * tests/tools/up-load (`ld_*`), the client sockets a test holds, and one
 * teardown, ht_fini(), that stops all of it by pid.
 *
 * Every test that uses it names ht_fini() (or a fini of its own that calls
 * it) as its Criterion .fini, so that what it started is stopped even after
 * a failed assertion. A test process runs one test: the state below is that
 * test's, and starts zeroed.
 *
 * Unlike testlib's, these functions assert: a server that does not start, a
 * command that does not finish, a status that cannot be parsed fails the
 * test where it happens, with the server's log in the message. Every wait
 * has a deadline, given as an argument or named in the comment.
 */
#ifndef UP_TEST_HARNESS_H
#define UP_TEST_HARNESS_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "conns.h"
#include "proc.h"
#include "testlib.h"

/* How long a server may take to serve after its start, and how long
 * ht_fini() gives one between SIGTERM and SIGKILL. */
#define HT_READY_MS 10000
#define HT_STOP_MS 5000

/* A request any example app answers at once (slow.so would sleep 1 s on
 * "/", the others ignore the query), on a connection of its own. */
#define HT_PROBE "/?ms=0"

/* ---- the test's temp dir, files, teardown ---- */

/* name in the test's temp dir (/tmp/up-test-XXXXXX, made on first use;
 * ht_path("") is the dir itself, with a '/' after it). Static ring buffer:
 * the string stays valid for the next 7 calls. */
const char *ht_path(const char *name);

/* The teardown of every test: closes the client sockets of ht_client(),
 * stops the up-loads, the master, the lone worker and the pids of
 * ht_stop_at_fini() (SIGTERM, then SIGKILL after HT_STOP_MS; see
 * up_test_stop()), kills any worker `up-run status` ever listed that
 * outlived its master (only if that pid still names a worker), and removes
 * the temp dir unless UP_TEST_KEEP is set. Resets all state. */
void ht_fini(void);

/* Have ht_fini() stop pid (a process the test started) if it still runs. */
void ht_stop_at_fini(pid_t pid);

/* Copy the file src (a path) to dst the way a deploy does: write a temp
 * file in the test dir (outside any watched dir), then rename it over dst,
 * so that a reader sees the old file or the new one, whole. */
void ht_install(const char *src, const char *dst);

/* DIR/app/app.so (its dir made if need be), now a copy of the build's
 * example ("examples/echo.so"). Returns its path (static buffer). */
const char *ht_app(const char *example);

/* The whole file at path, malloc'd with a NUL after it (the caller frees
 * it); *ret_len (may be NULL) gets its length. Asserts it can be read. */
char *ht_file_text(const char *path, size_t *ret_len);

/* Replace the contents of the file at path in place (same inode, as a
 * careless `cp` over a running app does) with data[0..len), asserting it. */
void ht_overwrite(const char *path, const void *data, size_t len);

/* How many lines of the file at path hold every one of the needles (a
 * NULL-terminated list of C strings after path). */
int ht_file_lines(const char *path, ...);

/* The numbers that follow each occurrence of key in the file at path, in
 * order: "respawning in " gives 100, 400, ... The first cap go into vals;
 * returns how many there are in all. */
int ht_file_numbers(const char *path, const char *key, long *vals, int cap);

/* The number after the last occurrence of key in the file, or dflt. */
long ht_file_last_number(const char *path, const char *key, long dflt);

/* ---- limits and tools ---- */

/* Raise this process's RLIMIT_NOFILE to its hard limit (the servers it
 * starts inherit it); skip the test if that is below need. */
void ht_raise_nofile(rlim_t need);

/* After a burst of n connections to pid (who: "master" or "worker", on
 * backend), whose VmRSS was base kB before it: read the peak (VmHWM),
 * wait 2.5 s (the pools trim a second after), read VmRSS again (until 8 s
 * while it is still above the bound: a loaded machine runs the trim
 * late), print the three, and assert that the burst grew pid by min_peak kB or more and
 * that at most max_after kB of it is still held (kept says what is kept
 * on purpose). Not under the sanitizers, whose allocator quarantines
 * freed memory. */
void ht_assert_burst_gone(pid_t pid, const char *who, const char *backend, int n, long base,
                          long min_peak, long max_after, const char *kept);

/* The path of the program name in /usr/bin, /bin, /usr/sbin or /sbin;
 * skips the test, naming the package to install, if it is not there.
 * Static ring of 4 buffers. */
const char *ht_program(const char *name, const char *package);

/* ht_program() of a util-linux tool ("prlimit", "setpriv"). */
const char *ht_util(const char *name);

/* up-run's arguments that run examples/python/up_wsgi.py (serving
 * examples/python/app.py) as handoff workers: "--exec", ..., NULL (static).
 * *ret_env gets "PYTHONPATH=..." for their environment. Skips the test
 * where python3 is not installed. */
const char *const *ht_python_handoff(const char **ret_env);

/* ---- the master under test ---- */

struct ma {
    pid_t pid;          /* up-run, or -1; set it to -1 after reaping it yourself */
    int port;           /* what requests go to; set it when -l replaces -p */
    char log[PATH_MAX]; /* its stdout and stderr: DIR/master.log */
    char ctl[PATH_MAX]; /* its control socket: DIR/ctl.sock */
    /* Set before ma_spawn() (ht_fini() clears them), NULL-terminated:
     * environment to add ("NAME=value", overriding the harness's own), a
     * command that runs up-run for it, like prlimit(1) or setpriv(1) ("--"
     * last), and one for the up-run of ma_run() and ma_cmd(). */
    const char *env[8];
    const char *wrap[12];
    const char *cmd_wrap[12];
    /* Set before ma_spawn(): leave out the default -n 2 -t 1s, so that
     * up-run's own defaults (or the extra arguments) hold. */
    bool no_defaults;
    /* Set before ma_spawn(): no --control, so that up-run's default path
     * holds; ma.ctl is then empty, and what asks the control socket
     * (ma_status(), ma_run()) cannot be used. */
    bool default_control;
    /* Set before ma_spawn(): up-run's stdout and stderr go to a FIFO
     * (DIR/master.log) that nobody reads, as when a log shipper stopped,
     * until ma_log_read() reads it; ma.log then names DIR/master.read, the
     * copy of what was read. ht_fini() stops the master before it closes
     * the FIFO. */
    bool log_stuck;
    /* Set before ma_spawn(): listen on ma.port again (a restart), not on
     * a new free port. */
    bool same_port;
    /* Set before ma_spawn(): run up-run (and so its workers) from
     * up_test_public_bin()'s copies, for a wrap that changes the user. */
    bool public_bins;
};

extern struct ma ma;

/* Spawn `[wrap...] up-run -p PORT --allow-root -n 2 -t 1s --control
 * DIR/ctl.sock EXTRA... APP` on a free port with UP_BACKEND=backend, UP_ENV= (production
 * defaults), TMPDIR=DIR and XDG_RUNTIME_DIR= (its snapshots go in the temp
 * dir, removed even after a SIGKILL) and ma.env. extra (NULL-terminated,
 * may be NULL) comes after the defaults, so it may override them; app NULL
 * leaves it out (--exec -- CMD in extra). Asserts the spawn; does not
 * wait. */
void ma_spawn(const char *backend, const char *app, const char *const *extra);

/* Wait until a request for HT_PROBE gets a 200: up-run routes only once a
 * worker is ready, and holds the connections that come before. A request
 * unanswered after 1 s is given up for a new one. Asserts that up-run
 * stays alive and serves within timeout_ms. */
void ma_wait_serving(int timeout_ms);

/* ma_spawn(), then ma_wait_serving(HT_READY_MS). */
void ma_start(const char *backend, const char *app, const char *const *extra);

/* The last 6 KiB of the master's log, for failure messages. */
const char *ma_log_text(void);

/* With ma.log_stuck: read what waits in the FIFO into the copy (ma.log)
 * until the copy holds needle. Returns 0, or -ETIMEDOUT after timeout_ms. */
int ma_log_read(const char *needle, int timeout_ms);

/* Wait up to timeout_ms for needle in the master's log, asserting it. */
void ma_wait_log(const char *needle, int timeout_ms);

/* Wait up to timeout_ms for key in the master's log (asserted), and return
 * the number right after its first occurrence: "block: pid=" gives the pid
 * the app named. */
long ma_log_number(const char *key, int timeout_ms);

/* kill(ma.pid, sig), asserting it was sent. */
void ma_signal(int sig);

/* Send SIGUSR2 every period_ms for total_ms, calling between(i) (may be
 * NULL) before the i-th signal, and asserting that the master is alive
 * before each. *ret_last_boot_ms (may be NULL) gets proc_boottime_ms() just
 * before the last one. Returns how many were sent. */
int ma_reload_storm(int period_ms, int total_ms, void (*between)(int i),
                    long long *ret_last_boot_ms);

/* GET target on a new connection (Connection: close). Returns 0 with the
 * answer in r, or -errno (see up_test_request()); does not assert. */
int ma_fresh(const char *target, struct up_test_resp *r);

/* n requests of raw (a whole request, Connection: close), each on a new
 * connection, each asserted to get a 200 within UP_TEST_TIMEOUT_MS.
 * Returns the slowest, in ms. */
long long ma_requests(int n, const char *raw);

/* GET / on a new connection, asserting that an answer (any status) came. */
void ma_get(struct up_test_resp *r);

/* ma_get() to an app that names itself (echo.so), asserting a 200 with
 * X-Up-Pid; returns that pid, and *ret_gen (may be NULL) gets its
 * X-Up-Generation (asserted present then). */
pid_t ma_get_pid(unsigned *ret_gen);

/* GET / on new connections until one is answered by generation gen
 * (X-Up-Generation), asserting that every answer before it is a 200 (from
 * the old code, which may not send the header), within timeout_ms. */
void ma_wait_generation(unsigned gen, int timeout_ms);

/* HT_PROBE on new connections until one is answered by a pid outside
 * old[0..n) (the app must send X-Up-Pid): the new generation took over.
 * Asserts every answer is a 200, and a switch within timeout_ms. Returns
 * the new pid. */
pid_t ma_wait_switch(const pid_t *old, int n, int timeout_ms);

/* Wait until the master has exactly n children (zombies counted), up to
 * HT_READY_MS; the first cap of them go into pids. Returns n. */
int ma_wait_children(int n, pid_t *pids, int cap);

/* After a run: the master alive and answering HT_PROBE with a 200 (both
 * asserted), then up to timeout_ms for its children (zombies counted) to be
 * `workers` again, then up to 10 s for its fd count to be fds_before and
 * stable (proc_fds_settled()). What it came to is returned, not asserted. */
struct ma_settled {
    int kids;
    int fds;
    char desc[1024]; /* the children, proc_desc() */
};
void ma_settle(int workers, int fds_before, int timeout_ms, struct ma_settled *ret);

/* ma_settle(), asserting `workers` children and fds_before fds. */
void ma_assert_settled(int workers, int fds_before, int timeout_ms);

/* A thread that watches the master every period_ms, keeping the most
 * children it had (zombies counted: an unreaped worker still counts
 * against the cap) and its highest VmRSS. It never asserts: read the
 * figures after ma_sampler_stop(), which joins it (ht_fini() stops it
 * too). */
struct ma_sampler {
    long samples;
    int max_kids;
    long long max_kids_at; /* ms after the start */
    char max_kids_desc[512];
    long max_rss_kib;
};
void ma_sampler_start(int period_ms);
const struct ma_sampler *ma_sampler_stop(void);

/* ---- up-run's commands ---- */

/* Run `[cmd_wrap...] up-run ARGS...` (args NULL-terminated) with env
 * (NULL-terminated "NAME=value", may be NULL) to its end, its stdout and
 * stderr into out (cap bytes, NUL-terminated; the last 6 KiB). Asserts that
 * it ends within timeout_ms (killed otherwise). Returns its exit status. */
int ma_run(const char *const *args, const char *const *env, int timeout_ms, char *out, size_t cap);

/* `up-run CMD --control CTL` through ma_run() within 5 s. Returns its exit
 * status; *ret_took (may be NULL) gets how long it ran, in ms. */
int ma_cmd(const char *cmd, const char *ctl, char *out, size_t cap, long long *ret_took);

/* `up-run status`, parsed. A counter the status does not show is -1. */
struct ma_worker {
    unsigned gen;
    pid_t pid;
    char state[16]; /* "ready", "draining", ... */
    long conns;
};
struct ma_gen {
    unsigned id;
    char state[16]; /* "active", "starting", "draining", ... */
};
struct ma_status {
    int code;       /* the command's exit status */
    long long took; /* how long the command ran, in ms */
    char text[8192];
    char health[128]; /* "ok", or "degraded: why" */
    long pending;     /* connections the master holds */
    struct ma_gen gens[16];
    int ngens;
    unsigned active;  /* the active generation, 0 if none */
    unsigned max_gen; /* the highest generation listed, 0 if none */
    struct ma_worker workers[64];
    int nworkers;
    long conns; /* the workers' conns= added up */
    long accepted, handed, rerouted, handed_back, answered, reloads, reload_failures, respawns,
        queue_timeouts, shed, lost;
    long dropped; /* "log: N lines dropped", 0 without that line */
};

/* `up-run status` on ma.ctl, asserting that it exits 0, parsed into s. Every
 * worker pid it lists is remembered for ht_fini(). */
void ma_status(struct ma_status *s);

/* The state of generation id, "" if it is not listed. */
const char *ma_gen_state(const struct ma_status *s, unsigned id);

/* The pids of generation id's workers in state (NULL: any), the first cap
 * of them into pids. Returns how many went there. */
int ma_gen_pids(const struct ma_status *s, unsigned id, const char *state, pid_t *pids, int cap);

/* Wait until generation id is active with exactly n workers, all ready,
 * none of them in not_pids[0..nnot) (workers that are to be replaced);
 * asserts it within HT_READY_MS, and leaves that status in s. */
void ma_wait_workers_not(unsigned id, int n, const pid_t *not_pids, int nnot, struct ma_status *s);

/* The same with no pid excluded. */
void ma_wait_workers(unsigned id, int n, struct ma_status *s);

/* `up-run status` every 50 ms until it lists one generation alone (none
 * starting, none draining: a reload's old ones have left), for up to
 * timeout_ms; *s gets the last status. Returns how long it waited, in ms.
 * Does not assert: the caller says what it waited for. */
long long ma_wait_alone(int timeout_ms, struct ma_status *s);

/* After a stop: connect to ma.port every 20 ms until a connect is refused
 * (one that the closing listener resets in its handshake is tried again),
 * for up to timeout_ms. Returns -ECONNREFUSED, 0 when connects were still
 * accepted at the end, or another -errno; *ret_ms: how long it took.
 * Does not assert: the caller says what it waited for. */
int ma_wait_refused(int timeout_ms, long long *ret_ms);

/* ---- a lone up-worker ---- */

struct wk {
    pid_t pid; /* up-worker, or -1; set it to -1 after reaping it yourself */
    int port;
    char log[PATH_MAX]; /* its stdout and stderr: DIR/worker.log */
};

extern struct wk wk;

/* Spawn `up-worker --listen 127.0.0.1:PORT app` on a free port with
 * UP_BACKEND=backend and env (NULL-terminated "NAME=value", may be NULL).
 * Asserts the spawn; does not wait. A worker started before is replaced in
 * wk (stop or reap it first). */
void wk_spawn(const char *backend, const char *app, const char *const *env);

/* wk_spawn(), then wait until its port accepts connections (asserted,
 * HT_READY_MS). example is relative to the build dir ("examples/hello.so")
 * or an absolute path. */
void wk_start(const char *backend, const char *example, const char *const *env);

/* The last 6 KiB of the lone worker's log, for failure messages. */
const char *wk_log_text(void);

/* ---- up-load ---- */

/* Runs of up-load a test may have going at once. */
#define LD_MAX 2

/* up-load's summary line, parsed. */
struct ld_result {
    long requests, ok, connect_errors, resets, lost, bad, timeouts, idle_closes, pids;
    int status;      /* its exit status */
    char line[512];  /* the summary line */
    char text[8192]; /* the end of its output */
};

/* Spawn up-load number i (0 .. LD_MAX - 1) with `--port PORT ARGS...` on
 * the master's port; its output goes to DIR/up-load-I.out. Does not wait. */
void ld_start(int i, const char *const *args);

/* Wait up to timeout_ms for up-load number i to end (asserted), and parse
 * its summary `requests= ok= connect_errors= resets= lost= bad= timeouts=
 * idle_closes= pids=` into res (asserted present). */
void ld_finish(int i, int timeout_ms, struct ld_result *res);

/* Print "[tag] what: <summary>" on stderr, and expect no failed request
 * (no connect error, reset, lost, bad or timed-out request, ok equal to
 * requests) and exit status 0. cr_expect: a failed run still goes on to the
 * test's checks on the master, so that one run shows all that went wrong. */
void ld_report(const char *tag, const char *what, const struct ld_result *res);

/* The body echo.so answers up-load's keep-alive GET of target: the same
 * request bytes up-load sends, sent once here on the master's port, so
 * that up-load can check every answer byte for byte (--expect-body).
 * malloc'd; the caller frees it. */
char *ld_echo_body(const char *target);

/* ---- clients ---- */

/* Connect to 127.0.0.1:port (up_test_connect()), asserting it. The caller
 * owns the fd. */
int ht_connect(int port);

/* A listening socket of the test's own on a (TCP with SO_REUSEADDR, or
 * unix), with this backlog, asserting it: what another server, or a
 * killed one's ring, holds. The caller owns the fd. */
int ht_listener(const struct sockaddr *a, socklen_t len, int backlog);

/* ht_connect(), and the fd is also kept for ht_fini() to close (64 at most):
 * close it with ht_client_close(), never close(). */
int ht_client(int port);
void ht_client_close(int fd);

/* Send all of buf (or the C string s), asserting it went. */
void ht_send(int fd, const void *buf, size_t len);
void ht_send_str(int fd, const char *s);

/* up_test_request() (a new connection to port, raw sent, one response
 * read, closed), asserting that a whole response (any status) came. */
void ht_request(int port, const char *raw, struct up_test_resp *r);

/* ht_request() of GET target (Connection: close): a master's /metrics,
 * /healthz on its metrics port. */
void ht_fetch(int port, const char *target, struct up_test_resp *r);

/* A free port for --metrics: "127.0.0.1:PORT" into addr (cap bytes).
 * Returns the port. */
int ht_metrics_addr(char *addr, size_t cap);

/* The value of the sample name (no labels) on port's /metrics, asserted
 * present. */
long ht_metric(int port, const char *name);

/* Read one response on fd within UP_TEST_TIMEOUT_MS, asserting it came
 * whole (any status); what names it in the message. */
void ht_read(int fd, struct up_test_resp *r, const char *what);

/* Read one response on fd as ht_read() does, asserting a 200; drop it. */
void ht_read_200(int fd, const char *what);

/* Send GET / (keep-alive) on fd and read the answer, asserting a 200. */
void ht_get(int fd, struct up_test_resp *r, const char *what);

/* ht_get() to an app that names itself (echo.so): returns its X-Up-Pid. */
pid_t ht_get_pid(int fd, const char *what);

#endif
