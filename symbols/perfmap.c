/*
 * perfmap.c - parser and lookup for perf map files (/tmp/perf-PID.map).
 *
 * A JIT writes one line per code region: "START SIZE NAME", START and SIZE
 * in hex (with or without 0x), NAME the rest of the line (it may contain
 * spaces). The file is written by the target, so it is untrusted: lines
 * that do not parse, have SIZE 0, an empty name, or whose region would wrap
 * past 2^64 are skipped.
 * Invariants of a parsed table: sorted by start; for equal starts only the
 * line that came last in the file is kept (a JIT that reuses an address
 * appends the new owner); every name is a NUL-terminated heap string.
 * A process's map followed through a run (sym_perfmap_file, used by the
 * unwinder for JIT function starts and by the symbolizer for names) is
 * named and owned as that process sees itself: its PID in its own
 * namespace, its users, its root; read again only when it changed.
 */
#include "symbols.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How far back a lookup walks past entries that end before addr, looking
 * for an older, longer region that still contains it (regions overlap when
 * a JIT reuses memory). Bounded so a hostile file cannot make it O(n). */
#define PERFMAP_BACKSCAN 64

struct pm_tmp { struct sym_perfmap_entry e; size_t seq; };

static int hexdig(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char **pp, const char *end, uint64_t *v)
{
    const char *p = *pp;
    uint64_t x = 0;
    int n = 0, d;
    if (end - p >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) p += 2;
    while (p < end && (d = hexdig(*p)) >= 0) {
        if (++n > 16) return -1;
        x = (x << 4) | (uint64_t)d;
        p++;
    }
    if (n == 0) return -1;
    *pp = p;
    *v = x;
    return 0;
}

static int skip_blanks(const char **pp, const char *end)
{
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p == *pp) return -1;
    *pp = p;
    return 0;
}

/* 1 = parsed, 0 = bad line, -1 = out of memory. */
static int parse_line(const char *p, const char *end, struct sym_perfmap_entry *e)
{
    while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) end--;
    if (parse_hex(&p, end, &e->start) || skip_blanks(&p, end) ||
        parse_hex(&p, end, &e->size) || skip_blanks(&p, end))
        return 0;
    if (e->size == 0 || e->start + e->size < e->start || p >= end)
        return 0;
    if (memchr(p, '\0', (size_t)(end - p)))
        return 0;
    e->name = strndup(p, (size_t)(end - p));
    return e->name ? 1 : -1;
}

static int cmp_tmp(const void *a, const void *b)
{
    const struct pm_tmp *x = a, *y = b;
    if (x->e.start != y->e.start) return x->e.start < y->e.start ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort tmp[0..n) into pm, keeping the last line for each start. */
static int finish(struct sym_perfmap *pm, struct pm_tmp *tmp, size_t n)
{
    size_t w = 0;
    if (n > 1) qsort(tmp, n, sizeof *tmp, cmp_tmp);
    pm->v = malloc((n ? n : 1) * sizeof *pm->v);
    if (!pm->v) return -1;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && tmp[i + 1].e.start == tmp[i].e.start) {
            free(tmp[i].e.name);         /* superseded by a later line */
            continue;
        }
        pm->v[w++] = tmp[i].e;
    }
    pm->n = w;
    return 0;
}

int sym_perfmap_parse(struct sym_perfmap *pm, const char *text, size_t len)
{
    struct pm_tmp *tmp = NULL;
    size_t n = 0, cap = 0;
    const char *p = text, *end = text + len;
    pm->v = NULL;
    pm->n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        struct sym_perfmap_entry e;
        int rc = parse_line(p, le, &e);
        p = nl ? nl + 1 : end;
        if (rc == 0) continue;
        if (rc < 0) goto nomem;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct pm_tmp *nt = realloc(tmp, ncap * sizeof *nt);
            if (!nt) { free(e.name); goto nomem; }
            tmp = nt;
            cap = ncap;
        }
        tmp[n].e = e;
        tmp[n].seq = n;
        n++;
    }
    if (finish(pm, tmp, n) < 0) goto nomem;
    free(tmp);
    return 0;
nomem:
    for (size_t i = 0; i < n; i++) free(tmp[i].e.name);
    free(tmp);
    pm->v = NULL;
    pm->n = 0;
    errno = ENOMEM;
    return -1;
}

