/*
 * sampler.c - the tick loop (see sampler.h).
 *
 * Deadlines are absolute: each is the one before plus the interval times
 * a random factor in [0.5, 1.5), new for every tick (mean: one interval).
 * A slow tick makes the next wait shorter, never shifts the schedule;
 * ticks that could not run at all are counted as missed, not made up for.
 * The dither keeps a strictly periodic tick from aliasing with periodic
 * work (a loop whose round is near a multiple of the interval is otherwise
 * sampled at the same few points of its round for seconds at a time).
 * It is drawn per gap, not around a fixed grid (k * interval + up to half
 * an interval either way, as before), so two deadlines are never less
 * than half an interval apart: around a grid they could fall together,
 * and at 10 kHz most ticks missed after the first second were a tick of
 * 70-110 us whose next deadline had come 7-50 us after its own.
 *
 * What a sample means (--mode):
 *   cpu  a thread earns credit equal to the CPU time it used since the
 *        last tick (schedstat), in intervals; each whole interval is one
 *        sample of its stack. A thread that did not run is not stopped
 *        (except once, a busy one that has just gone to sleep: see "Busy
 *        threads").
 *   wall every live thread every tick; a thread still blocked where its
 *        last sample found it is not stopped: that stack is repeated
 *        (see "Wall mode").
 * Idle threads cost (almost) nothing: see "Idle threads" above tick().
 * Stop time (PTRACE_INTERRUPT to PTRACE_CONT) is measured per sample.
 * --mem: the resident set size (/proc/PID/statm, fd kept open) is read
 * once per tick, just before its first stop (after the unwind, a target
 * that grows fast would have moved on), and written with every sample of
 * that tick; once the target is gone, the last value read stays.
 */
#include "sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/perf_event.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "merge.h"
#include "proc_task.h"
#include "vm_select.h"
#include "mono_clock.h"

#ifndef VMPROF_ATTACH_VERSION
#define VMPROF_ATTACH_VERSION "dev"
#endif

#define VM_SEARCH_MAX 2.0       /* seconds a spawned command (after its last exec)
                                   has to publish a VM registry */
#define TICK_TIMER_SLACK_NS 1000   /* see sampler_run */
#define STACK_NEED_START (16 * 1024)
#define STACK_NEED_MIN 4096

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sampler_vm_name(void *arg, uint64_t id, const char *name)
{
    struct sampler *s = arg;
    if (s->prof)
        profile_vm_name(s->prof, id, name);
}

static int use_maps(struct sampler *s, struct sym_maps *fresh)
{
    sym_maps_free(&s->maps);
    s->maps = *fresh;
    s->maps_stale = 0;
    s->maps_reloads++;
    return unwinder_set_maps(s->uw, &s->maps);
}

/* Reads the mappings again, through the thread last sampled (s->mem.pid:
 * the leader may be a zombie, whose maps are empty). A thread that has
 * begun to exit (PF_EXITING, set before it lets go of the memory map)
 * may have shown an empty or cut-short list: the maps we have are kept.
 * Seen: a reload as the target exited, at the end of a spawned run, read
 * no mappings, and not one native frame of the run was named (2 runs in
 * 60 of test_native_ext_exact_order). */
static int reload_maps(struct sampler *s)
{
    struct sym_maps fresh = { 0 };
    if (sym_maps_load(&fresh, s->mem.pid) < 0)
        return -1;
    unsigned long flags = 0;
    char state = proc_thread_stat(s->sess->pid, s->mem.pid, &flags);
    if (fresh.n == 0 || (flags & PF_EXITING_FLAG) || proc_state_ended(state)) {
        sym_maps_free(&fresh);
        s->maps_kept++;
        errno = ESRCH;
        return -1;
    }
    return use_maps(s, &fresh);
}

/* Resident set of the target in KiB, read at most once per tick. */
static uint64_t current_rss(struct sampler *s)
{
    if (s->statm_fd < 0 || s->rss_tick == s->ticks)
        return s->rss_kb;
    s->rss_tick = s->ticks;
    char buf[128];
    ssize_t n = pread(s->statm_fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return s->rss_kb;       /* gone: keep the last value */
    buf[n] = '\0';
    char *p = buf, *end;
    strtoull(p, &end, 10);      /* size, then resident, in pages */
    unsigned long long pages = strtoull(end, &p, 10);
    /* an exited target (a zombie until reaped) reads 0 resident pages:
     * keep the last value, as when the read fails (samples written after
     * the exit, settle_exit's, would show 0 KiB) */
    if (p != end && pages > 0) {
        long page = sysconf(_SC_PAGESIZE);
        s->rss_kb = (uint64_t)pages * (uint64_t)(page > 0 ? page : 4096) / 1024;
    }
    return s->rss_kb;
}

int sampler_init(struct sampler *s, const struct options *o, struct session *sess,
                 const char *root, int out_fd)
{
    memset(s, 0, sizeof(*s));
    s->act_version = UINT64_MAX;     /* act not built yet */
    s->o = o;
    s->sess = sess;
    s->out_fd = out_fd;
    s->statm_fd = -1;
    s->loadavg_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    s->ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->contended_tick = UINT64_MAX;
    s->have_allowed = -1;
    snprintf(s->root, sizeof(s->root), "%s", root);
    if (o->mem) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/statm", (int)sess->pid);
        s->statm_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->statm_fd < 0) {
            snprintf(s->err, sizeof(s->err), "cannot read %s for --mem: %s", path,
                     strerror(errno));
            return -1;
        }
    }
    s->have_cpu_clock = clock_getcpuclockid(sess->pid, &s->cpu_clock) == 0;
    remote_mem_init(&s->mem, sess->pid);
    if (snapshot_init(&s->snap, SNAPSHOT_STACK_DEFAULT) < 0) {
        snprintf(s->err, sizeof(s->err), "out of memory");
        return -1;
    }
    s->uw = unwinder_new(&s->mem, root);
    if (!s->uw || unwinder_follow_perfmap(s->uw) < 0) {
        snprintf(s->err, sizeof(s->err), "cannot create the unwinder (libunwind)");
        return -1;
    }
    /* the first read may find none (a zombie leader): the first sample
     * reads them again through a live thread */
    struct sym_maps first = { 0 };
    if (sym_maps_load(&first, sess->pid) < 0 || use_maps(s, &first) < 0) {
        snprintf(s->err, sizeof(s->err), "cannot read /proc/%d/maps: %s",
                 (int)sess->pid, strerror(errno));
        return -1;
    }
    s->maps_reloads = 0;
    return 0;
}

/* Stack end for a thread's SP, from its cached stack mapping or maps. */
static uint64_t stack_end(void *arg, uint64_t sp)
{
    struct sampler *s = arg;
    struct thread *t = session_find(s->sess, s->snap.tid);
    if (t && sp >= t->stack_lo && sp < t->stack_hi)
        return t->stack_hi;
    const struct sym_mapping *m = sym_maps_find(&s->maps, sp);
    if (!m) {
        s->maps_stale = 1;      /* a new thread's stack: reload after the stop */
        return 0;
    }
    if (t) {
        t->stack_lo = m->start;
        t->stack_hi = m->end;
    }
    return m->end;
}

/* A counting task clock on thread tid (no sampling, no ring buffer), or -1.
 * exclude_kernel is what perf_event_paranoid 2 (the default) allows without
 * privileges; a task clock counts all the thread's time regardless. */
