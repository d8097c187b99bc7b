/*
 * tracer_hold.c - integration helper: become PID's tracer (PTRACE_SEIZE,
 * no stop) and hold it until killed, so tests can check how vmprof-attach
 * treats an already-traced target. Prints "tracing PID".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    pid_t pid = (pid_t)atoi(argv[1]);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0) {
        perror("PTRACE_SEIZE");
        return 1;
    }
    printf("tracing %d\n", (int)pid);
    fflush(stdout);
    for (;;)
        pause();
}
