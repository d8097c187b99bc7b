/*
 * jit_target.c - integration target: code generated at run time, named
 * only by a perf map, as a JIT leaves it (argv: SECONDS [HOT_PERCENT]).
 *
 * Two functions are emitted as x86-64 machine code: jit_hot into memory
 * written and then made read+execute (W^X, as careful JITs do), jit_cold
 * into read+write+execute memory. Neither has unwind tables; both keep
 * the frame-pointer convention (push rbp; mov rbp, rsp), so a profiler
 * can unwind through them with the RBP chain. Each one loops: spin a
 * while in its own code, then call back into C (jit_callback), until the
 * callback says the slice of CPU time is used up. jit_driver() gives
 * jit_hot HOT_PERCENT of every 20 ms of CPU time and jit_cold the rest.
 *
 * Writes "/tmp/perf-PID.map" ("START SIZE NAME" in hex, the format perf
 * and CPython's -X perf use) before it prints "ready PID", and leaves it
 * behind when it exits, as JITs do: the test removes it. Prints
 * "region ADDR-ADDR" per function for the tests, and "done" at the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef int (*callback_fn)(void *arg);
typedef void (*jit_fn)(callback_fn cb, void *arg);

static volatile unsigned long sink;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Called from generated code: a little work, then "go on?" (the CPU
 * deadline in *arg not reached yet). */
__attribute__((noinline)) static int jit_callback(void *arg)
{
    const double *deadline = arg;
    for (int i = 0; i < 20000; i++)
        sink += (unsigned long)i;
    return cpu_now() < *deadline;
}

/*
 * The generated function, with its own spin loop of `spin` iterations:
 *   push rbp; mov rbp, rsp; push rbx; push r12   (rsp 16-aligned at the call)
 *   mov rbx, rdi; mov r12, rsi                   (callback, its argument)
 * again:
 *   mov ecx, spin
 * spin: dec ecx; jnz spin
 *   mov rdi, r12; call rbx; test eax, eax; jnz again
 *   pop r12; pop rbx; pop rbp; ret
 * Returns the code length written at p.
 */
static size_t emit(uint8_t *p, uint32_t spin)
{
    static const uint8_t head[] = {
        0x55, 0x48, 0x89, 0xe5, 0x53, 0x41, 0x54,      /* prologue */
        0x48, 0x89, 0xfb, 0x49, 0x89, 0xf4,            /* rbx, r12 */
    };
    size_t n = 0;
    memcpy(p, head, sizeof(head));
    n += sizeof(head);
    size_t again = n;
    p[n++] = 0xb9;                                     /* mov ecx, imm32 */
    memcpy(p + n, &spin, 4);
    n += 4;
    p[n++] = 0xff; p[n++] = 0xc9;                      /* dec ecx */
    p[n++] = 0x75; p[n++] = 0xfc;                      /* jnz -4 */
    p[n++] = 0x4c; p[n++] = 0x89; p[n++] = 0xe7;       /* mov rdi, r12 */
    p[n++] = 0xff; p[n++] = 0xd3;                      /* call rbx */
    p[n++] = 0x85; p[n++] = 0xc0;                      /* test eax, eax */
    p[n++] = 0x75;                                     /* jnz again */
    p[n] = (uint8_t)(int8_t)((long)again - (long)(n + 1));
    n++;
    p[n++] = 0x41; p[n++] = 0x5c;                      /* pop r12 */
    p[n++] = 0x5b;                                     /* pop rbx */
    p[n++] = 0x5d;                                     /* pop rbp */
    p[n++] = 0xc3;                                     /* ret */
    return n;
}

static double hot_share = 0.7;

/* The C caller below the generated frames. */
__attribute__((noinline)) static void jit_driver(jit_fn hot, jit_fn cold, double seconds)
{
    double end = wall_now() + seconds, deadline;
    while (wall_now() < end) {
        deadline = cpu_now() + 0.02 * hot_share;
        hot(jit_callback, &deadline);
        deadline = cpu_now() + 0.02 * (1.0 - hot_share);
        cold(jit_callback, &deadline);
    }
    sink++;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    if (argc > 2)
        hot_share = atof(argv[2]) / 100.0;
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *rx = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *rwx = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE | PROT_EXEC,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rx == MAP_FAILED || rwx == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* Not at the start of the page: names must come from the map's
     * START, not from the mapping. */
    uint8_t *hot = rx + 64, *cold = rwx + 128;
    size_t hot_len = emit(hot, 300000), cold_len = emit(cold, 300000);
    if (mprotect(rx, (size_t)page, PROT_READ | PROT_EXEC) != 0) {
        perror("mprotect");
        return 1;
    }
    char path[64];
    snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    fprintf(f, "%lx %zx jit_hot\n", (unsigned long)(uintptr_t)hot, hot_len);
    fprintf(f, "%lx %zx jit_cold\n", (unsigned long)(uintptr_t)cold, cold_len);
    fclose(f);

    printf("ready %d\n", (int)getpid());
    printf("region %lx-%lx jit_hot\n", (unsigned long)(uintptr_t)hot,
           (unsigned long)(uintptr_t)(hot + hot_len));
    printf("region %lx-%lx jit_cold\n", (unsigned long)(uintptr_t)cold,
           (unsigned long)(uintptr_t)(cold + cold_len));
    fflush(stdout);
    jit_fn hot_fn, cold_fn;
    memcpy(&hot_fn, &hot, sizeof(hot_fn));     /* object to function pointer */
    memcpy(&cold_fn, &cold, sizeof(cold_fn));
    jit_driver(hot_fn, cold_fn, seconds);
    printf("done\n");
    return 0;
}