static int open_task_clock(pid_t tid)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_TASK_CLOCK;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* CPU time of a thread in ns, or -1 (thread gone).
 * Read from a task clock where perf events are allowed: it is exact to the
 * moment of the read. schedstat's sum_exec_runtime of a thread that is on
 * a CPU moves only at the scheduler tick (every 4 ms at HZ=250, a whole
 * sampling interval), at context switches, and when the thread reads its
 * own CPU clock: whether a tick finds a whole interval earned then depends
 * on what the thread was doing (a workload that reads its clock between
 * phases is up to date just after each one), and cpu mode samples some
 * code more often than its CPU time says. schedstat remains the fallback
 * (perf events forbidden, or a kernel without them). t->schedstat_fd holds
 * whichever fd the thread's CPU time is read from (t->task_clock says which). */
static int64_t thread_cpu_ns(struct sampler *s, struct thread *t)
{
    if (t->schedstat_fd < 0)
        t->task_clock = 0;      /* closed (or never opened): open again */
    if (t->schedstat_fd < 0 && !s->no_task_clock) {
        t->schedstat_fd = open_task_clock(t->tid);
        if (t->schedstat_fd >= 0)
            t->task_clock = 1;
        else if (errno == ESRCH)
            return -1;          /* vanishing: its exit is reaped soon */
        else
            s->no_task_clock = 1;   /* not allowed here: schedstat from now on */
    }
    if (t->task_clock) {
        uint64_t v;
        if (read(t->schedstat_fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
            return -1;
        /* A task clock counts from its opening: a thread that has not run
         * since reads 0, which t->cpu_ns keeps for "never read" (and the
         * thread would never be found idle). Only differences matter. */
        return (int64_t)v + 1;
    }
    uint64_t v[3];
    if (proc_thread_schedstat(&t->schedstat_fd, s->sess->pid, t->tid, v) < 0)
        return -1;
    return (int64_t)v[0];
}

/* Cpu mode, on_thread_born: a thread the target starts during the run
 * has used no CPU yet, so its clock read now is the baseline its first
 * read in a tick counts from. Without it that read only set a baseline,
 * and all the CPU the thread used before it, up to a tick, was lost
 * (with the tail settle_exit recovers: threads burning 8 ms one at a
 * time got a quarter of the samples their CPU earned, 20 ms ones 70%).
 * Threads found at the attach keep their first read as the baseline:
 * what they used before it is not the run's. The thread has not run yet
 * (it is held at its first stop, or about to be), so the read is local
 * and the task clock it opens counts from its birth. */
static void baseline_at_birth(void *arg, struct thread *t)
{
    struct sampler *s = arg;
    int64_t cpu = thread_cpu_ns(s, t);
    if (cpu <= 0)
        return;                 /* 0 means never read: the old rule */
    t->cpu_ns = (uint64_t)cpu;
    t->cpu_read_ns = mono_ns();
}

/* The thread id the target itself sees (last NSpid field): differs from
 * ours when the target runs in its own PID namespace. */
static pid_t thread_ns_tid(struct sampler *s, struct thread *t)
{
    if (t->ns_tid)
        return t->ns_tid;
    char path[96], line[256];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)s->sess->pid, (int)t->tid);
    FILE *f = fopen(path, "re");
    t->ns_tid = t->tid;
    if (!f)
        return t->ns_tid;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "NSpid:", 6) == 0) {
            char *last = strrchr(line, '\t');
            long v = last ? strtol(last + 1, NULL, 10) : 0;
            if (v > 0)
                t->ns_tid = (pid_t)v;
            break;
        }
    }
    fclose(f);
    return t->ns_tid;
}

static int is_interp(void *arg, uint64_t ip)
{
    struct vm_decoder *d = arg;
    return d->ops->is_interpreter_ip(d, ip);
}

static void record_stop(struct sampler *s, uint64_t ns)
{
    latency_add(&s->stop_all, ns);
}

/* Wall mode repeats a thread's last stack while the thread is still where
 * that sample found it, without stopping it again. Its CPU time alone
 * cannot tell: a blocked thread that wakes, runs 20 us and blocks
 * elsewhere uses less CPU than our own stops cost it (seen: a loop of
 * epoll_wait, poll and nanosleep, a third of the time each, shown as
 * 24/48/28%; a sleeper woken from a barrier, waiting for the GIL, then
 * asleep in time.sleep, shown in the barrier for the whole run). Where
 * the kernel counts the times a thread is put on a CPU (schedstat's
 * third field):
 *  - a sample that found the thread blocked in a system call (our stop
 *    interrupted it: stopped_in_call) keeps the call it goes back to;
 *  - the first check after that sample finds the thread "still" if it
 *    was put on a CPU no more often than our stop made it (STOP_RUNS: to
 *    stop, to go back) and /proc/TID/syscall shows it blocked in that
 *    same call (same_place);
 *  - a still thread stays still while it is not put on a CPU again (no
 *    CPU read needed: it cannot have run);
 *  - anything else samples it again, however little CPU it used.
 * What this cannot see: a thread whose call ended during our stop and
 * that reached an identical call (same arguments and stack pointer: in
 * CPython 3.11+ another Python function at the same C depth) without
 * blocking in between. Quiet threads are read every wall_stride() ticks.
 * Without run counts (schedstat off, or a kernel without it), the CPU
 * time decides as before: still from the second check in a row with less
 * than STOP_CPU_NOISE_NS (the first after a sample may hide a short run
 * to where it blocks).
 *
 * A stop makes some calls fail with EINTR instead of going on
 * (epoll_wait, sigtimedwait, semop, a socket with a timeout: signal(7),
 * "Interruption of system calls ... by stop signals"). Robust code calls
 * again, but the stop is not harmless there. Where a sample finds that
 * our stop did that (CALL_FAILED), the place, its stack and its VM
 * frames are kept (keep_failing_site); a thread that is not still but
 * found blocked at such a place (an event loop back in its epoll_wait
 * after each request) is not stopped if its VM frames, read without a
 * stop (it is blocked: they cannot change while they are read, which its
 * run count, read again after them, confirms), are those of that sample
 * (in CPython 3.11+ another Python function reaches the same call at the
 * same C depth): that stack is repeated and the thread is still. Such a
 * call fails about once per thread, place and VM stack.
 *
 * /proc/TID/syscall answers at once for a running thread, and for a
 * blocked one once it is off its CPU; kernels whose scheduler leaves a
 * task "delayed dequeued" (6.12+ without a later fix) can make the
 * reader wait a scheduler tick. A read slower than CALL_READ_SLOW_NS
 * turns these reads off for the run: wall mode then falls back to the
 * CPU-time rule, cpu mode stops blocked threads as before. */
#define STOP_RUNS 2
#define WALL_REPEAT_AFTER 2
#define CALL_READ_SLOW_NS 2000000

/* blocked_now, timed: 1 blocked in a call (*now), 0 not, -1 unknown or
 * turned off (see above). */
static int call_now(struct sampler *s, struct thread *t, struct proc_call *now)
{
    if (s->call_reads_off)
        return -1;
    uint64_t t0 = mono_ns();
    int r = blocked_now(s->sess->pid, t, now);
    if (mono_ns() - t0 > CALL_READ_SLOW_NS)
        s->call_reads_off = 1;
    return r;
}

/* Is the thread blocked in the call its last sample found it in? */
static int back_in_call(struct sampler *s, struct thread *t)
{
    struct proc_call now;
    return t->stop_call_kind && call_now(s, t, &now) == 1 &&
           same_place(&t->stop_call, t->stop_call_kind, &now);
}

