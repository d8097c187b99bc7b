/*
 * test_cpython_names.c - vm_cpython's names, ids, lines and read batching,
 * on synthetic CPython 3.11 and 3.12 images built in this process's own
 * memory and read through the real path (vm_cpython_create,
 * process_vm_readv on ourselves, every syscall counted by remote_mem).
 * Offsets come from cpython_layout's static tables, which
 * test_cpython_layout checks against the real headers.
 *
 * Checked: names are emitted before their ids are returned, with the
 * right text and lines; a warm capture of an unchanged stack is one
 * syscall; a new code object on top costs two more (its head, then its
 * strings and line table), whatever is cached; a code object replaced at
 * the same address, even with the same name pointers (only the strings'
 * contents differ), gets a new id and is never lent the old name; a
 * changed line table is seen; the snapshot's copy of the C stack spares
 * reading it (the stack page is made unreadable to prove it). On 3.12, a
 * code object whose co_version is unchanged is proved without reading its
 * strings (their pages are made unreadable to prove it), and a new
 * co_version, or none (0), means a proof by contents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpython_layout.h"
#include "vm_cpython.h"

#define PAGE 4096u
#define NPAGES 32
#define TID 4242
#define V311 0x030b02f0u
#define V312 0x030c01f0u

/* Page of each object in the image. */
enum {
    P_RUNTIME = 0, P_INTERP = 1, P_TSTATE = 2, P_TYPES = 3,
    P_STACK = 6, P_FRAMES = 8, P_CODE1 = 10, P_CODE2 = 11, P_CODE3 = 12,
    P_STRS = 14, P_STRS3 = 15, P_LT = 16, P_LT3 = 17,
};

struct img {
    uint8_t *base;
    uint32_t version;
    struct cpython_layout L;
    uint64_t code[3], qual[3], file, lt[3], frame[3], cframe, entry;
    uint64_t anchor;                /* of every frame */
};

struct names {
    int n;
    uint64_t id[64];
    char text[64][128];
};

static struct img I;
static struct names N;
static struct remote_mem MEM;

static uint64_t A(unsigned page, unsigned off)
{
    return (uint64_t)(uintptr_t)I.base + page * PAGE + off;
}

static void put64(uint64_t addr, uint64_t v)
{
    memcpy((void *)(uintptr_t)addr, &v, 8);
}

static void put32(uint64_t addr, uint32_t v)
{
    memcpy((void *)(uintptr_t)addr, &v, 4);
}

static void put_str(uint64_t at, uint64_t type, const char *s)
{
    const struct cpython_layout *L = &I.L;
    put64(at + L->ob_type, type);
    put64(at + L->str_length, strlen(s));
    /* kind 1, compact, ascii, ready (3.11's state bits) */
    put32(at + L->str_state, 1u << 2 | 1u << 5 | 1u << 6 | 1u << 7);
    memcpy((void *)(uintptr_t)(at + L->str_ascii_size), s, strlen(s));
}

static void put_bytes(uint64_t at, uint64_t type, const uint8_t *b, size_t n)
{
    put64(at + I.L.ob_type, type);
    put64(at + I.L.ob_size, n);
    memcpy((void *)(uintptr_t)(at + I.L.by_sval), b, n);
}

/* Location table: 8 code units on firstlineno + d1, 8 on + d1 + d2
 * (entries of code 13: a line delta, no columns). */
static void put_lt(uint64_t at, uint64_t type, uint8_t d1, uint8_t d2)
{
    const uint8_t t[] = { 0x80 | 13 << 3 | 7, (uint8_t)(d1 << 1),
                          0x80 | 13 << 3 | 7, (uint8_t)(d2 << 1) };
    put_bytes(at, type, t, sizeof t);
}

static void put_code(int k, uint64_t type, uint64_t qual, uint64_t lt)
{
    const struct cpython_layout *L = &I.L;
    uint64_t c = I.code[k];
    put64(c + L->ob_type, type);
    put64(c + L->ob_size, 16);                  /* code units */
    put32(c + L->co_firstlineno, 10 + 100 * (uint32_t)k);
    put64(c + L->co_filename, I.file);
    put64(c + L->co_qualname, qual);
    put64(c + L->co_linetable, lt);
    if (L->co_version != CPY_OFF_NONE)
        put32(c + L->co_version, 1 + (uint32_t)k);
}

