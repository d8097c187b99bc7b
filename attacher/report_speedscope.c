/*
 * report_speedscope.c - speedscope's own JSON file format (API: report.h;
 * the format: speedscope's file-format-spec.ts, schema
 * https://www.speedscope.app/file-format-schema.json).
 *
 *   { "$schema": ..., "shared": { "frames": [ {name, file, line}... ] },
 *     "profiles": [ { "type": "sampled", "name", "unit", "startValue",
 *                     "endValue", "samples": [[outer..inner]...],
 *                     "weights": [...] } ... ],
 *     "name", "activeProfileIndex", "exporter" }
 *
 * Frames are the report's functions (frame i = fns[i]), plus one
 * "(no frames)" frame when some sample shows none, so the weights add up to
 * all kept samples. One profile per thread, busiest first (the one shown
 * on load); its samples in log order, so speedscope's time-order view is
 * the real timeline; consecutive samples with the same stack are one
 * sample with their weights added. Weights are microseconds of the
 * sampling period (unit "none", one per sample, when the period is
 * unknown or absurd). Strings are escaped for JSON; they are valid UTF-8
 * already (report.c).
 */
#include "report_model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"      /* vmprof_escape_name */

#define NONE REPORT_NONE
#define MAX_PERIOD_US 10000000u     /* 10 s: longer is not a real period */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_frames(FILE *f, const struct report *r, int no_frames)
{
    fputs("{\"frames\":[", f);
    for (size_t i = 0; i < r->n_fns; i++) {
        const struct rfn *fn = &r->fns[i];
        fputs(i ? ",\n{\"name\":" : "\n{\"name\":", f);
        if (r->o.lines && !fn->native && fn->line) {
            char nm[REPORT_NAME_CAP + 24];
            snprintf(nm, sizeof nm, "%s:%lu", fn->name, fn->line);
            json_str(f, nm);
        } else
            json_str(f, fn->name);
        if (fn->file[0]) {
            fputs(",\"file\":", f);
            json_str(f, fn->file);
        }
        if (fn->line)
            fprintf(f, ",\"line\":%lu", fn->line);
        fputc('}', f);
    }
    if (no_frames)
        fprintf(f, "%s{\"name\":\"(no frames)\"}", r->n_fns ? ",\n" : "\n");
    fputs("]}", f);
}

/* The stack of leaf node as frame indexes, outermost first. */
static void write_stack(FILE *f, const struct report *r, uint32_t leaf,
                        uint32_t *path)
{
    uint32_t n = 0;

    if (leaf == 0) {
        fprintf(f, "[%zu]", r->n_fns);      /* the "(no frames)" frame */
        return;
    }
    for (uint32_t at = leaf; at != 0; at = r->nodes[at].parent)
        path[n++] = r->nodes[at].fn;
    fputc('[', f);
    while (n--)
        fprintf(f, "%" PRIu32 "%s", path[n], n ? "," : "");
    fputc(']', f);
}

/* One profile: the kept samples of thread tid, given in order[0..n). */
static void write_profile(FILE *f, const struct report *r, uint64_t tid,
                          const size_t *order, size_t n, uint64_t weight,
                          uint32_t *path)
{
    uint64_t total = 0, w;
    size_t i, j;

    fprintf(f, "{\"type\":\"sampled\",\"name\":\"thread %" PRIu64 "\","
            "\"unit\":\"%s\",\"startValue\":0,", tid,
            weight > 1 ? "microseconds" : "none");
    for (i = 0; i < n; i++)
        total += weight;
    fprintf(f, "\"endValue\":%" PRIu64 ",\n\"samples\":[", total);
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && r->leaf[order[j]] == r->leaf[order[i]]; j++)
            ;
        if (i)
            fputs(",\n", f);
        write_stack(f, r, r->leaf[order[i]], path);
    }
    fputs("],\n\"weights\":[", f);
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && r->leaf[order[j]] == r->leaf[order[i]]; j++)
            ;
        w = (uint64_t)(j - i) * weight;
        fprintf(f, "%s%" PRIu64, i ? "," : "", w);
    }
    fputs("]}", f);
}

/* Index into r->tids of each kept sample's thread; -1 on ENOMEM. */
static int thread_of_samples(const struct report *r, size_t *th)
{
    /* tids are few: a linear search per distinct run of samples */
    size_t last = 0;

    for (size_t i = 0; i < r->samples; i++) {
        if (r->tids[last] != r->leaf_tid[i])
            for (last = 0; last < r->n_tids && r->tids[last] != r->leaf_tid[i];
                 last++)
                ;
        if (last >= r->n_tids)
            return -1;          /* cannot happen: tids lists every tid */
        th[i] = last;
    }
    return 0;
}

int report_write_speedscope(FILE *f, const struct vmprof_profile *p,
                            const struct report *r, const char *name)
{
    size_t *th = NULL, *order = NULL, *start = NULL, n_prof = 0;
    uint32_t *path = malloc(((size_t)r->max_depth + 1) * sizeof *path);
    uint64_t weight = p->period_usec > 0 && p->period_usec <= MAX_PERIOD_US
                      ? p->period_usec : 1;
    char nm[REPORT_NAME_CAP];
    int rc = -1;

    if (!path || (r->samples &&
        (!(th = malloc(r->samples * sizeof *th)) ||
         !(order = malloc(r->samples * sizeof *order)))) ||
        !(start = calloc(r->n_tids + 1, sizeof *start)))
        goto out;
    if (r->samples && thread_of_samples(r, th) < 0)
        goto out;
    /* counting sort by thread, stable: log order inside each thread */
    for (size_t i = 0; i < r->samples; i++)
        start[th[i] + 1]++;
    for (size_t t = 0; t < r->n_tids; t++)
        start[t + 1] += start[t];
    for (size_t i = 0; i < r->samples; i++)
        order[start[th[i]]++] = i;
    for (size_t t = r->n_tids; t > 0; t--)     /* start[t] back to begin */
        start[t] = start[t - 1];
    start[0] = 0;

    fputs("{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\n"
          "\"shared\":", f);
    write_frames(f, r, r->nodes[0].self > 0);
    fputs(",\n\"profiles\":[", f);
    for (size_t t = 0; t < r->n_tids; t++) {
        size_t n = start[t + 1] - start[t];
        if (!n)
            continue;
        fputs(n_prof++ ? ",\n" : "\n", f);
        write_profile(f, r, r->tids[t], order + start[t], n, weight, path);
    }
    if (!n_prof)                /* speedscope wants a profile to show */
        fputs("\n{\"type\":\"sampled\",\"name\":\"no samples\",\"unit\":\"none\","
              "\"startValue\":0,\"endValue\":0,\"samples\":[],\"weights\":[]}", f);
    fputs("],\n\"name\":", f);
    vmprof_escape_name(nm, sizeof nm, name ? name : "vmprof profile");
    json_str(f, nm);
    fputs(",\"activeProfileIndex\":0,\"exporter\":\"vmprof-report\"}\n", f);
    rc = 0;
out:
    free(th);
    free(order);
    free(start);
    free(path);
    return rc == 0 && !ferror(f) ? 0 : -1;
}
