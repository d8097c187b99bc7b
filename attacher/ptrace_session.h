/*
 * ptrace_session.h - being the target's tracer: attach, follow threads,
 * pass on what is not ours, detach.
 *
 * Invariants:
 *  - every thread is PTRACE_SEIZEd (never ATTACH: no SIGSTOP injected),
 *    with PTRACE_O_TRACECLONE so new threads are ours from birth and no
 *    PTRACE_O_EXITKILL, so our death leaves the target running; a process
 *    the target makes (clone without CLONE_THREAD; fork and vfork too with
 *    SESSION_FOLLOW_CHILDREN) is detached at its first stop, after
 *    on_process has been told of it;
 *  - a stop we did not ask for is resumed at once the way the target
 *    expects: a signal-delivery-stop with its signal, a group-stop with
 *    PTRACE_LISTEN (someone else's SIGSTOP stays in force);
 *  - no wait blocks on one thread: every wait sleeps on SIGCHLD, takes
 *    any traced thread's status a SIGCHLD announces and is bounded in
 *    time, so a thread that cannot stop (exiting, a zombie leader,
 *    uninterruptible sleep) never hangs the attacher;
 *  - session_detach() leaves no thread stopped, on every exit path.
 * The caller must keep SIGCHLD blocked (session_attach/spawn block it).
 */
#ifndef VMPROF_PTRACE_SESSION_H
#define VMPROF_PTRACE_SESSION_H

#include <stdint.h>
#include <sys/types.h>

#include "blocked_call.h"

enum thread_state {
    THREAD_RUNNING = 0,         /* seized, not in a stop we hold */
    THREAD_GROUP_STOPPED,       /* in someone else's group-stop (LISTENed) */
    THREAD_ZOMBIE,              /* exited leader waiting for its threads: cannot stop */
    THREAD_FOREIGN,             /* a process cloned by the target: detach at its stop */
    THREAD_GONE,                /* exited or detached; slot kept until swept */
};

struct thread {
    pid_t tid;
    pid_t ns_tid;               /* the tid the target sees (PID namespace), 0 unknown */
    enum thread_state state;
    int schedstat_fd;           /* /proc/PID/task/TID/schedstat or a task clock
                                   (task_clock), -1 closed; a gone thread's
                                   stays open until session_sweep */
    int task_clock;             /* schedstat_fd is a perf task clock */
    uint64_t cpu_ns;            /* CPU time at the last check */
    uint64_t cpu_read_ns;       /* when (CLOCK_MONOTONIC) it was read, 0 never */
    double busy;                /* CPU over wall time between the last two reads */
    int64_t est_ns;             /* cpu mode, busy thread: CPU estimated since
                                   cpu_read_ns, not yet read (sampler.c) */
    double credit;              /* cpu mode: intervals earned, not yet sampled */
    uint32_t idle_streak;       /* consecutive checks that found no CPU used */
    uint32_t deferrals;         /* cpu mode: off-CPU stops let go in a row */
    uint64_t next_check;        /* tick at which to read schedstat again */
    int64_t tick_delta;         /* CPU used, as read at tick read_tick */
    uint64_t read_tick;
    uint64_t *last_words;       /* wall mode: the last stack, repeated while
                                   still; cpu mode: the last one sampled running */
    int last_n;                 /* words in last_words, -1 none */
    int last_cap;               /* words last_words has room for */
    uint64_t stack_lo, stack_hi;/* cached stack mapping of the thread */
    uint32_t stack_need;        /* bytes above SP the last unwinds used */
    uint64_t last_sp;           /* SP at the last snapshot, 0 none */
    int interrupt_pending;      /* PTRACE_INTERRUPT sent, its trap not yet seen */
    int resume_sig;             /* held in a signal-delivery-stop: resume with it */
    uint64_t interrupt_ns;      /* when (CLOCK_MONOTONIC) */
    uint64_t last_run_ns;       /* cpu mode: when last_words was sampled running */
    /* Where it waits (blocked_call.h; sampler.c, "Wall mode"): read only
     * for threads that are not busy, or in wall mode. */
    int call_fd;                /* /proc/PID/task/TID/syscall, -1 closed */
    int runs_fd;                /* wall mode: /proc/PID/task/TID/schedstat, -1 closed */
    uint64_t runs;              /* ... times put on a CPU, at the last read; 0 unknown */
    struct proc_call stop_call; /* ... the blocking call the last sample found it in */
    int stop_call_kind;         /* ... CALL_*: CALL_NONE none */
    int after_stop;             /* ... the first check after that sample is due */
    int still;                  /* ... seen blocked in that call since, not run after */
    struct failing_site *sites; /* ... THREAD_FAILING_SITES, allocated at the first */
    int nsites, next_site;      /* ... sites held; the one to replace next */
};

