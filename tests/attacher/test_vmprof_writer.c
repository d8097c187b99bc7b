/*
 * test_vmprof_writer.c - the vmprof log writer: byte-exact output against
 * bytes worked out by hand from ../shared/vmprof-format.md, argument
 * checks, name escaping, write failures (RLIMIT_FSIZE, broken pipe) that
 * must leave a log readable up to its last whole record, and a round trip
 * through our reader.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmprof_reader.h"
#include "vmprof_writer.h"

/* Size of the three parts vmw_open writes for interpreter "cpython":
 * static header 40, HEADER 1+2+1+1+7, TIME_N_ZONE 25. */
#define OPEN_BYTES_CPYTHON (40 + 12 + 25)

static int tmp_fd(void)
{
    char path[] = "/tmp/test_vmprof_writer.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static uint8_t *file_bytes(int fd, size_t *len)
{
    struct stat st;
    uint8_t *b;

    assert_int_equal(fstat(fd, &st), 0);
    b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    *len = (size_t)st.st_size;
    return b;
}

static struct vmprof_profile *parse_fd(int fd)
{
    size_t len;
    uint8_t *b = file_bytes(fd, &len);
    struct vmprof_profile *p;
    char err[256];

    assert_int_equal(vmr_parse(&p, b, len, err, sizeof err), 0);
    free(b);
    return p;
}

static const struct timeval T_START = { 1700000000, 123456 };
static const struct timeval T_END = { 1700000001, 500000 };

/* ---- byte-exact ----------------------------------------------------------- */

static void test_byte_exact_memory_native(void **state)
{
    static const uint8_t expect[] = {
        /* static header: words 0, 3, 0, period 990 (0x3de), 0 */
        0, 0, 0, 0, 0, 0, 0, 0,
        3, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0xde, 0x03, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        /* HEADER: 0x05, version 6 big-endian, mode MEMORY|NATIVE, len 7 */
        0x05, 0x00, 0x06, 0x05, 0x07, 'c', 'p', 'y', 't', 'h', 'o', 'n',
        /* TIME_N_ZONE: 1700000000 s = 0x6553f100, 123456 us = 0x1e240 */
        0x06, 0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0,
        0x40, 0xe2, 0x01, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        /* META os = linux */
        0x07, 2, 0, 0, 0, 0, 0, 0, 0, 'o', 's',
        5, 0, 0, 0, 0, 0, 0, 0, 'l', 'i', 'n', 'u', 'x',
        /* STACKTRACE: count 1, depth 2, 0x401001, 0x7f0000001000,
         * tid 4242 = 0x1092, rss 1234 = 0x4d2 */
        0x01, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        0x01, 0x10, 0x40, 0, 0, 0, 0, 0,
        0x00, 0x10, 0x00, 0x00, 0x00, 0x7f, 0, 0,
        0x92, 0x10, 0, 0, 0, 0, 0, 0,
        0xd2, 0x04, 0, 0, 0, 0, 0, 0,
        /* VIRTUAL_IP 0x7f0000001000 "py:f:1:a.py" (11 bytes) */
        0x02, 0x00, 0x10, 0x00, 0x00, 0x00, 0x7f, 0, 0,
        11, 0, 0, 0, 0, 0, 0, 0,
        'p', 'y', ':', 'f', ':', '1', ':', 'a', '.', 'p', 'y',
        /* NATIVE_SYMBOLS 0x401001 "n:main:0:-" (10 bytes) */
        0x08, 0x01, 0x10, 0x40, 0, 0, 0, 0, 0,
        10, 0, 0, 0, 0, 0, 0, 0,
        'n', ':', 'm', 'a', 'i', 'n', ':', '0', ':', '-',
        /* TRAILER: 1700000001 s = 0x6553f101, 500000 us = 0x7a120 */
        0x03, 0x01, 0xf1, 0x53, 0x65, 0, 0, 0, 0,
        0x20, 0xa1, 0x07, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    };
    struct vmprof_writer_opts o = { 990, VMPROF_MODE_MEMORY | VMPROF_MODE_NATIVE,
                                    "cpython" };
    const uint64_t words[] = { 0x401001, 0x7f0000001000 };
    struct vmprof_writer *w;
    int fd = tmp_fd();
    size_t len;
    uint8_t *b;

    (void)state;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    /* vmw_open flushes what it wrote: the file already starts right. */
    b = file_bytes(fd, &len);
    assert_int_equal(len, OPEN_BYTES_CPYTHON);
    assert_memory_equal(b, expect, len);
    free(b);

    assert_int_equal(vmw_meta(w, "os", "linux"), 0);
    assert_int_equal(vmw_stack(w, words, 2, 4242, 1234), 0);
    assert_int_equal(vmw_virtual_ip(w, 0x7f0000001000, "py:f:1:a.py"), 0);
    assert_int_equal(vmw_native_symbol(w, 0x401001, "n:main:0:-"), 0);
    assert_int_equal(vmw_bytes(w), sizeof expect - 25);
    assert_int_equal(vmw_close_at(w, &T_END), 0);

    b = file_bytes(fd, &len);
    assert_int_equal(len, sizeof expect);
    assert_memory_equal(b, expect, sizeof expect);
    free(b);
    close(fd);
}

static void test_byte_exact_lines(void **state)
{
    static const uint8_t expect[] = {
        0, 0, 0, 0, 0, 0, 0, 0,
        3, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0xe8, 0x03, 0, 0, 0, 0, 0, 0,         /* period 1000 */
        0, 0, 0, 0, 0, 0, 0, 0,
        /* HEADER version 6, mode LINES, "vm" */
        0x05, 0x00, 0x06, 0x02, 0x02, 'v', 'm',
        /* TIME_N_ZONE 0 s 7 us */
        0x06, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        /* STACKTRACE depth 4: line 12, id 0x1000, line 7, id 0x2000;
         * tid 1; no RSS without MEMORY */
        0x01, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
        12, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x10, 0, 0, 0, 0, 0, 0,
        7, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x20, 0, 0, 0, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,
        /* STACKTRACE depth 0, tid 2 */
        0x01, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        2, 0, 0, 0, 0, 0, 0, 0,
        /* TRAILER 1 s 2 us */
        0x03, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    };
    struct vmprof_writer_opts o = { 1000, VMPROF_MODE_LINES, "vm" };
    const uint64_t words[] = { 12, 0x1000, 7, 0x2000 };
    const struct timeval t0 = { 0, 7 }, t1 = { 1, 2 };
    struct vmprof_writer *w;
    int fd = tmp_fd();
    size_t len;
    uint8_t *b;

    (void)state;
    assert_int_equal(vmw_open_at(&w, fd, &o, &t0), 0);
    assert_int_equal(vmw_stack(w, words, 4, 1, 99), 0);
    assert_int_equal(vmw_stack(w, NULL, 0, 2, 0), 0);
    assert_int_equal(vmw_close_at(w, &t1), 0);
    b = file_bytes(fd, &len);
    assert_int_equal(len, sizeof expect);
    assert_memory_equal(b, expect, sizeof expect);
    free(b);
    close(fd);
}

/* ---- arguments -------------------------------------------------------------- */

static void test_open_arguments(void **state)
{
    struct vmprof_writer_opts o = { 1000, 0, NULL };
    struct vmprof_writer *w = (void *)1;
    char longname[300];
    int fd = tmp_fd();
    size_t len;
    uint8_t *b;

    (void)state;
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    o.interp_name = longname;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), -1);
    assert_int_equal(errno, EINVAL);
    assert_null(w);
    o.interp_name = "cpython";
    o.mode_flags = 0x20;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), -1);
    assert_int_equal(errno, EINVAL);
    o.mode_flags = VMPROF_MODE_LINES | VMPROF_MODE_RPYTHON;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(vmw_open_at(&w, -1, &o, &T_START), -1);
    b = file_bytes(fd, &len);
    assert_int_equal(len, 0);                /* failed opens wrote nothing */
    free(b);

    o.mode_flags = 0;
    o.interp_name = NULL;                    /* defaults to "native" */
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);
    b = file_bytes(fd, &len);
    assert_int_equal(len, 40 + 5 + 6 + 25 + 25);
    assert_memory_equal(b + 40, "\x05\x00\x06\x00\x06native", 11);
    free(b);
    close(fd);
}

