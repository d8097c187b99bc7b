/*
 * test_proc_task.c - proc_thread_call against threads of this test: a
 * thread blocked in read() on a pipe is found in that call with its
 * arguments, found again in the next one through the same open file (the
 * kernel writes the file afresh at offset 0), a spinning thread is
 * "running" (0), a thread that is gone reads -1; proc_thread_schedstat
 * counts this thread's own runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "proc_task.h"

static int pipe_a[2], pipe_b[2];
static char buf_a[7], buf_b[13];
static volatile pid_t reader_tid;
static volatile int spin_stop;

static void *reader(void *arg)
{
    (void)arg;
    reader_tid = (pid_t)syscall(SYS_gettid);
    if (read(pipe_a[0], buf_a, sizeof(buf_a)) < 0)
        return NULL;
    if (read(pipe_b[0], buf_b, sizeof(buf_b)) < 0)
        return NULL;
    return NULL;
}

static void *spinner(void *arg)
{
    *(volatile pid_t *)arg = (pid_t)syscall(SYS_gettid);
    while (!spin_stop)
        ;
    return NULL;
}

/* Waits (up to 2 s) until the thread is blocked in a read of fd. */
static int wait_blocked_in(int *fd, pid_t tid, int want_fd, struct proc_call *c)
{
    for (int i = 0; i < 2000; i++) {
        if (proc_thread_call(fd, getpid(), tid, c) == 1 && c->nr == SYS_read &&
            c->args[0] == (uint64_t)want_fd)
            return 1;
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }
    return 0;
}

static void test_blocked_thread_and_its_next_call(void **state)
{
    (void)state;
    assert_int_equal(pipe(pipe_a), 0);
    assert_int_equal(pipe(pipe_b), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader, NULL), 0);
    while (!reader_tid)
        ;
    int fd = -1;
    struct proc_call c;
    assert_true(wait_blocked_in(&fd, reader_tid, pipe_a[0], &c));
    assert_true(fd >= 0);
    assert_int_equal(c.args[1], (uint64_t)(uintptr_t)buf_a);
    assert_int_equal(c.args[2], sizeof(buf_a));
    assert_true(c.sp != 0 && c.pc != 0);
    struct proc_call first = c;
    /* let it go on to the second read: the same file answers afresh */
    int kept = fd;
    assert_int_equal(write(pipe_a[1], "x", 1), 1);
    assert_true(wait_blocked_in(&fd, reader_tid, pipe_b[0], &c));
    assert_int_equal(fd, kept);
    assert_int_equal(c.args[1], (uint64_t)(uintptr_t)buf_b);
    assert_int_equal(c.args[2], sizeof(buf_b));
    assert_true(c.sp == first.sp);      /* same function, same frame */
    assert_int_equal(write(pipe_b[1], "y", 1), 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    /* gone: never "blocked in a call" through the old file; a new open
     * fails once the kernel has let go of the thread (its /proc entry may
     * outlive pthread_join by microseconds) */
    struct proc_call gone;
    assert_true(proc_thread_call(&fd, getpid(), reader_tid, &gone) != 1);
    close(fd);
    int fresh = -1, r = 0;
    for (int i = 0; i < 1000 && (r = proc_thread_call(&fresh, getpid(), reader_tid, &gone)) != -1;
         i++) {
        assert_true(r != 1);
        if (fresh >= 0)
            close(fresh);
        fresh = -1;
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    }
    assert_int_equal(r, -1);
    assert_int_equal(fresh, -1);
    for (int i = 0; i < 2; i++) {
        close(pipe_a[i]);
        close(pipe_b[i]);
    }
}

static void test_running_thread_is_not_in_a_call(void **state)
{
    (void)state;
    volatile pid_t tid = 0;
    pthread_t th;
    spin_stop = 0;
    assert_int_equal(pthread_create(&th, NULL, spinner, (void *)&tid), 0);
    while (!tid)
        ;
    int fd = -1, running = 0;
    struct proc_call c;
    /* it spins in user space: "running" (or, if preempted right then, not
     * in a call: "-1 SP PC"); never a system call */
    for (int i = 0; i < 50; i++)
        running += proc_thread_call(&fd, getpid(), tid, &c) == 0;
    spin_stop = 1;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(running, 50);
    close(fd);
}

static void test_schedstat_counts_runs(void **state)
{
    (void)state;
    int fd = -1;
    uint64_t a[3], b[3];
    pid_t tid = (pid_t)syscall(SYS_gettid);
    assert_int_equal(proc_thread_schedstat(&fd, getpid(), tid, a), 0);
    /* each sleep takes this thread off its CPU and puts it back */
    for (int i = 0; i < 5; i++)
        nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
    assert_int_equal(proc_thread_schedstat(&fd, getpid(), tid, b), 0);
    assert_true(a[0] > 0 && b[0] >= a[0]);
    assert_true(b[2] >= a[2] + 5);
    close(fd);
    int none = -1;
    assert_int_equal(proc_thread_schedstat(&none, getpid(), 0x7ffffff0, a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_thread_and_its_next_call),
        cmocka_unit_test(test_running_thread_is_not_in_a_call),
        cmocka_unit_test(test_schedstat_counts_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
