/*
 * listen: the address forms, and the wait for an address still taken.
 * Names with several addresses are tested with a hosts file of their own
 * (master::a_host_name_is_every_address_it_resolves_to); here only what
 * resolves the same on every machine.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "listen.h"

static const struct up_listen_addr *parse_one(const char *text, int family)
{
    static struct up_listen_addr a[UP_LISTEN_MAX_ADDRS];
    char err[256] = "";
    int n = up_listen_parse(text, a, UP_LISTEN_MAX_ADDRS, err, sizeof(err));
    cr_assert_eq(n, 1, "\"%s\": %d (%s)", text, n, err);
    cr_assert_eq(a[0].ss.ss_family, family, "\"%s\": family %d", text, a[0].ss.ss_family);
    cr_assert_str_eq(a[0].text, text, "one address keeps the operator's text");
    return &a[0];
}

static void expect_refused(const char *text, const char *says)
{
    struct up_listen_addr a[2];
    char err[256] = "";
    cr_assert_eq(up_listen_parse(text, a, 2, err, sizeof(err)), -EINVAL, "\"%s\"", text);
    cr_assert_not_null(strstr(err, says), "\"%s\": '%s' does not say '%s'", text, err, says);
}

Test(listen, forms, .timeout = 10)
{
    const struct up_listen_addr *a = parse_one("3000", AF_INET);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
    cr_assert_eq(ntohs(in->sin_port), 3000);
    cr_assert_eq(in->sin_addr.s_addr, htonl(INADDR_ANY), "no host is all IPv4 addresses alone");
    a = parse_one("*:3000", AF_INET);
    cr_assert_eq(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    a = parse_one("127.0.0.1:80", AF_INET);
    cr_assert_eq(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    a = parse_one("[::1]:80", AF_INET6);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
    cr_assert_eq(memcmp(&in6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback)), 0);
    a = parse_one("unix:/run/app.sock", AF_UNIX);
    cr_assert_str_eq(((const struct sockaddr_un *)&a->ss)->sun_path, "/run/app.sock");
}

Test(listen, bad_forms_say_what_was_wrong, .timeout = 10)
{
    expect_refused("0", "port must be a number from 1 to 65535");
    expect_refused("127.0.0.1:65536", "port must be a number");
    expect_refused("[::1:80", "write IPv6 as [addr]:port");
    expect_refused("unix:", "unix socket path must be");
}

/* The wait grows from 10 ms to 500 and ends at 2 s: a restart costs one
 * short step, a live server at a unix path sees about ten probes. */
Test(listen, the_busy_wait_is_bounded, .timeout = 10)
{
    int waited = 0;
    int steps = 0;
    int first = -1;
    while (up_listen_busy_wait(&waited)) {
        if (first < 0) {
            first = waited;
        }
        steps++;
    }
    cr_assert_eq(first, 10, "the first step is %d ms", first);
    cr_assert_geq(waited, UP_LISTEN_BUSY_WAIT_MS);
    cr_assert_lt(waited, UP_LISTEN_BUSY_WAIT_MS + 500, "waited %d ms", waited);
    cr_assert_leq(steps, 12, "%d probes", steps);
    cr_assert(!up_listen_busy_wait(&waited), "a spent wait sleeps no more");
}
