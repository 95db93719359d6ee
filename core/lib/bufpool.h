/*
 * bufpool: connection buffers (the worker's read buffers and out queue
 * chunks, the master's peek buffers), in page-aligned blocks of one size
 * per pool, outside the malloc heap.
 *
 * Why not malloc: an idle Keep-Alive connection gives its buffers back
 * (conn.c, slim), and at scale most connections are idle. Freed into the
 * heap, a buffer's pages stay resident, shared with the small structs
 * allocated around it; here a block is whole pages of its own, so giving
 * it back with up_bufpool_put(..., true) returns its pages to the kernel
 * (MADV_DONTNEED) and an idle connection costs its struct alone.
 *
 * The master's peek buffers are here so that a burst of connections (each
 * holds one until a worker takes it) does not leave the master's memory at
 * the burst's height: up_bufpool_trim() releases the free blocks past the
 * ones kept hot.
 *
 * The same pool, with blocks of a few hundred bytes packed side by side,
 * holds the connection structs themselves, for the same reason: apart from
 * the heap, a connection's short-lived allocations (parser, fields) leave
 * whole free pages when it slims, which the heap trim can give back.
 *
 * Blocks come from slabs mapped UP_BUFPOOL_SLAB blocks at a time (small
 * objects: as many more as fill the slab's last page), and are
 * reused from a free stack kept apart from them (no syscall on the hot
 * path, and a released block is never touched); slabs are never unmapped:
 * their untouched pages cost nothing. One process, one loop: no locking.
 */
#ifndef UP_BUFPOOL_H
#define UP_BUFPOOL_H

#include <stdbool.h>
#include <stddef.h>

#define UP_BUFPOOL_SLAB 64

/* Spare blocks a trimmed pool keeps resident for the next connections. */
#define UP_BUFPOOL_KEPT 64

struct up_bufpool {
    size_t size;     /* of a block: a multiple of the page size, or of 16 (objects) */
    size_t per_slab; /* blocks mapped at a time */
    void **free;     /* owned: the free blocks (a stack), room for every block mapped */
    size_t nfree;    /* ... how many */
    size_t cold;     /* free[0, cold) are released (their pages given back) */
    size_t cap;      /* room in free */
    size_t total;    /* blocks mapped */
    void **slabs;    /* owned: the slabs mapped (for up_bufpool_fini()) */
    size_t nslabs;
    bool pages; /* blocks are whole pages (up_bufpool_init) */
};

/* A pool of blocks of size bytes (rounded up to whole pages). */
void up_bufpool_init(struct up_bufpool *p, size_t size);

/* A pool of small objects of size bytes (rounded up to 16), packed side
 * by side (16-byte aligned, as malloc's): long-lived structs kept apart from the heap, where the
 * short- lived allocations around them would otherwise pin their pages. Their pages are never
 * released (put ignores release). */
void up_bufpool_init_objects(struct up_bufpool *p, size_t size);

/* A block of p->size bytes, or NULL when no memory could be mapped. Its
 * contents are undefined. */
void *up_bufpool_get(struct up_bufpool *p);

/* Give block back (NULL is ignored). release: its pages go back to the
 * kernel now (the block is not needed soon); else it stays resident for
 * the next get. */
void up_bufpool_put(struct up_bufpool *p, void *block, bool release);

/* Unmap every slab: every block must have been given back. For a pool
 * whose owner goes (libup's server); a process-wide pool just ends with it. */
void up_bufpool_fini(struct up_bufpool *p);

/* Release the pages of the free blocks but the keep given back last (a
 * page pool; the blocks stay the pool's). A system call per block not
 * released yet: for a timer, not for every put. Returns how many. */
size_t up_bufpool_trim(struct up_bufpool *p, size_t keep);

/* Free blocks whose pages are still resident (what a trim may release). */
static inline size_t up_bufpool_warm(const struct up_bufpool *p)
{
    return p->nfree - p->cold;
}

#endif
