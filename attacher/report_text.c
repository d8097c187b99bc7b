/*
 * report_text.c - the terminal views of a report: the summary header, the
 * top functions, the full call tree and the compact tree of the overview
 * (API: report.h).
 *
 * Names are the display names of report_model.h, already free of control
 * characters, so nothing from the log can move the cursor or recolour the
 * terminal. Files show as base names unless two functions would then look
 * the same (report.c decides) or full_paths is asked for.
 *
 * Trees are walked with explicit stacks sized by the node count: recursion
 * in a log can be 65536 frames deep, and each node is pushed at most once.
 */
#include "report_model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"      /* vmprof_escape_name, VMPROF_MODE_* */

#define NONE REPORT_NONE
#define MAX_INDENT 40           /* deeper tree levels print flat */
#define CHAIN_SHOWN 4           /* longer chains show their ends only: */
#define CHAIN_TAIL 2            /* the first node and this many last ones */

static const char *label(const struct report *r, uint32_t fn,
                         const struct report_text_opts *o)
{
    return o && o->full_paths ? r->fns[fn].disp : r->fns[fn].shortd;
}

/* ---- summary ------------------------------------------------------------ */

static void print_period(FILE *f, uint64_t us)
{
    if (us == 0)
        fprintf(f, "unknown period");
    else if (us < 1000)
        fprintf(f, "every %" PRIu64 " us", us);
    else if (us % 1000 == 0)
        fprintf(f, "every %" PRIu64 " ms", us / 1000);
    else
        fprintf(f, "every %.2f ms", (double)us / 1000.0);
}

static int is_known_meta(const char *k)
{
    static const char *const known[] = { "os", "bits", "attacher", "pid",
                                         "command", "mode", "native" };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(k, known[i]) == 0)
            return 1;
    return 0;
}

static void print_meta(FILE *f, const struct vmprof_profile *p)
{
    char k[128], v[256];
    const char *pid = vmr_meta(p, "pid"), *cmd = vmr_meta(p, "command");
    int any = 0;

    if (pid || cmd) {
        vmprof_escape_name(k, sizeof k, pid ? pid : "?");
        vmprof_escape_name(v, sizeof v, cmd ? cmd : "?");
        fprintf(f, "  process %s: %s\n", k, v);
    }
    for (size_t i = 0; i < p->n_meta; i++) {
        if (is_known_meta(p->meta[i].key))
            continue;
        vmprof_escape_name(k, sizeof k, p->meta[i].key);
        vmprof_escape_name(v, sizeof v, p->meta[i].value);
        fprintf(f, "%s %s=%s", any++ ? "" : "  meta:", k, v);
    }
    if (any)
        fputc('\n', f);
}

static void print_log_line(FILE *f, const struct vmprof_profile *p)
{
    static const char *const modes[] = { "memory", "lines", "native",
                                         "rpython", "real-time" };
    const char *by = vmr_meta(p, "attacher");
    char v[128];

    fprintf(f, "  log: vmprof format %d%s, %u-byte words", p->version,
            p->legacy_name ? " (2015 header)" : "", p->word_size);
    for (unsigned i = 0; i < 5; i++)
        if (p->mode & (1u << i))
            fprintf(f, ", %s", modes[i]);
    fprintf(f, ", %s", vmr_end_str(p->stop));
    if (by) {
        vmprof_escape_name(v, sizeof v, by);
        fprintf(f, ", by %s", v);
    }
    fputc('\n', f);
}

static void print_threads(FILE *f, const struct report *r)
{
    size_t shown = r->n_tids < 6 ? r->n_tids : 5;

    if (r->n_tids < 2)
        return;
    fprintf(f, "  threads (samples):");
    for (size_t i = 0; i < shown; i++)
        fprintf(f, "%s %" PRIu64 " (%.1f%%)", i ? "," : "", r->tids[i],
                report_pct(r->tid_samples[i], r->p->n_samples));
    if (shown < r->n_tids)
        fprintf(f, " and %zu more", r->n_tids - shown);
    fprintf(f, "%s\n", r->o.n_tids ? "" : "; --thread TID shows one");
}