static void test_record_arguments_not_sticky(void **state)
{
    struct vmprof_writer_opts o = { 1000, VMPROF_MODE_NATIVE, "cpython" };
    struct vmprof_writer *w;
    uint64_t words[3] = { 0x1000, 0x2001, 0x3000 };
    int fd = tmp_fd();
    struct vmprof_profile *p;

    (void)state;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    assert_int_equal(vmw_meta(w, "os", "linux"), 0);
    assert_int_equal(vmw_meta(w, "os", "other"), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(vmw_meta(w, "", "x"), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(vmw_meta(w, "k", "bad \xff utf-8"), -1);
    assert_int_equal(errno, EILSEQ);
    assert_int_equal(vmw_virtual_ip(w, 0x1000, "py:\xc0\x80:1:x"), -1);
    assert_int_equal(errno, EILSEQ);         /* overlong NUL */
    assert_int_equal(vmw_virtual_ip(w, 0, "py:f:1:x"), -1);
    assert_int_equal(errno, EINVAL);         /* 0 reads as a line */
    assert_int_equal(vmw_virtual_ip(w, UINT64_C(1) << 63, "py:f:1:x"), -1);
    assert_int_equal(errno, EINVAL);         /* negative for vmprof */
    assert_int_equal(vmw_native_symbol(w, 0x2000, "n:f:0:-"), -1);
    assert_int_equal(errno, EINVAL);         /* native ids are odd */
    words[1] = 0;
    assert_int_equal(vmw_stack(w, words, 3, 1, 0), -1);
    assert_int_equal(errno, EINVAL);
    words[1] = 0x2001;
    assert_int_equal(vmw_stack(w, NULL, 3, 1, 0), -1);
    assert_int_equal(vmw_error(w), 0);       /* none of that is sticky */

    assert_int_equal(vmw_meta(w, "bits", "64"), 0);
    assert_int_equal(vmw_stack(w, words, 3, 1, 0), 0);
    assert_int_equal(vmw_native_symbol(w, 0x2001, "n:f:0:-"), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);

    p = parse_fd(fd);
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->n_samples, 1);
    assert_int_equal(p->n_meta, 2);
    assert_string_equal(vmr_meta(p, "os"), "linux");
    assert_string_equal(vmr_meta(p, "bits"), "64");
    assert_int_equal(p->n_names, 1);
    vmr_free(p);
    close(fd);
}

static void test_pair_modes(void **state)
{
    struct vmprof_writer_opts lines = { 1000, VMPROF_MODE_LINES, "cpython" };
    struct vmprof_writer_opts rpy = { 1000, 0, "pypy" };
    const uint64_t odd[3] = { 1, 0x1000, 2 };
    const uint64_t lw[2] = { 5, 0x1000 };
    const uint64_t bad_kind[2] = { 2, 0x1000 };   /* BLACKHOLE: vmprof asserts */
    const uint64_t good[4] = { 1, 0x1000, 3, 0x7f00 };
    struct vmprof_writer *w;
    int fd = tmp_fd();

    (void)state;
    assert_int_equal(vmw_open_at(&w, fd, &lines, &T_START), 0);
    assert_int_equal(vmw_stack(w, odd, 3, 1, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(vmw_stack(w, lw, 2, 1, 0), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);
    close(fd);

    fd = tmp_fd();                           /* "pypy" implies pairs */
    assert_int_equal(vmw_open_at(&w, fd, &rpy, &T_START), 0);
    assert_int_equal(vmw_stack(w, odd, 3, 1, 0), -1);
    assert_int_equal(vmw_stack(w, bad_kind, 2, 1, 0), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(vmw_stack(w, good, 4, 1, 0), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);
    close(fd);
}

static void test_depth_limit(void **state)
{
    struct vmprof_writer_opts o = { 1000, 0, "cpython" };
    struct vmprof_writer *w;
    uint64_t *words = malloc((VMPROF_MAX_DEPTH + 1) * sizeof *words);
    struct vmprof_profile *p;
    int fd = tmp_fd();

    (void)state;
    assert_non_null(words);
    for (size_t i = 0; i <= VMPROF_MAX_DEPTH; i++)
        words[i] = 0x1000 + 16 * i;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    assert_int_equal(vmw_stack(w, words, VMPROF_MAX_DEPTH + 1, 1, 0), -1);
    assert_int_equal(errno, EINVAL);
    /* 65536 is allowed (vmprof: depth <= 2**16), twice: the second one
     * no longer fits behind the first in the buffer and forces a flush. */
    assert_int_equal(vmw_stack(w, words, VMPROF_MAX_DEPTH, 1, 0), 0);
    assert_int_equal(vmw_stack(w, words + 1, VMPROF_MAX_DEPTH, 2, 0), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);
    p = parse_fd(fd);
    assert_int_equal(p->n_samples, 2);
    assert_int_equal(p->samples[1].depth, VMPROF_MAX_DEPTH);
    assert_int_equal(p->frame_ids[p->samples[1].first + 65535],
                     0x1000 + 16 * 65536);
    vmr_free(p);
    free(words);
    close(fd);
}

/* ---- names ---------------------------------------------------------------- */

static void test_escape_name(void **state)
{
    char b[64];

    (void)state;
    assert_int_equal(vmprof_escape_name(b, sizeof b, "ns::f"), 2 + 3 + 3 + 1);
    assert_string_equal(b, "ns\xe2\x88\xb6\xe2\x88\xb6" "f");
    vmprof_escape_name(b, sizeof b, "a\tb\nc\x7f" "d");
    assert_string_equal(b, "a?b?c?d");
    vmprof_escape_name(b, sizeof b, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(b, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* invalid: stray continuation, overlong, surrogate, cut sequence */
    vmprof_escape_name(b, sizeof b, "\x80x\xc0\x80y\xed\xa0\x80z\xe2\x88");
    assert_string_equal(b, "?x??y???z??");
    vmprof_escape_name(b, sizeof b, NULL);
    assert_string_equal(b, "");
    /* bounded: never splits a character, always terminated */
    memset(b, 'Z', sizeof b);
    assert_int_equal(vmprof_escape_name(b, 5, "ab::"), 2);
    assert_string_equal(b, "ab");
    assert_int_equal(b[5], 'Z');
    assert_int_equal(vmprof_escape_name(b, 6, "ab::"), 5);
    assert_string_equal(b, "ab\xe2\x88\xb6");
    assert_int_equal(vmprof_escape_name(b, 1, "abc"), 0);
    assert_string_equal(b, "");
    assert_int_equal(vmprof_escape_name(b, 0, "abc"), 0);
}

static void test_format_name(void **state)
{
    char b[128];

    (void)state;
    assert_int_equal(vmprof_format_name(b, sizeof b, "n",
                     "std::vector<int>::push_back", 0, NULL),
                     (int)strlen("n:std\xe2\x88\xb6\xe2\x88\xb6vector<int>"
                                 "\xe2\x88\xb6\xe2\x88\xb6push_back:0:-"));
    assert_string_equal(b, "n:std\xe2\x88\xb6\xe2\x88\xb6vector<int>"
                           "\xe2\x88\xb6\xe2\x88\xb6push_back:0:-");
    assert_true(vmprof_format_name(b, sizeof b, "py", "run", 42,
                                   "C:\\app.py") > 0);
    assert_string_equal(b, "py:run:42:C\xe2\x88\xb6\\app.py");
    assert_int_equal(vmprof_format_name(b, 10, "py", "function", 1, "f.py"), -1);
    /* "py:fn:123:f.py" is 14 bytes: fits in 15 with the NUL, not in 14 */
    assert_int_equal(vmprof_format_name(b, 15, "py", "fn", 123, "f.py"), 14);
    assert_string_equal(b, "py:fn:123:f.py");
    assert_int_equal(vmprof_format_name(b, 14, "py", "fn", 123, "f.py"), -1);
    assert_true(vmprof_utf8_valid("abc\xc3\xa9", 5));
    assert_false(vmprof_utf8_valid("abc\xc3", 4));
    assert_false(vmprof_utf8_valid("a\0b", 3));
    assert_false(vmprof_utf8_valid("\xf4\x90\x80\x80", 4));   /* > U+10FFFF */
}

/* ---- write failures ------------------------------------------------------------- */

/* Runs with the file size limit at `limit` bytes (SIGXFSZ ignored, so
 * writes past it fail with EFBIG), and restores it. */
struct fsize_guard {
    struct rlimit old;
};

static void fsize_limit(struct fsize_guard *g, rlim_t limit)
{
    struct rlimit l;

    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &g->old), 0);
    l = g->old;
    l.rlim_cur = limit;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &l), 0);
}

static void fsize_restore(struct fsize_guard *g)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &g->old), 0);
}

