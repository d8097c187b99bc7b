/*
 * cpython_probe.c - test tool: stop each thread of a CPython process,
 * decode its Python frames with vm_cpython, print them, resume it.
 *
 *   cpython_probe PID RUNTIME_ADDR VERSION_HEX [--lines] [--count N]
 *                 [--interval-ms MS] [--ids] [--stats] [--bench]
 *                 [--stack-copy KB] [--tolerate-fails] [--registry]
 *
 * Output, one line per frame, innermost first, fields separated by tabs
 * (names never hold a tab: vmprof_escape_name turns control characters
 * into '?'):
 *   TID  ANCHOR(hex)  NAME  LINE  [ID(hex) with --ids]
 * then "#end TID N" after each thread's frames (N = count, or -1 when the
 * capture failed). With --stats, a last line
 *   #stats captures=.. frames=.. fails=.. reads_per_capture=..
 *          us_per_capture_p50=.. us_per_capture_max=.. rescans=.. names=..
 *          identity_changes=.. hidden_changes=.. code_trusted=..
 * With --bench, no frames are printed; the first BENCH_WARMUP captures are
 * left out and one line gives percentiles of the rest (a benchmark, never
 * a test: the numbers depend on the machine):
 *   #bench captures=.. frames_p50=.. reads_p50=.. reads_p99=.. kb_p50=..
 *          us_p50=.. us_p99=.. us_max=.. stop_us_p50=.. stop_us_p99=..
 * (reads: process_vm_readv calls per capture; stop: PTRACE_INTERRUPT to
 * PTRACE_CONT, capture included, unwinding not.) --stack-copy KB copies
 * up to KB KiB of the stack from SP during each stop, before the capture
 * and outside its time, and lends the copy to the decoder, as the
 * attacher's snapshot does.
 * --registry: the target runs with the shim preloaded; its count of code
 * objects freed (3.11-3.13) proves cached code addresses, as in the
 * attacher (without it the probe proves each by reading it).
 * Exit 0 when every capture that ran succeeded (with --tolerate-fails: a
 * failed capture, "#end TID -1", is left for the caller to count), 1
 * otherwise, 2 on usage.
 *
 * Threads are attached with PTRACE_SEIZE and stopped with PTRACE_INTERRUPT
 * one at a time; a signal that arrives meanwhile is passed on. Threads
 * that exit are dropped. Everything is detached before exit.
 */
#include <errno.h>
#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry_reader.h"
#include "remote_mem.h"
#include "vm_cpython.h"

#define MAX_THREADS 256
#define BENCH_WARMUP 20

struct name {
    uint64_t id;
    char *text;
};

static struct name *names;
static size_t n_names, cap_names;

static void sink(void *arg, uint64_t id, const char *name)
{
    (void)arg;
    for (size_t i = 0; i < n_names; i++) {
        if (names[i].id == id) {
            fprintf(stderr, "cpython_probe: id 0x%" PRIx64 " named twice\n", id);
            exit(1);
        }
    }
    if (n_names == cap_names) {
        cap_names = cap_names ? cap_names * 2 : 256;
        names = realloc(names, cap_names * sizeof *names);
        if (names == NULL)
            exit(1);
    }
    names[n_names].id = id;
    names[n_names].text = strdup(name);
    n_names++;
}

static const char *name_of(uint64_t id)
{
    for (size_t i = n_names; i-- > 0;)
        if (names[i].id == id)
            return names[i].text;
    return NULL;
}

static int list_threads(pid_t pid, pid_t *tids, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        long t = strtol(e->d_name, NULL, 10);
        if (t > 0)
            tids[n++] = (pid_t)t;
    }
    closedir(d);
    return n;
}

/* Stop tid with PTRACE_INTERRUPT; 0 when stopped in the interrupt trap,
 * -1 when the thread is gone. Signal stops on the way are passed on. */
