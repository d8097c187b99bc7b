/*
 * ptrace_session.h - being the target's tracer: attach, follow threads,
 * pass on what is not ours, detach.
 *
 * Invariants:
 *  - every thread is PTRACE_SEIZEd (never ATTACH: no SIGSTOP injected),
 *    with PTRACE_O_TRACECLONE so new threads are ours from birth and no
 *    PTRACE_O_EXITKILL, so our death leaves the target running;
 *  - a stop we did not ask for is resumed at once the way the target
 *    expects: a signal-delivery-stop with its signal, a group-stop with
 *    PTRACE_LISTEN (someone else's SIGSTOP stays in force);
 *  - session_detach() leaves no thread stopped, on every exit path.
 */
#ifndef VMPROF_PTRACE_SESSION_H
#define VMPROF_PTRACE_SESSION_H

#include <stdint.h>
#include <sys/types.h>

enum thread_state {
    THREAD_RUNNING = 0,         /* seized, not in a stop we hold */
    THREAD_GROUP_STOPPED,       /* in someone else's group-stop (LISTENed) */
    THREAD_GONE,                /* exited; slot kept until swept */
};

struct thread {
    pid_t tid;
    pid_t ns_tid;               /* the tid the target sees (PID namespace), 0 unknown */
    enum thread_state state;
    int schedstat_fd;           /* /proc/PID/task/TID/schedstat, -1 closed */
    uint64_t cpu_ns;            /* CPU time at the last check */
    double credit;              /* cpu mode: intervals earned, not yet sampled */
    uint32_t idle_streak;       /* consecutive checks that found no CPU used */
    uint64_t next_check;        /* tick at which to read schedstat again */
    uint64_t *last_words;       /* wall mode: the last stack, repeated while idle */
    int last_n;                 /* words in last_words, -1 none */
    uint64_t stack_lo, stack_hi;/* cached stack mapping of the thread */
    uint32_t stack_need;        /* bytes above SP the last unwinds used */
};

struct session {
    pid_t pid;                  /* thread group id of the target */
    int spawned;                /* we forked it: we reap its exit status */
    int exited;                 /* the whole process is gone */
    int exit_status;            /* wait status of the leader, when spawned */
    int exec_seen;              /* an exec happened: mappings changed */
    struct thread **v;          /* live and gone threads, stable pointers */
    size_t n, vcap;
    struct thread **hash;       /* open addressing on tid, power of two */
    size_t hcap;
    size_t gone;                /* THREAD_GONE entries awaiting a sweep */
    uint64_t threads_seen;      /* every thread ever seized or born */
    uint64_t threads_vanished;  /* gone while we tried to sample them */
    uint64_t signals_passed;    /* signal-delivery-stops passed on */
};

/* Error text: one line, names the cause and the fix. */
int session_attach(struct session *s, pid_t pid, char *err, size_t errlen);
/* Fork+exec argv with extra environment entries env_add (NULL-terminated,
 * may be NULL); the child is seized before it execs. */
int session_spawn(struct session *s, char **argv, char **env_add, char *err, size_t errlen);

/* Reap every pending wait status without blocking and handle it. */
void session_reap(struct session *s);

/* Stop thread t (PTRACE_INTERRUPT) and wait until it is in our stop.
 * Returns 0 when stopped (call session_resume after the snapshot),
 * 1 when the thread cannot be sampled now (gone, group-stopped). */
int session_stop_thread(struct session *s, struct thread *t);
int session_resume_thread(struct session *s, struct thread *t);

struct thread *session_find(struct session *s, pid_t tid);
/* Drop gone threads (call between ticks, never while holding a thread). */
void session_sweep(struct session *s);
/* Live threads; indexes stay valid until session_sweep. */
size_t session_live_count(const struct session *s);

/* Detach from every thread, leaving each running (or in its group-stop). */
void session_detach(struct session *s);
void session_free(struct session *s);

#endif
