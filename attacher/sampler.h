/*
 * sampler.h - the tick loop: absolute deadlines, one short stop per
 * sampled thread, the rest of the work done while the target runs.
 *
 * Per tick, per thread worth sampling: stop (ptrace_session) -> snapshot
 * -> resume -> unwind -> merge -> profile. Between ticks the loop waits in
 * sigtimedwait for SIGCHLD (ptrace events, passed on at once), SIGINT,
 * SIGTERM and SIGHUP (clean stop); those signals must be blocked by the
 * caller before the target is attached.
 */
#ifndef VMPROF_SAMPLER_H
#define VMPROF_SAMPLER_H

#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include "frames.h"
#include "latency.h"
#include "options.h"
#include "profile.h"
#include "ptrace_session.h"
#include "remote_mem.h"
#include "snapshot.h"
#include "symbols.h"
#include "unwind.h"
#include "vm_decoder.h"

enum stop_reason { STOP_TARGET_EXITED, STOP_DURATION, STOP_SIGNAL, STOP_ERROR };

struct sampler;

/* Finds the target's VM (registry) and returns its decoder, or NULL when
 * there is none (yet). Called at start and retried while discovering. */
typedef struct vm_decoder *(*sampler_find_vm)(struct sampler *s, void *arg);

struct sampler {
    int no_task_clock;          /* perf task clocks refused: read schedstat */
    const struct options *o;
    struct session *sess;
    struct remote_mem mem;
    struct sym_maps maps;
    int maps_stale;
    uint64_t maps_reload_tick;  /* tick of the last reload for an unknown IP */
    struct unwinder *uw;
    struct vm_decoder *dec;
    sampler_find_vm find_vm;
    void *find_vm_arg;
    int vm_searching;           /* still retrying find_vm */
    struct profile *prof;
    struct symbolizer *sym;     /* names an image's natives at its exec (NULL: none) */
    /* Samples taken before the log is opened (while a spawned VM has not
     * yet published its registry): written first once it is. */
    struct pending_sample { pid_t tid; int n, repeat; uint64_t rss_kb; uint64_t *words; } *pending;
    size_t npending;
    int out_fd;
    const char *cmdline;        /* META "command" */
    int status_line;            /* stderr is a terminal: show live progress */
    char root[64];              /* where objects are opened */
    /* --mem: /proc/PID/statm held open, read at most once a tick */
    int statm_fd;
    uint64_t rss_kb, rss_tick;  /* last value read, and its tick (0: none) */
    /* is a run queue longer than one (cpu_contended), asked once a tick */
    int loadavg_fd;             /* /proc/loadavg held open, -1 unavailable */
    long ncpu;                  /* CPUs online */
    uint64_t contended_tick;
    int contended;
    /* the on-CPU test moves us off a sampled thread's CPU (sampler.c) */
    cpu_set_t allowed;          /* the CPUs we were started with */
    int have_allowed;           /* -1 not read, 0 one CPU (or unknown), 1 */
    int moved;                  /* our affinity is narrower than allowed */
    /* Idle threads (sampler.c): the target's process CPU clock, its last
     * value, the CPU it used that the threads read since the last sweep
     * do not explain; the threads read every tick and those read this
     * tick (indexes in sess->v; grown, never shrunk). */
    clockid_t cpu_clock;
    int have_cpu_clock;
    uint64_t proc_cpu_ns, proc_clock_tick; /* (0: not read yet) */
    int64_t unexplained;
    uint32_t *act;              /* running and not quiet */
    uint32_t *rd;               /* read this tick */
    size_t nact, nrd, idx_cap;
    uint64_t act_version;       /* sess->version act is for; UINT64_MAX none */
    struct snapshot snap;
    struct native_frame nat[MAX_NATIVE_FRAMES];
    uint64_t words[MAX_STACK_WORDS];

    /* statistics */
    uint64_t deferred;          /* cpu-mode stops let go: thread was off-CPU */
    uint64_t read_in_stop;      /* busy threads' CPU read while stopped */
    uint64_t guess_misses;      /* ... that had not earned a sample after all */
    uint64_t ticks, missed_ticks, samples, repeated, unwind_calls;
    uint64_t sweeps;            /* ticks that read quiet threads */
    uint64_t maps_reloads;
    uint64_t maps_kept;         /* reloads dropped: read from an exiting thread */
    uint64_t calls_failed;      /* wall mode: stops that made a blocking call
                                   fail with EINTR (sampler.c, "Wall mode") */
    uint64_t stops_spared;      /* ... threads back at such a place, not stopped */
    int call_reads_off;         /* /proc/TID/syscall too slow here (sampler.c) */
    uint64_t blocked_credit;    /* cpu mode: samples of a thread found blocked,
                                   written with its last stack seen running */
    uint64_t exit_credit;       /* cpu mode: samples an exited thread earned
                                   after its last read, written so too */
    uint64_t exit_unseen;       /* ... earned, with no recent stack: lost */
    uint64_t stack_bytes;       /* stack bytes copied while threads were stopped */
    /* stop times (stop_all.n: the number of stops): the whole stop, and
     * its phases: until the thread is stopped, the copy of registers and
     * stack, the VM frames, the resume */
    struct latency stop_all, stop_wait, stop_copy, stop_vm, stop_resume;
    double elapsed;
    struct timeval start_tv, end_tv; /* wall clock when sampling started, ended */
    char err[512];
};

/* The signals sampler_run takes with sigtimedwait: SIGCHLD (ptrace
 * events), SIGINT, SIGTERM, SIGHUP (clean stop). Block them before
 * attaching. */
void sampler_signals(sigset_t *set);
int sampler_init(struct sampler *s, const struct options *o, struct session *sess,
                 const char *root, int out_fd);
/* Runs until the target exits, the duration passes or a stop signal
 * arrives. The profile is opened (header written) at the first tick. */
enum stop_reason sampler_run(struct sampler *s);
/* Open the log (header, META) if the run has not yet: a run that ends
 * before its first sample still leaves a complete, empty log. */
int sampler_open_profile(struct sampler *s);
/* Stop-time percentile in microseconds (q in [0,1]). */
double sampler_stop_percentile(const struct sampler *s, double q);
/* Name sink handed to decoders: forwards to the profile. */
void sampler_vm_name(void *arg, uint64_t id, const char *name);
void sampler_free(struct sampler *s);

#endif
