/*
 * blocked_call.c - where a blocked thread waits (see blocked_call.h).
 *
 * Read without stopping the thread (proc_task.c): /proc/PID/task/TID/
 * syscall (one pread through a file kept open in the thread, t->call_fd;
 * the kernel answers "running" at once for a thread on a CPU, without
 * interrupting it) and schedstat (t->runs_fd). Read from a stop: the
 * registers, where orig_rax is the call and rax the kernel's verdict on
 * it. Invariants: a failing
 * site owns its copy of the stack; a thread has at most
 * THREAD_FAILING_SITES, replaced oldest first.
 */
#include "blocked_call.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sys/syscall.h>

#include "ptrace_session.h"

/* include/linux/errno.h: the kernel's own codes for a call interrupted
 * by a signal (or a ptrace stop), never seen by user space */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

/* rax holds -code (unsigned: rax is any 64-bit value, e.g. in user code) */
static int rax_is(const struct user_regs_struct *r, int code)
{
    return r->rax == (unsigned long long)-(long long)code;
}

int stopped_in_call(const struct user_regs_struct *r, struct proc_call *c)
{
    if ((long long)r->orig_rax < 0 ||
        !(rax_is(r, ERESTARTSYS) || rax_is(r, ERESTARTNOINTR) || rax_is(r, ERESTARTNOHAND) ||
          rax_is(r, ERESTART_RESTARTBLOCK) || rax_is(r, EINTR)))
        return CALL_NONE;
    /* An interrupted sleep (nanosleep, a futex with a timeout) goes on in
     * restart_syscall, with the same registers. -EINTR: the call fails
     * when let go (a stop does that to epoll_wait, sigtimedwait, semop,
     * sockets with a timeout: signal(7)). */
    c->nr = rax_is(r, ERESTART_RESTARTBLOCK) ? SYS_restart_syscall : (long)r->orig_rax;
    const uint64_t a[6] = { r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9 };
    memcpy(c->args, a, sizeof(a));
    c->sp = r->rsp;
    c->pc = r->rip;
    return rax_is(r, EINTR) ? CALL_FAILED : CALL_RESTARTS;
}

int same_place(const struct proc_call *c, int kind, const struct proc_call *now)
{
    int args = kind == CALL_FAILED ? 1 : 6;
    return c->nr == now->nr && c->sp == now->sp && c->pc == now->pc &&
           memcmp(c->args, now->args, (size_t)args * sizeof(c->args[0])) == 0;
}

int blocked_now(pid_t pid, struct thread *t, struct proc_call *now)
{
    return proc_thread_call(&t->call_fd, pid, t->tid, now);
}

int64_t thread_runs(pid_t pid, struct thread *t)
{
    uint64_t v[3];
    if (proc_thread_schedstat(&t->runs_fd, pid, t->tid, v) < 0 || v[2] == 0 ||
        v[2] > INT64_MAX)
        return -1;
    return (int64_t)v[2];
}

void keep_failing_site(struct thread *t, const struct proc_call *c, const uint64_t *w, int n,
                       const struct vm_frame *vm, int n_vm)
{
    if (n < 0 || n_vm < 0)
        return;
    int i = 0;
    while (i < t->nsites && !same_place(&t->sites[i].call, CALL_FAILED, c))
        i++;
    if (i == t->nsites) {       /* a new place: a free slot, or the oldest */
        if (!t->sites && !(t->sites = calloc(THREAD_FAILING_SITES, sizeof(*t->sites))))
            return;
        if (i == THREAD_FAILING_SITES) {
            i = t->next_site;
            t->next_site = (t->next_site + 1) % THREAD_FAILING_SITES;
        } else {
            t->sites[i] = (struct failing_site){ .words = NULL, .vm = NULL };
            t->nsites++;
        }
    }
    struct failing_site *f = &t->sites[i];
    uint64_t *nw = realloc(f->words, (size_t)(n ? n : 1) * sizeof(*w));
    if (nw)
        f->words = nw;
    struct vm_frame *nv = realloc(f->vm, (size_t)(n_vm ? n_vm : 1) * sizeof(*vm));
    if (nv)
        f->vm = nv;
    if (!nw || !nv) {           /* no memory: the place is no longer known */
        f->call.nr = -1;
        f->n = f->n_vm = 0;
        return;
    }
    memcpy(f->words, w, (size_t)n * sizeof(*w));
    memcpy(f->vm, vm, (size_t)n_vm * sizeof(*vm));
    f->call = *c;
    f->n = n;
    f->n_vm = n_vm;
}

const struct failing_site *failing_site_at(const struct thread *t, const struct proc_call *now)
{
    for (int i = 0; i < t->nsites; i++)
        if (same_place(&t->sites[i].call, CALL_FAILED, now))
            return &t->sites[i];
    return NULL;
}

void free_failing_sites(struct thread *t)
{
    for (int i = 0; i < t->nsites; i++) {
        free(t->sites[i].words);
        free(t->sites[i].vm);
    }
    free(t->sites);
    t->sites = NULL;
    t->nsites = t->next_site = 0;
}
