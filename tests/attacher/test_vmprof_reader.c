/*
 * test_vmprof_reader.c - the vmprof log reader on every file of
 * ../shared/corpus (facts checked against vmprof's own reader 0.6.0, and
 * for the 2015 logs it cannot read, against a separate Python walk of the
 * bytes), on hand-built logs for the formats the corpus lacks (4-byte
 * words, Windows 64, versions 3 and 7, RPython pairs), on cut and corrupt
 * input.
 *
 * VMPROF_CORPUS names the corpus directory (set by meson).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmprof_reader.h"

/* ---- helpers ------------------------------------------------------------- */

static char *corpus_path(const char *name)
{
    const char *dir = getenv("VMPROF_CORPUS");
    char *p;

    assert_non_null(dir);                   /* meson sets it */
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static struct vmprof_profile *corpus(const char *name)
{
    char *path = corpus_path(name), err[256] = "";
    struct vmprof_profile *p;

    if (vmr_read_file(&p, path, err, sizeof err) < 0)
        fail_msg("%s: %s", path, err);
    free(path);
    return p;
}

static uint8_t *corpus_bytes(const char *name, size_t *len)
{
    char *path = corpus_path(name);
    FILE *f = fopen(path, "rb");
    uint8_t *b;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(path);
    *len = (size_t)n;
    return b;
}

/* A log built by hand, word by word. */
struct lb {
    uint8_t b[4096];
    size_t n;
    unsigned ws, as;
};

static void put(struct lb *l, uint64_t v, unsigned size)
{
    assert_true(l->n + size <= sizeof l->b);
    for (unsigned i = 0; i < size; i++)
        l->b[l->n++] = (uint8_t)(v >> (8 * i));
}

static void put_word(struct lb *l, uint64_t v) { put(l, v, l->ws); }
static void put_addr(struct lb *l, uint64_t v) { put(l, v, l->as); }
static void put_u8(struct lb *l, uint8_t v) { put(l, v, 1); }

static void putstr(struct lb *l, const char *s)
{
    size_t n = strlen(s);
    put_word(l, n);
    assert_true(l->n + n <= sizeof l->b);
    memcpy(l->b + l->n, s, n);
    l->n += n;
}

/* Static header and a HEADER record (mode_byte < 0: none, version < 4). */
static void start(struct lb *l, unsigned ws, unsigned as, int version,
                  int mode_byte, const char *interp)
{
    memset(l, 0, sizeof *l);
    l->ws = ws;
    l->as = as;
    put_word(l, 0);
    put_word(l, 3);
    put_word(l, 0);
    put_word(l, 1000);
    put_word(l, as == 8 && ws == 4 ? 1 : 0);
    put_u8(l, 0x05);
    put_u8(l, (uint8_t)(version >> 8));
    put_u8(l, (uint8_t)version);
    if (mode_byte >= 0)
        put_u8(l, (uint8_t)mode_byte);
    put_u8(l, (uint8_t)strlen(interp));
    for (const char *c = interp; *c; c++)
        put_u8(l, (uint8_t)*c);
}

static struct vmprof_profile *parse(const struct lb *l, size_t len)
{
    struct vmprof_profile *p;
    char err[256] = "";

    if (vmr_parse(&p, l->b, len, err, sizeof err) < 0)
        fail_msg("parse failed: %s", err);
    return p;
}

static int parse_fails(const void *b, size_t len, const char *want)
{
    struct vmprof_profile *p = (void *)1;
    char err[256] = "";
    int rc = vmr_parse(&p, b, len, err, sizeof err);

    assert_null(p);
    if (want && !strstr(err, want))
        fail_msg("error '%s' does not say '%s'", err, want);
    return rc;
}

static const char *frame_name(const struct vmprof_profile *p, size_t si,
                              uint32_t i)
{
    return vmr_name(p, p->frame_ids[p->samples[si].first + i]);
}

/* ---- the corpus ------------------------------------------------------------ */

static void test_corpus_lines(void **state)
{
    struct vmprof_profile *p = corpus("cpython311-inprocess-lines.prof");
    const struct vmr_sample *s0;

    (void)state;
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->word_size, 8);
    assert_int_equal(p->version, 6);
    assert_int_equal(p->mode, VMPROF_MODE_LINES);
    assert_int_equal(p->period_usec, 990);
    assert_string_equal(p->interp, "cpython");
    assert_int_equal(p->n_samples, 200);
    assert_int_equal(p->n_names, 32);
    assert_string_equal(vmr_meta(p, "os"), "linux");
    assert_string_equal(vmr_meta(p, "bits"), "64");
    assert_true(p->has_start && p->has_end);
    assert_int_equal(p->start_time.sec, 1795237775);
    assert_int_equal(p->start_time.usec, 273444);
    assert_int_equal(p->end_time.sec, 1795237776);
    assert_int_equal(p->end_time.usec, 90569);
    assert_non_null(p->frame_lines);
    assert_null(p->frame_kinds);
    s0 = &p->samples[0];
    assert_int_equal(s0->depth, 23);         /* 46 words, (line, id) pairs */
    assert_int_equal(s0->tid, 11004888);
    assert_int_equal(p->frame_lines[s0->first], 3);
    assert_int_equal(p->frame_ids[s0->first], 0x7fdbeaac9590);
    assert_string_equal(frame_name(p, 0, 0), "py:fib:2:workload.py");
    assert_string_equal(vmr_name(p, 0x7fdbeaa02130), "py:digest:6:workload.py");
    /* named by both kinds of record: the VIRTUAL_IP name wins */
    assert_string_equal(vmr_name(p, 0x9ee0c0), "py:run_path:262:<frozen runpy>");
    vmr_free(p);
}

