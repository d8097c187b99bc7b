/*
 * test_report.c - vmprof-report's logic: display names, self/total shares
 * (recursion counted once per sample), the tree merged by name, thread
 * filter, hidden frames, the printed top, tree and compact tree, the
 * exports (collapsed stacks, speedscope JSON, SVG flame graph) on small
 * logs built with the writer, line granularity, folded recursion, and the
 * shares of known functions in the corpus (expected counts computed from
 * vmprof's own reader for the 2022-format files and from a separate Python
 * walk of the bytes for the 2015 ones) with every view run on every file.
 * Expected texts are worked out by hand from the stacks each test writes.
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
    uint64_t w[12];
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

static struct report *build_opts(const struct vmprof_profile *p,
                                 const struct report_opts *o)
{
    struct report *r;

    assert_int_equal(report_build(&r, p, o), 0);
    return r;
}

static struct report *build(const struct vmprof_profile *p, int all_frames,
                            int filter, uint64_t tid)
{
    struct report_opts o = { .tids = &tid, .n_tids = filter ? 1 : 0,
                             .all_frames = all_frames };
    return build_opts(p, &o);
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

enum view { TOP, TREE, COMPACT, COLLAPSED, SPEEDSCOPE, SVG };

/* noinline: at -O3 gcc inlines the memstream and then mistakes the local
 * buf, still referenced by the closed stream, for a dangling pointer. */
__attribute__((noinline))
static char *view_opts(const struct report *r, enum view v,
                       const struct report_text_opts *to)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    switch (v) {
    case TOP: report_print_top(f, r, to); break;
    case TREE: report_print_tree(f, r, to); break;
    case COMPACT: report_print_compact_tree(f, r, to); break;
    case COLLAPSED: assert_int_equal(report_write_collapsed(f, r), 0); break;
    case SPEEDSCOPE: break;             /* needs the profile: see speedscope() */
    case SVG: assert_int_equal(report_write_flamegraph(f, r, NULL), 0); break;
    }
    fclose(f);
    return buf;
}

static char *print_to_string(const struct report *r, int tree, double thr)
{
    struct report_text_opts to = { .top = 50, .threshold_pct = thr };
    return view_opts(r, tree ? TREE : TOP, &to);
}

static char *view(const struct report *r, enum view v)
{
    return view_opts(r, v, NULL);
}

__attribute__((noinline))
static char *speedscope(const struct vmprof_profile *p, const struct report *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    assert_int_equal(report_write_speedscope(f, p, r, "t.prof"), 0);
    fclose(f);
    return buf;
}

static void contains(const char *hay, const char *needle)
{
    if (!hay)
        fail_msg("expected\n%s\nin no output", needle);
    else if (!strstr(hay, needle))
        fail_msg("expected\n%s\nin\n%s", needle, hay);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *q = hay; (q = strstr(q, needle)); q++)
        n++;
    return n;
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
    /* main has no self sample: it is in the tree, not the top list */
    assert_string_equal(out, "\n  self%  total%  function\n"
                             "  99.5%   99.5%  hot (m.py:5)\n"
                             "   0.5%    0.5%  rare (m.py:9)\n");
    free(out);
    {
        struct report_text_opts to = { .top = 1 };
        out = view_opts(r, TOP, &to);
        assert_string_equal(out, "\n  self%  total%  function\n"
                                 "  99.5%   99.5%  hot (m.py:5)\n"
                                 "  (1 of 2 functions with self time; --top N "
                                 "shows more)\n");
        free(out);
    }
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

/* ---- exports ------------------------------------------------------------------ */

/* main;f;g twice and main;f on thread 1; on thread 2 a name with ';' and
 * a newline, an empty stack and a native leaf. */
