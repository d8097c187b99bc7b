/*
 * report_mem.c - the memory curve and growth by function (report_mem.h).
 *
 * Reads the RSS word of every sample (vmr_sample.rss_kb) and the report's
 * per-sample leaves (report_model.h: leaf[k] is the k-th sample the
 * thread filter kept, in log order), so the functions are the ones the
 * other views show. Invariants: a sample's growth is given at most once
 * to each function of its stack (stamps, as report.c counts totals);
 * the first sample of the log has no predecessor and carries no growth.
 */
#include "report_mem.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "report_model.h"
#include "vmprof_writer.h"      /* VMPROF_MODE_MEMORY */

#define CURVE_WIDTH 60

struct growth {
    uint64_t self, total, freed;
    size_t stamp;               /* last sample given to total, + 1 */
};

int report_has_memory(const struct vmprof_profile *p)
{
    return (p->mode & VMPROF_MODE_MEMORY) != 0;
}

/* "812 KiB", "45.3 MiB", "2.41 GiB" */
static const char *fmt_kb(char *b, size_t cap, uint64_t kb)
{
    if (kb < 1024)
        snprintf(b, cap, "%" PRIu64 " KiB", kb);
    else if (kb < 1024 * 1024)
        snprintf(b, cap, "%.1f MiB", (double)kb / 1024.0);
    else
        snprintf(b, cap, "%.2f GiB", (double)kb / (1024.0 * 1024.0));
    return b;
}

