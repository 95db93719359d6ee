#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/fdcount.h"
#include "cli.h"
#include "cpus.h"

/* Every test gets an app file that exists (the parser checks it) in a
 * directory of its own, and an environment without the variables the
 * parser reads. Criterion runs each test in its own process. */
static char cli_dir[64];
static char cli_app[128];

static void cli_setup(void)
{
    unsetenv("PORT");
    unsetenv("UP_ENV");
    unsetenv("UP_BACKEND");
    unsetenv("XDG_RUNTIME_DIR");
    snprintf(cli_dir, sizeof(cli_dir), "/tmp/up-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(cli_dir));
    snprintf(cli_app, sizeof(cli_app), "%s/app-XXXXXX.so", cli_dir);
    int fd = mkstemps(cli_app, 3);
    cr_assert_geq(fd, 0);
    close(fd);
}

static void cli_teardown(void)
{
    unlink(cli_app);
    rmdir(cli_dir);
}

TestSuite(cli, .init = cli_setup, .fini = cli_teardown, .timeout = 10);

/* Parse "up-run" followed by the NULL-terminated arguments. */
static int parse(struct up_cli *c, char *err, size_t cap, ...)
{
    char *argv[64] = {"up-run"};
    int argc = 1;
    va_list ap;
    va_start(ap, cap);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        argv[argc++] = a;
    }
    va_end(ap);
    err[0] = '\0';
    return up_cli_parse(argc, argv, c, err, cap);
}

#define PARSE_OK(c, ...)                                                                           \
    do {                                                                                           \
        char err_[256];                                                                            \
        int r_ = parse((c), err_, sizeof(err_), __VA_ARGS__, NULL);                                \
        cr_assert_eq(r_, 0, "parse: %d: %s", r_, err_);                                            \
    } while (0)

/* The parse must fail with -EINVAL, leave the struct untouched, and say
 * something containing want (the bad value, usually). */
#define PARSE_FAILS(want, ...)                                                                     \
    do {                                                                                           \
        char err_[512];                                                                            \
        struct up_cli c_, orig_;                                                                   \
        memset(&c_, 0xa5, sizeof(c_));                                                             \
        orig_ = c_;                                                                                \
        int r_ = parse(&c_, err_, sizeof(err_), __VA_ARGS__, NULL);                                \
        cr_assert_eq(r_, -EINVAL, "want -EINVAL, got %d (%s)", r_, err_);                          \
        cr_assert_not_null(strstr(err_, (want)), "'%s' does not mention '%s'", err_, (want));      \
        cr_assert_null(strchr(err_, '\n'), "'%s' is more than one line", err_);                    \
        cr_assert_eq(memcmp(&c_, &orig_, sizeof(c_)), 0, "struct written on failure");             \
    } while (0)

static long expected_auto(void)
{
    long n = up_cpus_usable();
    return n > 1024 ? 1024 : n;
}

Test(cli, defaults)
{
    struct up_cli c;
    int before = up_test_fd_count();
    PARSE_OK(&c, cli_app);
    cr_assert_eq(up_test_fd_count(), before);
    cr_assert_eq(c.cmd, UP_CLI_SERVE);
    cr_assert_str_eq(c.app, cli_app);
    cr_assert_eq(c.app_argc, 1);
    cr_assert_str_eq(c.app_argv[0], cli_app);
    cr_assert_null(c.app_argv[1]);
    cr_assert_eq(c.nlisten, 0);
    cr_assert(!c.reuseport, "a port is shared only when asked");
    cr_assert_eq(c.port, 3000);
    cr_assert_str_eq(c.workers_expr, "auto");
    cr_assert_eq(c.workers, expected_auto());
    cr_assert_eq(c.drain_timeout_ms, 600000);
    cr_assert(!c.watch);
    cr_assert_null(c.watch_dir);
    cr_assert_null(c.build_cmd);
    cr_assert(c.respawn);
    cr_assert_null(c.pidfile);
    cr_assert_str_eq(c.title, "up");
    cr_assert_eq(c.nrequire, 0);
    cr_assert(!c.ready_manual);
    cr_assert_eq(c.ready_timeout_ms, 30000);
    cr_assert(!c.migrate_at_deadline);
    cr_assert_eq(c.max_draining, 4);
    cr_assert_eq(c.ws_drain_grace_ms, 5000);
    cr_assert_eq(c.close_spread_ms, 5000);
    cr_assert_eq(c.backend, UP_BACKEND_AUTO);
    cr_assert_null(c.control);
    cr_assert_eq(c.header_timeout_ms, 10000);
    cr_assert_eq(c.queue_timeout_ms, 10000);
    cr_assert_eq(c.max_head, 16384);
    cr_assert_null(c.metrics);
    cr_assert_null(c.sticky);
    cr_assert(!c.development);
    cr_assert(!c.exec);
    cr_assert_eq(c.stop_signal, SIGTERM);
    cr_assert_eq(c.ready_after_ms, 0);
    cr_assert(!c.notify_access_all);
    up_cli_free(&c);
    up_cli_free(&c); /* harmless twice */
}

