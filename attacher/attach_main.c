/*
 * attach_main.c - vmprof-attach: the command line around a sampling run.
 *
 * Order matters for "never harm the target": everything that can fail
 * for a reason the user can fix (options, output file) is checked before
 * the target is touched; once attached, every path out goes through
 * session_detach(). Exit codes: 0 profile written, 1 runtime failure,
 * 2 usage error (options.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "options.h"
#include "profile.h"
#include "report.h"
#include "vmprof_reader.h"
#include "ptrace_session.h"
#include "sampler.h"
#include "symbols.h"
#include "vm_cpython.h"
#include "vm_select.h"

#ifndef VMPROF_ATTACH_VERSION
#define VMPROF_ATTACH_VERSION "dev"
#endif
#ifndef SHIM_INSTALL_PATH
#define SHIM_INSTALL_PATH ""
#endif

static int follower_mode;        /* --follower: errors go in the report line */
static char last_err[1024];

static void die_line(const char *msg)
{
    snprintf(last_err, sizeof(last_err), "%s", msg);
    if (!follower_mode)
        fprintf(stderr, "vmprof-attach: %s\n", msg);
}

/* The shim to preload for a spawned command: --shim, $VMPROF_SHIM, next to
 * this executable in a build tree, then the installed path. */
static int find_shim(const struct options *o, char *out, size_t cap)
{
    const char *env = getenv("VMPROF_SHIM");
    if (o->shim_path || (env && *env)) {
        snprintf(out, cap, "%s", o->shim_path ? o->shim_path : env);
        return access(out, R_OK);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int w = snprintf(out, cap, "%s/../target-shim/libvmprof-shim.so", exe);
            if (w > 0 && (size_t)w < cap && access(out, R_OK) == 0)
                return 0;
        }
    }
    snprintf(out, cap, "%s", SHIM_INSTALL_PATH);
    return out[0] ? access(out, R_OK) : -1;
}

