/*
 * vm_decoder.h - the seam between the sampler and the ways a VM exposes
 * its frames (the "one backend behind one interface" of Redis' ae_*.c).
 *
 * Backends:
 *   vm_shadow.c   the C API: frame records pushed on the native stack by
 *                 the VM (after RPython's rvmprof), found through the
 *                 registry's thread table
 *   vm_cpython.c  CPython's own frame chain, walked remotely with the
 *                 layout of the running version (cpython_layout.c)
 *
 * Protocol, per sample: capture() runs while the thread is stopped (or,
 * with regs NULL, while it is blocked in a system call, which the caller
 * proves by its run count around the call: sampler.c, "Wall mode") and
 * must be short; it reads only through remote_mem (untrusted bytes,
 * bounded walks) and fills vm_frame[] innermost first. A decoder learns
 * names while the thread is stopped (the code objects are alive then) and
 * reports each new id once through the name sink, before the id appears
 * in any stack it returns.
 */
#ifndef VMPROF_VM_DECODER_H
#define VMPROF_VM_DECODER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "frames.h"
#include "remote_mem.h"

/* Called once per new id with its "lang:name:line:file" (already escaped). */
typedef void (*vm_name_sink)(void *arg, uint64_t id, const char *name);

struct vm_decoder;

struct vm_decoder_ops {
    const char *kind;           /* "cpython", "shadow" */
    /* Frames of thread tid, innermost first; returns the count (0..max),
     * or -1 when the thread's VM state could not be read (the sample
     * keeps its native frames). */
    int (*capture)(struct vm_decoder *d, pid_t tid,
                   const struct user_regs_struct *regs,
                   struct vm_frame *out, int max);
    /* Optional: the copy of this thread's native stack taken in the
     * current stop ([lo, lo + len) in the target, at buf), which the next
     * capture() may read instead of the target. NULL when unused. */
    void (*stack_copy)(struct vm_decoder *d, uint64_t lo, const void *buf, size_t len);
    /* 1 when ip belongs to the interpreter itself (hidden by --native=ext) */
    int (*is_interpreter_ip)(struct vm_decoder *d, uint64_t ip);
    void (*thread_gone)(struct vm_decoder *d, pid_t tid);
    void (*destroy)(struct vm_decoder *d);
};

struct vm_decoder {
    const struct vm_decoder_ops *ops;
    const char *interp_name;    /* HEADER interpreter name: "cpython", a VM's own */
    struct remote_mem *mem;
    vm_name_sink sink;
    void *sink_arg;
    int want_lines;             /* --lines: fill vm_frame.line */
    uint64_t stat_capture_fail; /* captures that returned -1 */
    uint64_t stat_truncated;    /* captures cut at max frames: the innermost
                                   max were kept, the outermost left out
                                   (the one count of it, for every VM) */
};

#endif
