/*
 * fuzz_perfmap.c - libFuzzer harness for the perf map parser and lookup.
 *
 * Parses arbitrary bytes, then checks: entries sorted by start with
 * distinct starts, non-zero sizes that do not wrap, non-empty names; and
 * that whatever sym_perfmap_find returns really contains the address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "symbols.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sym_perfmap pm;
    if (sym_perfmap_parse(&pm, (const char *)data, size) != 0)
        return 0;
    for (size_t i = 0; i < pm.n; i++) {
        const struct sym_perfmap_entry *e = &pm.v[i];
        if (e->size == 0 || e->start + e->size < e->start) abort();
        if (!e->name || !e->name[0] || strlen(e->name) > size) abort();
        if (i && pm.v[i - 1].start >= e->start) abort();
        uint64_t probes[4] = { e->start, e->start + e->size - 1, e->start + e->size,
                               e->start ? e->start - 1 : 0 };
        for (int k = 0; k < 4; k++) {
            const struct sym_perfmap_entry *f = sym_perfmap_find(&pm, probes[k]);
            if (f && (probes[k] < f->start || probes[k] - f->start >= f->size)) abort();
        }
        /* Its own start must be found (by it or by a region nested on it). */
        if (!sym_perfmap_find(&pm, e->start)) abort();
    }
    sym_perfmap_free(&pm);
    return 0;
}
