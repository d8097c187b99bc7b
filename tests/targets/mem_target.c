/*
 * mem_target.c - integration target: memory that grows in known steps in
 * a known function (argv: STEPS STEP_MIB [PAUSE_SECONDS]).
 *
 * After "ready PID" and "step 0 rss=KIB" (then PAUSE_SECONDS of CPU work
 * in steady_work, so an attacher started on "ready" sees the start), each
 * step grows the resident set by STEP_MIB MiB in grow_step(), one page at
 * a time with a little CPU work per page so that the growth takes a few
 * hundred milliseconds of CPU time and samples see it happen, then reports the
 * RSS the kernel gives it ("step K rss=KIB", the VmRSS line of
 * /proc/self/status) and spends 0.15 s of CPU time in steady_work()
 * without allocating. Prints "done", then frees everything and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long vm_rss_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* Touches every page of a new block of `mib` MiB (each touch makes one
 * page resident), working a little between touches. No calls inside the
 * loop: the growth happens with grow_step itself innermost. The block is
 * mmap()ed, not malloc()ed: with MALLOC_PERTURB_ set (meson test sets it)
 * malloc would fill it, and the growth would happen in memset. */
__attribute__((noinline)) static char *grow_step(size_t mib, long page)
{
    size_t len = mib << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    for (size_t off = 0; off < len; off += (size_t)page) {
        p[off] = 1;
        for (int i = 0; i < 50000; i++)
            sink += (unsigned long)i;
    }
    return p;
}

__attribute__((noinline)) static void steady_work(double seconds)
{
    double end = cpu_now() + seconds;
    while (cpu_now() < end)
        for (int i = 0; i < 2000; i++)
            sink += (unsigned long)i;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 5;
    long mib = argc > 2 ? atol(argv[2]) : 8;
    double pause = argc > 3 ? atof(argv[3]) : 0.2;
    long page = sysconf(_SC_PAGESIZE);
    if (steps < 1 || steps > 64 || mib < 1 || mib > 256 || page <= 0)
        return 2;
    printf("ready %d\n", (int)getpid());
    printf("step 0 rss=%ld\n", vm_rss_kb());
    fflush(stdout);
    steady_work(pause);
    char **blocks = calloc((size_t)steps, sizeof(*blocks));
    if (!blocks)
        return 1;
    for (int k = 0; k < steps; k++) {
        if (!(blocks[k] = grow_step((size_t)mib, page)))
            return 1;
        printf("step %d rss=%ld\n", k + 1, vm_rss_kb());
        fflush(stdout);
        steady_work(0.15);
    }
    printf("done\n");
    fflush(stdout);
    for (int k = 0; k < steps; k++)
        munmap(blocks[k], (size_t)mib << 20);
    free(blocks);
    return 0;
}
