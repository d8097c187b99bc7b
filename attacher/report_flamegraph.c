/*
 * report_flamegraph.c - a self-contained interactive SVG flame graph of a
 * report (API: report.h; the script and style: report_flamegraph_js.c).
 *
 * Layout: one row per stack depth, the root ("all") at the bottom; a
 * frame's width is its share of the samples; children sit left to right
 * by name (as flamegraph.pl does), so graphs of two runs line up. Frames
 * narrower than MIN_PX are left out with everything above them (their
 * samples still count in their callers), and rows stop at MAX_ROWS: both
 * bound the file for any log. Everything renders without the script:
 * static rectangles, labels cut to fit, a <title> tooltip per frame.
 *
 * The output is well-formed XML whatever the log says: names are valid
 * UTF-8 without control characters (report.c), and xml_text escapes the
 * markup characters and drops the two code points XML forbids there
 * (U+FFFE, U+FFFF). Nothing is loaded from outside the file.
 */
#include "report_model.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"      /* vmprof_escape_name */

#define NONE REPORT_NONE
#define PAD 10                  /* left and right margin */
#define FRAME_H 16
#define TOP 76                  /* title, subtitle, controls */
#define BOTTOM 28               /* the details line */
#define CHAR_W 6.6              /* 11px monospace */
#define MIN_PX 0.1
#define MAX_ROWS 1024

struct fg {
    FILE *f;
    const struct report *r;
    unsigned w, rows;
    double scale;               /* pixels per sample */
    int cut_deep;               /* some stack went past MAX_ROWS */
};

/* Writes s escaped for XML text and attributes, at most max_cp code
 * points of it. */
static void xml_text(FILE *f, const char *s, size_t max_cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t cp = 0;

    for (; *u; u++) {
        if ((*u & 0xc0) != 0x80 && cp++ == max_cp)
            break;
        if (u[0] == 0xef && u[1] == 0xbf && (u[2] == 0xbe || u[2] == 0xbf)) {
            fputc('?', f);          /* U+FFFE, U+FFFF: not XML characters */
            u += 2;
            continue;
        }
        switch (*u) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            fputc(*u < 0x20 ? '?' : *u, f);
        }
    }
}

