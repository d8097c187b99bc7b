/*
 * ptrace_session.c - the target's threads, as their tracer.
 *
 * Owns: seizing threads (at attach, and at birth through
 * PTRACE_O_TRACECLONE), every wait status the kernel reports for them,
 * and detaching. The sampler asks for one thread at a time to be stopped
 * (session_stop_thread) and resumed (session_resume_thread); everything
 * else that stops a thread is passed on here at once:
 *   signal-delivery-stop -> PTRACE_CONT with the same signal (never lost)
 *   group-stop           -> PTRACE_LISTEN (someone else's SIGSTOP holds)
 *   clone/exec events    -> bookkeeping, then PTRACE_CONT
 * Invariant: outside session_stop_thread..session_resume_thread no thread
 * is left in a stop of ours.
 */
#include "ptrace_session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEIZE_OPTS (PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC)

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

static struct thread *thread_add(struct session *s, pid_t tid)
{
    struct thread *t = session_find(s, tid);
    if (t) {
        /* A tid reused after its thread was reaped: a new thread. */
        if (t->state == THREAD_GONE) {
            t->state = THREAD_RUNNING;
            s->gone--;
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
    t->state = THREAD_RUNNING;
    t->schedstat_fd = -1;
    t->last_n = -1;
    s->v[s->n++] = t;
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

static void thread_gone(struct session *s, struct thread *t)
{
    if (t->state == THREAD_GONE)
        return;
    t->state = THREAD_GONE;
    if (t->schedstat_fd >= 0) {
        close(t->schedstat_fd);
        t->schedstat_fd = -1;
    }
    s->gone++;
}

void session_sweep(struct session *s)
{
    if (!s->gone)
        return;
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->state == THREAD_GONE) {
            free(s->v[i]->last_words);
            free(s->v[i]);
        }
        else
            s->v[k++] = s->v[i];
    }
    s->n = k;
    s->gone = 0;
    hash_rebuild(s, s->hcap);   /* same size: cannot fail worse than before */
}

size_t session_live_count(const struct session *s)
{
    return s->n - s->gone;
}

/* ---- wait statuses ----------------------------------------------------- */

static int is_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

enum status_kind { ST_OURS, ST_HANDLED, ST_GONE, ST_GROUP_STOP };

/* Handle one wait status of tid. Returns ST_OURS only for an interrupt
 * trap (left stopped for the caller), everything else is dealt with. */
static enum status_kind handle_status(struct session *s, pid_t tid, int status)
{
    struct thread *t = session_find(s, tid);

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
    if (!t)                     /* born before we heard of it */
        t = thread_add(s, tid);

    switch (event) {
    case PTRACE_EVENT_STOP:
        if (is_stop_signal(sig)) {
            if (t)
                t->state = THREAD_GROUP_STOPPED;
            ptrace(PTRACE_LISTEN, tid, 0, 0);
            return ST_GROUP_STOP;
        }
        if (t && t->state == THREAD_GROUP_STOPPED)
            t->state = THREAD_RUNNING;      /* SIGCONT ended the group-stop */
        return ST_OURS;
    case PTRACE_EVENT_CLONE: {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == 0 && child > 0)
            thread_add(s, (pid_t)child);
        ptrace(PTRACE_CONT, tid, 0, 0);
        return ST_HANDLED;
    }
    case PTRACE_EVENT_EXEC:
        s->exec_seen = 1;
        ptrace(PTRACE_CONT, tid, 0, 0);
        return ST_HANDLED;
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

void session_reap(struct session *s)
{
    for (;;) {
        int status;
        pid_t tid = waitpid(-1, &status, WNOHANG | __WALL);
        if (tid <= 0) {
            if (tid < 0 && errno == EINTR)
                continue;
            if (tid < 0 && errno == ECHILD)
                s->exited = 1;  /* nothing left to trace */
            return;
        }
        if (handle_status(s, tid, status) == ST_OURS)
            ptrace(PTRACE_CONT, tid, 0, 0);   /* a stale interrupt trap */
    }
}

int session_stop_thread(struct session *s, struct thread *t)
{
    if (t->state != THREAD_RUNNING)
        return 1;
    if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0) {
        thread_gone(s, t);
        s->threads_vanished++;
        return 1;
    }
    for (;;) {
        int status;
        pid_t r = waitpid(t->tid, &status, __WALL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            thread_gone(s, t);
            s->threads_vanished++;
            return 1;
        }
        switch (handle_status(s, r, status)) {
        case ST_OURS:
            return 0;
        case ST_GONE:
            s->threads_vanished++;
            return 1;
        case ST_GROUP_STOP:
            return 1;
        case ST_HANDLED:
            if (t->state == THREAD_GONE)
                return 1;
            break;              /* our interrupt is still pending */
        }
    }
}

int session_resume_thread(struct session *s, struct thread *t)
{
    if (ptrace(PTRACE_CONT, t->tid, 0, 0) < 0) {
        thread_gone(s, t);
        return -1;
    }
    return 0;
}

/* ---- attach ------------------------------------------------------------ */

/* Reads "Key:\tvalue" from /proc/PID/status into val. 0 when found. */
static int status_field(pid_t pid, const char *key, char *val, size_t cap)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t kl = strlen(key);
    int found = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            char *v = line + kl + 1;
            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            snprintf(val, cap, "%s", v);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

static void tracer_description(pid_t tracer, char *buf, size_t cap)
{
    char name[64] = "?";
    status_field(tracer, "Name", name, sizeof(name));
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
        int added = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            pid_t tid = (pid_t)atoi(e->d_name);
            if (tid <= 0 || session_find(s, tid))
                continue;
            if (ptrace(PTRACE_SEIZE, tid, 0, (void *)(uintptr_t)SEIZE_OPTS) < 0) {
                if (errno == ESRCH)
                    continue;   /* exited meanwhile */
                int e2 = errno;
                closedir(d);
                if (e2 == EPERM) {
                    char tp[32] = "0";
                    status_field(s->pid, "TracerPid", tp, sizeof(tp));
                    if (atoi(tp) != 0) {
                        char who[96];
                        tracer_description((pid_t)atoi(tp), who, sizeof(who));
                        snprintf(err, errlen, "process %d is already traced by %s: "
                                 "detach that debugger or profiler first", (int)s->pid, who);
                    } else {
                        permission_error(s->pid, err, errlen);
                    }
                } else {
                    snprintf(err, errlen, "cannot trace thread %d of process %d: %s",
                             (int)tid, (int)s->pid, strerror(e2));
                }
                return -1;
            }
            if (!thread_add(s, tid)) {
                closedir(d);
                snprintf(err, errlen, "out of memory tracking threads");
                return -1;
            }
            added++;
        }
        closedir(d);
        if (!added)
            return 0;
    }
    return 0;
}

