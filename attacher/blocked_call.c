/*
 * blocked_call.c - where a blocked thread waits (see blocked_call.h).
 *
 * Read without stopping the thread: /proc/PID/task/TID/syscall (one pread
 * through a file kept open in the thread, t->call_fd; the kernel answers
 * "running" at once for a thread on a CPU, without interrupting it) and
 * schedstat (t->runs_fd). Read from a stop: the registers, where orig_rax
 * is the call and rax the kernel's verdict on it. Invariants: a failing
 * site owns its copy of the stack; a thread has at most
 * THREAD_FAILING_SITES, replaced oldest first.
 */
#include "blocked_call.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/syscall.h>

#include "ptrace_session.h"

/* include/linux/errno.h: the kernel's own codes for a call interrupted
 * by a signal (or a ptrace stop), never seen by user space */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

int stopped_in_call(const struct user_regs_struct *r, struct proc_call *c)
{
    long long ret = -(long long)r->rax;
    if ((long long)r->orig_rax < 0 ||
        (ret != ERESTARTSYS && ret != ERESTARTNOINTR && ret != ERESTARTNOHAND &&
         ret != ERESTART_RESTARTBLOCK && ret != EINTR))
        return CALL_NONE;
    /* An interrupted sleep (nanosleep, a futex with a timeout) goes on in
     * restart_syscall, with the same registers. -EINTR: the call fails
     * when let go (a stop does that to epoll_wait, sigtimedwait, semop,
     * sockets with a timeout: signal(7)). */
    c->nr = ret == ERESTART_RESTARTBLOCK ? SYS_restart_syscall : (long)r->orig_rax;
    const uint64_t a[6] = { r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9 };
    memcpy(c->args, a, sizeof(a));
    c->sp = r->rsp;
    c->pc = r->rip;
    return ret == EINTR ? CALL_FAILED : CALL_RESTARTS;
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
    if (t->runs_fd < 0) {
        char path[96];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)t->tid);
        t->runs_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (t->runs_fd < 0)
            return -1;
    }
    char buf[96];
    ssize_t n = pread(t->runs_fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* "RUNTIME_NS WAIT_NS RUNS" */
    char *p = buf;
    for (int field = 0; field < 2 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    long long v = p ? strtoll(p, NULL, 10) : 0;
    return v > 0 ? v : -1;
}

void keep_failing_site(struct thread *t, const struct proc_call *c, const uint64_t *w, int n)
{
    if (n <= 0)
        return;
    for (int i = 0; i < t->nsites; i++)
        if (same_place(&t->sites[i].call, CALL_FAILED, c))
            return;
    if (!t->sites && !(t->sites = calloc(THREAD_FAILING_SITES, sizeof(*t->sites))))
        return;
    int i = t->nsites < THREAD_FAILING_SITES ? t->nsites : t->next_site;
    struct failing_site *f = &t->sites[i];
    uint64_t *nw = realloc(i < t->nsites ? f->words : NULL, (size_t)n * sizeof(*w));
    if (!nw)
        return;
    memcpy(nw, w, (size_t)n * sizeof(*w));
    *f = (struct failing_site){ *c, nw, n };
    if (t->nsites < THREAD_FAILING_SITES)
        t->nsites++;
    else
        t->next_site = (t->next_site + 1) % THREAD_FAILING_SITES;
}

const struct failing_site *at_failing_site(pid_t pid, struct thread *t)
{
    struct proc_call now;
    if (!t->nsites || blocked_now(pid, t, &now) != 1)
        return NULL;
    for (int i = 0; i < t->nsites; i++)
        if (same_place(&t->sites[i].call, CALL_FAILED, &now))
            return &t->sites[i];
    return NULL;
}

void free_failing_sites(struct thread *t)
{
    for (int i = 0; i < t->nsites; i++)
        free(t->sites[i].words);
    free(t->sites);
    t->sites = NULL;
    t->nsites = t->next_site = 0;
}
