/*
 * uri: the parts of RFC 3986 that a request target and a Host field need,
 * with the restrictions RFC 9110 4.2 puts on http(s) URIs: whether an
 * authority is valid, and where the authority of an absolute URI is.
 *
 * Pure: no I/O, no allocation, no global state; never logs.
 */
#ifndef UP_URI_H
#define UP_URI_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..len) is `host [":" port]`: host a reg-name (non-empty), an
 * IPv4 address or `[IPv6 / IPvFuture]`, port digits, required when
 * need_port (CONNECT's authority-form). No userinfo. */
bool up_uri_authority_ok(const char *s, size_t len, bool need_port);

/* For an absolute-form target (`scheme://authority...`): true, with the
 * authority (up to '/', '?' or the end, maybe empty or invalid) as a span
 * into target. False for any other form. */
bool up_uri_absolute_authority(const char *target, size_t len, const char **ret_at,
                               size_t *ret_len);

#endif
