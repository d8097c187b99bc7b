/*
 * ptrace_session.c - the target's threads, as their tracer.
 *
 * Owns: the thread table, threads born traced (PTRACE_O_TRACECLONE),
 * every wait status the kernel reports for them, and detaching. Becoming
 * the tracer (attach, spawn, hand-over) is ptrace_attach.c. The sampler asks for one thread at a time to be stopped
 * (session_stop_thread) and resumed (session_resume_thread); everything
 * else that stops a thread is passed on here, at the latest by the next
 * session_reap (the sampler calls it every loop pass):
 *   signal-delivery-stop -> PTRACE_CONT with the same signal (never lost,
 *                           never doubled: the kernel keeps its siginfo)
 *   group-stop           -> PTRACE_LISTEN (someone else's SIGSTOP holds;
 *                           SIGCONT shows up as a trap we resume)
 *   clone/fork/vfork/exec events -> bookkeeping, then PTRACE_CONT
 *   a new process's first stop -> on_process (--children hands it to a
 *                           follower), then PTRACE_DETACH
 *   a stale interrupt    -> PTRACE_CONT (a stop that came after we gave up)
 * Invariant: outside session_stop_thread..session_resume_thread no thread
 * is left in a stop of ours.
 *
 * Why no wait is for one thread alone, and every wait is bounded: a group
 * leader's exit is reported only after every other thread of the group has
 * been reaped, by us; waiting on the leader alone while the whole group
 * exits would wait forever (it did: the attacher hung, the target stayed a
 * zombie). And some threads cannot stop at all: a leader that called
 * pthread_exit() (a zombie until the others end), a thread in
 * uninterruptible sleep, a leader replaced by exec. So a wait hands every
 * status it gets to handle_status() and gives up at a deadline; the kernel
 * queues SIGCHLD for each ptrace stop and exit, which sigtimedwait() sleeps
 * on (SIGCHLD stays blocked: session_attach/spawn make sure).
 *
 * What a wait costs: waitpid(-1) looks at every tracee (1000 idle threads:
 * most of the attacher's time when it was done several times a sample);
 * waitpid(tid) looks at one. So the stop of a thread polls its own tid
 * (session_stop_thread), and a walk with waitpid(-1) is made only when a
 * SIGCHLD says some status is waiting: one pending, or one taken by a
 * sleep and not yet followed by a walk (chld_unreaped; SIGCHLD does not
 * queue, so one taken may stand for several statuses). The SIGCHLD of
 * the stop being waited for names its sender (siginfo): it costs a walk
 * only every maybe_walk_ns() (another status merged into it is rare, and
 * found then). A status becomes
 * waitable before its SIGCHLD is sent, so "no SIGCHLD pending, none taken
 * unreaped" means no status is waiting. Statuses of other threads that
 * come while one is being stopped are passed on at the sampler's next
 * loop pass (session_reap), or at once when the wait has to sleep.
 *
 * A pending PTRACE_INTERRUPT is consumed by whatever ptrace-stop the
 * thread enters first (the kernel clears its STOP trap in every stop): a
 * signal-delivery-stop or clone event of the thread being stopped is
 * taken as the sample's stop (the signal is handed on at resume); after
 * an exec event no trap will come, so that sample is skipped.
 *
 * Exec: the kernel reports it on the leader's tid, whichever thread ran
 * it; the exec'ing thread's former tid vanishes without an exit status and
 * every other thread is reported dead. Tracing goes on in the new image:
 * the sampler sees exec_seen and re-reads the mappings.
 */
#include "ptrace_session.h"
#include "ptrace_session_int.h"
#include "proc_task.h"
#include "mono_clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEIZE_OPTS (PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC)
#define SEIZE_OPTS_CHILDREN (SEIZE_OPTS | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK)
#define RETRY_INTERRUPT_NS 1000000000ull   /* re-ask a thread that did not stop */
#define POLL_NS 30000           /* a stop's status is polled this long */
#define POLL_GIVE_UP 8          /* stops in a row too slow for the poll */
#define POLL_RETRY 32           /* then one stop in this many polls */
#define DETACH_POLL_NS 50000000ull         /* look for zombies this often */

/* ---- thread table ------------------------------------------------------ */

static size_t hash_slot(const struct session *s, pid_t tid)
{
    return ((uint32_t)tid * 2654435761u) & (s->hcap - 1);
}