static struct vmprof_profile *export_log(void)
{
    static const struct stk s[] = {
        { 1, 3, { 0x30, 0x20, 0x10 } },
        { 1, 3, { 0x30, 0x20, 0x10 } },
        { 1, 2, { 0x20, 0x10 } },
        { 2, 2, { 0x40, 0x10 } },
        { 2, 0, { 0 } },
        { 2, 4, { 0x51, 0x30, 0x20, 0x10 } },
    };
    static const struct nm n[] = {
        { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" },
        { 0x30, "py:g:9:m.py" }, { 0x40, "py:we;ird\nname:3:dir/x.py" },
        { 0x51, "n:memcpy:0:-" },
    };
    return make_log(0, "cpython", s, 6, n, 5);
}

static void test_collapsed_exact(void **state)
{
    struct vmprof_profile *p = export_log();
    struct report *r = build(p, 0, 0, 0);
    char *out = view(r, COLLAPSED);

    (void)state;
    /* tree order, children by name; ';' as U+FF1B, '\n' as '?' */
    assert_string_equal(out,
        "(no frames) 1\n"
        "main (m.py:1);f (m.py:5) 1\n"
        "main (m.py:1);f (m.py:5);g (m.py:9) 2\n"
        "main (m.py:1);f (m.py:5);g (m.py:9);memcpy 1\n"
        "main (m.py:1);we\xef\xbc\x9bird?name (dir/x.py:3) 1\n");
    free(out);
    report_free(r);

    r = build(p, 0, 1, 2);                   /* --thread 2 */
    out = view(r, COLLAPSED);
    assert_string_equal(out,
        "(no frames) 1\n"
        "main (m.py:1);f (m.py:5);g (m.py:9);memcpy 1\n"
        "main (m.py:1);we\xef\xbc\x9bird?name (dir/x.py:3) 1\n");
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_thread_selection(void **state)
{
    const struct stk s[] = {
        { 5, 1, { 0x10 } }, { 6, 1, { 0x10 } }, { 6, 1, { 0x20 } },
        { 7, 1, { 0x20 } }, { 6, 1, { 0x20 } },
    };
    const struct nm n[] = { { 0x10, "py:a:1:m.py" }, { 0x20, "py:b:2:m.py" } };
    struct vmprof_profile *p = make_log(0, "cpython", s, 5, n, 2);
    const uint64_t two[] = { 7, 5 };
    struct report_opts o = { .tids = two, .n_tids = 2 };
    struct report *r = build_opts(p, &o);
    uint64_t k;

    (void)state;
    assert_int_equal(report_samples(r), 2);
    shares(r, "a (m.py:1)", 1, 1);
    shares(r, "b (m.py:2)", 1, 1);
    /* threads of the whole log, busiest first */
    assert_int_equal(report_threads(r), 3);
    assert_int_equal(report_thread(r, 0, &k), 6);
    assert_int_equal(k, 3);
    assert_int_equal(report_thread(r, 1, &k), 5);
    assert_int_equal(report_thread(r, 2, &k), 7);
    assert_int_equal(report_thread(r, 3, &k), 0);
    assert_int_equal(k, 0);
    report_free(r);
    vmr_free(p);
}

static void test_speedscope_structure(void **state)
{
    struct vmprof_profile *p = export_log();
    struct report *r = build(p, 0, 0, 0);
    char *out = speedscope(p, r);

    (void)state;
    assert_memory_equal(out, "{\"$schema\":\"https://www.speedscope.app/"
                        "file-format-schema.json\",", 63);
    /* frames in the order the samples met them, then "(no frames)" */
    contains(out, "\"shared\":{\"frames\":[\n"
             "{\"name\":\"main\",\"file\":\"m.py\",\"line\":1},\n"
             "{\"name\":\"f\",\"file\":\"m.py\",\"line\":5},\n"
             "{\"name\":\"g\",\"file\":\"m.py\",\"line\":9},\n"
             "{\"name\":\"we;ird?name\",\"file\":\"dir/x.py\",\"line\":3},\n"
             "{\"name\":\"memcpy\"},\n"
             "{\"name\":\"(no frames)\"}]}");
    /* one profile per thread, samples outermost first in log order, equal
     * neighbours merged, weights in microseconds of the 1 ms period */
    contains(out, "\"profiles\":[\n"
             "{\"type\":\"sampled\",\"name\":\"thread 1\",\"unit\":"
             "\"microseconds\",\"startValue\":0,\"endValue\":3000,\n"
             "\"samples\":[[0,1,2],\n[0,1]],\n\"weights\":[2000,1000]},\n"
             "{\"type\":\"sampled\",\"name\":\"thread 2\",\"unit\":"
             "\"microseconds\",\"startValue\":0,\"endValue\":3000,\n"
             "\"samples\":[[0,3],\n[5],\n[0,1,2,4]],\n"
             "\"weights\":[1000,1000,1000]}],\n");
    contains(out, "\"name\":\"t.prof\",\"activeProfileIndex\":0,");
    free(out);
    report_free(r);

    r = build(p, 0, 1, 99);                  /* nothing selected */
    out = speedscope(p, r);
    contains(out, "\"frames\":[]}");
    contains(out, "\"samples\":[],\"weights\":[]}");
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_escaping(void **state)
{
    const struct stk s[] = { { 1, 3, { 0x30, 0x20, 0x10 } } };
    const struct nm n[] = {
        { 0x10, "py:<a&b>\"q'\\:2:m.py" },
        { 0x20, "py:x\xef\xbf\xbey:3:m.py" },   /* U+FFFE: not XML */
        { 0x30, "py:\xe2\x82\xac uro:4:m.py" },  /* plain UTF-8 stays */
    };
    struct vmprof_profile *p = make_log(0, "cpython", s, 1, n, 3);
    struct report *r = build(p, 0, 0, 0);
    char *out = view(r, SVG);

    (void)state;
    contains(out, "<title>&lt;a&amp;b&gt;&quot;q&apos;\\ (m.py:2)\n");
    contains(out, "<title>x?y (m.py:3)\n");
    contains(out, "<title>\xe2\x82\xac uro (m.py:4)\n");
    assert_null(strstr(out, "\xef\xbf\xbe"));
    free(out);
    out = speedscope(p, r);
    contains(out, "{\"name\":\"<a&b>\\\"q'\\\\\",\"file\":\"m.py\",\"line\":2}");
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_flamegraph_frames(void **state)
{
    struct vmprof_profile *p = export_log();
    struct report *r = build(p, 0, 0, 0);
    char *out = view(r, SVG);

    (void)state;
    assert_memory_equal(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"", 36);
    assert_non_null(strstr(out, "</svg>\n"));
    assert_int_equal(strlen(strstr(out, "</svg>\n")), 7);
    /* one frame per tree node: all, main, f, g, memcpy, we;ird */
    assert_int_equal(count_of(out, "<g class=\"f"), 6);
    contains(out, "data-total=\"6\"");
    /* the root spans the width (1200 - 2 * 10), main 5 of 6 samples */
    contains(out, "<g class=\"f root\" data-s=\"0\" data-n=\"6\"><title>all\n"
             "6 samples, 100.00% (self 1)</title><rect x=\"10.00\"");
    contains(out, "width=\"1180.00\"");
    contains(out, "<g class=\"f\" data-s=\"0\" data-n=\"5\"><title>main (m.py:1)\n"
             "5 samples, 83.33%</title>");
    /* children by name: f first at 0, we;ird after f's 4 samples */
    contains(out, "data-s=\"4\" data-n=\"1\"><title>we;ird?name (dir/x.py:3)\n");
    /* no external resource */
    assert_null(strstr(out, "href"));
    assert_null(strstr(out, "src="));
    assert_int_equal(count_of(out, "]]>"), 2);   /* style and script only */
    free(out);
    report_free(r);
    vmr_free(p);
}

/* ---- granularity and shape --------------------------------------------------- */

static void test_lines_granularity(void **state)
{
    /* LINES: (line, id) pairs, innermost first */
    const struct stk s[] = {
        { 1, 4, { 7, 0x20, 2, 0x10 } },
        { 1, 4, { 8, 0x20, 2, 0x10 } },
        { 1, 4, { 7, 0x20, 3, 0x10 } },
        { 1, 6, { 0, 0x41, 7, 0x20, 3, 0x10 } },   /* native leaf, line 0 */
    };
    const struct nm n[] = { { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" },
                            { 0x41, "n:memcpy:0:-" } };
    struct vmprof_profile *p = make_log(VMPROF_MODE_LINES | VMPROF_MODE_NATIVE,
                                        "cpython", s, 4, n, 3);
    struct report_opts o = { .lines = 1 };
    struct report *r;
    char *out;

    (void)state;
    assert_true(report_has_lines(p));
    r = build_opts(p, &o);
    out = view(r, COLLAPSED);
    assert_string_equal(out, "main (m.py:2);f (m.py:7) 1\n"
                             "main (m.py:2);f (m.py:8) 1\n"
                             "main (m.py:3);f (m.py:7) 1\n"
                             "main (m.py:3);f (m.py:7);memcpy 1\n");
    free(out);
    shares(r, "f (m.py:7)", 2, 3);
    shares(r, "f (m.py:8)", 1, 1);
    out = speedscope(p, r);
    contains(out, "{\"name\":\"f:7\",\"file\":\"m.py\",\"line\":7}");
    contains(out, "{\"name\":\"memcpy\"}");
    free(out);
    out = view(r, TOP);
    contains(out, "function:line\n");
    free(out);
    report_free(r);

    r = build(p, 0, 0, 0);                   /* functions again */
    out = view(r, COLLAPSED);
    assert_string_equal(out, "main (m.py:1);f (m.py:5) 3\n"
                             "main (m.py:1);f (m.py:5);memcpy 1\n");
    free(out);
    report_free(r);
    vmr_free(p);

    p = export_log();
    assert_false(report_has_lines(p));
    vmr_free(p);
}

static void test_fold_recursion(void **state)
{
    const struct stk s[] = {
        { 1, 5, { 0x30, 0x20, 0x20, 0x20, 0x10 } },
        { 1, 3, { 0x20, 0x20, 0x10 } },
    };
    const struct nm n[] = { { 0x10, "py:main:1:m.py" }, { 0x20, "py:f:5:m.py" },
                            { 0x30, "py:g:9:m.py" } };
    struct vmprof_profile *p = make_log(0, "cpython", s, 2, n, 3);
    struct report_opts o = { .fold_recursion = 1 };
    struct report *r = build(p, 0, 0, 0);
    char *out = view(r, COLLAPSED);

    (void)state;
    assert_string_equal(out, "main (m.py:1);f (m.py:5);f (m.py:5) 1\n"
                             "main (m.py:1);f (m.py:5);f (m.py:5);f (m.py:5);"
                             "g (m.py:9) 1\n");
    free(out);
    report_free(r);
    r = build_opts(p, &o);
    out = view(r, COLLAPSED);
    assert_string_equal(out, "main (m.py:1);f (m.py:5) 1\n"
                             "main (m.py:1);f (m.py:5);g (m.py:9) 1\n");
    free(out);
    shares(r, "f (m.py:5)", 1, 2);           /* shares do not change */
    out = print_to_string(r, 1, 0);
    contains(out, "  100.0%   50.0%    f (m.py:5) [recursion 3 deep]\n");
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_compact_tree(void **state)
{
    /* main a b c, then hot (6) or d e f2 g2 cold (3); other (1) */
    struct stk s[10];
    const struct nm n[] = {
        { 0x10, "py:main:1:m.py" }, { 0x20, "py:a:2:m.py" },
        { 0x30, "py:b:3:m.py" }, { 0x40, "py:c:4:m.py" },
        { 0x50, "py:hot:5:m.py" }, { 0x60, "py:d:6:m.py" },
        { 0x70, "py:e:7:m.py" }, { 0x80, "py:f2:8:m.py" },
        { 0x90, "py:cold:9:m.py" }, { 0xa0, "py:other:11:m.py" },
        { 0xb0, "py:g2:10:m.py" },
    };
    const struct stk hot = { 1, 5, { 0x50, 0x40, 0x30, 0x20, 0x10 } };
    const struct stk cold = { 1, 9, { 0x90, 0xb0, 0x80, 0x70, 0x60, 0x40,
                                      0x30, 0x20, 0x10 } };
    const struct stk other = { 1, 2, { 0xa0, 0x10 } };
    struct report_text_opts to = { .threshold_pct = 15 };
    struct vmprof_profile *p;
    struct report *r;
    char *out;

    (void)state;
    for (int i = 0; i < 10; i++)
        s[i] = i < 6 ? hot : i < 9 ? cold : other;
    p = make_log(0, "cpython", s, 10, n, 11);
    r = build(p, 0, 0, 0);
    out = view_opts(r, COMPACT, &to);
    assert_string_equal(out,
        "\n  total%  self%  call tree (15% and up; a \xe2\x86\x92 b: a calls "
        "only b)\n"
        "   90.0%   0.0%  main (m.py:1) \xe2\x86\x92 a (m.py:2) \xe2\x86\x92 "
        "b (m.py:3) \xe2\x86\x92 c (m.py:4)\n"
        "   60.0%  60.0%  \xe2\x94\x9c\xe2\x94\x80 hot (m.py:5)\n"
        "   30.0%  30.0%  \xe2\x94\x94\xe2\x94\x80 d (m.py:6) \xe2\x86\x92 "
        "\xe2\x80\xa6 2 more \xe2\x86\x92 g2 (m.py:10) \xe2\x86\x92 "
        "cold (m.py:9)\n");
    free(out);
    to.max_lines = 2;
    out = view_opts(r, COMPACT, &to);
    contains(out, "hot (m.py:5)\n"
             "  (1 more line above 15%: --tree shows the whole tree)\n");
    assert_null(strstr(out, "cold"));
    free(out);
    report_free(r);
    vmr_free(p);
}

static void test_short_names(void **state)
{
    const struct stk s[] = {
        { 1, 2, { 0x20, 0x10 } }, { 1, 2, { 0x30, 0x10 } },
        { 1, 2, { 0x40, 0x10 } },
    };
    const struct nm n[] = {
        { 0x10, "py:main:1:/srv/app/m.py" }, { 0x20, "py:f:1:a/x.py" },
        { 0x30, "py:f:1:b/x.py" }, { 0x40, "py:g:2:a/y.py" },
    };
    struct vmprof_profile *p = make_log(0, "cpython", s, 3, n, 4);
    struct report *r = build(p, 0, 0, 0);
    struct report_text_opts to = { .top = 10, .full_paths = 1 };
    char *out = print_to_string(r, 1, 0);

    (void)state;
    /* base names where they stay unique, whole paths where they would not */
    contains(out, "main (m.py:1)\n");
    contains(out, "f (a/x.py:1)\n");
    contains(out, "f (b/x.py:1)\n");
    contains(out, "g (y.py:2)\n");
    free(out);
    out = view_opts(r, TOP, &to);
    contains(out, "g (a/y.py:2)\n");
    free(out);
    out = view(r, COLLAPSED);                /* exports keep whole paths */
    contains(out, "main (/srv/app/m.py:1);g (a/y.py:2) 1\n");
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

/* Every view runs; the collapsed counts add up to the samples; the SVG
 * and the JSON are complete. */
static void every_view(const struct vmprof_profile *p, const struct report *r)
{
    struct report_text_opts to = { .top = 10, .threshold_pct = 2,
                                   .max_lines = 20 };
    char *out = view(r, COLLAPSED), *line, *save = NULL;
    uint64_t sum = 0;

    for (line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        sum += strtoull(sp + 1, NULL, 10);
    }
    assert_int_equal(sum, report_samples(r));
    free(out);
    out = view(r, SVG);
    assert_int_equal(strlen(strstr(out, "</svg>\n")), 7);
    free(out);
    out = speedscope(p, r);
    assert_int_equal(strlen(strstr(out, "\"exporter\":\"vmprof-report\"}\n")),
                     28);
    free(out);
    out = view_opts(r, COMPACT, &to);
    free(out);
    out = view_opts(r, TOP, &to);
    free(out);
}

static void corpus_share(const char *file, const char *fn, uint64_t samples,
                         uint64_t self, uint64_t total)
{
    struct vmprof_profile *p = corpus(file);
    struct report *r = build(p, 0, 0, 0);
    struct report_text_opts full = { .threshold_pct = 1, .full_paths = 1 };
    char *out;

    assert_int_equal(report_samples(r), samples);
    shares(r, fn, self, total);
    out = view_opts(r, TREE, &full);
    contains(out, fn);
    free(out);
    every_view(p, r);
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
        cmocka_unit_test(test_collapsed_exact),
        cmocka_unit_test(test_thread_selection),
        cmocka_unit_test(test_speedscope_structure),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_flamegraph_frames),
        cmocka_unit_test(test_lines_granularity),
        cmocka_unit_test(test_fold_recursion),
        cmocka_unit_test(test_compact_tree),
        cmocka_unit_test(test_short_names),
        cmocka_unit_test(test_corpus_shares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
