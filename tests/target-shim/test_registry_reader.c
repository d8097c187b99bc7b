/*
 * test_registry_reader.c - the registry parser (attacher/registry_reader.c)
 * against valid registries built by the shim's writer and against hostile
 * ones: bad magic and versions, offsets and counts out of range,
 * overlapping tables, unterminated or invalid names, record lengths that
 * wrap, and the live tailing of the code and thread tables.
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

#include "registry_reader.h"
#include "registry_writer.h"

#define SEG (256u << 10)            /* test registries: 256 KiB, 64 slots */
#define SLOTS 64u

struct fixture {
    void *buf;
    struct vmprof_reg_header *h;
    char err[256];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    assert_int_equal(posix_memalign(&f->buf, 4096, SEG), 0);
    memset(f->buf, 0, SEG);
    f->h = f->buf;
    assert_int_equal(vmreg_format(f->buf, SEG, SLOTS, VMPROF_REG_KIND_SHADOW, 4242), 0);
    assert_int_equal(vmreg_set_vm(f->buf, VMPROF_REG_KIND_SHADOW, "testvm", 7), 0);
    vmreg_set_text(f->buf, 0x400000, 0x480000);
    vmreg_publish(f->buf);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    free(f->buf);
    free(f);
    return 0;
}

static int open_buf(struct fixture *f, struct registry **r)
{
    return registry_open_buffer(f->buf, SEG, 0, r, f->err, sizeof f->err);
}

/* Expects the buffer to be refused as malformed (-1). */
static void expect_bad(struct fixture *f)
{
    struct registry *r = (struct registry *)1;

    assert_int_equal(open_buf(f, &r), -1);
    assert_null(r);
    assert_true(f->err[0] != '\0');
}

/* ---- header ------------------------------------------------------------ */

static void test_valid(void **state)
{
    struct fixture *f = *state;
    const struct registry_info *in;
    struct registry *r;

    assert_int_equal(open_buf(f, &r), 0);
    in = registry_info(r);
    assert_int_equal(in->abi_version, 1);
    assert_int_equal(in->kind, VMPROF_REG_KIND_SHADOW);
    assert_string_equal(in->vm_name, "testvm");
    assert_int_equal(in->vm_version, 7);
    assert_int_equal(in->creator_pid, 4242);
    assert_true(in->flags & VMPROF_REG_F_TEXT_RANGE);
    assert_int_equal(in->text_lo, 0x400000);
    assert_int_equal(in->text_hi, 0x480000);
    assert_int_equal(in->thread_slots, SLOTS);
    registry_close(r);
}

/* The layout as the ABI document states it, written with literal offsets,
 * so that writer and reader cannot agree on a wrong layout unnoticed. */
static void test_hand_made_layout(void **state)
{
    struct fixture *f = *state;
    unsigned char *b = f->buf;
    struct registry *r;
    uint64_t v64;
    uint32_t v32;

    memset(b, 0, SEG);
#define PUT64(off, v) (v64 = (v), memcpy(b + (off), &v64, 8))
#define PUT32(off, v) (v32 = (v), memcpy(b + (off), &v32, 4))
    memcpy(b, "MPROFREG", 8);
    PUT32(8, 1);                /* abi */
    PUT32(12, 256);             /* header size */
    PUT64(16, SEG);
    PUT32(24, 1);               /* cpython */
    PUT32(28, 1);               /* text range */
    PUT32(32, 99);              /* creator */
    memcpy(b + 40, "cpython", 8);
    PUT64(104, 0x030b07f0);
    PUT64(112, 0x7f0000001000);
    PUT64(120, 0x1000);
    PUT64(128, 0x2000);
    PUT32(136, 16);
    PUT32(140, 0);
    PUT32(144, 8);
    PUT32(148, 32);
    PUT64(152, 4096);
    PUT32(160, 4);
    PUT32(164, 1);              /* hwm */
    PUT64(168, 8192);
    PUT64(176, 4096);
    PUT64(184, 32);             /* one record of 16 + 16 */
    PUT32(4096 + 0, 2);         /* slot 0: published, tid 77, top 0x7ffc0000 */
    PUT32(4096 + 4, 77);
    PUT64(4096 + 8, 0x7ffc0000);
    PUT64(4096 + 16, 1);
    PUT64(8192, 0x1234);        /* record: id, len 9, kind 1 */
    PUT32(8200, 9);
    PUT32(8204, 1);
    memcpy(b + 8208, "c:f:1:x.c", 9);
#undef PUT64
#undef PUT32
    assert_int_equal(registry_open_buffer(b, SEG, 99, &r, f->err, sizeof f->err), 0);
    assert_int_equal(registry_info(r)->kind, VMPROF_REG_KIND_CPYTHON);
    assert_int_equal(registry_info(r)->vm_version, 0x030b07f0);
    assert_int_equal(registry_info(r)->py_runtime, 0x7f0000001000);
    assert_string_equal(registry_info(r)->vm_name, "cpython");
    assert_int_equal(registry_thread_anchor(r, 77, &v64), 0);
    assert_int_equal(v64, 0x7ffc0000);
    assert_int_equal(registry_poll_codes(r, NULL, NULL, 0), 1);
    registry_close(r);
}

