/*
 * test_perfmap.c - the perf map (/tmp/perf-PID.map) parser and lookup:
 * number forms, names with spaces, bad lines, reused addresses, overlaps;
 * loading one from a file the target controls: whole lines only, regular
 * files only (a FIFO must not block), the owner must be one of the
 * target's users.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "symbols.h"

static int parse(struct sym_perfmap *pm, const char *text)
{
    return sym_perfmap_parse(pm, text, strlen(text));
}

static void test_basic_forms(void **state)
{
    struct sym_perfmap pm;
    (void)state;
    assert_int_equal(parse(&pm,
        "7f0000001000 40 py::f:/app/x.py\n"
        "0x7f0000000000 0x100 [jit] loop body\r\n"
        "7F0000002000\t10\tUPPER\n"), 0);
    assert_int_equal(pm.n, 3);
    assert_int_equal(pm.v[0].start, 0x7f0000000000ull);
    assert_int_equal(pm.v[0].size, 0x100);
    assert_string_equal(pm.v[0].name, "[jit] loop body");
    assert_int_equal(pm.v[1].start, 0x7f0000001000ull);
    assert_string_equal(pm.v[1].name, "py::f:/app/x.py");
    assert_string_equal(pm.v[2].name, "UPPER");
    sym_perfmap_free(&pm);
    assert_int_equal(pm.n, 0);
}

static void test_bad_lines_skipped(void **state)
{
    struct sym_perfmap pm;
    (void)state;
    assert_int_equal(parse(&pm,
        "1000 0 zero-size\n"
        "1000 10\n"                              /* no name */
        "1000 10 \n"                             /* blank name */
        "zz 10 nothex\n"
        "1000zz 10 glued\n"
        "ffffffffffffff00 200 wraps\n"
        "10000000000000000 10 seventeen-digits\n"
        "\n"
        "2000 10 good\n"
        "2000"), 0);
    assert_int_equal(pm.n, 1);
    assert_string_equal(pm.v[0].name, "good");
    sym_perfmap_free(&pm);

    static const char nul[] = "1000 10 a\0b\n3000 10 ok";
    assert_int_equal(sym_perfmap_parse(&pm, nul, sizeof nul - 1), 0);
    assert_int_equal(pm.n, 1);
    assert_string_equal(pm.v[0].name, "ok");
    sym_perfmap_free(&pm);

    assert_int_equal(sym_perfmap_parse(&pm, "", 0), 0);
    assert_int_equal(pm.n, 0);
    assert_null(sym_perfmap_find(&pm, 0x1000));
    sym_perfmap_free(&pm);
}

static void test_find_edges(void **state)
{
    struct sym_perfmap pm;
    (void)state;
    assert_int_equal(parse(&pm, "1000 100 a\n1100 100 b\n3000 10 c\n"), 0);
    assert_null(sym_perfmap_find(&pm, 0xfff));
    assert_string_equal(sym_perfmap_find(&pm, 0x1000)->name, "a");
    assert_string_equal(sym_perfmap_find(&pm, 0x10ff)->name, "a");
    assert_string_equal(sym_perfmap_find(&pm, 0x1100)->name, "b");
    assert_null(sym_perfmap_find(&pm, 0x1200));
    assert_string_equal(sym_perfmap_find(&pm, 0x300f)->name, "c");
    assert_null(sym_perfmap_find(&pm, 0x3010));
    assert_null(sym_perfmap_find(&pm, UINT64_MAX));
    sym_perfmap_free(&pm);
}

static void test_reused_address_last_wins(void **state)
{
    struct sym_perfmap pm;
    (void)state;
    assert_int_equal(parse(&pm, "1000 100 old\n5000 10 other\n1000 80 new\n"), 0);
    assert_int_equal(pm.n, 2);
    assert_string_equal(sym_perfmap_find(&pm, 0x1010)->name, "new");
    assert_null(sym_perfmap_find(&pm, 0x1090));       /* old's tail is gone */
    sym_perfmap_free(&pm);
}

static void test_nested_regions(void **state)
{
    struct sym_perfmap pm;
    (void)state;
    /* A big stub region holding a small one: past the small one's end the
     * big one still owns the address. */
    assert_int_equal(parse(&pm, "1000 1000 outer\n1200 10 inner\n"), 0);
    assert_string_equal(sym_perfmap_find(&pm, 0x1205)->name, "inner");
    assert_string_equal(sym_perfmap_find(&pm, 0x1300)->name, "outer");
    assert_null(sym_perfmap_find(&pm, 0x2000));
    sym_perfmap_free(&pm);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_load_from_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmprof-perfmap-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/perf-1.map", dir);
    struct sym_owners me = { { 0, getuid() }, 2 };
    struct sym_perfmap pm = { 0 };
    struct stat st;

    /* whole lines only: the JIT may be writing the last one */
    write_file(path, "1000 10 first\n2000 10 second\n3000 10 half-writ");
    assert_int_equal(sym_perfmap_load(&pm, "", path, &me, 1 << 20, &st), 0);
    assert_int_equal(pm.n, 2);
    assert_string_equal(sym_perfmap_find(&pm, 0x2004)->name, "second");
    assert_null(sym_perfmap_find(&pm, 0x3004));
    /* too big for the bound: refused, the table read before is kept */
    assert_int_equal(sym_perfmap_load(&pm, "", path, &me, 8, &st), -1);
    assert_int_equal(pm.n, 2);

    /* owned by a user that is not the target's: planted, not read */
    if (getuid() == 0) {
        assert_int_equal(chown(path, 65534, 65534), 0);
        struct sym_owners target = { { 0, 1000, 1000, 1000, 1000 }, 5 };
        assert_int_equal(sym_perfmap_load(&pm, "", path, &target, 1 << 20, &st), -1);
        struct sym_owners nobody = { { 0, 65534 }, 2 };
        assert_int_equal(sym_perfmap_load(&pm, "", path, &nobody, 1 << 20, &st), 0);
    }

    /* a FIFO (no writer) fails at once instead of blocking; so does a directory */
    char fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/perf-2.map", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    time_t t0 = time(NULL);
    assert_int_equal(sym_perfmap_load(&pm, "", fifo, &me, 1 << 20, &st), -1);
    assert_int_equal(sym_open_regular(fifo, &st), -1);
    assert_true(time(NULL) - t0 < 2);
    assert_int_equal(sym_open_regular(dir, &st), -1);
    int fd = sym_open_regular(path, &st);
    assert_true(fd >= 0);
    assert_true(S_ISREG(st.st_mode));
    close(fd);
    assert_int_equal(pm.n, 2);
    sym_perfmap_free(&pm);

    unlink(fifo);
    unlink(path);
    rmdir(dir);
}

static void test_owners_of_a_process(void **state)
{
    (void)state;
    struct sym_owners o;
    sym_owners_of(getpid(), &o);
    assert_int_equal(o.n, 5);
    assert_true(sym_owners_allow(&o, 0));
    assert_true(sym_owners_allow(&o, getuid()));
    assert_true(sym_owners_allow(&o, geteuid()));
    sym_owners_of(0x7ffffff0, &o);          /* no such process: root only */
    assert_int_equal(o.n, 1);
    assert_true(sym_owners_allow(&o, 0));
    assert_false(sym_owners_allow(&o, 65534));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_forms),
        cmocka_unit_test(test_bad_lines_skipped),
        cmocka_unit_test(test_find_edges),
        cmocka_unit_test(test_reused_address_last_wins),
        cmocka_unit_test(test_nested_regions),
        cmocka_unit_test(test_load_from_file),
        cmocka_unit_test(test_owners_of_a_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
