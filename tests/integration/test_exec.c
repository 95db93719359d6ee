/*
 * exec: up-run --exec, any HTTP server as the workers, with
 * tests/tools/exec-server standing in for one: socket activation (the
 * listener, LISTEN_PID naming the worker, the environment), readiness on
 * the master's notify socket and who may speak there, reloads that never
 * close the listener, and every way a command can fail to start or stop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/harness.h"

/* Start up-run OPTS... --exec -- exec-server, the mode in a file the test
 * may rewrite (EXEC_MODE_FILE) before a reload. Does not wait. */
static void ex_spawn(const char *mode, const char *const *opts)
{
    static char env[PATH_MAX];
    const char *extra[32];
    int n = 0;
    FILE *f = fopen(ht_path("mode"), "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", mode);
    fclose(f);
    snprintf(env, sizeof(env), "EXEC_MODE_FILE=%s", ht_path("mode"));
    ma.env[0] = env;
    for (int i = 0; opts != NULL && opts[i] != NULL; i++) {
        extra[n++] = opts[i];
    }
    extra[n++] = "--exec";
    extra[n++] = "--";
    extra[n++] = up_test_bin("tools/exec-server");
    extra[n] = NULL;
    ma_spawn("auto", NULL, extra);
}

static void ex_mode(const char *mode)
{
    FILE *f = fopen(ht_path("mode"), "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", mode);
    fclose(f);
}

/* The master's exit status, within 10 s (asserted). */
static int ex_exit_code(void)
{
    int code = up_test_wait_exit(ma.pid, 10000);
    cr_assert_geq(code, 0, "up-run did not exit:\n%s", ma_log_text());
    ma.pid = -1;
    return code;
}

Test(exec, serves_with_socket_activation, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    struct up_test_resp r = {0};
    char want[64];

    ex_spawn("notify", NULL);
    ma_wait_serving(HT_READY_MS);
    ma_wait_workers(1, 2, &s);
    cr_assert_not_null(strstr(s.text, "status=\"serving\""), "STATUS= not shown:\n%s", s.text);
    cr_assert_eq(ma_fresh("/env", &r), 0);
    cr_assert_eq(r.status, 200, "%s", ma_log_text());
    snprintf(want, sizeof(want), "PORT=%d\n", ma.port);
    static const char *const has[] = {"LISTEN_FDS=1\n", "LISTEN_PID_OK=1\n",
                                      "LISTEN_FDNAMES=http\n", "UP_GENERATION=1\n"};
    for (size_t i = 0; i < sizeof(has) / sizeof(has[0]); i++) {
        cr_assert_not_null(strstr(r.body, has[i]), "no %s in:\n%s", has[i], r.body);
    }
    cr_assert_not_null(strstr(r.body, want), "no %s in:\n%s", want, r.body);
    up_test_resp_free(&r);
    cr_assert_eq(s.accepted, 0, "the master accepted what the workers should:\n%s", s.text);
}

Test(exec, reloads_never_close_the_listener, .timeout = 60, .fini = ht_fini)
{
    static const char *const load[] = {"--keepalive", "0", "--fresh", "8", "--seconds", "6", NULL};
    struct ma_status s;
    struct ld_result res;
    pid_t old[2];
    char out[4096];

    ex_spawn("notify", NULL);
    ma_wait_serving(HT_READY_MS);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);
    ld_start(0, load);
    for (int i = 0; i < 5; i++) {
        usleep(600 * 1000);
        cr_assert_eq(ma_cmd("reload", ma.ctl, out, sizeof(out), NULL), 0, "%s", out);
        ma_status(&s);
    }
    ld_finish(0, 20000, &res);
    ld_report("exec", "fresh connections across 5 reloads", &res);
    cr_assert_gt(res.pids, 2, "the new workers should have answered too: %s", res.line);
    ma_wait_workers(6, 2, &s);
    cr_assert_geq(proc_wait_gone(old, 2, 5000), 0, "generation 1 still runs:\n%s", s.text);
}

