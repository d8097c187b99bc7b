/*
 * report.h - what vmprof-report shows from a parsed log: a one-screen
 * overview, top functions by self and total share, the call tree, and the
 * exports other tools read (collapsed stacks, an interactive SVG flame
 * graph, speedscope JSON).
 *
 * A "function" is a display name: "name (file:line)" parsed from the log's
 * "lang:name:line:file", or the id in hex when the log does not name it.
 * Frames with the same display name are one function (ids differ when a
 * code object is re-created), and tree children merge by display name.
 * With `lines` (logs recorded with line numbers) a VM frame's line is the
 * line it was executing, so a "function" is a function:line pair.
 * Self share: samples whose innermost shown frame is the function. Total
 * share: samples with the function anywhere, once per sample even when it
 * recurses. With `fold_recursion`, a frame that calls its own function
 * directly stays in the caller's tree node (the tree, not the shares).
 *
 * Hidden frames: RPython ASSEMBLER frames (as vmprof does), and frames
 * without a name in a log without the NATIVE flag: such logs (vmprof's
 * 2015 ones) carry raw return addresses their writer named from a memory
 * map, which we do not have. all_frames keeps the latter.
 *
 * Every writer takes names from the log as untrusted text: they come out
 * escaped for the format at hand (terminal, collapsed, XML, JSON).
 */
#ifndef VMPROF_REPORT_H
#define VMPROF_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmprof_reader.h"

struct report_opts {
    const uint64_t *tids;   /* only samples of these threads ... */
    size_t n_tids;          /* ... when n_tids > 0 */
    int all_frames;         /* keep unnamed frames of non-native logs */
    int lines;              /* function:line granularity (LINES logs) */
    int fold_recursion;     /* direct recursion stays in one tree node */
};

struct report;

/* Builds the report of p (which must outlive it). -1 with errno ENOMEM. */
int report_build(struct report **out, const struct vmprof_profile *p,
                 const struct report_opts *o);
void report_free(struct report *r);

uint64_t report_samples(const struct report *r);       /* after the filter */
uint64_t report_hidden_frames(const struct report *r);
size_t report_threads(const struct report *r);   /* distinct tids in the log */
size_t report_functions(const struct report *r);
/* Thread i (0 <= i < report_threads) by falling sample count: its id and
 * its samples in the whole log (before the filter). */
uint64_t report_thread(const struct report *r, size_t i, uint64_t *samples);
/* 1 if some sample of the log has line numbers (LINES mode). */
int report_has_lines(const struct vmprof_profile *p);
/* Self and total sample counts of a function by display name; -1 if the
 * report has no such function. */
int report_function(const struct report *r, const char *display,
                    uint64_t *self, uint64_t *total);
/* Samples of the tree node reached from the root through the display
 * names path[0..n) (outermost first); 0 when there is none. */
uint64_t report_tree_count(const struct report *r, const char *const *path,
                           size_t n);

/* ---- terminal views (report_text.c) ---- */

struct report_text_opts {
    unsigned top;           /* functions in the top list */
    double threshold_pct;   /* tree nodes under this share are cut */
    int full_paths;         /* else files show as base names when unique */
    unsigned max_lines;     /* overview tree: cut after this many (0: none) */
};

/* Header: file, interpreter, samples, duration, threads, how the log
 * ended, notes. */
void report_print_summary(FILE *f, const struct vmprof_profile *p,
                          const struct report *r, const char *path);
/* The top functions (most self samples, then total). */
void report_print_top(FILE *f, const struct report *r,
                      const struct report_text_opts *o);
/* The call tree, one frame per line, indented. */
void report_print_tree(FILE *f, const struct report *r,
                       const struct report_text_opts *o);
/* The compact tree of the overview: chains of single callees on one line,
 * tree guides, at most max_lines lines, notes on what was cut. Reads best
 * with fold_recursion. */
void report_print_compact_tree(FILE *f, const struct report *r,
                               const struct report_text_opts *o);

/* ---- exports ---- */

/* Collapsed stacks (report_collapsed.c): one line per distinct stack,
 * "outer;...;inner count", the format flamegraph.pl and speedscope import.
 * ';' in a name becomes U+FF1B, control characters '?'. Samples with no
 * shown frame count as one "(no frames)" stack, so the counts add up to
 * report_samples(). Returns 0, or -1 on a write error. */
int report_write_collapsed(FILE *f, const struct report *r);

/* A self-contained interactive SVG flame graph (report_flamegraph.c). */
struct report_svg_opts {
    const char *title;      /* NULL: "Flame graph" */
    const char *subtitle;   /* NULL: none */
    unsigned width;         /* pixels, 0: 1200 */
};
int report_write_flamegraph(FILE *f, const struct report *r,
                            const struct report_svg_opts *o);

/* speedscope's file format (report_speedscope.c): shared frames and one
 * "sampled" profile per thread, samples in log order, weights in
 * microseconds of the sampling period (or counts when the log has none). */
int report_write_speedscope(FILE *f, const struct vmprof_profile *p,
                            const struct report *r, const char *name);

/* Display name of raw ("lang:name:line:file", or NULL for none) for id:
 * "name (file:line)", "name (file)" when the line is 0, "name" when the
 * file is "-" too; "0x<id>" for NULL. Control characters and invalid
 * UTF-8 show as '?', ':' inside a name as U+2236 (vmprof_escape_name).
 * Always NUL-terminates (cap > 0); returns the length. */
size_t report_display_name(char *dst, size_t cap, const char *raw,
                           uint64_t id);

#endif