Test(cli, every_long_option_parsed)
{
    struct up_cli c;
    char watch[128];
    snprintf(watch, sizeof(watch), "--watch=%s", cli_dir);
    PARSE_OK(&c, "--listen", "127.0.0.1:8080", "--listen=unix:/tmp/x.sock", "--port=4000",
             "--workers=cpus+2", "--timeout", "1m30s", watch, "--build", "make app",
             "--no-keepalive", "--pidfile", "/tmp/up.pid", "--title=web", "--require", "libm.so.6",
             "--require", cli_app, "--ready=manual", "--ready-timeout=2s", "--migrate=deadline",
             "--max-draining=64", "--backend=epoll", "--control=/tmp/c.sock",
             "--header-timeout=1500ms", "--queue-timeout=3s", "--max-head=32k",
             "--metrics=127.0.0.1:9100", "--sticky=cookie:sid", "--reuseport", cli_app);
    cr_assert_eq(c.nlisten, 2);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:8080");
    cr_assert_str_eq(c.listen[1], "unix:/tmp/x.sock");
    cr_assert_eq(c.port, 4000);
    cr_assert_str_eq(c.workers_expr, "cpus+2");
    cr_assert_eq(c.workers, up_cpus_usable() + 2);
    cr_assert_eq(c.drain_timeout_ms, 90000);
    cr_assert(c.watch);
    cr_assert_str_eq(c.watch_dir, cli_dir);
    cr_assert_str_eq(c.build_cmd, "make app");
    cr_assert(!c.respawn);
    cr_assert_str_eq(c.pidfile, "/tmp/up.pid");
    cr_assert_str_eq(c.title, "web");
    cr_assert_eq(c.nrequire, 2);
    cr_assert_str_eq(c.require[0], "libm.so.6");
    cr_assert_str_eq(c.require[1], cli_app);
    cr_assert(c.ready_manual);
    cr_assert_eq(c.ready_timeout_ms, 2000);
    cr_assert(c.migrate_at_deadline);
    cr_assert_eq(c.max_draining, 64);
    cr_assert_eq(c.backend, UP_BACKEND_EPOLL);
    cr_assert_str_eq(c.control, "/tmp/c.sock");
    cr_assert_eq(c.header_timeout_ms, 1500);
    cr_assert_eq(c.queue_timeout_ms, 3000);
    cr_assert_eq(c.max_head, 32768);
    cr_assert_str_eq(c.metrics, "127.0.0.1:9100");
    cr_assert_str_eq(c.sticky, "cookie:sid");
    cr_assert(c.reuseport);
    up_cli_free(&c);
}

