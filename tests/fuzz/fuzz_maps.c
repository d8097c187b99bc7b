/*
 * fuzz_maps.c - libFuzzer harness for the /proc/PID/maps parser.
 *
 * Parses arbitrary bytes, then checks the invariants symbols.h promises:
 * sorted, non-empty, non-overlapping mappings with NUL-terminated paths,
 * and that sym_maps_find agrees with a linear scan. A broken invariant
 * aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "symbols.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct sym_mapping *linear_find(const struct sym_maps *m, uint64_t a)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].start <= a && a < m->v[i].end) return &m->v[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sym_maps m;
    size_t bad = 0;
    if (sym_maps_parse(&m, (const char *)data, size, &bad) != 0)
        return 0;
    for (size_t i = 0; i < m.n; i++) {
        const struct sym_mapping *mp = &m.v[i];
        if (mp->start >= mp->end || !mp->path) abort();
        if (i && m.v[i - 1].end > mp->start) abort();
        if (strlen(mp->path) > size) abort();
        if (mp->prot & ~(SYM_PROT_R | SYM_PROT_W | SYM_PROT_X)) abort();
        /* Probe the edges of every mapping. */
        uint64_t probes[3] = { mp->start, mp->end - 1, mp->end };
        for (int k = 0; k < 3; k++)
            if (sym_maps_find(&m, probes[k]) != linear_find(&m, probes[k])) abort();
    }
    if (m.n > size / 16 + 1) abort();   /* "0-1 ---p 0 0:0 0" is 16 bytes */
    sym_maps_free(&m);
    return 0;
}
