#include "uri.h"

#include <arpa/inet.h>
#include <string.h>

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* unreserved / sub-delims */
static bool is_uri_char(unsigned char c)
{
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return alnum || (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/* reg-name = *( unreserved / pct-encoded / sub-delims ); an IPv4 address is
 * one too. Empty is refused: RFC 9110 4.2.1 has a recipient reject an http
 * URI with an empty host. */
static bool reg_name_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3 || !is_hex((unsigned char)s[i + 1]) ||
                !is_hex((unsigned char)s[i + 2])) {
                return false;
            }
            i += 2;
        } else if (!is_uri_char(c)) {
            return false;
        }
    }
    return len > 0;
}

/* The inside of `[...]`: an IPv6 address, or IPvFuture
 * ("v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )). */
static bool ip_literal_ok(const char *s, size_t len)
{
    if (len > 0 && (s[0] == 'v' || s[0] == 'V')) {
        size_t i = 1;
        while (i < len && is_hex((unsigned char)s[i])) {
            i++;
        }
        if (i == 1 || i + 1 >= len || s[i] != '.') {
            return false;
        }
        for (i++; i < len; i++) {
            if (!is_uri_char((unsigned char)s[i]) && s[i] != ':') {
                return false;
            }
        }
        return true;
    }
    char text[INET6_ADDRSTRLEN];
    struct in6_addr addr;
    if (len >= sizeof(text) || memchr(s, '\0', len) != NULL) {
        return false;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    return inet_pton(AF_INET6, text, &addr) == 1;
}

/* uri-host [ ":" port ], the port required for CONNECT (RFC 9112 3.2.3).
 * No userinfo: RFC 9110 4.2.4 has a recipient treat it as an error in an
 * http(s) URI, and `user@host` is where parsers disagree on the host. */
bool up_uri_authority_ok(const char *s, size_t len, bool need_port)
{
    size_t host_end;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || !ip_literal_ok(s + 1, (size_t)(close - s - 1))) {
            return false;
        }
        host_end = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        host_end = colon != NULL ? (size_t)(colon - s) : len;
        if (!reg_name_ok(s, host_end)) {
            return false;
        }
    }
    if (host_end == len) {
        return !need_port;
    }
    if (s[host_end] != ':' || (need_port && host_end + 1 == len)) {
        return false;
    }
    for (size_t i = host_end + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

bool up_uri_absolute_authority(const char *target, size_t len, const char **ret_at, size_t *ret_len)
{
    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://" */
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)target[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool more = (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
        if (!alpha && (i == 0 || !more)) {
            break;
        }
        i++;
    }
    if (i == 0 || len - i < 3 || memcmp(target + i, "://", 3) != 0) {
        return false;
    }
    const char *at = target + i + 3;
    size_t n = 0;
    while (at + n < target + len && at[n] != '/' && at[n] != '?') {
        n++;
    }
    *ret_at = at;
    *ret_len = n;
    return true;
}
