/*
 * test_cpython_mem.c - the CPython decoder's per-stop page cache over a
 * fake target (pages that are mapped or not, every read counted): whole
 * pages read once per stop and never reused in another; unreadable pages
 * failing without another read; batches of wanted pages in one call with
 * consecutive pages merged into one span; the per-stop byte budget; the
 * per-thread hint (pages used, aged out, dropped when unreadable); the
 * stack copy lent for one stop; readv emulated over read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpython_mem.h"

#define BASE 0x100000000ull
#define NPAGES 64
#define PG(i) (BASE + (uint64_t)(i) * CPY_PAGE)

struct fake {
    uint8_t mem[NPAGES * CPY_PAGE];
    uint8_t mapped[NPAGES];
    int reads, readvs, spans;
    size_t span_len[CPY_MEM_PAGES];
};

static int range_ok(const struct fake *f, uint64_t addr, size_t len)
{
    if (addr < BASE || len == 0 || addr - BASE + len > sizeof f->mem)
        return 0;
    for (uint64_t p = (addr - BASE) / CPY_PAGE; p <= (addr - BASE + len - 1) / CPY_PAGE; p++)
        if (!f->mapped[p])
            return 0;
    return 1;
}

static int fake_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
    struct fake *f = ctx;
    f->reads++;
    if (!range_ok(f, addr, len))
        return -1;
    memcpy(buf, f->mem + (addr - BASE), len);
    return 0;
}

static int fake_readv(void *ctx, struct remote_span *s, int n)
{
    struct fake *f = ctx;
    f->readvs++;
    for (int i = 0; i < n; i++) {
        if (f->spans < CPY_MEM_PAGES)
            f->span_len[f->spans] = s[i].len;
        f->spans++;
        s[i].ok = range_ok(f, s[i].addr, s[i].len);
        if (s[i].ok)
            memcpy(s[i].buf, f->mem + (s[i].addr - BASE), s[i].len);
    }
    return 1;
}

static struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    for (size_t i = 0; i < sizeof f->mem; i++)
        f->mem[i] = (uint8_t)(i * 7 + i / CPY_PAGE);
    memset(f->mapped, 1, sizeof f->mapped);
    return f;
}

static void reset_counts(struct fake *f)
{
    f->reads = f->readvs = f->spans = 0;
}

static void expect_bytes(const struct fake *f, uint64_t addr, const uint8_t *got,
                         size_t len)
{
    assert_memory_equal(got, f->mem + (addr - BASE), len);
}

static int setup(void **state)
{
    struct fake *f = fake_new();
    struct cpy_mem *m = malloc(sizeof *m);
    assert_non_null(m);
    assert_int_equal(cpy_mem_init(m, fake_read, fake_readv, f), 0);
    cpy_mem_begin(m);
    void **pair = malloc(2 * sizeof *pair);
    pair[0] = m;
    pair[1] = f;
    *state = pair;
    return 0;
}

static int teardown(void **state)
{
    void **pair = *state;
    cpy_mem_free(pair[0]);
    free(pair[0]);
    free(pair[1]);
    free(pair);
    return 0;
}

#define M ((struct cpy_mem *)((void **)*state)[0])
#define F ((struct fake *)((void **)*state)[1])

static void test_pages_read_once_per_stop(void **state)
{
    uint8_t buf[200];
    assert_int_equal(cpy_mem_fetch(M, PG(3) + 100, buf, 100), 0);
    expect_bytes(F, PG(3) + 100, buf, 100);
    assert_int_equal(F->reads, 1);
    assert_int_equal(cpy_mem_fetch(M, PG(3) + 3000, buf, 50), 0);
    expect_bytes(F, PG(3) + 3000, buf, 50);
    assert_int_equal(F->reads, 1);              /* same page: cached */
    /* across a boundary: the next page is read, the first is cached */
    assert_int_equal(cpy_mem_fetch(M, PG(4) - 60, buf, 120), 0);
    expect_bytes(F, PG(4) - 60, buf, 120);
    assert_int_equal(F->reads, 2);
    /* a new stop reuses nothing */
    cpy_mem_begin(M);
    assert_int_equal(cpy_mem_fetch(M, PG(3) + 100, buf, 100), 0);
    assert_int_equal(F->reads, 3);
    /* the target changed between stops: the new stop sees it */
    cpy_mem_begin(M);
    F->mem[3 * CPY_PAGE + 100] ^= 0xff;
    assert_int_equal(cpy_mem_fetch(M, PG(3) + 100, buf, 1), 0);
    assert_int_equal(buf[0], F->mem[3 * CPY_PAGE + 100]);
}