static int stop_thread(pid_t tid)
{
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
        return -1;
    for (;;) {
        int st;
        if (waitpid(tid, &st, __WALL) < 0)
            return -1;
        if (!WIFSTOPPED(st))
            return -1;
        if ((st >> 16) == PTRACE_EVENT_STOP)
            return 0;
        if (ptrace(PTRACE_CONT, tid, 0, (void *)(long)WSTOPSIG(st)) < 0)
            return -1;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct opts {
    pid_t pid;
    struct cpython_target t;
    int lines, count, interval_ms, ids, stats, bench, stack_kb, tolerate_fails, registry;
};

/* Per-capture costs, for --stats and --bench. */
struct cost {
    uint64_t ns, stop_ns, reads, bytes, frames;
};

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void print_bench(const struct cost *c, size_t n)
{
    uint64_t *v = malloc(n * sizeof *v);
    if (v == NULL || n == 0) {
        free(v);
        return;
    }
#define COL(field) for (size_t i = 0; i < n; i++) v[i] = c[i].field
    COL(frames);
    printf("#bench captures=%zu frames_p50=%" PRIu64, n, pct(v, n, 0.5));
    COL(reads);
    printf(" reads_p50=%" PRIu64 " reads_p99=%" PRIu64, pct(v, n, 0.5),
           pct(v, n, 0.99));
    COL(bytes);
    printf(" kb_p50=%.1f", pct(v, n, 0.5) / 1024.0);
    COL(ns);
    printf(" us_p50=%.2f us_p99=%.2f us_max=%.2f", pct(v, n, 0.5) / 1e3,
           pct(v, n, 0.99) / 1e3, pct(v, n, 1.0) / 1e3);
    COL(stop_ns);
    printf(" stop_us_p50=%.2f stop_us_p99=%.2f\n", pct(v, n, 0.5) / 1e3,
           pct(v, n, 0.99) / 1e3);
#undef COL
    free(v);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->count = 1;
    if (argc < 4)
        return -1;
    o->pid = (pid_t)strtol(argv[1], NULL, 10);
    o->t.runtime_addr = strtoull(argv[2], NULL, 0);
    o->t.version_hex = (uint32_t)strtoul(argv[3], NULL, 0);
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--lines"))
            o->lines = 1;
        else if (!strcmp(argv[i], "--ids"))
            o->ids = 1;
        else if (!strcmp(argv[i], "--stats"))
            o->stats = 1;
        else if (!strcmp(argv[i], "--bench"))
            o->bench = 1;
        else if (!strcmp(argv[i], "--tolerate-fails"))
            o->tolerate_fails = 1;
        else if (!strcmp(argv[i], "--registry"))
            o->registry = 1;
        else if (!strcmp(argv[i], "--stack-copy") && i + 1 < argc)
            o->stack_kb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            o->count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--interval-ms") && i + 1 < argc)
            o->interval_ms = atoi(argv[++i]);
        else
            return -1;
    }
    return o->pid > 0 && o->count > 0 ? 0 : -1;
}

/* 0 when every id of a capture was named (--bench prints nothing). */
static int check_named(const struct vm_frame *frames, int n)
{
    for (int k = 0; k < n; k++) {
        if (name_of(frames[k].id) == NULL) {
            fprintf(stderr, "cpython_probe: id 0x%" PRIx64
                    " returned before it was named\n", frames[k].id);
            return 1;
        }
    }
    return 0;
}

/* Print one capture; 0 when it succeeded and every id was named. */
static int print_capture(pid_t tid, const struct vm_frame *frames, int n, int ids)
{
    int rc = n < 0 ? -1 : 0;
    for (int k = 0; k < n; k++) {
        const char *nm = name_of(frames[k].id);
        if (nm == NULL) {
            fprintf(stderr, "cpython_probe: id 0x%" PRIx64
                    " returned before it was named\n", frames[k].id);
            rc = -1;
            nm = "?";
        }
        printf("%d\t0x%" PRIx64 "\t%s\t%d", (int)tid, frames[k].anchor, nm,
               frames[k].line);
        if (ids)
            printf("\t0x%" PRIx64, frames[k].id);
        printf("\n");
    }
    printf("#end %d %d\n", (int)tid, n);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: cpython_probe PID RUNTIME_ADDR VERSION_HEX "
                "[--lines] [--count N] [--interval-ms MS] [--ids] [--stats] "
                "[--bench] [--stack-copy KB] [--tolerate-fails] [--registry]\n");
        return 2;
    }
    struct remote_mem mem;
    remote_mem_init(&mem, o.pid);
    char err[256] = "";
    struct registry *reg = NULL;
    if (o.registry) {
        if (registry_open(o.pid, &reg, err, sizeof err) != 0) {
            fprintf(stderr, "cpython_probe: no registry: %s\n", err);
            return 1;
        }
        o.t.code_frees = registry_py_code_frees(reg);
        if (o.t.code_frees == NULL) {
            fprintf(stderr, "cpython_probe: the registry counts no code objects freed\n");
            return 1;
        }
    }
    struct vm_decoder *d = vm_cpython_create(&o.t, &mem, sink, NULL, o.lines,
                                             err, sizeof err);
    if (d == NULL) {
        fprintf(stderr, "cpython_probe: %s\n", err);
        return 1;
    }
    pid_t tids[MAX_THREADS];
    int nt = list_threads(o.pid, tids, MAX_THREADS);
    if (nt <= 0) {
        fprintf(stderr, "cpython_probe: no threads for pid %d\n", (int)o.pid);
        return 1;
    }
    for (int i = 0; i < nt; i++) {
        if (ptrace(PTRACE_SEIZE, tids[i], 0, 0) < 0)
            tids[i--] = tids[--nt];         /* gone already */
    }

    static struct vm_frame frames[MAX_VM_FRAMES];
    size_t stack_cap = o.stack_kb > 0 ? (size_t)o.stack_kb * 1024 : 0;
    uint8_t *stack = stack_cap ? malloc(stack_cap) : NULL;
    struct cost *cost = calloc((size_t)o.count * MAX_THREADS, sizeof *cost);
    uint64_t ncost = 0, nframes = 0, fails = 0, reads0 = mem.reads;
    int rc = 0;
    for (int it = 0; it < o.count && nt > 0 && cost != NULL; it++) {
        for (int i = 0; i < nt; i++) {
            struct user_regs_struct regs;
            double s0 = now_us();
            if (stop_thread(tids[i]) < 0 ||
                ptrace(PTRACE_GETREGS, tids[i], 0, &regs) < 0) {
                d->ops->thread_gone(d, tids[i]);
                tids[i--] = tids[--nt];
                continue;
            }
            if (stack != NULL) {
                ssize_t got = remote_read_upto(&mem, regs.rsp, stack, stack_cap);
                vm_cpython_stack_copy(d, regs.rsp, got > 0 ? stack : NULL,
                                      got > 0 ? (size_t)got : 0);
            }
            uint64_t r0 = mem.reads, b0 = mem.bytes;
            double t0 = now_us();
            int n = d->ops->capture(d, tids[i], &regs, frames, MAX_VM_FRAMES);
            double t1 = now_us();
            ptrace(PTRACE_CONT, tids[i], 0, 0);
            cost[ncost++] = (struct cost){
                .ns = (uint64_t)((t1 - t0) * 1000),
                .stop_ns = (uint64_t)((now_us() - s0) * 1000),
                .reads = mem.reads - r0, .bytes = mem.bytes - b0,
                .frames = n > 0 ? (uint64_t)n : 0 };
            if (o.bench)
                rc |= check_named(frames, n);
            else if (print_capture(tids[i], frames, n, o.ids) < 0 &&
                     !(n < 0 && o.tolerate_fails))
                rc = 1;
            if (n < 0)
                fails++;
            else
                nframes += (uint64_t)n;
        }
        fflush(stdout);
        if (o.interval_ms > 0 && it + 1 < o.count)
            usleep((useconds_t)o.interval_ms * 1000);
    }
    for (int i = 0; i < nt; i++) {
        if (stop_thread(tids[i]) == 0)
            ptrace(PTRACE_DETACH, tids[i], 0, 0);
    }
    if (o.stats && ncost > 0) {
        struct vm_cpython_stats st;
        vm_cpython_get_stats(d, &st);
        uint64_t *ns = malloc(ncost * sizeof *ns);
        if (ns == NULL)
            return 1;
        for (uint64_t i = 0; i < ncost; i++)
            ns[i] = cost[i].ns;
        printf("#stats captures=%" PRIu64 " frames=%" PRIu64 " fails=%" PRIu64
               " reads_per_capture=%.2f us_per_capture_p50=%.1f"
               " us_per_capture_p99=%.1f us_per_capture_max=%.1f"
               " rescans=%" PRIu64 " names=%" PRIu64
               " identity_changes=%" PRIu64 " hidden_changes=%" PRIu64
               " code_trusted=%" PRIu64 "\n",
               ncost, nframes, fails, (double)(mem.reads - reads0) / ncost,
               pct(ns, ncost, 0.5) / 1000.0, pct(ns, ncost, 0.99) / 1000.0,
               pct(ns, ncost, 1.0) / 1000.0,
               st.rescans, st.names, st.identity_changes, st.hidden_changes,
               st.code_trusted);
        free(ns);
    }
    if (o.bench && ncost > BENCH_WARMUP)
        print_bench(cost + BENCH_WARMUP, ncost - BENCH_WARMUP);
    free(cost);
    free(stack);
    d->ops->destroy(d);
    if (reg != NULL)
        registry_close(reg);
    return rc;
}