/* Keeps w as t's last stack (wall mode: the one repeated; cpu mode: the
 * last one sampled running, see blocked_with_last). */
static int keep_words(struct thread *t, const uint64_t *w, int n)
{
    if (n > t->last_cap || !t->last_words) {    /* grows to the deepest stack seen */
        int cap = n > 16 ? n : 16;
        uint64_t *nw = realloc(t->last_words, (size_t)cap * sizeof(*w));
        if (!nw) {
            t->last_n = -1;     /* no stack rather than another place's */
            return -1;
        }
        t->last_words = nw;
        t->last_cap = cap;
    }
    memcpy(t->last_words, w, (size_t)n * sizeof(*w));
    t->last_n = n;
    return 0;
}

static int emit(struct sampler *s, const uint64_t *w, int n, pid_t tid, int repeat);

/* Cpu mode: a thread that has earned samples but is blocked in a system
 * call now used that CPU before it blocked, not where it waits: a stop
 * would find an event loop in epoll_wait for most of the samples its
 * handlers earned (seen: 66% of them, for a thread busy 3 ms then
 * waiting 3 ms), and make that call fail (see "Wall mode"). So before
 * the stop, /proc/TID/syscall (one pread, ~1 us; for a thread on a CPU
 * it answers at once, no interrupt) says whether it is blocked; if so,
 * its samples are written with the last stack it was sampled running,
 * without a stop, if that stack is recent (LAST_RUN_NS: a thread that
 * runs in bursts too short to be caught running would otherwise give an
 * old phase all of a later one's samples; an event loop on a CPU shared
 * with the attacher, caught running at few ticks, had stacks 10-50 ms
 * old). A thread not sampled running lately is stopped as before. A busy
 * thread stopped on a guess and found blocked by that stop gets the same
 * treatment in sample_thread. */
#define LAST_RUN_NS 100000000

static int recent_run(const struct thread *t)
{
    return t->last_n > 0 && mono_ns() - t->last_run_ns <= LAST_RUN_NS;
}

static int blocked_with_last(struct sampler *s, struct thread *t)
{
    struct proc_call c;
    return recent_run(t) && call_now(s, t, &c) == 1;
}

/* Writes t's last running stack `repeat` times for CPU it used where it
 * could not be stopped there; *count: the stat that counts such samples
 * (blocked_credit, exit_credit). */
static void write_last_running(struct sampler *s, struct thread *t, int repeat,
                               uint64_t *count)
{
    if (emit(s, t->last_words, t->last_n, t->tid, repeat) == 0)
        s->samples += (uint64_t)repeat;
    *count += (uint64_t)repeat;
    t->deferrals = 0;
}

/* Wall mode: keeps w as t's last stack; kind, call: where the stop that
 * sampled it found it (stopped_in_call), or the failing site it comes
 * from (CALL_FAILED, after_stop 0). */
static void keep_last(struct thread *t, const uint64_t *w, int n, int kind,
                      const struct proc_call *call, int after_stop)
{
    if (keep_words(t, w, n) < 0)
        kind = CALL_NONE;       /* nothing kept to repeat */
    t->stop_call_kind = kind;
    if (kind)
        t->stop_call = *call;
    t->after_stop = after_stop;
}

#define PENDING_MAX 4096
#define NOT_CODE_RELOAD_TICKS 64 /* see sample_thread */
#define OFFCPU_STOP_NS 300000   /* a stop this slow means the thread was off-CPU */
#define OFFCPU_DEFER_MAX 3      /* then sample anyway: late beats never */
#define CATCH_UP_MAX 64         /* samples written for one stop, at most */
#define NOT_READ INT64_MIN      /* tick_delta(): the thread was not read this tick */
#define READ_FAILED (INT64_MIN + 1)

/* Samples one stop writes for k whole intervals of credit. */
static int catch_up(int k)
{
    return k < CATCH_UP_MAX ? k : CATCH_UP_MAX;
}

/* Credits t with d ns of CPU (a read made outside the tick's: in its stop,
 * or once found blocked) and takes off the whole intervals it has earned:
 * returns how many (0 none). */
static int take_earned(struct sampler *s, struct thread *t, int64_t d)
{
    if (d > 0)
        t->credit += (double)d / (s->o->interval * 1e9);
    int k = t->credit >= 1.0 ? (int)t->credit : 0;
    t->credit -= (double)k;
    return k;
}

/* Write a sample, or keep it until the log is open. */
static int emit(struct sampler *s, const uint64_t *w, int n, pid_t tid, int repeat)
{
    uint64_t rss = s->o->mem ? current_rss(s) : 0;
    if (s->prof)
        return profile_add(s->prof, w, n, tid, repeat, rss);
    if (s->npending % 64 == 0) {
        struct pending_sample *np = realloc(s->pending, (s->npending + 64) * sizeof(*np));
        if (!np)
            return -1;
        s->pending = np;
    }
    uint64_t *copy = malloc((size_t)n * sizeof(*w));
    if (!copy)
        return -1;
    memcpy(copy, w, (size_t)n * sizeof(*w));
    s->pending[s->npending++] = (struct pending_sample){ tid, n, repeat, rss, copy };
    return 0;
}

static void drop_pending(struct sampler *s)
{
    for (size_t i = 0; i < s->npending; i++)
        free(s->pending[i].words);
    free(s->pending);
    s->pending = NULL;
    s->npending = 0;
}

/* Next copy size for t: what this unwind used above SP plus a margin; if
 * the copy fell short (live reads were needed), twice as much. */
static void adapt_stack_need(struct sampler *s, struct thread *t, int nn, uint64_t live_before)
{
    uint64_t need = t->stack_need;
    if (unwinder_stats(s->uw)->stack_live_reads > live_before) {
        need *= 2;
    } else if (nn > 0) {
        uint64_t top = s->nat[nn - 1].cfa != UINT64_MAX ? s->nat[nn - 1].cfa : s->nat[nn - 1].sp + 64;
        uint64_t used = top > s->snap.stack_lo ? top - s->snap.stack_lo : 0;
        uint64_t fit = (used + used / 4 + 1024 + 4095) & ~(uint64_t)4095;
        /* shrink slowly, grow at once */
        need = fit >= need ? fit : need - (need - fit) / 8;
    }
    if (need < STACK_NEED_MIN)
        need = STACK_NEED_MIN;
    if (need > SNAPSHOT_STACK_DEFAULT)
        need = SNAPSHOT_STACK_DEFAULT;
    t->stack_need = (uint32_t)need;
}

static int cpu_contended(struct sampler *s);
static int64_t read_delta(struct sampler *s, struct thread *t);

/* Stop, snapshot, resume, then build and write the stack `repeat` times;
 * repeat 0: t is a busy thread not read this tick (see BUSY_MIN), its
 * clock is read during the stop and the samples it earned are written
 * (its credit settled here). Returns 0 when a sample was taken (or the
 * thread is gone or could not be stopped, or had earned none), 1 when the
 * stop was deferred: see OFFCPU_STOP_NS. */
