/*
 * vm_cpython.h - the CPython backend of vm_decoder: walks the target's own
 * frame chain remotely (no per-call cost in the target) and names each
 * code object "py:<qualname>:<firstlineno>:<filename>".
 *
 * The shim publishes _PyRuntime's address and Py_Version in the registry;
 * the layout comes from cpython_layout (static for 3.11/3.12, the target's
 * _Py_DebugOffsets for 3.13+). Every VM frame returned carries an anchor:
 * an address on the native C stack that names the _PyEval_EvalFrameDefault
 * call running it (3.11: its _PyCFrame; 3.12+: its entry frame), which is
 * what the exact merge places.
 */
#ifndef VMPROF_VM_CPYTHON_H
#define VMPROF_VM_CPYTHON_H

#include <stddef.h>
#include <stdint.h>

#include "remote_mem.h"
#include "vm_decoder.h"

struct cpython_target {
    uint64_t runtime_addr;      /* &_PyRuntime in the target */
    uint32_t version_hex;       /* Py_Version */
    uint64_t interp_text_lo, interp_text_hi; /* interpreter's code */
    /* 3.11-3.13: the shim's count of code objects freed (a word of its
     * registry that the target keeps moving), or NULL. With it a code
     * address proved once is trusted until the count moves, as 3.14's
     * own code generation allows: no read of the code object per sample.
     * Must stay valid while the decoder lives. */
    const uint64_t *code_frees;
};

/* NULL on error, with a one-line reason in err (unsupported version,
 * free-threaded build, unreadable or invalid debug offsets). */
struct vm_decoder *vm_cpython_create(const struct cpython_target *t,
                                     struct remote_mem *mem,
                                     vm_name_sink sink, void *sink_arg,
                                     int want_lines, char *err, size_t errlen);

/* Test hook: the same decoder reading memory through read() (0 when all
 * len bytes were copied, -1 otherwise) instead of remote_read(); batched
 * reads become one read() per span. Used by the fuzz harness and unit
 * tests. d->mem is NULL then. */
typedef int (*cpython_read_fn)(void *ctx, uint64_t addr, void *buf, size_t len);
struct vm_decoder *vm_cpython_create_with_reader(const struct cpython_target *t,
                                                 cpython_read_fn read,
                                                 void *read_ctx,
                                                 vm_name_sink sink,
                                                 void *sink_arg, int want_lines,
                                                 char *err, size_t errlen);

/* The copy of the thread's native stack taken in the current stop: target
 * addresses [lo, lo + len), at buf. The next capture() (only) reads what
 * lies inside it from the copy, not from the target: 3.11's _PyCFrames
 * and 3.12+'s entry frames live on the C stack, so a mixed Python/C stack
 * then costs no read for them. buf must stay valid until capture returns. */
void vm_cpython_stack_copy(struct vm_decoder *d, uint64_t lo, const void *buf,
                           size_t len);

struct vm_cpython_stats {
    uint64_t captures;          /* capture() calls */
    uint64_t reads;             /* reader calls: reads, and batches of
                                   spans (one process_vm_readv each,
                                   unless a span fails) */
    uint64_t pages;             /* pages read (a page is read whole,
                                   at most once per capture) */
    uint64_t rescans;           /* walks of the thread lists */
    uint64_t names;             /* ids emitted through the sink */
    uint64_t identity_changes;  /* cached addresses that became new code */
    uint64_t hidden_changes;    /* ... with the same name pointers: only
                                   the strings' contents told */
    uint64_t code_trusted;      /* code addresses trusted without a read:
                                   no code object freed since their proof */
};

/* d must come from vm_cpython_create*. */
void vm_cpython_get_stats(const struct vm_decoder *d, struct vm_cpython_stats *out);

#endif