/* What the interpreter does when code k is replaced by a new code object
 * at the same address: the new one gets the next co_version (3.12+). */
static void renew_code(int k)
{
    static uint32_t next = 100;
    if (I.L.co_version != CPY_OFF_NONE)
        put32(I.code[k] + I.L.co_version, next++);
}

/* Frame f runs code k at code unit `unit`. */
static void put_frame(int f, int k, unsigned unit)
{
    const struct cpython_layout *L = &I.L;
    put64(I.frame[f] + L->fr_code, I.code[k]);
    put64(I.frame[f] + L->fr_instr, I.code[k] + L->co_code_adaptive + 2 * unit);
}

static void build(uint32_t version)
{
    struct cpython_layout *L = &I.L;
    char err[256];
    I.version = version;
    assert_int_equal(cpython_layout_init(version, NULL, 0, L, err, sizeof err), 0);
    memset(I.base, 0, NPAGES * PAGE);
    uint64_t rt = A(P_RUNTIME, 0), interp = A(P_INTERP, 0), ts = A(P_TSTATE, 0);
    uint64_t code_t = A(P_TYPES, 0), str_t = A(P_TYPES, 0x400),
             bytes_t = A(P_TYPES, 0x800);
    const char *tn[3] = { "code", "str", "bytes" };
    uint64_t types[3] = { code_t, str_t, bytes_t };
    for (int i = 0; i < 3; i++) {
        put64(types[i] + L->tp_name, types[i] + 0x200);
        memcpy((void *)(uintptr_t)(types[i] + 0x200), tn[i], strlen(tn[i]) + 1);
    }
    put64(rt + L->rt_interpreters_head, interp);
    put64(interp + L->is_threads_head, ts);
    put64(ts + L->ts_native_thread_id, TID);
    put64(ts + L->ts_interp, interp);
    I.cframe = A(P_STACK, 0x800);
    put64(ts + L->ts_frame, I.cframe);
    for (int f = 0; f < 3; f++)
        I.frame[f] = A(P_FRAMES, 0x100 * (unsigned)f);
    put64(I.cframe + L->cf_current_frame, I.frame[0]);
    put64(I.frame[0] + L->fr_previous, I.frame[1]);
    if (L->model == CPY_MODEL_CFRAME) {
        /* 3.11: the cframe anchors frames 0 (top) to 1 (is_entry); the
         * root cframe, in the thread state, follows */
        put64(I.cframe + L->cf_previous, ts + L->ts_root_cframe);
        I.base[(I.frame[1] - A(0, 0)) + L->fr_is_entry] = 1;
        I.anchor = I.cframe;
    } else {
        /* 3.12: the eval call's entry frame (owner 3, on the C stack)
         * follows frame 1 and anchors both */
        I.entry = A(P_STACK, 0x900);
        put64(I.frame[1] + L->fr_previous, I.entry);
        I.base[(I.entry - A(0, 0)) + L->fr_owner] = CPY_OWNER_ENTRY;
        I.anchor = I.entry;
    }

    I.file = A(P_STRS, 0);
    put_str(I.file, str_t, "/tmp/prog.py");
    const unsigned code_page[3] = { P_CODE1, P_CODE2, P_CODE3 };
    const char *qn[3] = { "inner", "outer", "fresh" };
    for (int k = 0; k < 3; k++) {
        I.code[k] = A(code_page[k], 0x40);
        I.qual[k] = k < 2 ? A(P_STRS, 0x100 * (unsigned)(k + 1)) : A(P_STRS3, 0);
        I.lt[k] = k < 2 ? A(P_LT, 0x100 * (unsigned)k) : A(P_LT3, 0);
        put_str(I.qual[k], str_t, qn[k]);
        put_lt(I.lt[k], bytes_t, 1, 2);
        put_code(k, code_t, I.qual[k], I.lt[k]);
    }
    put_frame(0, 0, 9);                         /* inner: line 10 + 1 + 2 */
    put_frame(1, 1, 3);                         /* outer: line 110 + 1 */
}