static void test_corpus_mem(void **state)
{
    struct vmprof_profile *p = corpus("cpython311-inprocess-mem.prof");
    uint64_t max = 0;

    (void)state;
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->mode, VMPROF_MODE_MEMORY);
    assert_int_equal(p->n_samples, 195);
    assert_int_equal(p->n_names, 18);
    assert_null(p->frame_lines);
    assert_int_equal(p->samples[0].rss_kb, 30284);
    assert_int_equal(p->samples[0].depth, 24);
    for (size_t i = 0; i < p->n_samples; i++)
        if (p->samples[i].rss_kb > max)
            max = p->samples[i].rss_kb;
    assert_int_equal(max, 44576);
    assert_string_equal(vmr_name(p, 0x7f7e58f06130), "py:digest:6:workload.py");
    vmr_free(p);
}

static void test_corpus_native(void **state)
{
    struct vmprof_profile *p = corpus("cpython311-inprocess-native.prof");

    (void)state;
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->mode, VMPROF_MODE_NATIVE);
    assert_int_equal(p->n_samples, 212);
    assert_int_equal(p->n_names, 54);
    assert_int_equal(p->samples[0].depth, 28);
    assert_int_equal(p->frame_ids[p->samples[0].first], 0x4f9e61);
    assert_string_equal(vmr_name(p, 0x7f462409f7f1), "n:SHA256_Update:0:-");
    assert_string_equal(vmr_name(p, 0x666a81), "n:PyDict_Items:0:-");
    assert_string_equal(vmr_name(p, 0x7f4623abe130), "py:digest:6:workload.py");
    assert_null(vmr_name(p, 0x4f9e60));
    vmr_free(p);
}

static void test_corpus_legacy_cpython(void **state)
{
    struct vmprof_profile *p = corpus("vmprof-python-richards.cpython.prof");
    struct vmprof_profile *q = corpus("vmprof-python-wsgi.prof");

    (void)state;
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_true(p->legacy_name);
    assert_int_equal(p->version, 0);
    assert_int_equal(p->mode, 0);
    assert_string_equal(p->interp, "cpython");
    assert_int_equal(p->period_usec, 1000);
    assert_int_equal(p->n_samples, 362);
    assert_int_equal(p->n_names, 26);
    assert_false(p->has_start || p->has_end);
    assert_int_equal(p->samples[0].tid, 0);  /* no thread ids before v1 */
    assert_int_equal(p->samples[0].depth, 49);
    assert_int_equal(p->end_offset, 161755); /* then the memory map text */
    assert_int_equal(p->trailing_bytes, 171431 - 161755);
    assert_string_equal(vmr_name(p, 0x7000000001ed1430),
        "py:runTask:192:/home/fijal/src/pypy/rpython/translator/goal/richards.py");

    assert_int_equal(q->stop, VMR_END_TRAILER);
    assert_int_equal(q->period_usec, 100);
    assert_int_equal(q->n_samples, 375);
    assert_int_equal(q->n_names, 14);
    assert_int_equal(q->trailing_bytes, 16341);
    assert_string_equal(vmr_name(q, 0x70007f8e8d5aa9b0),
                        "py:<module>:1:/vmprof/vmprof-test/app/main.py");
    vmr_free(p);
    vmr_free(q);
}