static size_t code_points(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* "name (dir/file:line)" -> "name (file:line)", as the script's shortName. */
static void short_label(const char *disp, char *out, size_t cap)
{
    const char *open = strrchr(disp, '('), *slash = NULL;
    size_t len = strlen(disp);

    if (open && len && disp[len - 1] == ')') {
        for (const char *q = open + 1; q < disp + len - 1; q++) {
            if (*q == '(' || *q == ')') {
                slash = NULL;
                break;
            }
            if (*q == '/')
                slash = q;
        }
    }
    if (!slash) {
        snprintf(out, cap, "%s", disp);
        return;
    }
    snprintf(out, cap, "%.*s%s", (int)(open - disp + 1), disp, slash + 1);
}

/* ---- colours ------------------------------------------------------------- */

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static double hue2rgb(double p, double q, double t)
{
    if (t < 0)
        t += 1;
    if (t > 1)
        t -= 1;
    if (t < 1.0 / 6)
        return p + (q - p) * 6 * t;
    if (t < 0.5)
        return q;
    if (t < 2.0 / 3)
        return p + (q - p) * (2.0 / 3 - t) * 6;
    return p;
}

static void put_hsl(FILE *f, double h, double s, double l)
{
    double q = l < 0.5 ? l * (1 + s) : l + s - l * s, p = 2 * l - q;
    fprintf(f, "rgb(%d,%d,%d)", (int)(255 * hue2rgb(p, q, h / 360 + 1.0 / 3)),
            (int)(255 * hue2rgb(p, q, h / 360)),
            (int)(255 * hue2rgb(p, q, h / 360 - 1.0 / 3)));
}

/* VM code in yellows and oranges, native code in reds, the root grey; the
 * shade comes from the function's name, so it is stable across graphs. */
static void put_colour(FILE *f, const struct report *r, uint32_t fn)
{
    uint64_t h;
    double v, v2;

    if (fn == NONE) {
        fputs("rgb(200,200,200)", f);
        return;
    }
    h = hash(r->fns[fn].name);
    v = (double)(h & 0xffff) / 65535.0;
    v2 = (double)((h >> 16) & 0xffff) / 65535.0;
    if (r->fns[fn].native)
        put_hsl(f, 2 + 16 * v, 0.72, 0.60 + 0.08 * v2);
    else
        put_hsl(f, 30 + 24 * v, 0.88, 0.56 + 0.10 * v2);
}

/* ---- frames ---------------------------------------------------------------- */

static void put_frame(struct fg *g, uint32_t node, uint64_t s)
{
    const struct report *r = g->r;
    const struct rnode *nd = &r->nodes[node];
    const char *disp = node ? r->fns[nd->fn].disp : "all";
    double x = PAD + (double)s * g->scale, w = (double)nd->count * g->scale;
    double y = TOP + (double)(g->rows - 1 - nd->depth) * FRAME_H;
    char lab[3 * REPORT_NAME_CAP];
    long room = (long)((w - 6) / CHAR_W);
    size_t n;

    fprintf(g->f, "<g class=\"f%s\" data-s=\"%" PRIu64 "\" data-n=\"%" PRIu64
            "\"><title>", node ? "" : " root", s, nd->count);
    xml_text(g->f, disp, SIZE_MAX);
    fprintf(g->f, "\n%" PRIu64 " sample%s, %.2f%%", nd->count,
            nd->count == 1 ? "" : "s", report_pct(nd->count, r->samples));
    if (nd->self)
        fprintf(g->f, " (self %" PRIu64 ")", nd->self);
    if (nd->rec)
        fprintf(g->f, ", recursion %" PRIu32 " deep folded", nd->rec + 1);
    fprintf(g->f, "</title><rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" "
            "height=\"%d\" rx=\"2\" fill=\"", x, y, w, FRAME_H - 1);
    put_colour(g->f, r, nd->fn);
    fprintf(g->f, "\"/><text x=\"%.2f\" y=\"%.0f\">", x + 3, y + 11);
    short_label(disp, lab, sizeof lab);
    n = code_points(lab);
    if (room >= 3 && n <= (size_t)room)
        xml_text(g->f, lab, SIZE_MAX);
    else if (room >= 3) {
        xml_text(g->f, lab, (size_t)room - 2);
        fputs("..", g->f);
    }
    fputs("</text></g>\n", g->f);
}

/* Every frame wide enough, depth first; stack entries are (node, first
 * sample) pairs, each node pushed at most once. */
static int put_frames(struct fg *g)
{
    const struct report *r = g->r;
    uint32_t *st = malloc(r->n_nodes * sizeof *st);
    uint64_t *ss = malloc(r->n_nodes * sizeof *ss);
    size_t sp = 0;
    int rc = -1;

    if (!st || !ss)
        goto out;
    st[sp] = 0;
    ss[sp++] = 0;
    while (sp) {
        uint32_t node = st[--sp], *c;
        uint64_t s = ss[sp], at;
        size_t n;

        if ((double)r->nodes[node].count * g->scale < MIN_PX)
            continue;
        if (r->nodes[node].depth >= MAX_ROWS) {
            g->cut_deep = 1;
            continue;
        }
        put_frame(g, node, s);
        c = report_children(r, node, 0, &n);
        if (n == 0 && r->nodes[node].first_child != NONE)
            goto out;               /* out of memory */
        at = s;
        for (size_t i = 0; i < n; i++) {
            st[sp] = c[i];
            ss[sp++] = at;
            at += r->nodes[c[i]].count;
        }
        free(c);
    }
    rc = 0;
out:
    free(st);
    free(ss);
    return rc;
}

/* ---- the document ------------------------------------------------------------- */

static void put_escaped_arg(FILE *f, const char *s)
{
    char buf[1024];
    vmprof_escape_name(buf, sizeof buf, s);     /* command-line text: any bytes */
    xml_text(f, buf, SIZE_MAX);
}

static void put_head(struct fg *g, const struct report_svg_opts *o,
                     unsigned height)
{
    FILE *f = g->f;
    unsigned w = g->w, sx = w - PAD - 250;

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
            "width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" data-w=\"%u\" "
            "data-pad=\"%d\" data-cw=\"%.1f\" data-total=\"%" PRIu64 "\">\n",
            w, height, w, height, w, PAD, CHAR_W, g->r->samples);
    fprintf(f, "<style type=\"text/css\"><![CDATA[\n%s]]></style>\n",
            report_flamegraph_style);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fbfaf5\"/>\n");
    fprintf(f, "<text id=\"title\" x=\"%u\" y=\"24\">", w / 2);
    put_escaped_arg(f, o && o->title ? o->title : "Flame graph");
    fprintf(f, "</text>\n<text id=\"subtitle\" x=\"%u\" y=\"42\">", w / 2);
    if (o && o->subtitle)
        put_escaped_arg(f, o->subtitle);
    if (g->cut_deep)
        fprintf(f, "%sstacks cut at %d frames", o && o->subtitle ? "; " : "",
                MAX_ROWS);
    fprintf(f, "</text>\n<text id=\"reset\" x=\"%d\" y=\"64\">Reset zoom</text>\n",
            PAD);
    fprintf(f, "<rect x=\"%d\" y=\"54\" width=\"12\" height=\"12\" fill=\"", PAD + 90);
    put_hsl(f, 42, 0.88, 0.61);
    fprintf(f, "\"/><text x=\"%d\" y=\"64\">VM code</text>\n", PAD + 106);
    fprintf(f, "<rect x=\"%d\" y=\"54\" width=\"12\" height=\"12\" fill=\"", PAD + 170);
    put_hsl(f, 10, 0.72, 0.64);
    fprintf(f, "\"/><text x=\"%d\" y=\"64\">native</text>\n", PAD + 186);
    fprintf(f, "<text x=\"%d\" y=\"64\" fill=\"#666\">click: zoom, "
            "Esc: reset, /: search</text>\n", PAD + 250);
    fprintf(f, "<text id=\"matched\" x=\"%u\" y=\"64\"></text>\n", sx - 8);
    fprintf(f, "<foreignObject x=\"%u\" y=\"50\" width=\"250\" height=\"22\">"
            "<input xmlns=\"http://www.w3.org/1999/xhtml\" id=\"search\" "
            "type=\"search\" placeholder=\"search (regex)\"/></foreignObject>\n",
            sx);
}

