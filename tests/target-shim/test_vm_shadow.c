/*
 * test_vm_shadow.c - the shadow-stack decoder (attacher/vm_shadow.c):
 *   - on chains of frame records built in this process's memory and
 *     described by a registry buffer: ids, anchors, names (once each,
 *     escaped), unknown and re-registered ids, and hostile chains (cycles,
 *     misaligned or unreadable records, dead frames below the stack
 *     pointer, chains deeper than the caller's max);
 *   - on real stacks through the shim's C API: a thread of this process
 *     blocked inside nested VM frames, and a forked child stopped with
 *     ptrace while it spins inside them (read with process_vm_readv).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry_reader.h"
#include "registry_writer.h"
#include "vm_shadow.h"
#include "vmprof_shim.h"

#define SEG (256u << 10)
#define FAKE_TID 424242
#define NAMES 64

/* ---- name sink ---------------------------------------------------------- */

struct sink {
    int n;
    uint64_t id[NAMES];
    char name[NAMES][256];
};

static void sink_fn(void *arg, uint64_t id, const char *name)
{
    struct sink *s = arg;
    int i;

    for (i = 0; i < s->n; i++)
        assert_true(s->id[i] != id);            /* each id once */
    assert_true(s->n < NAMES);
    s->id[s->n] = id;
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    s->n++;
}

static const char *sink_name(const struct sink *s, uint64_t id)
{
    int i;

    for (i = 0; i < s->n; i++)
        if (s->id[i] == id)
            return s->name[i];
    return NULL;
}

/* ---- fake chains described by a registry buffer -------------------------- */

static struct vmprof_reg_frame recs[8];     /* recs[0] innermost: lowest address */
static uint64_t fake_top;                   /* the fake thread's top pointer */

struct fx {
    void *buf;
    struct registry *reg;
    struct remote_mem mem;
    struct vm_decoder *d;
    struct sink sink;
    char err[256];
};

/* recs[0] -> recs[1] -> ... -> recs[n-1] with the given ids. */
static void chain(int n, const uint64_t *ids)
{
    int i;

    memset(recs, 0, sizeof recs);
    for (i = 0; i < n; i++) {
        recs[i].code_id = ids[i];
        recs[i].prev = i + 1 < n ? (uint64_t)(uintptr_t)&recs[i + 1] : 0;
    }
    fake_top = n ? (uint64_t)(uintptr_t)&recs[0] : 0;
}

static int fx_setup_kind(void **state, uint32_t kind)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    assert_int_equal(posix_memalign(&f->buf, 4096, SEG), 0);
    memset(f->buf, 0, SEG);
    assert_int_equal(vmreg_format(f->buf, SEG, 16, kind, 1), 0);
    assert_int_equal(vmreg_set_vm(f->buf, kind, "fakevm", 1), 0);
    vmreg_set_text(f->buf, 0x400000, 0x500000);
    vmreg_code_append(f->buf, 100, "fk:alpha:1:a.fk", 15);
    vmreg_code_append(f->buf, 200, "fk:beta:2:b.fk", 14);
    vmreg_code_append(f->buf, 300, "fk:ns::gamma:3:c:d.fk", 21);
    assert_true(vmreg_thread_add(f->buf, FAKE_TID, (uint64_t)(uintptr_t)&fake_top, 1) >= 0);
    vmreg_publish(f->buf);
    assert_int_equal(registry_open_buffer(f->buf, SEG, 0, &f->reg, f->err, sizeof f->err), 0);
    remote_mem_init(&f->mem, getpid());
    if (kind == VMPROF_REG_KIND_SHADOW) {
        f->d = vm_shadow_create(f->reg, &f->mem, sink_fn, &f->sink, f->err, sizeof f->err);
        assert_non_null(f->d);
    }
    chain(0, NULL);
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_kind(state, VMPROF_REG_KIND_SHADOW);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    if (f->d)
        f->d->ops->destroy(f->d);
    registry_close(f->reg);
    free(f->buf);
    free(f);
    return 0;
}

