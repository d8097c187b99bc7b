/*
 * test_cpython_lines.c - cpython_addr2line on location tables built by
 * hand from Objects/locations.md (every entry form, multi-chunk varints,
 * negative deltas, malformed tables), then on real tables: every code
 * unit of a few hundred stdlib code objects, against the lines CPython
 * itself reports (tests/attacher/cpython/dump_linetables.py, run under
 * each interpreter named in CPYTHON_TEST_PYTHONS, ':'-separated, and the
 * python3 of each Debian root named in CPYTHON_TEST_ROOTS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpython_lines.h"

/* First byte of an entry: code, length in code units (1..8). */
#define E(code, len) ((uint8_t)(0x80 | ((code) << 3) | ((len) - 1)))

static int line_at(const uint8_t *t, size_t n, int32_t first, uint32_t unit)
{
    int32_t line = -12345;
    if (cpython_addr2line(t, n, first, unit, &line) < 0)
        return -1;
    return line;
}

static void test_short_and_one_line_forms(void **state)
{
    (void)state;
    const uint8_t t[] = {
        E(0, 2), 0x05,              /* units 0-1: short form, same line */
        E(9, 1), 0x12,              /* unit 2: short form (column 72+) */
        E(10, 3), 4, 9,             /* units 3-5: one-line form, +0 */
        E(11, 1), 0, 3,             /* unit 6: +1 */
        E(12, 8), 1, 2,             /* units 7-14: +2 */
        E(0, 1), 0x00,              /* unit 15: same line */
    };
    assert_int_equal(line_at(t, sizeof t, 10, 0), 10);
    assert_int_equal(line_at(t, sizeof t, 10, 1), 10);
    assert_int_equal(line_at(t, sizeof t, 10, 2), 10);
    assert_int_equal(line_at(t, sizeof t, 10, 5), 10);
    assert_int_equal(line_at(t, sizeof t, 10, 6), 11);
    assert_int_equal(line_at(t, sizeof t, 10, 7), 13);
    assert_int_equal(line_at(t, sizeof t, 10, 14), 13);
    assert_int_equal(line_at(t, sizeof t, 10, 15), 13);
    assert_int_equal(line_at(t, sizeof t, 10, 16), -1); /* past the end */
}

static void test_varint_forms(void **state)
{
    (void)state;
    const uint8_t t[] = {
        E(13, 1), 0x06,             /* unit 0: no columns, +3 */
        E(13, 2), 0x05,             /* units 1-2: -2 */
        /* unit 3: long form, +200 (svarint 400: 0x50 0x06), end line +1,
         * columns 4 and 200 (varint 0x48 0x03) */
        E(14, 1), 0x50, 0x06, 0x01, 0x04, 0x48, 0x03,
        E(15, 2),                   /* units 4-5: no location */
        E(13, 1), 0x01,             /* unit 6: svarint 1 = -0 */
        E(14, 1), 0x0b, 0x00, 0x00, 0x00, /* unit 7: -5 */
    };
    assert_int_equal(line_at(t, sizeof t, 100, 0), 103);
    assert_int_equal(line_at(t, sizeof t, 100, 1), 101);
    assert_int_equal(line_at(t, sizeof t, 100, 2), 101);
    assert_int_equal(line_at(t, sizeof t, 100, 3), 301);
    assert_int_equal(line_at(t, sizeof t, 100, 4), -1);
    assert_int_equal(line_at(t, sizeof t, 100, 5), -1);
    /* a no-location entry leaves the running line alone */
    assert_int_equal(line_at(t, sizeof t, 100, 6), 301);
    assert_int_equal(line_at(t, sizeof t, 100, 7), 296);
    /* the spec's varint example: 200 is 0x48 0x03; as svarint, +100 */
    const uint8_t u[] = { E(13, 1), 0x48, 0x03 };
    assert_int_equal(line_at(u, sizeof u, 1, 0), 101);
    /* the first entry is relative to co_firstlineno, even if negative */
    const uint8_t v[] = { E(13, 1), 0x07 };
    assert_int_equal(line_at(v, sizeof v, 2, 0), -1); /* line -1: no line */
    assert_int_equal(line_at(v, sizeof v, 10, 0), 7);
}

static void test_malformed_tables(void **state)
{
    (void)state;
    int32_t line;
    /* does not start with an entry byte */
    const uint8_t a[] = { 0x05, E(0, 1), 0 };
    assert_int_equal(cpython_addr2line(a, sizeof a, 1, 0, &line), -1);
    /* varint cut by the end of the table */
    const uint8_t b[] = { E(0, 1), 0, E(13, 1), 0x41 };
    assert_int_equal(line_at(b, sizeof b, 1, 0), 1);
    assert_int_equal(line_at(b, sizeof b, 1, 1), -1);
    /* varint running into the next entry */
    const uint8_t c[] = { E(13, 1), 0x41, E(0, 1), 0 };
    assert_int_equal(line_at(c, sizeof c, 1, 0), -1);
    /* varint longer than six chunks */
    const uint8_t d[] = { E(13, 1), 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x01 };
    assert_int_equal(line_at(d, sizeof d, 1, 0), -1);
    /* varint above 32 bits */
    const uint8_t e[] = { E(13, 1), 0x40, 0x40, 0x40, 0x40, 0x40, 0x3f };
    assert_int_equal(line_at(e, sizeof e, 1, 0), -1);
    /* line beyond int32 */
    const uint8_t f[] = { E(11, 1), 0, 0 };
    assert_int_equal(line_at(f, sizeof f, INT32_MAX, 0), -1);
    /* empty and NULL tables */
    assert_int_equal(cpython_addr2line(f, 0, 1, 0, &line), -1);
    assert_int_equal(cpython_addr2line(NULL, 4, 1, 0, &line), -1);
    /* a short form without its column byte still gives its line */
    const uint8_t g[] = { E(0, 1) };
    assert_int_equal(line_at(g, sizeof g, 5, 0), 5);
    /* huge unit: not covered */
    assert_int_equal(line_at(g, sizeof g, 5, UINT32_MAX), -1);
}

