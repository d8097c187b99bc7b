/*
 * report.c - top functions and the call tree of a parsed vmprof log
 * (what and why: report.h).
 *
 * Data: every id maps once (idmap) to a function, a display name interned
 * in fns[] (strmap); the tree is nodes[] with the root at 0, children
 * found through childmap keyed by (parent, function). All three maps are
 * open addressing on power-of-two tables kept at most half full, so a
 * build is O(frames). Node and function indexes are uint32_t: a log has at
 * most one node per frame, and more than 4G frames is refused.
 *
 * Invariants: node.count >= sum of its children's counts + node.self;
 * fns[i].total <= samples; printing walks the tree with an explicit stack
 * (recursion in the log can be 65536 deep).
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"      /* vmprof_escape_name */

#define NONE UINT32_MAX
#define NAME_CAP 512            /* display names are cut past this */

struct fn {
    char *name;
    uint64_t self, total;
    size_t stamp;               /* last sample counted in total, + 1 */
};

struct node {
    uint32_t fn;                /* NONE for the root */
    uint32_t first_child, next_sibling;
    uint64_t count, self;
};

/* uint64 key -> uint32 value, open addressing. */
struct map {
    uint64_t *keys;
    uint32_t *vals;             /* NONE marks an empty slot */
    size_t cap, n;
};

struct report {
    struct fn *fns;
    size_t n_fns, cap_fns;
    struct node *nodes;
    size_t n_nodes, cap_nodes;
    struct map idmap, childmap;
    uint32_t *strmap;           /* fn index, NONE empty */
    size_t strmap_cap;
    uint64_t samples, hidden;
    size_t threads;
};

/* ---- maps ---------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static size_t map_slot(const struct map *m, uint64_t key)
{
    size_t i = (size_t)mix(key) & (m->cap - 1);
    while (m->vals[i] != NONE && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static uint32_t map_get(const struct map *m, uint64_t key)
{
    return m->cap ? m->vals[map_slot(m, key)] : NONE;
}

static int map_put(struct map *m, uint64_t key, uint32_t val)
{
    if (2 * (m->n + 1) > m->cap) {
        struct map g = { NULL, NULL, m->cap ? 2 * m->cap : 256, 0 };
        if (g.cap > SIZE_MAX / 16 ||
            !(g.keys = malloc(g.cap * sizeof *g.keys)) ||
            !(g.vals = malloc(g.cap * sizeof *g.vals))) {
            free(g.keys);
            return -1;
        }
        memset(g.vals, 0xff, g.cap * sizeof *g.vals);
        for (size_t i = 0; i < m->cap; i++)
            if (m->vals[i] != NONE) {
                size_t j = map_slot(&g, m->keys[i]);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
                g.n++;
            }
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t i = map_slot(m, key);
    if (m->vals[i] == NONE)
        m->n++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

static void map_free(struct map *m)
{
    free(m->keys);
    free(m->vals);
}

/* ---- names ----------------------------------------------------------------- */

/* Finds ":<digits>:" in s, leftmost; returns its offset or -1. */
static long line_field(const char *s)
{
    for (const char *p = strchr(s, ':'); p; p = strchr(p + 1, ':')) {
        const char *q = p + 1;
        while (*q >= '0' && *q <= '9')
            q++;
        if (q > p + 1 && *q == ':')
            return (long)(p - s);
    }
    return -1;
}