static int capture(struct fx *f, const struct user_regs_struct *regs, struct vm_frame *out,
                   int max)
{
    return f->d->ops->capture(f->d, FAKE_TID, regs, out, max);
}

static void check_id(uint64_t id)
{
    assert_true(id != 0);
    assert_int_equal(id & 1, 0);
    assert_true(id < (UINT64_C(1) << 63));
}

static void test_capture_chain(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 100, 200, 100 };
    struct vm_frame out[8];
    struct vm_shadow_stats st;
    int i;

    chain(3, ids);
    assert_int_equal(capture(f, NULL, out, 8), 3);
    for (i = 0; i < 3; i++) {
        check_id(out[i].id);
        assert_int_equal(out[i].anchor, (uint64_t)(uintptr_t)&recs[i]);
        assert_int_equal(out[i].line, 0);
    }
    assert_int_equal(out[0].id, out[2].id);
    assert_true(out[0].id != out[1].id);
    assert_int_equal(f->sink.n, 2);
    assert_string_equal(sink_name(&f->sink, out[0].id), "fk:alpha:1:a.fk");
    assert_string_equal(sink_name(&f->sink, out[1].id), "fk:beta:2:b.fk");
    /* again: same ids, no new names */
    assert_int_equal(capture(f, NULL, out, 8), 3);
    assert_int_equal(f->sink.n, 2);
    assert_string_equal(f->d->interp_name, "fakevm");
    vm_shadow_stats(f->d, &st);
    assert_int_equal(st.captures, 2);
    assert_int_equal(st.frames, 6);
}

static void test_empty_and_unregistered(void **state)
{
    struct fx *f = *state;
    struct vm_frame out[4];
    struct vm_shadow_stats st;

    chain(0, NULL);                                  /* top == NULL */
    assert_int_equal(capture(f, NULL, out, 4), 0);
    assert_int_equal(f->d->ops->capture(f->d, FAKE_TID + 1, NULL, out, 4), 0);
    vm_shadow_stats(f->d, &st);
    assert_int_equal(st.no_thread, 1);
    assert_int_equal(f->d->stat_capture_fail, 0);
}

static void test_escaped_names(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 300 };
    struct vm_frame out[2];

    chain(1, ids);
    assert_int_equal(capture(f, NULL, out, 2), 1);
    assert_string_equal(sink_name(&f->sink, out[0].id),
                        "fk:ns\xe2\x88\xb6\xe2\x88\xb6gamma:3:c\xe2\x88\xb6" "d.fk");
}

static void test_format_name(void **state)
{
    char b[256];

    assert_true(vm_shadow_format_name(b, sizeof b, "py:f:12:a.py", "vm") > 0);
    assert_string_equal(b, "py:f:12:a.py");
    vm_shadow_format_name(b, sizeof b, "py:f:7", "vm");            /* no file */
    assert_string_equal(b, "py:f:7:-");
    vm_shadow_format_name(b, sizeof b, "plain", "vm");             /* no fields */
    assert_string_equal(b, "vm:plain:0:-");
    vm_shadow_format_name(b, sizeof b, ":f:3:x", "vm");            /* empty lang */
    assert_string_equal(b, "vm:f:3:x");
    vm_shadow_format_name(b, sizeof b, "py:a:b:c", "vm");          /* no line field */
    assert_string_equal(b, "py:a\xe2\x88\xb6" "b\xe2\x88\xb6" "c:0:-");
    vm_shadow_format_name(b, sizeof b, "py:f:1234567890:x", "vm"); /* too long a line */
    assert_string_equal(b, "py:f\xe2\x88\xb6" "1234567890\xe2\x88\xb6x:0:-");
    assert_int_equal(vm_shadow_format_name(b, 8, "py:function:1:file", "vm"), -1);
}