void report_print_summary(FILE *f, const struct vmprof_profile *p,
                          const struct report *r, const char *path)
{
    const char *mode = vmr_meta(p, "mode");
    int wall = (p->mode & VMPROF_MODE_REAL_TIME) ||
               (mode && strcmp(mode, "wall") == 0);
    char interp[300];

    vmprof_escape_name(interp, sizeof interp, p->interp[0] ? p->interp : "?");
    fprintf(f, "%s\n  %s, ", path ? path : "-", interp);
    if (r->o.n_tids) {
        fprintf(f, "%" PRIu64 " of %zu samples (thread", r->samples,
                p->n_samples);
        for (size_t i = 0; i < r->o.n_tids; i++)
            fprintf(f, "%s%" PRIu64, i ? ", " : " ", r->o.tids[i]);
        fputc(')', f);
    } else
        fprintf(f, "%" PRIu64 " samples", r->samples);
    if (p->has_start && p->has_end) {
        /* in double: the fields are whatever the file says */
        double d = ((double)p->end_time.sec - (double)p->start_time.sec) +
                   ((double)p->end_time.usec - (double)p->start_time.usec) / 1e6;
        fprintf(f, " in %.2f s", d);
    }
    fprintf(f, ", ");
    print_period(f, p->period_usec);
    fprintf(f, " of %s, %zu thread%s\n", wall ? "wall-clock time" : "CPU time",
            r->n_tids, r->n_tids == 1 ? "" : "s");
    print_meta(f, p);
    print_log_line(f, p);
    print_threads(f, r);
    if (p->stop != VMR_END_TRAILER)
        fprintf(f, "  note: %s; read up to byte %zu\n", p->end_detail,
                p->end_offset);
    if (p->n_samples && !p->n_names)
        fprintf(f, "  note: the log names no frame (names come last: was its "
                "writer stopped early?)\n");
    if (r->hidden)
        fprintf(f, "  note: %" PRIu64 " frame(s) hidden (assembler frames, or "
                "addresses the log does not name: --all-frames shows them)\n",
                r->hidden);
}

/* ---- top ------------------------------------------------------------------ */

static int cmp_top(const void *a, const void *b, void *ctx)
{
    const struct report *r = ctx;
    const struct rfn *x = &r->fns[*(const uint32_t *)a];
    const struct rfn *y = &r->fns[*(const uint32_t *)b];
    if (x->self != y->self)
        return x->self < y->self ? 1 : -1;
    if (x->total != y->total)
        return x->total < y->total ? 1 : -1;
    return strcmp(x->disp, y->disp);
}

void report_print_top(FILE *f, const struct report *r,
                      const struct report_text_opts *o)
{
    unsigned n = o && o->top ? o->top : 20;
    uint32_t *idx;
    size_t busy;

    fprintf(f, "\n  self%%  total%%  %s\n",
            r->o.lines ? "function:line" : "function");
    if (!r->n_fns || !(idx = malloc(r->n_fns * sizeof *idx)))
        return;
    for (size_t i = 0; i < r->n_fns; i++)
        idx[i] = (uint32_t)i;
    qsort_r(idx, r->n_fns, sizeof *idx, cmp_top, (void *)r);
    /* Functions that only call others (no self sample) are in the tree. */
    for (busy = 0; busy < r->n_fns && r->fns[idx[busy]].self; busy++)
        ;
    for (size_t i = 0; i < busy && i < n; i++) {
        const struct rfn *fn = &r->fns[idx[i]];
        fprintf(f, "%6.1f%% %6.1f%%  %s\n", report_pct(fn->self, r->samples),
                report_pct(fn->total, r->samples), label(r, idx[i], o));
    }
    if (busy > n)
        fprintf(f, "  (%u of %zu functions with self time; --top N shows "
                "more)\n", n, busy);
    free(idx);
}

/* ---- full tree ---------------------------------------------------------------- */

static double min_count(const struct report *r, const struct report_text_opts *o)
{
    double min = (o ? o->threshold_pct : 1.0) * (double)r->samples / 100.0;
    return min < 1 ? 1 : min;
}

/* Pushes the children of node worth showing, biggest on top. */
static size_t push_children(const struct report *r, uint32_t node,
                            double min, uint32_t *stack, size_t sp)
{
    size_t n, k = 0;
    uint32_t *c = report_children(r, node, 1, &n);

    while (k < n && (double)r->nodes[c[k]].count >= min)
        k++;
    while (k--)
        stack[sp++] = c[k];
    free(c);
    return sp;
}

static void print_recursion(FILE *f, const struct rnode *nd)
{
    if (nd->rec)
        fprintf(f, " [recursion %" PRIu32 " deep]", nd->rec + 1);
}

void report_print_tree(FILE *f, const struct report *r,
                       const struct report_text_opts *o)
{
    /* Each node is pushed at most once, so n_nodes bounds the stack. */
    uint32_t *stack = malloc(r->n_nodes * sizeof *stack);
    double min = min_count(r, o);
    size_t sp;

    fprintf(f, "\n  total%%   self%%  call tree (cut below %.1f%%)\n",
            o ? o->threshold_pct : 1.0);
    if (!stack || !r->samples)
        goto out;
    sp = push_children(r, 0, min, stack, 0);
    while (sp) {
        uint32_t node = stack[--sp];
        const struct rnode *nd = &r->nodes[node];
        unsigned d = nd->depth - 1, indent = d < MAX_INDENT ? d : MAX_INDENT;

        fprintf(f, "%7.1f%% %6.1f%%  %*s%s%s", report_pct(nd->count, r->samples),
                report_pct(nd->self, r->samples), (int)(2 * indent), "",
                d > MAX_INDENT ? "[deep] " : "", label(r, nd->fn, o));
        print_recursion(f, nd);
        fputc('\n', f);
        sp = push_children(r, node, min, stack, sp);
    }
out:
    free(stack);
}

/* ---- compact tree ---------------------------------------------------------------- */

/* The node a chain starting at node ends at: while the node has one child
 * worth showing that carries all but an invisible part of it, follow it.
 * *len counts the nodes of the chain. */