static void sink(void *arg, uint64_t id, const char *name)
{
    (void)arg;
    for (int i = 0; i < N.n; i++)
        assert_true(N.id[i] != id);             /* one id, one name */
    assert_true(N.n < 64);
    N.id[N.n] = id;
    snprintf(N.text[N.n], sizeof N.text[0], "%s", name);
    N.n++;
}

static const char *name_of(uint64_t id)
{
    for (int i = 0; i < N.n; i++)
        if (N.id[i] == id)
            return N.text[i];
    return NULL;
}

/* state: the Py_Version to build an image of */
static int setup(void **state)
{
    void *p = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    I.base = p;
    build(*(const uint32_t *)*state);
    memset(&N, 0, sizeof N);
    remote_mem_init(&MEM, getpid());
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    munmap(I.base, NPAGES * PAGE);
    return 0;
}

static struct vm_decoder *decoder(int lines)
{
    struct cpython_target t = { .runtime_addr = A(P_RUNTIME, 0),
                                .version_hex = I.version };
    char err[256] = "";
    struct vm_decoder *d = vm_cpython_create(&t, &MEM, sink, NULL, lines,
                                             err, sizeof err);
    if (d == NULL)
        fail_msg("vm_cpython_create: %s", err);
    return d;
}

/* One capture; its syscalls in *reads. Every id returned must be named. */
static int capture(struct vm_decoder *d, struct vm_frame *out, int *reads)
{
    struct user_regs_struct regs;
    memset(&regs, 0, sizeof regs);
    regs.rsp = A(P_STACK, 0x100);
    uint64_t before = MEM.reads;
    int n = d->ops->capture(d, TID, &regs, out, MAX_VM_FRAMES);
    if (reads != NULL)
        *reads = (int)(MEM.reads - before);
    for (int i = 0; i < n; i++)
        assert_non_null(name_of(out[i].id));
    return n;
}

static void test_names_ids_lines(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(1);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_int_equal(out[0].id, I.code[0]);     /* generation 0: the address */
    assert_int_equal(out[1].id, I.code[1]);
    assert_string_equal(name_of(out[0].id), "py:inner:10:/tmp/prog.py");
    assert_string_equal(name_of(out[1].id), "py:outer:110:/tmp/prog.py");
    assert_int_equal(out[0].line, 13);
    assert_int_equal(out[1].line, 111);
    assert_int_equal(out[0].anchor, I.anchor);
    assert_int_equal(out[1].anchor, I.anchor);
    assert_int_equal(N.n, 2);
    d->ops->destroy(d);
}

static void test_warm_capture_is_one_syscall(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    for (int lines = 0; lines <= 1; lines++) {
        N.n = 0;                                /* ids are per decoder */
        struct vm_decoder *d = decoder(lines);
        int reads;
        assert_int_equal(capture(d, out, &reads), 2);
        assert_true(reads > 1);                 /* cold: thread lookup etc. */
        for (int i = 0; i < 5; i++) {
            assert_int_equal(capture(d, out, &reads), 2);
            assert_int_equal(reads, 1);
            assert_int_equal(out[0].line, lines ? 13 : 0);
        }
        assert_int_equal(N.n, 2);               /* named once */
        d->ops->destroy(d);
    }
}

static void test_new_code_costs_two_batches(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(1);
    int reads;
    capture(d, out, NULL);
    capture(d, out, NULL);
    /* the top frame now runs a code object none of whose pages (head,
     * qualname, line table) was read before */
    put_frame(0, 2, 12);
    assert_int_equal(capture(d, out, &reads), 2);
    assert_int_equal(reads, 3);                 /* hint, heads, strings */
    assert_string_equal(name_of(out[0].id), "py:fresh:210:/tmp/prog.py");
    assert_int_equal(out[0].line, 213);
    assert_int_equal(capture(d, out, &reads), 2);
    assert_int_equal(reads, 1);                 /* warm again */
    d->ops->destroy(d);
}