Test(cli, every_short_option_parsed)
{
    struct up_cli c;
    char watch[128];
    snprintf(watch, sizeof(watch), "-w%s", cli_dir);
    PARSE_OK(&c, "-l", "[::1]:81", "-p", "82", "-n", "3", "-t", "5s", watch, "-f", "p.pid", "-T",
             "x", "-r", "libz.so", "-k", cli_app);
    cr_assert_str_eq(c.listen[0], "[::1]:81");
    cr_assert_eq(c.port, 82);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.drain_timeout_ms, 5000);
    cr_assert(c.watch);
    cr_assert_str_eq(c.watch_dir, cli_dir);
    cr_assert_str_eq(c.pidfile, "p.pid");
    cr_assert_str_eq(c.title, "x");
    cr_assert_str_eq(c.require[0], "libz.so");
    cr_assert(c.respawn);
    up_cli_free(&c);

    /* Bundled flags and attached values. */
    PARSE_OK(&c, "--no-keepalive", "-kn2", "-p5000", cli_app);
    cr_assert(c.respawn);
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.port, 5000);
    up_cli_free(&c);
}

Test(cli, workers_auto_and_expressions)
{
    struct up_cli c;
    long cpus = up_cpus_usable();
    PARSE_OK(&c, "-n", "auto", cli_app);
    cr_assert_eq(c.workers, expected_auto());
    up_cli_free(&c);
    PARSE_OK(&c, "--workers", "max(2,cpus)", cli_app);
    cr_assert_eq(c.workers, cpus > 2 ? cpus : 2);
    up_cli_free(&c);
    PARSE_OK(&c, "--workers=1024", cli_app);
    cr_assert_eq(c.workers, 1024);
    up_cli_free(&c);
}

Test(cli, options_after_the_app)
{
    struct up_cli c;
    PARSE_OK(&c, cli_app, "-n", "2", "--port", "81");
    cr_assert_str_eq(c.app, cli_app);
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.port, 81);
    up_cli_free(&c);
}

Test(cli, relative_app_made_absolute)
{
    struct up_cli c;
    cr_assert_eq(chdir(cli_dir), 0);
    const char *base = strrchr(cli_app, '/') + 1;
    char dotted[128];
    snprintf(dotted, sizeof(dotted), "./%s", base);
    PARSE_OK(&c, base);
    cr_assert_str_eq(c.app, cli_app);
    up_cli_free(&c);
    PARSE_OK(&c, dotted, "--watch");
    cr_assert_str_eq(c.app, cli_app);
    cr_assert_str_eq(c.app_argv[0], cli_app);
    cr_assert_str_eq(c.watch_dir, cli_dir, "a bare --watch watches the app's directory");
    up_cli_free(&c);
}

Test(cli, app_args_after_dashdash)
{
    struct up_cli c;
    PARSE_OK(&c, "-n", "1", cli_app, "--", "--port", "9", "-x", "plain");
    cr_assert_eq(c.port, 3000, "options after -- belong to the app");
    cr_assert_eq(c.app_argc, 5);
    cr_assert_str_eq(c.app_argv[0], cli_app);
    cr_assert_str_eq(c.app_argv[1], "--port");
    cr_assert_str_eq(c.app_argv[2], "9");
    cr_assert_str_eq(c.app_argv[3], "-x");
    cr_assert_str_eq(c.app_argv[4], "plain");
    cr_assert_null(c.app_argv[5]);
    up_cli_free(&c);

    PARSE_OK(&c, cli_app, "--");
    cr_assert_eq(c.app_argc, 1);
    cr_assert_null(c.app_argv[1]);
    up_cli_free(&c);
}

Test(cli, strings_are_copied)
{
    char app[128], listen[] = "127.0.0.1:7000", dashdash[] = "--", arg[] = "hello";
    char prog[] = "up-run";
    snprintf(app, sizeof(app), "%s", cli_app);
    char *argv[] = {prog, "-l", listen, app, dashdash, arg, NULL};
    struct up_cli c;
    char err[256];
    cr_assert_eq(up_cli_parse(6, argv, &c, err, sizeof(err)), 0, "%s", err);
    /* What the process title does to the argv area. */
    memset(listen, 'x', sizeof(listen) - 1);
    memset(app, 'x', strlen(app));
    memset(arg, 'x', sizeof(arg) - 1);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:7000");
    cr_assert_str_eq(c.app, cli_app);
    cr_assert_str_eq(c.app_argv[1], "hello");
    cr_assert_str_eq(argv[4], "--", "argv is not modified");
    up_cli_free(&c);
}

