/*
 * test_remote_mem.c - the checked read path, on this process's own memory
 * (process_vm_readv works on oneself): all-or-nothing reads, reads that
 * end at an unmapped page, batched reads that skip a failing span.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "remote_mem.h"

/* Two pages: the first readable, the second unmapped. */
static uint8_t *page_then_hole(void)
{
    uint8_t *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(munmap(p + 4096, 4096), 0);
    for (int i = 0; i < 4096; i++)
        p[i] = (uint8_t)i;
    return p;
}

static void test_read_whole_or_nothing(void **state)
{
    (void)state;
    struct remote_mem m;
    remote_mem_init(&m, getpid());
    uint8_t *p = page_then_hole();
    uint8_t buf[64];
    assert_int_equal(remote_read(&m, (uintptr_t)p + 100, buf, 64), 0);
    assert_memory_equal(buf, p + 100, 64);
    /* crosses into the hole: fails as a whole */
    assert_int_equal(remote_read(&m, (uintptr_t)p + 4090, buf, 16), -1);
    assert_int_equal(errno, EFAULT);
    assert_int_equal(remote_read_upto(&m, (uintptr_t)p + 4090, buf, 16), 6);
    assert_int_equal(remote_read(&m, UINT64_MAX - 4, buf, 16), -1);  /* wraps */
    assert_true(m.faults >= 2);
    munmap(p, 4096);
}

static void test_cstr_ending_at_a_hole(void **state)
{
    (void)state;
    struct remote_mem m;
    remote_mem_init(&m, getpid());
    uint8_t *p = page_then_hole();
    memcpy(p + 4090, "hello", 6);
    char out[64];
    assert_int_equal(remote_read_cstr(&m, (uintptr_t)p + 4090, out, sizeof(out)), 5);
    assert_string_equal(out, "hello");
    memset(p + 4080, 'x', 16);  /* no NUL before the hole */
    assert_int_equal(remote_read_cstr(&m, (uintptr_t)p + 4080, out, sizeof(out)), -1);
    assert_int_equal(remote_read_cstr(&m, (uintptr_t)p + 4080, out, 5), 4);
    assert_string_equal(out, "xxxx");
    munmap(p, 4096);
}

static void test_readv_skips_only_the_bad_span(void **state)
{
    (void)state;
    struct remote_mem m;
    remote_mem_init(&m, getpid());
    uint8_t *p = page_then_hole();
    uint8_t a[8], b[8], c[8], d[8];
    struct remote_span s[] = {
        { (uintptr_t)p, a, 8, -1 },
        { (uintptr_t)p + 4092, b, 8, -1 },    /* crosses into the hole */
        { (uintptr_t)p + 16, c, 8, -1 },
        { UINT64_MAX - 2, d, 8, -1 },         /* wraps */
    };
    assert_int_equal(remote_readv(&m, s, 4), 2);
    assert_int_equal(s[0].ok, 1);
    assert_int_equal(s[1].ok, 0);
    assert_int_equal(s[2].ok, 1);
    assert_int_equal(s[3].ok, 0);
    assert_memory_equal(a, p, 8);
    assert_memory_equal(c, p + 16, 8);
    munmap(p, 4096);
}

static void test_readv_many_spans_batched(void **state)
{
    (void)state;
    struct remote_mem m;
    remote_mem_init(&m, getpid());
    static uint64_t src[200], dst[200];
    struct remote_span s[200];
    for (int i = 0; i < 200; i++) {
        src[i] = (uint64_t)i * 7919;
        s[i] = (struct remote_span){ (uintptr_t)&src[i], &dst[i], 8, 0 };
    }
    assert_int_equal(remote_readv(&m, s, 200), 200);
    assert_memory_equal(src, dst, sizeof(src));
    assert_true(m.reads <= 4);      /* 64 spans per call */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_whole_or_nothing),
        cmocka_unit_test(test_cstr_ending_at_a_hole),
        cmocka_unit_test(test_readv_skips_only_the_bad_span),
        cmocka_unit_test(test_readv_many_spans_batched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
