/*
 * test_merge.c - the exact native/VM merge on synthetic stacks: VM groups
 * take the place of the native frame whose [sp, cfa) holds their anchor,
 * in every --native mode and with line words.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "merge.h"

/* A stack, innermost first: c_inner <- eval#2 (holds VM f3, f2) <- c_outer
 * <- eval#1 (holds VM f1) <- main <- _start. Interpreter frames are the
 * eval frames and main/_start (ips >= 0x5000 count as interpreter). */
#define INTERP 0x5000
static const struct native_frame nat[] = {
    { 0x1010, 0x7000, 0x7100, 0x1000 },   /* c_inner */
    { 0x5010, 0x7100, 0x7400, 0x5000 },   /* eval #2 */
    { 0x2010, 0x7400, 0x7500, 0x2000 },   /* c_outer (extension) */
    { 0x5010, 0x7500, 0x7800, 0x5000 },   /* eval #1 */
    { 0x6010, 0x7800, 0x7900, 0x6000 },   /* main (interpreter binary) */
    { 0x6110, 0x7900, UINT64_MAX, 0x6100 },/* _start */
};
static const struct vm_frame vm[] = {
    { 0x30, 0x7200, 33 },                  /* f3, anchored in eval #2 */
    { 0x20, 0x7200, 22 },                  /* f2, same group */
    { 0x10, 0x7600, 11 },                  /* f1, anchored in eval #1 */
};

static int is_interp(void *arg, uint64_t ip)
{
    (void)arg;
    return ip >= INTERP;
}

static int run(enum native_mode mode, int lines, const struct vm_frame *v, int nv,
               uint64_t *w, int max)
{
    struct merge_input in = { nat, 6, v, nv, mode, lines, is_interp, NULL };
    return merge_stack(&in, w, max);
}

static void test_ext_replaces_interpreter_frames(void **state)
{
    (void)state;
    uint64_t w[64];
    int n = run(NATIVE_EXT, 0, vm, 3, w, 64);
    const uint64_t want[] = { 0x1001, 0x30, 0x20, 0x2001, 0x10 };
    assert_int_equal(n, 5);
    assert_memory_equal(w, want, sizeof(want));
}

static void test_all_keeps_every_frame_in_place(void **state)
{
    (void)state;
    uint64_t w[64];
    int n = run(NATIVE_ALL, 0, vm, 3, w, 64);
    const uint64_t want[] = { 0x1001, 0x30, 0x20, 0x5001, 0x2001, 0x10, 0x5001,
                              0x6001, 0x6101 };
    assert_int_equal(n, 9);
    assert_memory_equal(w, want, sizeof(want));
}

static void test_none_keeps_vm_frames_only(void **state)
{
    (void)state;
    uint64_t w[64];
    int n = run(NATIVE_NONE, 0, vm, 3, w, 64);
    const uint64_t want[] = { 0x30, 0x20, 0x10 };
    assert_int_equal(n, 3);
    assert_memory_equal(w, want, sizeof(want));
}

static void test_lines_put_a_line_before_every_frame(void **state)
{
    (void)state;
    uint64_t w[64];
    int n = run(NATIVE_EXT, 1, vm, 3, w, 64);
    const uint64_t want[] = { 0, 0x1001, 33, 0x30, 22, 0x20, 0, 0x2001, 11, 0x10 };
    assert_int_equal(n, 10);
    assert_memory_equal(w, want, sizeof(want));
}

static void test_unanchored_vm_frames_go_outermost(void **state)
{
    (void)state;
    const struct vm_frame lost[] = { { 0x40, 0, 0 }, { 0x50, 0x9999999, 0 } };
    uint64_t w[64];
    int n = run(NATIVE_ALL, 0, lost, 2, w, 64);
    assert_int_equal(n, 8);
    assert_int_equal(w[6], 0x40);
    assert_int_equal(w[7], 0x50);
}

/* The unwind stopped short (assembly without unwind tables, the
 * instruction after clone3's system call): the last native frame's end is
 * unknown, and it must not swallow the VM frames that called it. */
static void test_truncated_unwind_keeps_vm_frames_outside(void **state)
{
    (void)state;
    uint64_t w[64];
    const struct native_frame leaf[] = { { 0x1010, 0x7000, UINT64_MAX, 0x1000 } };
    struct merge_input in = { leaf, 1, vm, 3, NATIVE_ALL, 0, is_interp, NULL };
    const uint64_t want_leaf[] = { 0x1001, 0x30, 0x20, 0x10 };
    assert_int_equal(merge_stack(&in, w, 64), 4);
    assert_memory_equal(w, want_leaf, sizeof(want_leaf));
    /* stopped after c_outer: f3 and f2 still go inside eval #2 */
    struct native_frame cut[3];
    memcpy(cut, nat, sizeof(cut));
    cut[2].cfa = UINT64_MAX;
    struct merge_input in2 = { cut, 3, vm, 3, NATIVE_ALL, 0, is_interp, NULL };
    const uint64_t want_cut[] = { 0x1001, 0x30, 0x20, 0x5001, 0x2001, 0x10 };
    assert_int_equal(merge_stack(&in2, w, 64), 6);
    assert_memory_equal(w, want_cut, sizeof(want_cut));
}

static void test_no_vm_frames_keeps_native_stack(void **state)
{
    (void)state;
    uint64_t w[64];
    /* ext without VM frames hides only interpreter frames */
    int n = run(NATIVE_EXT, 0, NULL, 0, w, 64);
    const uint64_t want[] = { 0x1001, 0x2001 };
    assert_int_equal(n, 2);
    assert_memory_equal(w, want, sizeof(want));
}

static void test_output_is_bounded(void **state)
{
    (void)state;
    uint64_t w[4] = { 0 };
    int n = run(NATIVE_ALL, 1, vm, 3, w, 3);  /* pairs: only one fits */
    assert_int_equal(n, 2);
    assert_int_equal(w[1], 0x1001);
}

static void test_odd_function_start_keeps_its_value(void **state)
{
    (void)state;
    const struct native_frame odd[] = { { 0x1235, 0x7000, UINT64_MAX, 0x1233 } };
    struct merge_input in = { odd, 1, NULL, 0, NATIVE_ALL, 0, NULL, NULL };
    uint64_t w[4];
    assert_int_equal(merge_stack(&in, w, 4), 1);
    assert_int_equal(w[0], 0x1233);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ext_replaces_interpreter_frames),
        cmocka_unit_test(test_all_keeps_every_frame_in_place),
        cmocka_unit_test(test_none_keeps_vm_frames_only),
        cmocka_unit_test(test_lines_put_a_line_before_every_frame),
        cmocka_unit_test(test_unanchored_vm_frames_go_outermost),
        cmocka_unit_test(test_truncated_unwind_keeps_vm_frames_outside),
        cmocka_unit_test(test_no_vm_frames_keeps_native_stack),
        cmocka_unit_test(test_output_is_bounded),
        cmocka_unit_test(test_odd_function_start_keeps_its_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
