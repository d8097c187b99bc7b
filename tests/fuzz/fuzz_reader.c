/*
 * fuzz_reader.c - libFuzzer harness for the vmprof log reader and the
 * report built on it: any byte string must parse (or fail cleanly) and
 * report without reading out of bounds, leaking or hanging.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Iattacher tests/fuzz/fuzz_reader.c attacher/vmprof_reader.c \
 *     attacher/vmprof_writer.c attacher/report.c -o fuzz_reader
 *   ./fuzz_reader -max_total_time=60 corpus_dir tests/fuzz/seeds/reader
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report.h"
#include "vmprof_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    struct vmprof_profile *p;
    struct report *r;
    struct report_opts o = { 0 };
    char err[256];

    if (!sink && !(sink = fopen("/dev/null", "w")))
        return 0;
    if (vmr_parse(&p, data, size, err, sizeof err) < 0)
        return 0;
    /* every name lookup the report makes goes through the parsed tables */
    for (size_t i = 0; i < p->n_samples; i++) {
        const struct vmr_sample *s = &p->samples[i];
        if (s->first + s->depth > p->n_frames)
            __builtin_trap();
    }
    o.all_frames = size & 1;
    if (report_build(&r, p, &o) == 0) {
        report_print_summary(sink, p, r, "fuzz");
        report_print_top(sink, r, 10);
        report_print_tree(sink, r, (size & 2) ? 0.0 : 1.0);
        report_free(r);
    }
    vmr_free(p);
    return 0;
}
