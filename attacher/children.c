/*
 * children.c - --children: a follower vmprof-attach per process the target
 * creates; the report pipe that gathers their summary lines.
 *
 * Owns: log names for child processes, starting followers (posix_spawn of
 * this program with --follower=...), the hand-over of a held new process,
 * passing stop signals down, waiting for followers, and the summary. The
 * invariants are listed in children.h. Followers are our children but not
 * our tracees; session waits (waitpid(-1)) may reap one before we do, so
 * a follower's end is watched through its pidfd, never its pid alone (a
 * pid can be reused; a pidfd cannot).
 */
#include "children.h"
#include "proc_task.h"
#include "mono_clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define REPORT_PIPE_BYTES (1 << 20)  /* room for thousands of lines unread mid-run */
#define HANDOFF_READY_MS 2000        /* a follower not ready by then: let go anyway */
#define WAIT_POLL_MS 200
#define REPORT_DRAIN_MS 5000         /* after the last follower: stragglers' lines */
#define LINE_MAX_BYTES 1024          /* < PIPE_BUF: one write, never interleaved */

/* The coarse clock file times are taken from: a file written after this
 * reading never has an older mtime. */
static long long real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int children_open(struct children *c, const struct options *o, const char *outpath,
                  char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->o = o;
    c->report_r = c->report_w = -1;
    c->top = !o->follower.active;
    ssize_t n = readlink("/proc/self/exe", c->exe, sizeof(c->exe) - 1);
    if (n <= 0) {
        snprintf(err, errlen, "cannot find vmprof-attach's own executable for --children: %s",
                 strerror(errno));
        return -1;
    }
    c->exe[n] = '\0';
    snprintf(c->base, sizeof(c->base), "%s", c->top ? outpath : o->follower.base);
    if (o->duration > 0)
        c->deadline_ns = mono_ns() + (uint64_t)(o->duration * 1e9);
    if (!c->top) {
        c->run_start = o->follower.run_start;
        c->report_w = o->follower.report_fd;
        fcntl(c->report_w, F_SETFD, FD_CLOEXEC);
        return 0;
    }
    c->run_start = real_ns();
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "cannot create a pipe for --children: %s", strerror(errno));
        return -1;
    }
    fcntl(p[0], F_SETPIPE_SZ, REPORT_PIPE_BYTES);   /* best effort */
    c->report_r = p[0];
    c->report_w = p[1];
    return 0;
}

void children_log_name(const char *base, long long run_start, pid_t pid, char *out, size_t cap)
{
    size_t bl = strlen(base);
    int prof = bl > 5 && strcmp(base + bl - 5, ".prof") == 0;
    int stem = prof ? (int)(bl - 5) : (int)bl;
    for (int k = 1; k < 1000; k++) {
        char dup[16] = "";
        if (k > 1)
            snprintf(dup, sizeof(dup), "-%d", k);
        snprintf(out, cap, "%.*s.%d%s%s", stem, base, (int)pid, dup, prof ? ".prof" : "");
        struct stat st;
        if (lstat(out, &st) < 0 ||
            (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec < run_start)
            return;
    }
}

static void put_line(int fd, const char *line)
{
    size_t len = strlen(line);
    ssize_t w;
    do {
        w = write(fd, line, len);
    } while (w < 0 && errno == EINTR);
}

/* Copies src into dst with tabs and newlines made spaces (one line,
 * fields split by tabs). */
static void field(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
    for (char *p = dst; *p; p++)
        if (*p == '\t' || *p == '\n' || *p == '\r')
            *p = ' ';
}

static void report_failure(int fd, pid_t target, const char *why)
{
    char line[LINE_MAX_BYTES], w[512];
    field(w, sizeof(w), why);
    snprintf(line, sizeof(line), "%d\t-\t%s\n", (int)target, w);
    put_line(fd, line);
}

void children_report(const struct options *o, pid_t target, long long samples,
                     double seconds, const char *path, const char *cmdline,
                     const char *why)
{
    if (!o->follower.active)
        return;
    /* A process that ended before its first sample (shell helpers, a
     * wrapper's short-lived children) is counted, not given a log. */
    if (samples == 0 || (samples < 0 && proc_thread_ended(target, target))) {
        if (samples == 0)
            unlink(path);
        char line[64];
        snprintf(line, sizeof(line), "%d\t=\n", (int)target);
        put_line(o->follower.report_fd, line);
        return;
    }
    if (samples < 0) {
        report_failure(o->follower.report_fd, target, why);
        return;
    }
    char line[LINE_MAX_BYTES], p[512], cmd[256];
    field(p, sizeof(p), path);
    field(cmd, sizeof(cmd), cmdline);
    snprintf(line, sizeof(line), "%d\t%lld\t%.1f\t%s\t%s\n", (int)target, samples, seconds,
             p, cmd);
    put_line(o->follower.report_fd, line);
}

static struct follower *live_follower_of(struct children *c, pid_t target)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].pidfd >= 0 && c->v[i].target == target)
            return &c->v[i];
    return NULL;
}

