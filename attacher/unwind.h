/*
 * unwind.h - native stacks from snapshots, with libunwind's remote API.
 *
 * "Post mortem" unwinding in the manner of perf: libunwind does the DWARF
 * CFI work; we own every accessor. Memory comes from the snapshot's stack
 * copy, from the mapped object files (unwind tables, code), and only as a
 * last resort from the live process. Unwind tables are located once per
 * object (.eh_frame_hdr) and searched with libunwind's
 * dwarf_search_unwind_table; register-save rules are cached by IP
 * (UNW_CACHE_GLOBAL) in the one address space we keep per target.
 * Executable memory without unwind tables (JIT code) is stepped through
 * with frame pointers, and its function starts come from the target's
 * perf map (unwinder_follow_perfmap).
 */
#ifndef VMPROF_UNWIND_H
#define VMPROF_UNWIND_H

#include <stdint.h>
#include <sys/types.h>

#include "frames.h"
#include "remote_mem.h"
#include "snapshot.h"
#include "symbols.h"

struct unwinder;

struct unwind_stats {
    uint64_t samples;           /* unwinds run */
    uint64_t frames;            /* frames produced */
    uint64_t failures;          /* unwinds that stopped on an error (not at the outermost frame) */
    uint64_t live_reads;        /* words read from the live process */
    uint64_t stack_live_reads;  /* ... of them, stack words the copy lacked */
    uint64_t fp_steps;          /* frames left by the frame-pointer chain */
    uint64_t objects;           /* object files opened */
    uint64_t unknown_ips;       /* frames whose IP no known mapping holds */
};

/* root: where object paths are opened, normally "/proc/PID/root". */
struct unwinder *unwinder_new(struct remote_mem *mem, const char *root);
/* Give (or replace) the target's mappings; the unwinder keeps a pointer,
 * which must stay valid until the next call. Flushes cached rules. */
int unwinder_set_maps(struct unwinder *u, const struct sym_maps *maps);
/* Look up the function starts of JIT frames in the target's perf map
 * (/tmp/perf-NSPID.map under root: sym_perfmap_file). Call while the
 * target lives. Returns 0, or -1 out of memory. */
int unwinder_follow_perfmap(struct unwinder *u);
/* Unwind one snapshot into out[0..max), innermost first. Returns the
 * number of frames (>= 1 when the IP is known). *unknown is set to
 * UNWIND_NO_MAPPING when a frame's IP lies in no known mapping (the maps
 * are stale: reload them and unwind again), else to UNWIND_NOT_CODE when
 * one lies in a mapping that is not executable (the maps may be stale:
 * read while a mapping that has since gone held those addresses, e.g.
 * ld.so.cache during a dlopen; or the unwind went astray), else 0.
 * A frame's func is the start of its function from the
 * unwind tables, or of its perf map entry for JIT code, 0 if unknown. */
#define UNWIND_NO_MAPPING 1
#define UNWIND_NOT_CODE 2
int unwinder_run(struct unwinder *u, const struct snapshot *sn,
                 struct native_frame *out, int max, int *unknown);
const struct unwind_stats *unwinder_stats(const struct unwinder *u);
void unwinder_free(struct unwinder *u);

#endif