static void test_efbig_on_flush_keeps_whole_records(void **state)
{
    struct vmprof_writer_opts o = { 1000, 0, "cpython" };
    struct vmprof_writer *w;
    uint64_t words[10];
    struct fsize_guard g;
    struct vmprof_profile *p;
    int fd = tmp_fd(), rc, e;
    struct stat st;
    /* a 10-word stack record: 1 + 8 + 8 + 80 + 8 (tid) = 105 bytes */
    const size_t rec = 105, whole = (4096 - OPEN_BYTES_CPYTHON) / rec;

    (void)state;
    for (int i = 0; i < 10; i++)
        words[i] = 0x1000 * (uint64_t)(i + 1);
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    for (int i = 0; i < 100; i++)            /* 10500 bytes, buffered */
        assert_int_equal(vmw_stack(w, words, 10, (uint64_t)i, 0), 0);
    fsize_limit(&g, 4096);
    rc = vmw_flush(w);
    e = errno;
    fsize_restore(&g);
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(vmw_error(w), EFBIG);
    /* sticky: every later call fails the same way, limit or not */
    assert_int_equal(vmw_stack(w, words, 10, 1, 0), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(vmw_meta(w, "k", "v"), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(vmw_flush(w), -1);
    assert_int_equal(vmw_close_at(w, &T_END), -1);
    assert_int_equal(errno, EFBIG);

    /* the write that hit the limit cut a record: the file was cut back */
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, OPEN_BYTES_CPYTHON + whole * rec);
    p = parse_fd(fd);
    assert_int_equal(p->stop, VMR_END_EOF);
    assert_int_equal(p->n_samples, whole);
    assert_int_equal(p->samples[whole - 1].tid, whole - 1);
    assert_int_equal(p->frame_ids[p->samples[whole - 1].first + 9], 0xa000);
    vmr_free(p);
    close(fd);
}

static void test_efbig_when_buffer_fills(void **state)
{
    struct vmprof_writer_opts o = { 1000, VMPROF_MODE_MEMORY, "cpython" };
    struct vmprof_writer *w;
    uint64_t words[100];
    struct fsize_guard g;
    struct vmprof_profile *p;
    int fd = tmp_fd(), rc = 0, e = 0, n = 0;
    struct stat st;
    /* 100 words + tid + rss: 1 + 16 + 800 + 16 = 833 bytes */
    const size_t rec = 833, limit = 65536,
                 whole = (limit - OPEN_BYTES_CPYTHON) / rec;

    (void)state;
    for (int i = 0; i < 100; i++)
        words[i] = 0x10 * (uint64_t)(i + 1);
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    fsize_limit(&g, limit);
    while (n < 100000 && (rc = vmw_stack(w, words, 100, 7, (uint64_t)n)) == 0)
        n++;
    e = errno;
    fsize_restore(&g);
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_true(n > (int)whole);             /* the buffer took more */
    assert_int_equal(vmw_close_at(w, &T_END), -1);

    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, OPEN_BYTES_CPYTHON + whole * rec);
    p = parse_fd(fd);
    assert_int_equal(p->stop, VMR_END_EOF);
    assert_int_equal(p->n_samples, whole);
    assert_int_equal(p->samples[whole - 1].rss_kb, whole - 1);
    vmr_free(p);
    close(fd);
}

