/*
 * test_report.c - vmprof-report's logic: display names, self/total shares
 * (recursion counted once per sample), the tree merged by name, thread
 * filter, hidden frames, the printed top and tree, and the shares of known
 * functions in the corpus (expected counts computed from vmprof's own
 * reader for the 2022-format files and from a separate Python walk of the
 * bytes for the 2015 ones).
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
#include "vmprof_reader.h"
#include "vmprof_writer.h"

/* ---- helpers -------------------------------------------------------------- */

struct stk {
    uint64_t tid;
    size_t n;
    uint64_t w[8];
};

struct nm {
    uint64_t id;
    const char *name;
};

/* A log from our writer, parsed back. */
static struct vmprof_profile *make_log(uint8_t mode, const char *interp,
                                       const struct stk *s, size_t ns,
                                       const struct nm *n, size_t nn)
{
    char path[] = "/tmp/test_report.XXXXXX";
    int fd = mkstemp(path);
    struct vmprof_writer_opts o = { 1000, mode, interp };
    const struct timeval t0 = { 100, 0 }, t1 = { 102, 500000 };
    struct vmprof_writer *w;
    struct vmprof_profile *p;
    char err[256];

    assert_true(fd >= 0);
    assert_int_equal(vmw_open_at(&w, fd, &o, &t0), 0);
    for (size_t i = 0; i < ns; i++)
        assert_int_equal(vmw_stack(w, s[i].w, s[i].n, s[i].tid, 0), 0);
    for (size_t i = 0; i < nn; i++) {
        if (n[i].id & 1)
            assert_int_equal(vmw_native_symbol(w, n[i].id, n[i].name), 0);
        else
            assert_int_equal(vmw_virtual_ip(w, n[i].id, n[i].name), 0);
    }
    assert_int_equal(vmw_close_at(w, &t1), 0);
    close(fd);
    if (vmr_read_file(&p, path, err, sizeof err) < 0)
        fail_msg("%s", err);
    unlink(path);
    return p;
}

static struct report *build(const struct vmprof_profile *p, int all_frames,
                            int filter, uint64_t tid)
{
    struct report_opts o = { filter, tid, all_frames };
    struct report *r;

    assert_int_equal(report_build(&r, p, &o), 0);
    return r;
}

static void shares(const struct report *r, const char *fn, uint64_t self,
                   uint64_t total)
{
    uint64_t s, t;

    if (report_function(r, fn, &s, &t) < 0)
        fail_msg("no function '%s' in the report", fn);
    if (s != self || t != total)
        fail_msg("%s: self %llu total %llu, want %llu %llu", fn,
                 (unsigned long long)s, (unsigned long long)t,
                 (unsigned long long)self, (unsigned long long)total);
}

static char *print_to_string(const struct report *r, int tree, double thr)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    if (tree)
        report_print_tree(f, r, thr);
    else
        report_print_top(f, r, 50);
    fclose(f);
    return buf;
}

/* ---- display names ---------------------------------------------------------- */

static void test_display_names(void **state)
{
    char b[256];

    (void)state;
    report_display_name(b, sizeof b, "py:digest:6:workload.py", 1);
    assert_string_equal(b, "digest (workload.py:6)");
    report_display_name(b, sizeof b, "n:SHA256_Update:0:-", 1);
    assert_string_equal(b, "SHA256_Update");
    report_display_name(b, sizeof b, "n:malloc:0:/lib/libc.so.6", 1);
    assert_string_equal(b, "malloc (/lib/libc.so.6)");
    report_display_name(b, sizeof b, "py:f:7:", 1);
    assert_string_equal(b, "f (line 7)");
    /* an unescaped C++ name from another writer still parses */
    report_display_name(b, sizeof b, "n:ns::f:12:a.cpp", 1);
    assert_string_equal(b, "ns\xe2\x88\xb6\xe2\x88\xb6" "f (a.cpp:12)");
    report_display_name(b, sizeof b, "py:<lambda>", 1);   /* JIT code */
    assert_string_equal(b, "<lambda>");
    report_display_name(b, sizeof b, "no colon", 1);
    assert_string_equal(b, "no colon");
    report_display_name(b, sizeof b, "py:a\x1b[31mb:3:x\ny.py", 1);
    assert_string_equal(b, "a?[31mb (x?y.py:3)");     /* no terminal escapes */
    report_display_name(b, sizeof b, NULL, 0x401001);
    assert_string_equal(b, "0x401001");
    assert_int_equal(report_display_name(b, 8, "py:digest:6:workload.py", 1), 7);
    assert_string_equal(b, "digest ");
}