static int hash_rebuild(struct session *s, size_t hcap)
{
    struct thread **h = calloc(hcap, sizeof(*h));
    if (!h)
        return -1;
    free(s->hash);
    s->hash = h;
    s->hcap = hcap;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = hash_slot(s, s->v[i]->tid);
        while (h[j])
            j = (j + 1) & (hcap - 1);
        h[j] = s->v[i];
    }
    return 0;
}

struct thread *session_find(struct session *s, pid_t tid)
{
    if (!s->hcap)
        return NULL;
    for (size_t j = hash_slot(s, tid); s->hash[j]; j = (j + 1) & (s->hcap - 1))
        if (s->hash[j]->tid == tid)
            return s->hash[j];
    return NULL;
}

/* Forget what was known about the thread that had this slot's tid. */
static void thread_reset(struct thread *t)
{
    free_failing_sites(t);
    t->ns_tid = 0;
    t->cpu_ns = 0;
    t->cpu_read_ns = 0;
    t->busy = 0;
    t->est_ns = 0;
    t->credit = 0;
    t->last_n = -1;
    t->stack_lo = t->stack_hi = 0;
    t->stack_need = 0;
    t->last_sp = 0;
    t->idle_streak = 0;
    t->next_check = 0;
    t->read_tick = 0;
    t->interrupt_pending = 0;
    t->deferrals = 0;
    t->runs = 0;
    t->stop_call_kind = 0;
    t->after_stop = 0;
    t->still = 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Closes the files the sampler keeps open for t. */
static void thread_close_files(struct thread *t)
{
    close_fd(&t->schedstat_fd);
    close_fd(&t->runs_fd);
    close_fd(&t->call_fd);
}

static struct thread *thread_add_state(struct session *s, pid_t tid, enum thread_state st)
{
    struct thread *t = session_find(s, tid);
    if (t) {
        if (t->state == THREAD_GONE) {
            /* A tid reused after its thread was reaped: a new thread. */
            thread_close_files(t);
            thread_reset(t);
            t->state = st;
            s->gone--;
            s->version++;
            if (st != THREAD_FOREIGN)
                s->threads_seen++;
        }
        return t;
    }
    if (s->n == s->vcap) {
        size_t nc = s->vcap ? s->vcap * 2 : 64;
        struct thread **nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv)
            return NULL;
        s->v = nv;
        s->vcap = nc;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->tid = tid;
    t->state = st;
    t->schedstat_fd = -1;
    t->runs_fd = -1;
    t->call_fd = -1;
    t->last_n = -1;
    s->v[s->n++] = t;
    s->version++;
    if (st != THREAD_FOREIGN)
        s->threads_seen++;
    if (s->n * 2 > s->hcap) {
        if (hash_rebuild(s, s->hcap ? s->hcap * 2 : 128) < 0) {
            s->n--;
            free(t);
            return NULL;
        }
    } else {
        size_t j = hash_slot(s, tid);
        while (s->hash[j])
            j = (j + 1) & (s->hcap - 1);
        s->hash[j] = t;
    }
    return t;
}

struct thread *session_thread_add(struct session *s, pid_t tid)
{
    return thread_add_state(s, tid, THREAD_RUNNING);
}

static void thread_gone(struct session *s, struct thread *t)
{
    if (t->state == THREAD_GONE)
        return;
    t->state = THREAD_GONE;
    t->interrupt_pending = 0;
    /* Its CPU clock stays open until the sweep: a task clock still reads
     * the thread's CPU time after its exit (sampler.c, settle_exit). */
    close_fd(&t->runs_fd);
    close_fd(&t->call_fd);
    s->gone++;
}

/* t's tid is gone because a thread exec'd (the exec'ing thread lives on
 * under the leader's tid): unlike an exit, its CPU clock, which follows
 * the task, would go on counting the new program's time; closed now. */
static void thread_replaced(struct session *s, struct thread *t)
{
    close_fd(&t->schedstat_fd);
    thread_gone(s, t);
}

void session_sweep(struct session *s)
{
    if (!s->gone)
        return;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->state == THREAD_GONE) {
            thread_close_files(s->v[i]);
            free(s->v[i]->last_words);
            free_failing_sites(s->v[i]);
            free(s->v[i]);
        }
        else
            s->v[k++] = s->v[i];
    }
    s->n = k;
    s->gone = 0;
    s->version++;
    hash_rebuild(s, s->hcap);   /* same size: cannot fail worse than before */
}

