/*
 * control: `up-run reload` waits for the outcome and says it (serving, or
 * failed with the reason and the workers' last output, exit 1), within
 * its -t; --no-wait only starts it; a stop answers whoever still waits;
 * `up-run status --json` is one JSON object a real parser reads.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/harness.h"
#include "../lib/proc.h"
#include "../lib/testlib.h"

/* `up-run reload [more...] --control CTL`: its exit status, output in out. */
static int ct_reload(const char *more, const char *timeout, char *out, size_t cap)
{
    const char *args[8] = {"reload", "--control", ma.ctl};
    int n = 3;
    if (more != NULL) {
        args[n++] = more;
    }
    if (timeout != NULL) {
        args[n++] = "-t";
        args[n++] = timeout;
    }
    args[n] = NULL;
    return ma_run(args, NULL, 20000, out, cap);
}

static void ct_assert_match(const char *text, const char *pattern)
{
    regex_t re;
    cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0, "bad pattern %s", pattern);
    int r = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    cr_assert_eq(r, 0, "'%s' does not match:\n%s", pattern, text);
}

BACKEND_TEST(control, reload_waits_for_the_outcome_and_says_it, .timeout = 60, .fini = ht_fini)
{
    char out[8192];
    const char *app = ht_app("examples/echo.so");
    ma_start(backend, app, NULL);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);

    int code = ct_reload(NULL, NULL, out, sizeof(out));
    cr_assert_eq(code, 0, "exit %d:\n%s", code, out);
    ct_assert_match(out, "^generation 2 serving \\(ready in [0-9]+ ms; 2 workers draining\\)\n$");
    /* It answered once generation 2 took over: every new request is its. */
    unsigned gen = 0;
    ma_get_pid(&gen);
    cr_assert_eq(gen, 2);

    ht_install(up_test_bin("examples/fail_init.so"), app);
    code = ct_reload(NULL, NULL, out, sizeof(out));
    cr_assert_eq(code, 1, "a failed reload exited %d:\n%s", code, out);
    ct_assert_match(out, "^error: reload failed: generation 3: .*init failed");
    cr_assert_not_null(strstr(out, "its last output:\nworker g3#"), "no worker output:\n%s", out);
    cr_assert_not_null(strstr(out, "generation 2 keeps serving\n"), "%s", out);
    ma_get_pid(&gen);
    cr_assert_eq(gen, 2);

    /* --no-wait: only started; the outcome is the log's. */
    code = ct_reload("--no-wait", NULL, out, sizeof(out));
    cr_assert_eq(code, 0, "exit %d:\n%s", code, out);
    cr_assert_str_eq(out, "reloading: generation 4 starting\n");
    ma_wait_log("generation 4 failed to start", 10000);
}

/* A reload whose outcome takes longer than -t: the client says so and
 * exits 1; the master is not held up by the client that left, and the
 * reload goes on to its own end. */
Test(control, reload_wait_is_bounded_and_a_leaver_costs_nothing, .timeout = 60, .fini = ht_fini)
{
    char out[8192];
    static const char *const extra[] = {"--ready=manual", "--ready-timeout", "4s", NULL};
    const char *app = ht_app("examples/manual_ready.so");
    ma_start("auto", app, extra);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);
    int fds = proc_fds(ma.pid);

    ht_install(up_test_bin("examples/never_ready.so"), app);
    long long t0 = up_test_now_ms();
    int code = ct_reload(NULL, "1s", out, sizeof(out));
    long long took = up_test_now_ms() - t0;
    cr_assert_eq(code, 1, "exit %d:\n%s", code, out);
    cr_assert_not_null(strstr(out, "no answer from"), "%s", out);
    cr_assert_not_null(strstr(out, "within 1000 ms"), "%s", out);
    cr_assert(took >= 900 && took < 5000, "it took %lld ms", took);
    /* The reload fails at the ready timeout; generation 1 serves on. */
    ma_wait_log("generation 2 failed to start", 10000);
    ma_status(&s);
    cr_assert_str_eq(ma_gen_state(&s, 1), "active", "%s", s.text);
    cr_assert_eq(proc_fds_settled(ma.pid, fds, 3000), fds, "the master kept fds of the leaver");
}

/* A stop while a reload waits: the client hears it, it is not left to its
 * own deadline. */
Test(control, a_stop_answers_a_waiting_reload, .timeout = 60, .fini = ht_fini)
{
    static const char *const extra[] = {"--ready=manual", "--ready-timeout", "30s", NULL};
    const char *app = ht_app("examples/manual_ready.so");
    ma_start("auto", app, extra);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);
    ht_install(up_test_bin("examples/never_ready.so"), app);

    char *argv[] = {(char *)up_test_bin("up-run"), "reload", "--control", ma.ctl, NULL};
    const char *path = ht_path("reload.out");
    pid_t pid = up_test_spawn(argv, NULL, path);
    cr_assert_gt(pid, 0);
    ht_stop_at_fini(pid);
    ma_wait_log("control socket: reloading", 5000);
    cr_assert(up_test_alive(pid), "reload did not wait:\n%s", up_test_file_tail(path));
    ma_signal(SIGTERM);
    cr_assert_eq(up_test_wait_exit(pid, 5000), 1, "%s", up_test_file_tail(path));
    cr_assert_not_null(strstr(up_test_file_tail(path), "error: stopping before the reload ended"),
                       "%s", up_test_file_tail(path));
}

/* status --json, read by Python's json module: the fields a machine needs. */
Test(control, status_json_is_one_object, .timeout = 60, .fini = ht_fini)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        cr_skip_test("python3 is not installed (make deps installs it)");
    }
    char out[16384];
    ma_start("auto", up_test_bin("examples/echo.so"), NULL);
    struct ma_status s;
    ma_wait_workers(1, 2, &s);
    const char *args[] = {"status", "--json", "--control", ma.ctl, NULL};
    cr_assert_eq(ma_run(args, NULL, 10000, out, sizeof(out)), 0, "%s", out);
    const char *file = ht_path("status.json");
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fputs(out, f);
    fclose(f);
    char check[1024];
    snprintf(
        check, sizeof(check),
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1]));"
        " assert d[\"pid\"]==%d and d[\"state\"]==\"running\" and d[\"healthy\"] is True;"
        " assert d[\"active_generation\"]==1;"
        " g=d[\"generations\"]; assert len(g)==1 and g[0][\"state\"]==\"active\";"
        " w=g[0][\"worker_list\"]; assert len(w)==2 and all(x[\"state\"]==\"ready\" for x in w);"
        " assert d[\"counters\"][\"reloads\"]==1 and d[\"last_error\"]==\"\"' %s",
        (int)ma.pid, file);
    cr_assert_eq(system(check), 0, "the JSON does not say what it should:\n%s", out);
}
