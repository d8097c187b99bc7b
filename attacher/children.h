/*
 * children.h - --children: the other processes of the service, one
 * follower each.
 *
 * Every process the target creates is profiled by a vmprof-attach of its
 * own (a "follower": this program run with -p CHILD --follower=...), so
 * each process has its own session, decoder, unwinder and log, and a
 * follower's failure stays its own. Followers follow their own target's
 * children the same way: the tree of followers mirrors the process tree.
 *
 * Invariants:
 *  - a new process is handed over without running untraced for more than
 *    a moment: its first stop is held (ptrace_session calls on_process)
 *    until the follower is ready, then let go; the follower seizes it at
 *    once (SESSION_HANDOFF);
 *  - a follower stops when its parent vmprof-attach stops it (SIGTERM),
 *    when that parent dies (parent-death signal), at the run's deadline
 *    (-d, passed down as what is left of it) or when its target exits;
 *    every vmprof-attach waits for its followers before it exits;
 *  - every follower writes exactly one line to the run's report pipe
 *    (pid, samples, seconds, log, command; pid and why not profiled; or
 *    pid and "=": ended before its first sample, no log kept),
 *    under PIPE_BUF so lines never interleave; the one at the top prints
 *    them as the summary;
 *  - logs are named from the main log OUT: OUT.PID.prof when OUT ends in
 *    .prof (OUT without it), else OUT.PID; a name already written in this
 *    run (a reused pid) gets -2, -3, ...
 */
#ifndef VMPROF_CHILDREN_H
#define VMPROF_CHILDREN_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "options.h"

struct follower {
    pid_t pid;                  /* the follower vmprof-attach */
    int pidfd;                  /* -1 once it has exited and been reaped */
    pid_t target;               /* the process it follows */
};

struct children {
    const struct options *o;
    int top;                    /* the vmprof-attach the user ran */
    char exe[PATH_MAX];         /* this program, run for each follower */
    char base[PATH_MAX];        /* the run's main log */
    long long run_start;        /* CLOCK_REALTIME_COARSE ns: logs newer are this run's */
    uint64_t deadline_ns;       /* CLOCK_MONOTONIC end of the run (-d), 0 none */
    int report_r, report_w;     /* the report pipe (report_r: top only) */
    struct follower *v;
    size_t n, cap;
    unsigned long followed, failed;
};

/* Set up for the run whose main log is outpath (top) or as a follower
 * (o->follower). Error text: one line. */
int children_open(struct children *c, const struct options *o, const char *outpath,
                  char *err, size_t errlen);
/* Start a follower for process pid. handoff: pid is held in its first
 * stop by our session; returns once the follower is ready to take it
 * (the caller then lets go of it). */
void children_follow(struct children *c, pid_t pid, int handoff);
/* ptrace_session's on_process callback (arg: struct children *). */
void children_on_process(void *arg, pid_t pid);
/* Follow the processes pid has already created: its children not traced
 * by us (those are on their way to on_process); each follower follows
 * their descendants. */
void children_scan(struct children *c, pid_t pid);
/* Ask every follower to stop now (the run was stopped by a signal). */
void children_stop(struct children *c);
/* Wait for every follower to end, passing on stop signals we get; the top
 * one prints one line per followed process to out (NULL: none). */
void children_wait(struct children *c, FILE *out);
/* A follower's own line, written once at its end. samples < 0: not
 * profiled, because of why; samples == 0, or the process ended before it
 * could be attached: only counted (a log without samples is removed). */
void children_report(const struct options *o, pid_t target, long long samples,
                     double seconds, const char *path, const char *cmdline,
                     const char *why);
void children_close(struct children *c);

/* The log of process pid in the run whose main log is base: BASE.PID.prof
 * (or BASE.PID), then -2, -3... when this run already wrote that name (a
 * reused pid): a file modified since run_start (CLOCK_REALTIME_COARSE ns). One
 * from an earlier run is older, and is replaced. */
void children_log_name(const char *base, long long run_start, pid_t pid, char *out, size_t cap);
/* Prints the report lines in buf[0..len) (buf has room for a NUL at len)
 * as the summary: one line per process with a log or a failure, by pid;
 * those that ended before their first sample only counted. */
void children_print_summary(FILE *out, char *buf, size_t len);

#endif