size_t session_live_count(const struct session *s)
{
    return s->n - s->gone;
}

/* Is tid a thread of the target (and not a process it cloned)? */
static int is_member(const struct session *s, pid_t tid)
{
    char path[96];
    if (tid == s->pid)
        return 1;
    snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)s->pid, (int)tid);
    return access(path, F_OK) == 0;
}

/* ---- wait statuses ----------------------------------------------------- */

static int is_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* Next wait status of any traced thread, waiting until deadline (ns,
 * CLOCK_MONOTONIC). Returns the tid, 0 when the deadline passed, -1 when
 * nothing is traced any more (ECHILD). */
static pid_t wait_any(int *status, uint64_t deadline)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        pid_t r = waitpid(-1, status, __WALL | WNOHANG);
        if (r > 0)
            return r;
        if (r < 0 && errno != EINTR)
            return -1;
        if (r < 0)
            continue;
        uint64_t now = mono_ns();
        if (now >= deadline)
            return 0;
        uint64_t left = deadline - now;
        struct timespec ts = { (time_t)(left / 1000000000ull), (long)(left % 1000000000ull) };
        sigtimedwait(&chld, NULL, &ts);     /* any outcome: look again */
    }
}

static void detach_from(struct session *s, struct thread *t, pid_t tid, int sig)
{
    ptrace(PTRACE_DETACH, tid, 0, (void *)(uintptr_t)sig);
    if (t)
        thread_gone(s, t);
}

enum status_kind {
    ST_OURS,        /* an interrupt trap: left stopped for the caller */
    ST_HANDLED,     /* dealt with (resumed, passed on) */
    ST_GONE,        /* the thread exited */
    ST_GROUP_STOP,  /* it is in a group-stop now (LISTENed) */
    ST_EXEC,        /* an exec event (resumed): a new image under this tid */
};

uintptr_t session_seize_opts(const struct session *s)
{
    return (s->flags & SESSION_FOLLOW_CHILDREN) ? SEIZE_OPTS_CHILDREN : SEIZE_OPTS;
}

static int is_new_process_event(int event)
{
    return event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK ||
           event == PTRACE_EVENT_VFORK;
}

/* A process the target made, at its first stop: tell on_process (which
 * may hand it to a follower), then let go of it. */
static void let_go_of_process(struct session *s, pid_t pid, int status)
{
    if (s->on_process)
        s->on_process(s->on_process_arg, pid);
    int sig = WSTOPSIG(status);
    ptrace(PTRACE_DETACH, pid, 0,
           (void *)(uintptr_t)(((unsigned)status >> 16) == 0 ? sig : 0));
}

/* A thread started by the target while traced: added, and on_thread_born
 * told of it. */
static struct thread *thread_born(struct session *s, pid_t tid)
{
    struct thread *t = session_thread_add(s, tid);
    if (t && s->on_thread_born)
        s->on_thread_born(s->on_thread_born_arg, t);
    return t;
}

/* A thread we had not heard of reports its first status. */
static struct thread *newborn(struct session *s, pid_t tid, int status)
{
    if (is_member(s, tid))
        return thread_born(s, tid);
    /* A process the target made (not a thread): not ours to trace. */
    if (WIFSTOPPED(status))
        let_go_of_process(s, tid, status);
    return NULL;
}

static void on_clone(struct session *s, pid_t tid)
{
    unsigned long child = 0;
    if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) < 0 || child == 0 || child > 0x7fffffff)
        return;
    pid_t c = (pid_t)child;
    if (session_find(s, c) && session_find(s, c)->state != THREAD_GONE)
        return;                     /* its own first stop came first */
    if (is_member(s, c))
        thread_born(s, c);
    else if (proc_thread_tracer(c, c) == getpid())
        thread_add_state(s, c, THREAD_FOREIGN);  /* detached at its first stop */
}

static void on_exec(struct session *s, struct thread *t, pid_t tid)
{
    unsigned long former = 0;
    s->exec_seen = 1;
    s->execs++;
    if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &former) == 0 && former > 0 &&
        (pid_t)former != tid) {
        /* A non-leader exec'd: its old tid is gone without a status, and
         * the thread now under the leader's tid is a new one. */
        struct thread *old = session_find(s, (pid_t)former);
        if (old)
            thread_replaced(s, old);
    }
    if (t) {
        thread_reset(t);
        thread_close_files(t);
        t->state = THREAD_RUNNING;
        s->version++;
    }
}

