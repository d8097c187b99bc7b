/*
 * example_vm.c - a small bytecode interpreter that uses the shim's C API
 * (target-shim/vmprof_shim.h): the VM the integration tests profile.
 *
 *   example_vm SECONDS [THREADS]
 *
 * Each thread runs the same program until SECONDS have passed:
 *
 *   main()      while not time_up(): round()
 *   round()     7 x hot(); 3 x cold()
 *   hot()       a bytecode loop of W iterations
 *   cold()      CALL_C example_bridge(cold_cb, DEPTH)   (libexample_vm_ext.so:
 *               native spin, then a callback into the VM, then native spin)
 *   cold_cb(d)  d > 0: cold_cb(d - 1)   (recursion)
 *               d = 0: a bytecode loop of W_CB iterations
 *
 * so every sample has one of two shapes (innermost last):
 *   main > round > hot
 *   main > round > cold > [example_bridge] > cold_cb x (DEPTH + 1)
 * and hot gets about 70% of the time, cold 30% (hot and cold do about the
 * same work per call; the exact split depends on the relative speed of the
 * native spin, so the VM measures it). The VM times its own phases with
 * the thread CPU clock and prints them at the end, for tests to compare
 * with the profile.
 *
 * Output (stdout, line-buffered):
 *   example_vm pid=PID threads=N seconds=S            at start
 *   example_vm cpu hot=S cold=S cold_native=S         at the end (seconds,
 *                                                      summed over threads,
 *                                                      inclusive)
 *   example_vm share hot=F cold=F cold_native=F       fractions of hot+cold
 *
 * Frames: eval() runs one VM function per C call and keeps a
 * struct vmprof_shim_frame as a local variable, pushed on entry and popped
 * on exit, so a sample anywhere in eval, in an opcode helper or in the
 * native bridge is attributed to the right VM frame.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "example_vm_ext.h"
#include "vmprof_shim.h"

#define W_HOT   200000          /* loop iterations per hot() call */
#define W_CB    170000          /* loop iterations of the innermost cold_cb */
#define NATIVE_ITERS 500000     /* native spin per bridge call */
#define DEPTH   3               /* cold_cb recursion depth */
#define MAX_CODE 64
#define MAX_STACK 16
#define MAX_LOCALS 4
#define MAX_THREADS 64

enum op {
    OP_PUSH, OP_LOAD, OP_STORE, OP_ADD, OP_SUB, OP_LT, OP_XOR,
    OP_JZ, OP_JNZ, OP_JMP, OP_CALL, OP_CALL_C, OP_RET, OP_POP, OP_TIMEUP,
};

struct insn {
    int32_t op;
    int64_t a;                  /* constant, local, jump target, callee */
};

struct func {
    const char *name;           /* "lang:name:line:file" */
    int nargs;
    int timed;                  /* index into the phase counters, or -1 */
    int n;
    struct insn code[MAX_CODE];
};

enum { F_MAIN, F_ROUND, F_HOT, F_COLD, F_COLD_CB, NFUNCS };
enum { PH_HOT, PH_COLD, NPHASES };

static struct func funcs[NFUNCS];
static double deadline;                          /* CLOCK_MONOTONIC seconds */
static double phase_cpu[NPHASES], native_cpu;    /* summed at thread end */
static pthread_mutex_t phase_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread struct vmprof_shim_frame *vm_top;    /* this thread's VM stack */
static __thread double t_phase[NPHASES], t_native;

