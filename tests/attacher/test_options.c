/*
 * test_options.c - command-line parsing: defaults, ranges, conflicts, and
 * that every rejection is one line naming the option and a way out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "options.h"

static int parse(struct options *o, char *err, int argc, ...)
{
    static char *argv[32];
    va_list ap;
    va_start(ap, argc);
    argv[0] = "vmprof-attach";
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    argv[argc] = NULL;
    va_end(ap);
    return options_parse(o, argc, argv, err, 256);
}

static void test_defaults(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 3, "-p", "123"), 0);
    assert_int_equal(o.pid, 123);
    assert_true(o.interval > 0.00399 && o.interval < 0.00401);
    assert_null(o.output);
    assert_true(o.duration == 0);
    assert_int_equal(o.mode, MODE_CPU);
    assert_int_equal(o.native, NATIVE_EXT);
    assert_int_equal(o.mem, 0);
    assert_int_equal(o.children, 0);
    assert_int_equal(o.follower.active, 0);
    assert_int_equal(o.follower.handoff_fd, -1);
    assert_null(o.command);
}

static void test_command_keeps_its_own_flags(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 7, "-i", "0.001", "--", "python3", "-X", "dev"), 0);
    assert_string_equal(o.command[0], "python3");
    assert_string_equal(o.command[1], "-X");
    assert_string_equal(o.command[2], "dev");
    assert_null(o.command[3]);
}

static void test_interval_bounds(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 5, "-p", "1", "-i", "0.0001"), 0);
    assert_int_equal(parse(&o, err, 5, "-p", "1", "-i", "0.999"), 0);
    const char *bad[] = { "0.00009", "1", "1.5", "-0.004", "inf", "nan", "", "4ms" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, err, 5, "-p", "1", "-i", bad[i]), EXIT_USAGE);
        assert_non_null(strstr(err, "interval"));
        assert_null(strchr(err, '\n'));
    }
}

static void test_conflicts_and_missing(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 1), EXIT_USAGE);
    assert_non_null(strstr(err, "nothing to profile"));
    assert_int_equal(parse(&o, err, 5, "-p", "1", "--", "true"), EXIT_USAGE);
    assert_non_null(strstr(err, "both -p and a command"));
    assert_int_equal(parse(&o, err, 2, "-p"), EXIT_USAGE);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(parse(&o, err, 3, "-p", "0"), EXIT_USAGE);
    assert_int_equal(parse(&o, err, 3, "-p", "99999999999"), EXIT_USAGE);
    assert_int_equal(parse(&o, err, 4, "-p", "1", "--frobnicate"), EXIT_USAGE);
    assert_non_null(strstr(err, "--frobnicate"));
}

static void test_modes(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 7, "-p", "1", "--mode", "wall", "--native", "none"), 0);
    assert_int_equal(o.mode, MODE_WALL);
    assert_int_equal(o.native, NATIVE_NONE);
    assert_int_equal(parse(&o, err, 5, "-p", "1", "--native", "all"), 0);
    assert_int_equal(o.native, NATIVE_ALL);
    assert_int_equal(parse(&o, err, 5, "-p", "1", "--mode", "cpu-ish"), EXIT_USAGE);
    assert_int_equal(parse(&o, err, 5, "-p", "1", "-d", "0"), EXIT_USAGE);
    assert_non_null(strstr(err, "duration"));
    assert_int_equal(parse(&o, err, 6, "-p", "1", "-d", "2.5", "--lines"), 0);
    assert_true(o.duration > 2.49 && o.duration < 2.51);
    assert_int_equal(o.lines, 1);
}

static void test_mem(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 4, "-p", "1", "--mem"), 0);
    assert_int_equal(o.mem, 1);
    assert_int_equal(parse(&o, err, 5, "--mem", "--", "python3", "--mem"), 0);
    assert_int_equal(o.mem, 1);
    assert_string_equal(o.command[1], "--mem");     /* the command's own flag */
    assert_int_equal(parse(&o, err, 4, "--", "python3", "--mem"), 0);
    assert_int_equal(o.mem, 0);
    assert_int_equal(parse(&o, err, 4, "-p", "1", "--mem=yes"), EXIT_USAGE);
}

/* --children in both modes; --follower (internal, written by children.c)
 * is parsed field by field and its base may hold ':'. */
static void test_children_and_follower(void **state)
{
    (void)state;
    struct options o;
    char err[256];
    assert_int_equal(parse(&o, err, 4, "--children", "--", "python3"), 0);
    assert_int_equal(o.children, 1);
    assert_int_equal(parse(&o, err, 4, "-p", "7", "--children"), 0);
    assert_int_equal(o.children, 1);
    assert_int_equal(parse(&o, err, 4, "-p", "7", "--follower=5:-1:42:1700000000000000000:/tmp/a:b.prof"), 0);
    assert_int_equal(o.follower.active, 1);
    assert_int_equal(o.follower.report_fd, 5);
    assert_int_equal(o.follower.handoff_fd, -1);
    assert_int_equal(o.follower.parent, 42);
    assert_true(o.follower.run_start == 1700000000000000000ll);
    assert_string_equal(o.follower.base, "/tmp/a:b.prof");
    assert_int_equal(parse(&o, err, 4, "-p", "7", "--follower=5:6:42:1:x"), 0);
    assert_int_equal(o.follower.handoff_fd, 6);
    const char *bad[] = { "--follower=5:6:42:1:", "--follower=5:6:0:1:x", "--follower=5:6:42",
                          "--follower=a:6:42:1:x", "--follower=-2:6:42:1:x",
                          "--follower=5:-2:42:1:x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(&o, err, 4, "-p", "7", bad[i]), EXIT_USAGE);
        assert_non_null(strstr(err, "--follower"));
        assert_null(strchr(err, '\n'));
    }
}

/* --help fits a terminal: at most 25 lines of at most 80 columns, and it
 * names every long option. */
static void test_usage_fits_and_lists_options(void **state)
{
    (void)state;
    char buf[4096];
    FILE *f = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(f);
    options_usage(f);
    fclose(f);
    buf[sizeof(buf) - 1] = '\0';
    int lines = 0;
    for (char *p = buf, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        assert_true(nl - p <= 80);
        lines++;
    }
    assert_true(lines <= 25);
    const char *names[] = { "--pid", "--interval", "--output", "--duration", "--mode",
                            "--native", "--lines", "--mem", "--shim", "--stats", "--quiet",
                            "--children" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_non_null(strstr(buf, names[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_command_keeps_its_own_flags),
        cmocka_unit_test(test_interval_bounds),
        cmocka_unit_test(test_conflicts_and_missing),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_mem),
        cmocka_unit_test(test_children_and_follower),
        cmocka_unit_test(test_usage_fits_and_lists_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