static void test_reused_address_never_borrows_a_name(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(0);
    capture(d, out, NULL);
    uint64_t old = out[0].id;
    /* new code at the same address, same name pointers, same length:
     * only the qualname's characters differ */
    renew_code(0);
    memcpy((void *)(uintptr_t)(I.qual[0] + I.L.str_ascii_size), "other", 5);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_true(out[0].id != old);
    assert_int_equal(out[0].id & 1, 0);
    assert_int_equal(out[0].id & ((1ull << 48) - 1), I.code[0]);
    assert_string_equal(name_of(out[0].id), "py:other:10:/tmp/prog.py");
    assert_string_equal(name_of(old), "py:inner:10:/tmp/prog.py");
    assert_int_equal(out[1].id, I.code[1]);
    /* and another, with a new qualname object elsewhere */
    uint64_t second = out[0].id;
    put_code(0, A(P_TYPES, 0), I.qual[2], I.lt[0]);
    renew_code(0);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_true(out[0].id != old && out[0].id != second);
    assert_string_equal(name_of(out[0].id), "py:fresh:10:/tmp/prog.py");
    struct vm_cpython_stats st;
    vm_cpython_get_stats(d, &st);
    assert_int_equal(st.identity_changes, 2);
    assert_int_equal(st.hidden_changes, 1);
    d->ops->destroy(d);
}

static void test_changed_linetable_is_seen(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(1);
    capture(d, out, NULL);
    assert_int_equal(out[0].line, 13);
    /* a new code object at the same address, its line table where the
     * old one was, with the same size */
    renew_code(0);
    put_lt(I.lt[0], A(P_TYPES, 0x800), 4, 5);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_int_equal(out[0].line, 10 + 4 + 5);
    d->ops->destroy(d);
}

static void test_stack_copy_spares_the_stack(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    static uint8_t copy[2 * PAGE];
    uint64_t lo = A(P_STACK, 0);
    memcpy(copy, (void *)(uintptr_t)lo, sizeof copy);
    assert_int_equal(mprotect((void *)(uintptr_t)lo, 2 * PAGE, PROT_NONE), 0);
    struct vm_decoder *d = decoder(0);
    /* without the copy the cframe cannot be read: no frames */
    assert_true(capture(d, out, NULL) <= 0);
    for (int i = 0; i < 3; i++) {
        int reads;
        vm_cpython_stack_copy(d, lo, copy, sizeof copy);
        assert_int_equal(capture(d, out, &reads), 2);
        assert_int_equal(out[0].anchor, I.anchor);
        if (i > 0)
            assert_int_equal(reads, 1);
    }
    /* lent for one capture only */
    assert_true(capture(d, out, NULL) <= 0);
    d->ops->destroy(d);
    assert_int_equal(mprotect((void *)(uintptr_t)lo, 2 * PAGE,
                              PROT_READ | PROT_WRITE), 0);
}

static void test_unreadable_code_fails_the_capture(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(1);
    capture(d, out, NULL);
    int named = N.n, reads;
    assert_int_equal(mprotect((void *)(uintptr_t)A(P_CODE1, 0), PAGE, PROT_NONE), 0);
    assert_int_equal(capture(d, out, &reads), -1);
    assert_true(reads <= 6);                    /* bounded, not retried */
    assert_int_equal(N.n, named);
    assert_int_equal(mprotect((void *)(uintptr_t)A(P_CODE1, 0), PAGE,
                              PROT_READ | PROT_WRITE), 0);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_int_equal(out[0].id, I.code[0]);     /* same code: same id */
    d->ops->destroy(d);
}

/* 3.12: an unchanged co_version proves the code object without its
 * strings or line table: with their pages unreadable, captures still
 * name and place every frame, from one syscall once the hint has let go
 * of those pages. */