Test(exec, a_command_that_cannot_run, .timeout = 60, .fini = ht_fini)
{
    char cmd[PATH_MAX], missing[PATH_MAX];
    char out[4096];
    /* Copies: ht_path()'s buffers are reused. */
    snprintf(cmd, sizeof(cmd), "%s", ht_path("server"));
    snprintf(missing, sizeof(missing), "%s", ht_path("nothing-here"));
    const char *const bad[] = {"--exec", "--", missing, NULL};

    ma_spawn("auto", NULL, bad);
    cr_assert_eq(ex_exit_code(), 3, "%s", ma_log_text());
    cr_assert_eq(ht_file_lines(ma.log, "cannot run", "nothing-here", NULL), 1, "%s", ma_log_text());
    /* Started fine, then not executable any more: a failed reload, with
     * the reason, and the running generation keeps serving. */
    ht_install(up_test_bin("tools/exec-server"), cmd);
    const char *const good[] = {"--exec", "--", cmd, NULL};
    ma_spawn("auto", NULL, good);
    ma_wait_serving(HT_READY_MS);
    cr_assert_eq(chmod(cmd, 0644), 0);
    cr_assert_eq(ma_cmd("reload", ma.ctl, out, sizeof(out), NULL), 1, "%s", out);
    cr_assert_not_null(strstr(out, "Permission denied"), "%s", out);
    cr_assert_not_null(strstr(out, "generation 1 keeps serving"), "%s", out);
    ma_wait_serving(2000);
}

Test(exec, never_ready_is_a_failed_reload, .timeout = 60, .fini = ht_fini)
{
    static const char *const opts[] = {"--ready-timeout", "1s", NULL};
    struct ma_status s;
    char out[4096];

    ex_spawn("notify", opts);
    /* Both ready before the mode changes: a worker still starting then
     * (slow under the sanitizers) would read it and stay silent too. */
    ma_wait_workers(1, 2, &s);
    ex_mode("silent");
    cr_assert_eq(ma_cmd("reload", ma.ctl, out, sizeof(out), NULL), 1, "%s", out);
    cr_assert_not_null(strstr(out, "no worker was ready within"), "%s", out);
    ma_wait_workers(1, 2, &s);
    ma_wait_serving(2000);
    /* Exits at once: a failed start, the reason in the log. */
    ex_mode("exit0");
    cr_assert_eq(ma_cmd("reload", ma.ctl, out, sizeof(out), NULL), 1, "%s", out);
    cr_assert_not_null(strstr(out, "exited with status 0 before it was ready"), "%s", out);
    ma_wait_workers(1, 2, &s);
}

Test(exec, exits_at_once_is_a_failed_start, .timeout = 30, .fini = ht_fini)
{
    ex_spawn("exit0", NULL);
    cr_assert_eq(ex_exit_code(), 3, "%s", ma_log_text());
    cr_assert_geq(ht_file_lines(ma.log, "exited with status 0 before it was ready", NULL), 1, "%s",
                  ma_log_text());
}

Test(exec, handoff_worker_that_closes_its_channel, .timeout = 30, .fini = ht_fini)
{
    const char *const opts[] = {"--exec", "--protocol=handoff",       "--", "/bin/sh",
                                "-c",     "exec 3>&-; exec sleep 30", NULL};
    ma_spawn("auto", NULL, opts);
    cr_assert_eq(ex_exit_code(), 3, "%s", ma_log_text());
    cr_assert_geq(ht_file_lines(ma.log, "closed its channel (fd 3) before it was ready", NULL), 1,
                  "%s", ma_log_text());
}

