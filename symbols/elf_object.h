/*
 * elf_object.h - one mapped ELF object and its symbol tables (internal to
 * the symbols library; the public API is symbols.h).
 *
 * An elf_object is loaded once per (path, inode) and then only read:
 * its PT_LOAD segments (to turn a target address into a link-time
 * address), its best symbol tables, and where DWARF for it can be read.
 */
#ifndef VMPROF_SYMBOLS_ELF_OBJECT_H
#define VMPROF_SYMBOLS_ELF_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include <libelf.h>

#include "symbols.h"

struct elf_sym { uint64_t addr, size; uint32_t name; };

/* FUNC/IFUNC symbols sorted by addr, one per address (the preferred alias);
 * names are offsets into names[], each NUL-terminated inside names_len. */
struct elf_symtab {
    struct elf_sym *v;
    size_t n;
    char *names;
    size_t names_len;
};

struct elf_load { uint64_t offset, vaddr, filesz, memsz; };

struct dwarf_lines;

struct elf_object {
    char *path;                 /* as in the maps (cache key) */
    uint64_t inode;             /* cache key */
    int usable;                 /* 0: not opened or not ELF; resolves nothing */
    struct elf_load *loads;
    size_t nloads;
    unsigned char build_id[64];
    size_t build_id_len;
    struct elf_symtab symtab;   /* the object's own .symtab */
    struct elf_symtab debugtab; /* .symtab of the separate debug file */
    struct elf_symtab dynsym;
    char *debug_path;           /* separate debug file used, or NULL */
    int dwarf_fd;               /* open file holding .debug_line, or -1 */
    struct dwarf_lines *lines;  /* loaded on the first line lookup */
    int lines_failed;
};

/* Where and how to open an object. */
struct elf_open_args {
    const char *root;           /* "" or "/proc/PID/root" */
    const char *path;           /* path as in the maps */
    uint64_t inode;             /* from the maps; 0 = unknown */
    uint64_t dev;               /* from the maps (makedev), with inode */
    const char *alt_path;       /* e.g. /proc/PID/map_files/S-E, or NULL */
    const char *debug_dir;      /* e.g. "/usr/lib/debug" */
};

/* Never NULL except out of memory: an object that cannot be read comes
 * back with usable == 0, so that it is not retried for every address. */
struct elf_object *elf_object_open(const struct elf_open_args *a);
/* An ELF image in memory (the vdso copied out of the target). The image
 * is only read during the call. */
struct elf_object *elf_object_from_image(const char *name, const void *image, size_t size);
void elf_object_free(struct elf_object *o);

/* Target address -> link-time address, through the mapping (its start and
 * file offset) and the PT_LOAD segment holding that file offset. */
int elf_object_to_vaddr(const struct elf_object *o, uint64_t map_start,
                        uint64_t map_offset, uint64_t addr, uint64_t *vaddr);

struct elf_hit {
    const char *name;           /* points into the object's tables */
    uint64_t sym_addr;          /* link-time address of the symbol */
    int exact;                  /* 1: vaddr inside the sized symbol */
    enum sym_source source;
};
/* 0 and *hit filled when some symbol is at or before vaddr, else -1. */
int elf_object_lookup(const struct elf_object *o, uint64_t vaddr, struct elf_hit *hit);

/* ---- symbol tables (elf_symtab.c) ---- */
/* Load the FUNC symbols of section scn_index (SHT_SYMTAB or SHT_DYNSYM). */
int elf_symtab_load(Elf *e, size_t scn_index, struct elf_symtab *t);
/* Index of the last entry with addr <= vaddr, or -1. */
long elf_symtab_floor(const struct elf_symtab *t, uint64_t vaddr);
/* An entry at or before index i (bounded walk) whose size covers vaddr, or -1. */
long elf_symtab_containing(const struct elf_symtab *t, long i, uint64_t vaddr);
void elf_symtab_free(struct elf_symtab *t);

/* ---- separate debug files (debug_file.c) ---- */
struct debug_query {
    const char *root, *debug_dir, *path;
    const unsigned char *build_id;
    size_t build_id_len;
    const char *debuglink;      /* NULL if none */
};
#define DEBUG_MAX_CANDIDATES 12
struct debug_candidate {
    const char *root;           /* the query's root, or "" for the host */
    char *path;                 /* opened under root (sym_open_rooted) */
    int by_build_id;
};
/* Candidate paths in the order they must be tried. Returns the count;
 * free each path. */
size_t debug_file_candidates(const struct debug_query *q,
                             struct debug_candidate out[DEBUG_MAX_CANDIDATES]);
/* CRC-32 (as .gnu_debuglink uses it) of the whole file. */
int debug_file_crc32(int fd, uint32_t *crc);

#endif
