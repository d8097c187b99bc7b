/*
 * faults.c - integration target for the "never harm the target" tests
 * (tests/integration/test_faults*.py): one small program, one mode per
 * situation a tracer must survive. argv: MODE [ARGS...]. Every mode prints
 * "ready PID" once it runs and a last line the test checks ("done ..."),
 * and exits 0 only when what it observed is what it would observe without
 * a profiler.
 *
 *   spin SEC THREADS        main + THREADS threads spin in spin_leaf()
 *   exitall SEC THREADS     like spin, then exit() while every thread spins
 *                           (the whole group dies at once); SEC counts
 *                           from when a tracer holds it (waits up to 5 s)
 *   mainexit SEC THREADS    main calls pthread_exit(); the workers finish
 *   churn SEC               create and join short-lived threads for SEC s
 *   stopexit SEC            for SEC s (from when a tracer holds it), one
 *                           thread after another, each on a stack at a new
 *                           address, spinning until it is stopped once and
 *                           exiting as soon as it is let go
 *   fork SEC                fork() children (and clone() ones with exit
 *                           signal 0) that check they are not traced/stopped
 *   exec SEC                spin in before_exec(), then exec itself as
 *                           "afterexec SEC" (spins in after_exec())
 *   vfork SEC               the leader waits SEC in vfork() (cannot stop)
 *                           while a worker spins
 *   sigterm SEC             SIGTERM handler counts; spins until SEC or
 *                           until told, prints the count
 *   counter SEC             bumps a counter printed every 10 ms (stop tests)
 *   sigchld N               fork N short children, count SIGCHLD handler
 *                           runs and reaped children
 *   sigprof CPU_SEC USEC [traced]
 *                           ITIMER_PROF at USEC; count the handler's ticks
 *                           over CPU_SEC of process CPU time ("traced":
 *                           start the timer once a tracer is attached)
 *
 * Built without inlining or sibling calls, so every named function keeps
 * its own frame for the name checks.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static double seconds = 2;

static double clock_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double wall(void) { return clock_s(CLOCK_MONOTONIC); }

static void ready(void)
{
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
}

__attribute__((noinline)) static void spin_leaf(int n)
{
    for (int i = 0; i < n; i++)
        sink += (unsigned long)i;
}

static void spin_until(double end)
{
    while (wall() < end)
        spin_leaf(5000);
}

/* 0 when this process is neither traced nor stopped. */
static int check_untraced(void)
{
    char line[256];
    int bad = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "TracerPid:", 10) == 0 && atoi(line + 10) != 0)
            bad = 2;
    fclose(f);
    return bad;
}

/* Waits until a tracer holds this process, 5 s at most. */
static void wait_traced(void)
{
    for (double end = wall() + 5; check_untraced() == 0 && wall() < end;)
        usleep(1000);
}

/* ---- spin, exitall, mainexit ------------------------------------------ */

static void *spin_worker(void *arg)
{
    spin_until(wall() + seconds);
    return arg;
}

static void *spin_forever(void *arg)
{
    for (;;)
        spin_leaf(5000);
    return arg;
}

static int mode_spin(int threads, int how)
{
    pthread_t t[256];
    if (threads < 0 || threads > 256)
        threads = 4;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, how == 1 ? spin_forever : spin_worker, NULL) != 0)
            return 3;
    ready();
    if (how == 2) {             /* mainexit: the leader becomes a zombie */
        printf("done\n");
        fflush(stdout);
        pthread_exit(NULL);
    }
    /* exitall: the SEC start once a tracer holds us, so a run that is
     * slow to attach (a loaded machine) still samples before the exit. */
    if (how == 1)
        wait_traced();
    spin_until(wall() + seconds);
    printf("done\n");
    fflush(stdout);
    if (how == 1)
        exit(0);                /* exit_group while every thread spins */
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ---- churn --------------------------------------------------------------- */

static void *short_life(void *arg)
{
    spin_leaf(2000);
    return arg;
}

__attribute__((noinline)) static int churn_batch(int k)
{
    pthread_t t[8];
    int made = 0;
    for (int i = 0; i < k; i++)
        if (pthread_create(&t[made], NULL, short_life, NULL) == 0)
            made++;
    for (int i = 0; i < made; i++)
        pthread_join(t[i], NULL);
    return made;
}