static int sample_thread(struct sampler *s, struct thread *t, int repeat)
{
    pid_t vm_tid = s->dec ? thread_ns_tid(s, t) : t->tid;
    t->stop_call_kind = 0;      /* wall mode: set again by a sample taken */
    t->after_stop = 0;
    t->still = 0;
    if (s->o->mem)
        current_rss(s);         /* the tick's RSS, read as close to the stack as
                                   can be without lengthening the stop */
    /* whether the stop polls for its status (ptrace_session.c): read once
     * a tick (here or for a busy thread in read_threads); a tick that
     * stops nothing and has no busy thread reads no /proc/loadavg */
    s->sess->poll_stops = !cpu_contended(s);
    snapshot_warm(&s->snap, t->tid, t->last_sp, t->stack_hi, t->stack_need);
    uint64_t t0 = mono_ns();
    if (session_stop_thread(s->sess, t) != 0)
        return 0;
    if (s->o->mode == MODE_CPU && mono_ns() - t0 > OFFCPU_STOP_NS &&
        t->deferrals < OFFCPU_DEFER_MAX) {
        /* The thread was not on a CPU: it stopped where it had been
         * preempted, and preemption points cluster at system calls (the
         * kernel notices an expired slice there). That stack is not a fair
         * CPU-time sample: let it go, keep its credit for a later tick. */
        session_resume_thread(s->sess, t);
        record_stop(s, mono_ns() - t0);
        t->deferrals++;
        s->deferred++;
        return 1;
    }
    t->deferrals = 0;
    s->snap.tid = t->tid;
    /* Memory, maps and mapped files are read through the thread being
     * sampled, alive and stopped: the leader's /proc entry is empty once
     * it has called pthread_exit (a zombie while its threads run on). */
    s->mem.pid = t->tid;
    if (!t->stack_need)
        t->stack_need = STACK_NEED_START;
    uint64_t t1 = mono_ns();
    int ok = snapshot_take(&s->snap, &s->mem, t->tid, vm_tid, stack_end, s,
                           t->stack_need, s->dec) == 0;
    uint64_t t2 = mono_ns();
    t->last_sp = ok ? s->snap.stack_lo : 0;
    if (ok && repeat == 0) {
        /* stopped, so off its CPU: a local read, no interrupt */
        int64_t d = read_delta(s, t);
        s->read_in_stop++;
        int k = take_earned(s, t, d);
        repeat = catch_up(k);
        if (k == 0 && d != READ_FAILED)
            s->guess_misses++;
    }
    session_resume_thread(s->sess, t);
    uint64_t t3 = mono_ns();
    record_stop(s, t3 - t0);
    latency_add(&s->stop_wait, t1 - t0);
    latency_add(&s->stop_copy, s->snap.copy_ns);
    latency_add(&s->stop_vm, s->snap.vm_ns);
    latency_add(&s->stop_resume, t3 - t2);
    if (!ok || repeat == 0)
        return 0;
    if (s->maps_stale)
        reload_maps(s);

    int unknown;
    uint64_t live_before = unwinder_stats(s->uw)->stack_live_reads;
    int nn = unwinder_run(s->uw, &s->snap, s->nat, MAX_NATIVE_FRAMES, &unknown);
    if ((unknown == UNWIND_NO_MAPPING && s->maps_reload_tick != s->ticks) ||
        (unknown == UNWIND_NOT_CODE && s->ticks - s->maps_reload_tick >= NOT_CODE_RELOAD_TICKS)) {
        /* A library loaded since the last read of maps: read them again
         * (at most once a tick) and unwind this sample again. A return
         * address in memory that is not code: maps read while the loader
         * had ld.so.cache mapped where a library later went (seen: 10% of
         * a demo run's stacks cut short there), or an unwind gone astray;
         * read them again, but not more often than every
         * NOT_CODE_RELOAD_TICKS (a bad unwind may repeat every tick). */
        s->maps_reload_tick = s->ticks;
        if (reload_maps(s) == 0)
            nn = unwinder_run(s->uw, &s->snap, s->nat, MAX_NATIVE_FRAMES, &unknown);
    }
    s->unwind_calls++;
    s->stack_bytes += s->snap.stack_len;
    adapt_stack_need(s, t, nn, live_before);
    struct merge_input in = {
        .nat = s->nat, .n_nat = nn,
        .vm = s->snap.vm, .n_vm = s->snap.n_vm > 0 ? s->snap.n_vm : 0,
        .native = s->o->native, .lines = s->o->lines,
        .is_interp = s->dec ? is_interp : NULL, .arg = s->dec,
    };
    int n = merge_stack(&in, s->words, MAX_STACK_WORDS);
    struct proc_call call;
    int kind = stopped_in_call(&s->snap.regs, &call);
    if (kind == CALL_FAILED)
        s->calls_failed++;
    if (s->o->mode == MODE_WALL) {
        /* kept even with nothing to show (n 0): not stopped again there */
        keep_last(t, s->words, n, kind, &call, 1);
        if (kind == CALL_FAILED)
            keep_failing_site(t, &call, s->words, n, in.vm, in.n_vm);
    }
    if (n == 0)
        return 0;
    if (s->o->mode == MODE_CPU && kind && recent_run(t)) {
        /* found blocked (a busy thread stopped on a guess): its samples
         * go to where it last ran, as in blocked_with_last */
        write_last_running(s, t, repeat, &s->blocked_credit);
        return 0;
    }
    if (emit(s, s->words, n, t->tid, repeat) == 0)
        s->samples += (uint64_t)repeat;
    if (s->o->mode == MODE_CPU && !kind && keep_words(t, s->words, n) == 0)
        t->last_run_ns = mono_ns();
    return 0;
}

/* Idle threads. A schedstat read costs a system call; with 1000 idle
 * threads, one per thread per tick would cost more than the sampling. So
 * a thread that several checks in a row found idle (QUIET_AFTER) is
 * "quiet": not read at all while the target's process CPU clock (one
 * system call; the kernel sums it over the threads, ~40 ns each) is
 * explained by the threads read. The CPU it does not explain
 * accumulates in s->unexplained (quiet threads ran, or threads exited);
 * once it reaches SWEEP_INTERVALS of an interval, a sweep reads every
 * quiet thread not read in the last IDLE_BACKOFF_MAX ticks (so even a
 * sweep every tick costs no more than reading each every 16 ticks), then
 * starts the count again. CPU time is never lost: the next read of a
 * thread credits all of it; only its attribution waits. Without a process
 * clock, quiet threads are read every IDLE_BACKOFF_MAX ticks. */
#define QUIET_AFTER 16          /* idle checks in a row that make a thread quiet */
#define IDLE_BACKOFF_MAX 16     /* ticks between two reads of a quiet thread, at least */
#define SWEEP_INTERVALS 0.5     /* unexplained CPU, in intervals, that starts a sweep */
/* The process clock sums each thread's CPU as the scheduler last booked
 * it (at its tick, up to 1/HZ late for a thread on a CPU), while a task
 * clock is exact: each thread that ran can make the process clock look up
 * to one scheduler tick behind, then catch up, which alone must not start
 * a sweep. 10 ms covers HZ=100. */
#define TASK_CLOCK_LAG_NS 10000000
#define STOP_CPU_NOISE_NS 50000 /* less CPU than this since the last check: idle */
#define PROC_CLOCK_THREADS 64  /* the process clock is read every 1 + threads /
                                   PROC_CLOCK_THREADS ticks (~2.5 us a tick
                                   whatever the number of threads), */
#define PROC_CLOCK_EVERY_MAX IDLE_BACKOFF_MAX /* and at least every 16 ticks: a
                                   quiet thread that starts to run is read
                                   again within 16 to 32 ticks */
