#include "bufpool.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void up_bufpool_init(struct up_bufpool *p, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    *p = (struct up_bufpool){.size = (size + page - 1) / page * page, .pages = true};
}

void up_bufpool_init_objects(struct up_bufpool *p, size_t size)
{
    *p = (struct up_bufpool){.size = (size + 15) / 16 * 16}; /* malloc's alignment */
}

/* Map a slab. Its blocks are untouched (they cost nothing until used), and
 * the free list lives apart from them, so that a released block stays
 * untouched too. */
static int grow(struct up_bufpool *p)
{
    if (p->total + UP_BUFPOOL_SLAB > p->cap) {
        /* Every block mapped may come back at once. */
        size_t cap = p->cap > 0 ? p->cap * 2 : 4 * UP_BUFPOOL_SLAB;
        void **free_ = realloc(p->free, cap * sizeof(*free_));
        if (free_ == NULL) {
            return -1;
        }
        p->free = free_;
        p->cap = cap;
    }
    char *slab = mmap(NULL, p->size * UP_BUFPOOL_SLAB, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slab == MAP_FAILED) {
        return -1;
    }
    for (size_t i = UP_BUFPOOL_SLAB; i-- > 0;) {
        p->free[p->nfree++] = slab + i * p->size;
    }
    p->total += UP_BUFPOOL_SLAB;
    return 0;
}

void *up_bufpool_get(struct up_bufpool *p)
{
    if (p->nfree == 0 && grow(p) < 0) {
        return NULL;
    }
    return p->free[--p->nfree];
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