static void test_corpus_legacy_pypy(void **state)
{
    struct vmprof_profile *p = corpus("vmprof-python-richards.pypy.prof");
    const char *sched =
        "py:schedule:349:/home/fijal/src/pypy/rpython/translator/goal/richards.py";
    int jit = 0;

    (void)state;
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_true(p->legacy_name);
    assert_string_equal(p->interp, "pypy");
    /* 2015 PyPy logs predate the (kind, value) pairs: plain words */
    assert_int_equal(p->mode, 0);
    assert_null(p->frame_kinds);
    assert_int_equal(p->n_samples, 69);
    assert_int_equal(p->n_names, 2127);
    assert_int_equal(p->trailing_bytes, 9353);
    assert_string_equal(vmr_name(p, 0x7700000000000114),
                        "py:set_io_encoding:283:app_main.py");
    /* JIT frames are the code id + 1 */
    assert_null(vmr_name(p, 0x700000000000213d));
    assert_string_equal(vmr_frame_name(p, 0x700000000000213d, &jit), sched);
    assert_int_equal(jit, 1);
    assert_string_equal(vmr_frame_name(p, 0x700000000000213c, &jit), sched);
    assert_int_equal(jit, 0);
    assert_null(vmr_frame_name(p, 0x7ff06dfb8753, &jit));
    vmr_free(p);
}

/* Every cut of a corpus file reads, as a prefix of the whole. */
static void test_corpus_cut_anywhere(void **state)
{
    static const char *const files[] = {
        "cpython311-inprocess-mem.prof", "cpython311-inprocess-lines.prof",
        "vmprof-python-wsgi.prof",
    };

    (void)state;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        size_t len, prev = 0;
        uint8_t *b = corpus_bytes(files[f], &len);
        struct vmprof_profile *whole, *p;
        char err[256];
        size_t step = len > 100000 ? 13 : 1;

        assert_int_equal(vmr_parse(&whole, b, len, err, sizeof err), 0);
        for (size_t cut = 40;; cut = cut + step < whole->end_offset
                                     ? cut + step : whole->end_offset) {
            int last = cut == whole->end_offset;
            uint8_t *copy = malloc(cut);     /* exact size: ASan sees overreads */
            assert_non_null(copy);
            memcpy(copy, b, cut);
            if (vmr_parse(&p, copy, cut, err, sizeof err) < 0)
                fail_msg("%s cut at %zu: %s", files[f], cut, err);
            if (last)
                assert_int_equal(p->stop, VMR_END_TRAILER);
            else
                assert_true(p->stop == VMR_END_EOF ||
                            p->stop == VMR_END_TRUNCATED);
            assert_true(p->end_offset <= cut);
            if (p->stop == VMR_END_EOF)
                assert_int_equal(p->end_offset, cut);
            assert_true(p->n_samples >= prev && p->n_samples <= whole->n_samples);
            for (size_t i = 0; i < p->n_samples; i++) {
                assert_int_equal(p->samples[i].depth, whole->samples[i].depth);
                assert_int_equal(p->samples[i].rss_kb, whole->samples[i].rss_kb);
            }
            prev = p->n_samples;
            vmr_free(p);
            free(copy);
            if (last)
                break;
        }
        assert_int_equal(prev, whole->n_samples);
        vmr_free(whole);
        free(b);
    }
}

/* ---- formats the corpus lacks ------------------------------------------------ */

static void test_four_byte_words(void **state)
{
    struct lb l;
    struct vmprof_profile *p;

    (void)state;
    start(&l, 4, 4, 1, -1, "cpython");       /* 32-bit log, version 1 */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 2);
    put_addr(&l, 0x8000);
    put_addr(&l, 0x9001);
    put_addr(&l, 77);                            /* tid */
    put_u8(&l, 0x02);
    put_addr(&l, 0x8000);
    putstr(&l, "py:f:1:a.py");
    put_u8(&l, 0x03);
    p = parse(&l, l.n);
    assert_int_equal(p->word_size, 4);
    assert_int_equal(p->addr_size, 4);
    assert_int_equal(p->version, 1);
    assert_int_equal(p->n_samples, 1);
    assert_int_equal(p->samples[0].tid, 77);
    assert_int_equal(p->frame_ids[1], 0x9001);
    assert_string_equal(vmr_name(p, 0x8000), "py:f:1:a.py");
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_false(p->has_end);                /* no end time before v5 */
    vmr_free(p);

    start(&l, 4, 8, 6, VMPROF_MODE_MEMORY, "cpython");  /* Windows 64 */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 1);
    put_addr(&l, 0x7ff612345678);
    put_addr(&l, 5);                             /* tid */
    put_addr(&l, 2048);                          /* rss */
    p = parse(&l, l.n);
    assert_int_equal(p->addr_size, 8);
    assert_int_equal(p->frame_ids[0], 0x7ff612345678);
    assert_int_equal(p->samples[0].rss_kb, 2048);
    assert_int_equal(p->stop, VMR_END_EOF);
    vmr_free(p);
}

