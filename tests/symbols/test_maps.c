/*
 * test_maps.c - the /proc/PID/maps parser: real shapes of lines, paths
 * with spaces and " (deleted)", unsorted and overlapping input, hostile
 * lines, lookups at the edges, and a live /proc/self/maps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "symbols.h"

static int parse(struct sym_maps *m, const char *text, size_t *bad)
{
    return sym_maps_parse(m, text, strlen(text), bad);
}

static void test_typical_lines(void **state)
{
    const char *text =
        "5621f5373000-5621f5375000 r--p 00000000 fe:00 260131                     /usr/bin/cat\n"
        "5621f5375000-5621f537a000 r-xp 00002000 fe:00 260131                     /usr/bin/cat\n"
        "5621f557e000-5621f559f000 rw-p 00000000 00:00 0                          [heap]\n"
        "7f7bf1846000-7f7bf190a000 rw-p 00000000 00:00 0 \n"
        "7f7bf1a00000-7f7bf1a01000 r-xs 00001000 08:1f 42                         /opt/my app/lib x.so\n"
        "7f7bf1b00000-7f7bf1b02000 r-xp 00000000 08:01 77                         /tmp/jit (deleted)\n"
        "7ffd1c3f0000-7ffd1c411000 rw-p 00000000 00:00 0                          [stack]\n"
        "7ffd1c5f2000-7ffd1c5f4000 r-xp 00000000 00:00 0                          [vdso]\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
    struct sym_maps m;
    size_t bad = 99;
    (void)state;
    assert_int_equal(parse(&m, text, &bad), 0);
    assert_int_equal(bad, 0);
    assert_int_equal(m.n, 9);
    assert_int_equal(m.v[1].start, 0x5621f5375000ull);
    assert_int_equal(m.v[1].end, 0x5621f537a000ull);
    assert_int_equal(m.v[1].offset, 0x2000);
    assert_int_equal(m.v[1].prot, SYM_PROT_R | SYM_PROT_X);
    assert_int_equal(m.v[1].dev_major, 0xfe);
    assert_int_equal(m.v[1].dev_minor, 0);
    assert_int_equal(m.v[1].inode, 260131);
    assert_string_equal(m.v[1].path, "/usr/bin/cat");
    assert_string_equal(m.v[2].path, "[heap]");
    assert_int_equal(m.v[2].prot, SYM_PROT_R | SYM_PROT_W);
    assert_string_equal(m.v[3].path, "");
    assert_string_equal(m.v[4].path, "/opt/my app/lib x.so");
    assert_int_equal(m.v[4].dev_major, 8);
    assert_int_equal(m.v[4].dev_minor, 0x1f);
    assert_string_equal(m.v[5].path, "/tmp/jit (deleted)");
    assert_string_equal(m.v[6].path, "[stack]");
    assert_string_equal(m.v[7].path, "[vdso]");
    assert_int_equal(m.v[8].start, 0xffffffffff600000ull);
    assert_int_equal(m.v[8].prot, SYM_PROT_X);
    sym_maps_free(&m);
    assert_null(m.v);
    assert_int_equal(m.n, 0);
}

static void test_unsorted_and_overlapping(void **state)
{
    const char *text =
        "3000-4000 r-xp 00000000 00:00 0 c\n"
        "1000-2000 r-xp 00000000 00:00 0 a\n"
        "1800-2800 r-xp 00000000 00:00 0 overlaps-a\n"
        "2000-3000 r-xp 00000000 00:00 0 b\n";
    struct sym_maps m;
    size_t bad = 0;
    (void)state;
    assert_int_equal(parse(&m, text, &bad), 0);
    assert_int_equal(m.n, 3);
    assert_int_equal(bad, 1);
    assert_string_equal(m.v[0].path, "a");
    assert_string_equal(m.v[1].path, "b");
    assert_string_equal(m.v[2].path, "c");
    for (size_t i = 1; i < m.n; i++)
        assert_true(m.v[i - 1].end <= m.v[i].start);
    sym_maps_free(&m);
}

static void test_hostile_lines(void **state)
{
    static const char *bad_lines[] = {
        "1000-2000 r-xp 00000000 00:00",                 /* no inode */
        "1000-2000 r-xp 00000000 00:00 0x1 /x",          /* inode not decimal */
        "1000 r-xp 00000000 00:00 0 /x",                 /* no end */
        "2000-1000 r-xp 00000000 00:00 0 /x",            /* end < start */
        "1000-1000 r-xp 00000000 00:00 0 /x",            /* empty */
        "1000-2000 rwxq 00000000 00:00 0 /x",            /* bad perms */
        "1000-2000 r-x 00000000 00:00 0 /x",             /* short perms */
        "1000-2000 r-xp 0000000g 00:00 0 /x",            /* bad offset */
        "10000000000000000-20000000000000000 r-xp 0 00:00 0 /x",  /* 17 digits */
        "1000-2000 r-xp 0 00:00 99999999999999999999999 /x",     /* inode overflow */
        "1000-2000 r-xp 0 100000000:00 0 /x",             /* major too big */
        "1000-2000 r-xp 0 00-00 0 /x",                   /* bad dev */
        "1000-2000r-xp 0 00:00 0 /x",                    /* no blank */
        "1000-2000 r-xp 0 00:00 0/x",                    /* path glued to inode */
        "garbage",
        "-",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        struct sym_maps m;
        size_t bad = 0;
        assert_int_equal(parse(&m, bad_lines[i], &bad), 0);
        if (m.n != 0 || bad != 1)
            fail_msg("accepted hostile line %zu: %s", i, bad_lines[i]);
        sym_maps_free(&m);
    }
}