static void test_unknown_then_registered(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 0x22b, 400 };
    struct vm_frame out[4];
    struct vm_shadow_stats st;
    uint64_t first400;

    chain(2, ids);
    assert_int_equal(capture(f, NULL, out, 4), 2);
    assert_non_null(strstr(sink_name(&f->sink, out[0].id), "unknown code 0x22b"));
    assert_non_null(strstr(sink_name(&f->sink, out[1].id), "unknown code 0x190"));
    first400 = out[1].id;
    vm_shadow_stats(f->d, &st);
    assert_int_equal(st.unknown_ids, 2);
    /* 400 gets registered: a new id, with the real name */
    vmreg_code_append(f->buf, 400, "fk:late:4:l.fk", 14);
    assert_int_equal(capture(f, NULL, out, 4), 2);
    assert_true(out[1].id != first400);
    check_id(out[1].id);
    assert_string_equal(sink_name(&f->sink, out[1].id), "fk:late:4:l.fk");
}

static void test_reregistered_id(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 100 };
    struct vm_frame out[2];
    struct vm_shadow_stats st;
    uint64_t old;

    chain(1, ids);
    assert_int_equal(capture(f, NULL, out, 2), 1);
    old = out[0].id;
    vmreg_code_append(f->buf, 100, "fk:alpha:1:a.fk", 15);    /* same name: same id */
    assert_int_equal(capture(f, NULL, out, 2), 1);
    assert_int_equal(out[0].id, old);
    vmreg_code_append(f->buf, 100, "fk:reused:5:r.fk", 16);   /* address reused */
    assert_int_equal(capture(f, NULL, out, 2), 1);
    assert_true(out[0].id != old);
    assert_string_equal(sink_name(&f->sink, old), "fk:alpha:1:a.fk");
    assert_string_equal(sink_name(&f->sink, out[0].id), "fk:reused:5:r.fk");
    vm_shadow_stats(f->d, &st);
    assert_int_equal(st.renamed_ids, 1);
}

static void expect_refused(struct fx *f)
{
    struct vm_frame out[8];
    uint64_t fails = f->d->stat_capture_fail;

    assert_int_equal(capture(f, NULL, out, 8), -1);
    assert_int_equal(f->d->stat_capture_fail, fails + 1);
}

static void test_hostile_chains(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 100, 200, 100, 200 };
    struct vm_shadow_stats st;
    void *gone;

    chain(4, ids);
    recs[2].prev = (uint64_t)(uintptr_t)&recs[0];           /* cycle */
    expect_refused(f);
    chain(4, ids);
    recs[1].prev = (uint64_t)(uintptr_t)&recs[1];           /* self loop */
    expect_refused(f);
    chain(4, ids);
    recs[0].prev = (uint64_t)(uintptr_t)&recs[2] + 4;       /* misaligned */
    expect_refused(f);
    chain(4, ids);
    fake_top = (uint64_t)(uintptr_t)&recs[0] + 4;           /* misaligned top */
    expect_refused(f);
    chain(4, ids);
    recs[3].prev = UINT64_C(0xffff800000001000);             /* kernel half */
    expect_refused(f);
    vm_shadow_stats(f->d, &st);
    assert_int_equal(st.bad_chains, 5);

    gone = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(gone != MAP_FAILED);
    assert_int_equal(munmap(gone, 4096), 0);
    assert_true((uintptr_t)gone > (uintptr_t)&recs[3]);
    chain(4, ids);
    recs[3].prev = (uint64_t)(uintptr_t)gone;                /* unmapped */
    expect_refused(f);
    vm_shadow_stats(f->d, &st);
    assert_true(st.read_faults >= 1);
}

static void test_top_pointer_unreadable(void **state)
{
    struct fx *f = *state;
    struct vmprof_reg_thread_slot *slot = (struct vmprof_reg_thread_slot *)
        ((char *)f->buf + ((struct vmprof_reg_header *)f->buf)->thread_table_off);
    void *gone = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    assert_true(gone != MAP_FAILED);
    munmap(gone, 4096);
    slot[0].top_addr = (uint64_t)(uintptr_t)gone;
    expect_refused(f);
}