static void test_unpublished_and_magic(void **state)
{
    struct fixture *f = *state;
    struct registry *r;

    f->h->magic = 0;
    assert_int_equal(open_buf(f, &r), 1);
    f->h->magic = VMPROF_REG_MAGIC ^ 1;
    expect_bad(f);
}

static void test_version(void **state)
{
    struct fixture *f = *state;

    f->h->abi_version = 2;
    expect_bad(f);
    assert_non_null(strstr(f->err, "version 2"));
}

static void test_small_and_unaligned(void **state)
{
    struct fixture *f = *state;
    struct registry *r;

    assert_int_equal(registry_open_buffer(f->buf, 100, 0, &r, f->err, sizeof f->err), -1);
    assert_int_equal(registry_open_buffer((char *)f->buf + 4, SEG - 8, 0, &r, f->err,
                                          sizeof f->err), -1);
    /* tables end beyond a buffer that holds only the header page */
    assert_int_equal(registry_open_buffer(f->buf, 4096, 0, &r, f->err, sizeof f->err), -1);
}

static void test_header_fields(void **state)
{
    struct fixture *f = *state;
    struct vmprof_reg_header saved = *f->h;

    f->h->header_size = 100;
    expect_bad(f);
    *f->h = saved;
    f->h->header_size = 260;    /* not a multiple of 8 */
    expect_bad(f);
    *f->h = saved;
    f->h->vm_kind = 7;
    expect_bad(f);
    *f->h = saved;
    f->h->frame_size = 24;
    expect_bad(f);
    *f->h = saved;
    f->h->frame_id_off = 4;
    expect_bad(f);
    *f->h = saved;
    f->h->thread_slot_size = 16;
    expect_bad(f);
    *f->h = saved;
    f->h->total_size = 8192;    /* the tables lie beyond the stated size */
    expect_bad(f);
}

static void test_table_ranges(void **state)
{
    struct fixture *f = *state;
    struct vmprof_reg_header saved = *f->h;

    f->h->thread_slot_count = 0xffffffffu;          /* huge count */
    expect_bad(f);
    *f->h = saved;
    f->h->thread_slot_count = VMPROF_REG_MAX_THREAD_SLOTS;   /* does not fit */
    expect_bad(f);
    *f->h = saved;
    f->h->thread_table_off = UINT64_MAX - 8;        /* wraps */
    expect_bad(f);
    *f->h = saved;
    f->h->thread_table_off = 4100;                  /* misaligned */
    expect_bad(f);
    *f->h = saved;
    f->h->thread_table_off = 8;                     /* inside the header */
    expect_bad(f);
    *f->h = saved;
    f->h->code_table_off = SEG + 8;                 /* beyond the end */
    expect_bad(f);
    *f->h = saved;
    f->h->code_table_size = UINT64_MAX - 4096;      /* wraps */
    expect_bad(f);
    *f->h = saved;
    f->h->code_table_off = 4096 + 8;                /* overlaps the thread table */
    f->h->code_table_size = 1024;
    expect_bad(f);
    *f->h = saved;
    f->h->thread_table_off = saved.code_table_off + 64;   /* thread table inside code table */
    expect_bad(f);
}

