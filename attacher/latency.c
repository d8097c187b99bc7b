/*
 * latency.c - see latency.h.
 */
#include "latency.h"

void latency_add(struct latency *l, uint64_t ns)
{
    uint64_t us = ns / 1000;
    l->hist[us < LATENCY_MAX_US ? us : LATENCY_MAX_US]++;
    if (ns > l->max_ns)
        l->max_ns = ns;
    l->n++;
}

double latency_pct(const struct latency *l, double q)
{
    if (l->n == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)l->n);
    if (want >= l->n)
        want = l->n - 1;
    uint64_t seen = 0;
    for (int i = 0; i <= LATENCY_MAX_US; i++) {
        seen += l->hist[i];
        if (seen > want)
            return i;
    }
    return LATENCY_MAX_US;
}