static void test_truncated_to_max(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 100, 200, 100, 200, 100, 200 };
    struct vm_frame out[8];
    int i;

    chain(6, ids);
    assert_int_equal(capture(f, NULL, out, 4), 4);
    for (i = 0; i < 4; i++)
        assert_int_equal(out[i].anchor, (uint64_t)(uintptr_t)&recs[i]);
    assert_int_equal(f->d->stat_truncated, 1);
    assert_int_equal(capture(f, NULL, out, 0), 0);
}

static void test_stack_pointer_bound(void **state)
{
    struct fx *f = *state;
    uint64_t ids[] = { 100, 200 };
    struct user_regs_struct regs;
    struct vm_frame out[4];

    chain(2, ids);
    memset(&regs, 0, sizeof regs);
    regs.rsp = (uint64_t)(uintptr_t)&recs[0] + 64;     /* within the red zone */
    assert_int_equal(capture(f, &regs, out, 4), 2);
    regs.rsp = (uint64_t)(uintptr_t)&recs[0] + 4096;   /* a dead record */
    assert_int_equal(capture(f, &regs, out, 4), -1);
}

static void test_interpreter_ip(void **state)
{
    struct fx *f = *state;

    assert_int_equal(f->d->ops->is_interpreter_ip(f->d, 0x400000), 1);
    assert_int_equal(f->d->ops->is_interpreter_ip(f->d, 0x4fffff), 1);
    assert_int_equal(f->d->ops->is_interpreter_ip(f->d, 0x500000), 0);
    assert_int_equal(f->d->ops->is_interpreter_ip(f->d, 0x3fffff), 0);
    f->d->ops->thread_gone(f->d, FAKE_TID);
}

static void test_wrong_kind(void **state)
{
    struct fx *f;
    char err[128];

    fx_setup_kind(state, VMPROF_REG_KIND_CPYTHON);
    f = *state;
    assert_null(vm_shadow_create(f->reg, &f->mem, sink_fn, &f->sink, err, sizeof err));
    assert_non_null(strstr(err, "kind 1"));
    fx_teardown(state);
}

/* ---- real stacks through the C API --------------------------------------- */

#define DEPTH 5
static __thread struct vmprof_shim_frame *tls_top;
static const uint64_t real_ids[2] = { 0xC0DE0001, 0xC0DE0002 };

struct real {
    uint64_t anchors[DEPTH];    /* anchors[0] outermost */
    volatile int ready;
    volatile int release;
    pid_t tid;
};

static void __attribute__((noinline)) bottom(struct real *r)
{
    r->tid = (pid_t)gettid();
    __atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&r->release, __ATOMIC_ACQUIRE))
        __asm__ __volatile__("" ::: "memory");          /* spin: the sample lands here */
}

static void __attribute__((noinline)) recurse(int depth, struct real *r)
{
    struct vmprof_shim_frame rec;

    vmprof_shim_push(&tls_top, &rec, real_ids[depth % 2]);
    r->anchors[depth] = (uint64_t)(uintptr_t)&rec;
    if (depth + 1 < DEPTH)
        recurse(depth + 1, r);
    else
        bottom(r);
    vmprof_shim_pop(&tls_top, &rec);
}

static void register_real(void)
{
    assert_int_equal(vmprof_shim_init("realvm", (const void *)recurse), 0);
    assert_int_equal(vmprof_shim_register_code(real_ids[0], "rv:even:10:real.rv"), 0);
    assert_int_equal(vmprof_shim_register_code(real_ids[1], "rv:odd:20:real.rv"), 0);
}

static void *real_thread(void *arg)
{
    struct real *r = arg;

    if (vmprof_shim_register_thread(&tls_top) != 0)
        return (void *)1;
    recurse(0, r);
    vmprof_shim_unregister_thread();
    return NULL;
}