struct session {
    pid_t pid;                  /* thread group id of the target */
    int spawned;                /* we forked it: we reap its exit status */
    int exited;                 /* the whole process is gone */
    int exit_status;            /* wait status of the leader, when spawned */
    int exec_seen;              /* an exec happened: mappings changed */
    unsigned flags;             /* SESSION_* given to attach/spawn */
    /* --children: called with each process the target creates (fork,
     * vfork, clone of a process) at its first stop, just before it is
     * detached; NULL: such processes are only detached. */
    void (*on_process)(void *arg, pid_t pid);
    void *on_process_arg;
    /* Called with each thread the target starts while traced (a clone
     * event, or the new thread's own first stop, whichever comes first),
     * before it has run any code of its own; NULL: nothing. */
    void (*on_thread_born)(void *arg, struct thread *t);
    void *on_thread_born_arg;
    struct thread **v;          /* live and gone threads, stable pointers */
    size_t n, vcap;
    struct thread **hash;       /* open addressing on tid, power of two */
    size_t hcap;
    size_t gone;                /* THREAD_GONE entries awaiting a sweep */
    uint64_t version;           /* bumped when v changes (a thread added,
                                   gone ones swept) or a thread becomes
                                   THREAD_RUNNING again */
    uint64_t threads_seen;      /* every thread ever seized or born */
    uint64_t threads_vanished;  /* gone while we tried to sample them */
    uint64_t signals_passed;    /* signal-delivery-stops passed on */
    uint64_t stop_timeouts;     /* stops that did not come in time (skipped) */
    uint64_t execs;             /* exec events seen */
    uint64_t detach_stragglers; /* threads left traced by session_detach (zombie, D state) */
    /* A SIGCHLD was taken (sigtimedwait, by anyone: the sampler sets it
     * too) and not every wait status has been collected since: the next
     * session_reap walks every tracee. SIGCHLD does not queue, so one
     * taken while waiting for a thread may stand for several statuses. */
    int chld_unreaped;
    /* A SIGCHLD was taken that came from the very thread being stopped
     * (its siginfo's pid), and its stop's status was collected: it
     * explains itself, unless another thread's SIGCHLD merged into it
     * after it (the window between that thread's stop and our taking the
     * signal, tens of microseconds). Such a status is found by a walk
     * 20 ms later at most (100 ms with a thousand threads and more: see
     * maybe_walk_ns), not a walk per sample. */
    int chld_maybe;
    int poll_stops;             /* poll for a stop's status (set by the
                                   sampler: not while the CPUs are contended) */
    uint32_t poll_misses;       /* stops in a row the poll did not see */
    uint32_t poll_skipped;      /* stops not polled since the last poll */
    pid_t chld_owed;            /* its status was collected before its SIGCHLD
                                   was taken: take it at resume */
    uint64_t last_walk_ns;      /* when a walk last found no status */
};

/* Flags of session_attach/spawn. */
#define SESSION_FOLLOW_CHILDREN 1u  /* also trace fork/vfork (PTRACE_O_TRACEFORK|VFORK),
                                     * so on_process sees every new process */
#define SESSION_HANDOFF 2u          /* attach: the target is still traced by our parent
                                     * (a follower taking over a new child process):
                                     * retry the first seize until that tracer lets go */
#define SESSION_HANDOFF_MS 2000

/* Error text: one line, names the cause and the fix. */
int session_attach(struct session *s, pid_t pid, unsigned flags, char *err, size_t errlen);
/* Fork+exec argv with extra environment entries env_add (NULL-terminated,
 * may be NULL); the child is seized before it execs. */
int session_spawn(struct session *s, char **argv, char **env_add, unsigned flags,
                  char *err, size_t errlen);

/* Reap every pending wait status without blocking and handle it: a walk
 * over every tracee (waitpid(-1)), done only when a SIGCHLD is pending or
 * chld_unreaped says one was taken (cheap otherwise). */
void session_reap(struct session *s);

/* Stop thread t (PTRACE_INTERRUPT) and wait until it is in our stop,
 * handling every other thread's status meanwhile; waits at most
 * SESSION_STOP_TIMEOUT_MS, or SESSION_STOP_MAX_MS for a thread that is
 * only waiting for a CPU. Returns 0 when stopped (call
 * session_resume_thread after the snapshot), 1 when the thread cannot be
 * sampled now (gone, group-stopped, exec, cannot stop: counted in
 * stop_timeouts). */
#define SESSION_STOP_TIMEOUT_MS 100
#define SESSION_STOP_MAX_MS 1000
int session_stop_thread(struct session *s, struct thread *t);
/* PTRACE_CONT t. Other threads' statuses taken meanwhile are left to the
 * caller's next session_reap (the sampler's next loop pass). */
int session_resume_thread(struct session *s, struct thread *t);

struct thread *session_find(struct session *s, pid_t tid);
/* Drop gone threads (call between ticks, never while holding a thread);
 * a gone thread's CPU clock can be read until then. */
void session_sweep(struct session *s);
/* Live threads; indexes stay valid until session_sweep. */
size_t session_live_count(const struct session *s);

/* Detach from every thread, leaving each running (or in its group-stop).
 * Bounded: threads that cannot reach a stop within SESSION_DETACH_MS
 * (a zombie leader, uninterruptible sleep) are left to the kernel, which
 * detaches them when the attacher exits (counted in detach_stragglers). */
#define SESSION_DETACH_MS 2000
void session_detach(struct session *s);
void session_free(struct session *s);

#endif
