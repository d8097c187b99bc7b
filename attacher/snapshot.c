/*
 * snapshot.c - the copy taken while a thread is stopped.
 *
 * Cost model: one PTRACE_GETREGS, one process_vm_readv of the live stack,
 * and the decoder's few reads. Copying costs about 1 us per 6 KiB, so the
 * caller asks for what the thread's last unwinds used (plus a margin),
 * never past the end of the mapping that holds SP (no fault half-way on a
 * guard page); what the copy lacks the unwinder reads live, counted.
 * A deep stack's copy is about twice as slow when its lines are in the
 * cache of the CPU the thread ran on (measured on the 30-deep benchmark,
 * ~90 KB: p50 23 -> 14 us, p99 60 -> 30 us warm), so the caller warms
 * this CPU's cache with the older frames before the stop (snapshot_warm):
 * that costs the tracer one more read, not the target any stop time.
 */
#include "snapshot.h"
#include "mono_clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <time.h>

int snapshot_init(struct snapshot *sn, size_t stack_cap)
{
    memset(sn, 0, sizeof(*sn));
    sn->stack = malloc(stack_cap);
    if (!sn->stack)
        return -1;
    sn->stack_cap = stack_cap;
    return 0;
}

void snapshot_free(struct snapshot *sn)
{
    free(sn->stack);
    sn->stack = NULL;
}

int snapshot_take(struct snapshot *sn, struct remote_mem *mem, pid_t tid, pid_t vm_tid,
                  uint64_t (*stack_end)(void *arg, uint64_t sp), void *arg,
                  size_t want_len, struct vm_decoder *dec)
{
    sn->tid = tid;
    sn->stack_len = 0;
    sn->n_vm = 0;
    sn->copy_ns = sn->vm_ns = 0;
    uint64_t t0 = mono_ns();
    if (ptrace(PTRACE_GETREGS, tid, 0, &sn->regs) < 0)
        return -1;

    uint64_t sp = sn->regs.rsp;
    sn->stack_lo = sp;
    uint64_t hi = stack_end ? stack_end(arg, sp) : 0;
    if (hi > sp) {
        size_t want = hi - sp;
        if (want > want_len)
            want = want_len;
        if (want > sn->stack_cap)
            want = sn->stack_cap;
        ssize_t n = remote_read_upto(mem, sp, sn->stack, want);
        if (n > 0)
            sn->stack_len = (size_t)n;
    }

    uint64_t t1 = mono_ns();
    sn->copy_ns = t1 - t0;
    if (dec) {
        /* The decoder may read what it needs of the C stack from the copy
         * (CPython's C-stack frames), not from the target. */
        if (dec->ops->stack_copy && sn->stack_len)
            dec->ops->stack_copy(dec, sn->stack_lo, sn->stack, sn->stack_len);
        sn->n_vm = dec->ops->capture(dec, vm_tid, &sn->regs, sn->vm, MAX_VM_FRAMES);
        if (dec->ops->stack_copy)
            dec->ops->stack_copy(dec, 0, NULL, 0);
        sn->vm_ns = mono_ns() - t1;
    }
    return 0;
}

/* A plain process_vm_readv, not remote_mem's: this read is not part of
 * any sample, and must not count in the reads, bytes and faults that
 * --stats reports for the samples. */
ssize_t snapshot_warm(struct snapshot *sn, pid_t tid, uint64_t last_sp, uint64_t stack_hi,
                      size_t want)
{
    if (!last_sp || want <= SNAPSHOT_WARM_MIN)
        return 0;
    uint64_t lo = last_sp + SNAPSHOT_WARM_SKIP;
    uint64_t hi = last_sp + want;
    if (hi < last_sp || (stack_hi && hi > stack_hi))
        hi = stack_hi;
    if (hi <= lo)
        return 0;
    size_t len = hi - lo;
    if (len > sn->stack_cap)
        len = sn->stack_cap;
    struct iovec local = { .iov_base = sn->stack, .iov_len = len };
    struct iovec remote = { .iov_base = (void *)(uintptr_t)lo, .iov_len = len };
    return process_vm_readv(tid, &local, 1, &remote, 1, 0);
}
