/*
 * cpu_split.c - integration target: THREADS threads, each spending a known
 * share of its CPU time in split_hot() and the rest in split_cold(), for
 * SECONDS seconds (argv: SECONDS [THREADS [HOT_PERCENT]]).
 *
 * The split is by thread CPU time (CLOCK_THREAD_CPUTIME_ID), so it holds
 * whatever the scheduler does; a profiler in --mode cpu must find it.
 * Prints "ready PID" once every thread runs, and "done cpu=SECONDS" (the
 * process's CPU time) at the end. Built without inlining or
 * sibling calls so each function keeps its own frame.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static double seconds = 5, hot_share = 0.75;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Spin for `cpu` seconds of this thread's CPU time. */
__attribute__((noinline)) static void spin_cpu(double cpu)
{
    double end = cpu_now() + cpu;
    while (cpu_now() < end)
        for (int i = 0; i < 2000; i++)
            sink += (unsigned long)i;
}

__attribute__((noinline)) static void split_hot(double slice)
{
    spin_cpu(slice * hot_share);
    sink++;
}

__attribute__((noinline)) static void split_cold(double slice)
{
    spin_cpu(slice * (1.0 - hot_share));
    sink++;
}

__attribute__((noinline)) static void *worker(void *arg)
{
    double end = wall_now() + seconds;
    while (wall_now() < end) {
        split_hot(0.02);
        split_cold(0.02);
    }
    sink++;
    return arg;
}

int main(int argc, char **argv)
{
    int threads = 2;
    if (argc > 1) seconds = atof(argv[1]);
    if (argc > 2) threads = atoi(argv[2]);
    if (argc > 3) hot_share = atof(argv[3]) / 100.0;
    if (threads < 1 || threads > 64) threads = 2;
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    printf("done cpu=%.3f\n", (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    return 0;
}