static int mode_churn(void)
{
    ready();
    double end = wall() + seconds;
    long total = 0;
    while (wall() < end)
        total += churn_batch(8);
    printf("done %ld\n", total);
    return 0;
}

/* ---- stopexit ------------------------------------------------------------ */

/* Spins until it notices a pause (20 us between two reads of the clock:
 * a stop), or until limit. */
__attribute__((noinline)) static void spin_until_stopped(double limit)
{
    double last = wall();
    for (;;) {
        spin_leaf(100);
        double now = wall();
        if (now - last > 20e-6 || now > limit)
            return;
        last = now;
    }
}

static long stopexit_made;

static void *stopexit_thread(void *arg)
{
    spin_until_stopped(wall() + 0.05);
    if (arg) {                  /* the last one takes the process with it */
        printf("done %ld\n", stopexit_made);
        fflush(stdout);
        _exit(0);
    }
    return arg;
}

/* Each thread exits right after the tracer lets it go from its first stop,
 * while the tracer, which has just found its stack at an address it did
 * not know, re-reads the memory map through it; the last one ends the
 * process that way. Stacks are never unmapped, so every one is new. */
static int mode_stopexit(void)
{
    ready();
    wait_traced();
    double end = wall() + seconds;
    for (int last = 0; !last; stopexit_made++) {
        last = wall() >= end;
        size_t size = 64 << 10;
        void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
        pthread_attr_t a;
        pthread_t t;
        if (stack == MAP_FAILED || pthread_attr_init(&a) != 0)
            return 3;
        if (pthread_attr_setstack(&a, stack, size) != 0 ||
            pthread_create(&t, &a, stopexit_thread, last ? &a : NULL) != 0)
            return 3;
        pthread_join(t, NULL);
        pthread_attr_destroy(&a);
    }
    return 3;                   /* not reached: the last thread exits */
}

/* ---- fork ---------------------------------------------------------------- */

static int clone_child(void *arg)
{
    (void)arg;
    spin_leaf(20000);
    return check_untraced();
}

__attribute__((noinline)) static int fork_one(void)
{
    pid_t p = fork();
    if (p == 0) {
        spin_leaf(20000);
        _exit(check_untraced());
    }
    if (p < 0)
        return -1;
    int st;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* A process (not a thread) made by clone() with exit signal 0: to the
 * kernel's ptrace options this is a "clone", not a "fork". */
__attribute__((noinline)) static int clone_one(void)
{
    static char stack[64 * 1024] __attribute__((aligned(16)));
    pid_t p = clone(clone_child, stack + sizeof stack, 0, NULL);
    if (p < 0)
        return -1;
    int st;
    if (waitpid(p, &st, __WALL) != p || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int mode_fork(void)
{
    ready();
    double end = wall() + seconds;
    int forks = 0, clones = 0, bad = 0;
    while (wall() < end) {
        if (fork_one() != 0)
            bad++;
        forks++;
        if (clone_one() != 0)
            bad++;
        clones++;
        spin_leaf(200000);
    }
    printf("done forks=%d clones=%d bad=%d\n", forks, clones, bad);
    return bad ? 1 : 0;
}

/* ---- exec ---------------------------------------------------------------- */

__attribute__((noinline)) static void before_exec(double end)
{
    spin_until(end);
}

__attribute__((noinline)) static void after_exec(double end)
{
    spin_until(end);
}

static int mode_exec(char *self)
{
    ready();
    before_exec(wall() + seconds);
    char secs[32];
    snprintf(secs, sizeof secs, "%g", seconds);
    char *argv[] = { self, "afterexec", secs, NULL };
    fflush(stdout);
    execv("/proc/self/exe", argv);
    return 4;
}

static int mode_afterexec(void)
{
    after_exec(wall() + seconds);
    printf("done\n");
    return 0;
}

/* ---- vfork: a thread in uninterruptible sleep ----------------------------- */

/* The leader vforks; the child sleeps SEC before it exits, so for SEC the
 * leader cannot stop (it waits in the kernel, state D) while a worker
 * spins. */
static int mode_vfork(void)
{
    pthread_t w;
    if (pthread_create(&w, NULL, spin_worker, NULL) != 0)
        return 3;
    ready();
    usleep(200000);
    pid_t p = vfork();
    if (p == 0) {
        struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
        syscall(SYS_nanosleep, &ts, NULL);
        _exit(0);
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st))
        return 1;
    pthread_join(w, NULL);
    printf("done\n");
    return 0;
}

/* ---- signals --------------------------------------------------------------- */

static volatile sig_atomic_t sig_count, stop_now;

static void on_term(int sig)
{
    (void)sig;
    sig_count++;
    stop_now = 1;
}

static int mode_sigterm(void)
{
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    ready();
    double end = wall() + seconds;
    /* After the signal, go on for a while: a second delivery would show. */
    double after = 0;
    while (wall() < end) {
        spin_leaf(5000);
        if (stop_now && after == 0)
            after = wall() + 0.3;
        if (after && wall() > after)
            break;
    }
    printf("done %d\n", (int)sig_count);
    return 0;
}

static int mode_counter(void)
{
    ready();
    double end = wall() + seconds, next = 0;
    unsigned long n = 0;
    while (wall() < end) {
        spin_leaf(1000);
        n++;
        if (wall() >= next) {
            printf("count %lu\n", n);
            fflush(stdout);
            next = wall() + 0.01;
        }
    }
    printf("done\n");
    return 0;
}

static volatile sig_atomic_t chld_runs;

static void on_chld(int sig)
{
    (void)sig;
    chld_runs++;
}

static int mode_sigchld(int n)
{
    struct sigaction sa = { .sa_handler = on_chld, .sa_flags = SA_RESTART };
    sigaction(SIGCHLD, &sa, NULL);
    ready();
    int reaped = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(7);
        if (p < 0) {
            bad++;
            continue;
        }
        spin_leaf(3000);
        /* reap whatever is done, without waiting */
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
            reaped++;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
                bad++;
        }
    }
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, 0)) > 0 || (r < 0 && errno == EINTR)) {
        if (r < 0)
            continue;
        reaped++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
            bad++;
    }
    /* SIGCHLD is a standard signal: deliveries may coalesce, never exceed. */
    int ok = reaped == n && bad == 0 && chld_runs >= 1 && chld_runs <= n;
    printf("done reaped=%d handler=%d bad=%d\n", reaped, (int)chld_runs, bad);
    return ok ? 0 : 1;
}