#define ONCPU_WAIT_MAX 16       /* ticks a preempted thread's sample waits for
                                   it to be on a CPU, at most */

static void repeat_last(struct sampler *s, struct thread *t)
{
    if (t->last_n <= 0)
        return;                 /* nothing to show (see sample_thread) */
    emit(s, t->last_words, t->last_n, t->tid, 1);
    s->samples++;
    s->repeated++;
}

/* Whether t's VM frames now are f's, read without a stop: t is blocked
 * (its frames cannot change), and its run count, the same after the read
 * as before it, proves it stayed so. Without a VM decoder: yes. */
static int same_vm_frames(struct sampler *s, struct thread *t, const struct failing_site *f)
{
    if (!s->dec)
        return 1;
    pid_t vm_tid = thread_ns_tid(s, t);
    int64_t before = thread_runs(s->sess->pid, t);
    int n = s->dec->ops->capture(s->dec, vm_tid, NULL, s->snap.vm, MAX_VM_FRAMES);
    int64_t after = thread_runs(s->sess->pid, t);
    if (n != f->n_vm || before < 0 || after != before)
        return 0;
    for (int i = 0; i < n; i++)
        if (s->snap.vm[i].id != f->vm[i].id || s->snap.vm[i].line != f->vm[i].line)
            return 0;
    return 1;
}

/* Wall mode: t is not still; if it is blocked at a failing site with the
 * same VM frames, that site's stack becomes its last and it is still: 1,
 * it need not be stopped. */
static int wall_at_failing_site(struct sampler *s, struct thread *t)
{
    struct proc_call now;
    if (!t->nsites || call_now(s, t, &now) != 1)
        return 0;
    const struct failing_site *f = failing_site_at(t, &now);
    if (!f || !same_vm_frames(s, t, f))
        return 0;
    keep_last(t, f->words, f->n, CALL_FAILED, &f->call, 0);
    t->still = 1;
    s->stops_spared++;
    return 1;
}

static int is_quiet(const struct thread *t)
{
    return t->idle_streak >= QUIET_AFTER;
}

/* An estimate (est_cpu) that no read will settle, the thread exiting:
 * what it counted as explained is not, after all (the process clock keeps
 * an exited thread's CPU; nothing else explains it). Left counted, such
 * estimates add up to a debt that a quiet thread starting to run would
 * have to outrun before a sweep found it. */
static void forget_estimate(struct sampler *s, struct thread *t)
{
    s->unexplained += t->est_ns;
    t->est_ns = 0;
}

/* Reads t's CPU time: returns what it used since the last read (-1 at
 * the first, unless baseline_at_birth made one), or READ_FAILED; updates
 * its idle streak and busy fraction, and settles in s->unexplained what
 * est_cpu counted for it meanwhile. */
static int64_t read_delta(struct sampler *s, struct thread *t)
{
    int64_t cpu = thread_cpu_ns(s, t);
    if (cpu < 0) {              /* vanishing: its exit is reaped soon */
        forget_estimate(s, t);
        return READ_FAILED;
    }
    uint64_t now = mono_ns();
    int64_t delta = t->cpu_ns ? cpu - (int64_t)t->cpu_ns : -1;
    t->busy = delta >= 0 && t->cpu_read_ns && now > t->cpu_read_ns
                  ? (double)delta / (double)(now - t->cpu_read_ns) : 0;
    t->cpu_ns = (uint64_t)cpu;
    t->cpu_read_ns = now;
    /* what was counted for it on a guess (est_cpu) is now known exactly */
    s->unexplained -= (delta > 0 ? delta : 0) - t->est_ns;
    t->est_ns = 0;
    /* Our own stop costs a blocked thread a few microseconds of CPU
     * (the trap, the restarted system call): that is not running. (A
     * larger allowance after our own stop, 250 us, was tried against a
     * busy host's inflated stop costs: it hid a sleeping thread's real
     * run out of a barrier into its sleep, and wall mode repeated the
     * barrier stack for the whole run. Not kept.) */
    if (delta >= 0 && delta < STOP_CPU_NOISE_NS) {
        if (t->idle_streak < UINT32_MAX)
            t->idle_streak++;
        t->next_check = s->ticks + IDLE_BACKOFF_MAX;
    } else {
        t->idle_streak = 0;
    }
    return delta;
}

/* Ticks between two reads of a quiet thread in wall mode: every tick up
 * to PROC_CLOCK_THREADS threads (a still thread's read is one pread), at
 * most IDLE_BACKOFF_MAX ticks. */
static uint64_t wall_stride(const struct sampler *s)
{
    size_t k = 1 + s->sess->n / PROC_CLOCK_THREADS;
    return k < IDLE_BACKOFF_MAX ? k : IDLE_BACKOFF_MAX;
}

/* Is t still where its last sample found it (see "Wall mode")? d: the CPU
 * it used since the last read; ran: the times it was put on a CPU since
 * (-1 unknown). */
static int wall_still(struct sampler *s, struct thread *t, int64_t d, int64_t ran)
{
    int first = t->after_stop;
    t->after_stop = 0;          /* one check after each sample */
    if (t->last_n < 0 || d < 0 || d >= STOP_CPU_NOISE_NS)
        return 0;
    if (ran < 0 || s->call_reads_off)
        return t->idle_streak >= WALL_REPEAT_AFTER;
    if (!first || ran > STOP_RUNS)
        return 0;               /* still: ran == 0, decided in wall_read */
    return back_in_call(s, t);
}

/* read_delta for wall mode: also decides t->still. */
static int64_t wall_read(struct sampler *s, struct thread *t)
{
    int64_t runs = thread_runs(s->sess->pid, t);
    int64_t ran = runs > 0 && t->runs ? runs - (int64_t)t->runs : -1;
    t->runs = runs > 0 ? (uint64_t)runs : 0;
    int64_t d;
    if (t->still && ran == 0) {
        d = 0;                  /* not put on a CPU: cannot have run */
        if (t->idle_streak < UINT32_MAX)
            t->idle_streak++;
    } else {
        d = read_delta(s, t);
        if (d == READ_FAILED)
            return d;
        t->still = wall_still(s, t, d, ran);
    }
    if (t->still)
        t->next_check = s->ticks + wall_stride(s);
    else
        t->idle_streak = 0;
    return d;
}

/* Busy threads. Reading a task clock of a thread that is on a CPU is a
 * call to that CPU: an interrupt of the thread and ~11 us of our time.
 * Measured with tests/bench/pause_probe.c at 1 kHz: a 5-10 us gap in the
 * target for every tick, and with the read moved into the stop the target
 * lost 2.3% of its time instead of 3.2% (3 alternated runs of 3 s); at
 * 250 Hz no difference beyond the noise, while the stop as we time it
 * grew by ~4 us p50 (it now holds the read; ab.py: +6-11 us at 250 Hz,
 * none at 1 kHz) and the attacher saves 10-16 us of CPU a tick. A
 * thread that ran nearly all the time between its last two reads
 * (BUSY_MIN) is not read before its stop: its CPU is estimated from the
 * wall time at that rate (est_cpu), it is stopped once the estimate has
 * earned a whole interval of credit, and its clock is read during the
 * stop, where the read is local (~1 us). The credit comes from that exact
 * read: an estimate decides when to stop, never how many samples. A
 * thread found to have earned none after all (guess_misses: it went to
 * sleep) has its busy fraction measured again by that read, and is read
 * before its stops while it stays below BUSY_MIN. A guessed stop that
 * does not get as far as the read (the thread could not be stopped, was
 * let go off-CPU, or vanished) clears the fraction: the next tick reads
 * the thread first (a thread asleep in D state is not stopped tick after
 * tick). Not when the CPUs are contended: there a busy thread may be
 * waiting for a CPU, which the on-CPU test must see first. */
