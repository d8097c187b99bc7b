/*
 * snapshot.h - what is copied from a thread while it is stopped.
 *
 * The thread is stopped only for snapshot_take(): registers, the live
 * part of its native stack (SP up to the end of the stack mapping, one
 * process_vm_readv) and its VM frames (through the decoder). Unwinding
 * and everything after it run on the copy, after the thread runs again.
 * Buffers are allocated once; nothing is allocated per sample.
 */
#ifndef VMPROF_SNAPSHOT_H
#define VMPROF_SNAPSHOT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "frames.h"
#include "remote_mem.h"
#include "vm_decoder.h"

#define SNAPSHOT_STACK_DEFAULT (512 * 1024)

struct snapshot {
    pid_t tid;
    struct user_regs_struct regs;
    uint64_t stack_lo;          /* address of stack[0] (the SP) */
    size_t stack_len;           /* bytes copied */
    uint8_t *stack;
    size_t stack_cap;
    struct vm_frame vm[MAX_VM_FRAMES];
    int n_vm;                   /* -1: VM state unreadable, 0: none */
    uint64_t copy_ns, vm_ns;    /* time taken by the registers and stack,
                                   and by the VM frames */
};

int snapshot_init(struct snapshot *sn, size_t stack_cap);
void snapshot_free(struct snapshot *sn);

/* Copy registers, stack [sp, min(stack_hi, sp + want)) (capped by the
 * buffer), and VM frames of the thread the target knows as vm_tid (dec
 * may be NULL). Returns 0, or -1 when the registers cannot be read (thread
 * gone). A stack that cannot be read leaves stack_len 0: unwinding then
 * reads live memory. */
int snapshot_take(struct snapshot *sn, struct remote_mem *mem, pid_t tid, pid_t vm_tid,
                  uint64_t (*stack_end)(void *arg, uint64_t sp), void *arg,
                  size_t want, struct vm_decoder *dec);

/* Before the stop (the thread still runs): read what the thread's last
 * snapshot held above its top page, [last_sp + SNAPSHOT_WARM_SKIP,
 * min(last_sp + want, stack_hi)), into sn's buffer, to be overwritten by
 * the next snapshot_take. Only a cache warm-up: the older frames of a deep
 * stack rarely change, and copying them while the thread is stopped is
 * faster from this CPU's cache. Nothing read here is used. Does nothing
 * for want <= SNAPSHOT_WARM_MIN or last_sp 0. Returns the bytes read,
 * 0 when nothing was, -1 when the read failed (harmless). */
#define SNAPSHOT_WARM_MIN (8 * 1024)
#define SNAPSHOT_WARM_SKIP 4096
ssize_t snapshot_warm(struct snapshot *sn, pid_t tid, uint64_t last_sp, uint64_t stack_hi,
                      size_t want);

#endif