static volatile sig_atomic_t prof_ticks;

static void on_prof(int sig)
{
    (void)sig;
    prof_ticks++;
}

__attribute__((noinline)) static void prof_work(double cpu_end)
{
    while (clock_s(CLOCK_PROCESS_CPUTIME_ID) < cpu_end)
        spin_leaf(5000);
}

static int mode_sigprof(double cpu, long usec, int traced)
{
    struct sigaction sa = { .sa_handler = on_prof, .sa_flags = SA_RESTART };
    sigaction(SIGPROF, &sa, NULL);
    ready();
    /* "traced": start the timer only once a tracer holds us, so that every
     * tick happens under it (at most 5 s). */
    if (traced)
        wait_traced();
    struct itimerval it = { { 0, usec }, { 0, usec } };
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    setitimer(ITIMER_PROF, &it, NULL);
    prof_work(c0 + cpu);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_PROF, &off, NULL);
    double used = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    printf("done ticks=%d cpu=%.4f\n", (int)prof_ticks, used);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    if (argc > 2)
        seconds = atof(argv[2]);
    int n = argc > 3 ? atoi(argv[3]) : 4;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(m, "spin")) return mode_spin(n, 0);
    if (!strcmp(m, "exitall")) return mode_spin(n, 1);
    if (!strcmp(m, "mainexit")) return mode_spin(n, 2);
    if (!strcmp(m, "churn")) return mode_churn();
    if (!strcmp(m, "stopexit")) return mode_stopexit();
    if (!strcmp(m, "fork")) return mode_fork();
    if (!strcmp(m, "exec")) return mode_exec(argv[0]);
    if (!strcmp(m, "afterexec")) return mode_afterexec();
    if (!strcmp(m, "vfork")) return mode_vfork();
    if (!strcmp(m, "sigterm")) return mode_sigterm();
    if (!strcmp(m, "counter")) return mode_counter();
    if (!strcmp(m, "sigchld")) return mode_sigchld(argc > 2 ? atoi(argv[2]) : 200);
    if (!strcmp(m, "sigprof"))
        return mode_sigprof(seconds, argc > 3 ? atol(argv[3]) : 1000,
                            argc > 4 && !strcmp(argv[4], "traced"));
    return 2;
}