void report_print_mem_curve(FILE *f, const struct vmprof_profile *p, unsigned width)
{
    static const char *const blocks[8] = {
        "\xe2\x96\x81", "\xe2\x96\x82", "\xe2\x96\x83", "\xe2\x96\x84",
        "\xe2\x96\x85", "\xe2\x96\x86", "\xe2\x96\x87", "\xe2\x96\x88",
    };
    size_t n = p->n_samples, peak = 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    char a[32], b[32], c[32];

    if (!report_has_memory(p) || n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = p->samples[i].rss_kb;
        if (v < lo)
            lo = v;
        if (v > hi) {
            hi = v;
            peak = i;
        }
    }
    fprintf(f, "\n  memory (RSS by sample, log order): min %s, max %s at sample %zu of %zu\n",
            fmt_kb(a, sizeof a, lo), fmt_kb(b, sizeof b, hi), peak + 1, n);
    if (!width)
        width = CURVE_WIDTH;
    if (width > n)
        width = (unsigned)n;
    fputs("  ", f);
    for (unsigned col = 0; col < width; col++) {
        size_t from = col * n / width, to = (col + 1) * n / width;
        uint64_t v = 0;
        for (size_t i = from; i < to; i++)      /* a column shows its highest */
            if (p->samples[i].rss_kb > v)
                v = p->samples[i].rss_kb;
        unsigned level = hi > lo ? (unsigned)((double)(v - lo) * 7.0 / (double)(hi - lo) + 0.5) : 0;
        fputs(blocks[level < 8 ? level : 7], f);
    }
    fprintf(f, "  last %s\n", fmt_kb(c, sizeof c, p->samples[n - 1].rss_kb));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The thread filter of report.c (r->o.tids is its sorted copy). */
static int wanted(const struct report *r, uint64_t tid)
{
    return !r->o.n_tids ||
           bsearch(&tid, r->o.tids, r->o.n_tids, sizeof tid, cmp_u64) != NULL;
}

/* Growth per function (g[0..n_fns)), as report_mem.h defines it. */
static struct growth *compute(const struct report *r)
{
    const struct vmprof_profile *p = r->p;
    struct growth *g = calloc(r->n_fns ? r->n_fns : 1, sizeof *g);
    size_t k = 0;

    if (!g)
        return NULL;
    for (size_t i = 0; i < p->n_samples && k < r->samples; i++) {
        if (!wanted(r, p->samples[i].tid))
            continue;
        uint32_t node = r->leaf[k++];
        if (i == 0 || node == 0 || node >= r->n_nodes)
            continue;
        uint64_t now = p->samples[i].rss_kb, before = p->samples[i - 1].rss_kb;
        uint32_t fn = r->nodes[node].fn;
        if (now < before) {
            g[fn].freed += before - now;
            continue;
        }
        if (now == before)
            continue;
        g[fn].self += now - before;
        /* parents have smaller indexes (report_model.h): this ends */
        for (uint32_t at = node; at != 0 && at < r->n_nodes; at = r->nodes[at].parent) {
            struct growth *e = &g[r->nodes[at].fn];
            if (e->stamp != i + 1) {
                e->stamp = i + 1;
                e->total += now - before;
            }
        }
    }
    return g;
}

struct sort_ctx { const struct report *r; const struct growth *g; };

static int cmp_growth(const void *a, const void *b, void *ctx)
{
    const struct sort_ctx *c = ctx;
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (c->g[i].self != c->g[j].self)
        return c->g[i].self < c->g[j].self ? 1 : -1;
    if (c->g[i].total != c->g[j].total)
        return c->g[i].total < c->g[j].total ? 1 : -1;
    return strcmp(c->r->fns[i].disp, c->r->fns[j].disp);
}

int report_print_mem_functions(FILE *f, const struct report *r,
                               const struct report_text_opts *o)
{
    unsigned top = o && o->top ? o->top : 20;
    uint64_t all = 0, freed = 0;
    size_t shown = 0, growing = 0;
    char a[32], b[32], c[32];

    if (!report_has_memory(r->p)) {
        fprintf(f, "\n  no memory in this log: record with vmprof-attach --mem\n");
        return 0;
    }
    struct growth *g = compute(r);
    uint32_t *idx = malloc((r->n_fns ? r->n_fns : 1) * sizeof *idx);
    if (!g || !idx) {
        free(g);
        free(idx);
        return -1;
    }
    for (size_t i = 0; i < r->n_fns; i++) {
        idx[i] = (uint32_t)i;
        all += g[i].self;
        freed += g[i].freed;
        growing += g[i].total > 0;
    }
    struct sort_ctx ctx = { r, g };
    qsort_r(idx, r->n_fns, sizeof *idx, cmp_growth, &ctx);
    fprintf(f, "\n  RSS growth by function: %s grown, %s freed in all. Each rise between\n"
            "  two consecutive samples goes to the later sample's stack (self: to its\n"
            "  innermost function; total: to each function on it).\n",
            fmt_kb(a, sizeof a, all), fmt_kb(b, sizeof b, freed));
    fprintf(f, "\n  %10s %6s %10s  %s\n", "self", "self%", "total",
            r->o.lines ? "function:line" : "function");
    for (size_t i = 0; i < r->n_fns && shown < top; i++) {
        const struct growth *e = &g[idx[i]];
        if (!e->total)
            break;
        const struct rfn *fn = &r->fns[idx[i]];
        fprintf(f, "  %10s %5.1f%% %10s  %s\n", fmt_kb(a, sizeof a, e->self),
                report_pct(e->self, all), fmt_kb(c, sizeof c, e->total),
                o && o->full_paths ? fn->disp : fn->shortd);
        shown++;
    }
    if (!shown)
        fprintf(f, "  (RSS never grew between two samples)\n");
    else if (growing > shown)
        fprintf(f, "  (%zu of %zu functions with growth; --top N shows more)\n",
                shown, growing);
    free(g);
    free(idx);
    return 0;
}

int report_mem_growth(const struct report *r, const char *display,
                      uint64_t *self_kb, uint64_t *total_kb)
{
    for (size_t i = 0; i < r->n_fns; i++) {
        if (strcmp(r->fns[i].disp, display) != 0)
            continue;
        struct growth *g = compute(r);
        if (!g)
            return -1;
        *self_kb = g[i].self;
        *total_kb = g[i].total;
        free(g);
        return 0;
    }
    return -1;
}
