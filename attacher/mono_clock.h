/*
 * mono_clock.h - the one monotonic clock of the attacher, in nanoseconds
 * (CLOCK_MONOTONIC: deadlines, stop times, rate limits). Header-only: it
 * is read in the per-sample path and costs one vDSO call.
 */
#ifndef VMPROF_MONO_CLOCK_H
#define VMPROF_MONO_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
