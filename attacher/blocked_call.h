/*
 * blocked_call.h - where a blocked thread waits, for the sampler's choice
 * not to stop it (sampler.c, "Wall mode" and blocked_with_last): the
 * system call a stop interrupted (read from the stop's registers), the
 * call /proc/TID/syscall shows it in now, its run count, and the places
 * where our stop made a call fail with EINTR ("failing sites").
 */
#ifndef VMPROF_BLOCKED_CALL_H
#define VMPROF_BLOCKED_CALL_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "frames.h"
#include "proc_task.h"

/* What a stop found the thread doing (stopped_in_call). */
#define CALL_NONE 0             /* not blocked in a system call */
#define CALL_RESTARTS 1         /* blocked; the kernel goes on with the call */
#define CALL_FAILED 2           /* blocked; the call failed with EINTR */

/* A place where our stop made a blocking call fail, and the stack sampled
 * there. Each thread keeps THREAD_FAILING_SITES, the oldest replaced. */
#define THREAD_FAILING_SITES 4
struct failing_site {
    struct proc_call call;
    uint64_t *words;            /* owned; n may be 0 (nothing to show) */
    int n;
    struct vm_frame *vm;        /* owned: the VM frames of that sample, to */
    int n_vm;                   /* tell another VM caller of the same call */
};

struct thread;

/* The call a stopped thread goes back to when let go (*c), if our stop
 * interrupted it blocked in one: CALL_RESTARTS or CALL_FAILED; else
 * CALL_NONE. */
int stopped_in_call(const struct user_regs_struct *r, struct proc_call *c);
/* Whether call c, of kind CALL_*, is the place `now`: same number, stack
 * and instruction pointers, and arguments; for CALL_FAILED only the first
 * (the descriptor or object waited on): code that calls again may count a
 * timeout down, and CPython allocates epoll's event buffer per call. */
int same_place(const struct proc_call *c, int kind, const struct proc_call *now);
/* 1 when thread t of process pid is blocked in a system call now (*now
 * filled), 0 running or blocked outside one, -1 unreadable. */
int blocked_now(pid_t pid, struct thread *t, struct proc_call *now);
/* Times t has been put on a CPU (schedstat's third field), -1 unknown
 * (gone, or a kernel that does not count them: reads 0). */
int64_t thread_runs(pid_t pid, struct thread *t);
/* Keeps failing place c with its stack w[n] and VM frames vm[n_vm]
 * (copies); a known place gets the new stack. */
void keep_failing_site(struct thread *t, const struct proc_call *c, const uint64_t *w, int n,
                       const struct vm_frame *vm, int n_vm);
/* t's failing site at place `now` (a call it is blocked in), or NULL. */
const struct failing_site *failing_site_at(const struct thread *t, const struct proc_call *now);
/* Frees t's failing sites. */
void free_failing_sites(struct thread *t);

#endif
