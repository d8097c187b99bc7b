/*
 * pause_probe.c - what a sample costs the target, measured by the target:
 * a native loop that reads CLOCK_MONOTONIC (vDSO) as fast as it can and
 * counts every gap between two reads longer than GAP_NS as time it lost
 * (an interrupt, a ptrace stop and its wake-up, a preemption). Profiled
 * and bare, the difference of the time lost, divided by the attacher's
 * stops, is the pause each sample costs the target as the target sees it:
 * the stop the attacher times (PTRACE_INTERRUPT to PTRACE_CONT) plus what
 * the attacher cannot see (the target's trap into the stop, its CPU's
 * wake-up after PTRACE_CONT, the interrupts of the attacher's clock reads).
 *
 *   pause_probe SECONDS [--wait-tracer]
 *
 * --wait-tracer: print "ready PID", wait (at most 120 s) until a tracer
 * holds this process, settle 0.3 s, print "go", as workload.py does. Then
 * spin SECONDS and print
 *   "probe-lost LOST_NS GAPS GAP_P50_NS GAP_P99_NS"
 *   "bench-time SECONDS"
 * Exit 2 on bad arguments, 1 when no tracer came.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#define GAP_NS 2000             /* a longer gap between two reads is lost time */
#define MAX_GAPS (1u << 20)     /* gaps kept for the percentiles */

static int traced(void)
{
    char buf[4096];
    FILE *f = fopen("/proc/self/status", "r");
    int pid = 0;
    if (!f)
        return 0;
    while (fgets(buf, sizeof buf, f))
        if (sscanf(buf, "TracerPid: %d", &pid) == 1)
            break;
    fclose(f);
    return pid != 0;
}

static uint64_t gaps[MAX_GAPS];

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0;
    int wait = argc > 2 && strcmp(argv[2], "--wait-tracer") == 0;
    if (secs <= 0 || secs > 3600 || (argc > 2 && !wait) || argc > 3) {
        fprintf(stderr, "usage: pause_probe SECONDS [--wait-tracer]\n");
        return 2;
    }
    if (wait) {
        printf("ready %d\n", (int)getpid());
        fflush(stdout);
        for (int i = 0; !traced(); i++) {
            if (i > 120000) {
                fprintf(stderr, "pause_probe: no tracer came in 120 s\n");
                return 1;
            }
            usleep(1000);
        }
        usleep(300000);
        printf("go\n");
        fflush(stdout);
    }
    uint64_t start = mono_ns(), end = start + (uint64_t)(secs * 1e9);
    uint64_t prev = start, lost = 0;
    size_t n = 0, all = 0;
    for (;;) {
        uint64_t t = mono_ns();
        if (t - prev > GAP_NS) {
            lost += t - prev;
            all++;
            if (n < MAX_GAPS)
                gaps[n++] = t - prev;
        }
        prev = t;
        if (t >= end)
            break;
    }
    qsort(gaps, n, sizeof gaps[0], cmp_u64);
    printf("probe-lost %llu %zu %llu %llu\n", (unsigned long long)lost, all,
           (unsigned long long)(n ? gaps[n / 2] : 0),
           (unsigned long long)(n ? gaps[n * 99 / 100] : 0));
    printf("bench-time %.6f\n", (double)(prev - start) / 1e9);
    return 0;
}