static void test_vm_name(void **state)
{
    struct fixture *f = *state;

    memset(f->h->vm_name, 'a', sizeof f->h->vm_name);      /* unterminated */
    expect_bad(f);
    memcpy(f->h->vm_name, "bad\xc3(\0", 7);                /* invalid UTF-8 */
    expect_bad(f);
    memcpy(f->h->vm_name, "ctl\n\0", 5);                   /* control char */
    expect_bad(f);
    memcpy(f->h->vm_name, "\xed\xa0\x80\0", 4);            /* surrogate */
    expect_bad(f);
    memcpy(f->h->vm_name, "caf\xc3\xa9\0", 6);             /* fine */
    {
        struct registry *r;

        assert_int_equal(open_buf(f, &r), 0);
        assert_string_equal(registry_info(r)->vm_name, "caf\xc3\xa9");
        registry_close(r);
    }
}

static void test_text_range_sanitised(void **state)
{
    struct fixture *f = *state;
    struct registry *r;

    f->h->text_lo = 0x500000;   /* inverted */
    f->h->text_hi = 0x400000;
    assert_int_equal(open_buf(f, &r), 0);
    assert_false(registry_info(r)->flags & VMPROF_REG_F_TEXT_RANGE);
    assert_int_equal(registry_info(r)->text_lo, 0);
    assert_int_equal(registry_info(r)->text_hi, 0);
    registry_close(r);
    f->h->text_lo = 0x1000;     /* kernel half */
    f->h->text_hi = UINT64_C(0xffffffff81000000);
    assert_int_equal(open_buf(f, &r), 0);
    assert_false(registry_info(r)->flags & VMPROF_REG_F_TEXT_RANGE);
    registry_close(r);
}

static void test_inherited(void **state)
{
    struct fixture *f = *state;
    struct registry *r;

    assert_int_equal(registry_open_buffer(f->buf, SEG, 4243, &r, f->err, sizeof f->err), 1);
    assert_null(r);
    assert_non_null(strstr(f->err, "inherited"));
    assert_int_equal(registry_open_buffer(f->buf, SEG, 4242, &r, f->err, sizeof f->err), 0);
    registry_close(r);
}

/* ---- code table -------------------------------------------------------- */

struct seen {
    int n;
    uint64_t id[16];
    char name[16][64];
};

static void collect(void *arg, uint64_t id, const char *name, size_t len)
{
    struct seen *s = arg;

    assert_int_equal(strlen(name), len);
    if (s->n < 16) {
        s->id[s->n] = id;
        snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    }
    s->n++;
}

static void append(struct fixture *f, uint64_t id, const char *name)
{
    assert_int_equal(vmreg_code_append(f->buf, id, name, strlen(name)), 0);
}

static void test_codes_tailing(void **state)
{
    struct fixture *f = *state;
    struct seen s = { 0 };
    struct registry *r;

    assert_int_equal(open_buf(f, &r), 0);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);
    append(f, 10, "py:a:1:a.py");
    append(f, 20, "py:bb:2:b.py");
    append(f, 30, "py:ccc:3:c.py");
    assert_int_equal(registry_codes_pending(r), 1);
    assert_int_equal(registry_poll_codes(r, collect, &s, 2), 2);    /* max */
    assert_int_equal(registry_codes_pending(r), 1);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 1);
    assert_int_equal(registry_codes_pending(r), 0);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);
    append(f, 40, "py:d:4:d.py");
    append(f, 10, "py:a2:5:a.py");                /* id registered again */
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 2);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.id[0], 10);
    assert_string_equal(s.name[0], "py:a:1:a.py");
    assert_int_equal(s.id[2], 30);
    assert_string_equal(s.name[2], "py:ccc:3:c.py");
    assert_int_equal(s.id[4], 10);
    assert_string_equal(s.name[4], "py:a2:5:a.py");
    registry_close(r);
}

/* Writes a raw record at the end of the committed table and commits it. */
static void append_raw(struct fixture *f, uint64_t id, uint32_t len, uint32_t kind,
                       const void *name, size_t name_bytes, uint64_t commit_bytes)
{
    unsigned char *p = (unsigned char *)f->buf + f->h->code_table_off + f->h->code_committed;
    struct vmprof_reg_code_record rec = { .id = id, .len = len, .kind = kind };

    memcpy(p, &rec, sizeof rec);
    memcpy(p + sizeof rec, name, name_bytes);
    f->h->code_committed += commit_bytes;
}