Test(cli, development_defaults)
{
    struct up_cli c;
    setenv("UP_ENV", "development", 1);
    PARSE_OK(&c, cli_app);
    cr_assert(c.development);
    cr_assert_str_eq(c.workers_expr, "1");
    cr_assert_eq(c.workers, 1);
    cr_assert_eq(c.drain_timeout_ms, 500);
    up_cli_free(&c);

    PARSE_OK(&c, "-n", "3", "-t", "2s", cli_app);
    cr_assert(c.development);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.drain_timeout_ms, 2000);
    up_cli_free(&c);

    setenv("UP_ENV", "production", 1);
    PARSE_OK(&c, cli_app);
    cr_assert(!c.development);
    cr_assert_eq(c.drain_timeout_ms, 600000);
    up_cli_free(&c);
}

Test(cli, environment_defaults)
{
    struct up_cli c;
    setenv("PORT", "8123", 1);
    setenv("UP_BACKEND", "epoll", 1);
    PARSE_OK(&c, cli_app);
    cr_assert_eq(c.port, 8123);
    cr_assert_eq(c.backend, UP_BACKEND_EPOLL);
    up_cli_free(&c);

    PARSE_OK(&c, "-p", "81", "--backend", "io_uring", cli_app);
    cr_assert_eq(c.port, 81, "-p wins over $PORT");
    cr_assert_eq(c.backend, UP_BACKEND_URING, "--backend wins over $UP_BACKEND");
    up_cli_free(&c);

    setenv("PORT", "nope", 1);
    PARSE_OK(&c, "-p", "81", cli_app); /* a bad $PORT does not matter under -p */
    up_cli_free(&c);
    PARSE_FAILS("nope", cli_app);
    unsetenv("PORT");
    setenv("UP_BACKEND", "kqueue", 1);
    PARSE_FAILS("kqueue", cli_app);
}

Test(cli, subcommands)
{
    static const struct {
        const char *name;
        enum up_cli_cmd cmd;
    } cases[] = {{"reload", UP_CLI_RELOAD}, {"status", UP_CLI_STATUS}, {"stop", UP_CLI_STOP}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct up_cli c;
        PARSE_OK(&c, (char *)cases[i].name);
        cr_assert_eq(c.cmd, cases[i].cmd, "%s", cases[i].name);
        cr_assert_null(c.app);
        cr_assert_null(c.app_argv);
        cr_assert_eq(c.app_argc, 0);
        up_cli_free(&c);
        PARSE_OK(&c, "-p", "4001", (char *)cases[i].name, "--control", "/tmp/m.sock");
        cr_assert_eq(c.cmd, cases[i].cmd);
        cr_assert_eq(c.port, 4001);
        cr_assert_str_eq(c.control, "/tmp/m.sock");
        up_cli_free(&c);
    }
    PARSE_FAILS("extra", "reload", "extra");
    PARSE_FAILS("arg", "stop", "--", "arg");
}

Test(cli, command_options)
{
    struct up_cli c;
    PARSE_OK(&c, "reload");
    cr_assert(!c.no_wait);
    cr_assert_eq(c.wait_ms, UP_CLI_WAIT_MS);
    up_cli_free(&c);
    PARSE_OK(&c, "reload", "--no-wait", "-t", "2m");
    cr_assert(c.no_wait);
    cr_assert_eq(c.wait_ms, 120000);
    up_cli_free(&c);
    PARSE_OK(&c, "status", "--json");
    cr_assert(c.json);
    up_cli_free(&c);
    PARSE_FAILS("--no-wait is for 'up-run reload'", "status", "--no-wait");
    PARSE_FAILS("--no-wait is for 'up-run reload'", "--no-wait", cli_app);
    PARSE_FAILS("--json is for 'up-run status'", "reload", "--json");
    PARSE_FAILS("--json is for 'up-run status'", "--json", cli_app);
}