static void test_old_and_new_versions(void **state)
{
    struct lb l;
    struct vmprof_profile *p;

    (void)state;
    start(&l, 8, 8, 3, -1, "cpython");       /* v3 meant MEMORY */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 1);
    put_addr(&l, 0x1000);
    put_addr(&l, 9);
    put_addr(&l, 4321);
    p = parse(&l, l.n);
    assert_int_equal(p->mode, VMPROF_MODE_MEMORY);
    assert_int_equal(p->samples[0].rss_kb, 4321);
    vmr_free(p);

    start(&l, 8, 8, 7, 0, "cpython");        /* v7: a time per sample */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 1);
    put_addr(&l, 0x1000);
    put_addr(&l, 9);
    put(&l, 123456789, 8);
    put_u8(&l, 0x03);
    put(&l, 5, 8);
    put(&l, 6, 8);
    put(&l, 0, 8);
    p = parse(&l, l.n);
    assert_int_equal(p->samples[0].time_ns, 123456789);
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->end_time.sec, 5);
    vmr_free(p);

    start(&l, 8, 8, 8, 0, "cpython");        /* newer than we know */
    parse_fails(l.b, l.n, "update");
}

static void test_rpython_pairs(void **state)
{
    struct lb l;
    struct vmprof_profile *p;

    (void)state;
    start(&l, 8, 8, 6, 0, "pypy");           /* "pypy" means pairs */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 6);
    put_addr(&l, 1);                             /* CODE */
    put_addr(&l, 0x100);
    put_addr(&l, 3);                             /* JITTED */
    put_addr(&l, 0x200);
    put_addr(&l, 6);                             /* ASSEMBLER */
    put_addr(&l, 0x300);
    put_addr(&l, 1);                             /* tid */
    p = parse(&l, l.n);
    assert_true(p->mode & VMPROF_MODE_RPYTHON);
    assert_non_null(p->frame_kinds);
    assert_int_equal(p->samples[0].depth, 3);
    assert_int_equal(p->frame_ids[1], 0x200);
    assert_int_equal(p->frame_kinds[1], VMR_KIND_JITTED);
    assert_int_equal(p->frame_kinds[2], VMR_KIND_ASSEMBLER);
    vmr_free(p);

    start(&l, 8, 8, 6, VMPROF_MODE_RPYTHON, "rpyvm");
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 3);                             /* odd: not pairs */
    put_addr(&l, 1);
    put_addr(&l, 0x100);
    put_addr(&l, 1);
    put_addr(&l, 1);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    assert_int_equal(p->n_samples, 0);
    vmr_free(p);
}

static void test_lines_odd_depth(void **state)
{
    struct lb l;
    struct vmprof_profile *p;

    (void)state;
    start(&l, 8, 8, 6, VMPROF_MODE_LINES, "cpython");
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 3);
    put_addr(&l, 10);
    put_addr(&l, 0x1000);
    put_addr(&l, 11);                            /* a line without its frame */
    put_addr(&l, 1);
    p = parse(&l, l.n);
    assert_int_equal(p->samples[0].depth, 1);
    assert_int_equal(p->frame_lines[0], 10);
    assert_int_equal(p->stop, VMR_END_EOF);
    vmr_free(p);
}

static void test_names_and_meta(void **state)
{
    struct lb l;
    struct vmprof_profile *p;

    (void)state;
    start(&l, 8, 8, 6, 0, "cpython");
    put_u8(&l, 0x08);                          /* placeholder first */
    put_addr(&l, 0x1000);
    putstr(&l, "n:<native symbol 0x1000>:0:-");
    put_u8(&l, 0x02);
    put_addr(&l, 0x1000);
    putstr(&l, "py:real:1:a.py");
    put_u8(&l, 0x02);
    put_addr(&l, 0x1000);
    putstr(&l, "py:later:1:a.py");
    put_u8(&l, 0x02);
    put_addr(&l, 0x2000);
    put_word(&l, 5);
    memcpy(l.b + l.n, "a\0b:c", 5);          /* NUL inside */
    l.n += 5;
    put_u8(&l, 0x07);
    putstr(&l, "k");
    putstr(&l, "v1");
    put_u8(&l, 0x07);
    putstr(&l, "k");
    putstr(&l, "v2");
    p = parse(&l, l.n);
    assert_int_equal(p->n_names, 2);
    assert_string_equal(vmr_name(p, 0x1000), "py:real:1:a.py");
    assert_string_equal(vmr_name(p, 0x2000), "a?b:c");
    assert_int_equal(p->n_meta, 1);
    assert_string_equal(vmr_meta(p, "k"), "v1");
    assert_int_equal(p->dup_meta, 1);
    assert_null(vmr_meta(p, "v1"));
    vmr_free(p);
}