/* Handle one wait status of tid. Returns ST_OURS only for an interrupt
 * trap (left stopped for the caller); everything else is dealt with. */
static enum status_kind handle_status(struct session *s, pid_t tid, int status)
{
    struct thread *t = session_find(s, tid);
    if (t && t->state == THREAD_GONE && WIFSTOPPED(status))
        t = NULL;                   /* a reused tid: a new thread */

    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        if (t)
            thread_gone(s, t);
        /* The leader's end is reported after every other thread's. */
        if (tid == s->pid) {
            s->exited = 1;
            s->exit_status = status;
        }
        return ST_GONE;
    }
    if (!WIFSTOPPED(status))
        return ST_HANDLED;

    int sig = WSTOPSIG(status);
    int event = (unsigned)status >> 16;
    if (!t && !(t = newborn(s, tid, status)))
        return ST_HANDLED;          /* not a thread of ours (detached) */
    t->interrupt_pending = 0;       /* any ptrace-stop clears a pending interrupt */
    if (t->state == THREAD_FOREIGN) {
        let_go_of_process(s, tid, status);
        thread_gone(s, t);
        return ST_HANDLED;
    }

    switch (event) {
    case PTRACE_EVENT_STOP:
        if (is_stop_signal(sig)) {
            t->state = THREAD_GROUP_STOPPED;
            ptrace(PTRACE_LISTEN, tid, 0, 0);
            return ST_GROUP_STOP;
        }
        if (t->state == THREAD_GROUP_STOPPED || t->state == THREAD_ZOMBIE) {
            t->state = THREAD_RUNNING;      /* SIGCONT ended the group-stop */
            s->version++;
        }
        return ST_OURS;
    case PTRACE_EVENT_CLONE:
    case PTRACE_EVENT_FORK:
    case PTRACE_EVENT_VFORK:
        on_clone(s, tid);
        ptrace(PTRACE_CONT, tid, 0, 0);
        return ST_HANDLED;
    case PTRACE_EVENT_EXEC:
        on_exec(s, t, tid);
        ptrace(PTRACE_CONT, tid, 0, 0);
        return ST_EXEC;
    case 0:
        /* Signal-delivery-stop: the signal is the target's; pass it on. */
        s->signals_passed++;
        ptrace(PTRACE_CONT, tid, 0, (void *)(uintptr_t)sig);
        return ST_HANDLED;
    default:
        ptrace(PTRACE_CONT, tid, 0, 0);
        return ST_HANDLED;
    }
}

/* A trap nobody is waiting for (an interrupt we gave up on, a new
 * thread's first stop): let the thread run. */
static void resume_stray(struct session *s, pid_t tid)
{
    struct thread *t = session_find(s, tid);
    if (t)
        t->interrupt_pending = 0;
    ptrace(PTRACE_CONT, tid, 0, 0);
}

/* A SIGCHLD was taken with siginfo si; tid's status (the thread being
 * stopped) has been collected. Sent by tid: it explains itself but may
 * hide one merged after it (chld_maybe); by anyone else: a status waits
 * (chld_unreaped). */
static void took_sigchld(struct session *s, const siginfo_t *si, pid_t tid)
{
    if (tid > 0 && si->si_pid == tid)
        s->chld_maybe = 1;
    else
        s->chld_unreaped = 1;
}

/* Takes a pending SIGCHLD without waiting (see took_sigchld; tid 0: the
 * signal explains nothing). 1 when there was one. */
static int take_sigchld(struct session *s, pid_t tid)
{
    static const struct timespec zero = { 0, 0 };
    sigset_t chld;
    siginfo_t si;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigtimedwait(&chld, &si, &zero) != SIGCHLD)
        return 0;
    took_sigchld(s, &si, tid);
    return 1;
}

/* One step of a walk over every tracee: the next status (> 0), 0 when
 * there is none (every status is collected: chld_unreaped is cleared),
 * -1 when nothing is traced any more. */
static pid_t walk_next(struct session *s, int *status)
{
    for (;;) {
        pid_t r = waitpid(-1, status, __WALL | WNOHANG);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            s->chld_unreaped = s->chld_maybe = 0;
            s->last_walk_ns = mono_ns();
        }
        return r < 0 ? -1 : 0;
    }
}