static void test_codes_malformed_skipped(void **state)
{
    struct fixture *f = *state;
    struct registry_stats st;
    struct seen s = { 0 };
    struct registry *r;

    assert_int_equal(open_buf(f, &r), 0);
    append(f, 1, "ok:one:1:x");
    append_raw(f, 2, 4, VMPROF_REG_REC_CODE, "a\xff" "bc", 4, 24);     /* bad UTF-8 */
    append_raw(f, 3, 4, VMPROF_REG_REC_CODE, "a\0bc", 4, 24);          /* NUL inside */
    append_raw(f, 4, 4, VMPROF_REG_REC_CODE, "a\tbc", 4, 24);          /* control */
    append_raw(f, 5, 4, 99, "abcd", 4, 24);                            /* unknown kind */
    append(f, 6, "ok:two:2:y");
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 2);
    assert_int_equal(s.id[0], 1);
    assert_int_equal(s.id[1], 6);
    registry_stats(r, &st);
    assert_int_equal(st.bad_records, 4);
    assert_int_equal(st.codes_read, 2);
    assert_false(st.code_table_broken);
    registry_close(r);
}

static void test_codes_bad_length_breaks(void **state)
{
    struct fixture *f = *state;
    struct registry_stats st;
    struct seen s = { 0 };
    struct registry *r;

    assert_int_equal(open_buf(f, &r), 0);
    append(f, 1, "ok:one:1:x");
    /* a length that would wrap 32-bit arithmetic (16 + 0xfffffff8 + 7) */
    append_raw(f, 2, 0xfffffff9u, VMPROF_REG_REC_CODE, "", 0, 24);
    append(f, 3, "ok:after:1:x");
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 1);
    registry_stats(r, &st);
    assert_true(st.code_table_broken);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);   /* for good */
    assert_int_equal(registry_codes_pending(r), 0);
    registry_close(r);

    /* a zero length is as fatal: the next record cannot be found */
    memset((char *)f->buf + f->h->code_table_off, 0, 256);
    f->h->code_committed = 0;
    append_raw(f, 2, 0, VMPROF_REG_REC_CODE, "", 0, 16);
    append(f, 3, "ok:after:1:x");
    assert_int_equal(open_buf(f, &r), 0);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);
    registry_stats(r, &st);
    assert_true(st.code_table_broken);
    registry_close(r);
}

static void test_codes_partial_commit(void **state)
{
    struct fixture *f = *state;
    struct registry_stats st;
    struct seen s = { 0 };
    struct registry *r;
    uint64_t full;

    assert_int_equal(open_buf(f, &r), 0);
    append(f, 1, "ok:one:1:x");
    append(f, 2, "ok:two:2:some/longer/file.c");
    full = f->h->code_committed;
    f->h->code_committed = full - 8;     /* the second record crosses it */
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 1);
    registry_stats(r, &st);
    assert_false(st.code_table_broken);
    f->h->code_committed = full;
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 1);
    assert_string_equal(s.name[1], "ok:two:2:some/longer/file.c");
    f->h->code_committed = 8;            /* going backwards: nothing */
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);
    f->h->code_committed = UINT64_MAX;   /* beyond the table: clamped */
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 0);
    registry_close(r);
}

static void test_codes_fill_table(void **state)
{
    struct fixture *f = *state;
    char name[VMPROF_REG_NAME_MAX + 1];
    struct registry *r;
    int n = 0, got;

    memset(name, 'x', VMPROF_REG_NAME_MAX);
    name[VMPROF_REG_NAME_MAX] = '\0';
    assert_int_equal(vmreg_code_append(f->buf, 1, name, VMPROF_REG_NAME_MAX + 1), -1);
    assert_int_equal(errno, EINVAL);
    while (vmreg_code_append(f->buf, (uint64_t)n, name, VMPROF_REG_NAME_MAX) == 0)
        n++;
    assert_int_equal(errno, ENOSPC);
    assert_true(n > 10);
    assert_int_equal(open_buf(f, &r), 0);
    got = registry_poll_codes(r, NULL, NULL, 0);
    assert_int_equal(got, n);
    {
        struct registry_stats st;

        registry_stats(r, &st);
        assert_int_equal(st.codes_dropped, 2);      /* the EINVAL and the ENOSPC */
        assert_int_equal(st.codes_registered, (uint64_t)n);
    }
    registry_close(r);
}

/* ---- thread table ------------------------------------------------------ */

