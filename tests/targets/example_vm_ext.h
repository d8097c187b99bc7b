/*
 * example_vm_ext.h - the boundary between example_vm and its C extension
 * library: one native function that calls back into the VM.
 */
#ifndef EXAMPLE_VM_EXT_H
#define EXAMPLE_VM_EXT_H

#include <stdint.h>

/* Runs VM function fn with one argument; returns its result. */
typedef int64_t (*example_vm_callback)(int fn, int64_t arg);

/* Spins native_iters iterations (half before, half after the callback),
 * calls cb(fn, arg) in between, and adds the CPU time it spent itself
 * (not in the callback) to *native_seconds. */
int64_t example_bridge(example_vm_callback cb, int fn, int64_t arg, uint64_t native_iters,
                       double *native_seconds);

#endif