#define BUSY_MIN 0.9
#define GUESSED (INT64_MIN + 2) /* tick_delta(): estimated, read in the stop */
#define GUESS_CREDIT 1.02       /* estimated credit that starts the stop */
#define GUESS_SPAN_MAX 4        /* intervals since its last read, at most (a
                                   thread back from a group-stop is read) */

static int busy_thread(const struct sampler *s, const struct thread *t, uint64_t now)
{
    return t->task_clock && t->cpu_read_ns && t->busy >= BUSY_MIN && !t->deferrals &&
           now >= t->cpu_read_ns &&
           now - t->cpu_read_ns <= (uint64_t)(s->o->interval * 1e9 * GUESS_SPAN_MAX);
}

/* Estimates t's CPU from its last read to now (busy_thread(t, now)) and
 * counts what the estimate grew by as explained (the read in the stop
 * settles it: read_delta); returns GUESSED. */
static int64_t est_cpu(struct sampler *s, struct thread *t, uint64_t now)
{
    int64_t est = (int64_t)((double)(now - t->cpu_read_ns) * t->busy);
    s->unexplained -= est - t->est_ns;
    t->est_ns = est;
    return GUESSED;
}

/* CPU time of the whole target in ns, or -1. */
static int64_t process_cpu_ns(struct sampler *s)
{
    struct timespec ts;
    if (!s->have_cpu_clock || clock_gettime(s->cpu_clock, &ts) < 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Marks t read this tick, with what it used (read_delta's result:
 * READ_FAILED too) or GUESSED (est_cpu). */
static void note_read(struct sampler *s, struct thread *t, uint32_t i, int64_t d)
{
    t->tick_delta = d;
    t->read_tick = s->ticks;
    s->rd[s->nrd++] = i;
}

/* What t used since the last read if it was read this tick (or
 * READ_FAILED, GUESSED), else NOT_READ. */
static int64_t tick_delta(const struct sampler *s, const struct thread *t)
{
    return t->read_tick == s->ticks ? t->tick_delta : NOT_READ;
}

/* Reads the threads worth reading this tick: each one's delta goes to
 * its tick_delta, its index in s->sess->v to s->rd. The threads that are
 * not quiet are kept in s->act (indexes), so that a tick costs nothing
 * per quiet thread: rebuilt when the session's list changed
 * (sess->version: a thread born, a thread running again, gone ones
 * swept), pruned as threads turn quiet or stop running, grown by the
 * sweeps that find a quiet thread running. Returns the number of slots
 * of s->sess->v, 0 when the tick must be skipped (out of memory). */
static size_t read_threads(struct sampler *s)
{
    struct session *ss = s->sess;
    size_t n = ss->n;
    s->nrd = 0;
    if (n > s->idx_cap) {
        size_t cap = n > 2 * s->idx_cap ? n : 2 * s->idx_cap;
        uint32_t *a = realloc(s->act, cap * sizeof(*a));
        if (a)
            s->act = a;
        uint32_t *r = a ? realloc(s->rd, cap * sizeof(*r)) : NULL;
        if (!r)
            return 0;           /* no memory: skip this tick */
        s->rd = r;
        s->idx_cap = cap;
    }
    if (s->act_version != ss->version) {
        s->nact = 0;
        for (size_t i = 0; i < n; i++) {
            if (ss->v[i]->state == THREAD_RUNNING && !is_quiet(ss->v[i]))
                s->act[s->nact++] = (uint32_t)i;
        }
        s->act_version = ss->version;
    }
    /* The process clock first, then at once the threads that ran lately:
     * the closer in time, the less of their CPU falls between the reads.
     * With many threads the clock costs more than a schedstat read (40 us
     * for 1000, cache-cold): it is read every few ticks only, and the
     * unexplained CPU judged then (the deltas read meanwhile add up the
     * same: they are subtracted as they are read). */
    int clock = 0;
    int wall = s->o->mode == MODE_WALL;
    size_t every = 1 + n / PROC_CLOCK_THREADS;
    if (every > PROC_CLOCK_EVERY_MAX)
        every = PROC_CLOCK_EVERY_MAX;
    if (wall) {
        clock = 0;              /* quiet threads are read when due: wall_stride */
    } else if (!s->have_cpu_clock || !s->proc_cpu_ns || s->ticks - s->proc_clock_tick >= every) {
        int64_t proc = process_cpu_ns(s);
        clock = proc >= 0 && s->proc_cpu_ns > 0;
        if (clock)
            s->unexplained += proc - (int64_t)s->proc_cpu_ns;
        s->proc_cpu_ns = proc > 0 ? (uint64_t)proc : 0;
        s->proc_clock_tick = s->ticks;
    } else {
        clock = -1;             /* between two reads of the clock: no sweep */
    }
    int64_t lag = 0;
    size_t kept = 0;
    int guess = s->o->mode == MODE_CPU;
    uint64_t now = guess ? mono_ns() : 0;
    for (size_t j = 0; j < s->nact; j++) {
        uint32_t i = s->act[j];
        struct thread *t = ss->v[i];
        if (t->state != THREAD_RUNNING || is_quiet(t))
            continue;           /* out of act until a sweep or a change */
        s->act[kept++] = i;
        int64_t d = wall ? wall_read(s, t)
                    : guess && busy_thread(s, t, now) && !cpu_contended(s) ? est_cpu(s, t, now)
                    : read_delta(s, t);
        note_read(s, t, i, d);
        if ((d == GUESSED || d >= STOP_CPU_NOISE_NS) && t->task_clock)
            lag += TASK_CLOCK_LAG_NS;
    }
    s->nact = kept;
    if (!wall && (clock < 0 ||
        (clock && s->unexplained < (int64_t)(s->o->interval * 1e9 * SWEEP_INTERVALS) + lag)))
        return n;
    /* A sweep (wall mode: every tick): quiet threads not read lately.
     * (None of them is in act: a thread that turned quiet this tick is not
     * due yet.) */
    for (size_t i = 0; i < n; i++) {
        struct thread *t = ss->v[i];
        if (t->state != THREAD_RUNNING || !is_quiet(t) || t->next_check > s->ticks)
            continue;
        note_read(s, t, (uint32_t)i, wall ? wall_read(s, t) : read_delta(s, t));
        if (!is_quiet(t))
            s->act[s->nact++] = (uint32_t)i;
    }
    if (!wall) {
        s->unexplained = 0;
        s->sweeps++;
    }
    return n;
}

/* Whether t is runnable (state R in its stat) and we are off the CPU it
 * last ran on (field 39), moving there if need be: a thread that shares
 * our CPU is off it whenever we run, because our own wakeup preempted it,
 * and the task clock test below would mean nothing. We move to the other
 * CPUs we may use (never fewer than one); with one CPU, or when that
 * fails, returns 0 and the test is not made. A thread that is blocked is
 * not waiting for a CPU either: 0, it is sampled as before. */
static int runnable_off_our_cpu(struct sampler *s, struct thread *t)
{
    if (s->have_allowed < 0)
        s->have_allowed = sched_getaffinity(0, sizeof(s->allowed), &s->allowed) == 0 &&
                          CPU_COUNT(&s->allowed) > 1;
    int cpu;
    if (proc_thread_cpu(s->sess->pid, t->tid, &cpu) != 'R')
        return 0;
    if (cpu != sched_getcpu())
        return 1;
    if (!s->have_allowed || cpu < 0 || cpu >= CPU_SETSIZE)
        return 0;
    cpu_set_t set = s->allowed;
    CPU_CLR(cpu, &set);
    if (CPU_COUNT(&set) == 0 || sched_setaffinity(0, sizeof(set), &set) < 0)
        return 0;
    s->moved = 1;
    return sched_getcpu() != cpu;
}

/* Is any CPU's run queue longer than one right now (procs_running in
 * /proc/loadavg, this process included, against the CPUs online)? Only
 * then can a thread due a sample be waiting for a CPU, and only then is
 * the test below worth its cost (a /proc read, maybe a move to another
 * CPU, a cross-CPU stop: ~40 us a sample). Read at most once a tick;
 * unknown counts as contended. */
static int cpu_contended(struct sampler *s)
{
    if (s->contended_tick == s->ticks)
        return s->contended;
    s->contended_tick = s->ticks;
    s->contended = 1;
    char buf[128];
    ssize_t n = s->loadavg_fd >= 0 ? pread(s->loadavg_fd, buf, sizeof(buf) - 1, 0) : -1;
    if (n > 0) {
        buf[n] = '\0';
        long running = 0;
        /* "0.52 0.61 0.70 3/412 1234": the fourth field's numerator
         * (parsed by hand: sscanf cost 1.6% of the attacher's time) */
        const char *p = buf;
        for (int field = 0; field < 3 && p; field++) {
            p = strchr(p, ' ');
            if (p)
                p++;
        }
        char *end = NULL;
        if (p)
            running = strtol(p, &end, 10);
        if (p && end != p && *end == '/' && s->ncpu > 0)
            s->contended = running > s->ncpu;
    }
    /* no longer contended: every allowed CPU is ours again (sharing the
     * sampled thread's CPU makes its stop cheaper: it is preempted by our
     * own wake-up, at an interrupt, not at a system call) */
    if (!s->contended && s->moved && sched_setaffinity(0, sizeof(s->allowed), &s->allowed) == 0)
        s->moved = 0;
    return s->contended;
}

/* Cpu mode: t is gone. Its task clock, open until the sweep, holds the
 * CPU time it had at its exit: what it used after its last read (up to a
 * tick's worth; for a thread born a tick ago, all of it) is credited, and
 * the whole intervals go to the last stack it was sampled running if that
 * is recent, as for a thread found blocked (blocked_with_last): it cannot
 * be stopped any more. Without such a stack, or without a task clock
 * (schedstat ends with the thread), that CPU stays unsampled, and stays
 * in s->unexplained (forget_estimate). */
static void settle_exit(struct sampler *s, struct thread *t)
{
    if (s->o->mode != MODE_CPU || !t->task_clock || t->schedstat_fd < 0 || !t->cpu_ns) {
        forget_estimate(s, t);
        return;
    }
    int k = take_earned(s, t, read_delta(s, t));
    if (k == 0)
        return;
    if (!recent_run(t)) {
        s->exit_unseen += (uint64_t)k;
        return;
    }
    write_last_running(s, t, catch_up(k), &s->exit_credit);
}

/* settle_exit for every thread gone since the last sweep. */
static void settle_gone(struct sampler *s)
{
    if (!s->sess->gone)
        return;
    for (size_t i = 0; i < s->sess->n; i++)
        if (s->sess->v[i]->state == THREAD_GONE)
            settle_exit(s, s->sess->v[i]);
}

static void tick(struct sampler *s)
{
    double interval_ns = s->o->interval * 1e9;
    int wall = s->o->mode == MODE_WALL;
    session_reap(s->sess);
    size_t n = read_threads(s);
    /* cpu mode visits the threads read (s->rd), wall mode every thread
     * (a quiet one repeats its last stack). Threads born during the tick,
     * past n, are read at the next; no index moves before session_sweep. */
    size_t count = wall ? n : (n ? s->nrd : 0);
    for (size_t j = 0; j < count && !s->sess->exited; j++) {
        struct thread *t = s->sess->v[wall ? j : s->rd[j]];
        int64_t delta = tick_delta(s, t);
        if (t->state != THREAD_RUNNING || delta == READ_FAILED)
            continue;
        if (delta == NOT_READ) {            /* quiet */
            if (wall)
                repeat_last(s, t);
            continue;
        }
        if (!wall) {
            if (delta == GUESSED) {
                /* busy: stopped once its estimate earns a sample, read there */
                if (t->credit + (double)t->est_ns / interval_ns < GUESS_CREDIT)
                    continue;
                t->busy = 0;            /* measured again by the next read */
                if (!blocked_with_last(s, t)) {
                    sample_thread(s, t, 0);     /* read in the stop */
                    continue;
                }
                /* blocked since: read now (local, no interrupt) */
                int k = take_earned(s, t, read_delta(s, t));
                if (k > 0)
                    write_last_running(s, t, catch_up(k), &s->blocked_credit);
                continue;
            }
            if (delta <= 0)
                continue;       /* first sight, or did not run */
            t->credit += (double)delta / interval_ns;
            if (t->credit < 1.0)
                continue;
            int k = (int)t->credit;
            /* On a CPU right now? A task clock moves between two reads of a
             * running thread and stands still for a preempted one. A
             * preempted thread would stop where it was preempted, and the
             * kernel preempts at the points where it notices an expired
             * slice (a thread reading its own CPU clock is one): not a fair
             * CPU-time sample. Keep the credit and look again next tick. */
            if (t->task_clock && t->deferrals < ONCPU_WAIT_MAX && cpu_contended(s) &&
                runnable_off_our_cpu(s, t)) {
                int64_t again = thread_cpu_ns(s, t);
                if (again >= 0 && again == (int64_t)t->cpu_ns) {
                    t->deferrals++;     /* sample_thread resets it */
                    s->deferred++;
                    continue;
                }
            }
            if (blocked_with_last(s, t)) {
                write_last_running(s, t, catch_up(k), &s->blocked_credit);
                t->credit -= (double)k;
            } else if (sample_thread(s, t, catch_up(k)) == 0) {
                t->credit -= (double)k;
            }
        } else if ((t->still || wall_at_failing_site(s, t)) && t->last_n >= 0) {
            repeat_last(s, t);
        } else {
            sample_thread(s, t, 1);
        }
    }
    settle_gone(s);
    session_sweep(s->sess);
}

int sampler_open_profile(struct sampler *s)
{
    if (s->prof)
        return 0;
    struct profile_opts po = {
        .fd = s->out_fd,
        .period_usec = (uint64_t)(s->o->interval * 1e6 + 0.5),
        .lines = s->o->lines,
        .wall = s->o->mode == MODE_WALL,
        .native = s->o->native != NATIVE_NONE,
        .memory = s->o->mem,
        .interp = s->dec ? s->dec->interp_name : "native",
        .start = &s->start_tv,
    };
    s->prof = profile_open(&po, s->err, sizeof(s->err));
    if (!s->prof)
        return -1;
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)s->sess->pid);
    profile_meta(s->prof, "os", "linux");
    profile_meta(s->prof, "bits", "64");
    profile_meta(s->prof, "attacher", "vmprof-attach " VMPROF_ATTACH_VERSION);
    profile_meta(s->prof, "pid", pid);
    profile_meta(s->prof, "command", s->cmdline ? s->cmdline : "");
    profile_meta(s->prof, "mode", s->o->mode == MODE_WALL ? "wall" : "cpu");
    profile_meta(s->prof, "native", s->o->native == NATIVE_ALL ? "all" :
                 s->o->native == NATIVE_NONE ? "none" : "ext");
    for (size_t i = 0; i < s->npending; i++) {
        struct pending_sample *ps = &s->pending[i];
        profile_add(s->prof, ps->words, ps->n, ps->tid, ps->repeat, ps->rss_kb);
    }
    drop_pending(s);
    return 0;
}

