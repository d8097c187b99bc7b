/*
 * dwarf_lines.c - address -> file:line over libdwarf (20210528, old API).
 *
 * Line tables are big (Debian's python3.11 debug file has ~300 units and
 * over a million rows), and a profile needs lines for a few thousand
 * addresses, so nothing is parsed up front:
 *   - .debug_aranges (when present) says which compilation unit covers an
 *     address; that unit's line table is parsed the first time it is hit
 *     and kept as a sorted row table;
 *   - units that aranges does not cover (or all units, when there is no
 *     .debug_aranges, as with clang) are parsed together, once, into one
 *     "rest" table, the first time an address misses aranges.
 * Row tables hold one row per address where a line starts, plus an end
 * row where each sequence ends, sorted by address; a lookup is a binary
 * search for the last row at or below the address: an end row means no
 * line. Sequences that start at address 0 are code the linker discarded
 * and are dropped. File names are interned, rows carry a 32-bit index.
 */
#include "dwarf_lines.h"

#include <libdwarf.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"

#define END_ROW UINT32_MAX      /* file index of a sequence-end row */
#define FILENO_CACHE_MAX 65536  /* larger file numbers are not cached */

struct dl_row { uint64_t addr; uint32_t file; uint32_t line; };
struct dl_table { struct dl_row *v; size_t n, cap; };
struct dl_unit { Dwarf_Off die_off; int state; struct dl_table t; };  /* state: 0 new, 1 ok, -1 bad */
struct dl_range { uint64_t start, end; size_t unit; };

struct dwarf_lines {
    Dwarf_Debug dbg;
    struct intern_set names;
    const char **files;         /* file index -> interned name */
    size_t nfiles, capfiles;
    struct dl_unit *units;      /* sorted by die_off */
    size_t nunits;
    struct dl_range *ranges;    /* sorted by start */
    size_t nranges;
    struct dl_table rest;
    int rest_state;
};

static void drop_error(Dwarf_Debug dbg, Dwarf_Error *err)
{
    if (*err) {
        dwarf_dealloc_error(dbg, *err);
        *err = NULL;
    }
}

static int push_row(struct dl_table *t, uint64_t addr, uint32_t file, uint32_t line)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 256;
        struct dl_row *nv = realloc(t->v, ncap * sizeof *nv);
        if (!nv) return -1;
        t->v = nv;
        t->cap = ncap;
    }
    t->v[t->n].addr = addr;
    t->v[t->n].file = file;
    t->v[t->n].line = line;
    t->n++;
    return 0;
}

/* Global index of the file of line l (interned), or END_ROW on failure. */
static uint32_t file_index(struct dwarf_lines *dl, Dwarf_Line l)
{
    char *src = NULL;
    Dwarf_Error err = NULL;
    const char *s;
    if (dwarf_linesrc(l, &src, &err) != DW_DLV_OK) {
        drop_error(dl->dbg, &err);
        return END_ROW;
    }
    s = intern_str(&dl->names, src);
    dwarf_dealloc(dl->dbg, src, DW_DLA_STRING);
    if (!s) return END_ROW;
    if (dl->nfiles == dl->capfiles) {
        size_t ncap = dl->capfiles ? dl->capfiles * 2 : 64;
        const char **nf = realloc(dl->files, ncap * sizeof *nf);
        if (!nf) return END_ROW;
        dl->files = nf;
        dl->capfiles = ncap;
    }
    if (dl->nfiles >= END_ROW) return END_ROW;
    dl->files[dl->nfiles] = s;
    return (uint32_t)dl->nfiles++;
}

/* Append the rows of one line table to t. Per unit, each DWARF file
 * number is turned into a global index once (cache[]). */
static int add_lines(struct dwarf_lines *dl, Dwarf_Line *lines, Dwarf_Signed count,
                     struct dl_table *t)
{
    uint32_t *cache = NULL;
    size_t ncache = 0;
    int skipping = 0, at_start = 1, rc = 0;
    for (Dwarf_Signed i = 0; i < count && rc == 0; i++) {
        Dwarf_Addr addr = 0;
        Dwarf_Unsigned lineno = 0, fileno = 0;
        Dwarf_Bool end = 0;
        Dwarf_Error err = NULL;
        uint32_t fidx;
        if (dwarf_lineaddr(lines[i], &addr, &err) != DW_DLV_OK ||
            dwarf_lineendsequence(lines[i], &end, &err) != DW_DLV_OK) {
            drop_error(dl->dbg, &err);
            continue;
        }
        if (at_start) skipping = addr == 0;
        at_start = end != 0;
        if (skipping) continue;
        if (end) {
            rc = push_row(t, addr, END_ROW, 0);
            continue;
        }
        if (dwarf_lineno(lines[i], &lineno, &err) != DW_DLV_OK ||
            dwarf_line_srcfileno(lines[i], &fileno, &err) != DW_DLV_OK) {
            drop_error(dl->dbg, &err);
            continue;
        }
        if (fileno < FILENO_CACHE_MAX) {
            if (fileno >= ncache) {
                size_t nn = (size_t)fileno + 16;
                uint32_t *nc = realloc(cache, nn * sizeof *nc);
                if (!nc) { rc = -1; break; }
                for (size_t k = ncache; k < nn; k++) nc[k] = END_ROW;
                cache = nc;
                ncache = nn;
            }
            if (cache[fileno] == END_ROW) cache[fileno] = file_index(dl, lines[i]);
            fidx = cache[fileno];
        } else {
            fidx = file_index(dl, lines[i]);
        }
        if (fidx == END_ROW) continue;
        /* A row at the same address as the previous one replaces it. */
        if (t->n && t->v[t->n - 1].addr == addr && t->v[t->n - 1].file != END_ROW)
            t->n--;
        rc = push_row(t, addr, fidx, lineno > INT32_MAX ? 0 : (uint32_t)lineno);
    }
    free(cache);
    return rc;
}