static void test_version_proof_reads_no_strings(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    struct vm_decoder *d = decoder(1);
    assert_int_equal(capture(d, out, NULL), 2);
    uint64_t id0 = out[0].id, id1 = out[1].id;
    void *strs = (void *)(uintptr_t)A(P_STRS, 0);
    assert_int_equal(mprotect(strs, (P_LT3 + 1 - P_STRS) * PAGE, PROT_NONE), 0);
    for (int i = 0; i < 4; i++) {
        int reads;
        assert_int_equal(capture(d, out, &reads), 2);
        assert_int_equal(out[0].id, id0);
        assert_int_equal(out[1].id, id1);
        assert_int_equal(out[0].line, 13);
        assert_int_equal(out[1].line, 111);
        if (i > 0)
            assert_int_equal(reads, 1);
    }
    assert_int_equal(mprotect(strs, (P_LT3 + 1 - P_STRS) * PAGE,
                              PROT_READ | PROT_WRITE), 0);
    assert_int_equal(N.n, 2);
    d->ops->destroy(d);
}

/* 3.12: without a co_version (0: the interpreter's counter wrapped) the
 * proof is by contents, as on 3.11. */
static void test_version_zero_proves_by_contents(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    put32(I.code[0] + I.L.co_version, 0);
    struct vm_decoder *d = decoder(0);
    capture(d, out, NULL);
    uint64_t old = out[0].id;
    memcpy((void *)(uintptr_t)(I.qual[0] + I.L.str_ascii_size), "other", 5);
    assert_int_equal(capture(d, out, NULL), 2);
    assert_true(out[0].id != old);
    assert_string_equal(name_of(out[0].id), "py:other:10:/tmp/prog.py");
    d->ops->destroy(d);
}

/* 3.11: a thread stopped in _PyEval_EvalFrameDefault just after it
 * installed its cframe but before it set is_entry on its frame (C does
 * not order those stores). Frame 0 ran from a C call made by frame 1's
 * code: the new cframe runs frame 0, whose previous is frame 1, the frame
 * the outer cframe runs. The inner group ends there whatever is_entry
 * says: each frame once, each under its own anchor. */
static void test_entry_flag_not_yet_set(void **state)
{
    (void)state;
    static struct vm_frame out[MAX_VM_FRAMES];
    const struct cpython_layout *L = &I.L;
    uint64_t outer = A(P_STACK, 0xa00), ts = A(P_TSTATE, 0);
    put64(outer + L->cf_current_frame, I.frame[1]);
    put64(outer + L->cf_previous, ts + L->ts_root_cframe);
    put64(I.cframe + L->cf_previous, outer);
    struct vm_decoder *d = decoder(0);
    for (int flag = 1; flag >= 0; flag--) {
        I.base[(I.frame[0] - A(0, 0)) + L->fr_is_entry] = (uint8_t)flag;
        assert_int_equal(capture(d, out, NULL), 2);
        assert_int_equal(out[0].id, I.code[0]);
        assert_int_equal(out[0].anchor, I.cframe);
        assert_int_equal(out[1].id, I.code[1]);
        assert_int_equal(out[1].anchor, outer);
    }
    d->ops->destroy(d);
}

static const uint32_t v311 = V311, v312 = V312;

#define BOTH(f) \
    cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)&v311), \
    cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)&v312)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_names_ids_lines),
        BOTH(test_warm_capture_is_one_syscall),
        BOTH(test_new_code_costs_two_batches),
        BOTH(test_reused_address_never_borrows_a_name),
        BOTH(test_changed_linetable_is_seen),
        BOTH(test_stack_copy_spares_the_stack),
        BOTH(test_unreadable_code_fails_the_capture),
        cmocka_unit_test_prestate_setup_teardown(test_entry_flag_not_yet_set,
                                                 setup, teardown, (void *)&v311),
        cmocka_unit_test_prestate_setup_teardown(test_version_proof_reads_no_strings,
                                                 setup, teardown, (void *)&v312),
        cmocka_unit_test_prestate_setup_teardown(test_version_zero_proves_by_contents,
                                                 setup, teardown, (void *)&v312),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