Test(exec, ready_from_a_grandchild_counts_only_with_access_all, .timeout = 40, .fini = ht_fini)
{
    static const char *const main_only[] = {"--ready-timeout", "2s", NULL};
    static const char *const all[] = {"--notify-access=all", NULL};

    ex_spawn("grandchild", main_only);
    cr_assert_eq(ex_exit_code(), 3, "%s", ma_log_text());
    cr_assert_geq(ht_file_lines(ma.log, "ignored: it is no worker's main process", NULL), 1, "%s",
                  ma_log_text());
    ht_fini();
    ex_spawn("grandchild", all);
    ma_wait_serving(HT_READY_MS);
}

Test(exec, another_user_cannot_say_ready, .timeout = 30, .fini = ht_fini)
{
    static const char *const opts[] = {"--ready-timeout", "2s", "--notify-access=all", NULL};
    if (geteuid() != 0) {
        cr_skip_test("needs root, to run a process as another user");
    }
    ex_spawn("otheruser", opts);
    cr_assert_eq(ex_exit_code(), 3, "%s", ma_log_text());
    cr_assert_geq(ht_file_lines(ma.log, "as uid 65534: Permission denied", NULL), 1, "%s",
                  ma_log_text());
}

Test(exec, a_worker_that_ignores_its_stop_signal_is_killed_whole, .timeout = 40, .fini = ht_fini)
{
    struct ma_status s;
    pid_t old[2], group[8];
    char out[4096];

    ex_spawn("stubborn", NULL);
    ma_wait_serving(HT_READY_MS);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);
    cr_assert_eq(proc_group(old[0], group, 8), 2, "worker and its helper:\n%s", s.text);
    ex_mode("notify");
    cr_assert_eq(ma_cmd("reload", ma.ctl, out, sizeof(out), NULL), 0, "%s", out);
    /* -t 1s: killed at the drain deadline, helpers and all. */
    cr_assert_geq(proc_wait_gone(old, 2, 5000), 0, "%s", ma_log_text());
    for (int i = 0; i < 2; i++) {
        long long until = up_test_now_ms() + 3000;
        while (proc_group(old[i], group, 8) > 0 && up_test_now_ms() < until) {
            usleep(20 * 1000);
        }
        cr_assert_eq(proc_group(old[i], group, 8), 0, "worker %d left its group behind",
                     (int)old[i]);
    }
}

Test(exec, a_worker_stopped_by_someone_else_is_replaced, .timeout = 40, .fini = ht_fini)
{
    struct ma_status s;
    pid_t old[2];

    ex_spawn("notify", NULL);
    ma_wait_serving(HT_READY_MS);
    ma_wait_workers(1, 2, &s);
    ma_gen_pids(&s, 1, "ready", old, 2);
    cr_assert_eq(kill(old[0], SIGTERM), 0);
    ma_wait_log("STOPPING=1 on its own", 5000);
    ma_wait_workers_not(1, 2, old, 1, &s);
    ma_wait_serving(2000);
}

Test(exec, a_worker_gets_the_fd_limit_up_run_was_given, .timeout = 30, .fini = ht_fini)
{
    struct ma_status s;
    struct rlimit rl;
    char limits[4096], nofile[64], raised[64];
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max <= 1024) {
        cr_skip_test("the hard fd limit is %llu: nothing to raise",
                     (unsigned long long)rl.rlim_max);
    }
    snprintf(nofile, sizeof(nofile), "--nofile=1024:%llu", (unsigned long long)rl.rlim_max);
    snprintf(raised, sizeof(raised), "(raised from 1024)");
    ma.wrap[0] = ht_util("prlimit");
    ma.wrap[1] = nofile;
    ma.wrap[2] = "--";
    ex_spawn("notify", NULL);
    ma_wait_serving(HT_READY_MS);
    ma_wait_workers(1, 2, &s);
    ma_wait_log(raised, 2000);
    cr_assert_gt(proc_read(s.workers[0].pid, "limits", limits, sizeof(limits)), 0);
    const char *line = strstr(limits, "Max open files");
    cr_assert_not_null(line, "%s", limits);
    long soft = strtol(line + strlen("Max open files"), NULL, 10);
    cr_assert_eq(soft, 1024, "the worker's soft limit:\n%s", limits);
}