static uint32_t chain_end(const struct report *r, uint32_t node, double min,
                          size_t *len)
{
    *len = 1;
    for (;;) {
        const struct rnode *nd = &r->nodes[node];
        uint32_t only = NONE;
        unsigned shown = 0;

        if ((double)nd->self >= min)
            return node;
        for (uint32_t c = nd->first_child; c != NONE && shown < 2;
             c = r->nodes[c].next_sibling)
            if ((double)r->nodes[c].count >= min) {
                only = c;
                shown++;
            }
        if (shown != 1 || (double)(nd->count - r->nodes[only].count) >= min)
            return node;
        node = only;
        ++*len;
    }
}

/* Prints the chain that ends at end and has len nodes, outermost first;
 * chains longer than CHAIN_SHOWN keep their first node and their last
 * CHAIN_TAIL ones. */
static void print_chain(FILE *f, const struct report *r, uint32_t end,
                        size_t len, const struct report_text_opts *o)
{
    uint32_t up[CHAIN_SHOWN], first = end, at = end;   /* up[0] = end */
    size_t k, n;

    for (k = 0; k < len; k++, at = r->nodes[at].parent) {
        if (k < CHAIN_SHOWN)
            up[k] = at;
        first = at;
    }
    if (len <= CHAIN_SHOWN) {
        n = len;
    } else {
        n = CHAIN_TAIL;
        fputs(label(r, r->nodes[first].fn, o), f);
        print_recursion(f, &r->nodes[first]);
        /* arrow, ellipsis */
        fprintf(f, " \xe2\x86\x92 \xe2\x80\xa6 %zu more", len - 1 - CHAIN_TAIL);
    }
    for (k = n; k-- > 0;) {
        if (k + 1 < n || len > CHAIN_SHOWN)
            fputs(" \xe2\x86\x92 ", f);
        fputs(label(r, r->nodes[up[k]].fn, o), f);
        print_recursion(f, &r->nodes[up[k]]);
    }
}

/* Tree guides for a line at display level lvl: more[l] says whether level
 * l still has siblings to come. */
static void print_guides(FILE *f, const unsigned char *more, unsigned lvl,
                         int last)
{
    unsigned shown = lvl < MAX_INDENT ? lvl : MAX_INDENT;

    for (unsigned l = 1; l < shown; l++)
        fputs(more[l] ? "\xe2\x94\x82  " : "   ", f);        /* | */
    if (lvl > MAX_INDENT)
        fputs("[deep] ", f);
    if (lvl)
        fputs(last ? "\xe2\x94\x94\xe2\x94\x80 " : "\xe2\x94\x9c\xe2\x94\x80 ",
              f);                                           /* `- and |- */
}

/* Stack entries of the compact walk: a node, its display level, whether it
 * is the last shown child of its parent. */
struct centry {
    uint32_t node;
    unsigned lvl;
    int last;
};

static size_t push_compact(const struct report *r, uint32_t node,
                           unsigned lvl, double min, struct centry *st,
                           size_t sp)
{
    size_t n, k = 0;
    uint32_t *c = report_children(r, node, 1, &n);

    while (k < n && (double)r->nodes[c[k]].count >= min)
        k++;
    for (size_t i = k; i-- > 0;)
        st[sp++] = (struct centry){ c[i], lvl, i == k - 1 };
    free(c);
    return sp;
}

void report_print_compact_tree(FILE *f, const struct report *r,
                               const struct report_text_opts *o)
{
    struct centry *st = malloc(r->n_nodes * sizeof *st);
    unsigned char *more = calloc(MAX_INDENT + 1, 1);
    double min = min_count(r, o), thr = o ? o->threshold_pct : 1.0;
    size_t sp, lines = 0, cut = 0;

    fprintf(f, "\n  total%%  self%%  call tree (%.3g%% and up; a \xe2\x86\x92 b: "
            "a calls only b)\n", thr);
    if (!st || !more || !r->samples)
        goto out;
    sp = push_compact(r, 0, 0, min, st, 0);
    while (sp) {
        struct centry e = st[--sp];
        size_t len;
        uint32_t end = chain_end(r, e.node, min, &len);

        if (o && o->max_lines && lines >= o->max_lines) {
            cut++;                  /* count what is left, print nothing */
            sp = push_compact(r, end, e.lvl + 1, min, st, sp);
            continue;
        }
        if (e.lvl <= MAX_INDENT)
            more[e.lvl] = !e.last;
        fprintf(f, "%7.1f%% %5.1f%%  ", report_pct(r->nodes[end].count,
                r->samples), report_pct(r->nodes[end].self, r->samples));
        print_guides(f, more, e.lvl, e.last);
        print_chain(f, r, end, len, o);
        fputc('\n', f);
        lines++;
        sp = push_compact(r, end, e.lvl + 1, min, st, sp);
    }
    if (cut)
        fprintf(f, "  (%zu more line%s above %.3g%%: --tree shows the whole "
                "tree)\n", cut, cut == 1 ? "" : "s", thr);
out:
    free(st);
    free(more);
}
