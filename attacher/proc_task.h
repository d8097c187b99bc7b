/*
 * proc_task.h - facts about a process's threads from /proc/PID/status and
 * /proc/PID/task/TID/{status,stat,syscall}, for the tracer, the sampler and
 * --children.
 */
#ifndef VMPROF_PROC_TASK_H
#define VMPROF_PROC_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PF_EXITING_FLAG 0x00000004u        /* include/linux/sched.h */
#define PF_KTHREAD_FLAG 0x00200000u

/* "Key:" of /proc/PID/status into val (without leading blanks or the
 * newline). 0 when found, -1 otherwise. */
int proc_status_field(pid_t pid, const char *key, char *val, size_t cap);
/* The tracer of one thread (0 none, -1 unknown: thread gone). */
pid_t proc_thread_tracer(pid_t pid, pid_t tid);
/* State letter of a thread ('?' when gone) and its flags word. */
char proc_thread_stat(pid_t pid, pid_t tid, unsigned long *flags);
char proc_thread_state(pid_t pid, pid_t tid);
/* State letter and the CPU the thread last ran on (field 39 of stat). */
char proc_thread_cpu(pid_t pid, pid_t tid, int *cpu);
/* Exited: a zombie, dead, or gone ('?'): of a state letter, and of a thread. */
static inline int proc_state_ended(char state)
{
    return state == 'Z' || state == 'X' || state == '?';
}
int proc_thread_ended(pid_t pid, pid_t tid);

/* /proc/PID/task/TID/schedstat: v[0] CPU time (ns), v[1] time waiting for
 * a CPU (ns), v[2] times put on a CPU (0 where the kernel does not count
 * them). 0 when read, -1 when unreadable (gone). *fd: the file, kept open
 * for the next call (-1: open it; the caller closes it). */
int proc_thread_schedstat(int *fd, pid_t pid, pid_t tid, uint64_t v[3]);

/* Where a blocked thread waits: the system call, its six arguments, and
 * the user stack pointer and instruction pointer it will return to. */
struct proc_call {
    long nr;
    uint64_t args[6];
    uint64_t sp, pc;
};
/* From /proc/PID/task/TID/syscall (read without stopping the thread; the
 * reader must be allowed to ptrace it): 1 when the thread is blocked in a
 * system call (*c filled), 0 when it is running or blocked outside one,
 * -1 when unreadable (gone, not allowed). *fd: the file, kept open for
 * the next call (-1: open it; the caller closes it). */
int proc_thread_call(int *fd, pid_t pid, pid_t tid, struct proc_call *c);

#endif
