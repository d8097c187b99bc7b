/*
 * test_report_mem.c - vmprof-report's memory views on small logs written
 * with the writer in MEMORY mode: growth between consecutive samples goes
 * to the later sample's innermost function (self) and to each function of
 * its stack once (total, recursion included), decreases are "freed", the
 * thread filter keeps the deltas of the whole log, and the curve shows the
 * extremes and one block character per column. Expected numbers are
 * worked out by hand from the RSS values each test writes.
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

#include "report.h"
#include "report_mem.h"
#include "vmprof_reader.h"
#include "vmprof_writer.h"

#define MAIN 0x1001
#define GROW 0x2001
#define IDLE 0x3001
#define FREE 0x4001

struct smp {
    uint64_t tid, rss;
    size_t n;
    uint64_t w[6];              /* innermost first */
};

static struct vmprof_profile *make_log(uint8_t mode, const struct smp *s, size_t ns)
{
    char path[] = "/tmp/test_report_mem.XXXXXX";
    int fd = mkstemp(path);
    struct vmprof_writer_opts o = { 1000, (uint8_t)(mode | VMPROF_MODE_NATIVE), "native" };
    struct vmprof_writer *w;
    struct vmprof_profile *p;
    char err[256];

    assert_true(fd >= 0);
    assert_int_equal(vmw_open(&w, fd, &o), 0);
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(vmw_stack(w, s[i].w, s[i].n, s[i].tid, s[i].rss), 0);
    assert_int_equal(vmw_native_symbol(w, MAIN, "n:main:1:t.c"), 0);
    assert_int_equal(vmw_native_symbol(w, GROW, "n:grow:10:t.c"), 0);
    assert_int_equal(vmw_native_symbol(w, IDLE, "n:idle:20:t.c"), 0);
    assert_int_equal(vmw_native_symbol(w, FREE, "n:release:30:t.c"), 0);
    assert_int_equal(vmw_close(w), 0);
    close(fd);
    if (vmr_read_file(&p, path, err, sizeof err) < 0)
        fail_msg("%s", err);
    unlink(path);
    return p;
}

static struct report *build(const struct vmprof_profile *p, const uint64_t *tid)
{
    struct report *r;
    struct report_opts o = { .tids = tid, .n_tids = tid ? 1 : 0 };
    assert_int_equal(report_build(&r, p, &o), 0);
    return r;
}

static void growth_is(const struct report *r, const char *fn, uint64_t self, uint64_t total)
{
    uint64_t s = 99, t = 99;
    assert_int_equal(report_mem_growth(r, fn, &s, &t), 0);
    assert_int_equal(s, self);
    assert_int_equal(t, total);
}

/* main -> grow rises in two steps, main -> idle stays flat, main ->
 * release falls, then grow again; one recursive grow counts once. */
static const struct smp steps[] = {
    { 1, 1000, 2, { IDLE, MAIN } },          /* first: no predecessor */
    { 1, 1500, 2, { GROW, MAIN } },          /* +500 grow */
    { 1, 2500, 2, { GROW, MAIN } },          /* +1000 grow */
    { 1, 2500, 2, { IDLE, MAIN } },          /* 0 */
    { 1, 2000, 2, { FREE, MAIN } },          /* -500 freed by release */
    { 1, 2300, 3, { GROW, GROW, MAIN } },    /* +300, recursion: once */
    { 1, 2400, 2, { IDLE, MAIN } },          /* +100 idle */
};

static void test_growth_by_function(void **state)
{
    (void)state;
    struct vmprof_profile *p = make_log(VMPROF_MODE_MEMORY, steps, 7);
    assert_int_equal(report_has_memory(p), 1);
    struct report *r = build(p, NULL);
    growth_is(r, "grow (t.c:10)", 1800, 1800);
    growth_is(r, "idle (t.c:20)", 100, 100);
    growth_is(r, "release (t.c:30)", 0, 0);
    growth_is(r, "main (t.c:1)", 0, 1900);
    uint64_t s, t;
    assert_int_equal(report_mem_growth(r, "nothing (t.c:1)", &s, &t), -1);

    char buf[4096];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_non_null(f);
    struct report_text_opts to = { .top = 20 };
    assert_int_equal(report_print_mem_functions(f, r, &to), 0);
    fclose(f);
    buf[sizeof buf - 1] = '\0';
    /* 1900 KiB grown in all, 500 KiB freed; grow first, then idle, then main */
    assert_non_null(strstr(buf, "1.9 MiB grown, 500 KiB freed"));
    char *g = strstr(buf, "grow (t.c:10)"), *i = strstr(buf, "idle (t.c:20)"),
         *m = strstr(buf, "main (t.c:1)");
    assert_true(g && i && m && g < i && i < m);
    assert_non_null(strstr(buf, "94.7%"));      /* 1800 of 1900 */
    assert_null(strstr(buf, "release"));        /* it grew nothing */
    report_free(r);
    vmr_free(p);
}

