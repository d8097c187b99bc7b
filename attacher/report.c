/*
 * report.c - builds the report model of a parsed vmprof log: functions,
 * the call tree, the kept samples and the threads (what and why: report.h;
 * the data and its invariants: report_model.h). The views live in
 * report_text.c, report_collapsed.c, report_flamegraph.c and
 * report_speedscope.c.
 *
 * Every id is parsed once (idmap -> a "proto": name, file, line) and maps
 * to a function, a display name interned in fns[] (strmap); with `lines`
 * the function is looked up per (proto, line) in linemap instead. The tree
 * is nodes[] with the root at 0, children found through childmap keyed by
 * (parent, function). The maps are open addressing on power-of-two tables
 * kept at most half full, so a build is O(frames). Node and function
 * indexes are uint32_t: a log has at most one node per frame, and more
 * than 4G frames is refused.
 */
#include "report_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"      /* vmprof_escape_name */

#define NONE REPORT_NONE
#define NAME_CAP REPORT_NAME_CAP

/* Parts of a name (parse_raw's output). */
struct parts {
    char name[NAME_CAP], file[NAME_CAP];
    unsigned long line;
    int native;
};

/* What one id says, parsed once. */
struct proto {
    char *name;                 /* name, then file, in one block */
    const char *file;
    unsigned long line;
    int native;
    uint32_t fn;                /* its function without lines, NONE yet */
};

