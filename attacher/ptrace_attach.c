/*
 * ptrace_attach.c - becoming the target's tracer: checks that need no
 * ptrace (gone, ourselves, a thread id, a kernel thread, already traced),
 * seizing every thread of a running process (or taking over a new child
 * process from the parent vmprof-attach: SESSION_HANDOFF), and starting a
 * command seized before it execs. Every refusal is one line naming the
 * cause and the fix. The session then runs in ptrace_session.c.
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

static void tracer_description(pid_t tracer, char *buf, size_t cap)
{
    char name[64] = "?";
    proc_status_field(tracer, "Name", name, sizeof(name));
    snprintf(buf, cap, "%d (%s)", (int)tracer, name);
}

static void permission_error(pid_t pid, char *err, size_t errlen)
{
    char scope[16] = "";
    FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
    if (f) {
        if (fgets(scope, sizeof(scope), f))
            scope[strcspn(scope, "\n")] = '\0';
        fclose(f);
    }
    snprintf(err, errlen,
             "permission denied tracing process %d: run as its user with "
             "kernel.yama.ptrace_scope=0%s%s%s, or as root / with CAP_SYS_PTRACE",
             (int)pid, scope[0] ? " (now " : "", scope, scope[0] ? ")" : "");
}

/* PTRACE_SEIZE of tid refused with EPERM: 0 when that is fine (already
 * ours through TRACECLONE, or an exited thread), else the error. */
static int seize_refused(struct session *s, pid_t tid, char *err, size_t errlen)
{
    pid_t tracer = proc_thread_tracer(s->pid, tid);
    if (tracer == getpid())
        return session_thread_add(s, tid) ? 0 : -1;
    if (tracer <= 0 && proc_thread_ended(s->pid, tid))
        return 0;               /* exited (a pthread_exit'ed leader): nothing to seize */
    if (tracer > 0) {
        char who[96];
        tracer_description(tracer, who, sizeof(who));
        snprintf(err, errlen, "process %d is already traced by %s: "
                 "detach that debugger or profiler first", (int)s->pid, who);
    } else {
        permission_error(s->pid, err, errlen);
    }
    return -1;
}

/* Seize every thread listed in /proc/PID/task until a pass finds none
 * new (threads may be born by not-yet-seized threads during a pass). */
static int seize_all(struct session *s, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)s->pid);
    for (int pass = 0; pass < 100; pass++) {
        DIR *d = opendir(path);
        if (!d) {
            snprintf(err, errlen, "process %d vanished while attaching", (int)s->pid);
            return -1;
        }
        int added = 0, rc = 0;
        struct dirent *e;
        while (rc == 0 && (e = readdir(d))) {
            pid_t tid = (pid_t)atoi(e->d_name);
            if (tid <= 0 || session_find(s, tid))
                continue;
            if (ptrace(PTRACE_SEIZE, tid, 0, (void *)session_seize_opts(s)) == 0) {
                if (!session_thread_add(s, tid)) {
                    snprintf(err, errlen, "out of memory tracking threads");
                    rc = -1;
                }
                added++;
            } else if (errno == EPERM) {
                rc = seize_refused(s, tid, err, errlen);
            } else if (errno != ESRCH) {    /* ESRCH: exited meanwhile */
                snprintf(err, errlen, "cannot trace thread %d of process %d: %s",
                         (int)tid, (int)s->pid, strerror(errno));
                rc = -1;
            }
        }
        closedir(d);
        if (rc < 0)
            return -1;
        if (!added)
            return 0;
    }
    return 0;
}