Test(cli, control_path_rules)
{
    struct up_cli c;
    char buf[128];
    char want[128];

    PARSE_OK(&c, "-p", "4100", "reload");
    snprintf(want, sizeof(want), "/tmp/up-%u/4100.sock", (unsigned)getuid());
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, want);

    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/run/user/1000/up-4100.sock");
    up_cli_free(&c);

    /* The first --listen with a port wins over -p; unix listeners have none. */
    PARSE_OK(&c, "-p", "4100", "-l", "unix:/tmp/a.sock", "-l", "[::1]:4200", "-l", "4300",
             "status");
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/run/user/1000/up-4200.sock");
    up_cli_free(&c);

    PARSE_OK(&c, "-l", "unix:/tmp/a.sock", "stop");
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/run/user/1000/up-3000.sock");
    up_cli_free(&c);

    PARSE_OK(&c, "--control", "/tmp/ctl.sock", "-p", "4100", "stop");
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "/tmp/ctl.sock");
    strcpy(buf, "untouched");
    cr_assert_eq(up_cli_control_path(&c, buf, 5), -ENAMETOOLONG);
    cr_assert_str_eq(buf, "untouched");
    up_cli_free(&c);

    char longdir[200];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    setenv("XDG_RUNTIME_DIR", longdir, 1);
    PARSE_OK(&c, "stop");
    cr_assert_eq(up_cli_control_path(&c, buf, sizeof(buf)), -ENAMETOOLONG,
                 "must fit a unix socket address");
    up_cli_free(&c);
}

Test(cli, listen_port)
{
    cr_assert_eq(up_cli_listen_port("3000"), 3000);
    cr_assert_eq(up_cli_listen_port("127.0.0.1:3001"), 3001);
    cr_assert_eq(up_cli_listen_port("*:3002"), 3002);
    cr_assert_eq(up_cli_listen_port("[::1]:3003"), 3003);
    cr_assert_eq(up_cli_listen_port("localhost:65535"), 65535);
    cr_assert_eq(up_cli_listen_port("unix:/tmp/x.sock"), -1);
    cr_assert_eq(up_cli_listen_port("host:0"), -1);
    cr_assert_eq(up_cli_listen_port("host:65536"), -1);
    cr_assert_eq(up_cli_listen_port("host:"), -1);
    cr_assert_eq(up_cli_listen_port("[::1]"), -1);
    cr_assert_eq(up_cli_listen_port("host:+80"), -1);
}

Test(cli, help_and_version_return_one, .init = cr_redirect_stdout)
{
    struct up_cli c;
    char err[128];
    memset(&c, 0, sizeof(c));
    cr_assert_eq(parse(&c, err, sizeof(err), "--help", NULL), 1);
    cr_assert_eq(parse(&c, err, sizeof(err), cli_app, "-n", "bad(", "-h", NULL), -EINVAL,
                 "options are handled in order");
    cr_assert_eq(parse(&c, err, sizeof(err), "-V", NULL), 1);
    cr_assert_null(c.mem, "nothing allocated");
    fflush(stdout);
    char out[16384] = "";
    FILE *f = cr_get_redirected_stdout();
    size_t n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    static const char *const must[] = {
        "--listen",
        "--port",
        "--workers",
        "--timeout",
        "--watch",
        "--build",
        "--keepalive",
        "--no-keepalive",
        "--pidfile",
        "--title",
        "--require",
        "--ready ",
        "--ready-timeout",
        "--migrate",
        "--max-draining",
        "--backend",
        "--control",
        "--header-timeout",
        "--queue-timeout",
        "--max-head",
        "--metrics",
        "--exec",
        "--protocol",
        "--ready notify",
        "--ready-after",
        "--notify-access",
        "--stop-signal",
        "USR2",
        "HUP",
        "TERM",
        "QUIT",
        "reload",
        "status",
        "stop",
        "UP_ENV",
        "UP_LOG",
        "UP_BACKEND",
        "default 10m",
        "2 usage",
        "3 start-up",
        "up-run 0.1.0\n",
    };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
        cr_assert_not_null(strstr(out, must[i]), "help lacks '%s'", must[i]);
    }
    /* Every line fits a terminal. */
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        cr_assert_leq(strlen(line), 80, "too long: %s", line);
    }
    cr_assert_str_eq(up_cli_version(), "up-run 0.1.0");
}

