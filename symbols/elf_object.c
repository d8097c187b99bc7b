/*
 * elf_object.c - load one mapped ELF object: segments, build-id, symbol
 * tables, separate debug file, and where its DWARF lives.
 *
 * Loading happens once per object and reads everything naming needs, then
 * closes the file, except for the one descriptor that DWARF will be read
 * from later (kept so that lines still resolve after the target exits).
 * Symbol sources, in the order they are consulted for an address:
 * the object's .symtab, the .symtab of a separate debug file (searched
 * only when the object has no .symtab, or has no DWARF of its own), then
 * .dynsym. A name is "exact" only when the address lies inside a sized
 * symbol; otherwise the caller gets the nearest preceding symbol and must
 * say it is an offset from it.
 * Every ELF here is untrusted: libelf does the bounds-checked reading, and
 * every count and string taken from it is checked again.
 */
#include "elf_object.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dwarf_lines.h"

#define MAX_LOADS 64            /* more PT_LOADs than this: not a sane ELF */
#define DEBUGLINK_MAX 4096

/* Facts read from the section headers of one ELF file. */
struct scn_facts {
    size_t symtab, dynsym;      /* section indexes, 0 = none */
    int has_dwarf;              /* .debug_info and .debug_line with data */
    char *debuglink;            /* malloc'd, or NULL */
    uint32_t debuglink_crc;
};

static void libelf_init(void)
{
    static int done;
    if (!done) {
        elf_version(EV_CURRENT);
        done = 1;
    }
}

/* .gnu_debuglink: NUL-terminated name, pad to 4, 4-byte CRC (file order). */
static void read_debuglink(Elf *e, Elf_Scn *scn, struct scn_facts *f)
{
    Elf_Data *d = elf_rawdata(scn, NULL);
    const unsigned char *p;
    size_t len, crc_at;
    if (!d || !d->d_buf || d->d_size < 8 || d->d_size > DEBUGLINK_MAX) return;
    p = d->d_buf;
    len = strnlen((const char *)p, d->d_size);
    crc_at = (len + 1 + 3) & ~(size_t)3;
    if (len == 0 || crc_at + 4 > d->d_size) return;
    f->debuglink = strndup((const char *)p, len);
    if (elf_getident(e, NULL)[EI_DATA] == ELFDATA2MSB)
        f->debuglink_crc = (uint32_t)p[crc_at] << 24 | (uint32_t)p[crc_at + 1] << 16 |
                           (uint32_t)p[crc_at + 2] << 8 | p[crc_at + 3];
    else
        f->debuglink_crc = (uint32_t)p[crc_at + 3] << 24 | (uint32_t)p[crc_at + 2] << 16 |
                           (uint32_t)p[crc_at + 1] << 8 | p[crc_at];
}

static int scan_sections(Elf *e, struct scn_facts *f)
{
    size_t shstrndx;
    int info = 0, line = 0;
    memset(f, 0, sizeof *f);
    if (elf_getshdrstrndx(e, &shstrndx) != 0) return -1;
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh)) continue;
        if (sh.sh_type == SHT_SYMTAB && !f->symtab) f->symtab = elf_ndxscn(scn);
        if (sh.sh_type == SHT_DYNSYM && !f->dynsym) f->dynsym = elf_ndxscn(scn);
        if (sh.sh_type == SHT_NOBITS || sh.sh_size == 0) continue;
        name = elf_strptr(e, shstrndx, sh.sh_name);
        if (!name) continue;
        if (!strcmp(name, ".debug_info") || !strcmp(name, ".zdebug_info")) info = 1;
        if (!strcmp(name, ".debug_line") || !strcmp(name, ".zdebug_line")) line = 1;
        if (!strcmp(name, ".gnu_debuglink") && !f->debuglink) read_debuglink(e, scn, f);
    }
    f->has_dwarf = info && line;
    return 0;
}

/* The GNU build-id from the first SHT_NOTE section that has one. */
static void read_build_id(Elf *e, unsigned char *out, size_t *len)
{
    *len = 0;
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        Elf_Data *d;
        GElf_Nhdr nh;
        size_t off = 0, next, name_off, desc_off;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
        if (!(d = elf_getdata(scn, NULL)) || !d->d_buf) continue;
        while ((next = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > off) {
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
                memcmp((const char *)d->d_buf + name_off, "GNU", 4) == 0 &&
                nh.n_descsz > 0 && nh.n_descsz <= 64) {
                memcpy(out, (const char *)d->d_buf + desc_off, nh.n_descsz);
                *len = nh.n_descsz;
                return;
            }
            off = next;
        }
    }
}

