/*
 * ma: the helpers of tests/integration/test_master.c (start up-run in a
 * temp dir, parse `up-run status`, wait for workers, tear down), shared by
 * the other integration suites that drive the master.
 */
#ifndef UP_TEST_MA_H
#define UP_TEST_MA_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct ma {
    pid_t pid;
    int port;
    char dir[64];
    char log[PATH_MAX];
    char ctl[PATH_MAX];
    pid_t seen[64];
    int nseen;
    /* Set before ma_spawn() (ma_fini() clears them): environment to add
     * ("NAME=value"), a command that runs up-run for it, like prlimit(1)
     * or setpriv(1) ("--" last), and one for ma_cmd()'s up-run.
     * NULL-terminated. */
    const char *env[8];
    const char *wrap[12];
    const char *cmd_wrap[8];
};

struct ma_worker {
    unsigned gen;
    pid_t pid;
    char state[16];
};

struct ma_gen {
    unsigned id;
    char state[16];
};

struct ma_status {
    int code;
    char text[8192];
    struct ma_gen gens[16];
    int ngens;
    struct ma_worker workers[64];
    int nworkers;
    long handed, answered, reloads, reload_failures, respawns;
};

extern struct ma ma;
long long ma_now_ms(void);
void ma_nap(int ms);
bool ma_pid_gone(pid_t pid);
void ma_fini(void);
const char *ma_path(const char *name);
const char *ma_log_text(void);
void ma_spawn(const char *backend, const char *app, const char *const *extra);
void ma_wait_serving(int timeout_ms);
void ma_start(const char *backend, const char *app, const char *const *extra);
void ma_get(struct up_test_resp *r);
pid_t ma_get_pid(unsigned *ret_gen);
int ma_cmd(const char *cmd, const char *ctl, char *out, size_t cap);
void ma_status(struct ma_status *s);
const char *ma_gen_state(const struct ma_status *s, unsigned id);
int ma_gen_pids(const struct ma_status *s, unsigned id, const char *state, pid_t *pids, int cap);
void ma_wait_workers(unsigned id, int n, struct ma_status *s);
bool ma_pid_in(pid_t pid, const pid_t *set, int n);
long long ma_wait_gone(const pid_t *pids, int n, int timeout_ms);

#endif