size_t report_display_name(char *dst, size_t cap, const char *raw,
                           uint64_t id)
{
    char name[NAME_CAP], file[NAME_CAP];
    const char *rest, *lf;
    long at;
    unsigned long line;
    size_t nl;
    int n;

    if (cap == 0)
        return 0;
    if (!raw) {
        n = snprintf(dst, cap, "0x%" PRIx64, id);
        return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
    }
    rest = strchr(raw, ':');
    if (!rest)                          /* no language: show it whole */
        return vmprof_escape_name(dst, cap, raw);
    rest++;
    at = line_field(rest);
    if (at < 0)                         /* "lang:name" (JIT code) or odd */
        return vmprof_escape_name(dst, cap, rest);
    nl = (size_t)at < sizeof file ? (size_t)at : sizeof file - 1;
    memcpy(file, rest, nl);             /* file is scratch space here */
    file[nl] = '\0';
    vmprof_escape_name(name, sizeof name, file);
    lf = rest + at + 1;
    line = strtoul(lf, NULL, 10);
    vmprof_escape_name(file, sizeof file, strchr(lf, ':') + 1);
    if (file[0] == '\0' || strcmp(file, "-") == 0)
        n = line ? snprintf(dst, cap, "%s (line %lu)", name, line)
                 : snprintf(dst, cap, "%s", name);
    else if (line == 0)
        n = snprintf(dst, cap, "%s (%s)", name, file);
    else
        n = snprintf(dst, cap, "%s (%s:%lu)", name, file, line);
    return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

/* The function for a display name, created if new. */
static uint32_t intern(struct report *r, const char *disp)
{
    size_t i;

    if (2 * (r->n_fns + 1) > r->strmap_cap) {
        size_t cap = r->strmap_cap ? 2 * r->strmap_cap : 256;
        uint32_t *t = malloc(cap * sizeof *t);
        if (!t)
            return NONE;
        memset(t, 0xff, cap * sizeof *t);
        for (size_t k = 0; k < r->n_fns; k++) {
            i = (size_t)str_hash(r->fns[k].name) & (cap - 1);
            while (t[i] != NONE)
                i = (i + 1) & (cap - 1);
            t[i] = (uint32_t)k;
        }
        free(r->strmap);
        r->strmap = t;
        r->strmap_cap = cap;
    }
    i = (size_t)str_hash(disp) & (r->strmap_cap - 1);
    for (; r->strmap[i] != NONE; i = (i + 1) & (r->strmap_cap - 1))
        if (strcmp(r->fns[r->strmap[i]].name, disp) == 0)
            return r->strmap[i];
    if (r->n_fns >= NONE - 1)
        return NONE;
    if (r->n_fns == r->cap_fns) {
        size_t cap = r->cap_fns ? 2 * r->cap_fns : 256;
        struct fn *f = realloc(r->fns, cap * sizeof *f);
        if (!f)
            return NONE;
        r->fns = f;
        r->cap_fns = cap;
    }
    if (!(r->fns[r->n_fns].name = strdup(disp)))
        return NONE;
    r->fns[r->n_fns].self = r->fns[r->n_fns].total = 0;
    r->fns[r->n_fns].stamp = 0;
    r->strmap[i] = (uint32_t)r->n_fns;
    return (uint32_t)r->n_fns++;
}

/* ---- building ---------------------------------------------------------------- */

static uint32_t fn_of_id(struct report *r, const struct vmprof_profile *p,
                         uint64_t id)
{
    char disp[NAME_CAP];
    uint32_t f = map_get(&r->idmap, id);

    if (f != NONE)
        return f;
    report_display_name(disp, sizeof disp, vmr_frame_name(p, id, NULL), id);
    f = intern(r, disp);
    if (f == NONE || map_put(&r->idmap, id, f) < 0)
        return NONE;
    return f;
}

static uint32_t child(struct report *r, uint32_t parent, uint32_t f)
{
    uint64_t key = ((uint64_t)parent << 32) | f;
    uint32_t c = map_get(&r->childmap, key);
    struct node *n;

    if (c != NONE)
        return c;
    if (r->n_nodes >= NONE - 1)
        return NONE;
    if (r->n_nodes == r->cap_nodes) {
        size_t cap = r->cap_nodes ? 2 * r->cap_nodes : 1024;
        struct node *q = realloc(r->nodes, cap * sizeof *q);
        if (!q)
            return NONE;
        r->nodes = q;
        r->cap_nodes = cap;
    }
    c = (uint32_t)r->n_nodes++;
    n = &r->nodes[c];
    n->fn = f;
    n->count = n->self = 0;
    n->first_child = NONE;
    n->next_sibling = r->nodes[parent].first_child;
    r->nodes[parent].first_child = c;
    if (map_put(&r->childmap, key, c) < 0)
        return NONE;
    return c;
}

static int hidden(const struct vmprof_profile *p, const struct report_opts *o,
                  size_t k)
{
    if (p->frame_kinds && p->frame_kinds[k] == VMR_KIND_ASSEMBLER)
        return 1;
    return !o->all_frames && !(p->mode & VMPROF_MODE_NATIVE) &&
           !vmr_frame_name(p, p->frame_ids[k], NULL);
}

/* Adds sample si (outermost frame first) to the tree and the functions. */
static int add_sample(struct report *r, const struct vmprof_profile *p,
                      const struct report_opts *o, size_t si)
{
    const struct vmr_sample *s = &p->samples[si];
    uint32_t node = 0, last = NONE;

    r->samples++;
    r->nodes[0].count++;
    for (size_t i = s->depth; i-- > 0;) {
        size_t k = s->first + i;
        uint32_t f;

        if (hidden(p, o, k)) {
            r->hidden++;
            continue;
        }
        if ((f = fn_of_id(r, p, p->frame_ids[k])) == NONE ||
            (node = child(r, node, f)) == NONE)
            return -1;
        r->nodes[node].count++;
        if (r->fns[f].stamp != si + 1) {
            r->fns[f].stamp = si + 1;
            r->fns[f].total++;
        }
        last = f;
    }
    r->nodes[node].self++;
    if (last != NONE)
        r->fns[last].self++;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t count_threads(const struct vmprof_profile *p)
{
    uint64_t *t;
    size_t n = 0;

    if (p->n_samples == 0 || !(t = malloc(p->n_samples * sizeof *t)))
        return 0;
    for (size_t i = 0; i < p->n_samples; i++)
        t[i] = p->samples[i].tid;
    qsort(t, p->n_samples, sizeof *t, cmp_u64);
    for (size_t i = 0; i < p->n_samples; i++)
        n += i == 0 || t[i] != t[i - 1];
    free(t);
    return n;
}

int report_build(struct report **out, const struct vmprof_profile *p,
                 const struct report_opts *o)
{
    static const struct report_opts defaults;
    struct report *r;

    if (!out || !p)
        return -1;
    *out = NULL;
    if (!o)
        o = &defaults;
    if (p->n_frames >= NONE - 1 || !(r = calloc(1, sizeof *r)))
        return -1;
    r->threads = count_threads(p);
    if (!(r->nodes = malloc(1024 * sizeof *r->nodes)))
        goto err;
    r->cap_nodes = 1024;
    r->n_nodes = 1;
    r->nodes[0] = (struct node){ NONE, NONE, NONE, 0, 0 };
    for (size_t i = 0; i < p->n_samples; i++) {
        if (o->filter_tid && p->samples[i].tid != o->tid)
            continue;
        if (add_sample(r, p, o, i) < 0)
            goto err;
    }
    *out = r;
    return 0;
err:
    report_free(r);
    errno = ENOMEM;
    return -1;
}

void report_free(struct report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_fns; i++)
        free(r->fns[i].name);
    free(r->fns);
    free(r->nodes);
    free(r->strmap);
    map_free(&r->idmap);
    map_free(&r->childmap);
    free(r);
}

uint64_t report_samples(const struct report *r) { return r->samples; }
uint64_t report_hidden_frames(const struct report *r) { return r->hidden; }
size_t report_threads(const struct report *r) { return r->threads; }

static uint32_t find_fn(const struct report *r, const char *disp)
{
    if (!r->strmap_cap)
        return NONE;
    for (size_t i = (size_t)str_hash(disp) & (r->strmap_cap - 1);
         r->strmap[i] != NONE; i = (i + 1) & (r->strmap_cap - 1))
        if (strcmp(r->fns[r->strmap[i]].name, disp) == 0)
            return r->strmap[i];
    return NONE;
}

int report_function(const struct report *r, const char *display,
                    uint64_t *self, uint64_t *total)
{
    uint32_t f = find_fn(r, display);

    if (f == NONE)
        return -1;
    if (self)
        *self = r->fns[f].self;
    if (total)
        *total = r->fns[f].total;
    return 0;
}

uint64_t report_tree_count(const struct report *r, const char *const *path,
                           size_t n)
{
    uint32_t node = 0;

    for (size_t i = 0; i < n; i++) {
        uint32_t f = find_fn(r, path[i]);
        if (f == NONE ||
            (node = map_get(&r->childmap, ((uint64_t)node << 32) | f)) == NONE)
            return 0;
    }
    return r->nodes[node].count;
}

/* ---- printing ------------------------------------------------------------------ */

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void print_meta_line(FILE *f, const struct vmprof_profile *p)
{
    char k[128], v[256];

    if (!p->n_meta)
        return;
    fprintf(f, "meta:");
    for (size_t i = 0; i < p->n_meta; i++) {
        vmprof_escape_name(k, sizeof k, p->meta[i].key);
        vmprof_escape_name(v, sizeof v, p->meta[i].value);
        fprintf(f, " %s=%s", k, v);
    }
    fputc('\n', f);
}

void report_print_summary(FILE *f, const struct vmprof_profile *p,
                          const struct report *r, const char *path)
{
    static const char *const modes[] = { "memory", "lines", "native",
                                         "rpython", "real-time" };
    char interp[300];
    int any = 0;

    vmprof_escape_name(interp, sizeof interp, p->interp[0] ? p->interp : "?");
    fprintf(f, "file: %s\n", path ? path : "-");
    fprintf(f, "log: %s, version %d%s, %u-byte words, period %" PRIu64 " us, mode",
            interp, p->version, p->legacy_name ? " (legacy header)" : "",
            p->word_size, p->period_usec);
    for (unsigned i = 0; i < 5; i++)
        if (p->mode & (1u << i))
            fprintf(f, "%s%s", any++ ? "+" : " ", modes[i]);
    fprintf(f, "%s\n", any ? "" : " cpu");
    fprintf(f, "samples: %" PRIu64 " of %zu, threads: %zu", r->samples,
            p->n_samples, r->threads);
    if (p->has_start && p->has_end) {
        /* in double: the fields are whatever the file says */
        double d = ((double)p->end_time.sec - (double)p->start_time.sec) +
                   ((double)p->end_time.usec - (double)p->start_time.usec) / 1e6;
        fprintf(f, ", duration: %.2f s", d);
    }
    fprintf(f, ", %s\n", vmr_end_str(p->stop));
    if (p->stop != VMR_END_TRAILER)
        fprintf(f, "note: %s; read up to byte %zu\n", p->end_detail,
                p->end_offset);
    if (p->n_samples && !p->n_names)
        fprintf(f, "note: the log names no frame (names come last: was its "
                "writer stopped early?)\n");
    if (r->hidden)
        fprintf(f, "note: %" PRIu64 " frame(s) hidden (assembler frames, or "
                "addresses the log does not name: --all-frames shows them)\n",
                r->hidden);
    print_meta_line(f, p);
}

static int cmp_top(const void *a, const void *b, void *ctx)
{
    const struct report *r = ctx;
    const struct fn *x = &r->fns[*(const uint32_t *)a];
    const struct fn *y = &r->fns[*(const uint32_t *)b];
    if (x->self != y->self)
        return x->self < y->self ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return strcmp(x->name, y->name);
}

void report_print_top(FILE *f, const struct report *r, unsigned n)
{
    uint32_t *idx;

    fprintf(f, "\n  self%%  total%%  function\n");
    if (!r->n_fns || !(idx = malloc(r->n_fns * sizeof *idx)))
        return;
    for (size_t i = 0; i < r->n_fns; i++)
        idx[i] = (uint32_t)i;
    qsort_r(idx, r->n_fns, sizeof *idx, cmp_top, (void *)r);
    for (size_t i = 0; i < r->n_fns && i < n; i++) {
        const struct fn *fn = &r->fns[idx[i]];
        fprintf(f, "%6.1f%% %6.1f%%  %s\n", pct(fn->self, r->samples),
                pct(fn->total, r->samples), fn->name);
    }
    free(idx);
}

static int cmp_node(const void *a, const void *b, void *ctx)
{
    const struct report *r = ctx;
    const struct node *x = &r->nodes[*(const uint32_t *)a];
    const struct node *y = &r->nodes[*(const uint32_t *)b];
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(r->fns[x->fn].name, r->fns[y->fn].name);
}

/* Pushes the children of node worth showing, biggest on top. */
static size_t push_children(const struct report *r, uint32_t node,
                            uint32_t depth, double min, uint32_t *stack,
                            uint32_t *depths, size_t sp, uint32_t *tmp)
{
    size_t n = 0;

    for (uint32_t c = r->nodes[node].first_child; c != NONE;
         c = r->nodes[c].next_sibling)
        if ((double)r->nodes[c].count >= min)
            tmp[n++] = c;
    qsort_r(tmp, n, sizeof *tmp, cmp_node, (void *)r);
    while (n--) {
        stack[sp] = tmp[n];
        depths[sp++] = depth;
    }
    return sp;
}

void report_print_tree(FILE *f, const struct report *r, double threshold_pct)
{
    /* Each node is pushed at most once, so n_nodes bounds every array. */
    uint32_t *stack = malloc(r->n_nodes * sizeof *stack);
    uint32_t *depths = malloc(r->n_nodes * sizeof *depths);
    uint32_t *tmp = malloc(r->n_nodes * sizeof *tmp);
    double min = threshold_pct * (double)r->samples / 100.0;
    size_t sp;

    fprintf(f, "\n  total%%   self%%  call tree (cut below %.1f%%)\n",
            threshold_pct);
    if (!stack || !depths || !tmp || !r->samples)
        goto out;
    if (min < 1)
        min = 1;
    sp = push_children(r, 0, 0, min, stack, depths, 0, tmp);
    while (sp) {
        uint32_t node = stack[--sp], d = depths[sp];
        const struct node *nd = &r->nodes[node];
        unsigned indent = d < 40 ? d : 40;

        fprintf(f, "%7.1f%% %6.1f%%  %*s%s%s\n", pct(nd->count, r->samples),
                pct(nd->self, r->samples), (int)(2 * indent), "",
                d > 40 ? "[deep] " : "", r->fns[nd->fn].name);
        sp = push_children(r, node, d + 1, min, stack, depths, sp, tmp);
    }
out:
    free(stack);
    free(depths);
    free(tmp);
}