static void test_big_reads_are_exact(void **state)
{
    static uint8_t buf[3 * CPY_PAGE];
    assert_int_equal(cpy_mem_fetch(M, PG(10) + 8, buf, 2 * CPY_PAGE + 100), 0);
    expect_bytes(F, PG(10) + 8, buf, 2 * CPY_PAGE + 100);
    assert_int_equal(F->reads, 1);
    /* not cached: a small read of the same place reads its page */
    assert_int_equal(cpy_mem_fetch(M, PG(10) + 8, buf, 8), 0);
    assert_int_equal(F->reads, 2);
}

static void test_unreadable_page_fails_once(void **state)
{
    uint8_t buf[16];
    F->mapped[20] = 0;
    assert_int_equal(cpy_mem_fetch(M, PG(20) + 16, buf, 16), -1);
    assert_int_equal(F->reads, 1);
    assert_int_equal(cpy_mem_fetch(M, PG(20) + 64, buf, 16), -1);
    assert_int_equal(F->reads, 1);              /* remembered for the stop */
    assert_int_equal(cpy_mem_fetch(M, PG(21) - 8, buf, 16), -1);
    assert_int_equal(F->reads, 1);              /* fails on page 20 first */
    cpy_mem_begin(M);
    F->mapped[20] = 1;                          /* mapped again: tried again */
    assert_int_equal(cpy_mem_fetch(M, PG(20) + 16, buf, 16), 0);
    expect_bytes(F, PG(20) + 16, buf, 16);
    /* invalid addresses never reach the reader */
    reset_counts(F);
    assert_int_equal(cpy_mem_fetch(M, 0, buf, 8), -1);
    assert_int_equal(cpy_mem_fetch(M, CPY_USER_END - 4, buf, 8), -1);
    assert_int_equal(cpy_mem_fetch(M, UINT64_MAX - 2, buf, 8), -1);
    assert_int_equal(F->reads + F->readvs, 0);
}

static void test_batch_one_call_runs_merged(void **state)
{
    uint8_t buf[64];
    cpy_mem_want(M, PG(7) + 10, 20);
    cpy_mem_want(M, PG(5) + 4000, 200);         /* pages 5 and 6 */
    cpy_mem_want(M, PG(30), 8);
    cpy_mem_want(M, PG(7) + 500, 8);            /* again: once */
    cpy_mem_want(M, PG(40), 3 * CPY_PAGE);      /* too big: ignored */
    assert_int_equal(cpy_mem_load(M), 4);
    assert_int_equal(F->readvs, 1);
    assert_int_equal(F->reads, 0);
    assert_int_equal(F->spans, 2);              /* 5-7 and 30 */
    assert_int_equal(F->span_len[0], 3 * CPY_PAGE);
    assert_int_equal(F->span_len[1], CPY_PAGE);
    for (int p = 5; p <= 7; p++) {
        assert_int_equal(cpy_mem_fetch(M, PG(p) + 40, buf, 64), 0);
        expect_bytes(F, PG(p) + 40, buf, 64);
    }
    assert_int_equal(cpy_mem_fetch(M, PG(30) + 4000, buf, 64), 0);
    expect_bytes(F, PG(30) + 4000, buf, 64);
    assert_int_equal(F->reads, 0);
    /* wanting cached pages asks for nothing */
    cpy_mem_want(M, PG(6), 8);
    assert_int_equal(cpy_mem_load(M), 0);
    assert_int_equal(F->readvs, 1);
}

static void test_batch_with_a_bad_run(void **state)
{
    uint8_t buf[8];
    F->mapped[12] = 0;
    cpy_mem_want(M, PG(11), 8);
    cpy_mem_want(M, PG(12), 8);                 /* run 11-12 fails whole */
    cpy_mem_want(M, PG(14), 8);
    cpy_mem_load(M);
    assert_int_equal(F->readvs, 1);
    assert_int_equal(cpy_mem_fetch(M, PG(14), buf, 8), 0);
    assert_int_equal(F->reads, 0);
    /* page 11 is readable on its own: read alone when needed */
    assert_int_equal(cpy_mem_fetch(M, PG(11), buf, 8), 0);
    expect_bytes(F, PG(11), buf, 8);
    assert_int_equal(F->reads, 1);
    assert_int_equal(cpy_mem_fetch(M, PG(12), buf, 8), -1);
}

static void test_budget_per_stop(void **state)
{
    static uint8_t big[3 * CPY_PAGE];
    uint8_t buf[8];
    int ok = 0;
    /* exact reads until the stop's budget is spent, then refused without
     * reaching the reader */
    for (int i = 0; i < (int)(CPY_MEM_BYTES / sizeof big) + 2; i++) {
        int before = F->reads;
        if (cpy_mem_fetch(M, PG(0), big, sizeof big) < 0) {
            assert_int_equal(F->reads, before);
            break;
        }
        ok++;
    }
    assert_int_equal(ok, CPY_MEM_BYTES / sizeof big);
    M->bytes = CPY_MEM_BYTES - 100;             /* less than a page left */
    reset_counts(F);
    assert_int_equal(cpy_mem_fetch(M, PG(50), buf, 8), -1);
    cpy_mem_want(M, PG(51), 8);
    assert_int_equal(cpy_mem_load(M), 0);
    assert_int_equal(F->reads + F->readvs, 0);
    cpy_mem_begin(M);                           /* a new stop, a new budget */
    assert_int_equal(cpy_mem_fetch(M, PG(50), buf, 8), 0);
    assert_int_equal(F->reads, 1);
}

