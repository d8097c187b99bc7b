/*
 * options.h - vmprof-attach's command line, parsed into one struct.
 *
 * Parsing is pure (no I/O besides the error text) so it is unit-tested;
 * every rejection produces one line naming the cause and the way out.
 */
#ifndef VMPROF_OPTIONS_H
#define VMPROF_OPTIONS_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

enum exit_code { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

enum sample_mode { MODE_CPU = 0, MODE_WALL = 1 };
enum native_mode { NATIVE_EXT = 0, NATIVE_ALL = 1, NATIVE_NONE = 2 };

struct options {
    pid_t pid;                  /* -p; 0 when spawning */
    char **command;             /* after --; NULL with -p */
    double interval;            /* seconds, [0.0001, 1) */
    double duration;            /* seconds, 0 = until stopped */
    const char *output;         /* NULL = vmprof-PID.prof */
    enum sample_mode mode;
    enum native_mode native;
    int lines;                  /* --lines */
    int mem;                    /* --mem: resident set size with every sample */
    int stats;                  /* --stats */
    int quiet;                  /* -q */
    int help, version;
    const char *shim_path;      /* --shim PATH: shim preloaded in spawn mode */
    int children;               /* --children: follow the processes it creates */
    /* --follower=RFD:HFD:PPID:T0:BASE, set only by a vmprof-attach that
     * runs this one to follow a child process (children.h): */
    struct follower_opts {
        int active;
        int report_fd;          /* one summary line goes here at the end */
        int handoff_fd;         /* -1, or: write a byte, then take over the
                                 * target from our parent (SESSION_HANDOFF) */
        pid_t parent;           /* the vmprof-attach that started us */
        long long run_start;    /* the whole run's start, CLOCK_REALTIME_COARSE ns */
        const char *base;       /* the run's main log: child logs are named from it */
    } follower;
};

/* Parse argv. Returns 0 on success, or EXIT_USAGE with a one-line message
 * (no trailing newline) in err. */
int options_parse(struct options *o, int argc, char **argv, char *err, size_t errlen);
void options_usage(FILE *out);

#endif
