/*
 * bufpool: page-aligned blocks reused from a free stack; a block given
 * back with release has its pages returned to the kernel (read back as
 * zeros, and out of the process's resident set).
 */
#include <criterion/criterion.h>

#include "../lib/testlib.h"
#include "bufpool.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

Test(bufpool, blocks_are_whole_pages_and_reused)
{
    struct up_bufpool p;
    up_bufpool_init(&p, 5000);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    cr_assert_eq(p.size, 2 * page);
    char *a = up_bufpool_get(&p);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % page, 0);
    cr_assert_eq(p.total, UP_BUFPOOL_SLAB);
    memset(a, 'x', p.size);
    up_bufpool_put(&p, a, false);
    char *b = up_bufpool_get(&p);
    cr_assert_eq(b, a, "the block just given back comes first");
    cr_assert_eq(b[0], 'x', "kept as it was without release");

    /* More than a slab: every block can come back at once. */
    static char *all[3 * UP_BUFPOOL_SLAB];
    all[0] = b;
    for (size_t i = 1; i < sizeof(all) / sizeof(all[0]); i++) {
        all[i] = up_bufpool_get(&p);
        cr_assert_not_null(all[i]);
        all[i][0] = 1;
    }
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        up_bufpool_put(&p, all[i], false);
    }
    cr_assert_eq(p.nfree, p.total);
    up_bufpool_put(&p, NULL, true); /* ignored */
    cr_assert_eq(p.nfree, p.total);
}

Test(bufpool, release_gives_the_pages_back)
{
    struct up_bufpool p;
    up_bufpool_init(&p, 64 * 1024);
    enum { N = 256 }; /* 16 MiB */
    static char *blocks[N];
    long before = up_test_status_kib(getpid(), "VmRSS:");
    for (int i = 0; i < N; i++) {
        blocks[i] = up_bufpool_get(&p);
        memset(blocks[i], 'y', p.size);
    }
    long full = up_test_status_kib(getpid(), "VmRSS:");
    cr_assert_geq(full - before, 15 * 1024, "RSS grew by %ld kB for 16 MiB", full - before);
    for (int i = 0; i < N; i++) {
        up_bufpool_put(&p, blocks[i], true);
    }
    long after = up_test_status_kib(getpid(), "VmRSS:");
    cr_assert_lt(after - before, 1024, "%ld kB still resident after the release", after - before);
    char *again = up_bufpool_get(&p);
    cr_assert_eq(again[0], 0, "a released block reads as fresh zeros");
    cr_assert_eq(again[p.size - 1], 0);
}

/* Small objects fill their slab's pages: no page holds a tail no block can
 * use, and blocks never straddle one another. */
Test(bufpool, objects_fill_whole_pages)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t sizes[] = {24, 360, 464, 1000, 3000};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        struct up_bufpool p;
        up_bufpool_init_objects(&p, sizes[s]);
        cr_assert_eq(p.size % 16, 0);
        cr_assert_geq(p.size, sizes[s]);
        size_t pages = (p.size * UP_BUFPOOL_SLAB + page - 1) / page;
        cr_assert_geq(p.per_slab, UP_BUFPOOL_SLAB);
        cr_assert_leq(p.per_slab * p.size, pages * page, "a slab's blocks fit its pages");
        cr_assert_gt((p.per_slab + 1) * p.size, pages * page,
                     "%zu-byte blocks: %zu in %zu pages leave room for one more", p.size,
                     p.per_slab, pages);
        /* One slab's blocks, all distinct and 16-byte aligned. */
        char *prev = NULL;
        for (size_t i = 0; i < p.per_slab; i++) {
            char *b = up_bufpool_get(&p);
            cr_assert_not_null(b);
            cr_assert_eq((uintptr_t)b % 16, 0);
            if (prev != NULL) {
                cr_assert(b >= prev + p.size || b + p.size <= prev, "blocks overlap");
            }
            memset(b, 'z', p.size);
            prev = b;
        }
        cr_assert_eq(p.total, p.per_slab, "one slab so far");
        (void)up_bufpool_get(&p);
        cr_assert_eq(p.total, 2 * p.per_slab);
    }
}

/* trim releases the free blocks but the last given back, each once, and
 * the pool goes on serving; fini unmaps it all. */
Test(bufpool, trim_keeps_the_hot_ones_and_releases_the_rest)
{
    struct up_bufpool p;
    up_bufpool_init(&p, 16 * 1024);
    enum { N = 200, KEEP = 16 };
    static char *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = up_bufpool_get(&p);
        cr_assert_not_null(blocks[i]);
        memset(blocks[i], 'a', p.size);
    }
    for (int i = 0; i < N; i++) {
        up_bufpool_put(&p, blocks[i], false);
    }
    long full = up_test_status_kib(getpid(), "VmRSS:");
    cr_assert_eq(up_bufpool_trim(&p, KEEP), N - KEEP);
    long trimmed = up_test_status_kib(getpid(), "VmRSS:");
    cr_assert_geq(full - trimmed, (long)((N - KEEP) * p.size / 1024) * 9 / 10,
                  "only %ld kB went back", full - trimmed);
    cr_assert_eq(up_bufpool_trim(&p, KEEP), 0, "released blocks are not released again");

    /* The hot ones come first and kept their bytes; then released ones,
     * as zeros. */
    for (int i = 0; i < KEEP; i++) {
        char *b = up_bufpool_get(&p);
        cr_assert_eq(b, blocks[N - 1 - i]);
        cr_assert_eq(b[0], 'a');
    }
    char *cold = up_bufpool_get(&p);
    cr_assert_eq(cold[0], 0, "a trimmed block reads as zeros");
    cold[0] = 'b';
    /* Taken below the released mark and given back hot: a trim releases
     * it again, as one of the spare. */
    up_bufpool_put(&p, cold, false);
    cr_assert_eq(up_bufpool_trim(&p, 0), 1);
    cr_assert_eq(((char *)up_bufpool_get(&p))[0], 0);

    struct up_bufpool objs;
    up_bufpool_init_objects(&objs, 100);
    void *o = up_bufpool_get(&objs);
    up_bufpool_put(&objs, o, false);
    cr_assert_eq(up_bufpool_trim(&objs, 0), 0, "an object pool keeps its pages");
    up_bufpool_fini(&objs);
    up_bufpool_fini(&p);
    cr_assert_eq(p.total, 0);
    cr_assert_null(p.free);
}
