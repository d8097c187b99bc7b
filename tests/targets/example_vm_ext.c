/*
 * example_vm_ext.c - the "C extension" of example_vm, in its own shared
 * library so that it is not part of the interpreter's code range: a
 * profile with --native=ext shows it between the VM frame that called it
 * and the VM frame it calls back.
 *
 * example_bridge() spins natively, calls back into the VM, then spins
 * again: the work after the callback keeps this frame on the stack (no
 * tail call) while the callback runs.
 */
#include <stdint.h>
#include <time.h>

#include "example_vm_ext.h"

static double thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

__attribute__((noinline)) static uint64_t example_native_spin(uint64_t iters)
{
    volatile uint64_t acc = 0;
    uint64_t i;

    for (i = 0; i < iters; i++)
        acc = acc * 6364136223846793005ull + i;
    return acc;
}

__attribute__((visibility("default")))
int64_t example_bridge(example_vm_callback cb, int fn, int64_t arg, uint64_t native_iters,
                       double *native_seconds)
{
    double t0 = thread_cpu(), t1, t2;
    int64_t r;

    example_native_spin(native_iters / 2);
    t1 = thread_cpu();
    r = cb(fn, arg);
    t2 = thread_cpu();
    r += (int64_t)(example_native_spin(native_iters - native_iters / 2) & 1);
    *native_seconds += (t1 - t0) + (thread_cpu() - t2);
    return r;
}