static double now(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the program ------------------------------------------------------- */

static int emit(struct func *f, int op, int64_t a)
{
    if (f->n >= MAX_CODE) {
        fprintf(stderr, "example_vm: function %s too long\n", f->name);
        exit(2);
    }
    f->code[f->n].op = op;
    f->code[f->n].a = a;
    return f->n++;
}

/* for (local = 0; local < count; local++) callee(); */
static void emit_repeat_call(struct func *f, int local, int count, int callee)
{
    int top, jz;

    emit(f, OP_PUSH, 0);
    emit(f, OP_STORE, local);
    top = emit(f, OP_LOAD, local);
    emit(f, OP_PUSH, count);
    emit(f, OP_LT, 0);
    jz = emit(f, OP_JZ, 0);
    emit(f, OP_CALL, callee);
    emit(f, OP_POP, 0);
    emit(f, OP_LOAD, local);
    emit(f, OP_PUSH, 1);
    emit(f, OP_ADD, 0);
    emit(f, OP_STORE, local);
    emit(f, OP_JMP, top);
    f->code[jz].a = f->n;
}

/* for (n = iters; n; n--) acc ^= n + acc;  (locals n, acc) */
static void emit_spin(struct func *f, int n, int acc, int64_t iters)
{
    int top, jz;

    emit(f, OP_PUSH, iters);
    emit(f, OP_STORE, n);
    top = emit(f, OP_LOAD, n);
    jz = emit(f, OP_JZ, 0);
    emit(f, OP_LOAD, n);
    emit(f, OP_LOAD, acc);
    emit(f, OP_ADD, 0);
    emit(f, OP_LOAD, acc);
    emit(f, OP_XOR, 0);
    emit(f, OP_STORE, acc);
    emit(f, OP_LOAD, n);
    emit(f, OP_PUSH, 1);
    emit(f, OP_SUB, 0);
    emit(f, OP_STORE, n);
    emit(f, OP_JMP, top);
    f->code[jz].a = f->n;
}

static void build_program(void)
{
    struct func *f;
    int top, jnz, jz;

    f = &funcs[F_MAIN];
    *f = (struct func){ .name = "ex:main:1:example.ex", .timed = -1 };
    top = emit(f, OP_TIMEUP, 0);
    jnz = emit(f, OP_JNZ, 0);
    emit(f, OP_CALL, F_ROUND);
    emit(f, OP_POP, 0);
    emit(f, OP_JMP, top);
    f->code[jnz].a = f->n;
    emit(f, OP_PUSH, 0);
    emit(f, OP_RET, 0);

    f = &funcs[F_ROUND];
    *f = (struct func){ .name = "ex:round:5:example.ex", .timed = -1 };
    emit_repeat_call(f, 0, 7, F_HOT);
    emit_repeat_call(f, 0, 3, F_COLD);
    emit(f, OP_PUSH, 0);
    emit(f, OP_RET, 0);

    f = &funcs[F_HOT];
    *f = (struct func){ .name = "ex:hot:10:example.ex", .timed = PH_HOT };
    emit_spin(f, 0, 1, W_HOT);
    emit(f, OP_LOAD, 1);
    emit(f, OP_RET, 0);

    f = &funcs[F_COLD];
    *f = (struct func){ .name = "ex:cold:15:example.ex", .timed = PH_COLD };
    emit(f, OP_PUSH, DEPTH);
    emit(f, OP_CALL_C, F_COLD_CB);
    emit(f, OP_RET, 0);

    f = &funcs[F_COLD_CB];
    *f = (struct func){ .name = "ex:cold_cb:20:example.ex", .nargs = 1, .timed = -1 };
    emit(f, OP_LOAD, 0);
    jz = emit(f, OP_JZ, 0);
    emit(f, OP_LOAD, 0);
    emit(f, OP_PUSH, 1);
    emit(f, OP_SUB, 0);
    emit(f, OP_CALL, F_COLD_CB);
    emit(f, OP_RET, 0);
    f->code[jz].a = f->n;
    emit_spin(f, 1, 2, W_CB);
    emit(f, OP_LOAD, 2);
    emit(f, OP_RET, 0);
}

/* ---- the interpreter ------------------------------------------------- */

static int64_t eval(const struct func *f, const int64_t *args);

static int64_t vm_callback(int fn, int64_t arg)
{
    if (fn < 0 || fn >= NFUNCS)
        return 0;
    return eval(&funcs[fn], &arg);
}

/* A call from the VM: times the callee when it is a measured phase. */
static int64_t call(const struct func *callee, const int64_t *args)
{
    double t0;
    int64_t r;

    if (callee->timed < 0)
        return eval(callee, args);
    t0 = now(CLOCK_THREAD_CPUTIME_ID);
    r = eval(callee, args);
    t_phase[callee->timed] += now(CLOCK_THREAD_CPUTIME_ID) - t0;
    return r;
}

/* Runs one VM function. The frame record lives here, on the native stack:
 * its address places this VM frame among the native frames. Sizes are
 * fixed by construction (the program is built above), so the bounds
 * checks are asserts of the builder's work, not of user input. */
static int64_t eval(const struct func *f, const int64_t *args)
{
    struct vmprof_shim_frame rec;
    int64_t locals[MAX_LOCALS] = { 0 }, stack[MAX_STACK], r = 0;
    int pc = 0, sp = 0, i;

    vmprof_shim_push(&vm_top, &rec, (uint64_t)(uintptr_t)f);
    for (i = 0; i < f->nargs; i++)
        locals[i] = args[i];
    for (;;) {
        const struct insn *in = &f->code[pc++];

        switch (in->op) {
        case OP_PUSH: stack[sp++] = in->a; break;
        case OP_LOAD: stack[sp++] = locals[in->a]; break;
        case OP_STORE: locals[in->a] = stack[--sp]; break;
        case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case OP_SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case OP_XOR: sp--; stack[sp - 1] ^= stack[sp]; break;
        case OP_LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case OP_JZ: if (!stack[--sp]) pc = (int)in->a; break;
        case OP_JNZ: if (stack[--sp]) pc = (int)in->a; break;
        case OP_JMP: pc = (int)in->a; break;
        case OP_POP: sp--; break;
        case OP_TIMEUP: stack[sp++] = now(CLOCK_MONOTONIC) >= deadline; break;
        case OP_CALL: {
            const struct func *callee = &funcs[in->a];

            sp -= callee->nargs;
            stack[sp] = call(callee, &stack[sp]);
            sp++;
            break;
        }
        case OP_CALL_C:         /* one argument: the callback's */
            stack[sp - 1] = example_bridge(vm_callback, (int)in->a, stack[sp - 1],
                                           NATIVE_ITERS, &t_native);
            break;
        case OP_RET:
            r = stack[--sp];
            goto out;
        default:
            abort();            /* the builder emitted an unknown opcode */
        }
        if (sp < 0 || sp >= MAX_STACK || pc < 0 || pc >= f->n)
            abort();
    }
out:
    vmprof_shim_pop(&vm_top, &rec);
    return r;
}

/* ---- threads ------------------------------------------------------------ */

static void *run_thread(void *arg)
{
    int i;

    (void)arg;
    if (vmprof_shim_register_thread(&vm_top) != 0)
        fprintf(stderr, "example_vm: thread registration failed: %s\n", strerror(errno));
    eval(&funcs[F_MAIN], NULL);
    vmprof_shim_unregister_thread();
    pthread_mutex_lock(&phase_lock);
    for (i = 0; i < NPHASES; i++)
        phase_cpu[i] += t_phase[i];
    native_cpu += t_native;
    pthread_mutex_unlock(&phase_lock);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    double seconds, total;
    int nthreads = 1, i;

    if (argc < 2 || (seconds = strtod(argv[1], NULL)) <= 0) {
        fprintf(stderr, "usage: example_vm SECONDS [THREADS]\n");
        return 2;
    }
    if (argc > 2)
        nthreads = atoi(argv[2]);
    if (nthreads < 1 || nthreads > MAX_THREADS) {
        fprintf(stderr, "example_vm: THREADS must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    build_program();
    if (vmprof_shim_init("example_vm", (const void *)eval) != 0)
        fprintf(stderr, "example_vm: vmprof_shim_init: %s\n", strerror(errno));
    for (i = 0; i < NFUNCS; i++)
        if (vmprof_shim_register_code((uint64_t)(uintptr_t)&funcs[i], funcs[i].name) != 0)
            fprintf(stderr, "example_vm: register %s: %s\n", funcs[i].name, strerror(errno));
    printf("example_vm pid=%d threads=%d seconds=%g\n", (int)getpid(), nthreads, seconds);
    deadline = now(CLOCK_MONOTONIC) + seconds;
    for (i = 1; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, run_thread, NULL) != 0) {
            fprintf(stderr, "example_vm: pthread_create failed\n");
            return 1;
        }
    run_thread(NULL);
    for (i = 1; i < nthreads; i++)
        pthread_join(th[i], NULL);
    total = phase_cpu[PH_HOT] + phase_cpu[PH_COLD];
    printf("example_vm cpu hot=%.3f cold=%.3f cold_native=%.3f\n",
           phase_cpu[PH_HOT], phase_cpu[PH_COLD], native_cpu);
    if (total > 0)
        printf("example_vm share hot=%.3f cold=%.3f cold_native=%.3f\n",
               phase_cpu[PH_HOT] / total, phase_cpu[PH_COLD] / total, native_cpu / total);
    return 0;
}