static void block_sigchld(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

/* Refusals that need no ptrace: gone, zombie, ourselves, a thread id, a
 * kernel thread, already traced. */
static int check_target(pid_t pid, char *err, size_t errlen)
{
    char state[32] = "", tp[32] = "0", tgid[32] = "", threads[32] = "1";
    if ((kill(pid, 0) < 0 && errno == ESRCH) ||
        proc_status_field(pid, "State", state, sizeof(state)) < 0) {
        snprintf(err, errlen, "no such process %d: check the PID (e.g. pgrep -f NAME)", (int)pid);
        return -1;
    }
    if (pid == getpid()) {
        snprintf(err, errlen, "process %d is vmprof-attach itself: give the PID of "
                 "the process to profile", (int)pid);
        return -1;
    }
    if (proc_status_field(pid, "Tgid", tgid, sizeof(tgid)) == 0 && atoi(tgid) != pid) {
        snprintf(err, errlen, "%d is a thread of process %s, not a process: use -p %s",
                 (int)pid, tgid, tgid);
        return -1;
    }
    proc_status_field(pid, "Threads", threads, sizeof(threads));
    /* A zombie leader with live threads (it called pthread_exit) is alive. */
    if ((state[0] == 'Z' || state[0] == 'X') && atoi(threads) <= 1) {
        snprintf(err, errlen, "process %d has exited (zombie): nothing to profile", (int)pid);
        return -1;
    }
    unsigned long flags;
    proc_thread_stat(pid, pid, &flags);
    if (flags & PF_KTHREAD_FLAG) {
        snprintf(err, errlen, "process %d is a kernel thread: nothing to profile "
                 "(give the PID of a user process)", (int)pid);
        return -1;
    }
    if (proc_status_field(pid, "TracerPid", tp, sizeof(tp)) == 0 && atoi(tp) != 0) {
        char who[96];
        tracer_description((pid_t)atoi(tp), who, sizeof(who));
        snprintf(err, errlen, "process %d is already traced by %s: detach that "
                 "debugger or profiler first", (int)pid, who);
        return -1;
    }
    return 0;
}

/* SESSION_HANDOFF: our parent holds the new process in its first stop
 * and lets go of it once we are ready; seize the leader the moment it
 * does (a few microseconds of running untraced at most). Returns 0 when
 * seized; otherwise seize_all reports why not. */
static void handoff_seize(struct session *s)
{
    uint64_t deadline = mono_ns() + SESSION_HANDOFF_MS * 1000000ull;
    for (;;) {
        if (ptrace(PTRACE_SEIZE, s->pid, 0, (void *)session_seize_opts(s)) == 0) {
            session_thread_add(s, s->pid);
            return;
        }
        if (errno != EPERM || mono_ns() >= deadline)
            return;
        sched_yield();
    }
}

int session_attach(struct session *s, pid_t pid, unsigned flags, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->pid = pid;
    s->flags = flags;
    block_sigchld();
    if (flags & SESSION_HANDOFF)
        handoff_seize(s);
    else if (check_target(pid, err, errlen) < 0)
        return -1;
    if (seize_all(s, err, errlen) < 0) {
        session_detach(s);
        session_free(s);
        s->pid = pid;
        return -1;
    }
    if (s->n == 0) {
        snprintf(err, errlen, "process %d has no threads left to trace", (int)pid);
        return -1;
    }
    return 0;
}

/* In the child, before exec: the command gets the signal state vmprof-attach
 * was started with, not the one it uses itself (it blocks SIGCHLD, SIGINT,
 * SIGTERM and SIGHUP to take them with sigtimedwait, and ignores SIGPIPE;
 * an exec keeps both the mask and ignored dispositions). */
static void child_signal_state(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    signal(SIGPIPE, SIG_DFL);
}

/* A real-time policy given to vmprof-attach (chrt, so that its ticks are
 * not delayed by the target: see the man page) is not the command's: it
 * starts under the normal policy. */
static void child_sched_state(void)
{
    int policy = sched_getscheduler(0);
    if (policy == SCHED_FIFO || policy == SCHED_RR) {
        struct sched_param sp = { 0 };
        sched_setscheduler(0, SCHED_OTHER, &sp);
    }
}

int session_spawn(struct session *s, char **argv, char **env_add, unsigned flags,
                  char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->flags = flags;
    block_sigchld();
    int go[2], fail[2];
    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(fail, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot create pipes: %s", strerror(errno));
        return -1;
    }
    pid_t child = fork();
    if (child < 0) {
        snprintf(err, errlen, "cannot fork: %s", strerror(errno));
        return -1;
    }
    if (child == 0) {
        char c;
        close(go[1]);
        close(fail[0]);
        if (read(go[0], &c, 1) != 1)
            _exit(127);
        for (char **e = env_add; e && *e; e++)
            putenv(*e);
        child_signal_state();
        child_sched_state();
        execvp(argv[0], argv);
        int e = errno;
        if (write(fail[1], &e, sizeof(e)) < 0)
            _exit(127);
        _exit(127);
    }
    close(go[0]);
    close(fail[1]);
    s->pid = child;
    s->spawned = 1;
    if (ptrace(PTRACE_SEIZE, child, 0, (void *)session_seize_opts(s)) < 0 ||
        !session_thread_add(s, child)) {
        snprintf(err, errlen, "cannot trace the command: %s", strerror(errno));
        kill(child, SIGKILL);
        waitpid(child, NULL, __WALL);
        close(go[1]);
        close(fail[0]);
        session_free(s);
        return -1;
    }
    if (write(go[1], "g", 1) != 1) { /* child gone: its exit is reaped later */ }
    close(go[1]);
    int child_errno = 0;
    ssize_t r;
    do {
        r = read(fail[0], &child_errno, sizeof(child_errno));
    } while (r < 0 && errno == EINTR);
    close(fail[0]);
    if (r == (ssize_t)sizeof(child_errno)) {
        waitpid(child, NULL, __WALL);
        session_free(s);
        snprintf(err, errlen, "cannot run '%s': %s; check the command name and PATH",
                 argv[0], strerror(child_errno));
        return -1;
    }
    return 0;
}
