/*
 * report_mem.h - vmprof-report's memory views, for logs recorded with
 * memory (vmprof-attach --mem, vmprof --mem): every sample carries the
 * process's resident set size (RSS) in KiB.
 *
 * The curve: RSS at each sample, in log order (one sample per interval of
 * CPU time in cpu mode, per tick in wall mode), drawn as one line of
 * block characters with its minimum, maximum, first and last values and
 * where the peak is.
 *
 * Growth by function: RSS is one number for the whole process, so it
 * cannot tell which frame allocated. What a sample can tell is what ran
 * while the RSS grew: the growth between two consecutive samples of the
 * log (RSS of the later one minus the earlier, when positive) is given to
 * the later sample's stack: "self" to its innermost shown function,
 * "total" to every function on it (once per sample). A function that
 * grows the heap in a loop collects that growth; a function that merely
 * runs while another thread allocates collects some too, so read it with
 * the threads in mind (--thread keeps one thread's samples, the deltas
 * still come from the whole log). Decreases are summed apart ("freed").
 */
#ifndef VMPROF_REPORT_MEM_H
#define VMPROF_REPORT_MEM_H

#include <stdint.h>
#include <stdio.h>

#include "report.h"

/* 1 if the log carries memory (the MEMORY mode flag). */
int report_has_memory(const struct vmprof_profile *p);

/* The curve of the whole log, a header line and the sparkline (about
 * width columns; 0: 60). Prints nothing for a log without memory. */
void report_print_mem_curve(FILE *f, const struct vmprof_profile *p, unsigned width);

/* Functions by RSS growth (see above): the `top` with most self growth
 * (0: 20), then those with total growth only. Returns 0, -1 (ENOMEM). */
int report_print_mem_functions(FILE *f, const struct report *r,
                               const struct report_text_opts *o);

/* Growth given to a function by display name (tests); -1 if no such
 * function, or out of memory. */
int report_mem_growth(const struct report *r, const char *display,
                      uint64_t *self_kb, uint64_t *total_kb);

#endif