static int read_loads(Elf *e, struct elf_object *o)
{
    size_t n;
    if (elf_getphdrnum(e, &n) != 0) return -1;
    o->loads = calloc(MAX_LOADS, sizeof *o->loads);
    if (!o->loads) return -1;
    for (size_t i = 0; i < n && o->nloads < MAX_LOADS; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD) continue;
        o->loads[o->nloads].offset = ph.p_offset;
        o->loads[o->nloads].vaddr = ph.p_vaddr;
        o->loads[o->nloads].filesz = ph.p_filesz;
        o->loads[o->nloads].memsz = ph.p_memsz;
        o->nloads++;
    }
    return o->nloads ? 0 : -1;
}

/* Open path under root; fall back to alt_path (map_files) when that fails or
 * names another file than the mapped inode (replaced on disk), and to the
 * bare path on our own root when the inode and the device both match (a
 * chroot'd target: its maps show our paths; the device too, so that a file
 * the target renamed away cannot send us to another filesystem's file of
 * the same inode number). */
static int open_object_fd(const struct elf_open_args *a, struct stat *st)
{
    size_t plen = strlen(a->path);
    int deleted = plen >= 10 && strcmp(a->path + plen - 10, " (deleted)") == 0;
    int fd = -1, wrong = -1;
    if (!deleted && a->path[0] == '/') {
        fd = sym_open_rooted(a->root, a->path, st);
        if (fd >= 0 && a->inode && (uint64_t)st->st_ino != a->inode) {
            wrong = fd;
            fd = -1;
        }
    }
    if (fd < 0 && a->alt_path) {
        fd = sym_open_regular(a->alt_path, st);
    }
    if (fd < 0 && !deleted && a->root[0] && a->path[0] == '/') {
        fd = sym_open_regular(a->path, st);
        if (fd >= 0 && (!a->inode || (uint64_t)st->st_ino != a->inode ||
                        (uint64_t)st->st_dev != a->dev)) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0 && wrong >= 0) {          /* best effort: the only file we have */
        fd = wrong;
        wrong = -1;
        if (fstat(fd, st) != 0) { close(fd); fd = -1; }
    }
    if (wrong >= 0) close(wrong);
    return fd;
}

/* Try one debug file candidate; 1 = taken, 0 = not. */
static int try_debug_file(struct elf_object *o, const struct debug_candidate *c,
                          const struct stat *obj_st, uint32_t want_crc, int need_syms)
{
    struct stat st;
    struct scn_facts f;
    unsigned char bid[64];
    size_t bid_len;
    uint32_t crc;
    int taken = 0, keep_fd = 0;
    Elf *e;
    int fd = sym_open_rooted(c->root, c->path, &st);
    if (fd < 0) return 0;
    if (
        (obj_st && st.st_dev == obj_st->st_dev && st.st_ino == obj_st->st_ino) ||
        (!c->by_build_id && (debug_file_crc32(fd, &crc) != 0 || crc != want_crc))) {
        close(fd);
        return 0;
    }
    e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (!e || elf_kind(e) != ELF_K_ELF || scan_sections(e, &f) != 0) goto out;
    read_build_id(e, bid, &bid_len);
    /* found by build-id: it must carry that build-id (a file planted at
     * the path without one is not taken); by debuglink: the CRC matched,
     * and a build-id both have must agree */
    if ((c->by_build_id && !bid_len) ||
        (o->build_id_len && bid_len &&
         (bid_len != o->build_id_len || memcmp(bid, o->build_id, bid_len) != 0)))
        goto out_facts;
    if (need_syms && f.symtab)
        elf_symtab_load(e, f.symtab, &o->debugtab);
    if (f.has_dwarf && o->dwarf_fd < 0) {
        o->dwarf_fd = fd;
        keep_fd = 1;
    }
    if (o->debugtab.n || keep_fd) {
        o->debug_path = strdup(c->path);
        taken = 1;
    }
out_facts:
    free(f.debuglink);
out:
    if (e) elf_end(e);
    if (!keep_fd) close(fd);
    return taken;
}

static void find_debug_file(struct elf_object *o, const struct elf_open_args *a,
                            const struct scn_facts *f, const struct stat *obj_st,
                            int need_syms)
{
    struct debug_candidate c[DEBUG_MAX_CANDIDATES];
    struct debug_query q = {
        .root = a->root, .debug_dir = a->debug_dir, .path = a->path,
        .build_id = o->build_id, .build_id_len = o->build_id_len,
        .debuglink = f->debuglink,
    };
    size_t n = debug_file_candidates(&q, c);
    for (size_t i = 0; i < n; i++) {
        if (!o->debug_path && (c[i].by_build_id || f->debuglink))
            try_debug_file(o, &c[i], obj_st, f->debuglink_crc, need_syms);
        free(c[i].path);
    }
}

static struct elf_object *new_object(const char *path, uint64_t inode)
{
    struct elf_object *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->dwarf_fd = -1;
    o->inode = inode;
    o->path = strdup(path);
    if (!o->path) { free(o); return NULL; }
    return o;
}