Test(cli, bad_options_and_values)
{
    PARSE_FAILS("'--wrkers'", "--wrkers=4", cli_app);
    PARSE_FAILS("'-x'", "-x", cli_app);
    PARSE_FAILS("'--no-keepalive' takes no value", "--no-keepalive=1", cli_app);
    PARSE_FAILS("'-n' needs a value", cli_app, "-n");
    PARSE_FAILS("'--port' needs a value", cli_app, "--port");
    PARSE_FAILS("'cpus+' is not a number or expression (at position 5)", "--workers=cpus+",
                cli_app);
    PARSE_FAILS("try --workers=4, auto or 'cpus+2'", "-n", "cpus+", cli_app);
    PARSE_FAILS("-n: 'four'", "-n", "four", cli_app);
    PARSE_FAILS("'0'", "-n", "0", cli_app);
    PARSE_FAILS("'-1'", "-n", "-1", cli_app);
    PARSE_FAILS("'cpus-cpus'", "-n", "cpus-cpus", cli_app);
    PARSE_FAILS("'1025'", "-n", "1025", cli_app);
    PARSE_FAILS("'cpus/0' divides by zero", "-n", "cpus/0", cli_app);
    PARSE_FAILS("-t: '10x' is not a duration", "-t", "10x", cli_app);
    PARSE_FAILS("--timeout: '-1s'", "--timeout=-1s", cli_app);
    PARSE_FAILS("'soon'", "--ready-timeout", "soon", cli_app);
    PARSE_FAILS("'0s' must be more than zero", "--ready-timeout=0s", cli_app);
    PARSE_FAILS("'1y'", "--header-timeout=1y", cli_app);
    PARSE_FAILS("'maybe' is not one of auto, manual or notify", "--ready=maybe", cli_app);
    PARSE_FAILS("'sometimes'", "--migrate=sometimes", cli_app);
    PARSE_FAILS("'kqueue'", "--backend=kqueue", cli_app);
    PARSE_FAILS("-p: '70000' is not a port (1-65535)", "-p", "70000", cli_app);
    PARSE_FAILS("'0' is not a port", "-p", "0", cli_app);
    PARSE_FAILS("'http'", "--port=http", cli_app);
    PARSE_FAILS("'0'", "--max-draining=0", cli_app);
    PARSE_FAILS("'65'", "--max-draining=65", cli_app);
    PARSE_FAILS("'100'", "--max-head=100", cli_app);
    PARSE_FAILS("'2M'", "--max-head=2M", cli_app);
    PARSE_FAILS("'localhost'", "--listen=localhost", cli_app);
    PARSE_FAILS("'host:99999'", "-l", "host:99999", cli_app);
    PARSE_FAILS("'unix:'", "-l", "unix:", cli_app);
    PARSE_FAILS("'9100x'", "--metrics", "9100x", cli_app);
    PARSE_FAILS("--sticky: 'session' is not cookie:NAME, header:NAME or ip", "--sticky", "session",
                cli_app);
    PARSE_FAILS("--sticky: 'cookie:': the name must be a token", "--sticky=cookie:", cli_app);
    PARSE_FAILS("''", "--title=", cli_app);
    PARSE_FAILS("'make'", "--build", "make", cli_app);
    PARSE_FAILS("needs --watch", "--build", "make", cli_app);
    PARSE_FAILS("'/nonexistent/lib.so' not found", "-r", "/nonexistent/lib.so", cli_app);
    PARSE_FAILS("'/nonexistent-dir'", "--watch=/nonexistent-dir", cli_app);
}

/* The drain of WebSockets and event streams: both durations, zero allowed
 * (close at once, all together). */