int session_attach(struct session *s, pid_t pid, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->pid = pid;
    char state[32] = "", tp[32] = "0";
    if (kill(pid, 0) < 0 && errno == ESRCH) {
        snprintf(err, errlen, "no such process %d: check the PID (e.g. pgrep -f NAME)", (int)pid);
        return -1;
    }
    if (status_field(pid, "State", state, sizeof(state)) < 0) {
        snprintf(err, errlen, "no such process %d: check the PID (e.g. pgrep -f NAME)", (int)pid);
        return -1;
    }
    if (state[0] == 'Z' || state[0] == 'X') {
        snprintf(err, errlen, "process %d has exited (zombie): nothing to profile", (int)pid);
        return -1;
    }
    if (status_field(pid, "TracerPid", tp, sizeof(tp)) == 0 && atoi(tp) != 0) {
        char who[96];
        tracer_description((pid_t)atoi(tp), who, sizeof(who));
        snprintf(err, errlen, "process %d is already traced by %s: detach that "
                 "debugger or profiler first", (int)pid, who);
        return -1;
    }
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

int session_spawn(struct session *s, char **argv, char **env_add, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
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
    if (ptrace(PTRACE_SEIZE, child, 0, (void *)(uintptr_t)SEIZE_OPTS) < 0 ||
        !thread_add(s, child)) {
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

/* ---- detach ------------------------------------------------------------ */

void session_detach(struct session *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct thread *t = s->v[i];
        if (t->state == THREAD_GONE)
            continue;
        /* PTRACE_DETACH needs a ptrace-stop: interrupt, then detach from
         * whatever stop comes, handing back a pending signal. */
        if (ptrace(PTRACE_INTERRUPT, t->tid, 0, 0) < 0) {
            thread_gone(s, t);
            continue;
        }
        for (;;) {
            int status;
            pid_t r = waitpid(t->tid, &status, __WALL);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                thread_gone(s, t);
                break;
            }
            if (WIFEXITED(status) || WIFSIGNALED(status)) {
                handle_status(s, r, status);
                break;
            }
            int event = (unsigned)status >> 16;
            int sig = WSTOPSIG(status);
            if (event == 0) {           /* signal-delivery-stop: hand it back */
                ptrace(PTRACE_DETACH, t->tid, 0, (void *)(uintptr_t)sig);
                break;
            }
            if (event == PTRACE_EVENT_CLONE) {
                unsigned long child = 0;
                if (ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &child) == 0 && child > 0)
                    thread_add(s, (pid_t)child);    /* detached later in this loop */
            }
            if (event == PTRACE_EVENT_STOP || event == PTRACE_EVENT_CLONE ||
                event == PTRACE_EVENT_EXEC) {
                ptrace(PTRACE_DETACH, t->tid, 0, 0);
                break;
            }
            ptrace(PTRACE_CONT, t->tid, 0, 0);
        }
        if (t->state != THREAD_GONE)
            thread_gone(s, t);
    }
}

void session_free(struct session *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->schedstat_fd >= 0)
            close(s->v[i]->schedstat_fd);
        free(s->v[i]->last_words);
        free(s->v[i]);
    }
    free(s->v);
    free(s->hash);
    s->v = NULL;
    s->hash = NULL;
    s->n = s->vcap = s->hcap = s->gone = 0;
}
