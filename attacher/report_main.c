/*
 * report_main.c - vmprof-report: the command line around report*.c.
 *
 *   vmprof-report FILE [--top N] [--tree] [--collapsed] [--flamegraph SVG]
 *                 [--speedscope JSON] [--threshold PCT] [--thread TID]...
 *                 [--lines] [--fold-recursion] [--full-paths] [--all-frames]
 *                 [--mem]
 *
 * Without a view it prints the overview: the summary, the top 10 and the
 * compact tree, to fit one screen. Text views go to stdout; --collapsed
 * alone prints only the stacks (for pipes). Exit codes: 0 done, 1 the log
 * cannot be read, an output cannot be written, or the selection is empty
 * (one line on stderr with the cause and the way out), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"
#include "report_mem.h"
#include "vmprof_reader.h"

#ifndef VMPROF_REPORT_VERSION
#define VMPROF_REPORT_VERSION "dev"
#endif

#define MAX_THREADS 256             /* --thread given this often at most */
#define OVERVIEW_TOP 10
#define OVERVIEW_THRESHOLD 2.0
#define OVERVIEW_TREE_LINES 20

struct args {
    const char *path;
    struct report_opts ro;
    uint64_t tids[MAX_THREADS];
    struct report_text_opts to;
    int want_top, want_tree, want_collapsed, want_mem, threshold_set;
    const char *svg, *json;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmprof-report FILE [views] [options]\n"
        "Shows where a vmprof log (vmprof-attach, vmprof) spent its samples.\n"
        "Without a view: a one-screen overview (summary, top 10, compact tree).\n"
        "Views (any number of them):\n"
        "  --top N             the N functions with most self time\n"
        "  --tree              the whole call tree, one frame per line\n"
        "  --collapsed         collapsed stacks \"a;b;c count\" on stdout, for\n"
        "                      flamegraph.pl, speedscope and friends\n"
        "  --flamegraph FILE   interactive SVG flame graph; open it in a browser\n"
        "  --speedscope FILE   speedscope JSON (load it at www.speedscope.app)\n"
        "  --mem               memory curve and RSS growth by function (logs\n"
        "                      recorded with --mem)\n"
        "Options:\n"
        "  --threshold PCT     cut tree nodes under PCT%% of samples (default 1;\n"
        "                      2 in the overview)\n"
        "  --thread TID        only samples of thread TID (repeat for more)\n"
        "  --lines             function:line granularity (logs recorded with\n"
        "                      vmprof-attach --lines)\n"
        "  --fold-recursion    a function calling itself stays one tree node\n"
        "  --full-paths        show files with their directories\n"
        "  --all-frames        keep unnamed frames of logs without native symbols\n"
        "  -h, --help          this help;  --version  the version\n"
        "FILE - reads stdin; an output FILE - writes stdout.\n"
        "Exit status: 0 done, 1 unreadable log, unwritable output or no sample\n"
        "selected, 2 usage error.\n");
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

static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "vmprof-report: %s, not '%s'\n", what, arg);
    return 2;
}