/* Waits for the follower's "ready" byte (or its end) on fd. */
static void wait_ready(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    uint64_t deadline = mono_ns() + HANDOFF_READY_MS * 1000000ull;
    for (;;) {
        uint64_t now = mono_ns();
        if (now >= deadline)
            return;
        int r = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (r > 0 || (r < 0 && errno != EINTR))
            return;
    }
}

void children_follow(struct children *c, pid_t pid, int handoff)
{
    const struct options *o = c->o;
    double left = 0;
    if (c->deadline_ns) {
        uint64_t now = mono_ns();
        if (now + 1000000ull >= c->deadline_ns)
            return;                     /* the run is ending */
        left = (double)(c->deadline_ns - now) / 1e9;
    }
    if (live_follower_of(c, pid))
        return;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        struct follower *nv = realloc(c->v, nc * sizeof(*nv));
        if (!nv) {
            report_failure(c->report_w, pid, "out of memory starting its follower");
            c->failed++;
            return;
        }
        c->v = nv;
        c->cap = nc;
    }

    char spid[16], out[PATH_MAX + 32], ival[32], dur[32], fol[PATH_MAX + 96];
    int h[2] = { -1, -1 };
    if (handoff && pipe2(h, O_CLOEXEC) < 0)
        h[0] = h[1] = -1;
    snprintf(spid, sizeof(spid), "%d", (int)pid);
    children_log_name(c->base, c->run_start, pid, out, sizeof(out));
    snprintf(ival, sizeof(ival), "%.9g", o->interval);
    snprintf(dur, sizeof(dur), "%.3f", left);
    snprintf(fol, sizeof(fol), "--follower=%d:%d:%d:%lld:%s", c->report_w, h[1],
             (int)getpid(), c->run_start, c->base);
    const char *mode = o->mode == MODE_WALL ? "wall" : "cpu";
    const char *native = o->native == NATIVE_ALL ? "all" : o->native == NATIVE_NONE ? "none" : "ext";
    char *argv[24];
    int a = 0;
    argv[a++] = c->exe;
    argv[a++] = "-p";       argv[a++] = spid;
    argv[a++] = "-o";       argv[a++] = out;
    argv[a++] = "-i";       argv[a++] = ival;
    argv[a++] = "--mode";   argv[a++] = (char *)mode;
    argv[a++] = "--native"; argv[a++] = (char *)native;
    if (o->lines)
        argv[a++] = "--lines";
    if (o->mem)
        argv[a++] = "--mem";
    if (left > 0) {
        argv[a++] = "-d";
        argv[a++] = dur;
    }
    argv[a++] = "-q";
    argv[a++] = "--children";
    argv[a++] = fol;
    argv[a] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    /* dup2 onto itself clears close-on-exec: these two fds pass, no other */
    posix_spawn_file_actions_adddup2(&fa, c->report_w, c->report_w);
    if (h[1] >= 0)
        posix_spawn_file_actions_adddup2(&fa, h[1], h[1]);
    pid_t f;
    int rc = posix_spawn(&f, c->exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (h[1] >= 0)
        close(h[1]);
    if (rc != 0) {
        char why[PATH_MAX + 128];
        snprintf(why, sizeof(why), "cannot run its follower %s: %s", c->exe, strerror(rc));
        report_failure(c->report_w, pid, why);
        c->failed++;
        if (h[0] >= 0)
            close(h[0]);
        return;
    }
    struct follower *fw = &c->v[c->n++];
    fw->pid = f;
    fw->target = pid;
    fw->pidfd = pidfd_open(f, 0);   /* not reaped yet: only we reap it */
    c->followed++;
    if (h[0] >= 0) {
        wait_ready(h[0]);
        close(h[0]);
    }
}

void children_on_process(void *arg, pid_t pid)
{
    children_follow(arg, pid, 1);
}

void children_scan(struct children *c, pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char cp[384];
        snprintf(cp, sizeof(cp), "/proc/%d/task/%s/children", (int)pid, e->d_name);
        FILE *f = fopen(cp, "re");
        if (!f)
            continue;
        int child;
        while (fscanf(f, "%d", &child) == 1) {
            /* one traced by us is a new process on its way to on_process */
            if (child > 0 && proc_thread_tracer(child, child) != getpid())
                children_follow(c, child, 0);
        }
        fclose(f);
    }
    closedir(d);
}

static size_t live_count(const struct children *c)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        k += c->v[i].pidfd >= 0;
    return k;
}

void children_stop(struct children *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].pidfd >= 0)
            pidfd_send_signal(c->v[i].pidfd, SIGTERM, NULL, 0);
}

/* Follower fw has ended (its pidfd is readable): reap it; one killed
 * before it could report is reported here. */
static void follower_ended(struct children *c, struct follower *fw)
{
    int st = 0;
    pid_t r = waitpid(fw->pid, &st, WNOHANG | __WALL);
    close(fw->pidfd);
    fw->pidfd = -1;
    if (r == fw->pid && WIFSIGNALED(st)) {
        char why[128];
        snprintf(why, sizeof(why), "its follower was killed by signal %d", WTERMSIG(st));
        report_failure(c->report_w, fw->target, why);
        c->failed++;
    }
}

