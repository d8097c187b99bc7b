/*
 * latency.h - a histogram of durations in whole microseconds, for the
 * stop times --stats reports (the whole stop and its phases).
 *
 * Fixed size, no allocation: 1 us buckets up to LATENCY_MAX_US, one
 * bucket for everything longer, and the exact maximum. Percentiles are
 * bucket floors (what a 1 us resolution can say).
 */
#ifndef VMPROF_LATENCY_H
#define VMPROF_LATENCY_H

#include <stdint.h>

#define LATENCY_MAX_US 20000

struct latency {
    uint64_t n;
    uint64_t max_ns;
    uint32_t hist[LATENCY_MAX_US + 1];
};

void latency_add(struct latency *l, uint64_t ns);
/* The q-quantile (q in [0,1]) in microseconds, 0 when empty. */
double latency_pct(const struct latency *l, double q);

#endif