/* ---- bad input ------------------------------------------------------------------ */

static void test_corrupt_records(void **state)
{
    struct lb l;
    struct vmprof_profile *p;
    size_t good;

    (void)state;
    start(&l, 8, 8, 6, 0, "cpython");
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 1);
    put_addr(&l, 0x1000);
    put_addr(&l, 1);
    good = l.n;

    put_u8(&l, 0x09);                          /* unknown marker */
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    assert_int_equal(p->end_offset, good);
    assert_int_equal(p->n_samples, 1);
    assert_non_null(strstr(p->end_detail, "marker 0x09"));
    vmr_free(p);

    l.n = good;                              /* depth over vmprof's limit */
    put_u8(&l, 0x01);
    put_word(&l, 1);
    put_word(&l, 65537);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    assert_int_equal(p->n_samples, 1);
    vmr_free(p);

    l.n = good;                              /* count must be 1 */
    put_u8(&l, 0x01);
    put_word(&l, 2);
    put_word(&l, 1);
    put_addr(&l, 0x1000);
    put_addr(&l, 1);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    vmr_free(p);

    l.n = good;                              /* negative string length */
    put_u8(&l, 0x02);
    put_addr(&l, 0x1000);
    put_word(&l, (uint64_t)-5);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    assert_int_equal(p->n_names, 0);
    vmr_free(p);

    l.n = good;                              /* string longer than the file */
    put_u8(&l, 0x02);
    put_addr(&l, 0x1000);
    put_word(&l, UINT64_C(1) << 40);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_TRUNCATED);
    vmr_free(p);

    l.n = good;                              /* a second header */
    put_u8(&l, 0x05);
    put_u8(&l, 0);
    put_u8(&l, 6);
    put_u8(&l, 0);
    put_u8(&l, 0);
    p = parse(&l, l.n);
    assert_int_equal(p->stop, VMR_END_CORRUPT);
    vmr_free(p);
}

static void test_not_a_log(void **state)
{
    static const uint8_t gz[] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3,
                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    uint8_t be[40] = { 0 };
    uint8_t text[64];
    struct lb l;
    char err[128];
    struct vmprof_profile *p;

    (void)state;
    parse_fails(gz, sizeof gz, "gunzip");
    be[15] = 3;
    parse_fails(be, sizeof be, "big-endian");
    memset(text, 'x', sizeof text);
    parse_fails(text, sizeof text, "not a vmprof log");
    parse_fails(text, 10, "too short");
    parse_fails(NULL, 0, "too short");
    start(&l, 8, 8, 6, 0, "cpython");
    parse_fails(l.b, 39, "cut short");
    l.n = 40;                                /* header only: empty log */
    p = parse(&l, 40);
    assert_int_equal(p->n_samples, 0);
    assert_int_equal(p->stop, VMR_END_EOF);
    vmr_free(p);
    l.b[40] = 0x42;                          /* garbage right away */
    parse_fails(l.b, 41, "unreadable");

    assert_int_equal(vmr_read_file(&p, "/nonexistent/x.prof", err, sizeof err), -1);
    assert_null(p);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(vmr_read_file(&p, "/tmp", err, sizeof err), -1);
    assert_non_null(strstr(err, "directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_lines),
        cmocka_unit_test(test_corpus_mem),
        cmocka_unit_test(test_corpus_native),
        cmocka_unit_test(test_corpus_legacy_cpython),
        cmocka_unit_test(test_corpus_legacy_pypy),
        cmocka_unit_test(test_corpus_cut_anywhere),
        cmocka_unit_test(test_four_byte_words),
        cmocka_unit_test(test_old_and_new_versions),
        cmocka_unit_test(test_rpython_pairs),
        cmocka_unit_test(test_lines_odd_depth),
        cmocka_unit_test(test_names_and_meta),
        cmocka_unit_test(test_corrupt_records),
        cmocka_unit_test(test_not_a_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