int report_write_flamegraph(FILE *f, const struct report *r,
                            const struct report_svg_opts *o)
{
    struct fg g = { .f = f, .r = r, .w = o && o->width ? o->width : 1200 };
    unsigned height;
    int rc = 0;

    if (g.w < 600)
        g.w = 600;
    if (g.w > 100000)
        g.w = 100000;
    g.rows = (r->max_depth < MAX_ROWS ? r->max_depth : MAX_ROWS - 1) + 1;
    g.cut_deep = r->max_depth >= MAX_ROWS;
    g.scale = r->samples ? (double)(g.w - 2 * PAD) / (double)r->samples : 0;
    height = TOP + g.rows * FRAME_H + BOTTOM;
    put_head(&g, o, height);
    fputs("<g id=\"frames\">\n", f);
    if (r->samples)
        rc = put_frames(&g);
    else
        fprintf(f, "<text x=\"%u\" y=\"%d\">no samples</text>\n", g.w / 2,
                TOP + 12);
    fprintf(f, "</g>\n<text id=\"details\" x=\"%d\" y=\"%u\"> </text>\n", PAD,
            height - 10);
    fprintf(f, "<script type=\"text/ecmascript\"><![CDATA[\n%s]]></script>\n"
            "</svg>\n", report_flamegraph_script);
    return rc == 0 && !ferror(f) ? 0 : -1;
}
