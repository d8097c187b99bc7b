/*
 * ptrace_floor.c - the bare cost of one ptrace stop on this machine, for
 * the benchmark's stop-time section: the floor no sampler can beat.
 *
 * A forked child spins; the parent seizes it and, every millisecond,
 * times PTRACE_INTERRUPT -> waitpid -> PTRACE_GETREGS -> one 4 KiB
 * process_vm_readv at the child's SP -> PTRACE_CONT, the minimal cycle a
 * sampler does. Cycles alternate two ways of waiting for the stop:
 * sleeping in waitpid, and polling it (WNOHANG, yielding between polls,
 * as vmprof-attach does on an uncontended machine; on a VM a tracer that
 * sleeps pays the host's wake-up of its CPU). Prints
 * "floor_us_p50=N floor_us_p99=N polled_us_p50=N polled_us_p99=N cycles=N"
 * (cycles of each kind).
 *
 *   ptrace_floor [CYCLES]      (default 2000)
 *
 * The child dies with the parent (PR_SET_PDEATHSIG) and is killed and
 * reaped on every path out of main.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define MAX_CYCLES 1000000

static void spin_forever(void)
{
    volatile uint64_t x = 0;
    for (;;)
        x++;
}

/* One stop/snapshot/continue cycle; returns its duration in ns, or 0. */
static uint64_t one_cycle(pid_t child, char *page, int poll)
{
    uint64_t t0 = mono_ns();
    if (ptrace(PTRACE_INTERRUPT, child, 0, 0) < 0)
        return 0;
    int status;
    pid_t r;
    while ((r = waitpid(child, &status, __WALL | (poll ? WNOHANG : 0))) == 0)
        sched_yield();
    if (r != child || !WIFSTOPPED(status))
        return 0;
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, child, 0, &regs) < 0)
        return 0;
    struct iovec local = { page, 4096 };
    struct iovec remote = { (void *)(uintptr_t)(regs.rsp & ~(uint64_t)4095), 4096 };
    if (process_vm_readv(child, &local, 1, &remote, 1, 0) < 0)
        return 0;
    if (ptrace(PTRACE_CONT, child, 0, 0) < 0)
        return 0;
    return mono_ns() - t0;
}

/* n cycles of each kind, alternated: v (sleeping) and vp (polling). */
static int measure(pid_t child, uint64_t *v, uint64_t *vp, int n)
{
    static char page[4096];
    struct timespec gap = { 0, 1000000 };
    for (int i = 0; i < 2 * n; i++) {
        nanosleep(&gap, NULL);
        uint64_t d = one_cycle(child, page, i % 2);
        if (!d)
            return -1;
        (i % 2 ? vp : v)[i / 2] = d;
    }
    return n;
}

static double pct_us(uint64_t *v, int n, int pct)
{
    return (double)v[(size_t)n * (size_t)pct / 100] / 1000.0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    if (n <= 0 || n > MAX_CYCLES) {
        fprintf(stderr, "usage: ptrace_floor [CYCLES], 1..%d\n", MAX_CYCLES);
        return 2;
    }
    uint64_t *v = calloc((size_t)n, sizeof(*v)), *vp = calloc((size_t)n, sizeof(*vp));
    if (!v || !vp)
        return 1;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        perror("ptrace_floor: fork");
        return 1;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == parent)
            spin_forever();
        _exit(0);
    }
    int rc = 1, got = -1;
    if (ptrace(PTRACE_SEIZE, child, 0, 0) < 0)
        fprintf(stderr, "ptrace_floor: PTRACE_SEIZE: %s\n", strerror(errno));
    else if ((got = measure(child, v, vp, n)) < 0)
        fprintf(stderr, "ptrace_floor: a stop cycle failed: %s\n", strerror(errno));
    if (got > 0) {
        qsort(v, (size_t)got, sizeof(*v), cmp_u64);
        qsort(vp, (size_t)got, sizeof(*vp), cmp_u64);
        printf("floor_us_p50=%.1f floor_us_p99=%.1f polled_us_p50=%.1f polled_us_p99=%.1f "
               "cycles=%d\n", pct_us(v, got, 50), pct_us(v, got, 99), pct_us(vp, got, 50),
               pct_us(vp, got, 99), got);
        rc = 0;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, __WALL);
    free(v);
    free(vp);
    return rc;
}
