/*
 * test_cpython_table.c - the open-addressing table behind the CPython
 * decoder's code cache and thread map, against a plain array as the
 * reference: records survive growth and deletions (including deletions
 * inside long probe clusters), iteration sees each record once, key 0 is
 * refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cpython_table.h"

struct rec {
    uint64_t key;
    uint64_t value;
    uint8_t pad[24];                /* records larger than the key */
};

#define N 5000

static uint64_t key_of(uint32_t i)
{
    /* 16-byte aligned like code addresses, in two far-apart ranges */
    return (i & 1 ? 0x7f0000000000ull : 0x10000000ull) + (uint64_t)i * 16;
}

static void check_all(const struct cpy_table *t, const uint8_t *present)
{
    uint32_t want = 0, seen = 0;
    for (uint32_t i = 0; i < N; i++) {
        struct rec *r = cpy_table_find(t, key_of(i));
        if (present[i]) {
            want++;
            assert_non_null(r);
            assert_int_equal(r->key, key_of(i));
            assert_int_equal(r->value, (uint64_t)i * 3 + 1);
        } else {
            assert_null(r);
        }
    }
    for (uint32_t s = 0; s < t->cap; s++)
        seen += cpy_table_at(t, s) != NULL;
    assert_int_equal(seen, want);
    assert_int_equal(t->used, want);
    assert_true(t->used * 2 <= t->cap);
}

static void test_add_find_grow_delete(void **state)
{
    (void)state;
    struct cpy_table t;
    static uint8_t present[N];
    memset(present, 0, sizeof present);
    cpy_table_init(&t, sizeof(struct rec));
    assert_null(cpy_table_find(&t, key_of(1)));
    for (uint32_t i = 0; i < N; i++) {
        struct rec *r = cpy_table_add(&t, key_of(i));
        assert_non_null(r);
        assert_int_equal(r->value, 0);          /* zeroed */
        r->value = (uint64_t)i * 3 + 1;
        present[i] = 1;
    }
    check_all(&t, present);
    /* delete two thirds in a scattered order, checking as we go */
    srand(7);
    for (uint32_t k = 0; k < 2 * N / 3; k++) {
        uint32_t i = (uint32_t)rand() % N;
        struct rec *r = cpy_table_find(&t, key_of(i));
        if (!present[i]) {
            assert_null(r);
            continue;
        }
        assert_non_null(r);
        cpy_table_del(&t, r);
        present[i] = 0;
        if (k % 500 == 0)
            check_all(&t, present);
    }
    check_all(&t, present);
    /* re-add some: deleted keys come back as fresh zeroed records */
    for (uint32_t i = 0; i < N; i += 7) {
        if (present[i])
            continue;
        struct rec *r = cpy_table_add(&t, key_of(i));
        assert_non_null(r);
        assert_int_equal(r->value, 0);
        r->value = (uint64_t)i * 3 + 1;
        present[i] = 1;
    }
    check_all(&t, present);
    cpy_table_free(&t);
    assert_null(cpy_table_find(&t, key_of(0)));
}

/* Keys that all land in one probe cluster: deleting from its middle must
 * keep every later member reachable (no tombstones, backward shift). */
static void test_delete_inside_a_cluster(void **state)
{
    (void)state;
    struct cpy_table t;
    cpy_table_init(&t, sizeof(struct rec));
    uint64_t keys[40];
    uint32_t n = 0;
    assert_non_null(cpy_table_add(&t, 1));      /* allocates 256 slots */
    uint32_t cap = t.cap;
    /* find keys whose home slot is the same as key 1's */
    uint64_t *first = cpy_table_find(&t, 1);
    uint32_t slot1 = (uint32_t)(((uint8_t *)first - t.mem) / t.esz);
    for (uint64_t k = 2; n < 40 && k < 10000000; k++) {
        struct cpy_table probe;
        cpy_table_init(&probe, sizeof(struct rec));
        uint64_t *p = cpy_table_add(&probe, k);
        uint32_t s = (uint32_t)(((uint8_t *)p - probe.mem) / probe.esz);
        cpy_table_free(&probe);
        if (s == slot1)
            keys[n++] = k;
    }
    assert_int_equal(n, 40);
    for (uint32_t i = 0; i < 40 && t.cap == cap; i++) {
        struct rec *r = cpy_table_add(&t, keys[i]);
        assert_non_null(r);
        r->value = keys[i];
    }
    /* delete every other one of the cluster, then check the rest */
    for (uint32_t i = 0; i < 40; i += 2) {
        struct rec *r = cpy_table_find(&t, keys[i]);
        assert_non_null(r);
        cpy_table_del(&t, r);
    }
    assert_non_null(cpy_table_find(&t, 1));
    for (uint32_t i = 0; i < 40; i++) {
        struct rec *r = cpy_table_find(&t, keys[i]);
        if (i % 2 == 0) {
            assert_null(r);
        } else {
            assert_non_null(r);
            assert_int_equal(r->value, keys[i]);
        }
    }
    cpy_table_free(&t);
}

static void test_key_zero_refused(void **state)
{
    (void)state;
    struct cpy_table t;
    cpy_table_init(&t, sizeof(struct rec));
    assert_null(cpy_table_add(&t, 0));
    assert_null(cpy_table_find(&t, 0));
    assert_non_null(cpy_table_add(&t, 5));
    assert_null(cpy_table_add(&t, 0));
    assert_null(cpy_table_find(&t, 0));
    assert_int_equal(t.used, 1);
    cpy_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_grow_delete),
        cmocka_unit_test(test_delete_inside_a_cluster),
        cmocka_unit_test(test_key_zero_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
