/*
 * vmprof_shim.h - the public C API of libvmprof-shim.so for language VMs
 * that want vmprof-attach to show their frames (after RPython's rvmprof).
 *
 * The VM does three things:
 *
 *   1. Once, at start:  vmprof_shim_init("myvm", (void *)my_eval);
 *      (the address tells the shim which loaded object is "the
 *      interpreter", so the profiler can hide its internal native frames).
 *   2. Once per code object, before it first runs:
 *        vmprof_shim_register_code(id, "lang:name:line:file");
 *      Registering an id again with another name (an id that is an address
 *      reused after a free) makes the new name current from then on.
 *   3. Per thread that runs VM code: keep a top pointer,
 *        static __thread struct vmprof_shim_frame *top;
 *        vmprof_shim_register_thread(&top);   ...   unregister at the end
 *      and, in the function that runs one code object (the eval function),
 *        struct vmprof_shim_frame rec;
 *        vmprof_shim_push(&top, &rec, id);
 *        ... run the code ...
 *        vmprof_shim_pop(&top, &rec);
 *
 * The record is a local variable: it lives on the native stack, inside the
 * eval function's frame, so its address tells the profiler exactly where
 * the VM frame sits among native frames (C -> VM -> C -> VM callbacks come
 * out in the right order). One eval-function call per VM frame is the
 * natural shape; a VM that runs several VM frames in one C frame may push
 * several records there (still locals of that C frame).
 *
 * Rules:
 *   - Records must be popped in LIFO order on every exit path. A VM that
 *     unwinds with longjmp must restore *top to the value it had at the
 *     setjmp (save it next to the jmp_buf).
 *   - The profiler reads a thread only while ptrace holds it stopped, so no
 *     atomic instructions are needed: push and pop are plain stores fenced
 *     by compiler barriers, which keep the record complete before it is
 *     linked and linked until the function is done with it. Cost: three
 *     stores and a load on entry, a load and a store on exit.
 *   - Nothing here allocates, locks or makes a system call on the call
 *     path. Registration calls take a tiny spinlock (they are rare): they
 *     are thread-safe but not async-signal-safe (do not call them from a
 *     signal handler).
 *   - Everything is safe to call before or without a profiler: the shim
 *     only publishes facts in shared memory.
 *
 * All functions return 0 on success and -1 with errno set on failure
 * (ENOSPC: table full; EINVAL: bad argument; EBUSY: the process is
 * CPython, whose frames the profiler reads directly). A failure never
 * affects the VM: its frames are just missing from profiles.
 */
#ifndef VMPROF_SHIM_H
#define VMPROF_SHIM_H

#include <stdint.h>

#include "vmprof_registry_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMPROF_SHIM_API_VERSION 1

#if defined(__GNUC__)
#define VMPROF_SHIM_EXPORT __attribute__((visibility("default")))
#define VMPROF_SHIM_BARRIER() __asm__ __volatile__("" ::: "memory")
#else
#error "vmprof_shim.h needs GCC or Clang"
#endif

/* One VM frame, as a local variable of the eval function. */
struct vmprof_shim_frame {
    struct vmprof_shim_frame *prev;     /* the caller's record, NULL at the bottom */
    uint64_t code_id;                   /* as registered */
};

VMPROF_REG_ASSERT(sizeof(void *) == 8, "the registry ABI is 64-bit");
VMPROF_REG_ASSERT(sizeof(struct vmprof_shim_frame) == sizeof(struct vmprof_reg_frame),
                  "frame record size");
VMPROF_REG_ASSERT(offsetof(struct vmprof_shim_frame, prev) ==
                  offsetof(struct vmprof_reg_frame, prev), "frame prev offset");
VMPROF_REG_ASSERT(offsetof(struct vmprof_shim_frame, code_id) ==
                  offsetof(struct vmprof_reg_frame, code_id), "frame id offset");

/* Names the VM (<= 63 bytes of UTF-8; it becomes the interpreter name in
 * the profile) and, with any address inside the VM's own code (NULL if
 * none), the loaded object whose native frames are "the interpreter".
 * Creates the registry. Call it first: a profiler that attached earlier
 * keeps what it read at attach (calling it again updates the registry for
 * profilers that attach later). */
VMPROF_SHIM_EXPORT int vmprof_shim_init(const char *vm_name,
                                        const void *addr_in_interpreter);

/* id -> "lang:name:line:file" (UTF-8, 1..4096 bytes; the profiler escapes
 * ':' inside name and file when it splits the fields, taking the first
 * all-digit field as the line). Thread-safe. Creates the registry on
 * first use if vmprof_shim_init was not called. */
VMPROF_SHIM_EXPORT int vmprof_shim_register_code(uint64_t code_id,
                                                 const char *name);

/* Registers the calling thread: top is the address of the pointer that
 * vmprof_shim_push/pop update for this thread (it must stay valid until
 * the thread unregisters or exits). Registering again replaces the
 * previous entry. A thread that exits without unregistering is
 * unregistered by the shim's thread-exit destructor. */
VMPROF_SHIM_EXPORT int vmprof_shim_register_thread(struct vmprof_shim_frame **top);
VMPROF_SHIM_EXPORT int vmprof_shim_unregister_thread(void);

/* Entry of a VM frame: f is a local variable of the calling function. */
static inline void vmprof_shim_push(struct vmprof_shim_frame **top,
                                    struct vmprof_shim_frame *f,
                                    uint64_t code_id)
{
    f->prev = *top;
    f->code_id = code_id;
    VMPROF_SHIM_BARRIER();      /* the record is complete before it is linked */
    *top = f;
    VMPROF_SHIM_BARRIER();      /* linked before the frame's code runs */
}

/* Exit of the VM frame pushed with f. */
static inline void vmprof_shim_pop(struct vmprof_shim_frame **top,
                                   struct vmprof_shim_frame *f)
{
    VMPROF_SHIM_BARRIER();      /* the frame's code is done */
    *top = f->prev;
    VMPROF_SHIM_BARRIER();      /* unlinked before f's storage is reused */
}

#ifdef __cplusplus
}
#endif

#endif