/* ---- counting ---------------------------------------------------------------- */

static void test_self_total_recursion(void **state)
{
    /* innermost first: f recursing three times under main */
    const struct stk s[] = {
        { 1, 4, { 0x20, 0x20, 0x20, 0x10 } },
        { 1, 2, { 0x30, 0x10 } },
        { 1, 3, { 0x30, 0x20, 0x10 } },
        { 1, 1, { 0x10 } },
    };
    const struct nm n[] = {
        { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" },
        { 0x30, "py:g:9:m.py" },
    };
    struct vmprof_profile *p = make_log(0, "cpython", s, 4, n, 3);
    struct report *r = build(p, 0, 0, 0);
    const char *path[] = { "main (m.py:1)", "f (m.py:5)", "f (m.py:5)",
                           "f (m.py:5)" };

    (void)state;
    assert_int_equal(report_samples(r), 4);
    shares(r, "main (m.py:1)", 1, 4);
    shares(r, "f (m.py:5)", 1, 2);           /* once per sample, not 4 */
    shares(r, "g (m.py:9)", 2, 2);
    assert_int_equal(report_tree_count(r, path, 1), 4);
    assert_int_equal(report_tree_count(r, path, 2), 2);
    assert_int_equal(report_tree_count(r, path, 4), 1);
    assert_int_equal(report_function(r, "nothing", NULL, NULL), -1);
    report_free(r);
    vmr_free(p);
}

static void test_merge_by_name_and_threads(void **state)
{
    /* two ids, one name: a re-created code object */
    const struct stk s[] = {
        { 7, 2, { 0x20, 0x10 } },
        { 7, 2, { 0x22, 0x10 } },
        { 8, 2, { 0x30, 0x10 } },
    };
    const struct nm n[] = {
        { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" },
        { 0x22, "py:f:5:m.py" }, { 0x30, "py:g:9:m.py" },
    };
    struct vmprof_profile *p = make_log(0, "cpython", s, 3, n, 4);
    struct report *r = build(p, 0, 0, 0);
    const char *mf[] = { "main (m.py:1)", "f (m.py:5)" };
    char *out;

    (void)state;
    assert_int_equal(report_threads(r), 2);
    shares(r, "f (m.py:5)", 2, 2);
    assert_int_equal(report_tree_count(r, mf, 2), 2);
    out = print_to_string(r, 1, 0.0);
    /* one merged child, printed once, biggest first */
    assert_non_null(strstr(out, "  100.0%    0.0%  main (m.py:1)\n"
                                "   66.7%   66.7%    f (m.py:5)\n"
                                "   33.3%   33.3%    g (m.py:9)\n"));
    free(out);
    report_free(r);

    r = build(p, 0, 1, 8);                   /* --thread 8 */
    assert_int_equal(report_samples(r), 1);
    shares(r, "g (m.py:9)", 1, 1);
    assert_int_equal(report_function(r, "f (m.py:5)", NULL, NULL), -1);
    report_free(r);
    r = build(p, 0, 1, 9);                   /* no such thread */
    assert_int_equal(report_samples(r), 0);
    report_free(r);
    vmr_free(p);
}

static void test_hidden_frames(void **state)
{
    const struct stk s[] = {
        { 1, 3, { 0x401003, 0x20, 0x10 } },  /* unnamed native leaf */
    };
    const struct nm n[] = { { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" } };
    struct vmprof_profile *p = make_log(0, "cpython", s, 1, n, 2);
    struct vmprof_profile *q = make_log(VMPROF_MODE_NATIVE, "cpython", s, 1, n, 2);
    struct report *r;

    (void)state;
    r = build(p, 0, 0, 0);                   /* not a native log: hidden */
    assert_int_equal(report_hidden_frames(r), 1);
    shares(r, "f (m.py:5)", 1, 1);
    report_free(r);
    r = build(p, 1, 0, 0);                   /* --all-frames */
    assert_int_equal(report_hidden_frames(r), 0);
    shares(r, "0x401003", 1, 1);
    shares(r, "f (m.py:5)", 0, 1);
    report_free(r);
    r = build(q, 0, 0, 0);                   /* native log: shown as hex */
    shares(r, "0x401003", 1, 1);
    report_free(r);
    vmr_free(p);
    vmr_free(q);
}

static void test_rpython_assembler_hidden(void **state)
{
    const struct stk s[] = {
        { 1, 6, { 6, 0x500, 3, 0x20, 1, 0x10 } },   /* asm, jitted f, main */
    };
    const struct nm n[] = { { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" } };
    struct vmprof_profile *p = make_log(0, "pypy", s, 1, n, 2);
    struct report *r = build(p, 1, 0, 0);

    (void)state;
    assert_int_equal(report_hidden_frames(r), 1);
    shares(r, "f (m.py:5)", 1, 1);
    report_free(r);
    vmr_free(p);
}

static void test_print_top_and_threshold(void **state)
{
    struct stk s[200];
    const struct nm n[] = {
        { 0x10, "py:main:1:m.py" }, { 0x20, "py:hot:5:m.py" },
        { 0x30, "py:rare:9:m.py" },
    };
    struct vmprof_profile *p;
    struct report *r;
    char *out;

    (void)state;
    for (int i = 0; i < 200; i++) {
        s[i].tid = 1;
        s[i].n = 2;
        s[i].w[0] = i == 0 ? 0x30 : 0x20;    /* rare: 1 of 200 = 0.5% */
        s[i].w[1] = 0x10;
    }
    p = make_log(0, "cpython", s, 200, n, 3);
    r = build(p, 0, 0, 0);
    out = print_to_string(r, 0, 0);
    assert_non_null(strstr(out, "  self%  total%  function\n"
                                "  99.5%   99.5%  hot (m.py:5)\n"
                                "   0.5%    0.5%  rare (m.py:9)\n"
                                "   0.0%  100.0%  main (m.py:1)\n"));
    free(out);
    out = print_to_string(r, 1, 1.0);
    assert_non_null(strstr(out, "hot (m.py:5)"));
    assert_null(strstr(out, "rare"));        /* under the 1% cut */
    free(out);
    out = print_to_string(r, 1, 0.5);
    assert_non_null(strstr(out, "    0.5%    0.5%    rare (m.py:9)\n"));
    free(out);
    report_free(r);
    vmr_free(p);
}

/* ---- the corpus --------------------------------------------------------------- */

static struct vmprof_profile *corpus(const char *name)
{
    const char *dir = getenv("VMPROF_CORPUS");
    char *path, err[256];
    struct vmprof_profile *p;

    assert_non_null(dir);
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    if (vmr_read_file(&p, path, err, sizeof err) < 0)
        fail_msg("%s: %s", path, err);
    free(path);
    return p;
}

static void corpus_share(const char *file, const char *fn, uint64_t samples,
                         uint64_t self, uint64_t total)
{
    struct vmprof_profile *p = corpus(file);
    struct report *r = build(p, 0, 0, 0);
    char *out;

    assert_int_equal(report_samples(r), samples);
    shares(r, fn, self, total);
    out = print_to_string(r, 1, 1.0);
    assert_non_null(strstr(out, fn));
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_corpus_shares(void **state)
{
    const char *rich = "/home/fijal/src/pypy/rpython/translator/goal/richards.py";
    char fn[256];

    (void)state;
    corpus_share("cpython311-inprocess-lines.prof", "digest (workload.py:6)",
                 200, 163, 163);
    corpus_share("cpython311-inprocess-mem.prof", "digest (workload.py:6)",
                 195, 159, 159);
    corpus_share("cpython311-inprocess-native.prof", "SHA256_Update",
                 212, 161, 161);
    corpus_share("cpython311-inprocess-native.prof", "digest (workload.py:6)",
                 212, 0, 167);
    corpus_share("vmprof-python-wsgi.prof",
                 "cpu_2 (/vmprof/vmprof-test/app/main.py:13)", 375, 205, 205);
    snprintf(fn, sizeof fn, "schedule (%s:349)", rich);
    corpus_share("vmprof-python-richards.cpython.prof", fn, 362, 61, 357);
    /* PyPy 2015: JIT frames (id + 1) count as their function */
    corpus_share("vmprof-python-richards.pypy.prof", fn, 69, 39, 65);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_display_names),
        cmocka_unit_test(test_self_total_recursion),
        cmocka_unit_test(test_merge_by_name_and_threads),
        cmocka_unit_test(test_hidden_frames),
        cmocka_unit_test(test_rpython_assembler_hidden),
        cmocka_unit_test(test_print_top_and_threshold),
        cmocka_unit_test(test_corpus_shares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
