/*
 * report.h - what vmprof-report shows from a parsed log: top functions by
 * self and total share, and the call tree from the outermost frame.
 *
 * A "function" is a display name: "name (file:line)" parsed from the log's
 * "lang:name:line:file", or the id in hex when the log does not name it.
 * Frames with the same display name are one function (ids differ when a
 * code object is re-created), and tree children merge by display name.
 * Self share: samples whose innermost shown frame is the function. Total
 * share: samples with the function anywhere, once per sample even when it
 * recurses.
 *
 * Hidden frames: RPython ASSEMBLER frames (as vmprof does), and frames
 * without a name in a log without the NATIVE flag: such logs (vmprof's
 * 2015 ones) carry raw return addresses their writer named from a memory
 * map, which we do not have. all_frames keeps the latter.
 */
#ifndef VMPROF_REPORT_H
#define VMPROF_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vmprof_reader.h"

struct report_opts {
    int filter_tid;         /* only samples of thread tid */
    uint64_t tid;
    int all_frames;         /* keep unnamed frames of non-native logs */
};

struct report;

int report_build(struct report **out, const struct vmprof_profile *p,
                 const struct report_opts *o);
void report_free(struct report *r);

uint64_t report_samples(const struct report *r);       /* after the filter */
uint64_t report_hidden_frames(const struct report *r);
size_t report_threads(const struct report *r);          /* distinct tids */
/* Self and total sample counts of a function by display name; -1 if the
 * report has no such function. */
int report_function(const struct report *r, const char *display,
                    uint64_t *self, uint64_t *total);
/* Samples of the tree node reached from the root through the display
 * names path[0..n) (outermost first); 0 when there is none. */
uint64_t report_tree_count(const struct report *r, const char *const *path,
                           size_t n);

/* Header: file, interpreter, version, mode, period, samples, threads,
 * duration, how the log ended, META. */
void report_print_summary(FILE *f, const struct vmprof_profile *p,
                          const struct report *r, const char *path);
/* The n functions with the most self samples (then total). */
void report_print_top(FILE *f, const struct report *r, unsigned n);
/* The call tree; nodes under threshold_pct of all samples are cut. */
void report_print_tree(FILE *f, const struct report *r, double threshold_pct);

/* Display name of raw ("lang:name:line:file", or NULL for none) for id:
 * "name (file:line)", "name (file)" when the line is 0, "name" when the
 * file is "-" too; "0x<id>" for NULL. Control characters and invalid
 * UTF-8 show as '?', ':' inside a name as U+2236 (vmprof_escape_name).
 * Always NUL-terminates (cap > 0); returns the length. */
size_t report_display_name(char *dst, size_t cap, const char *raw,
                           uint64_t id);

#endif