/* Appends what can be read from the report pipe to *buf. 0 at EOF. */
static int drain(struct children *c, char **buf, size_t *len, size_t *cap)
{
    for (;;) {
        if (*cap - *len < 4096) {
            size_t nc = *cap ? *cap * 2 : 16384;
            char *nb = realloc(*buf, nc);
            if (!nb)
                return 1;
            *buf = nb;
            *cap = nc;
        }
        ssize_t r = read(c->report_r, *buf + *len, *cap - *len - 1);
        if (r > 0) {
            *len += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return r == 0 ? 0 : 1;      /* EAGAIN: more later */
    }
}

static int by_pid(const void *a, const void *b)
{
    long x = atol(*(char *const *)a), y = atol(*(char *const *)b);
    return (x > y) - (x < y);
}

void children_print_summary(FILE *out, char *buf, size_t len)
{
    buf[len] = '\0';
    size_t count = 0, n = 0, gone = 0;
    for (char *p = buf; *p; p++)
        count += *p == '\n';
    if (!count)
        return;
    char **lines = calloc(count, sizeof(*lines));
    if (!lines)
        return;
    for (char *line = buf, *nl; n < count && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        char *tab = strchr(line, '\t');
        if (tab && strcmp(tab + 1, "=") == 0)
            gone++;
        else
            lines[n++] = line;
    }
    qsort(lines, n, sizeof(*lines), by_pid);
    fprintf(out, "vmprof-attach: followed %zu child process%s\n", count, count == 1 ? "" : "es");
    for (size_t i = 0; i < n; i++) {
        char *f[5] = { NULL };
        int k = 0;
        for (char *p = lines[i]; k < 5; k++) {
            f[k] = p;
            char *tab = k < 4 ? strchr(p, '\t') : NULL;
            if (!tab)
                break;
            *tab = '\0';
            p = tab + 1;
        }
        if (k >= 2 && strcmp(f[1], "-") == 0)
            fprintf(out, "vmprof-attach: child process %s: not profiled: %s\n", f[0], f[2]);
        else if (k >= 4)
            fprintf(out, "vmprof-attach: child process %s (%s): %s samples in %s s, wrote %s\n",
                    f[0], f[4] && *f[4] ? f[4] : "?", f[1], f[2], f[3]);
    }
    if (gone)
        fprintf(out, "vmprof-attach: %zu more child process%s ended before %s first sample "
                "(no log kept)\n", gone, gone == 1 ? "" : "es", gone == 1 ? "its" : "their");
    free(lines);
}

void children_wait(struct children *c, FILE *out)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    const struct timespec no_wait = { 0, 0 };
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int eof = c->report_r < 0, told = 0;
    uint64_t started = mono_ns(), drain_until = 0;
    if (c->report_r >= 0)
        fcntl(c->report_r, F_SETFL, fcntl(c->report_r, F_GETFL) | O_NONBLOCK);
    for (;;) {
        int sig = sigtimedwait(&stop, NULL, &no_wait);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)
            children_stop(c);
        size_t live = live_count(c);
        if (live == 0 && c->top && c->report_w >= 0) {
            /* ours was the last write end but for the followers' followers */
            close(c->report_w);
            c->report_w = -1;
            drain_until = mono_ns() + REPORT_DRAIN_MS * 1000000ull;
        }
        if (live == 0 && (eof || (drain_until && mono_ns() >= drain_until)))
            break;
        if (out && !told && live && mono_ns() - started > 500000000ull) {
            fprintf(out, "vmprof-attach: waiting for %zu followed process%s to end "
                    "(Ctrl-C stops %s)\n", live, live == 1 ? "" : "es",
                    live == 1 ? "it" : "them");
            told = 1;
        }
        struct pollfd *p = calloc(c->n + 1, sizeof(*p));
        if (!p)
            break;
        nfds_t np = 0;
        if (!eof)
            p[np++] = (struct pollfd){ c->report_r, POLLIN, 0 };
        for (size_t i = 0; i < c->n; i++)
            if (c->v[i].pidfd >= 0)
                p[np++] = (struct pollfd){ c->v[i].pidfd, POLLIN, 0 };
        int r = poll(p, np, WAIT_POLL_MS);
        free(p);
        if (r < 0 && errno != EINTR)
            break;
        if (!eof)
            eof = drain(c, &buf, &len, &cap) == 0;
        for (size_t i = 0; i < c->n; i++) {
            struct pollfd q = { c->v[i].pidfd, POLLIN, 0 };
            if (c->v[i].pidfd >= 0 && poll(&q, 1, 0) > 0)
                follower_ended(c, &c->v[i]);
        }
    }
    if (!eof && c->report_r >= 0)
        drain(c, &buf, &len, &cap);
    if (out && buf)
        children_print_summary(out, buf, len);
    free(buf);
}

void children_close(struct children *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].pidfd >= 0)
            close(c->v[i].pidfd);
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
    if (c->report_r >= 0)
        close(c->report_r);
    if (c->top && c->report_w >= 0)
        close(c->report_w);
    c->report_r = c->report_w = -1;
}
