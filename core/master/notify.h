/*
 * notify: systemd's readiness protocol (sd_notify), so that a unit with
 * Type=notify-reload knows when up-run is ready, reloading and stopping.
 * Without NOTIFY_SOCKET in the environment every call does nothing.
 *
 * One datagram per call, sent without blocking (MSG_DONTWAIT): a full or
 * absent systemd socket must never hold the master up. Never logs.
 */
#ifndef UP_NOTIFY_H
#define UP_NOTIFY_H

/* Send text ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Returns 0, or -errno
 * (callers ignore it: readiness reporting is best effort). */
int up_notify(const char *text);

/* RELOADING=1 with the MONOTONIC_USEC that Type=notify-reload requires. */
int up_notify_reloading(void);

#endif
