/*
 * report_collapsed.c - collapsed stacks ("outer;mid;inner count"), the
 * text format flamegraph.pl, speedscope and most flame graph tools import
 * (API: report.h).
 *
 * One line per tree node with self samples: the display names from the
 * root down, joined by ';', a space, the count. Names never hold ';'
 * (shown as U+FF1B FULLWIDTH SEMICOLON) nor line breaks (report.c made
 * control characters '?'), so every line splits back into the same frames.
 * Lines come in tree order, children by name: the output is sorted and
 * stable for a given log. The counts add up to report_samples().
 */
#include "report_model.h"

#include <inttypes.h>
#include <stdlib.h>

#define NONE REPORT_NONE

static void put_frame(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == ';')
            fputs("\xef\xbc\x9b", f);
        else if ((unsigned char)*s < 0x20)
            fputc('?', f);          /* never happens: report.c escaped it */
        else
            fputc(*s, f);
    }
}

static void put_stack(FILE *f, const struct report *r, uint32_t node,
                      uint32_t *path)
{
    uint32_t n = 0;

    for (uint32_t at = node; at != 0; at = r->nodes[at].parent)
        path[n++] = at;
    while (n--) {
        put_frame(f, r->fns[r->nodes[path[n]].fn].disp);
        if (n)
            fputc(';', f);
    }
    fprintf(f, " %" PRIu64 "\n", r->nodes[node].self);
}

int report_write_collapsed(FILE *f, const struct report *r)
{
    uint32_t *stack = malloc(r->n_nodes * sizeof *stack);
    uint32_t *path = malloc(((size_t)r->max_depth + 1) * sizeof *path);
    size_t sp = 0;
    int rc = -1;

    if (!stack || !path)
        goto out;
    if (r->nodes[0].self)
        fprintf(f, "(no frames) %" PRIu64 "\n", r->nodes[0].self);
    stack[sp++] = 0;
    while (sp) {
        uint32_t node = stack[--sp], *c;
        size_t n;

        if (node != 0 && r->nodes[node].self)
            put_stack(f, r, node, path);
        c = report_children(r, node, 0, &n);
        if (n == 0 && r->nodes[node].first_child != NONE)
            goto out;               /* out of memory */
        while (n--)                 /* first name on top */
            stack[sp++] = c[n];
        free(c);
    }
    rc = 0;
out:
    free(stack);
    free(path);
    return rc == 0 && !ferror(f) ? 0 : -1;
}