const struct sym_perfmap_entry *sym_perfmap_find(const struct sym_perfmap *pm, uint64_t addr)
{
    size_t lo = 0, hi = pm->n;
    while (lo < hi) {                    /* first entry with start > addr */
        size_t mid = lo + (hi - lo) / 2;
        if (pm->v[mid].start <= addr) lo = mid + 1;
        else hi = mid;
    }
    for (size_t k = 0; lo > 0 && k < PERFMAP_BACKSCAN; k++, lo--) {
        const struct sym_perfmap_entry *e = &pm->v[lo - 1];
        if (addr - e->start < e->size)
            return e;
    }
    return NULL;
}

void sym_perfmap_free(struct sym_perfmap *pm)
{
    for (size_t i = 0; i < pm->n; i++)
        free(pm->v[i].name);
    free(pm->v);
    pm->v = NULL;
    pm->n = 0;
}

/* sym_perfmap_load from fd, open on the file whose stat is got; closes
 * fd. */
static int load_fd(struct sym_perfmap *pm, int fd, const struct stat *got,
                   const struct sym_owners *owners, size_t max, struct stat *st)
{
    if (!sym_owners_allow(owners, got->st_uid) || got->st_size <= 0 ||
        (uint64_t)got->st_size > max) {
        close(fd);
        return -1;
    }
    size_t len = (size_t)got->st_size, n = 0;
    char *text = malloc(len);
    while (text && n < len) {           /* the file may grow: read what was there */
        ssize_t r = read(fd, text + n, len - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!text)
        return -1;
    while (n > 0 && text[n - 1] != '\n')
        n--;
    struct sym_perfmap fresh;
    int rc = sym_perfmap_parse(&fresh, text, n);
    free(text);
    if (rc != 0)
        return -1;
    sym_perfmap_free(pm);
    *pm = fresh;
    *st = *got;
    return 0;
}

int sym_perfmap_load(struct sym_perfmap *pm, const char *root, const char *path,
                     const struct sym_owners *owners, size_t max, struct stat *st)
{
    struct stat got;
    int fd = sym_open_rooted(root, path, &got);
    if (fd < 0)
        return -1;
    return load_fd(pm, fd, &got, owners, max, st);
}

/* ---- the perf map of a process, followed through a run ---------------- */

/* The PID a process sees as its own: the last number of the NStgid: line
 * of /proc/PID/status (the PID itself when absent or unreadable). */
static long ns_pid(pid_t pid)
{
    char path[64], line[256];
    long v = pid;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "re")))
        return v;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "NStgid:", 7) != 0)
            continue;
        char *p = line + 7, *end;
        for (;;) {
            long x = strtol(p, &end, 10);
            if (end == p)
                break;
            if (x > 0)
                v = x;
            p = end;
        }
        break;
    }
    fclose(f);
    return v;
}

int sym_perfmap_file_open(struct sym_perfmap_file *f, pid_t pid, const char *root)
{
    memset(f, 0, sizeof(*f));
    f->root = strdup(root ? root : "");
    if (!f->root || asprintf(&f->path, "/tmp/perf-%ld.map", ns_pid(pid)) < 0) {
        free(f->root);
        f->root = f->path = NULL;
        return -1;
    }
    sym_owners_of(pid, &f->owners);
    return 0;
}

void sym_perfmap_file_refresh(struct sym_perfmap_file *f, size_t max)
{
    struct stat st;
    if (!f->path)
        return;
    int fd = sym_open_rooted(f->root, f->path, &st);
    if (fd < 0)
        return;
    if (f->have && st.st_ino == f->st.st_ino && st.st_dev == f->st.st_dev &&
        st.st_size == f->st.st_size && st.st_mtim.tv_sec == f->st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == f->st.st_mtim.tv_nsec) {
        close(fd);
        return;
    }
    /* read through the open that was just checked: one lookup, and the
     * file read is the one whose stat was compared */
    if (load_fd(&f->pm, fd, &st, &f->owners, max, &f->st) == 0)
        f->have = 1;
}

void sym_perfmap_file_close(struct sym_perfmap_file *f)
{
    sym_perfmap_free(&f->pm);
    free(f->root);
    free(f->path);
    memset(f, 0, sizeof(*f));
}
