/*
 * report_main.c - vmprof-report: the command line around report.c.
 *
 *   vmprof-report FILE [--top N] [--tree] [--threshold PCT] [--thread TID]
 *                 [--all-frames]
 *
 * Without --top or --tree it prints both. Exit codes: 0 report printed,
 * 1 the file cannot be read as a vmprof log (one line on stderr with the
 * cause and the way out), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "vmprof_reader.h"

struct args {
    const char *path;
    struct report_opts ro;
    uint64_t top;
    double threshold;
    int want_top, want_tree;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmprof-report FILE [--top N] [--tree] [--threshold PCT]\n"
        "                     [--thread TID] [--all-frames]\n"
        "  --top N          the N functions with most self time (default 20)\n"
        "  --tree           the call tree from the outermost frame\n"
        "  --threshold PCT  cut tree nodes below PCT%% of samples (default 1)\n"
        "  --thread TID     only samples of thread TID\n"
        "  --all-frames     keep unnamed frames of logs without native symbols\n"
        "Without --top or --tree both are shown. FILE - reads stdin.\n");
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;

    errno = 0;
    if (!*s || *s == '-')
        return -1;
    *v = strtoull(s, &end, 0);
    return errno || *end ? -1 : 0;
}

static int parse_pct(const char *s, double *v)
{
    char *end;

    errno = 0;
    *v = strtod(s, &end);
    return errno || *end || end == s || !(*v >= 0.0 && *v <= 100.0) ? -1 : 0;
}

/* Fills a; returns -1 to go on, else the exit code (usage or --help). */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option longopts[] = {
        { "top", required_argument, NULL, 'n' },
        { "tree", no_argument, NULL, 't' },
        { "threshold", required_argument, NULL, 'p' },
        { "thread", required_argument, NULL, 'T' },
        { "all-frames", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_u64(optarg, &a->top) < 0 || a->top == 0 ||
                a->top > 1000000) {
                fprintf(stderr, "vmprof-report: --top wants a count from 1 "
                        "to 1000000, not '%s'\n", optarg);
                return 2;
            }
            a->want_top = 1;
            break;
        case 't':
            a->want_tree = 1;
            break;
        case 'p':
            if (parse_pct(optarg, &a->threshold) < 0) {
                fprintf(stderr, "vmprof-report: --threshold wants a percentage "
                        "from 0 to 100, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'T':
            if (parse_u64(optarg, &a->ro.tid) < 0) {
                fprintf(stderr, "vmprof-report: --thread wants a thread id, "
                        "not '%s'\n", optarg);
                return 2;
            }
            a->ro.filter_tid = 1;
            break;
        case 'a':
            a->ro.all_frames = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "vmprof-report: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "vmprof-report: %s\n", argc == optind
                ? "which log? give one FILE" : "give exactly one FILE");
        usage(stderr);
        return 2;
    }
    a->path = argv[optind];
    if (!a->want_top && !a->want_tree)
        a->want_top = a->want_tree = 1;
    return -1;
}

int main(int argc, char **argv)
{
    struct args a = { .top = 20, .threshold = 1.0 };
    struct vmprof_profile *p;
    struct report *r;
    char err[256];
    int rc = parse_args(argc, argv, &a);

    if (rc >= 0)
        return rc;
    if (vmr_read_file(&p, a.path, err, sizeof err) < 0) {
        fprintf(stderr, "vmprof-report: %s: %s\n", a.path, err);
        return 1;
    }
    if (report_build(&r, p, &a.ro) < 0) {
        fprintf(stderr, "vmprof-report: %s: out of memory building the "
                "report: try --thread to report one thread\n", a.path);
        vmr_free(p);
        return 1;
    }
    report_print_summary(stdout, p, r, a.path);
    if (report_samples(r) == 0)
        printf("\nno samples%s\n", a.ro.filter_tid ? " for this thread" : "");
    else {
        if (a.want_top)
            report_print_top(stdout, r, (unsigned)a.top);
        if (a.want_tree)
            report_print_tree(stdout, r, a.threshold);
    }
    report_free(r);
    vmr_free(p);
    return fflush(stdout) == 0 ? 0 : 1;
}
