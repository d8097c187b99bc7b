/*
 * cpython_names.c - code objects of a CPython target: identity, ids,
 * names and line tables (rules in cpython_names.h).
 *
 * Proving an entry costs a read of the code object's head, of its two
 * name strings and, with lines, of its line table. cpy_names_prepare
 * gathers those reads for a whole stack into two batches: first every
 * head, plus the strings and tables at the addresses the cached entries
 * remember (right whenever the code object is the same one); then the
 * strings and tables of the heads that point elsewhere. The proof itself
 * (cpy_names_frame) then reads from this stop's cached pages; it never
 * trusts what prepare fetched beyond that.
 */
#include "cpython_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython_lines.h"
#include "vmprof_writer.h"

#define LT_MAX (64u * 1024)         /* longest line table decoded */
#define LT_CACHE_BUDGET (32u << 20) /* bytes of line tables kept */
#define LT_GUESS 256                /* line table bytes read unseen */
#define STR_GUESS 64                /* characters read of a str unseen */
#define CODES_MAX (1u << 18)        /* code entries before a reset */
#define GEN_LIMIT (1u << 14)        /* generations per address */
#define NAME_CAP 32768

struct code_entry {
    uint64_t addr;                  /* code object; the table's key */
    uint64_t id;
    uint64_t qual_ptr, file_ptr, lt_ptr;
    uint64_t qual_fp, file_fp;      /* fingerprints of the strings */
    uint64_t checked;               /* capture that last proved it */
    uint64_t staged;                /* capture << 1 | phase of prepare */
    uint64_t gen_interp, gen_value; /* count of code objects freed then:
                                       trusted while it stands (gen_interp
                                       0: not trusted yet) */
    uint64_t read_interp, read_gen; /* the count at the last reading proof */
    uint32_t version;               /* 3.12, 3.13: co_version when proved */
    uint64_t version_interp;        /* ... and the thread's interpreter */
    int32_t firstlineno;
    uint32_t code_units;            /* ob_size: 2-byte code units */
    uint32_t qual_span, file_span;  /* bytes of the strings last read */
    uint32_t lt_seen;               /* length of the table last read */
    uint32_t lt_len;
    uint16_t gen;
    uint8_t *lt;                    /* copy of co_linetable, or NULL */
};

static uint64_t u64(const uint8_t *b, size_t n, uint32_t off)
{
    return cpy_load_u64(b, n, off);
}

int cpy_names_init(struct cpy_names *nm, const struct cpython_layout *L,
                   struct cpy_mem *mem, struct vm_cpython_stats *st,
                   vm_name_sink sink, void *sink_arg, int want_lines)
{
    memset(nm, 0, sizeof *nm);
    nm->L = L;
    nm->mem = mem;
    nm->st = st;
    nm->sink = sink;
    nm->sink_arg = sink_arg;
    nm->want_lines = want_lines;
    cpy_table_init(&nm->codes, sizeof(struct code_entry));
    nm->lt_scratch = malloc(LT_MAX);
    nm->name = malloc(NAME_CAP);
    return nm->lt_scratch != NULL && nm->name != NULL ? 0 : -1;
}

static void codes_free(struct cpy_names *nm)
{
    for (uint32_t i = 0; i < nm->codes.cap; i++) {
        struct code_entry *e = cpy_table_at(&nm->codes, i);
        if (e != NULL)
            free(e->lt);
    }
    cpy_table_free(&nm->codes);
    nm->lt_bytes = 0;
}

void cpy_names_free(struct cpy_names *nm)
{
    codes_free(nm);
    free(nm->lt_scratch);
    free(nm->name);
    nm->lt_scratch = NULL;
    nm->name = NULL;
}

void cpy_names_begin(struct cpy_names *nm, uint64_t capture_no)
{
    nm->capture_no = capture_no;
    nm->memo_used = 0;
    nm->gen_ok = 0;
    nm->gen_interp = nm->gen_now = 0;
}

