/*
 * options.c - command-line parsing for vmprof-attach.
 *
 * Numbers are parsed strictly (the whole argument, finite, in range); the
 * first problem found is reported as one line that names the option, the
 * bad value and what would be accepted.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_INTERVAL 0.0001

void options_usage(FILE *out)
{
    fputs(
"usage: vmprof-attach -p PID [options]\n"
"       vmprof-attach [options] -- COMMAND [ARGS...]\n"
"Sample a running process (or COMMAND) from outside with ptrace and write a\n"
"vmprof log. Python frames need the shim (preloaded automatically for COMMAND).\n"
"\n"
"  -p, --pid PID        attach to the running process PID\n"
"  -i, --interval SEC   sampling interval, 0.0001 <= SEC < 1 (default 0.004)\n"
"  -o, --output FILE    log to write (default vmprof-PID.prof)\n"
"  -d, --duration SEC   stop after SEC seconds (default: until the target exits\n"
"                       or SIGINT/SIGTERM)\n"
"      --mode cpu|wall  cpu (default): a thread earns a sample per interval of\n"
"                       CPU time; wall: every thread every tick\n"
"      --native ext|all|none\n"
"                       native frames: ext (default) hides the interpreter's own,\n"
"                       all keeps every frame, none keeps VM frames only\n"
"      --lines          record the current line of every VM frame\n"
"      --mem            record the process's resident set size with every sample\n"
"      --children       also profile the processes it creates (and with -p, has\n"
"                       created): one log each, named OUT.PID.prof\n"
"      --shim PATH      shim library to preload for COMMAND\n"
"      --stats          print sampler statistics as key=value at the end\n"
"  -q, --quiet          no summary at the end\n"
"  -h, --help           this help;  --version  the version\n"
"Exit status: 0 profile written, 1 runtime failure, 2 usage error.\n", out);
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    /* ERANGE is a number all the same (inf or 0): the range checks say
     * what is wrong with it */
    if (end == s || *end != '\0' || isnan(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_pid(const char *s, pid_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v <= 0 || v > INT_MAX)
        return -1;
    *out = (pid_t)v;
    return 0;
}

enum { OPT_STATS = 256, OPT_MODE, OPT_NATIVE, OPT_LINES, OPT_VERSION, OPT_SHIM, OPT_MEM,
       OPT_CHILDREN, OPT_FOLLOWER };

static const struct option long_opts[] = {
    { "pid", required_argument, NULL, 'p' },
    { "interval", required_argument, NULL, 'i' },
    { "output", required_argument, NULL, 'o' },
    { "duration", required_argument, NULL, 'd' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "stats", no_argument, NULL, OPT_STATS },
    { "mode", required_argument, NULL, OPT_MODE },
    { "native", required_argument, NULL, OPT_NATIVE },
    { "lines", no_argument, NULL, OPT_LINES },
    { "mem", no_argument, NULL, OPT_MEM },
    { "version", no_argument, NULL, OPT_VERSION },
    { "shim", required_argument, NULL, OPT_SHIM },
    { "children", no_argument, NULL, OPT_CHILDREN },
    { "follower", required_argument, NULL, OPT_FOLLOWER },
    { NULL, 0, NULL, 0 },
};

/* RFD:HFD:PPID:T0:BASE (internal: written by children.c, never by hand). */
static int parse_follower(const char *arg, struct follower_opts *f)
{
    long long v[4];
    const char *p = arg;
    for (int i = 0; i < 4; i++) {
        char *end;
        errno = 0;
        v[i] = strtoll(p, &end, 10);
        if (errno || end == p || *end != ':')
            return -1;
        p = end + 1;
    }
    if (v[0] < 0 || v[0] > INT_MAX || v[1] < -1 || v[1] > INT_MAX || v[2] <= 0 ||
        v[2] > INT_MAX || !*p)
        return -1;
    f->active = 1;
    f->report_fd = (int)v[0];
    f->handoff_fd = (int)v[1];
    f->parent = (pid_t)v[2];
    f->run_start = v[3];
    f->base = p;
    return 0;
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); return EXIT_USAGE; } while (0)

int options_parse(struct options *o, int argc, char **argv, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->interval = 0.004;
    o->follower.handoff_fd = -1;
    int have_pid = 0;

    optind = 1;
    opterr = 0;
    int c;
    /* '+': stop at the first non-option, so COMMAND's own flags stay its own. */
    while ((c = getopt_long(argc, argv, "+:p:i:o:d:qh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (parse_pid(optarg, &o->pid) < 0)
                FAIL("bad PID '%s': give the numeric id of a running process (see pgrep)", optarg);
            have_pid = 1;
            break;
        case 'i':
            if (parse_seconds(optarg, &o->interval) < 0)
                FAIL("interval '%s' is not a number: give seconds, e.g. -i 0.004", optarg);
            if (o->interval < MIN_INTERVAL || o->interval >= 1.0)
                FAIL("interval '%s' out of range: give seconds from 0.0001 up to (not including) 1, e.g. -i 0.004", optarg);
            break;
        case 'o':
            if (optarg[0] == '\0')
                FAIL("empty output file name: give a path with -o FILE");
            o->output = optarg;
            break;
        case 'd':
            if (parse_seconds(optarg, &o->duration) < 0)
                FAIL("duration '%s' is not a number: give seconds, e.g. -d 30", optarg);
            if (o->duration <= 0)
                FAIL("duration '%s' invalid: give a positive number of seconds, e.g. -d 30", optarg);
            if (o->duration > 366.0 * 86400)
                FAIL("duration '%s' too long: give at most a year (31622400 seconds), or no -d "
                     "to run until the target exits or Ctrl-C", optarg);
            break;
        case 'q': o->quiet = 1; break;
        case 'h': o->help = 1; return 0;
        case OPT_VERSION: o->version = 1; return 0;
        case OPT_STATS: o->stats = 1; break;
        case OPT_LINES: o->lines = 1; break;
        case OPT_MEM: o->mem = 1; break;
        case OPT_SHIM: o->shim_path = optarg; break;
        case OPT_CHILDREN: o->children = 1; break;
        case OPT_FOLLOWER:
            if (parse_follower(optarg, &o->follower) < 0)
                FAIL("bad --follower '%s': it is internal to --children, do not give it", optarg);
            break;
        case OPT_MODE:
            if (strcmp(optarg, "cpu") == 0) o->mode = MODE_CPU;
            else if (strcmp(optarg, "wall") == 0) o->mode = MODE_WALL;
            else FAIL("unknown --mode '%s': use --mode cpu or --mode wall", optarg);
            break;
        case OPT_NATIVE:
            if (strcmp(optarg, "ext") == 0) o->native = NATIVE_EXT;
            else if (strcmp(optarg, "all") == 0) o->native = NATIVE_ALL;
            else if (strcmp(optarg, "none") == 0) o->native = NATIVE_NONE;
            else FAIL("unknown --native '%s': use ext, all or none", optarg);
            break;
        case ':':
            FAIL("option '%s' needs a value: see vmprof-attach --help", argv[optind - 1]);
        default:
            FAIL("unknown option '%s': see vmprof-attach --help", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->command = &argv[optind];
    if (have_pid && o->command)
        FAIL("both -p and a command given: use either -p PID or -- COMMAND, not both");
    if (!have_pid && !o->command)
        FAIL("nothing to profile: give -p PID or -- COMMAND (see vmprof-attach --help)");
    return 0;
}