/* Parse the line table of one CU DIE into t (rows appended, unsorted). */
static int parse_cu_die(struct dwarf_lines *dl, Dwarf_Die die, struct dl_table *t)
{
    Dwarf_Unsigned version = 0;
    Dwarf_Small table_count = 0;
    Dwarf_Line_Context ctx = NULL;
    Dwarf_Line *lines = NULL;
    Dwarf_Signed count = 0;
    Dwarf_Error err = NULL;
    int rc = 0;
    int res = dwarf_srclines_b(die, &version, &table_count, &ctx, &err);
    if (res != DW_DLV_OK) {
        drop_error(dl->dbg, &err);
        return 0;                        /* no line table: nothing to add */
    }
    if (dwarf_srclines_from_linecontext(ctx, &lines, &count, &err) == DW_DLV_OK)
        rc = add_lines(dl, lines, count, t);
    drop_error(dl->dbg, &err);
    dwarf_srclines_dealloc_b(ctx);
    return rc;
}

static int cmp_row(const void *a, const void *b)
{
    const struct dl_row *x = a, *y = b;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    /* At one address an end row sorts first: the next sequence wins. */
    return (x->file != END_ROW) - (y->file != END_ROW);
}

static void sort_table(struct dl_table *t)
{
    if (t->n > 1) qsort(t->v, t->n, sizeof *t->v, cmp_row);
}

static int table_find(const struct dl_table *t, uint64_t vaddr, const struct dl_row **row)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {                    /* first row with addr > vaddr */
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid].addr <= vaddr) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0 || t->v[lo - 1].file == END_ROW) return -1;
    *row = &t->v[lo - 1];
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const struct dl_range *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return 0;
}

static int cmp_off(const void *a, const void *b)
{
    Dwarf_Off x = *(const Dwarf_Off *)a, y = *(const Dwarf_Off *)b;
    return x < y ? -1 : x > y;
}

static long unit_by_off(const struct dwarf_lines *dl, Dwarf_Off off)
{
    size_t lo = 0, hi = dl->nunits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dl->units[mid].die_off < off) lo = mid + 1;
        else hi = mid;
    }
    return lo < dl->nunits && dl->units[lo].die_off == off ? (long)lo : -1;
}

/* Read .debug_aranges into units[] and ranges[]; without it both stay
 * empty and every lookup goes to the rest table. */
static void load_aranges(struct dwarf_lines *dl)
{
    Dwarf_Arange *ar = NULL;
    Dwarf_Signed count = 0;
    Dwarf_Error err = NULL;
    Dwarf_Off *offs = NULL;
    size_t n = 0, nu = 0;
    if (dwarf_get_aranges(dl->dbg, &ar, &count, &err) != DW_DLV_OK || count <= 0) {
        drop_error(dl->dbg, &err);
        return;
    }
    dl->ranges = malloc((size_t)count * sizeof *dl->ranges);
    offs = malloc((size_t)count * sizeof *offs);
    for (Dwarf_Signed i = 0; i < count; i++) {
        Dwarf_Unsigned seg = 0, segsz = 0, len = 0;
        Dwarf_Addr start = 0;
        Dwarf_Off cu = 0;
        if (dl->ranges && offs &&
            dwarf_get_arange_info_b(ar[i], &seg, &segsz, &start, &len, &cu, &err) == DW_DLV_OK &&
            start != 0 && len != 0 && start + len > start) {
            dl->ranges[n].start = start;
            dl->ranges[n].end = start + len;
            dl->ranges[n].unit = 0;
            offs[n++] = cu;
        }
        drop_error(dl->dbg, &err);
        dwarf_dealloc(dl->dbg, ar[i], DW_DLA_ARANGE);
    }
    dwarf_dealloc(dl->dbg, ar, DW_DLA_LIST);
    if (!dl->ranges || !offs || n == 0) goto fail;
    /* Offsets of distinct units, sorted; then each range learns its unit. */
    Dwarf_Off *sorted = malloc(n * sizeof *sorted);
    if (!sorted) goto fail;
    memcpy(sorted, offs, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_off);
    dl->units = calloc(n, sizeof *dl->units);
    if (!dl->units) { free(sorted); goto fail; }
    for (size_t i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[i - 1])
            dl->units[nu++].die_off = sorted[i];
    dl->nunits = nu;
    free(sorted);
    for (size_t i = 0; i < n; i++)
        dl->ranges[i].unit = (size_t)unit_by_off(dl, offs[i]);
    dl->nranges = n;
    qsort(dl->ranges, n, sizeof *dl->ranges, cmp_range);
    free(offs);
    return;
fail:
    free(offs);
    free(dl->ranges);
    free(dl->units);
    dl->ranges = NULL;
    dl->units = NULL;
    dl->nranges = dl->nunits = 0;
}