/* One line, rewritten in place: elapsed, samples, threads, stop time. */
static void show_status(struct sampler *s, double elapsed)
{
    fprintf(stderr, "\r\033[Kvmprof-attach: %.1f s  %llu samples  %zu threads  stop p50 %.0f us",
            elapsed, (unsigned long long)s->samples, session_live_count(s->sess),
            sampler_stop_percentile(s, 0.5));
    fflush(stderr);
}

void sampler_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

/* A process we saw being born (spawned, or a new child handed to us as a
 * --children follower) may publish its VM registry after we attached: its
 * shim's constructor or atfork handler has not run yet. Keep looking for
 * VM_SEARCH_MAX. A process found running has published it already. */
static int vm_may_appear(const struct sampler *s)
{
    return s->sess->spawned || s->o->follower.active;
}

/* Counts the ticks a deadline `late` seconds past covers as missed;
 * returns how far (s) they move the schedule. */
static double count_missed(struct sampler *s, double late)
{
    if (late < s->o->interval)
        return 0;
    uint64_t missed = (uint64_t)(late / s->o->interval);
    s->missed_ticks += missed;
    return (double)missed * s->o->interval;
}

enum stop_reason sampler_run(struct sampler *s)
{
    sigset_t set, stops;
    sampler_signals(&set);
    stops = set;
    sigdelset(&stops, SIGCHLD);     /* left pending for session_reap */
    /* The kernel may fire a sleeping task's timer up to its timer slack
     * late (50 us by default) to batch wake-ups: at 10 kHz half a tick.
     * Only the attacher's own timers are concerned. */
    prctl(PR_SET_TIMERSLACK, TICK_TIMER_SLACK_NS, 0, 0, 0);