/* Read segments, build-id and symbol tables of an open Elf into o. */
static int load_elf(struct elf_object *o, Elf *e, struct scn_facts *f)
{
    if (elf_kind(e) != ELF_K_ELF || read_loads(e, o) != 0 || scan_sections(e, f) != 0)
        return -1;
    read_build_id(e, o->build_id, &o->build_id_len);
    if (f->symtab) elf_symtab_load(e, f->symtab, &o->symtab);
    if (f->dynsym) elf_symtab_load(e, f->dynsym, &o->dynsym);
    return 0;
}

struct elf_object *elf_object_open(const struct elf_open_args *a)
{
    struct elf_object *o = new_object(a->path, a->inode);
    struct scn_facts f = { 0 };
    struct stat st;
    Elf *e = NULL;
    int fd;
    if (!o) return NULL;
    libelf_init();
    fd = open_object_fd(a, &st);
    if (fd < 0) return o;
    e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (!e || load_elf(o, e, &f) != 0) goto out;
    o->usable = 1;
    if (f.has_dwarf)
        o->dwarf_fd = fd;
    if (!o->symtab.n || !f.has_dwarf)
        find_debug_file(o, a, &f, &st, !o->symtab.n);
out:
    free(f.debuglink);
    if (e) elf_end(e);
    if (o->dwarf_fd != fd) close(fd);
    return o;
}

struct elf_object *elf_object_from_image(const char *name, const void *image, size_t size)
{
    struct elf_object *o = new_object(name, 0);
    struct scn_facts f = { 0 };
    char *copy;
    Elf *e;
    if (!o) return NULL;
    libelf_init();
    copy = malloc(size ? size : 1);
    if (!copy) return o;
    memcpy(copy, image, size);
    e = elf_memory(copy, size);
    if (e && load_elf(o, e, &f) == 0)
        o->usable = 1;
    free(f.debuglink);
    if (e) elf_end(e);
    free(copy);
    return o;
}

void elf_object_free(struct elf_object *o)
{
    if (!o) return;
    if (o->lines) dwarf_lines_free(o->lines);
    if (o->dwarf_fd >= 0) close(o->dwarf_fd);
    elf_symtab_free(&o->symtab);
    elf_symtab_free(&o->debugtab);
    elf_symtab_free(&o->dynsym);
    free(o->loads);
    free(o->debug_path);
    free(o->path);
    free(o);
}

static uint64_t page_size(void)
{
    static uint64_t ps;
    if (!ps) {
        long v = sysconf(_SC_PAGESIZE);
        ps = v > 0 ? (uint64_t)v : 4096;
    }
    return ps;
}

/* The segment a mapping comes from is the one with the highest
 * page-rounded file offset at or below the mapping's offset: the kernel
 * maps each PT_LOAD from its page-rounded offset, and later splits (RELRO
 * mprotect) only move the offset forward inside the same segment. */
int elf_object_to_vaddr(const struct elf_object *o, uint64_t map_start,
                        uint64_t map_offset, uint64_t addr, uint64_t *vaddr)
{
    const struct elf_load *best = NULL;
    uint64_t mask = ~(page_size() - 1), file_off, span;
    if (addr < map_start || addr - map_start > UINT64_MAX - map_offset) return -1;
    file_off = addr - map_start + map_offset;
    for (size_t i = 0; i < o->nloads; i++) {
        const struct elf_load *l = &o->loads[i];
        uint64_t base = l->offset & mask;
        if (base <= map_offset && (!best || base > (best->offset & mask)))
            best = l;
    }
    if (!best || file_off < (best->offset & mask)) return -1;
    span = (best->memsz > best->filesz ? best->memsz : best->filesz) + page_size();
    if (best->offset > UINT64_MAX - span || file_off >= best->offset + span)
        return -1;
    *vaddr = file_off - best->offset + best->vaddr;   /* wraps correctly below p_offset */
    return 0;
}

int elf_object_lookup(const struct elf_object *o, uint64_t vaddr, struct elf_hit *hit)
{
    const struct elf_symtab *tabs[3] = { &o->symtab, &o->debugtab, &o->dynsym };
    static const enum sym_source src[3] = { SYM_SRC_SYMTAB, SYM_SRC_DEBUGFILE, SYM_SRC_DYNSYM };
    const struct elf_sym *near = NULL;
    int near_t = -1;
    for (int t = 0; t < 3; t++) {
        long i = elf_symtab_floor(tabs[t], vaddr), j;
        if (i < 0) continue;
        j = elf_symtab_containing(tabs[t], i, vaddr);
        if (j >= 0) {
            hit->name = tabs[t]->names + tabs[t]->v[j].name;
            hit->sym_addr = tabs[t]->v[j].addr;
            hit->exact = 1;
            hit->source = src[t];
            return 0;
        }
        if (!near || tabs[t]->v[i].addr > near->addr) {
            near = &tabs[t]->v[i];
            near_t = t;
        }
    }
    if (!near) return -1;
    hit->name = tabs[near_t]->names + near->name;
    hit->sym_addr = near->addr;
    hit->exact = 0;
    hit->source = src[near_t];
    return 0;
}