static void test_embedded_nul_and_no_newline(void **state)
{
    static const char text[] = "1000-2000 r-xp 0 00:00 1 /a\0b\n3000-4000 r-xp 0 00:00 2 /last";
    struct sym_maps m;
    size_t bad = 0;
    (void)state;
    assert_int_equal(sym_maps_parse(&m, text, sizeof text - 1, &bad), 0);
    assert_int_equal(bad, 1);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.v[0].path, "/last");
    assert_int_equal(m.v[0].inode, 2);
    sym_maps_free(&m);

    /* Only the given length is read: the second line is cut mid-way. */
    const char *cut = "1000-2000 r-xp 0 00:00 1 /a\n3000-4000 r-xp 0 00:00 2 /b";
    assert_int_equal(sym_maps_parse(&m, cut, 40, &bad), 0);
    assert_int_equal(m.n, 1);
    assert_int_equal(bad, 1);
    sym_maps_free(&m);

    assert_int_equal(sym_maps_parse(&m, "", 0, NULL), 0);
    assert_int_equal(m.n, 0);
    sym_maps_free(&m);
    assert_int_equal(parse(&m, "\n\n\n", &bad), 0);
    assert_int_equal(m.n, 0);
    assert_int_equal(bad, 0);
    sym_maps_free(&m);
}

static void test_find_edges(void **state)
{
    const char *text =
        "1000-2000 r-xp 0 00:00 0 a\n"
        "2000-3000 r-xp 0 00:00 0 b\n"
        "5000-6000 r-xp 0 00:00 0 c\n";
    struct sym_maps m;
    (void)state;
    assert_int_equal(parse(&m, text, NULL), 0);
    assert_null(sym_maps_find(&m, 0));
    assert_null(sym_maps_find(&m, 0xfff));
    assert_string_equal(sym_maps_find(&m, 0x1000)->path, "a");
    assert_string_equal(sym_maps_find(&m, 0x1fff)->path, "a");
    assert_string_equal(sym_maps_find(&m, 0x2000)->path, "b");
    assert_null(sym_maps_find(&m, 0x3000));
    assert_null(sym_maps_find(&m, 0x4fff));
    assert_string_equal(sym_maps_find(&m, 0x5800)->path, "c");
    assert_null(sym_maps_find(&m, 0x6000));
    assert_null(sym_maps_find(&m, UINT64_MAX));
    sym_maps_free(&m);

    struct sym_maps empty = { NULL, 0 };
    assert_null(sym_maps_find(&empty, 0x1000));
}

static void test_live_self(void **state)
{
    struct sym_maps m;
    const struct sym_mapping *mp;
    (void)state;
    assert_int_equal(sym_maps_load(&m, getpid()), 0);
    assert_true(m.n > 5);
    mp = sym_maps_find(&m, (uint64_t)(uintptr_t)test_live_self);
    assert_non_null(mp);
    assert_true(mp->prot & SYM_PROT_X);
    assert_non_null(strstr(mp->path, "test_maps"));
    assert_true(mp->inode != 0);
    int on_stack = 0;
    mp = sym_maps_find(&m, (uint64_t)(uintptr_t)&on_stack);
    assert_non_null(mp);
    assert_string_equal(mp->path, "[stack]");
    sym_maps_free(&m);
}

static void test_load_missing_pid(void **state)
{
    struct sym_maps m;
    (void)state;
    errno = 0;
    assert_int_equal(sym_maps_load(&m, 0x3fffffff), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(m.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical_lines),
        cmocka_unit_test(test_unsorted_and_overlapping),
        cmocka_unit_test(test_hostile_lines),
        cmocka_unit_test(test_embedded_nul_and_no_newline),
        cmocka_unit_test(test_find_edges),
        cmocka_unit_test(test_live_self),
        cmocka_unit_test(test_load_missing_pid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
