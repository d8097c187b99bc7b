/*
 * symbols.h - the one public header of the symbols library.
 *
 * The library turns addresses of a live (or just-exited) process into names:
 *   maps      /proc/PID/maps, parsed into a sorted table of mappings
 *   elf       symbol tables (.symtab, separate debug file found by build-id
 *             or .gnu_debuglink, then .dynsym), opened through
 *             /proc/PID/root so a target in a chroot or container works
 *   dwarf     file:line from DWARF (libdwarf), when the object or its debug
 *             file has it
 *   perfmap   /tmp/perf-NSPID.map inside the target's root, for JIT code
 *
 * Nothing here ptraces or stops the target: it only reads /proc and files.
 * Every input (maps text, ELF files, perf maps) is untrusted: parsers are
 * bounded and never read past what they were given.
 */
#ifndef VMPROF_SYMBOLS_H
#define VMPROF_SYMBOLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* ---- files the target controls (target_files.c) ------------------------ */

/* Open path read-only without blocking or taking a terminal; regular
 * files only (st receives its stat, may be NULL). -1 with errno else. */
int sym_open_regular(const char *path, struct stat *st);
/* The same, for a path the target names, looked up as the target sees it
 * under root (e.g. "/proc/PID/root"; "" or NULL = our own root): links,
 * absolute ones and "..", cannot leave root (openat2 RESOLVE_IN_ROOT).
 * Where openat2 is missing (sym_rooted_confined() == 0) opens root+path,
 * which follows an absolute link from our own root. */
int sym_open_rooted(const char *root, const char *path, struct stat *st);
int sym_rooted_confined(void);
/* Who may own a file the target writes for us: root and the process's
 * real, effective, saved and filesystem uids (read from /proc/PID/status
 * while it runs; only root when it cannot be read). */
struct sym_owners { uid_t uid[5]; int n; };
void sym_owners_of(pid_t pid, struct sym_owners *o);
int sym_owners_allow(const struct sym_owners *o, uid_t uid);

/* ---- maps ------------------------------------------------------------ */

struct sym_mapping {
    uint64_t start, end;        /* [start, end) in the target */
    uint64_t offset;            /* file offset of start */
    uint32_t prot;              /* SYM_PROT_* */
    uint64_t inode;
    uint32_t dev_major, dev_minor;
    char *path;                 /* as in maps ("" for anonymous, "[stack]"...) */
};
#define SYM_PROT_R 1u
#define SYM_PROT_W 2u
#define SYM_PROT_X 4u

struct sym_maps {
    struct sym_mapping *v;      /* sorted by start, non-overlapping */
    size_t n;
};

/* Parse the text of a maps file (len bytes, need not be NUL-terminated).
 * Malformed lines are skipped and counted in *bad_lines (may be NULL).
 * Returns 0, or -1 with errno set (ENOMEM). */
int sym_maps_parse(struct sym_maps *m, const char *text, size_t len, size_t *bad_lines);
/* Read and parse /proc/PID/maps. Returns 0, or -1 with errno set. */
int sym_maps_load(struct sym_maps *m, pid_t pid);
/* The mapping containing addr, or NULL. O(log n). */
const struct sym_mapping *sym_maps_find(const struct sym_maps *m, uint64_t addr);
void sym_maps_free(struct sym_maps *m);

/* ---- resolution ------------------------------------------------------ */

/* Where a name came from; reported so that users and tests can tell a
 * real symbol from a guess. */
enum sym_source {
    SYM_SRC_NONE = 0,           /* nothing known: name is "0x<addr>" style */
    SYM_SRC_SYMTAB,             /* .symtab of the object itself */
    SYM_SRC_DEBUGFILE,          /* .symtab of a separate debug file */
    SYM_SRC_DYNSYM,             /* .dynsym only (may be a nearby export) */
    SYM_SRC_PERFMAP,            /* /tmp/perf-PID.map */
};

struct sym_result {
    const char *name;           /* function name; never NULL. Owned by the
                                   symbolizer, valid until sym_close. */
    uint64_t sym_start;         /* start address of the symbol in the target
                                   (0 if unknown) */
    const char *object;         /* path of the mapped object ("" if none) */
    const char *file;           /* source file, or NULL */
    int line;                   /* line, or 0 */
    enum sym_source source;
};