/* One option; returns -1 to go on, else the exit code. */
static int one_opt(int c, struct args *a, char **argv)
{
    uint64_t v;

    switch (c) {
    case 'n':
        if (parse_u64(optarg, &v) < 0 || v == 0 || v > 1000000)
            return bad("--top wants a count from 1 to 1000000", optarg);
        a->to.top = (unsigned)v;
        a->want_top = 1;
        return -1;
    case 't': a->want_tree = 1; return -1;
    case 'c': a->want_collapsed = 1; return -1;
    case 'M': a->want_mem = 1; return -1;
    case 'F': a->svg = optarg; return -1;
    case 'S': a->json = optarg; return -1;
    case 'p':
        if (parse_pct(optarg, &a->to.threshold_pct) < 0)
            return bad("--threshold wants a percentage from 0 to 100", optarg);
        a->threshold_set = 1;
        return -1;
    case 'T':
        if (parse_u64(optarg, &v) < 0)
            return bad("--thread wants a thread id", optarg);
        if (a->ro.n_tids == MAX_THREADS)
            return bad("--thread: at most 256 of them", optarg);
        a->tids[a->ro.n_tids++] = v;
        return -1;
    case 'l': a->ro.lines = 1; return -1;
    case 'r': a->ro.fold_recursion = 1; return -1;
    case 'P': a->to.full_paths = 1; return -1;
    case 'a': a->ro.all_frames = 1; return -1;
    case 'h': usage(stdout); return 0;
    case 'V': printf("vmprof-report %s\n", VMPROF_REPORT_VERSION); return 0;
    default:
        fprintf(stderr, "vmprof-report: unknown or incomplete option '%s'\n",
                argv[optind - 1]);
        usage(stderr);
        return 2;
    }
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option longopts[] = {
        { "top", required_argument, NULL, 'n' },
        { "tree", no_argument, NULL, 't' },
        { "collapsed", no_argument, NULL, 'c' },
        { "mem", no_argument, NULL, 'M' },
        { "flamegraph", required_argument, NULL, 'F' },
        { "speedscope", required_argument, NULL, 'S' },
        { "threshold", required_argument, NULL, 'p' },
        { "thread", required_argument, NULL, 'T' },
        { "lines", no_argument, NULL, 'l' },
        { "fold-recursion", no_argument, NULL, 'r' },
        { "full-paths", no_argument, NULL, 'P' },
        { "all-frames", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int c, rc;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if ((rc = one_opt(c, a, argv)) >= 0)
            return rc;
    if (argc - optind != 1) {
        fprintf(stderr, "vmprof-report: %s\n", argc == optind
                ? "which log? give one FILE" : "give exactly one FILE");
        usage(stderr);
        return 2;
    }
    a->path = argv[optind];
    a->ro.tids = a->tids;
    return -1;
}

static int overview(const struct args *a)
{
    return !a->want_top && !a->want_tree && !a->want_collapsed && !a->svg &&
           !a->json && !a->want_mem;
}

/* "demo.prof: cpython, 410 samples in 3.17 s, 2 threads, lines" */
static void subtitle(char *b, size_t cap, const struct vmprof_profile *p,
                     const struct report *r, const struct args *a)
{
    const char *base = strrchr(a->path, '/');
    size_t n = 0;

#define ADD(...) do { int k_ = snprintf(b + n, cap - n, __VA_ARGS__); \
        if (k_ > 0) n = (size_t)k_ < cap - n ? n + (size_t)k_ : cap - 1; \
    } while (0)
    ADD("%s: %s, %" PRIu64 " samples", base ? base + 1 : a->path,
        p->interp[0] ? p->interp : "?", report_samples(r));
    if (p->has_start && p->has_end)
        ADD(" in %.2f s",
            ((double)p->end_time.sec - (double)p->start_time.sec) +
            ((double)p->end_time.usec - (double)p->start_time.usec) / 1e6);
    if (a->ro.n_tids == 1)
        ADD(", thread %" PRIu64, a->tids[0]);
    else if (a->ro.n_tids)
        ADD(", %zu threads selected", a->ro.n_tids);
    else if (report_threads(r) > 1)
        ADD(", %zu threads", report_threads(r));
    if (a->ro.lines)
        ADD(", by line");
    if (a->ro.fold_recursion)
        ADD(", recursion folded");
#undef ADD
}

/* An output file. A regular file (or a new one) is written under a
 * temporary name beside it and renamed into place once complete, so a
 * failed write never leaves half a file and never removes anything else;
 * anything else (a pipe, a device, "-") is written directly. */
struct out {
    FILE *f;
    const char *path;
    char tmp[4096];             /* "" when written directly */
};

static int open_out(struct out *o, const char *path)
{
    struct stat st;
    int fd;

    o->path = path;
    o->tmp[0] = '\0';
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
        return 0;
    }
    if ((stat(path, &st) == 0 && !S_ISREG(st.st_mode)) ||
        snprintf(o->tmp, sizeof o->tmp, "%s.XXXXXX", path) >= (int)sizeof o->tmp) {
        o->tmp[0] = '\0';
        if (!(o->f = fopen(path, "w")))
            goto fail;
        return 0;
    }
    if ((fd = mkstemp(o->tmp)) < 0) {
        o->tmp[0] = '\0';
        goto fail;
    }
    {
        mode_t um = umask(0);       /* the mode a new file would get */
        umask(um);
        if (fchmod(fd, 0666 & ~um) < 0 || !(o->f = fdopen(fd, "w"))) {
            close(fd);
            unlink(o->tmp);
            goto fail;
        }
    }
    return 0;
fail:
    fprintf(stderr, "vmprof-report: cannot write %s (%s): check the "
            "directory exists and is writable\n", path, strerror(errno));
    return -1;
}

/* Finishes o after a writer returned rc; 0 or 1 (the exit code). */
static int close_out(struct out *o, int rc, const char *what)
{
    int e = rc < 0 || ferror(o->f) ? (errno ? errno : EIO) : 0;

    if (o->f == stdout) {
        if (fflush(stdout) != 0 && !e)
            e = errno ? errno : EIO;
    } else if (fclose(o->f) != 0 && !e)
        e = errno ? errno : EIO;
    if (o->tmp[0]) {
        if (!e && rename(o->tmp, o->path) != 0)
            e = errno;
        if (e)
            unlink(o->tmp);
    }
    if (e) {
        fprintf(stderr, "vmprof-report: writing %s failed (%s)\n", o->path,
                strerror(e));
        return 1;
    }
    if (o->f != stdout)
        fprintf(stderr, "vmprof-report: wrote %s (%s)\n", o->path, what);
    return 0;
}