static void test_hint_ages_and_drops(void **state)
{
    struct cpy_hint h;
    memset(&h, 0, sizeof h);
    uint8_t buf[8];
    /* stop 1 uses pages 1, 2, 3 (apart: a run that fails loses all its
     * pages from the hint) */
    for (int p = 1; p <= 3; p++)
        assert_int_equal(cpy_mem_fetch(M, PG(2 * p), buf, 8), 0);
    cpy_hint_update(&h, M);
    assert_int_equal(h.n, 3);
    /* stop 2: the hint is read in one call; only page 1 is used */
    cpy_mem_begin(M);
    reset_counts(F);
    cpy_hint_want(&h, M);
    assert_int_equal(cpy_mem_load(M), 3);
    assert_int_equal(F->readvs, 1);
    assert_int_equal(cpy_mem_fetch(M, PG(2), buf, 8), 0);
    assert_int_equal(F->reads, 0);
    cpy_hint_update(&h, M);
    assert_int_equal(h.n, 3);                   /* 2 and 3 kept, aging */
    /* page 3 becomes unreadable: dropped at once; 2 ages out */
    F->mapped[6] = 0;
    for (int stop = 0; stop < CPY_HINT_AGE + 1; stop++) {
        cpy_mem_begin(M);
        cpy_hint_want(&h, M);
        cpy_mem_load(M);
        assert_int_equal(cpy_mem_fetch(M, PG(2), buf, 8), 0);
        cpy_hint_update(&h, M);
        int has2 = 0, has3 = 0;
        for (uint32_t i = 0; i < h.n; i++) {
            has2 |= h.page[i] == PG(4);
            has3 |= h.page[i] == PG(6);
        }
        assert_false(has3);
        assert_int_equal(has2, stop + 1 < CPY_HINT_AGE);
    }
    assert_int_equal(h.n, 1);
    assert_int_equal(h.page[0], PG(2));
}

static void test_stack_copy_for_one_stop(void **state)
{
    static uint8_t copy[2 * CPY_PAGE];
    uint8_t buf[16];
    memcpy(copy, F->mem + 8 * CPY_PAGE, sizeof copy);
    copy[100] ^= 0x55;                          /* tell copy from target */
    cpy_mem_overlay(M, PG(8), copy, sizeof copy);
    assert_int_equal(cpy_mem_fetch(M, PG(8) + 96, buf, 16), 0);
    assert_memory_equal(buf, copy + 96, 16);
    cpy_mem_want(M, PG(9), 64);                 /* inside: nothing wanted */
    assert_int_equal(cpy_mem_load(M), 0);
    assert_int_equal(F->reads + F->readvs, 0);
    /* straddling its end: read from the target */
    assert_int_equal(cpy_mem_fetch(M, PG(10) - 8, buf, 16), 0);
    expect_bytes(F, PG(10) - 8, buf, 16);
    assert_true(F->reads > 0);
    /* the next stop does not see it */
    cpy_mem_begin(M);
    reset_counts(F);
    assert_int_equal(cpy_mem_fetch(M, PG(8) + 96, buf, 16), 0);
    expect_bytes(F, PG(8) + 96, buf, 16);
    assert_int_equal(F->reads, 1);
}

static void test_readv_emulated_over_read(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    struct cpy_mem m;
    uint8_t buf[8];
    assert_int_equal(cpy_mem_init(&m, fake_read, NULL, f), 0);
    cpy_mem_begin(&m);
    f->mapped[4] = 0;
    cpy_mem_want(&m, PG(2), 8);
    cpy_mem_want(&m, PG(4), 8);
    cpy_mem_want(&m, PG(9), 8);
    assert_int_equal(cpy_mem_load(&m), 2);
    assert_int_equal(f->reads, 3);              /* one read per span */
    assert_int_equal(m.calls, 3);
    assert_int_equal(cpy_mem_fetch(&m, PG(9), buf, 8), 0);
    assert_int_equal(cpy_mem_fetch(&m, PG(2), buf, 8), 0);
    assert_int_equal(f->reads, 3);
    cpy_mem_free(&m);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_read_once_per_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_reads_are_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_page_fails_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_one_call_runs_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_with_a_bad_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_per_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hint_ages_and_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stack_copy_for_one_stop, setup, teardown),
        cmocka_unit_test(test_readv_emulated_over_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
