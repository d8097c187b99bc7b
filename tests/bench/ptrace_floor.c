/*
 * ptrace_floor.c - the bare cost of one ptrace stop on this machine, for
 * the benchmark's stop-time section: the floor no sampler can beat.
 *
 * A forked child spins; the parent seizes it and, every millisecond,
 * times PTRACE_INTERRUPT -> waitpid -> PTRACE_GETREGS -> one 4 KiB
 * process_vm_readv at the child's SP -> PTRACE_CONT, the minimal cycle a
 * sampler does. Prints "floor_us_p50=N floor_us_p99=N cycles=N".
 *
 *   ptrace_floor [CYCLES]      (default 2000)
 *
 * The child dies with the parent (PR_SET_PDEATHSIG) and is killed and
 * reaped on every path out of main.
 */
#include <errno.h>
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

#define MAX_CYCLES 1000000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void spin_forever(void)
{
    volatile uint64_t x = 0;
    for (;;)
        x++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One stop/snapshot/continue cycle; returns its duration in ns, or 0. */
static uint64_t one_cycle(pid_t child, char *page)
{
    uint64_t t0 = now_ns();
    if (ptrace(PTRACE_INTERRUPT, child, 0, 0) < 0)
        return 0;
    int status;
    if (waitpid(child, &status, __WALL) != child || !WIFSTOPPED(status))
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
    return now_ns() - t0;
}

static int measure(pid_t child, uint64_t *v, int n)
{
    static char page[4096];
    struct timespec gap = { 0, 1000000 };
    int got = 0;
    for (int i = 0; i < n; i++) {
        nanosleep(&gap, NULL);
        uint64_t d = one_cycle(child, page);
        if (!d)
            return -1;
        v[got++] = d;
    }
    return got;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    if (n <= 0 || n > MAX_CYCLES) {
        fprintf(stderr, "usage: ptrace_floor [CYCLES], 1..%d\n", MAX_CYCLES);
        return 2;
    }
    uint64_t *v = calloc((size_t)n, sizeof(*v));
    if (!v)
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
    else if ((got = measure(child, v, n)) < 0)
        fprintf(stderr, "ptrace_floor: a stop cycle failed: %s\n", strerror(errno));
    if (got > 0) {
        qsort(v, (size_t)got, sizeof(*v), cmp_u64);
        printf("floor_us_p50=%.1f floor_us_p99=%.1f cycles=%d\n", (double)v[got / 2] / 1000.0,
               (double)v[(size_t)got * 99 / 100] / 1000.0, got);
        rc = 0;
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, __WALL);
    free(v);
    return rc;
}