struct dwarf_lines *dwarf_lines_open(int fd)
{
    struct dwarf_lines *dl = calloc(1, sizeof *dl);
    Dwarf_Error err = NULL;
    if (!dl) return NULL;
    if (dwarf_init_b(fd, DW_DLC_READ, DW_GROUPNUMBER_ANY, NULL, NULL, &dl->dbg, &err) != DW_DLV_OK) {
        if (err) dwarf_dealloc_error(NULL, err);
        free(dl);
        return NULL;
    }
    load_aranges(dl);
    return dl;
}

static struct dl_unit *unit_for(struct dwarf_lines *dl, uint64_t vaddr)
{
    size_t lo = 0, hi = dl->nranges;
    /* Ranges may overlap (bad input); take the last one starting at or
     * below vaddr and check it, like the other tables here. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dl->ranges[mid].start <= vaddr) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0 || vaddr >= dl->ranges[lo - 1].end) return NULL;
    return &dl->units[dl->ranges[lo - 1].unit];
}

static void parse_unit(struct dwarf_lines *dl, struct dl_unit *u)
{
    Dwarf_Die die = NULL;
    Dwarf_Error err = NULL;
    u->state = -1;
    if (dwarf_offdie_b(dl->dbg, u->die_off, 1, &die, &err) != DW_DLV_OK) {
        drop_error(dl->dbg, &err);
        return;
    }
    if (parse_cu_die(dl, die, &u->t) == 0) {
        sort_table(&u->t);
        u->state = 1;
    }
    dwarf_dealloc_die(die);
}

/* Every unit that aranges does not name, parsed into one table. Walks
 * the unit headers once; libdwarf bounds that walk by the section size. */
static void parse_rest(struct dwarf_lines *dl)
{
    Dwarf_Error err = NULL;
    dl->rest_state = -1;
    for (;;) {
        Dwarf_Unsigned hlen = 0, abbrev = 0, next = 0, typeoff = 0;
        Dwarf_Half ver = 0, asz = 0, lsz = 0, esz = 0, cutype = 0;
        Dwarf_Sig8 sig;
        Dwarf_Die die = NULL;
        Dwarf_Off off = 0;
        int res = dwarf_next_cu_header_d(dl->dbg, 1, &hlen, &ver, &abbrev, &asz, &lsz, &esz,
                                         &sig, &typeoff, &next, &cutype, &err);
        if (res != DW_DLV_OK) {
            drop_error(dl->dbg, &err);
            break;
        }
        if (dwarf_siblingof_b(dl->dbg, NULL, 1, &die, &err) != DW_DLV_OK) {
            drop_error(dl->dbg, &err);
            continue;
        }
        if (dwarf_dieoffset(die, &off, &err) == DW_DLV_OK && unit_by_off(dl, off) < 0 &&
            parse_cu_die(dl, die, &dl->rest) != 0) {
            dwarf_dealloc_die(die);
            return;                      /* out of memory: rest stays failed */
        }
        drop_error(dl->dbg, &err);
        dwarf_dealloc_die(die);
    }
    sort_table(&dl->rest);
    dl->rest_state = 1;
}

int dwarf_lines_find(struct dwarf_lines *dl, uint64_t vaddr, const char **file, int *line)
{
    const struct dl_row *row;
    struct dl_unit *u = unit_for(dl, vaddr);
    const struct dl_table *t = NULL;
    if (u) {
        if (u->state == 0) parse_unit(dl, u);
        if (u->state == 1) t = &u->t;
    } else {
        if (dl->rest_state == 0) parse_rest(dl);
        if (dl->rest_state == 1) t = &dl->rest;
    }
    if (!t || table_find(t, vaddr, &row) != 0) return -1;
    *file = dl->files[row->file];
    *line = (int)row->line;
    return 0;
}

void dwarf_lines_free(struct dwarf_lines *dl)
{
    Dwarf_Error err = NULL;
    if (!dl) return;
    for (size_t i = 0; i < dl->nunits; i++)
        free(dl->units[i].t.v);
    free(dl->units);
    free(dl->ranges);
    free(dl->rest.v);
    free(dl->files);
    intern_free(&dl->names);
    dwarf_finish(dl->dbg, &err);       /* an error here has no owner left */
    free(dl);
}