static int write_files(const struct args *a, const struct vmprof_profile *p,
                       const struct report *r)
{
    char sub[512];
    struct out o;
    int rc = 0;

    if (a->svg) {
        struct report_svg_opts so = { "Flame graph", sub, 0 };
        subtitle(sub, sizeof sub, p, r, a);
        if (open_out(&o, a->svg) < 0)
            return 1;
        errno = 0;
        rc |= close_out(&o, report_write_flamegraph(o.f, r, &so),
                        "flame graph: open it in a web browser");
    }
    if (a->json) {
        if (open_out(&o, a->json) < 0)
            return 1;
        errno = 0;
        rc |= close_out(&o, report_write_speedscope(o.f, p, r, a->path),
                        "speedscope: load it in speedscope");
    }
    return rc;
}

/* The selection kept nothing: say what there is. */
static int nothing_selected(const struct args *a, const struct report *r)
{
    uint64_t n;

    fprintf(stderr, "vmprof-report: %s: no samples of thread%s", a->path,
            a->ro.n_tids > 1 ? "s" : "");
    for (size_t i = 0; i < a->ro.n_tids; i++)
        fprintf(stderr, "%s%" PRIu64, i ? ", " : " ", a->tids[i]);
    fprintf(stderr, "; the log's threads (samples):");
    for (size_t i = 0; i < report_threads(r) && i < 20; i++) {
        uint64_t tid = report_thread(r, i, &n);
        fprintf(stderr, "%s %" PRIu64 " (%" PRIu64 ")", i ? "," : "", tid, n);
    }
    fprintf(stderr, "%s\n", report_threads(r) > 20 ? ", ..." : "");
    return 1;
}

static int run(struct args *a, const struct vmprof_profile *p)
{
    struct report *r;
    int rc = 0;

    if (a->ro.lines && !report_has_lines(p)) {
        fprintf(stderr, "vmprof-report: %s has no line numbers: record with "
                "vmprof-attach --lines (or vmprof --lines)\n", a->path);
        return 1;
    }
    if (a->want_mem && !report_has_memory(p)) {
        fprintf(stderr, "vmprof-report: %s has no memory: record with "
                "vmprof-attach --mem (or vmprof --mem)\n", a->path);
        return 1;
    }
    if (overview(a))
        a->ro.fold_recursion = 1;   /* the compact tree reads better so */
    if (report_build(&r, p, &a->ro) < 0) {
        fprintf(stderr, "vmprof-report: %s: out of memory building the "
                "report: try --thread to report one thread\n", a->path);
        return 1;
    }
    if (a->ro.n_tids && report_samples(r) == 0) {
        rc = nothing_selected(a, r);
        goto out;
    }
    if (overview(a)) {
        a->to.top = OVERVIEW_TOP;
        if (!a->threshold_set)
            a->to.threshold_pct = OVERVIEW_THRESHOLD;
        a->to.max_lines = OVERVIEW_TREE_LINES;
        report_print_summary(stdout, p, r, a->path);
        report_print_mem_curve(stdout, p, 0);
        if (report_samples(r)) {
            report_print_top(stdout, r, &a->to);
            report_print_compact_tree(stdout, r, &a->to);
        } else
            printf("\nno samples\n");
    } else if (a->want_top || a->want_tree || a->want_mem) {
        report_print_summary(stdout, p, r, a->path);
        if (a->want_top)
            report_print_top(stdout, r, &a->to);
        if (a->want_tree)
            report_print_tree(stdout, r, &a->to);
        if (a->want_mem) {
            report_print_mem_curve(stdout, p, 0);
            if (report_print_mem_functions(stdout, r, &a->to) < 0) {
                fprintf(stderr, "vmprof-report: out of memory\n");
                rc = 1;
            }
        }
    }
    if (a->want_collapsed && report_write_collapsed(stdout, r) < 0)
        rc = 1;
    if (write_files(a, p, r))
        rc = 1;
    if (fflush(stdout) != 0) {
        fprintf(stderr, "vmprof-report: writing stdout failed (%s)\n",
                strerror(errno));
        rc = 1;
    }
out:
    report_free(r);
    return rc;
}

int main(int argc, char **argv)
{
    static struct args a;
    struct vmprof_profile *p;
    char err[256];
    int rc;

    a.to.top = 20;
    a.to.threshold_pct = 1.0;
    if ((rc = parse_args(argc, argv, &a)) >= 0)
        return rc;
    if (vmr_read_file(&p, a.path, err, sizeof err) < 0) {
        fprintf(stderr, "vmprof-report: %s: %s\n", a.path, err);
        return 1;
    }
    rc = run(&a, p);
    vmr_free(p);
    return rc;
}
