/*
 * cpython_names.h - the CPython decoder's code cache: from the address of
 * a code object a frame runs to the id written in the log, the name
 * ("py:<qualname>:<firstlineno>:<filename>", emitted once per id through
 * the sink) and the frame's current line.
 *
 * Invariants:
 *   - An id is emitted through the sink before cpy_names_frame returns
 *     it. One id means one name for the whole run.
 *   - A cached code address is trusted only after its identity is
 *     re-proved in the current capture: its qualname and filename strings
 *     re-read and compared by fingerprint, with the first line; or, on
 *     3.12 and 3.13, its head re-read showing the same non-zero co_version
 *     (a serial the interpreter never hands out twice) in the same
 *     interpreter, with the same name pointers; or when a count of code
 *     objects freed has not moved since the entry was proved (3.14: the
 *     interpreter's code-object generation; 3.11-3.13: the shim's
 *     py_code_frees, when its registry maintains it). A
 *     changed identity gets a new id: address | generation << 48 (always
 *     even); after GEN_LIMIT generations at one address, or once the table
 *     had to be reset, ids come from a sequence with bit 62 set instead.
 *   - With lines, the line table used is the one read in this capture (or
 *     a cached copy equal to it byte for byte), or one cached while the
 *     co_version or the count of code objects freed proves it the same
 *     object (a code object's line table never changes).
 *   - Every byte comes through cpy_mem (this stop's pages) and is
 *     untrusted: types are checked by address (learned once by tp_name),
 *     lengths are capped (STR_READ_MAX, LT_MAX, LT_CACHE_BUDGET).
 */
#ifndef VMPROF_CPYTHON_NAMES_H
#define VMPROF_CPYTHON_NAMES_H

#include <stdint.h>

#include "cpython_layout.h"
#include "cpython_mem.h"
#include "cpython_table.h"
#include "vm_cpython.h"

#define CPY_TEXT_CAP 4096           /* UTF-8 bytes of a qualname or file */
#define CPY_STR_READ_MAX 4096       /* bytes of characters read per str */
#define CPY_MEMO_SLOTS 64           /* str fingerprints kept per capture */

struct cpy_names {
    const struct cpython_layout *L;
    struct cpy_mem *mem;
    struct vm_cpython_stats *st;
    vm_name_sink sink;
    void *sink_arg;
    int want_lines;
    uint64_t code_type, str_type, bytes_type; /* learned, by tp_name */
    struct cpy_table codes;         /* of struct code_entry */
    uint64_t lt_bytes;              /* bytes of line tables kept */
    int ids_from_seq;               /* the table was reset once */
    uint64_t id_seq;

    uint64_t capture_no;            /* per-capture state below */
    int gen_ok;                     /* 3.14 code generation read */
    uint64_t gen_interp, gen_now;   /* the thread's interpreter, and its
                                       code generation (3.14) */
    struct cpy_str_memo {
        uint64_t ptr, fp;
        uint32_t span;
    } memo[CPY_MEMO_SLOTS];
    uint32_t memo_used;
    const uint8_t *cur_lt;          /* line table of the last resolve */
    uint32_t cur_lt_len;

    uint8_t *lt_scratch;            /* LT_MAX bytes */
    char *name;                     /* NAME_CAP bytes */
    char qual[CPY_TEXT_CAP], file[CPY_TEXT_CAP];
    uint8_t text_raw[CPY_STR_READ_MAX];
};

/* 0, or -1 when out of memory. L, mem and st must outlive nm. */
int cpy_names_init(struct cpy_names *nm, const struct cpython_layout *L,
                   struct cpy_mem *mem, struct vm_cpython_stats *st,
                   vm_name_sink sink, void *sink_arg, int want_lines);
void cpy_names_free(struct cpy_names *nm);

/* A new capture (entries proved in earlier ones must be proved again). */
void cpy_names_begin(struct cpy_names *nm, uint64_t capture_no);
/* The count of code objects freed (3.14's code generation, or the shim's
 * count), read in this capture in the thread's interpreter (ok 0: not
 * read). */
void cpy_names_generation(struct cpy_names *nm, int ok, uint64_t interp,
                          uint64_t value);
/* Read, in at most two batches, the pages that proving or learning the
 * n code objects at code[] will read (their heads, strings and, with
 * lines, line tables). Only a cost: cpy_names_frame is right without it. */
void cpy_names_prepare(struct cpy_names *nm, const uint64_t *code, int n);
/* The id of the code object at code (proved for this capture, named if
 * new) and, with lines, the line of a frame at instr in it (0 unknown).
 * 0, or -1 when code is not a readable code object. */
int cpy_names_frame(struct cpy_names *nm, uint64_t code, uint64_t instr,
                    uint64_t *id, int32_t *line);

#endif