static void test_broken_pipe(void **state)
{
    struct vmprof_writer_opts o = { 1000, 0, "cpython" };
    struct vmprof_writer *w = (void *)1;
    const uint64_t words[1] = { 0x1000 };
    uint8_t head[OPEN_BYTES_CPYTHON];
    int fds[2];

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    assert_int_equal(vmw_open_at(&w, fds[1], &o, &T_START), -1);
    assert_int_equal(errno, EPIPE);
    assert_null(w);
    close(fds[1]);

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(vmw_open_at(&w, fds[1], &o, &T_START), 0);
    assert_int_equal(read(fds[0], head, sizeof head), (ssize_t)sizeof head);
    assert_memory_equal(head + 40, "\x05\x00\x06\x00\x07" "cpython", 12);
    assert_int_equal(vmw_stack(w, words, 1, 1, 0), 0);
    close(fds[0]);
    assert_int_equal(vmw_flush(w), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(vmw_stack(w, words, 1, 1, 0), -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(vmw_error(w), EPIPE);
    assert_int_equal(vmw_close(w), -1);
    assert_int_equal(errno, EPIPE);
    close(fds[1]);
}

/* ---- round trip ---------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct vmprof_writer_opts o = { 250, VMPROF_MODE_NATIVE | VMPROF_MODE_MEMORY,
                                    "cpython" };
    struct vmprof_writer *w;
    struct vmprof_profile *p;
    uint64_t words[40];
    int fd = tmp_fd();

    (void)state;
    assert_int_equal(vmw_open_at(&w, fd, &o, &T_START), 0);
    assert_int_equal(vmw_meta(w, "os", "linux"), 0);
    assert_int_equal(vmw_meta(w, "argv", "python3 app.py --x=\xc3\xa9"), 0);
    for (unsigned s = 0; s < 500; s++) {
        unsigned d = 1 + s % 40;
        for (unsigned i = 0; i < d; i++)
            words[i] = (i & 1) ? 0x400001 + 0x100 * i : 0x7f0000000000 + 8 * (s % 7 + i);
        assert_int_equal(vmw_stack(w, words, d, 100 + s % 3, 1000 + s), 0);
    }
    assert_int_equal(vmw_virtual_ip(w, 0x7f0000000000, "py:main:1:app.py"), 0);
    assert_int_equal(vmw_native_symbol(w, 0x400101, "n:f\xe2\x88\xb6g:0:-"), 0);
    assert_int_equal(vmw_close_at(w, &T_END), 0);

    p = parse_fd(fd);
    assert_int_equal(p->stop, VMR_END_TRAILER);
    assert_int_equal(p->word_size, 8);
    assert_int_equal(p->version, 6);
    assert_int_equal(p->mode, VMPROF_MODE_NATIVE | VMPROF_MODE_MEMORY);
    assert_int_equal(p->period_usec, 250);
    assert_string_equal(p->interp, "cpython");
    assert_true(p->has_start && p->has_end);
    assert_int_equal(p->start_time.sec, T_START.tv_sec);
    assert_int_equal(p->start_time.usec, T_START.tv_usec);
    assert_int_equal(p->end_time.usec, T_END.tv_usec);
    assert_string_equal(vmr_meta(p, "argv"), "python3 app.py --x=\xc3\xa9");
    assert_int_equal(p->n_samples, 500);
    for (unsigned s = 0; s < 500; s++) {
        const struct vmr_sample *sm = &p->samples[s];
        assert_int_equal(sm->depth, 1 + s % 40);
        assert_int_equal(sm->tid, 100 + s % 3);
        assert_int_equal(sm->rss_kb, 1000 + s);
        for (unsigned i = 0; i < sm->depth; i++)
            assert_int_equal(p->frame_ids[sm->first + i],
                             (i & 1) ? 0x400001 + 0x100 * i
                                     : 0x7f0000000000 + 8 * (s % 7 + i));
    }
    assert_string_equal(vmr_name(p, 0x7f0000000000), "py:main:1:app.py");
    assert_string_equal(vmr_name(p, 0x400101), "n:f\xe2\x88\xb6g:0:-");
    assert_null(vmr_name(p, 0x400001));
    vmr_free(p);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_exact_memory_native),
        cmocka_unit_test(test_byte_exact_lines),
        cmocka_unit_test(test_open_arguments),
        cmocka_unit_test(test_record_arguments_not_sticky),
        cmocka_unit_test(test_pair_modes),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_escape_name),
        cmocka_unit_test(test_format_name),
        cmocka_unit_test(test_efbig_on_flush_keeps_whole_records),
        cmocka_unit_test(test_efbig_when_buffer_fills),
        cmocka_unit_test(test_broken_pipe),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