struct symbolizer;

/* Open a symbolizer for a process. root is the directory objects are
 * opened under: normally "/proc/PID/root"; tests may pass "" for the
 * local filesystem (NULL means "/proc/PID/root"). The maps are copied;
 * the caller keeps its own. debug_dir is where build-id debug files live
 * (NULL = "/usr/lib/debug"); it is looked up under root first, then on
 * the host (the build-id or CRC is verified either way).
 * Objects that cannot be opened under root (deleted, replaced on disk) are
 * read through /proc/PID/map_files/START-END when pid > 0.
 * Returns NULL with errno set. Not thread-safe: one thread per symbolizer. */
struct symbolizer *sym_open(pid_t pid, const struct sym_maps *maps,
                            const char *root, const char *debug_dir);

/* Replace the mappings (after the target dlopen()s or execs). Objects
 * already loaded stay cached by (path, inode). */
int sym_update_maps(struct symbolizer *s, const struct sym_maps *maps);

/* Resolve one address. Always fills *out (with a "0x..." style name
 * when nothing is known). Caches per object: the first address in an
 * object loads its tables once. with_lines: also look up DWARF file:line
 * of the address. Returns 0 when a symbol was found, 1 when not.
 * Details:
 *   - 0: addr lies inside a sized symbol (or a perf map entry); name is
 *     that symbol, sym_start its address in the target.
 *   - 1: name is "sym+0xOFF" (addr is past the end of the nearest
 *     preceding symbol: source tells which table) or "0xADDR" / "[vdso]"
 *     (source SYM_SRC_NONE); sym_start is 0. Use name anyway.
 *   - For a return address (every frame but the innermost), pass addr - 1:
 *     a call at the very end of a function returns past its end.
 *   - name, object and file stay valid until sym_close, also across
 *     sym_update_maps; the same name is the same pointer every time.
 *     Names are raw (no escaping of ':'). */
int sym_resolve(struct symbolizer *s, uint64_t addr, int with_lines, struct sym_result *out);

void sym_close(struct symbolizer *s);

/* ---- perf map files (exposed for tests and fuzzing) -------------------- */

struct sym_perfmap_entry { uint64_t start, size; char *name; };
struct sym_perfmap { struct sym_perfmap_entry *v; size_t n; };
/* Parse "START SIZE NAME" lines (hex, with or without 0x). Bad lines are
 * skipped. Entries are sorted by start. Returns 0 or -1 (ENOMEM). */
int sym_perfmap_parse(struct sym_perfmap *pm, const char *text, size_t len);
const struct sym_perfmap_entry *sym_perfmap_find(const struct sym_perfmap *pm, uint64_t addr);
void sym_perfmap_free(struct sym_perfmap *pm);
/* (Re)load *pm from the perf map at path under root (sym_open_rooted): a
 * regular file of at most max bytes owned by one of owners; whole lines
 * only (the JIT may be writing the last one). On success *pm is replaced
 * and *st is the file's stat. Returns 0, or -1 leaving *pm as it was. */
int sym_perfmap_load(struct sym_perfmap *pm, const char *root, const char *path,
                     const struct sym_owners *owners, size_t max, struct stat *st);

/* A process's perf map followed through a run: /tmp/perf-NSPID.map under
 * its root (NSPID: its PID in its own namespace), owned by one of its
 * users, read again when it changed. Both are read from /proc at open:
 * open it while the process lives. */
struct sym_perfmap_file {
    char *root, *path;
    struct sym_owners owners;
    struct sym_perfmap pm;
    struct stat st;             /* of the file as last read */
    int have;                   /* pm holds a read of it */
};
/* root as for sym_open_rooted. Returns 0, or -1 (ENOMEM). */
int sym_perfmap_file_open(struct sym_perfmap_file *f, pid_t pid, const char *root);
/* Read the file again if it appeared or changed (size, inode, mtime)
 * since it was last read; a file that vanished keeps the last read. */
void sym_perfmap_file_refresh(struct sym_perfmap_file *f, size_t max);
void sym_perfmap_file_close(struct sym_perfmap_file *f);

#endif
