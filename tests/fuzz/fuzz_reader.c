/*
 * fuzz_reader.c - libFuzzer harness for the vmprof log reader and every
 * view built on it: any byte string must parse (or fail cleanly), and the
 * report, the terminal views and the exports (collapsed stacks, SVG flame
 * graph, speedscope JSON) must handle what it parsed without reading out
 * of bounds, leaking or hanging. Names in a log are untrusted text.
 *
 * Built by tests/fuzz/meson.build (-Dfuzz=true); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Iattacher tests/fuzz/fuzz_reader.c attacher/vmprof_reader.c \
 *     attacher/vmprof_writer.c attacher/report*.c -o fuzz_reader
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
    /* the input's size picks the options, so the corpus covers them all */
    o.all_frames = size & 1;
    o.lines = (size >> 2) & 1;
    o.fold_recursion = (size >> 3) & 1;
    if (p->n_samples && (size & 16)) {
        o.tids = &p->samples[0].tid;
        o.n_tids = 1;
    }
    if (report_build(&r, p, &o) == 0) {
        struct report_text_opts t = {
            .top = 10, .threshold_pct = (size & 2) ? 0.0 : 1.0,
            .full_paths = (size >> 5) & 1, .max_lines = 40,
        };
        struct report_svg_opts svg = { .title = "fuzz", .subtitle = NULL, .width = 0 };
        report_print_summary(sink, p, r, "fuzz");
        report_print_top(sink, r, &t);
        report_print_tree(sink, r, &t);
        report_print_compact_tree(sink, r, &t);
        report_write_collapsed(sink, r);
        report_write_flamegraph(sink, r, &svg);
        report_write_speedscope(sink, p, r, "fuzz");
        report_free(r);
    }
    vmr_free(p);
    return 0;
}