/* Checks frames[] against r's anchors, innermost first, and the names. */
static void check_real(const struct vm_frame *out, int n, const struct real *r,
                       const struct sink *s)
{
    int i;

    assert_int_equal(n, DEPTH);
    for (i = 0; i < DEPTH; i++) {
        int depth = DEPTH - 1 - i;

        assert_int_equal(out[i].anchor, r->anchors[depth]);
        check_id(out[i].id);
        assert_string_equal(sink_name(s, out[i].id),
                            depth % 2 ? "rv:odd:20:real.rv" : "rv:even:10:real.rv");
    }
}

static void test_real_thread_in_process(void **state)
{
    struct vm_frame out[16];
    struct remote_mem mem;
    struct registry *reg = NULL;
    struct vm_decoder *d;
    struct sink s = { 0 };
    struct real r;
    char err[256];
    pthread_t th;
    void *ret;

    memset(&r, 0, sizeof r);
    register_real();
    assert_int_equal(pthread_create(&th, NULL, real_thread, &r), 0);
    while (!__atomic_load_n(&r.ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    assert_int_equal(registry_open(getpid(), &reg, err, sizeof err), 0);
    remote_mem_init(&mem, getpid());
    d = vm_shadow_create(reg, &mem, sink_fn, &s, err, sizeof err);
    assert_non_null(d);
    assert_string_equal(d->interp_name, "realvm");
    assert_int_equal(d->ops->is_interpreter_ip(d, (uint64_t)(uintptr_t)recurse), 1);
    check_real(out, d->ops->capture(d, r.tid, NULL, out, 16), &r, &s);
    __atomic_store_n(&r.release, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    /* unregistered now: no VM frames */
    assert_int_equal(d->ops->capture(d, r.tid, NULL, out, 16), 0);
    d->ops->destroy(d);
    registry_close(reg);
}

/* A forked child (its own registry copy, made by the shim's fork handler)
 * spins inside DEPTH frames; the parent stops it with ptrace and reads it. */
static void test_ptrace_stopped_child(void **state)
{
    struct real *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct user_regs_struct regs;
    struct vm_frame out[16];
    struct remote_mem mem;
    struct registry *reg = NULL;
    struct vm_decoder *d;
    struct sink s = { 0 };
    char err[256];
    int status, n;
    pid_t pid;

    assert_true(r != MAP_FAILED);
    memset(r, 0, sizeof *r);
    register_real();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (vmprof_shim_register_thread(&tls_top) != 0)
            _exit(1);
        recurse(0, r);
        _exit(0);
    }
    while (!__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    assert_int_equal(registry_open(pid, &reg, err, sizeof err), 0);
    assert_int_equal(registry_info(reg)->creator_pid, (uint32_t)pid);
    remote_mem_init(&mem, pid);
    d = vm_shadow_create(reg, &mem, sink_fn, &s, err, sizeof err);
    assert_non_null(d);

    assert_int_equal(ptrace(PTRACE_SEIZE, pid, 0, 0), 0);
    assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
    assert_int_equal(waitpid(pid, &status, __WALL), pid);
    assert_true(WIFSTOPPED(status));
    assert_int_equal(ptrace(PTRACE_GETREGS, pid, 0, &regs), 0);
    n = d->ops->capture(d, pid, &regs, out, 16);
    assert_true(regs.rsp <= r->anchors[DEPTH - 1]);
    assert_int_equal(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    check_real(out, n, r, &s);
    d->ops->destroy(d);
    registry_close(reg);
    munmap(r, sizeof *r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capture_chain, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_unregistered, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_escaped_names, fx_setup, fx_teardown),
        cmocka_unit_test(test_format_name),
        cmocka_unit_test_setup_teardown(test_unknown_then_registered, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reregistered_id, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_chains, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_top_pointer_unreadable, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_to_max, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stack_pointer_bound, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_interpreter_ip, fx_setup, fx_teardown),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_real_thread_in_process),
        cmocka_unit_test(test_ptrace_stopped_child),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
