/*
 * report_model.h - the data report.c builds and the views (report_text.c,
 * report_collapsed.c, report_flamegraph.c, report_speedscope.c) read.
 * Private to the report_* files; everyone else uses report.h.
 *
 * Invariants, kept by report.c:
 *   - nodes[0] is the root (fn NONE, depth 0); every other node has a
 *     parent with a smaller index, depth = parent's depth + 1, and
 *     count >= self + the sum of its children's counts.
 *   - fns[i].total <= samples; every string of a fn is valid UTF-8 without
 *     control characters (vmprof_escape_name made it).
 *   - leaf[i] / leaf_tid[i] for i < samples: the deepest node of the i-th
 *     sample kept by the filter (0: no frame shown), in log order.
 *   - tids[] sorted by falling tid_samples (then tid), one per distinct tid.
 */
#ifndef VMPROF_REPORT_MODEL_H
#define VMPROF_REPORT_MODEL_H

#include <stdint.h>
#include <stddef.h>

#include "report.h"

#define REPORT_NONE UINT32_MAX
#define REPORT_NAME_CAP 512     /* name parts are cut past this */

struct rfn {
    const char *disp;           /* "name (file:line)": the identity */
    const char *shortd;         /* "name (base:line)", or disp if ambiguous */
    const char *name;           /* the function's name alone */
    const char *file;           /* "" when the log has none */
    unsigned long line;         /* 0 when none */
    int native;                 /* a native symbol, not VM code */
    uint64_t self, total;
    size_t stamp;               /* last sample counted in total, + 1 */
    char *mem;                  /* the block all strings above live in */
};

struct rnode {
    uint32_t fn;                /* REPORT_NONE for the root */
    uint32_t parent;
    uint32_t first_child, next_sibling;
    uint32_t depth;
    uint32_t rec;               /* deepest direct recursion folded here */
    uint64_t count, self;
};

/* uint64 key -> uint32 value, open addressing (report.c). */
struct rmap {
    uint64_t *keys;
    uint32_t *vals;             /* REPORT_NONE marks an empty slot */
    size_t cap, n;
};

struct report {
    const struct vmprof_profile *p;
    struct report_opts o;
    struct rfn *fns;
    size_t n_fns, cap_fns;
    struct rnode *nodes;
    size_t n_nodes, cap_nodes;
    struct rmap idmap, childmap;
    uint32_t *strmap;           /* fn index, REPORT_NONE empty */
    size_t strmap_cap;
    uint64_t samples, hidden;
    uint32_t max_depth;
    uint32_t *leaf;             /* per kept sample */
    uint64_t *leaf_tid;
    uint64_t *tids, *tid_samples;
    size_t n_tids;
};

/* Children of node, sorted: by falling count (by_count) or by display
 * name. Returns a malloc'd array of *n indexes (NULL with *n 0 if none or
 * out of memory: check *n against the children yourself if it matters). */
uint32_t *report_children(const struct report *r, uint32_t node,
                          int by_count, size_t *n);
/* Percentage part/whole, 0 when whole is 0. */
double report_pct(uint64_t part, uint64_t whole);

/* The flame graph's style sheet and script (report_flamegraph_js.c). */
extern const char report_flamegraph_style[];
extern const char report_flamegraph_script[];

#endif
