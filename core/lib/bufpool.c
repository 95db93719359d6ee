#include "bufpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void up_bufpool_init(struct up_bufpool *p, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) / page * page;
    *p = (struct up_bufpool){.size = size, .per_slab = UP_BUFPOOL_SLAB, .pages = true};
}

void up_bufpool_init_objects(struct up_bufpool *p, size_t size)
{
    size = (size + 15) / 16 * 16; /* malloc's alignment */
    /* A slab is whole pages: as many blocks as fill the pages that
     * UP_BUFPOOL_SLAB of them need, so that the tail of its last page is
     * not left empty (with 368-byte blocks, 66 in 6 pages, not 64). */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t bytes = (size * UP_BUFPOOL_SLAB + page - 1) / page * page;
    *p = (struct up_bufpool){.size = size, .per_slab = bytes / size};
}

/* Map a slab. Its blocks are untouched (they cost nothing until used), and
 * the free list lives apart from them, so that a released block stays
 * untouched too. */
static int grow(struct up_bufpool *p)
{
    if (p->total + p->per_slab > p->cap) {
        /* Every block mapped may come back at once. */
        size_t cap = p->cap > 0 ? p->cap * 2 : 4 * p->per_slab;
        void **free_ = realloc(p->free, cap * sizeof(*free_));
        if (free_ == NULL) {
            return -1;
        }
        p->free = free_;
        p->cap = cap;
    }
    void **slabs = realloc(p->slabs, (p->nslabs + 1) * sizeof(*slabs));
    if (slabs == NULL) {
        return -1;
    }
    p->slabs = slabs;
    char *slab = mmap(NULL, p->size * p->per_slab, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slab == MAP_FAILED) {
        return -1;
    }
    p->slabs[p->nslabs++] = slab;
    for (size_t i = p->per_slab; i-- > 0;) {
        p->free[p->nfree++] = slab + i * p->size;
    }
    p->total += p->per_slab;
    p->cold = p->nfree; /* untouched: as good as released (grow() runs with none free) */
    return 0;
}

void *up_bufpool_get(struct up_bufpool *p)
{
    if (p->nfree == 0 && grow(p) < 0) {
        return NULL;
    }
    void *b = p->free[--p->nfree];
    if (p->cold > p->nfree) {
        p->cold = p->nfree;
    }
    return b;
}

void up_bufpool_put(struct up_bufpool *p, void *block, bool release)
{
    if (block == NULL) {
        return;
    }
    if (release && p->pages) {
        /* The next touch gets a zeroed page: nothing of the old contents
         * is relied on. */
        (void)madvise(block, p->size, MADV_DONTNEED);
    }
    /* Room for every block mapped was made when it was mapped. */
    p->free[p->nfree++] = block;
}

size_t up_bufpool_trim(struct up_bufpool *p, size_t keep)
{
    if (!p->pages || p->nfree <= keep) {
        return 0;
    }
    /* The stack's top is what was given back last, the likeliest to be
     * taken again: the bottom goes first. */
    size_t n = 0;
    for (size_t i = p->cold; i < p->nfree - keep; i++) {
        (void)madvise(p->free[i], p->size, MADV_DONTNEED);
        n++;
    }
    if (p->cold < p->nfree - keep) {
        p->cold = p->nfree - keep;
    }
    return n;
}

void up_bufpool_fini(struct up_bufpool *p)
{
    for (size_t i = 0; i < p->nslabs; i++) {
        (void)munmap(p->slabs[i], p->size * p->per_slab);
    }
    free(p->slabs);
    free(p->free);
    *p = (struct up_bufpool){0};
}
