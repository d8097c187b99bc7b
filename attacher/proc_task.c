/*
 * proc_task.c - facts about a process's threads from /proc, read fresh
 * every time (no caching: they are asked about exactly when they may have
 * changed). Every function tolerates the thread being gone: a missing
 * file reads as "ended" / unknown, never as an error.
 */
#include "proc_task.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads "Key:\tvalue" from a status file into val. 0 when found. */
static int proc_status_file_field(const char *path, const char *key, char *val, size_t cap)
{
    char line[256];
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

int proc_status_field(pid_t pid, const char *key, char *val, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    return proc_status_file_field(path, key, val, cap);
}

/* The tracer of one thread (0 none, -1 unknown: thread gone). */
pid_t proc_thread_tracer(pid_t pid, pid_t tid)
{
    char path[96], v[32];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
    if (proc_status_file_field(path, "TracerPid", v, sizeof(v)) < 0)
        return -1;
    return (pid_t)atoi(v);
}

/* State letter of a thread ('?' when gone) and its flags word, from
 * /proc/PID/task/TID/stat. */
/* State letter of a thread ('?' when gone) and field `want` (1-based, as
 * in proc(5); 0: none) of /proc/PID/task/TID/stat into *val (0 when absent). */
static char stat_field(pid_t pid, pid_t tid, int want, unsigned long *val)
{
    char path[96], buf[1024];
    *val = 0;
    snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    char *p = strrchr(buf, ')');            /* the name may hold ')' */
    if (!p || p[1] != ' ' || !p[2])
        return '?';
    char state = p[2];
    /* ")" ends field 2; each blank after it starts the next */
    for (int field = 2; field < want && p; field++)
        p = strchr(p + 1, ' ');
    if (want > 2 && p && p[1] >= '0' && p[1] <= '9')
        *val = strtoul(p + 1, NULL, 10);
    return state;
}

char proc_thread_stat(pid_t pid, pid_t tid, unsigned long *flags)
{
    return stat_field(pid, tid, 9, flags);
}

char proc_thread_cpu(pid_t pid, pid_t tid, int *cpu)
{
    unsigned long v;
    char state = stat_field(pid, tid, 39, &v);
    *cpu = (int)v;
    return state;
}

char proc_thread_state(pid_t pid, pid_t tid)
{
    unsigned long flags;
    return proc_thread_stat(pid, tid, &flags);
}

int proc_thread_ended(pid_t pid, pid_t tid)
{
    return proc_state_ended(proc_thread_state(pid, tid));
}

/* Reads /proc/PID/task/TID/NAME into buf (NUL-terminated) through *fd,
 * opened at the first call and kept (such files are made afresh when read
 * at offset 0). 0, or -1 when unreadable. */
static int task_file_read(int *fd, pid_t pid, pid_t tid, const char *name, char *buf,
                          size_t cap)
{
    if (*fd < 0) {
        char path[96];
        snprintf(path, sizeof(path), "/proc/%d/task/%d/%s", (int)pid, (int)tid, name);
        *fd = open(path, O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
            return -1;
    }
    ssize_t n = pread(*fd, buf, cap - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

int proc_thread_call(int *fd, pid_t pid, pid_t tid, struct proc_call *c)
{
    char buf[256];
    if (task_file_read(fd, pid, tid, "syscall", buf, sizeof(buf)) < 0)
        return -1;
    /* "NR ARG1 .. ARG6 SP PC" (arguments and pointers in 0x hex),
     * "-1 SP PC" (blocked outside a call) or "running" */
    char *p = buf, *end;
    long nr = strtol(p, &end, 10);
    if (end == p || nr < 0)
        return 0;
    uint64_t v[8];
    for (int i = 0; i < 8; i++) {
        p = end;
        v[i] = strtoull(p, &end, 16);
        if (end == p)
            return 0;
    }
    c->nr = nr;
    memcpy(c->args, v, sizeof(c->args));
    c->sp = v[6];
    c->pc = v[7];
    return 1;
}

int proc_thread_schedstat(int *fd, pid_t pid, pid_t tid, uint64_t v[3])
{
    char buf[96];
    if (task_file_read(fd, pid, tid, "schedstat", buf, sizeof(buf)) < 0)
        return -1;
    char *p = buf;
    for (int i = 0; i < 3; i++)
        v[i] = strtoull(p, &p, 10);
    return 0;
}