/* --thread keeps one thread's samples; each delta is still taken from the
 * previous sample of the whole log (RSS is the process's). */
static void test_thread_filter_keeps_log_deltas(void **state)
{
    (void)state;
    static const struct smp two[] = {
        { 1, 100, 2, { IDLE, MAIN } },
        { 2, 400, 2, { GROW, MAIN } },       /* +300 thread 2 */
        { 1, 450, 2, { IDLE, MAIN } },       /* +50 thread 1 */
        { 2, 950, 2, { GROW, MAIN } },       /* +500 thread 2 */
    };
    struct vmprof_profile *p = make_log(VMPROF_MODE_MEMORY, two, 4);
    uint64_t tid = 2;
    struct report *r = build(p, &tid);
    growth_is(r, "grow (t.c:10)", 800, 800);
    uint64_t s, t;
    assert_int_equal(report_mem_growth(r, "idle (t.c:20)", &s, &t), -1);
    report_free(r);
    tid = 1;
    r = build(p, &tid);
    growth_is(r, "idle (t.c:20)", 50, 50);
    growth_is(r, "main (t.c:1)", 0, 50);
    report_free(r);
    vmr_free(p);
}

static size_t count_str(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *at = hay; (at = strstr(at, needle)); at += strlen(needle))
        n++;
    return n;
}

static void test_curve(void **state)
{
    (void)state;
    struct smp many[100];
    for (size_t i = 0; i < 100; i++)      /* rises to 90 MiB at sample 90, then falls */
        many[i] = (struct smp){ 1, (i <= 90 ? 1024 * i : 1024 * (180 - i)) + 2048, 1, { MAIN } };
    struct vmprof_profile *p = make_log(VMPROF_MODE_MEMORY, many, 100);
    char buf[4096];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    assert_non_null(f);
    report_print_mem_curve(f, p, 0);
    fclose(f);
    buf[sizeof buf - 1] = '\0';
    assert_non_null(strstr(buf, "min 2.0 MiB, max 92.0 MiB at sample 91 of 100"));
    assert_non_null(strstr(buf, "last 83.0 MiB"));
    /* 60 columns: the lowest block first, the full block at the peak */
    size_t cols = 0;
    for (unsigned b = 0x81; b <= 0x88; b++) {
        char ch[4] = { (char)0xe2, (char)0x96, (char)b, 0 };
        cols += count_str(buf, ch);
    }
    assert_int_equal(cols, 60);
    assert_non_null(strstr(buf, "\n  \xe2\x96\x81"));
    assert_non_null(strstr(buf, "\xe2\x96\x88"));

    /* fewer samples than columns: one column per sample */
    f = fmemopen(buf, sizeof buf, "w");
    report_print_mem_curve(f, p, 1000);
    fclose(f);
    cols = 0;
    for (unsigned b = 0x81; b <= 0x88; b++) {
        char ch[4] = { (char)0xe2, (char)0x96, (char)b, 0 };
        cols += count_str(buf, ch);
    }
    assert_int_equal(cols, 100);
    vmr_free(p);
}

static void test_log_without_memory(void **state)
{
    (void)state;
    struct vmprof_profile *p = make_log(0, steps, 7);
    assert_int_equal(report_has_memory(p), 0);
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    report_print_mem_curve(f, p, 0);
    fflush(f);
    assert_int_equal(ftell(f), 0);              /* nothing for such a log */
    struct report *r = build(p, NULL);
    assert_int_equal(report_print_mem_functions(f, r, NULL), 0);
    fclose(f);
    assert_non_null(strstr(buf, "no memory"));
    report_free(r);
    vmr_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth_by_function),
        cmocka_unit_test(test_thread_filter_keeps_log_deltas),
        cmocka_unit_test(test_curve),
        cmocka_unit_test(test_log_without_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
