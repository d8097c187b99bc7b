/*
 * test_latency.c - the stop-time histogram: percentiles are bucket floors
 * in microseconds, long stops land in the last bucket, the maximum stays
 * exact, an empty histogram answers 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "latency.h"

static void test_empty(void **state)
{
    (void)state;
    struct latency *l = calloc(1, sizeof *l);
    assert_non_null(l);
    assert_true(latency_pct(l, 0.5) == 0);
    assert_true(latency_pct(l, 0.99) == 0);
    free(l);
}

static void test_percentiles(void **state)
{
    (void)state;
    struct latency *l = calloc(1, sizeof *l);
    assert_non_null(l);
    /* 1..100 us, one each: p50 is the 51st (51 us), p99 the 100th */
    for (uint64_t us = 1; us <= 100; us++)
        latency_add(l, us * 1000 + 999);     /* floors: 1999 ns is 1 us */
    assert_int_equal(l->n, 100);
    assert_true(latency_pct(l, 0.5) == 51);
    assert_true(latency_pct(l, 0.99) == 100);
    assert_true(latency_pct(l, 0.0) == 1);
    assert_true(latency_pct(l, 1.0) == 100);
    assert_int_equal(l->max_ns, 100999);
    free(l);
}

static void test_overflow_bucket(void **state)
{
    (void)state;
    struct latency *l = calloc(1, sizeof *l);
    assert_non_null(l);
    latency_add(l, 5000);
    latency_add(l, 3000000000ull);           /* 3 s: past the last bucket */
    assert_true(latency_pct(l, 0.99) == LATENCY_MAX_US);
    assert_true(latency_pct(l, 0.0) == 5);
    assert_int_equal(l->max_ns, 3000000000ull);
    free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_overflow_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