/* How long a status that merged into the stopped thread's own SIGCHLD
 * may wait for a walk. A walk looks at every tracee (~0.2 us each): every
 * 20 ms at most, and with many threads no more often than keeps walks
 * under ~0.25% of a core (1000 threads: every 76 ms), never past 100 ms. */
#define MAYBE_WALK_MIN_NS 20000000ull
#define MAYBE_WALK_MAX_NS 100000000ull
#define MAYBE_WALK_PER_THREAD_NS 76000ull

static uint64_t maybe_walk_ns(const struct session *s)
{
    uint64_t ns = (uint64_t)s->n * MAYBE_WALK_PER_THREAD_NS;
    return ns < MAYBE_WALK_MIN_NS ? MAYBE_WALK_MIN_NS :
           ns > MAYBE_WALK_MAX_NS ? MAYBE_WALK_MAX_NS : ns;
}

void session_reap(struct session *s)
{
    /* A walk costs a look at every tracee (the kernel's list of them):
     * with 1000 threads that is most of the attacher's time if done
     * blindly. Every status that becomes waitable queues a SIGCHLD before
     * the status can be seen, so no SIGCHLD pending and none taken
     * unreaped means no status waiting. */
    take_sigchld(s, 0);
    if (!s->chld_unreaped &&
        (!s->chld_maybe || mono_ns() - s->last_walk_ns < maybe_walk_ns(s)))
        return;
    for (;;) {
        int status;
        pid_t tid = walk_next(s, &status);
        if (tid <= 0) {
            if (tid < 0)
                s->exited = 1;  /* nothing left to trace */
            return;
        }
        if (handle_status(s, tid, status) == ST_OURS)
            resume_stray(s, tid);
    }
}

/* The stop did not come in SESSION_STOP_TIMEOUT_MS. A thread that is
 * only waiting for a CPU (a busy machine) gets until SESSION_STOP_MAX_MS:
 * 1 to wait on. Otherwise (uninterruptible sleep, a zombie leader) skip
 * it: until its trap comes (a stray trap is resumed when reaped), or for
 * good when it is a zombie. Returns 0 to give up. */
static int stop_slow(struct session *s, struct thread *t, uint64_t *deadline, int *extended)
{
    char c = proc_thread_state(s->pid, t->tid);
    if (!*extended && (c == 'R' || c == 'S')) {
        *extended = 1;
        *deadline += (SESSION_STOP_MAX_MS - SESSION_STOP_TIMEOUT_MS) * 1000000ull;
        return 1;
    }
    s->stop_timeouts++;
    if (c == 'Z')
        t->state = THREAD_ZOMBIE;
    return 0;
}

/* Whether this stop polls for its status before it sleeps: not while
 * the CPUs are contended (poll_stops, from the sampler: a yield can then
 * hand the CPU to every runnable task in turn, a slice each; seen: stops
 * of 12-28 ms with 9 spinning threads on 2 CPUs), and not after
 * POLL_GIVE_UP stops in a row whose status came too late for the poll
 * (a loaded machine: the thread waits for a CPU), except every
 * POLL_RETRY-th stop, which tries again. */
static int poll_this_stop(struct session *s)
{
    if (!s->poll_stops)
        return 0;
    if (s->poll_misses < POLL_GIVE_UP || ++s->poll_skipped >= POLL_RETRY) {
        s->poll_skipped = 0;
        return 1;
    }
    return 0;
}

/* The next wait status the stop of tid needs, until deadline: tid's own
 * first (waitpid on one tid looks at that thread alone), polled for up to
 * POLL_NS (yielding between polls, so that a thread stopping on our own
 * CPU gets it), then sleeping on SIGCHLD while there is none.
 * Why poll: on a virtual machine a CPU that sleeps is woken by the host
 * (the tracer's CPU idles while it sleeps, and the stop's wake-up of it
 * costs 15-30 us); a tracer that polls is awake when the status comes.
 * Measured side by side (ab.py, 4 rounds, load 0.8): 1000 idle threads,
 * stop p50 72 -> 38 us, attacher 160 -> 110 us of CPU a tick; 30-deep
 * stack 91 -> 71 us, 228 -> 196 us. (Tried in an earlier session when
 * the VM frames cost a dozen page reads a stop: the copies then took
 * longer from a tracer that had not slept on the CPU the thread left,
 * which ate the gain; and on a loaded machine polling took the CPU the
 * thread needed to stop, which poll_this_stop now gives up on.)
 * Every thread's (a walk, until it finds no more) when a SIGCHLD came
 * that tid's wait does not explain, when tid is not waitable at all, and
 * after STALE_WALK_NS when a SIGCHLD taken earlier was never followed by
 * a walk: the leader's exit, and an exec's end, wait for other threads to
 * be reaped by us, and their SIGCHLD may have been taken already (a stop
 * that comes sooner does not need the walk: the sampler's loop does it).
 * Returns a tid, 0 when the deadline passed, -1 when nothing is traced
 * any more, -2 when tid is gone without a status (replaced by an exec).
 * w carries the wait's state across calls (zeroed by the caller). */