/* Build state around the report. */
struct bld {
    struct report *r;
    struct proto *protos;
    size_t n_protos, cap_protos;
    struct rmap linemap;        /* (proto << 32 | line) -> fn */
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

static size_t map_slot(const struct rmap *m, uint64_t key)
{
    size_t i = (size_t)mix(key) & (m->cap - 1);
    while (m->vals[i] != NONE && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static uint32_t map_get(const struct rmap *m, uint64_t key)
{
    return m->cap ? m->vals[map_slot(m, key)] : NONE;
}

static int map_put(struct rmap *m, uint64_t key, uint32_t val)
{
    if (2 * (m->n + 1) > m->cap) {
        struct rmap g = { NULL, NULL, m->cap ? 2 * m->cap : 256, 0 };
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

static void map_free(struct rmap *m)
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

/* Splits raw ("lang:name:line:file") into escaped parts. */
static void parse_raw(struct parts *pr, const char *raw, uint64_t id)
{
    const char *rest, *lf;
    char tmp[NAME_CAP];
    long at;
    size_t nl;

    pr->file[0] = '\0';
    pr->line = 0;
    pr->native = raw && strncmp(raw, "n:", 2) == 0;
    if (!raw) {
        snprintf(pr->name, sizeof pr->name, "0x%" PRIx64, id);
        return;
    }
    if (!(rest = strchr(raw, ':'))) {   /* no language: show it whole */
        vmprof_escape_name(pr->name, sizeof pr->name, raw);
        return;
    }
    rest++;
    if ((at = line_field(rest)) < 0) {  /* "lang:name" (JIT code) or odd */
        vmprof_escape_name(pr->name, sizeof pr->name, rest);
        return;
    }
    nl = (size_t)at < sizeof tmp ? (size_t)at : sizeof tmp - 1;
    memcpy(tmp, rest, nl);
    tmp[nl] = '\0';
    vmprof_escape_name(pr->name, sizeof pr->name, tmp);
    lf = rest + at + 1;
    pr->line = strtoul(lf, NULL, 10);
    vmprof_escape_name(pr->file, sizeof pr->file, strchr(lf, ':') + 1);
    if (strcmp(pr->file, "-") == 0)
        pr->file[0] = '\0';
}

static size_t clamp_len(int n, size_t cap)
{
    return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

static size_t format_display(char *dst, size_t cap, const char *name,
                             const char *file, unsigned long line)
{
    int n;

    if (file[0] == '\0')
        n = line ? snprintf(dst, cap, "%s (line %lu)", name, line)
                 : snprintf(dst, cap, "%s", name);
    else if (line == 0)
        n = snprintf(dst, cap, "%s (%s)", name, file);
    else
        n = snprintf(dst, cap, "%s (%s:%lu)", name, file, line);
    return clamp_len(n, cap);
}

size_t report_display_name(char *dst, size_t cap, const char *raw,
                           uint64_t id)
{
    struct parts pr;

    if (cap == 0)
        return 0;
    parse_raw(&pr, raw, id);
    return format_display(dst, cap, pr.name, pr.file, pr.line);
}

static const char *base_name(const char *file)
{
    const char *s = strrchr(file, '/');
    return s && s[1] ? s + 1 : file;
}

/* ---- functions -------------------------------------------------------------- */

static uint32_t find_fn(const struct report *r, const char *disp)
{
    if (!r->strmap_cap)
        return NONE;
    for (size_t i = (size_t)str_hash(disp) & (r->strmap_cap - 1);
         r->strmap[i] != NONE; i = (i + 1) & (r->strmap_cap - 1))
        if (strcmp(r->fns[r->strmap[i]].disp, disp) == 0)
            return r->strmap[i];
    return NONE;
}

static int grow_strmap(struct report *r)
{
    size_t cap = r->strmap_cap ? 2 * r->strmap_cap : 256;
    uint32_t *t = malloc(cap * sizeof *t);

    if (!t)
        return -1;
    memset(t, 0xff, cap * sizeof *t);
    for (size_t k = 0; k < r->n_fns; k++) {
        size_t i = (size_t)str_hash(r->fns[k].disp) & (cap - 1);
        while (t[i] != NONE)
            i = (i + 1) & (cap - 1);
        t[i] = (uint32_t)k;
    }
    free(r->strmap);
    r->strmap = t;
    r->strmap_cap = cap;
    return 0;
}

/* A new function; its strings live in one block: disp, short, name, file. */
static int new_fn(struct rfn *f, const char *disp, const char *name,
                  const char *file, unsigned long line, int native)
{
    char shortd[3 * NAME_CAP];
    size_t ld = strlen(disp), ls, ln = strlen(name), lf = strlen(file);
    char *m;

    ls = format_display(shortd, sizeof shortd, name, base_name(file), line);
    if (!(m = malloc(ld + ls + ln + lf + 4)))
        return -1;
    *f = (struct rfn){ .line = line, .native = native, .mem = m };
    f->disp = memcpy(m, disp, ld + 1);
    f->shortd = memcpy(m += ld + 1, shortd, ls + 1);
    f->name = memcpy(m += ls + 1, name, ln + 1);
    f->file = memcpy(m + ln + 1, file, lf + 1);
    return 0;
}

/* The function for these parts, created if new. */
static uint32_t intern(struct report *r, const char *name, const char *file,
                       unsigned long line, int native)
{
    char disp[3 * NAME_CAP];
    uint32_t f;
    size_t i;

    format_display(disp, sizeof disp, name, file, line);
    if ((f = find_fn(r, disp)) != NONE)
        return f;
    if (2 * (r->n_fns + 1) > r->strmap_cap && grow_strmap(r) < 0)
        return NONE;
    if (r->n_fns >= NONE - 1)
        return NONE;
    if (r->n_fns == r->cap_fns) {
        size_t cap = r->cap_fns ? 2 * r->cap_fns : 256;
        struct rfn *q = realloc(r->fns, cap * sizeof *q);
        if (!q)
            return NONE;
        r->fns = q;
        r->cap_fns = cap;
    }
    if (new_fn(&r->fns[r->n_fns], disp, name, file, line, native) < 0)
        return NONE;
    i = (size_t)str_hash(disp) & (r->strmap_cap - 1);
    while (r->strmap[i] != NONE)
        i = (i + 1) & (r->strmap_cap - 1);
    r->strmap[i] = (uint32_t)r->n_fns;
    return (uint32_t)r->n_fns++;
}

static uint32_t proto_of_id(struct bld *b, uint64_t id, int kind_native)
{
    struct report *r = b->r;
    uint32_t k = map_get(&r->idmap, id);
    const char *raw;
    struct parts pa;
    struct proto *pr;
    size_t nl, fl;

    if (k != NONE)
        return k;
    raw = vmr_frame_name(r->p, id, NULL);
    if (b->n_protos >= NONE - 1)
        return NONE;
    if (b->n_protos == b->cap_protos) {
        size_t cap = b->cap_protos ? 2 * b->cap_protos : 64;
        struct proto *q = realloc(b->protos, cap * sizeof *q);
        if (!q)
            return NONE;
        b->protos = q;
        b->cap_protos = cap;
    }
    parse_raw(&pa, raw, id);
    nl = strlen(pa.name);
    fl = strlen(pa.file);
    pr = &b->protos[b->n_protos];
    if (!(pr->name = malloc(nl + fl + 2)))
        return NONE;
    memcpy(pr->name, pa.name, nl + 1);
    pr->file = memcpy(pr->name + nl + 1, pa.file, fl + 1);
    pr->line = pa.line;
    /* An unnamed odd id of a native log is a native address. */
    pr->native = pa.native || kind_native ||
                 (!raw && (id & 1) && (r->p->mode & VMPROF_MODE_NATIVE));
    pr->fn = NONE;
    k = (uint32_t)b->n_protos++;
    return map_put(&r->idmap, id, k) < 0 ? NONE : k;
}

/* Frame k of the log as a function. */
static uint32_t fn_of_frame(struct bld *b, size_t k)
{
    const struct vmprof_profile *p = b->r->p;
    int kn = p->frame_kinds && p->frame_kinds[k] == VMR_KIND_NATIVE;
    uint32_t pi = proto_of_id(b, p->frame_ids[k], kn), f;
    struct proto *pr;
    int64_t line;
    uint64_t key;

    if (pi == NONE)
        return NONE;
    pr = &b->protos[pi];
    line = b->r->o.lines && p->frame_lines ? p->frame_lines[k] : 0;
    if (line <= 0 || pr->native) {
        if (pr->fn == NONE)
            pr->fn = intern(b->r, pr->name, pr->file, pr->line, pr->native);
        return pr->fn;
    }
    if (line > UINT32_MAX)
        line = UINT32_MAX;
    key = ((uint64_t)pi << 32) | (uint64_t)line;
    if ((f = map_get(&b->linemap, key)) != NONE)
        return f;
    f = intern(b->r, pr->name, pr->file, (unsigned long)line, 0);
    if (f == NONE || map_put(&b->linemap, key, f) < 0)
        return NONE;
    return f;
}

/* Marks short names that two functions share: those show in full. */
static int cmp_short(const void *a, const void *b, void *ctx)
{
    const struct rfn *fns = ctx;
    return strcmp(fns[*(const uint32_t *)a].shortd,
                  fns[*(const uint32_t *)b].shortd);
}

static int disambiguate(struct report *r)
{
    uint32_t *idx;
    size_t i, j;

    if (!r->n_fns)
        return 0;
    if (!(idx = malloc(r->n_fns * sizeof *idx)))
        return -1;
    for (i = 0; i < r->n_fns; i++)
        idx[i] = (uint32_t)i;
    qsort_r(idx, r->n_fns, sizeof *idx, cmp_short, r->fns);
    for (i = 0; i < r->n_fns; i = j) {
        for (j = i + 1; j < r->n_fns &&
             strcmp(r->fns[idx[i]].shortd, r->fns[idx[j]].shortd) == 0; j++)
            ;
        if (j - i > 1)
            for (size_t k = i; k < j; k++)
                r->fns[idx[k]].shortd = r->fns[idx[k]].disp;
    }
    free(idx);
    return 0;
}

/* ---- the tree ---------------------------------------------------------------- */

static uint32_t child(struct report *r, uint32_t parent, uint32_t f)
{
    uint64_t key = ((uint64_t)parent << 32) | f;
    uint32_t c = map_get(&r->childmap, key);
    struct rnode *n;

    if (c != NONE)
        return c;
    if (r->n_nodes >= NONE - 1)
        return NONE;
    if (r->n_nodes == r->cap_nodes) {
        size_t cap = r->cap_nodes ? 2 * r->cap_nodes : 1024;
        struct rnode *q = realloc(r->nodes, cap * sizeof *q);
        if (!q)
            return NONE;
        r->nodes = q;
        r->cap_nodes = cap;
    }
    c = (uint32_t)r->n_nodes++;
    n = &r->nodes[c];
    *n = (struct rnode){ .fn = f, .parent = parent, .first_child = NONE,
                         .next_sibling = r->nodes[parent].first_child,
                         .depth = r->nodes[parent].depth + 1 };
    r->nodes[parent].first_child = c;
    if (n->depth > r->max_depth)
        r->max_depth = n->depth;
    if (map_put(&r->childmap, key, c) < 0)
        return NONE;
    return c;
}

static int hidden(const struct report *r, size_t k)
{
    const struct vmprof_profile *p = r->p;

    if (p->frame_kinds && p->frame_kinds[k] == VMR_KIND_ASSEMBLER)
        return 1;
    return !r->o.all_frames && !(p->mode & VMPROF_MODE_NATIVE) &&
           !vmr_frame_name(p, p->frame_ids[k], NULL);
}

/* Adds sample si (outermost frame first) to the tree and the functions. */
static int add_sample(struct bld *b, size_t si)
{
    struct report *r = b->r;
    const struct vmr_sample *s = &r->p->samples[si];
    uint32_t node = 0, last = NONE, run = 0;

    r->nodes[0].count++;
    for (size_t i = s->depth; i-- > 0;) {
        size_t k = s->first + i;
        uint32_t f;

        if (hidden(r, k)) {
            r->hidden++;
            continue;
        }
        if ((f = fn_of_frame(b, k)) == NONE)
            return -1;
        if (r->o.fold_recursion && node != 0 && r->nodes[node].fn == f) {
            if (++run > r->nodes[node].rec)
                r->nodes[node].rec = run;
            continue;
        }
        run = 0;
        if ((node = child(r, node, f)) == NONE)
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
    r->leaf[r->samples] = node;
    r->leaf_tid[r->samples++] = s->tid;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* tids[] and tid_samples[] of the whole log, busiest first. */
static int count_threads(struct report *r)
{
    const struct vmprof_profile *p = r->p;
    size_t n = p->n_samples, k = 0;
    uint64_t *t;

    if (!n)
        return 0;
    if (!(t = malloc(n * sizeof *t)) ||
        !(r->tids = malloc(n * sizeof *r->tids)) ||
        !(r->tid_samples = malloc(n * sizeof *r->tid_samples))) {
        free(t);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = p->samples[i].tid;
    qsort(t, n, sizeof *t, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || t[i] != t[i - 1]) {
            r->tids[k] = t[i];
            r->tid_samples[k++] = 0;
        }
        r->tid_samples[k - 1]++;
    }
    free(t);
    r->n_tids = k;
    /* busiest first: a few threads in practice, insertion sort is fine */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && r->tid_samples[j] > r->tid_samples[j - 1];
             j--) {
            uint64_t a = r->tids[j], c = r->tid_samples[j];
            r->tids[j] = r->tids[j - 1];
            r->tid_samples[j] = r->tid_samples[j - 1];
            r->tids[j - 1] = a;
            r->tid_samples[j - 1] = c;
        }
    return 0;
}

static int wanted(const struct report *r, uint64_t tid)
{
    return !r->o.n_tids ||
           bsearch(&tid, r->o.tids, r->o.n_tids, sizeof tid, cmp_u64) != NULL;
}

static int build_all(struct bld *b)
{
    struct report *r = b->r;
    const struct vmprof_profile *p = r->p;

    if (count_threads(r) < 0)
        return -1;
    if (!(r->nodes = malloc(1024 * sizeof *r->nodes)))
        return -1;
    r->cap_nodes = 1024;
    r->n_nodes = 1;
    r->nodes[0] = (struct rnode){ .fn = NONE, .parent = NONE,
                                  .first_child = NONE, .next_sibling = NONE };
    if (p->n_samples &&
        (!(r->leaf = malloc(p->n_samples * sizeof *r->leaf)) ||
         !(r->leaf_tid = malloc(p->n_samples * sizeof *r->leaf_tid))))
        return -1;
    for (size_t i = 0; i < p->n_samples; i++)
        if (wanted(r, p->samples[i].tid) && add_sample(b, i) < 0)
            return -1;
    return disambiguate(r);
}

int report_build(struct report **out, const struct vmprof_profile *p,
                 const struct report_opts *o)
{
    static const struct report_opts defaults;
    struct bld b = { 0 };
    struct report *r;
    uint64_t *tids = NULL;
    int rc;

    if (!out || !p)
        return -1;
    *out = NULL;
    if (!o)
        o = &defaults;
    if (p->n_frames >= NONE - 1 || p->n_samples >= NONE - 1 ||
        !(r = calloc(1, sizeof *r)))
        return -1;
    r->p = p;
    r->o = *o;
    r->o.tids = NULL;           /* ours to free: set below if any */
    if (o->n_tids) {            /* a sorted copy, for bsearch */
        if (!(tids = malloc(o->n_tids * sizeof *tids))) {
            free(r);
            return -1;
        }
        memcpy(tids, o->tids, o->n_tids * sizeof *tids);
        qsort(tids, o->n_tids, sizeof *tids, cmp_u64);
        r->o.tids = tids;
    }
    b.r = r;
    rc = build_all(&b);
    for (size_t i = 0; i < b.n_protos; i++)
        free(b.protos[i].name);
    free(b.protos);
    map_free(&b.linemap);
    if (rc < 0) {
        report_free(r);
        errno = ENOMEM;
        return -1;
    }
    *out = r;
    return 0;
}

void report_free(struct report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_fns; i++)
        free(r->fns[i].mem);
    free(r->fns);
    free(r->nodes);
    free(r->strmap);
    free(r->leaf);
    free(r->leaf_tid);
    free(r->tids);
    free(r->tid_samples);
    free((void *)r->o.tids);
    map_free(&r->idmap);
    map_free(&r->childmap);
    free(r);
}

/* ---- questions ------------------------------------------------------------------ */

uint64_t report_samples(const struct report *r) { return r->samples; }
uint64_t report_hidden_frames(const struct report *r) { return r->hidden; }
size_t report_threads(const struct report *r) { return r->n_tids; }
size_t report_functions(const struct report *r) { return r->n_fns; }

uint64_t report_thread(const struct report *r, size_t i, uint64_t *samples)
{
    if (i >= r->n_tids) {
        if (samples)
            *samples = 0;
        return 0;
    }
    if (samples)
        *samples = r->tid_samples[i];
    return r->tids[i];
}

int report_has_lines(const struct vmprof_profile *p)
{
    return p && p->frame_lines != NULL;
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

double report_pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static int cmp_child(const void *a, const void *b, void *ctx)
{
    const struct report *r = ctx;
    const struct rnode *x = &r->nodes[*(const uint32_t *)a];
    const struct rnode *y = &r->nodes[*(const uint32_t *)b];
    return strcmp(r->fns[x->fn].disp, r->fns[y->fn].disp);
}

static int cmp_child_count(const void *a, const void *b, void *ctx)
{
    const struct report *r = ctx;
    const struct rnode *x = &r->nodes[*(const uint32_t *)a];
    const struct rnode *y = &r->nodes[*(const uint32_t *)b];
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return cmp_child(a, b, ctx);
}

uint32_t *report_children(const struct report *r, uint32_t node,
                          int by_count, size_t *n)
{
    size_t k = 0;
    uint32_t *a;

    *n = 0;
    for (uint32_t c = r->nodes[node].first_child; c != NONE;
         c = r->nodes[c].next_sibling)
        k++;
    if (!k || !(a = malloc(k * sizeof *a)))
        return NULL;
    k = 0;
    for (uint32_t c = r->nodes[node].first_child; c != NONE;
         c = r->nodes[c].next_sibling)
        a[k++] = c;
    qsort_r(a, k, sizeof *a, by_count ? cmp_child_count : cmp_child, (void *)r);
    *n = k;
    return a;
}
