/*
 * snapshot: a private copy of a file, so that rewriting the file in place
 * (a build, a deploy) cannot change or crash code that was loaded from it.
 * The master snapshots an app once per generation (kind.c), a lone
 * up-worker its own app (app.c).
 *
 * A memfd copy is marked MFD_NOEXEC_SEAL where the kernel knows the flag
 * (6.3 on): dlopen() maps it, which the seal allows, nothing can execve()
 * it, and vm.memfd_noexec=2 accepts only such memfds. Never logs; blocks
 * only for the copy.
 */
#ifndef UP_SNAPSHOT_H
#define UP_SNAPSHOT_H

#include <stdbool.h>

/* Copy all of src (open; read from its start, its own offset untouched)
 * into dst. A file that shrinks while it is copied ends the copy there
 * (whoever loads it judges it). Returns 0 or -errno. */
int up_snapshot_copy(int src, int dst);

/* A copy of src in a new memfd called name (as /proc/PID/maps shows it),
 * CLOEXEC; with seal, sealed after the copy against writes, growth,
 * shrinking and further sealing. Returns the memfd, or -errno. */
int up_snapshot_memfd(const char *name, int src, bool seal);

#endif