static void test_frame_line(void **state)
{
    (void)state;
    const uint8_t t[] = { E(11, 2), 0, 1, E(12, 2), 0, 1 }; /* +1, +2 */
    const uint64_t code = 0x7f0000001000;
    /* before the first unit: the frame has not started, firstlineno */
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, code - 2), 40);
    assert_int_equal(cpython_frame_line(t, sizeof t, -3, code, 4, code - 2), 0);
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, code), 41);
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, code + 3), 41);
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, code + 4), 43);
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, code + 7), 43);
    /* past the code object's units, even if the table goes on */
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 3, code + 6), 0);
    assert_int_equal(cpython_frame_line(t, sizeof t, 40, code, 4, UINT64_MAX), 0);
    /* no table */
    assert_int_equal(cpython_frame_line(NULL, 0, 40, code, 4, code), 0);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* One dump line: "FIRST HEX N L0 .. L(N-1)"; returns units checked. */
static long check_dump_line(char *s, const char *python)
{
    static uint8_t tab[1 << 16];
    char *save = NULL;
    char *tok_first = strtok_r(s, " \n", &save);
    char *tok_hex = strtok_r(NULL, " \n", &save);
    char *tok_n = strtok_r(NULL, " \n", &save);
    if (tok_first == NULL || tok_hex == NULL || tok_n == NULL)
        fail_msg("%s: bad dump line", python);
    int32_t first = (int32_t)strtol(tok_first, NULL, 10);
    size_t n = 0;
    if (strcmp(tok_hex, "-") != 0) {
        for (size_t i = 0; tok_hex[i] && tok_hex[i + 1]; i += 2) {
            assert_true(n < sizeof tab);
            tab[n++] = (uint8_t)(hexval(tok_hex[i]) << 4 | hexval(tok_hex[i + 1]));
        }
    }
    long units = strtol(tok_n, NULL, 10);
    for (long u = 0; u < units; u++) {
        char *tok = strtok_r(NULL, " \n", &save);
        assert_non_null(tok);
        long want = strtol(tok, NULL, 10);
        long got = line_at(tab, n, first, (uint32_t)u);
        if (got != want)
            fail_msg("%s: table %s first %d unit %ld: got %ld, CPython says %ld",
                     python, tok_hex, first, u, got, want);
    }
    return units;
}

/* Run one dump command and check every line it prints. */
static void check_dump(const char *cmd, const char *label)
{
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    static char linebuf[1 << 20];
    long codes = 0, units = 0;
    while (fgets(linebuf, sizeof linebuf, f) != NULL) {
        units += check_dump_line(linebuf, label);
        codes++;
    }
    assert_int_equal(pclose(f), 0);
    print_message("# %s: %ld code objects, %ld code units agree\n", label,
                  codes, units);
    assert_true(codes > 100);
}

/* Interpreters on this machine (CPYTHON_TEST_PYTHONS) and in the Debian
 * roots named by CPYTHON_TEST_ROOTS (suites, built by make-root). */
static void test_live_tables(void **state)
{
    (void)state;
    const char *pythons = getenv("CPYTHON_TEST_PYTHONS");
    const char *script = getenv("CPYTHON_DUMP_LINETABLES");
    const char *roots = getenv("CPYTHON_TEST_ROOTS");
    const char *src = getenv("VMPROF_SRC");
    if (pythons == NULL || script == NULL)
        fail_msg("CPYTHON_TEST_PYTHONS and CPYTHON_DUMP_LINETABLES must be set");
    char cmd[4096], *save = NULL;
    char *list = strdup(pythons);
    for (char *py = strtok_r(list, ":", &save); py; py = strtok_r(NULL, ":", &save)) {
        if (access(py, X_OK) != 0)
            fail_msg("interpreter %s not found", py);
        snprintf(cmd, sizeof cmd, "'%s' '%s'", py, script);
        check_dump(cmd, py);
    }
    free(list);
    if (roots == NULL || src == NULL)
        return;
    list = strdup(roots);
    for (char *suite = strtok_r(list, ":", &save); suite;
         suite = strtok_r(NULL, ":", &save)) {
        char root[1024] = "";
        snprintf(cmd, sizeof cmd, "'%s/tests/roots/make-root' '%s'", src, suite);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        if (fgets(root, sizeof root, f) == NULL)
            root[0] = '\0';
        root[strcspn(root, "\n")] = '\0';
        if (pclose(f) != 0 || root[0] != '/')
            fail_msg("make-root %s failed", suite);
        snprintf(cmd, sizeof cmd, "chroot '%s' /usr/bin/python3 - < '%s'", root, script);
        check_dump(cmd, suite);
    }
    free(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_and_one_line_forms),
        cmocka_unit_test(test_varint_forms),
        cmocka_unit_test(test_malformed_tables),
        cmocka_unit_test(test_frame_line),
        cmocka_unit_test(test_live_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
