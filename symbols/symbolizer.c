/*
 * symbolizer.c - the public resolver: target address -> name, object,
 * file:line. Ties together maps, ELF objects, DWARF lines and perf maps.
 *
 * Invariants:
 *   - each (path, inode) is loaded at most once per symbolizer and stays
 *     cached until sym_close, across sym_update_maps;
 *   - map_obj[i] caches the object of mapping i (NULL until first asked),
 *     so an address costs a binary search in the maps plus one in a symbol
 *     table;
 *   - every string handed out (names, objects, files) lives until
 *     sym_close: names point into object tables or into an intern set, so
 *     repeated lookups of an address allocate nothing;
 *   - a name is never a guess: outside any sized symbol it reads
 *     "sym+0xOFF" (and sym_resolve returns 1), with nothing known "0xADDR".
 * Not thread-safe: one symbolizer belongs to one thread at a time.
 */
#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dwarf_lines.h"
#include "elf_object.h"
#include "intern.h"

#define VDSO_MAX (1u << 20)           /* a vdso bigger than this is not one */
#define PERFMAP_MAX_BYTES (512u << 20)

struct symbolizer {
    pid_t pid;
    char *root, *debug_dir;
    struct sym_maps maps;             /* our own deep copy */
    struct elf_object **map_obj;      /* per mapping, NULL = not looked up */
    struct elf_object **objs;         /* every object loaded, owned */
    size_t nobjs, capobjs;
    struct elf_object *vdso;
    int vdso_tried;
    struct intern_set strs;
    struct sym_perfmap_file pm;       /* the target's perf map (JIT code) */
};

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static int copy_maps(struct sym_maps *dst, const struct sym_maps *src)
{
    dst->v = calloc(src->n ? src->n : 1, sizeof *dst->v);
    dst->n = 0;
    if (!dst->v) return -1;
    for (size_t i = 0; i < src->n; i++) {
        dst->v[i] = src->v[i];
        dst->v[i].path = dup_str(src->v[i].path);
        if (!dst->v[i].path) { sym_maps_free(dst); return -1; }
        dst->n++;
    }
    return 0;
}