#define STALE_WALK_NS 1000000
struct stop_wait { int walk; uint64_t walk_after; int polled; };

static pid_t wait_stop(struct session *s, pid_t tid, int *status, uint64_t deadline,
                       struct stop_wait *w)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (!w->walk_after)
        w->walk_after = mono_ns() + STALE_WALK_NS;
    int polling = !w->polled && poll_this_stop(s);
    uint64_t poll_until = polling ? mono_ns() + POLL_NS : 0;
    w->polled = 1;
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL | WNOHANG);
        if (r > 0) {
            s->chld_owed = tid;         /* its SIGCHLD: taken at resume */
            if (polling)
                s->poll_misses = 0;
            return r;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (polling) {
            if (r == 0 && mono_ns() < poll_until) {
                sched_yield();
                continue;
            }
            polling = 0;
            if (s->poll_misses < UINT32_MAX)
                s->poll_misses++;
        }
        int unwaitable = r < 0;         /* ECHILD: not (any more) ours */
        if (w->walk || unwaitable) {
            r = walk_next(s, status);
            if (r != 0)
                return r;
            w->walk = 0;
            if (unwaitable)
                return -2;
        }
        uint64_t now = mono_ns();
        if (now >= deadline)
            return 0;
        uint64_t until = deadline;
        if (s->chld_unreaped || s->chld_maybe) {
            if (now >= w->walk_after) {
                w->walk = 1;
                continue;
            }
            if (w->walk_after < until)
                until = w->walk_after;
        }
        uint64_t left = until - now;
        struct timespec ts = { (time_t)(left / 1000000000ull), (long)(left % 1000000000ull) };
        siginfo_t si;
        if (sigtimedwait(&chld, &si, &ts) == SIGCHLD) {
            /* tid first; if it has nothing, the signal was another's */
            r = waitpid(tid, status, __WALL | WNOHANG);
            if (r > 0) {
                took_sigchld(s, &si, tid);
                return r;
            }
            s->chld_unreaped = 1;
            w->walk = 1;
        }
    }
}

int session_stop_thread(struct session *s, struct thread *t)
{
    if (t->state != THREAD_RUNNING)
        return 1;
    uint64_t now = mono_ns();
    if (t->interrupt_pending && now - t->interrupt_ns < RETRY_INTERRUPT_NS)
        return 1;
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0) {
        thread_gone(s, t);
        s->threads_vanished++;
        return 1;
    }
    t->interrupt_pending = 1;
    t->interrupt_ns = now;
    uint64_t deadline = now + SESSION_STOP_TIMEOUT_MS * 1000000ull;
    int extended = 0;
    struct stop_wait w = { .walk = 0 };
    for (;;) {
        int status;
        pid_t r = wait_stop(s, t->tid, &status, deadline, &w);
        if (r == 0) {
            if (stop_slow(s, t, &deadline, &extended))
                continue;
            return 1;
        }
        if (r < 0) {            /* nothing traced any more, or t gone */
            if (r == -1)
                s->exited = 1;
            if (r == -2)
                thread_replaced(s, t);
            else
                thread_gone(s, t);
            s->threads_vanished++;
            return 1;
        }
        if (r == t->tid && t->state == THREAD_RUNNING && WIFSTOPPED(status) &&
            (status >> 16 == 0 || status >> 16 == PTRACE_EVENT_CLONE)) {
            /* The kernel clears a pending interrupt at any ptrace-stop:
             * this stop is the sample's. A signal is handed on at resume. */
            t->interrupt_pending = 0;
            if (status >> 16 == 0) {
                t->resume_sig = WSTOPSIG(status);
                s->signals_passed++;
            } else {
                on_clone(s, t->tid);
            }
            return 0;
        }
        enum status_kind k = handle_status(s, r, status);
        if (r != t->tid) {
            if (k == ST_OURS)
                resume_stray(s, r);
            continue;
        }
        switch (k) {
        case ST_OURS:
            t->interrupt_pending = 0;
            return 0;
        case ST_GONE:
            s->threads_vanished++;
            return 1;
        case ST_GROUP_STOP:
        case ST_EXEC:
        case ST_HANDLED:        /* (a foreign process, detached) */
            return 1;
        }
    }
}