Test(cli, long_lived_drain_options)
{
    struct up_cli c;
    PARSE_OK(&c, "--ws-drain-grace=1500ms", "--close-spread", "2s", cli_app);
    cr_assert_eq(c.ws_drain_grace_ms, 1500);
    cr_assert_eq(c.close_spread_ms, 2000);
    up_cli_free(&c);
    PARSE_OK(&c, "--ws-drain-grace=0", "--close-spread=0s", cli_app);
    cr_assert_eq(c.ws_drain_grace_ms, 0);
    cr_assert_eq(c.close_spread_ms, 0);
    up_cli_free(&c);
    PARSE_FAILS("--ws-drain-grace: 'soon' is not a duration", "--ws-drain-grace=soon", cli_app);
    PARSE_FAILS("--close-spread: '-1s'", "--close-spread", "-1s", cli_app);
    PARSE_FAILS("'--close-spread' needs a value", cli_app, "--close-spread");
}

Test(cli, too_many_listen_addresses)
{
    char *argv[40] = {"up-run"};
    int argc = 1;
    for (int i = 0; i < 17; i++) {
        argv[argc++] = "-l";
        argv[argc++] = "3000";
    }
    argv[argc++] = cli_app;
    struct up_cli c;
    char err[256];
    cr_assert_eq(up_cli_parse(argc, argv, &c, err, sizeof(err)), -EINVAL);
    cr_assert_not_null(strstr(err, "at most 16"), "%s", err);
}

Test(cli, app_errors)
{
    PARSE_FAILS("missing APP.so", "-k");
    PARSE_FAILS("missing APP.so", "-n", "2", "--", "x");
    PARSE_FAILS("app file './nope.so' not found", "./nope.so");
    PARSE_FAILS("app file '/tmp' is not a regular file", "/tmp");
    PARSE_FAILS("'other.so'", cli_app, "other.so");
    PARSE_FAILS("--watch=DIR", "--watch", cli_dir, cli_app);
    if (geteuid() == 0) {
        return; /* root reads any file: the permission case cannot happen */
    }
    cr_assert_eq(chmod(cli_app, 0), 0);
    char want[256];
    snprintf(want, sizeof(want), "app file '%s' is not readable: Permission denied", cli_app);
    PARSE_FAILS(want, cli_app);
}

Test(cli, reentrant)
{
    /* A parse stopped half way through a bundle of short options must not
     * leak into the next one. */
    struct up_cli c;
    char err[256];
    cr_assert_eq(parse(&c, err, sizeof(err), "-kx", cli_app, NULL), -EINVAL);
    PARSE_OK(&c, "-n2", cli_app);
    cr_assert_eq(c.workers, 2);
    cr_assert_str_eq(c.app, cli_app);
    up_cli_free(&c);
    PARSE_OK(&c, cli_app);
    cr_assert_eq(c.workers, expected_auto());
    up_cli_free(&c);
}

Test(cli, ambiguous_prefix_names_the_candidates)
{
    PARSE_FAILS("'--w' is ambiguous (--workers, --watch, --ws-drain-grace)", "--w", cli_app);
    struct up_cli c;
    PARSE_OK(&c, "--wor=2", "--max-dr", "5", cli_app); /* a unique prefix is fine */
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.max_draining, 5);
    up_cli_free(&c);
}

