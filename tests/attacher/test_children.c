/*
 * test_children.c - --children's pure parts: the names of child logs
 * (suffix, no suffix, a name this run already wrote, a stale file from an
 * earlier run) and the summary printed from followers' report lines.
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

#include "children.h"

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);  /* the clock of file times */
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static void test_log_names(void **state)
{
    (void)state;
    char dir[] = "/tmp/vmprof-children-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char base[256], out[512], want[512];
    long long start = now_ns();

    snprintf(base, sizeof(base), "%s/app.prof", dir);
    children_log_name(base, start, 1234, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/app.1234.prof", dir);
    assert_string_equal(out, want);

    /* written in this run (a reused pid): the next free name */
    touch(want);
    children_log_name(base, start, 1234, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/app.1234-2.prof", dir);
    assert_string_equal(out, want);
    touch(want);
    children_log_name(base, start, 1234, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/app.1234-3.prof", dir);
    assert_string_equal(out, want);

    /* a file from an earlier run (older than the run's start) is replaced */
    children_log_name(base, now_ns() + 60 * 1000000000ll, 1234, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/app.1234.prof", dir);
    assert_string_equal(out, want);

    /* no .prof suffix: appended; ".prof" alone is not a suffix to move */
    snprintf(base, sizeof(base), "%s/trace.log", dir);
    children_log_name(base, start, 77, out, sizeof(out));
    snprintf(want, sizeof(want), "%s/trace.log.77", dir);
    assert_string_equal(out, want);
    children_log_name(".prof", start, 5, out, sizeof(out));
    assert_string_equal(out, ".prof.5");

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static char *summary_of(const char *lines)
{
    size_t len = strlen(lines);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    memcpy(buf, lines, len);
    static char out[4096];
    memset(out, 0, sizeof(out));
    FILE *f = fmemopen(out, sizeof(out), "w");
    assert_non_null(f);
    children_print_summary(f, buf, len);
    fclose(f);
    free(buf);
    return out;
}

static void test_summary(void **state)
{
    (void)state;
    const char *out = summary_of(
        "300\t=\n"
        "200\t12\t1.5\t/tmp/a.200.prof\tpython3 worker.py\n"
        "100\t-\tpermission denied tracing process 100: run as root\n"
        "301\t=\n");
    assert_string_equal(out,
        "vmprof-attach: followed 4 child processes\n"
        "vmprof-attach: child process 100: not profiled: permission denied tracing "
        "process 100: run as root\n"
        "vmprof-attach: child process 200 (python3 worker.py): 12 samples in 1.5 s, "
        "wrote /tmp/a.200.prof\n"
        "vmprof-attach: 2 more child processes ended before their first sample "
        "(no log kept)\n");

    out = summary_of("9\t=\n");
    assert_string_equal(out,
        "vmprof-attach: followed 1 child process\n"
        "vmprof-attach: 1 more child process ended before its first sample (no log kept)\n");

    out = summary_of("");
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_names),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
