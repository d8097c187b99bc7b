/*
 * test_snapshot.c - snapshot_warm's bounds, on this process's own memory
 * (process_vm_readv works on oneself): it reads only the older frames of
 * the last snapshot ([last_sp + SNAPSHOT_WARM_SKIP, last_sp + want), never
 * past the stack's end nor the buffer), nothing for a shallow stack or an
 * unknown SP, and a read that fails is harmless. snapshot_take needs a
 * stopped tracee: the integration tests cover it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "snapshot.h"

#define AREA (64 * 1024)

static uint8_t *pattern_area(void)
{
    uint8_t *p = mmap(NULL, AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    for (size_t i = 0; i < AREA; i++)
        p[i] = (uint8_t)(i * 7 + i / 251);
    return p;
}

static void test_reads_older_frames_only(void **state)
{
    (void)state;
    struct snapshot sn;
    assert_int_equal(snapshot_init(&sn, AREA), 0);
    uint8_t *p = pattern_area();
    uint64_t sp = (uintptr_t)p;
    memset(sn.stack, 0xee, AREA);
    ssize_t n = snapshot_warm(&sn, getpid(), sp, sp + AREA, 40 * 1024);
    assert_int_equal(n, 40 * 1024 - SNAPSHOT_WARM_SKIP);
    assert_memory_equal(sn.stack, p + SNAPSHOT_WARM_SKIP, (size_t)n);
    assert_int_equal(sn.stack[n], 0xee);        /* nothing past what was asked */
    /* capped at the stack's end */
    n = snapshot_warm(&sn, getpid(), sp, sp + 20 * 1024, 40 * 1024);
    assert_int_equal(n, 20 * 1024 - SNAPSHOT_WARM_SKIP);
    munmap(p, AREA);
    snapshot_free(&sn);
}

static void test_capped_by_the_buffer(void **state)
{
    (void)state;
    struct snapshot sn;
    assert_int_equal(snapshot_init(&sn, 16 * 1024), 0);
    uint8_t *p = pattern_area();
    ssize_t n = snapshot_warm(&sn, getpid(), (uintptr_t)p, (uintptr_t)p + AREA, AREA);
    assert_int_equal(n, 16 * 1024);
    assert_memory_equal(sn.stack, p + SNAPSHOT_WARM_SKIP, 16 * 1024);
    munmap(p, AREA);
    snapshot_free(&sn);
}

static void test_nothing_to_warm(void **state)
{
    (void)state;
    struct snapshot sn;
    assert_int_equal(snapshot_init(&sn, AREA), 0);
    uint8_t *p = pattern_area();
    uint64_t sp = (uintptr_t)p;
    assert_int_equal(snapshot_warm(&sn, getpid(), 0, sp + AREA, AREA), 0);        /* no SP yet */
    assert_int_equal(snapshot_warm(&sn, getpid(), sp, sp + AREA, SNAPSHOT_WARM_MIN), 0);
    assert_int_equal(snapshot_warm(&sn, getpid(), sp, sp + 2048, AREA), 0);        /* end below skip */
    assert_int_equal(snapshot_warm(&sn, getpid(), UINT64_MAX - 4096, 0, AREA), 0); /* wraps */
    munmap(p, AREA);
    /* unmapped now: the read fails, nothing else happens */
    assert_int_equal(snapshot_warm(&sn, getpid(), sp, sp + AREA, AREA), -1);
    snapshot_free(&sn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_older_frames_only),
        cmocka_unit_test(test_capped_by_the_buffer),
        cmocka_unit_test(test_nothing_to_warm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