struct symbolizer *sym_open(pid_t pid, const struct sym_maps *maps,
                            const char *root, const char *debug_dir)
{
    struct symbolizer *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->pid = pid;
    if (root) s->root = strdup(root);
    else if (asprintf(&s->root, "/proc/%d/root", (int)pid) < 0) s->root = NULL;
    s->debug_dir = strdup(debug_dir ? debug_dir : "/usr/lib/debug");
    if (!s->root || !s->debug_dir || sym_perfmap_file_open(&s->pm, pid, s->root) != 0 ||
        sym_update_maps(s, maps) != 0) {
        sym_close(s);
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

int sym_update_maps(struct symbolizer *s, const struct sym_maps *maps)
{
    struct sym_maps copy;
    struct elf_object **mo;
    if (copy_maps(&copy, maps) != 0) { errno = ENOMEM; return -1; }
    mo = calloc(copy.n ? copy.n : 1, sizeof *mo);
    if (!mo) { sym_maps_free(&copy); errno = ENOMEM; return -1; }
    sym_maps_free(&s->maps);
    free(s->map_obj);
    s->maps = copy;
    s->map_obj = mo;
    return 0;
}

void sym_close(struct symbolizer *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->nobjs; i++)
        elf_object_free(s->objs[i]);
    free(s->objs);
    elf_object_free(s->vdso);
    free(s->map_obj);
    sym_maps_free(&s->maps);
    sym_perfmap_file_close(&s->pm);
    intern_free(&s->strs);
    free(s->root);
    free(s->debug_dir);
    free(s);
}

/* ---- objects ---------------------------------------------------------- */

static struct elf_object *object_for(struct symbolizer *s, const struct sym_mapping *m)
{
    size_t idx = (size_t)(m - s->maps.v);
    char alt[96];
    struct elf_object *o;
    if (s->map_obj[idx]) return s->map_obj[idx];
    for (size_t i = 0; i < s->nobjs; i++) {
        if (s->objs[i]->inode == m->inode && strcmp(s->objs[i]->path, m->path) == 0)
            return s->map_obj[idx] = s->objs[i];
    }
    if (s->nobjs == s->capobjs) {
        size_t ncap = s->capobjs ? s->capobjs * 2 : 32;
        struct elf_object **no = realloc(s->objs, ncap * sizeof *no);
        if (!no) return NULL;
        s->objs = no;
        s->capobjs = ncap;
    }
    snprintf(alt, sizeof alt, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64,
             (int)s->pid, m->start, m->end);
    struct elf_open_args a = {
        .root = s->root, .path = m->path, .inode = m->inode,
        .dev = makedev(m->dev_major, m->dev_minor),
        .alt_path = s->pid > 0 ? alt : NULL, .debug_dir = s->debug_dir,
    };
    o = elf_object_open(&a);
    if (!o) return NULL;
    s->objs[s->nobjs++] = o;
    return s->map_obj[idx] = o;
}

/* The vdso image is read out of the target (it has no file). */
static struct elf_object *vdso_for(struct symbolizer *s, const struct sym_mapping *m)
{
    size_t size = (size_t)(m->end - m->start);
    void *buf;
    if (s->vdso_tried) return s->vdso;
    s->vdso_tried = 1;
    if (s->pid <= 0 || size == 0 || size > VDSO_MAX || !(buf = malloc(size)))
        return NULL;
    struct iovec local = { buf, size }, remote = { (void *)(uintptr_t)m->start, size };
    if (process_vm_readv(s->pid, &local, 1, &remote, 1, 0) == (ssize_t)size)
        s->vdso = elf_object_from_image("[vdso]", buf, size);
    free(buf);
    if (s->vdso && !s->vdso->usable) {
        elf_object_free(s->vdso);
        s->vdso = NULL;
    }
    return s->vdso;
}

/* ---- resolution ------------------------------------------------------- */

__attribute__((format(printf, 2, 3)))
static const char *fmt_name(struct symbolizer *s, const char *fmt, ...)
{
    char buf[1024];
    const char *r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r = intern_str(&s->strs, buf);
    return r ? r : "?";
}

static const char *keep(struct symbolizer *s, const char *str)
{
    const char *r = intern_str(&s->strs, str);
    return r ? r : "";
}

static void add_lines(struct elf_object *o, uint64_t vaddr, struct sym_result *out)
{
    if (o->dwarf_fd < 0 || o->lines_failed) return;
    if (!o->lines && !(o->lines = dwarf_lines_open(o->dwarf_fd))) {
        o->lines_failed = 1;
        return;
    }
    if (dwarf_lines_find(o->lines, vaddr, &out->file, &out->line) != 0) {
        out->file = NULL;
        out->line = 0;
    }
}

/* Name addr from an ELF object; 0 exact, 1 offset name, -1 nothing. */
static int resolve_elf(struct symbolizer *s, struct elf_object *o, const struct sym_mapping *m,
                       uint64_t addr, int with_lines, struct sym_result *out)
{
    struct elf_hit hit;
    uint64_t vaddr;
    if (!o || !o->usable || elf_object_to_vaddr(o, m->start, m->offset, addr, &vaddr) != 0)
        return -1;
    out->object = o->path;
    if (with_lines) add_lines(o, vaddr, out);
    if (elf_object_lookup(o, vaddr, &hit) != 0) return -1;
    out->source = hit.source;
    if (hit.exact) {
        out->name = hit.name;
        out->sym_start = addr - (vaddr - hit.sym_addr);
        return 0;
    }
    out->name = fmt_name(s, "%s+0x%" PRIx64, hit.name, vaddr - hit.sym_addr);
    return 1;
}

int sym_resolve(struct symbolizer *s, uint64_t addr, int with_lines, struct sym_result *out)
{
    const struct sym_mapping *m = sym_maps_find(&s->maps, addr);
    struct elf_object *o = NULL;
    int rc = -1;
    memset(out, 0, sizeof *out);
    out->object = "";
    if (m && m->path[0] == '/')
        rc = resolve_elf(s, (o = object_for(s, m)), m, addr, with_lines, out);
    else if (m && strcmp(m->path, "[vdso]") == 0)
        rc = resolve_elf(s, vdso_for(s, m), m, addr, 0, out);
    if (rc >= 0) return rc;
    /* JIT code: anonymous mappings, or files that are not ELF (memfd). */
    if (!o || !o->usable) {
        const struct sym_perfmap_entry *e;
        sym_perfmap_file_refresh(&s->pm, PERFMAP_MAX_BYTES);
        if ((e = sym_perfmap_find(&s->pm.pm, addr)) != NULL) {
            out->name = keep(s, e->name);
            out->sym_start = e->start;
            out->source = SYM_SRC_PERFMAP;
            if (m) out->object = keep(s, m->path);
            return 0;
        }
    }
    out->source = SYM_SRC_NONE;
    if (m) out->object = keep(s, m->path);
    if (m && (!strcmp(m->path, "[vdso]") || !strcmp(m->path, "[vsyscall]")))
        out->name = keep(s, m->path);
    else
        out->name = fmt_name(s, "0x%" PRIx64, addr);
    return 1;
}