void cpy_names_generation(struct cpy_names *nm, int ok, uint64_t interp,
                          uint64_t value)
{
    nm->gen_ok = ok;
    nm->gen_interp = interp;
    nm->gen_now = value;
}

/* The object's type is the one named `want` (learned once, then compared
 * by address). */
static int type_is(struct cpy_names *nm, uint64_t type, uint64_t *known,
                   const char *want)
{
    if (*known != 0)
        return type == *known ? 0 : -1;
    uint64_t namep;
    char tn[16];
    size_t wl = strlen(want) + 1;
    if (!cpy_ptr_ok(type, 8) ||
        cpy_mem_fetch(nm->mem, type + nm->L->tp_name, &namep, 8) < 0 ||
        !cpy_ptr_ok(namep, 1) || wl > sizeof tn ||
        cpy_mem_fetch(nm->mem, namep, tn, wl) < 0 || memcmp(tn, want, wl) != 0)
        return -1;
    *known = type;
    return 0;
}

/* ---- strings ---- */

static uint64_t fingerprint(uint8_t kind, uint64_t length, const uint8_t *d,
                            size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (length * 0x9e3779b97f4a7c15ull) ^ kind;
    for (size_t i = 0; i < n; i++) {
        h ^= d[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* Fingerprint of the str at p, the bytes it spans from p as read, and,
 * when text is given, its UTF-8 text (strings longer than STR_READ_MAX
 * bytes: the prefix and the length). */
static int str_read(struct cpy_names *nm, uint64_t p, uint64_t *fp,
                    uint32_t *span, char *text, size_t cap)
{
    if (text == NULL) {
        for (uint32_t i = 0; i < nm->memo_used; i++) {
            if (nm->memo[i].ptr == p) {
                *fp = nm->memo[i].fp;
                *span = nm->memo[i].span;
                return 0;
            }
        }
    }
    const struct cpython_layout *L = nm->L;
    uint8_t hdr[256];
    struct cpython_str s;
    if (!cpy_ptr_ok(p, 8) || L->str_compact_size > sizeof hdr ||
        cpy_mem_fetch(nm->mem, p, hdr, L->str_ascii_size) < 0 ||
        type_is(nm, u64(hdr, sizeof hdr, L->ob_type), &nm->str_type, "str") < 0 ||
        cpython_str_header(L, hdr, L->str_ascii_size, &s) < 0)
        return -1;
    uint64_t nbytes = s.length * s.kind;
    size_t take = nbytes > CPY_STR_READ_MAX ? CPY_STR_READ_MAX : (size_t)nbytes;
    take -= take % s.kind;
    if (cpy_mem_fetch(nm->mem, p + s.data_off, nm->text_raw, take) < 0)
        return -1;
    *fp = fingerprint(s.kind, s.length, nm->text_raw, take);
    *span = s.data_off + (uint32_t)take;
    if (text != NULL)
        cpython_str_to_utf8(s.kind, nm->text_raw, take, text, cap);
    if (nm->memo_used < CPY_MEMO_SLOTS)
        nm->memo[nm->memo_used++] = (struct cpy_str_memo){ p, *fp, *span };
    return 0;
}

/* ---- code entries ---- */

/* A new zeroed entry for addr (not present). May reset the table. */
static struct code_entry *code_insert(struct cpy_names *nm, uint64_t addr)
{
    if (nm->codes.used >= CODES_MAX) {
        /* Forget everything; ids from now on come from the sequence, so
         * none can repeat an id handed out before the reset. */
        codes_free(nm);
        nm->ids_from_seq = 1;
    }
    return cpy_table_add(&nm->codes, addr);
}

static uint64_t new_id(struct cpy_names *nm, struct code_entry *e)
{
    if (!nm->ids_from_seq && e->gen < GEN_LIMIT && e->addr < (1ull << 48))
        return e->addr | ((uint64_t)e->gen << 48);
    return (1ull << 62) | (++nm->id_seq << 3);
}

static void emit_name(struct cpy_names *nm, struct code_entry *e)
{
    uint64_t fp;
    uint32_t span;
    if (str_read(nm, e->qual_ptr, &fp, &span, nm->qual, sizeof nm->qual) < 0)
        snprintf(nm->qual, sizeof nm->qual, "?");
    if (str_read(nm, e->file_ptr, &fp, &span, nm->file, sizeof nm->file) < 0)
        nm->file[0] = '\0';
    uint32_t line = e->firstlineno > 0 ? (uint32_t)e->firstlineno : 0;
    if (vmprof_format_name(nm->name, NAME_CAP, "py", nm->qual, line, nm->file) < 0)
        snprintf(nm->name, NAME_CAP, "py:?:%u:-", line);
    nm->st->names++;
    if (nm->sink != NULL)
        nm->sink(nm->sink_arg, e->id, nm->name);
}

/* Read the line table at lt_ptr into the entry (or scratch) and point
 * cur_lt at it. A table that cannot be read leaves cur_lt NULL. */
static void load_linetable(struct cpy_names *nm, struct code_entry *e)
{
    const struct cpython_layout *L = nm->L;
    uint8_t hdr[64];
    nm->cur_lt = NULL;
    nm->cur_lt_len = 0;
    if (!cpy_ptr_ok(e->lt_ptr, 8) || L->by_sval > sizeof hdr ||
        cpy_mem_fetch(nm->mem, e->lt_ptr, hdr, L->by_sval) < 0 ||
        type_is(nm, u64(hdr, sizeof hdr, L->ob_type), &nm->bytes_type,
                "bytes") < 0)
        return;
    uint64_t n = u64(hdr, sizeof hdr, L->ob_size);
    if (n > LT_MAX ||
        cpy_mem_fetch(nm->mem, e->lt_ptr + L->by_sval, nm->lt_scratch, n) < 0)
        return;
    e->lt_seen = (uint32_t)n;
    nm->cur_lt = nm->lt_scratch;
    nm->cur_lt_len = (uint32_t)n;
    if (e->lt != NULL && e->lt_len == n && memcmp(e->lt, nm->lt_scratch, n) == 0) {
        nm->cur_lt = e->lt;
        return;
    }
    nm->lt_bytes -= e->lt_len;
    free(e->lt);
    e->lt = NULL;
    e->lt_len = 0;
    if (n > 0 && nm->lt_bytes + n <= LT_CACHE_BUDGET &&
        (e->lt = malloc(n)) != NULL) {
        memcpy(e->lt, nm->lt_scratch, n);
        e->lt_len = (uint32_t)n;
        nm->lt_bytes += n;
        nm->cur_lt = e->lt;
    }
}

/* The entry was proved while no code object has been freed since. */
static int gen_trusted(const struct cpy_names *nm, const struct code_entry *e)
{
    return nm->gen_ok && e->checked != 0 && e->gen_interp == nm->gen_interp &&
           e->gen_value == nm->gen_now;
}

static int proved(const struct cpy_names *nm, const struct code_entry *e)
{
    return e != NULL && (e->checked == nm->capture_no || gen_trusted(nm, e));
}

static uint32_t head_version(const struct cpy_names *nm, const uint8_t *head)
{
    const struct cpython_layout *L = nm->L;
    return L->co_version == CPY_OFF_NONE ? 0 :
           cpy_load_u32(head, L->co_read, L->co_version);
}

/* 3.12, 3.13: the head read now is the very object the entry proved: the
 * same non-zero co_version (a serial the interpreter never gives twice:
 * its counter only grows, and sticks at 0 once it wraps), in the same
 * interpreter, with the same name pointers, first line and line table.
 * Then its strings need no reading: they are that object's own. */
static int same_object(const struct cpy_names *nm, const struct code_entry *e,
                       const uint8_t *head)
{
    const struct cpython_layout *L = nm->L;
    uint32_t v = head_version(nm, head);
    return v != 0 && e->version == v && nm->gen_interp != 0 &&
           e->version_interp == nm->gen_interp &&
           e->qual_ptr == u64(head, L->co_read, L->co_qualname) &&
           e->file_ptr == u64(head, L->co_read, L->co_filename) &&
           e->lt_ptr == u64(head, L->co_read, L->co_linetable) &&
           e->firstlineno ==
               (int32_t)cpy_load_u32(head, L->co_read, L->co_firstlineno);
}

/* A reading proof of e just showed the same object as before (same) or
 * a new one: e is trusted through the count of code objects freed only
 * from its second reading proof at one count. A first proof may have read
 * an object freed an instant before the stop: 3.11 clears a returning
 * frame (dropping its code) while it is still the thread's current frame,
 * and a freed small object keeps its type and names until reused; a code
 * object allocated there later, with no other freed in between, would
 * then be trusted under the dead one's name. A second proof at the same
 * count reads whatever is at the address then: the same object, alive
 * (it is not freed without moving the count), or a new one (seen). */
static void note_reading_proof(struct cpy_names *nm, struct code_entry *e, int same)
{
    int confirmed = same && nm->gen_ok && e->read_interp != 0 &&
                    e->read_interp == nm->gen_interp && e->read_gen == nm->gen_now;
    e->gen_interp = confirmed ? nm->gen_interp : 0;
    e->gen_value = nm->gen_now;
    e->read_interp = nm->gen_ok ? nm->gen_interp : 0;
    e->read_gen = nm->gen_now;
}

/* The entry is proved for this capture: with lines, cur_lt is its table. */
static struct code_entry *use_proved(struct cpy_names *nm, struct code_entry *e)
{
    e->checked = nm->capture_no;
    if (nm->want_lines) {
        nm->cur_lt = e->lt;
        nm->cur_lt_len = e->lt_len;
        if (e->lt == NULL)
            load_linetable(nm, e);
    }
    return e;
}

/* The entry for the code object at addr, proved for this capture, its
 * name emitted if new; with lines, cur_lt holds its line table. NULL
 * when addr is not a readable code object. */
static struct code_entry *code_resolve(struct cpy_names *nm, uint64_t addr)
{
    const struct cpython_layout *L = nm->L;
    struct code_entry *e = cpy_table_find(&nm->codes, addr);
    if (proved(nm, e)) {
        nm->st->code_trusted += e->checked != nm->capture_no;
        return use_proved(nm, e);
    }
    uint8_t head[CPY_MAX_CODE_READ];
    if (cpy_mem_fetch(nm->mem, addr, head, L->co_read) < 0 ||
        type_is(nm, u64(head, L->co_read, L->ob_type), &nm->code_type, "code") < 0)
        return NULL;
    if (e != NULL && same_object(nm, e, head)) {
        note_reading_proof(nm, e, 1);
        return use_proved(nm, e);
    }
    int is_new = e == NULL;
    if (is_new && (e = code_insert(nm, addr)) == NULL)
        return NULL;
    uint64_t qual = u64(head, L->co_read, L->co_qualname);
    uint64_t file = u64(head, L->co_read, L->co_filename);
    int32_t first = (int32_t)cpy_load_u32(head, L->co_read, L->co_firstlineno);
    uint64_t units = u64(head, L->co_read, L->ob_size);
    uint64_t qfp, ffp;
    int strs_ok = 1;
    if (str_read(nm, qual, &qfp, &e->qual_span, NULL, 0) < 0) {
        qfp = 0;
        strs_ok = 0;
    }
    if (str_read(nm, file, &ffp, &e->file_span, NULL, 0) < 0) {
        ffp = 0;
        strs_ok = 0;
    }
    int same = !is_new && e->qual_fp == qfp && e->file_fp == ffp &&
               e->firstlineno == first;
    int hidden = !same && !is_new && e->qual_ptr == qual && e->file_ptr == file;
    e->qual_ptr = qual;
    e->file_ptr = file;
    e->qual_fp = qfp;
    e->file_fp = ffp;
    e->firstlineno = first;
    e->lt_ptr = u64(head, L->co_read, L->co_linetable);
    e->code_units = units > UINT32_MAX ? UINT32_MAX : (uint32_t)units;
    e->checked = nm->capture_no;
    /* the cheap proofs (count of frees, co_version) only for an entry
     * whose strings were read: an unreadable name is tried again next time */
    if (strs_ok) {
        note_reading_proof(nm, e, same);
    } else {
        e->gen_interp = e->read_interp = 0;
    }
    e->version = strs_ok ? head_version(nm, head) : 0;
    e->version_interp = nm->gen_interp;
    if (!same) {
        if (!is_new) {              /* the address holds new code */
            e->gen++;
            nm->st->identity_changes++;
            nm->st->hidden_changes += hidden;
        }
        e->id = new_id(nm, e);
        emit_name(nm, e);
    }
    if (nm->want_lines)
        load_linetable(nm, e);
    return e;
}

int cpy_names_frame(struct cpy_names *nm, uint64_t code, uint64_t instr,
                    uint64_t *id, int32_t *line)
{
    struct code_entry *e = code_resolve(nm, code);
    if (e == NULL)
        return -1;
    *id = e->id;
    *line = !nm->want_lines ? 0 :
        cpython_frame_line(nm->cur_lt, nm->cur_lt_len, e->firstlineno,
                           e->addr + nm->L->co_code_adaptive, e->code_units,
                           instr);
    return 0;
}

/* ---- batching the proofs' reads ---- */

/* Note what the proof will read of a str at p (span: bytes last read). */
static void want_str(struct cpy_names *nm, uint64_t p, uint32_t span)
{
    cpy_mem_want(nm->mem, p, span != 0 ? span :
                 nm->L->str_compact_size + STR_GUESS);
}

static void want_linetable(struct cpy_names *nm, uint64_t p, uint32_t seen)
{
    if (nm->want_lines)
        cpy_mem_want(nm->mem, p, nm->L->by_sval + (seen != 0 ? seen : LT_GUESS));
}

/* Entries are staged once per phase (a stack repeats its code objects);
 * unknown code objects are not deduplicated: cpy_mem_want is. */
static int stage(const struct cpy_names *nm, struct code_entry *e, int phase)
{
    uint64_t mark = nm->capture_no << 1 | (uint64_t)phase;
    if (e == NULL)
        return 1;
    if (proved(nm, e) || e->staged >= mark)
        return 0;
    e->staged = mark;
    return 1;
}

void cpy_names_prepare(struct cpy_names *nm, const uint64_t *code, int n)
{
    const struct cpython_layout *L = nm->L;
    for (int i = 0; i < n; i++) {
        struct code_entry *e = cpy_table_find(&nm->codes, code[i]);
        if (!stage(nm, e, 0))
            continue;
        cpy_mem_want(nm->mem, code[i], L->co_read);
        if (e != NULL && e->version == 0) {     /* proved by contents */
            want_str(nm, e->qual_ptr, e->qual_span);
            want_str(nm, e->file_ptr, e->file_span);
            want_linetable(nm, e->lt_ptr, e->lt_seen);
        }
    }
    cpy_mem_load(nm->mem);
    for (int i = 0; i < n; i++) {
        struct code_entry *e = cpy_table_find(&nm->codes, code[i]);
        uint8_t head[CPY_MAX_CODE_READ];
        if (!stage(nm, e, 1) ||
            cpy_mem_fetch(nm->mem, code[i], head, L->co_read) < 0 ||
            (e != NULL && same_object(nm, e, head)))
            continue;
        uint64_t qual = u64(head, L->co_read, L->co_qualname);
        uint64_t file = u64(head, L->co_read, L->co_filename);
        uint64_t lt = u64(head, L->co_read, L->co_linetable);
        want_str(nm, qual, e != NULL && qual == e->qual_ptr ? e->qual_span : 0);
        want_str(nm, file, e != NULL && file == e->file_ptr ? e->file_span : 0);
        want_linetable(nm, lt, e != NULL && lt == e->lt_ptr ? e->lt_seen : 0);
    }
    cpy_mem_load(nm->mem);
}
