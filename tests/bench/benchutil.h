/*
 * benchutil.h - what the benchmark's native helpers (pause_probe.c,
 * ptrace_floor.c) share: the attacher's own monotonic clock, so that they
 * time exactly as vmprof-attach does, and the order of a qsort of times.
 */
#ifndef VMPROF_BENCHUTIL_H
#define VMPROF_BENCHUTIL_H

#include <stdint.h>

#include "../../attacher/mono_clock.h"

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#endif