static int open_output(const char *path, char *err, size_t errlen)
{
    /* O_NOFOLLOW: often run as root, often into /tmp, where another user
     * could plant a link to a file of ours. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == ELOOP)
        snprintf(err, errlen, "output '%s' is a symbolic link: give the real path with -o",
                 path);
    else if (fd < 0)
        snprintf(err, errlen, "cannot write output '%s': %s; choose a writable path with -o",
                 path, strerror(errno));
    return fd;
}

static void read_cmdline(pid_t pid, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (ssize_t i = 0; i < n - 1; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
}

/* The end-of-run summary's top functions, read back from the log just
 * written (the same code as vmprof-report, so both always agree). */
static void print_top(const char *path, unsigned n)
{
    struct vmprof_profile *p = NULL;
    struct report *r = NULL;
    char err[256];
    struct report_opts ro = { 0 };
    if (vmr_read_file(&p, path, err, sizeof(err)) == 0 && report_build(&r, p, &ro) == 0 &&
        report_samples(r) > 0) {
        struct report_text_opts to = { .top = n };
        fputc('\n', stderr);
        report_print_top(stderr, r, &to);
        fputc('\n', stderr);
    }
    if (r)
        report_free(r);
    if (p)
        vmr_free(p);
}

static void print_stats(const struct sampler *s)
{
    const struct unwind_stats *us = unwinder_stats(s->uw);
    struct vm_cpython_stats cs;     /* zero for another VM */
    vm_cpython_get_stats(s->dec, &cs);
    fprintf(stderr,
            "vmprof-attach: stats: ticks=%llu samples=%llu missed_ticks=%llu stops=%llu "
            "stop_us_p50=%.0f stop_us_p99=%.0f stop_us_max=%.0f unwind_failures=%llu "
            "frames=%llu live_reads=%llu repeated=%llu threads_seen=%llu "
            "threads_vanished=%llu signals_passed=%llu vm_capture_failures=%llu "
            "maps_reloads=%llu deferred=%llu stack_bytes_avg=%llu fp_steps=%llu "
            "quiet_sweeps=%llu wait_us_p50=%.0f wait_us_p99=%.0f copy_us_p50=%.0f "
            "copy_us_p99=%.0f vm_us_p50=%.0f vm_us_p99=%.0f resume_us_p50=%.0f "
            "resume_us_p99=%.0f vm_reads_avg=%.2f vm_pages_avg=%.1f read_in_stop=%llu "
            "guess_misses=%llu maps_kept=%llu calls_failed=%llu stops_spared=%llu "
            "blocked_credit=%llu exit_credit=%llu exit_unseen=%llu vm_truncated=%llu\n",
            (unsigned long long)s->ticks, (unsigned long long)s->samples,
            (unsigned long long)s->missed_ticks, (unsigned long long)s->stop_all.n,
            sampler_stop_percentile(s, 0.5), sampler_stop_percentile(s, 0.99),
            (double)s->stop_all.max_ns / 1000.0, (unsigned long long)us->failures,
            (unsigned long long)us->frames, (unsigned long long)us->live_reads,
            (unsigned long long)s->repeated, (unsigned long long)s->sess->threads_seen,
            (unsigned long long)s->sess->threads_vanished,
            (unsigned long long)s->sess->signals_passed,
            (unsigned long long)(s->dec ? s->dec->stat_capture_fail : 0),
            (unsigned long long)s->maps_reloads, (unsigned long long)s->deferred,
            (unsigned long long)(s->stop_all.n ? s->stack_bytes / s->stop_all.n : 0),
            (unsigned long long)us->fp_steps, (unsigned long long)s->sweeps,
            latency_pct(&s->stop_wait, 0.5), latency_pct(&s->stop_wait, 0.99),
            latency_pct(&s->stop_copy, 0.5), latency_pct(&s->stop_copy, 0.99),
            latency_pct(&s->stop_vm, 0.5), latency_pct(&s->stop_vm, 0.99),
            latency_pct(&s->stop_resume, 0.5), latency_pct(&s->stop_resume, 0.99),
            cs.captures ? (double)cs.reads / (double)cs.captures : 0.0,
            cs.captures ? (double)cs.pages / (double)cs.captures : 0.0,
            (unsigned long long)s->read_in_stop, (unsigned long long)s->guess_misses,
            (unsigned long long)s->maps_kept, (unsigned long long)s->calls_failed,
            (unsigned long long)s->stops_spared, (unsigned long long)s->blocked_credit,
            (unsigned long long)s->exit_credit, (unsigned long long)s->exit_unseen,
            (unsigned long long)(s->dec ? s->dec->stat_truncated : 0));
}

/* Stacks deeper than MAX_VM_FRAMES VM frames (recursion past Python's
 * default limit of 1000) keep their innermost frames; the outermost,
 * where the recursion was entered, are not in the log. Said once. The
 * count is of captures (a stop, or wall mode's check without one), not
 * of samples written. */
static void warn_truncated(const struct sampler *s, int quiet)
{
    uint64_t n = s->dec ? s->dec->stat_truncated : 0;
    if (quiet || n == 0)
        return;
    fprintf(stderr, "vmprof-attach: warning: %llu stack reads found more than %d %s frames "
            "(deep recursion); each keeps its innermost %d, so their outermost frames (where "
            "the recursion began) are missing from the profile\n",
            (unsigned long long)n, MAX_VM_FRAMES, s->dec->interp_name, MAX_VM_FRAMES);
}

/* Ticks that came a whole interval late or more: the ticks before took
 * longer than the interval (many threads, a high rate), or vmprof-attach
 * waited for a CPU, often the one a target thread was running on (a
 * scheduler that packs tasks together). Either way the moments the target
 * ran are sampled less, and a wall-mode profile over-weights waiting.
 * Said when it is 5% or more. */
#define LATE_TICKS_WARN 0.05
static void warn_late_ticks(const struct sampler *s, int quiet)
{
    uint64_t due = s->ticks + s->missed_ticks;
    if (quiet || due < 100 || (double)s->missed_ticks < LATE_TICKS_WARN * (double)due)
        return;
    fprintf(stderr, "vmprof-attach: warning: %.0f%% of the ticks came late (a tick took "
            "longer than the interval, or vmprof-attach waited for a CPU, maybe the "
            "target's), so the profile under-weights the moments the target ran; use a "
            "longer interval (-i) or a real-time policy (chrt -f 1 vmprof-attach ...)\n",
            100.0 * (double)s->missed_ticks / (double)due);
}

/* Files the target names are opened under its root with openat2, which
 * keeps its symbolic links inside that root (symbols: sym_open_rooted).
 * Without openat2 (before Linux 5.6, or refused by a seccomp filter) an
 * absolute link there is followed from our root: said when the target's
 * root is not ours (a container or chroot), where it matters. */
static void warn_unconfined_root(int root_fd, int quiet)
{
    struct stat theirs, ours;
    if (quiet || root_fd < 0 || sym_rooted_confined() || fstat(root_fd, &theirs) != 0 ||
        stat("/", &ours) != 0 || (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino))
        return;
    fprintf(stderr, "vmprof-attach: warning: this kernel cannot keep lookups inside the "
            "target's root (openat2 is missing or refused), so a symbolic link there is "
            "followed from this machine's root when objects are read; profile only "
            "containers you trust, or use Linux 5.6 or later without a filter on openat2\n");
}

struct find_ctx { int notice_given; int quiet; };

static struct vm_decoder *find_vm(struct sampler *s, void *arg)
{
    struct find_ctx *fc = arg;
    char note[512] = "";
    struct vm_decoder *d = vm_select_find(s->sess->pid, &s->mem, sampler_vm_name, s,
                                          s->o->lines, note, sizeof(note));
    if (!d && note[0] && !fc->notice_given && !fc->quiet &&
        (!s->sess->spawned || s->ticks > 1000)) {
        fprintf(stderr, "vmprof-attach: %s\n", note);
        fc->notice_given = 1;
    }
    return d;
}

/* What one run produced, for the summary a follower reports. */
struct run_result {
    char outpath[PATH_MAX];
    char cmdline[1024];
    long long samples;          /* -1: no log */
    double elapsed;
};

/* Attach (or spawn), sample until the end, write the log and the summary.
 * Returns the exit code. */
static int profile(const struct options *o, struct run_result *res)
{
    char err[1024];
    char *outpath = res->outpath;
    const size_t outcap = sizeof(res->outpath);
    int out_fd = -1;
    if (o->pid) {
        snprintf(outpath, outcap, "%s", o->output ? o->output : "");
        if (!o->output)
            snprintf(outpath, outcap, "vmprof-%d.prof", (int)o->pid);
        if (kill(o->pid, 0) < 0 && errno == ESRCH) {
            snprintf(err, sizeof(err), "no such process %d: check the PID (e.g. pgrep -f NAME)", (int)o->pid);
            die_line(err);
            return EXIT_RUNTIME;
        }
        if ((out_fd = open_output(outpath, err, sizeof(err))) < 0) {
            die_line(err);
            return EXIT_RUNTIME;
        }
    } else if (o->output) {
        snprintf(outpath, outcap, "%s", o->output);
        if ((out_fd = open_output(outpath, err, sizeof(err))) < 0) {
            die_line(err);
            return EXIT_RUNTIME;
        }
    } else if (access(".", W_OK) < 0) {
        die_line("cannot write output in the current directory: choose a writable path with -o");
        return EXIT_RUNTIME;
    }

    struct session sess;
    unsigned sflags = o->children ? SESSION_FOLLOW_CHILDREN : 0;
    if (o->pid) {
        if (o->follower.handoff_fd >= 0) {
            /* ready: our parent lets go of the new process now */
            sflags |= SESSION_HANDOFF;
            if (write(o->follower.handoff_fd, "r", 1) < 0) { /* parent gone: it lets go anyway */ }
            close(o->follower.handoff_fd);
        }
        if (session_attach(&sess, o->pid, sflags, err, sizeof(err)) < 0) {
            die_line(err);
            close(out_fd);
            unlink(outpath);
            return EXIT_RUNTIME;
        }
    } else {
        char shim[PATH_MAX], preload[PATH_MAX + 64];
        char *env_add[2] = { NULL, NULL };
        if (find_shim(o, shim, sizeof(shim)) == 0) {
            const char *old = getenv("LD_PRELOAD");
            snprintf(preload, sizeof(preload), "LD_PRELOAD=%s%s%s", shim,
                     old && *old ? " " : "", old && *old ? old : "");
            env_add[0] = preload;
        } else if (!o->quiet) {
            fprintf(stderr, "vmprof-attach: shim library not found (give --shim PATH or set "
                    "VMPROF_SHIM): profiling native frames only\n");
        }
        if (session_spawn(&sess, o->command, env_add, sflags, err, sizeof(err)) < 0) {
            die_line(err);
            if (out_fd >= 0) {
                close(out_fd);
                unlink(outpath);
            }
            return EXIT_RUNTIME;
        }
        if (out_fd < 0) {
            snprintf(outpath, outcap, "vmprof-%d.prof", (int)sess.pid);
            if ((out_fd = open_output(outpath, err, sizeof(err))) < 0) {
                die_line(err);
                session_detach(&sess);
                session_free(&sess);
                return EXIT_RUNTIME;
            }
        }
    }

    /* One fd per sampled thread (schedstat): raise our own limit, only now
     * that a spawned command has its own, unchanged one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* The target's root, held open so objects stay reachable for symbol
     * resolution after the target has exited (and inside containers). */
    char root[64];
    snprintf(root, sizeof(root), "/proc/%d/root", (int)sess.pid);
    int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd >= 0)
        snprintf(root, sizeof(root), "/proc/self/fd/%d", root_fd);
    warn_unconfined_root(root_fd, o->quiet);

    char *cmdline = res->cmdline;
    read_cmdline(sess.pid, cmdline, sizeof(res->cmdline));

    /* --children: followers for the processes it makes from now on (held
     * at birth by the session, handed over) and, with -p, has made. */
    struct children ch;
    int have_children = 0;
    if (o->children) {
        if (children_open(&ch, o, outpath, err, sizeof(err)) < 0) {
            die_line(err);
            session_detach(&sess);
            session_free(&sess);
            return EXIT_RUNTIME;
        }
        have_children = 1;
        sess.on_process = children_on_process;
        sess.on_process_arg = &ch;
        if (o->pid)
            children_scan(&ch, sess.pid);
    }

    struct sampler *s = calloc(1, sizeof(*s));
    struct find_ctx fc = { 0, o->quiet };
    int rc = EXIT_OK;
    if (!s || sampler_init(s, o, &sess, root, out_fd) < 0) {
        die_line(s ? s->err : "out of memory");
        session_detach(&sess);
        session_free(&sess);
        if (have_children) {
            children_stop(&ch);
            children_wait(&ch, NULL);
            children_close(&ch);
        }
        return EXIT_RUNTIME;
    }
    /* Symbols are resolved at the end, when the target may be gone: open
     * the symbolizer now, while the target's namespace PID (its perf
     * map's name) and users (who may own that map) can still be read, and
     * read the perf map once now (a miss at address 0 looks there). */
    struct symbolizer *sym = sym_open(sess.pid, &s->maps, root, NULL);
    if (sym) {
        struct sym_result unused;
        sym_resolve(sym, 0, 0, &unused);
    }
    s->sym = sym;
    s->find_vm = find_vm;
    s->find_vm_arg = &fc;
    s->cmdline = cmdline;
    s->status_line = !o->quiet && isatty(STDERR_FILENO);

    enum stop_reason why = sampler_run(s);
    session_detach(&sess);
    if (have_children && why != STOP_TARGET_EXITED && why != STOP_DURATION)
        children_stop(&ch);    /* a signal or an error: the whole run ends */
    if (sess.execs) {
        /* the summary names the program it ran last (if it still runs) */
        char now[sizeof(res->cmdline)];
        read_cmdline(sess.pid, now, sizeof(now));
        if (now[0])
            memcpy(cmdline, now, sizeof(now));
    }

    if (why == STOP_ERROR) {
        die_line(s->err);
        rc = EXIT_RUNTIME;
    }
    if (why != STOP_ERROR && sampler_open_profile(s) < 0) {
        die_line(s->err);
        rc = EXIT_RUNTIME;
    }
    if (s->prof) {
        if (sym && sym_update_maps(sym, &s->maps) < 0) {
            sym_close(sym);
            sym = NULL;
        }
        uint64_t nsamples = profile_samples(s->prof);
        res->samples = (long long)nsamples;
        if (profile_finish(s->prof, sym, &s->end_tv, err, sizeof(err)) < 0) {
            die_line(err);
            rc = EXIT_RUNTIME;
        }
        s->prof = NULL;
        if (!o->quiet && rc == EXIT_OK)
            print_top(outpath, 10);
        if (rc == EXIT_OK) {
            warn_late_ticks(s, o->quiet);
            warn_truncated(s, o->quiet);
        }
        if (!o->quiet && rc == EXIT_OK)
            fprintf(stderr, "vmprof-attach: %llu samples in %.1f s from %llu threads of "
                    "process %d (%s)%s\nvmprof-attach: wrote %s; view it with: vmprof-report %s\n",
                    (unsigned long long)nsamples, s->elapsed,
                    (unsigned long long)sess.threads_seen, (int)sess.pid,
                    cmdline[0] ? cmdline : "?",
                    why == STOP_TARGET_EXITED ? ", until it exited" : "",
                    outpath, outpath);
    }
    if (o->stats)
        print_stats(s);
    close(out_fd);

    if (sess.spawned && sess.exited && rc == EXIT_OK) {
        int st = sess.exit_status;
        if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
            fprintf(stderr, "vmprof-attach: the command exited with status %d\n", WEXITSTATUS(st));
            rc = EXIT_RUNTIME;
        } else if (WIFSIGNALED(st)) {
            fprintf(stderr, "vmprof-attach: the command was killed by signal %d\n", WTERMSIG(st));
            rc = EXIT_RUNTIME;
        }
    }
    res->elapsed = s->elapsed;
    if (sym)
        sym_close(sym);
    sampler_free(s);
    free(s);
    session_free(&sess);
    if (root_fd >= 0)
        close(root_fd);
    if (have_children) {
        children_wait(&ch, o->quiet ? NULL : stderr);
        children_close(&ch);
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    char err[1024];
    if (options_parse(&o, argc, argv, err, sizeof(err)) != 0) {
        die_line(err);
        return EXIT_USAGE;
    }
    if (o.help) {
        options_usage(stdout);
        return EXIT_OK;
    }
    if (o.version) {
        printf("vmprof-attach %s\n", VMPROF_ATTACH_VERSION);
        return EXIT_OK;
    }

    /* Signals are taken synchronously by the sampler (sigtimedwait). */
    sigset_t set;
    sampler_signals(&set);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (o.follower.active) {
        /* A follower of --children: ends with the vmprof-attach that
         * started it (SIGTERM is taken like the user's), and reports in one
         * line on the run's report pipe instead of on stderr. */
        follower_mode = 1;
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != o.follower.parent)
            raise(SIGTERM);     /* it died already: blocked, pending, stops the run */
    }
    struct run_result res = { .samples = -1 };
    int rc = profile(&o, &res);
    if (o.follower.active)
        children_report(&o, o.pid, rc == EXIT_OK ? res.samples : -1, res.elapsed,
                        res.outpath, res.cmdline, last_err[0] ? last_err : "no log written");
    return rc;
}