int session_resume_thread(struct session *s, struct thread *t)
{
    int sig = t->resume_sig;
    t->resume_sig = 0;
    /* The SIGCHLD of t's stop, if the wait collected the status without
     * taking it: taken now, before t runs (a SIGCHLD of t's next stop
     * would merge into it), so that the next stop's sleep does not wake
     * for it and it costs no walk (took_sigchld). Statuses of other
     * threads that came meanwhile are passed on by the caller's next
     * session_reap, not here: a walk per sample would cost a look at
     * every tracee per sample. */
    if (s->chld_owed == t->tid)
        take_sigchld(s, t->tid);
    s->chld_owed = 0;
    if (ptrace(PTRACE_CONT, t->tid, 0, (void *)(uintptr_t)sig) < 0) {
        thread_gone(s, t);
        return -1;
    }
    return 0;
}

/* ---- detach ------------------------------------------------------------ */

/* One status while detaching: any ptrace-stop is the moment to let go of
 * that thread (handing back a signal it was about to get); a clone event
 * adds the child, which is let go at its own first stop. */
static void detach_status(struct session *s, pid_t tid, int status)
{
    if (!WIFSTOPPED(status)) {
        handle_status(s, tid, status);
        return;
    }
    struct thread *t = session_find(s, tid);
    if (t && t->state == THREAD_GONE)
        t = NULL;
    if (!t && !(t = newborn(s, tid, status)))
        return;
    int event = (unsigned)status >> 16;
    if (is_new_process_event(event))
        on_clone(s, tid);
    if (event == PTRACE_EVENT_EXEC)
        on_exec(s, t, tid);
    if (event == 0)
        s->signals_passed++;
    /* group-stop: PTRACE_DETACH puts it back in the group-stop */
    detach_from(s, t, tid, event == 0 ? WSTOPSIG(status) : 0);
}

static int only_zombies_left(struct session *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct thread *t = s->v[i];
        if (t->state != THREAD_GONE && !proc_thread_ended(s->pid, t->tid))
            return 0;
    }
    return 1;
}

void session_detach(struct session *s)
{
    /* PTRACE_DETACH needs a ptrace-stop: interrupt every thread at once,
     * then let go of each as its stop (of whatever kind) comes in. A
     * process born now is only let go of: the run is ending. */
    s->on_process = NULL;
    for (size_t i = 0; i < s->n; i++) {
        struct thread *t = s->v[i];
        if (t->state == THREAD_GONE || t->state == THREAD_FOREIGN)
            continue;
        if (t->state == THREAD_ZOMBIE) {
            s->detach_stragglers++;
            thread_gone(s, t);
        } else if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0) {
            thread_gone(s, t);
        }
    }
    uint64_t deadline = mono_ns() + SESSION_DETACH_MS * 1000000ull;
    while (session_live_count(s) > 0) {
        uint64_t now = mono_ns();
        uint64_t until = now + DETACH_POLL_NS < deadline ? now + DETACH_POLL_NS : deadline;
        int status;
        pid_t r = wait_any(&status, until);
        if (r < 0) {
            break;              /* nothing traced any more */
        } else if (r > 0) {
            detach_status(s, r, status);
        } else if (mono_ns() >= deadline || only_zombies_left(s)) {
            for (size_t i = 0; i < s->n; i++)
                if (s->v[i]->state != THREAD_GONE)
                    s->detach_stragglers++;
            break;
        }
    }
    for (size_t i = 0; i < s->n; i++)
        thread_gone(s, s->v[i]);
}

void session_free(struct session *s)
{
    for (size_t i = 0; i < s->n; i++) {
        thread_close_files(s->v[i]);
        free(s->v[i]->last_words);
        free_failing_sites(s->v[i]);
        free(s->v[i]);
    }
    free(s->v);
    free(s->hash);
    s->v = NULL;
    s->hash = NULL;
    s->n = s->vcap = s->hcap = s->gone = 0;
    s->version++;
}