Test(cli, repeated_options_last_wins)
{
    char *argv[80] = {"up-run"};
    char watch[128];
    int argc = 1;
    snprintf(watch, sizeof(watch), "--watch=%s", cli_dir);
    for (int i = 0; i < 40; i++) {
        argv[argc++] = i % 2 ? watch : "--watch=/tmp";
    }
    argv[argc++] = "-n3";
    argv[argc++] = "-n4";
    argv[argc++] = cli_app;
    struct up_cli c;
    char err[256];
    cr_assert_eq(up_cli_parse(argc, argv, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(c.watch_dir, cli_dir);
    cr_assert_eq(c.workers, 4);
    up_cli_free(&c);
}

Test(cli, exec_takes_the_command_after_dashdash)
{
    struct up_cli c;
    PARSE_OK(&c, "-n", "3", "--exec", "--", "gunicorn", "--bind", "fd://3", "app:app");
    cr_assert(c.exec);
    cr_assert(!c.handoff);
    cr_assert_null(c.app);
    cr_assert_eq(c.app_argc, 4);
    cr_assert_str_eq(c.app_argv[0], "gunicorn");
    cr_assert_str_eq(c.app_argv[1], "--bind");
    cr_assert_str_eq(c.app_argv[3], "app:app");
    cr_assert_null(c.app_argv[4]);
    cr_assert_eq(c.workers, 3);
    cr_assert_eq(c.stop_signal, SIGTERM, "TERM by default");
    cr_assert_eq(c.ready_after_ms, 0, "READY=1 by default");
    up_cli_free(&c);
}

Test(cli, exec_options_parsed)
{
    struct up_cli c;
    PARSE_OK(&c, "--exec", "--stop-signal", "QUIT", "--ready-after", "250ms", "--", "srv");
    cr_assert_eq(c.stop_signal, SIGQUIT);
    cr_assert_eq(c.ready_after_ms, 250);
    up_cli_free(&c);
    PARSE_OK(&c, "--exec", "--stop-signal=sigwinch", "--ready=notify", "--notify-access=all", "--",
             "srv");
    cr_assert_eq(c.stop_signal, SIGWINCH);
    cr_assert(c.notify_access_all);
    up_cli_free(&c);
    PARSE_OK(&c, "--exec", "--stop-signal", "2", "--protocol=activation", "--", "srv");
    cr_assert_eq(c.stop_signal, SIGINT);
    cr_assert(!c.handoff);
    up_cli_free(&c);
    PARSE_OK(&c, "--exec", "--protocol", "handoff", "--", "python3", "w.py", "app:app");
    cr_assert(c.handoff);
    cr_assert_str_eq(c.app_argv[2], "app:app");
    up_cli_free(&c);
}

Test(cli, exec_watch_defaults_to_the_working_directory)
{
    struct up_cli c;
    char cwd[PATH_MAX];
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    PARSE_OK(&c, "--exec", "-w", "--build", "make", "--", "srv");
    cr_assert_str_eq(c.watch_dir, cwd);
    up_cli_free(&c);
}

Test(cli, exec_errors)
{
    PARSE_FAILS("--exec needs a command", "--exec");
    PARSE_FAILS("--exec needs a command", "--exec", "--");
    PARSE_FAILS("not an APP.so", "--exec", cli_app);
    PARSE_FAILS("not an APP.so", "--exec", cli_app, "--", "srv");
    PARSE_FAILS("--stop-signal is for --exec", "--stop-signal", "TERM", cli_app);
    PARSE_FAILS("--protocol is for --exec", "--protocol=handoff", cli_app);
    PARSE_FAILS("--ready-after is for --exec", "--ready-after", "1s", cli_app);
    PARSE_FAILS("--ready=notify is for --exec", "--ready=notify", cli_app);
    PARSE_FAILS("'BOGUS' is not a signal", "--exec", "--stop-signal", "BOGUS", "--", "srv");
    PARSE_FAILS("'0' is not a signal", "--exec", "--stop-signal", "0", "--", "srv");
    PARSE_FAILS("'tcp' is not one of activation or handoff", "--exec", "--protocol", "tcp", "--",
                "srv");
    PARSE_FAILS("'some' is not one of main or all", "--exec", "--notify-access", "some", "--",
                "srv");
    PARSE_FAILS("--ready=manual", "--exec", "--ready=manual", "--", "srv");
    PARSE_FAILS("choose one", "--exec", "--ready=notify", "--ready-after", "1s", "--", "srv");
    PARSE_FAILS("shorter than --ready-timeout", "--exec", "--ready-after", "1m", "--", "srv");
    PARSE_FAILS("--notify-access is for --ready=notify", "--exec", "--ready-after", "1s",
                "--notify-access=all", "--", "srv");
    PARSE_FAILS("--require", "--exec", "-r", cli_app, "--", "srv");
    PARSE_FAILS("--stop-signal is for --protocol=activation", "--exec", "--protocol=handoff",
                "--stop-signal", "QUIT", "--", "srv");
    PARSE_FAILS("a handoff worker says READY", "--exec", "--protocol=handoff", "--ready=notify",
                "--", "srv");
    PARSE_FAILS("--build 'make' needs --watch", "--exec", "--build", "make", "--", "srv");
    PARSE_FAILS("missing APP.so", "-n", "2");
}