    double start = now_mono(), next = start;
    /* xorshift64 for the dither, seeded per run */
    uint64_t rng = ((uint64_t)getpid() << 32) ^ (uint64_t)(start * 1e9) ^ 0x9E3779B97F4A7C15ull;
    double dur = s->o->duration;
    enum stop_reason why = STOP_TARGET_EXITED;
    gettimeofday(&s->start_tv, NULL);
    s->vm_searching = s->find_vm != NULL;
    if (s->o->mode == MODE_CPU) {   /* for this run only: not while detaching */
        s->sess->on_thread_born = baseline_at_birth;
        s->sess->on_thread_born_arg = s;
    }
    double last_status = start, search_since = start;
    const struct timespec no_wait = { 0, 0 };
    for (;;) {
        /* A stop signal is honoured even when every tick runs late and the
         * loop never reaches the waiting sigtimedwait below. SIGCHLD stays
         * pending: session_reap takes it and only then walks the tracees. */
        int pending = sigtimedwait(&stops, NULL, &no_wait);
        if (pending == SIGINT || pending == SIGTERM || pending == SIGHUP) {
            why = STOP_SIGNAL;
            break;
        }
        session_reap(s->sess);
        if (s->sess->exited) {
            why = STOP_TARGET_EXITED;
            break;
        }
        double now = now_mono();
        if (dur > 0 && now - start >= dur) {
            why = STOP_DURATION;
            break;
        }
        if (now < next) {
            double wait = next - now;
            if (dur > 0 && start + dur - now < wait)
                wait = start + dur - now;
            struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
            int sig = sigtimedwait(&set, NULL, &ts);
            if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
                why = STOP_SIGNAL;
                break;
            }
            if (sig == SIGCHLD)
                s->sess->chld_unreaped = 1;     /* session_reap must walk */
            continue;           /* SIGCHLD, timeout or EINTR: re-check */
        }
        /* A tick is due. */
        next += count_missed(s, now - next);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        /* the next gap: uniform in [interval/2, 3 * interval/2) */
        next += s->o->interval * ((double)(rng >> 11) * 0x1p-53 + 0.5);
        s->ticks++;
        if (s->sess->exec_seen) {
            s->sess->exec_seen = 0;
            /* threads that exited before the exec write their last
             * samples now, with the old image's words (settled once: a
             * second settle_exit finds nothing more earned) */
            settle_gone(s);
            /* name the old image's frames while its mappings are known */
            if (s->prof && s->sym && sym_update_maps(s->sym, &s->maps) == 0)
                profile_new_image(s->prof, s->sym);
            /* through the leader: the exec'ing thread took its tid, the
             * thread last sampled may be gone; retried at the next sample
             * if it fails. The threads' estimates went with the old image
             * (thread_reset): their accounting starts again too. */
            s->mem.pid = s->sess->pid;
            if (reload_maps(s) < 0)
                s->maps_stale = 1;
            s->unexplained = 0;
            /* A wrapper (sh -c, env, pyenv's shim) exec'd the real program:
             * give that one its own time to publish a registry. */
            if (vm_may_appear(s) && !s->dec) {
                s->vm_searching = 1;
                search_since = now;
            }
        }
        if (s->vm_searching && !s->dec) {
            s->dec = s->find_vm(s, s->find_vm_arg);
            if (s->dec || !vm_may_appear(s) || now - search_since > VM_SEARCH_MAX)
                s->vm_searching = 0;
        }
        /* The log's header names the VM: open it once the VM is known or
         * the search gave up; samples taken meanwhile wait (bounded). */
        if (!s->prof && (!s->vm_searching || s->npending >= PENDING_MAX)) {
            if (sampler_open_profile(s) < 0) {
                why = STOP_ERROR;
                break;
            }
        }
        tick(s);
        if (s->status_line && now - last_status >= 0.5) {
            last_status = now;
            show_status(s, now - start);
        }
    }
    s->sess->on_thread_born = NULL;
    if (s->status_line)
        fputs("\r\033[K", stderr);
    double end = now_mono();
    /* ticks due before the end that never ran (a starved attacher may not
     * reach another tick to count them) */
    count_missed(s, end - next);
    s->elapsed = end - start;
    gettimeofday(&s->end_tv, NULL);
    return why;
}

double sampler_stop_percentile(const struct sampler *s, double q)
{
    return latency_pct(&s->stop_all, q);
}

void sampler_free(struct sampler *s)
{
    vm_select_release(s->dec);
    s->dec = NULL;
    drop_pending(s);
    free(s->act);
    free(s->rd);
    s->act = s->rd = NULL;
    s->nact = s->nrd = s->idx_cap = 0;
    s->act_version = UINT64_MAX;
    unwinder_free(s->uw);
    s->uw = NULL;
    sym_maps_free(&s->maps);
    snapshot_free(&s->snap);
    if (s->statm_fd >= 0)
        close(s->statm_fd);
    s->statm_fd = -1;
    if (s->loadavg_fd >= 0)
        close(s->loadavg_fd);
    s->loadavg_fd = -1;
}