static void test_threads(void **state)
{
    struct fixture *f = *state;
    struct registry *r;
    uint64_t top = 0;
    int s1, s2;

    assert_int_equal(open_buf(f, &r), 0);
    assert_int_equal(registry_thread_anchor(r, 100, &top), 1);
    s1 = vmreg_thread_add(f->buf, 100, 0x7ffd1000, 1);
    s2 = vmreg_thread_add(f->buf, 200, 0x7ffd2000, 2);
    assert_true(s1 >= 0 && s2 >= 0 && s1 != s2);
    assert_int_equal(registry_thread_anchor(r, 100, &top), 0);
    assert_int_equal(top, 0x7ffd1000);
    assert_int_equal(registry_thread_anchor(r, 200, &top), 0);
    assert_int_equal(top, 0x7ffd2000);
    assert_int_equal(registry_thread_anchor(r, 300, &top), 1);
    assert_int_equal(registry_thread_anchor(r, 0, &top), 1);
    assert_int_equal(registry_thread_anchor(r, -5, &top), 1);

    /* unregister, then the slot is reused by another thread */
    vmreg_thread_clear(f->buf, (uint32_t)s1);
    assert_int_equal(registry_thread_anchor(r, 100, &top), 1);
    assert_int_equal(vmreg_thread_add(f->buf, 300, 0x7ffd3000, 3), s1);
    assert_int_equal(registry_thread_anchor(r, 300, &top), 0);
    assert_int_equal(top, 0x7ffd3000);

    /* tid 200 registers again (cached before): the new entry wins */
    vmreg_thread_clear_tid(f->buf, 200);
    vmreg_thread_add(f->buf, 200, 0x7ffd4000, 4);
    assert_int_equal(registry_thread_anchor(r, 200, &top), 0);
    assert_int_equal(top, 0x7ffd4000);
    /* a stale duplicate the shim could not clear: the newest seq wins */
    vmreg_thread_add(f->buf, 200, 0x7ffd5000, 5);
    r = (registry_close(r), NULL);
    assert_int_equal(open_buf(f, &r), 0);
    assert_int_equal(registry_thread_anchor(r, 200, &top), 0);
    assert_int_equal(top, 0x7ffd5000);
    registry_close(r);
}

static void test_threads_hostile(void **state)
{
    struct fixture *f = *state;
    struct vmprof_reg_thread_slot *s =
        (struct vmprof_reg_thread_slot *)((char *)f->buf + f->h->thread_table_off);
    struct registry *r;
    uint64_t top;

    assert_int_equal(open_buf(f, &r), 0);
    vmreg_thread_add(f->buf, 11, 0x7ffd1001, 1);                 /* misaligned */
    vmreg_thread_add(f->buf, 12, 0, 2);                          /* null */
    vmreg_thread_add(f->buf, 13, UINT64_C(0xffff880000000000), 3);  /* kernel */
    assert_int_equal(registry_thread_anchor(r, 11, &top), -1);
    assert_int_equal(registry_thread_anchor(r, 12, &top), -1);
    assert_int_equal(registry_thread_anchor(r, 13, &top), -1);
    /* a slot being written is not read */
    vmreg_thread_add(f->buf, 14, 0x7ffd2000, 4);
    s[3].state = VMPROF_REG_SLOT_WRITING;
    assert_int_equal(registry_thread_anchor(r, 14, &top), 1);
    /* a published slot beyond the high-water mark is not seen; a mark
     * beyond the table is clamped to it */
    s[SLOTS - 1].state = VMPROF_REG_SLOT_PUBLISHED;
    s[SLOTS - 1].tid = 15;
    s[SLOTS - 1].top_addr = 0x7ffd3000;
    assert_int_equal(registry_thread_anchor(r, 15, &top), 1);
    f->h->thread_hwm = 0xffffffffu;
    assert_int_equal(registry_thread_anchor(r, 15, &top), 0);
    assert_int_equal(top, 0x7ffd3000);
    registry_close(r);
}

/* ---- /proc ------------------------------------------------------------- */

static void test_open_processes(void **state)
{
    struct fixture *f = *state;
    struct registry *r;

    /* this test does not load the shim: no registry */
    assert_int_equal(registry_open(getpid(), &r, f->err, sizeof f->err), 1);
    assert_null(r);
    /* no such process: an error that says so */
    assert_int_equal(registry_open(0x3ffffff0, &r, f->err, sizeof f->err), -1);
    assert_non_null(strstr(f->err, "no such process"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_made_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpublished_and_magic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_and_unaligned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vm_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_range_sanitised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inherited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_tailing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_malformed_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_bad_length_breaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_partial_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codes_fill_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_processes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
