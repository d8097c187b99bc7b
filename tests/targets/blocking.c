/*
 * blocking.c - integration target for wall mode: one thread that waits in
 * turn in four blocking calls, PHASE_MS each, for SECONDS seconds (argv:
 * SECONDS): wait_poll (poll), wait_sleep (nanosleep), wait_cond
 * (pthread_cond_timedwait: a futex) and wait_epoll (epoll_wait). Each
 * wakes up only at the end of its phase and uses a few microseconds of
 * CPU going to the next, so a wall-mode profile must show a quarter of
 * the time in each; a profiler that judges "has it moved?" by CPU time
 * shows stale stacks. With "busy" (argv: SECONDS busy) it runs an event
 * loop instead: spin_work 3 ms of CPU, then wait_epoll 3 ms, over and
 * over, for --mode cpu. With "phases": spin_work 1 s, then for the rest
 * bursts of 100 us (spin_burst) each followed by 5 ms in wait_poll: a
 * thread hardly ever caught running, whose CPU in the second phase must
 * not be charged to the first.
 *
 * epoll_wait is one of the calls that fail with EINTR when a tracer stops
 * the thread (signal(7), "Interruption of system calls ... by stop
 * signals"); wait_epoll retries until its phase ends, as robust code does,
 * and counts those failures. Prints "ready PID" when the thread runs,
 * "done eintr=N" at the end. The main thread waits in pthread_join.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define PHASE_MS 80

static double seconds = 3;
static int busy, phases;
static int eintr;
static volatile unsigned long sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int ms_left(double end)
{
    double left = (end - now()) * 1e3;
    return left > 0 ? (int)left + 1 : 0;
}

__attribute__((noinline)) static void wait_poll(int fd, int ms)
{
    double end = now() + ms / 1e3;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (ms_left(end) > 0)
        poll(&p, 1, ms_left(end));
}

__attribute__((noinline)) static void wait_sleep(void)
{
    struct timespec ts = { 0, PHASE_MS * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

__attribute__((noinline)) static void wait_cond(void)
{
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_nsec += PHASE_MS * 1000000L;
    end.tv_sec += end.tv_nsec / 1000000000L;
    end.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&m);
    while (pthread_cond_timedwait(&c, &m, &end) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&m);
}

__attribute__((noinline)) static void spin_work(double secs)
{
    double end = now() + secs;
    while (now() < end)
        for (int i = 0; i < 1000; i++)
            sink += (unsigned long)i;
}

__attribute__((noinline)) static void spin_burst(double secs)
{
    spin_work(secs);
}

__attribute__((noinline)) static void wait_epoll(int ep, double secs)
{
    double end = now() + secs;
    struct epoll_event ev;
    while (ms_left(end) > 0)
        if (epoll_wait(ep, &ev, 1, ms_left(end)) < 0 && errno == EINTR)
            eintr++;
}

static void *waiter(void *arg)
{
    (void)arg;
    int fds[2];
    int ep = epoll_create1(0);
    if (pipe(fds) < 0 || ep < 0)
        return NULL;
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev);
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    double end = now() + seconds;
    if (phases) {
        spin_work(1.0);
        while (now() < end) {
            spin_burst(0.0001);
            wait_poll(fds[0], 5);
        }
    }
    while (busy && now() < end) {
        spin_work(0.003);
        wait_epoll(ep, 0.003);
    }
    while (now() < end) {
        wait_poll(fds[0], PHASE_MS);
        wait_sleep();
        wait_cond();
        wait_epoll(ep, PHASE_MS / 1e3);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        seconds = atof(argv[1]);
    busy = argc > 2 && strcmp(argv[2], "busy") == 0;
    phases = argc > 2 && strcmp(argv[2], "phases") == 0;
    pthread_t th;
    if (pthread_create(&th, NULL, waiter, NULL) != 0)
        return 1;
    pthread_join(th, NULL);
    printf("done eintr=%d\n", eintr);
    return 0;
}
