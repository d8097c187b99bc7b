/*
 * vm_cpython.c - CPython's frames, read from outside the process while the
 * thread is stopped: thread state lookup, frame-chain walk with anchors,
 * names and lines of code objects.
 *
 * Invariants:
 *   - Every byte comes through fetch() (one reader, swappable for tests)
 *     and is untrusted: pointers are checked for alignment and range,
 *     walks are bounded (MAX_STEPS frames, MAX_GROUPS C-level calls,
 *     MAX_INTERPS/MAX_TSTATES in the thread lists), lengths are capped.
 *   - Anchors are C-stack addresses: each lies in [sp, sp + STACK_SPAN)
 *     of the stopped thread and they grow strictly from inner to outer
 *     groups. A chain that breaks this is stale (rescan the thread list
 *     once) or inconsistent (the capture fails, -1).
 *   - Names: an id is emitted through the sink before any stack holding it
 *     is returned. One id means one name for the whole run: a cached code
 *     address is trusted only after its identity is re-proved in this
 *     capture (its qualname and filename strings are re-read and their
 *     contents compared by fingerprint, with the first line), or, on 3.14,
 *     when the interpreter's code-object generation (bumped by every code
 *     object freed) has not moved since the entry was proved. A changed
 *     identity gets a new id: address | generation << 48 (always even);
 *     after GEN_LIMIT generations at one address, or once the code table
 *     had to be reset, ids come from a sequence with bit 62 set instead.
 *   - Reads are few: a per-capture cache of whole pages serves every
 *     object (frames sit side by side in the data stack, code objects and
 *     their strings cluster), so one syscall usually answers many reads.
 *     The cache is emptied at the start of each capture: nothing read
 *     while one thread was stopped is reused for another stop.
 */
#include "vm_cpython.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython_layout.h"
#include "cpython_lines.h"
#include "vmprof_writer.h"

#define PAGE_SZ 4096u
#define PC_SLOTS 64                 /* pages cached per capture */
#define MAX_INTERPS 256
#define MAX_TSTATES 8192
#define MAX_STEPS 8192              /* frames visited per capture */
#define MAX_GROUPS 1024             /* C-level eval calls per capture */
#define RESCAN_EVERY 32             /* captures before a thread without a
                                       thread state is looked up again */
#define STACK_SPAN (1ull << 30)     /* anchors lie within this above sp */
#define USER_ADDR_END (1ull << 47)
#define STR_READ_MAX 4096           /* bytes of characters read per str */
#define LT_MAX (64u * 1024)         /* longest line table decoded */
#define LT_CACHE_BUDGET (32u << 20) /* bytes of line tables kept */
#define CODES_MAX (1u << 18)        /* code entries before a reset */
#define GEN_LIMIT (1u << 14)        /* generations per address */
#define NAME_CAP 32768
#define TEXT_CAP 4096
#define MEMO_SLOTS 64

enum { WALK_FAIL = -1, WALK_STALE = -2 };

struct code_entry {
    uint64_t addr;                  /* code object; 0 = free slot */
    uint64_t id;
    uint64_t qual_ptr, file_ptr, lt_ptr;
    uint64_t qual_fp, file_fp;      /* fingerprints of the strings */
    uint64_t checked;               /* capture that last proved it */
    uint64_t gen_interp, gen_value; /* 3.14: code generation then */
    int32_t firstlineno;
    uint32_t code_units;            /* ob_size: 2-byte code units */
    uint32_t lt_len;
    uint16_t gen;
    uint8_t *lt;                    /* copy of co_linetable, or NULL */
};

struct tid_entry {
    uint64_t tid;                   /* 0 = free slot */
    uint64_t tstate;                /* 0 = no thread state found */
    uint64_t interp;
    uint64_t scan_no;               /* capture of the last scan */
};

/* Open addressing with linear probing, for elements that start with a
 * non-zero uint64 key (0 marks a free slot); grows at half load. */
struct slots {
    uint8_t *mem;
    size_t esz;
    uint32_t cap, used;
};

struct str_memo {
    uint64_t ptr, fp;
};

struct cpy {
    struct vm_decoder base;         /* first: a vm_decoder* is a cpy* */
    struct cpython_layout L;
    uint64_t runtime, text_lo, text_hi;
    cpython_read_fn read;
    void *read_ctx;
    uint64_t code_type, str_type, bytes_type; /* learned, by tp_name */

    uint64_t capture_no;            /* per-capture state below */
    uint64_t pc_tag[PC_SLOTS];
    uint32_t pc_used;
    uint8_t *pc_data;
    struct str_memo memo[MEMO_SLOTS];
    uint32_t memo_used;
    int gen_ok;                     /* 3.14 code generation read */
    uint64_t gen_interp, gen_now;
    const uint8_t *cur_lt;          /* line table of the last resolve */
    uint32_t cur_lt_len;

    struct slots codes;             /* of struct code_entry */
    struct slots tids;              /* of struct tid_entry */
    uint64_t lt_bytes;
    int ids_from_seq;               /* the code table was reset once */
    uint64_t id_seq;

    struct vm_cpython_stats st;
    uint8_t *lt_scratch;            /* LT_MAX bytes */
    char *name;                     /* NAME_CAP bytes */
    char qual[TEXT_CAP], file[TEXT_CAP];
    uint8_t text_raw[STR_READ_MAX];
};

/* ---- memory: one reader, a per-capture page cache ---- */

static int ptr_ok(uint64_t p, uint64_t align)
{
    return p != 0 && p < USER_ADDR_END && (p & (align - 1)) == 0;
}

static int raw_read(struct cpy *c, uint64_t addr, void *buf, size_t len)
{
    c->st.reads++;
    return c->read(c->read_ctx, addr, buf, len);
}

/* 1 with *out set, 0 when the cache is full, -1 when unreadable. */
static int pc_page(struct cpy *c, uint64_t page, const uint8_t **out)
{
    for (uint32_t i = 0; i < c->pc_used; i++) {
        if (c->pc_tag[i] == page) {
            *out = c->pc_data + (size_t)i * PAGE_SZ;
            return 1;
        }
    }
    if (c->pc_used == PC_SLOTS)
        return 0;
    uint8_t *slot = c->pc_data + (size_t)c->pc_used * PAGE_SZ;
    if (raw_read(c, page, slot, PAGE_SZ) < 0)
        return -1;
    c->pc_tag[c->pc_used++] = page;
    *out = slot;
    return 1;
}

static int fetch(struct cpy *c, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (addr == 0 || addr >= USER_ADDR_END || len > USER_ADDR_END - addr)
        return -1;
    uint64_t first = addr & ~(uint64_t)(PAGE_SZ - 1);
    uint64_t last = (addr + len - 1) & ~(uint64_t)(PAGE_SZ - 1);
    if (last - first >= 2 * PAGE_SZ)        /* big: read exactly */
        return raw_read(c, addr, buf, len);
    uint8_t *o = buf;
    uint64_t a = addr;
    size_t left = len;
    while (left > 0) {
        uint64_t pg = a & ~(uint64_t)(PAGE_SZ - 1);
        size_t in = PAGE_SZ - (size_t)(a - pg);
        if (in > left)
            in = left;
        const uint8_t *p;
        int r = pc_page(c, pg, &p);
        if (r < 0)
            return -1;
        if (r == 0)
            return raw_read(c, addr, buf, len);
        memcpy(o, p + (a - pg), in);
        o += in;
        a += in;
        left -= in;
    }
    return 0;
}

static uint64_t u64(const uint8_t *b, size_t n, uint32_t off)
{
    return cpy_load_u64(b, n, off);
}

/* The object's type is the one named `want` (learned once, then compared
 * by address). */
static int type_is(struct cpy *c, uint64_t type, uint64_t *known,
                   const char *want)
{
    if (*known != 0)
        return type == *known ? 0 : -1;
    uint64_t namep;
    char nm[16];
    size_t wl = strlen(want) + 1;
    if (!ptr_ok(type, 8) || fetch(c, type + c->L.tp_name, &namep, 8) < 0 ||
        !ptr_ok(namep, 1) || wl > sizeof nm || fetch(c, namep, nm, wl) < 0 ||
        memcmp(nm, want, wl) != 0)
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

/* Fingerprint of the str at p and, when text is given, its UTF-8 text
 * (strings longer than STR_READ_MAX bytes: the prefix and the length). */
static int str_read(struct cpy *c, uint64_t p, uint64_t *fp, char *text,
                    size_t cap)
{
    if (text == NULL) {
        for (uint32_t i = 0; i < c->memo_used; i++) {
            if (c->memo[i].ptr == p) {
                *fp = c->memo[i].fp;
                return 0;
            }
        }
    }
    const struct cpython_layout *L = &c->L;
    uint8_t hdr[256];
    struct cpython_str s;
    if (!ptr_ok(p, 8) || L->str_compact_size > sizeof hdr ||
        fetch(c, p, hdr, L->str_ascii_size) < 0 ||
        type_is(c, u64(hdr, sizeof hdr, L->ob_type), &c->str_type, "str") < 0 ||
        cpython_str_header(L, hdr, L->str_ascii_size, &s) < 0)
        return -1;
    uint64_t nbytes = s.length * s.kind;
    size_t take = nbytes > STR_READ_MAX ? STR_READ_MAX : (size_t)nbytes;
    take -= take % s.kind;
    if (fetch(c, p + s.data_off, c->text_raw, take) < 0)
        return -1;
    *fp = fingerprint(s.kind, s.length, c->text_raw, take);
    if (text != NULL)
        cpython_str_to_utf8(s.kind, c->text_raw, take, text, cap);
    if (c->memo_used < MEMO_SLOTS)
        c->memo[c->memo_used++] = (struct str_memo){ p, *fp };
    return 0;
}

/* ---- code objects: cache, identity, names, line tables ---- */

static uint32_t hash_u64(uint64_t k, uint32_t cap)
{
    return (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

static uint64_t *slot_at(const struct slots *t, uint32_t i)
{
    return (uint64_t *)(void *)(t->mem + (size_t)i * t->esz);
}

static void *slots_find(const struct slots *t, uint64_t key)
{
    if (t->cap == 0 || key == 0)
        return NULL;
    for (uint32_t h = hash_u64(key, t->cap); *slot_at(t, h) != 0;
         h = (h + 1) & (t->cap - 1)) {
        if (*slot_at(t, h) == key)
            return slot_at(t, h);
    }
    return NULL;
}

static int slots_grow(struct slots *t)
{
    struct slots n = { .esz = t->esz, .cap = t->cap ? t->cap * 2 : 256 };
    if ((n.mem = calloc(n.cap, n.esz)) == NULL)
        return -1;
    for (uint32_t i = 0; i < t->cap; i++) {
        uint64_t k = *slot_at(t, i);
        if (k == 0)
            continue;
        uint32_t h = hash_u64(k, n.cap);
        while (*slot_at(&n, h) != 0)
            h = (h + 1) & (n.cap - 1);
        memcpy(slot_at(&n, h), slot_at(t, i), t->esz);
    }
    free(t->mem);
    t->mem = n.mem;
    t->cap = n.cap;
    return 0;
}

/* A zeroed element with key set (key must be absent and non-zero). */
static void *slots_add(struct slots *t, uint64_t key)
{
    if ((t->used + 1) * 2 > t->cap && slots_grow(t) < 0)
        return NULL;
    uint32_t h = hash_u64(key, t->cap);
    while (*slot_at(t, h) != 0)
        h = (h + 1) & (t->cap - 1);
    uint64_t *e = slot_at(t, h);
    memset(e, 0, t->esz);
    *e = key;
    t->used++;
    return e;
}

/* Delete by shifting later members of the cluster back into the hole. */
static void slots_del(struct slots *t, void *elem)
{
    uint32_t mask = t->cap - 1;
    uint32_t i = (uint32_t)(((uint8_t *)elem - t->mem) / t->esz), j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint64_t k = *slot_at(t, j);
        if (k == 0)
            break;
        uint32_t home = hash_u64(k, t->cap);
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            memcpy(slot_at(t, i), slot_at(t, j), t->esz);
            i = j;
        }
    }
    *slot_at(t, i) = 0;
    t->used--;
}

static void codes_free(struct cpy *c)
{
    for (uint32_t i = 0; i < c->codes.cap; i++)
        free(((struct code_entry *)(void *)slot_at(&c->codes, i))->lt);
    free(c->codes.mem);
    c->codes.mem = NULL;
    c->codes.cap = c->codes.used = 0;
    c->lt_bytes = 0;
}

/* A new zeroed entry for addr (not present). May reset the table. */
static struct code_entry *code_insert(struct cpy *c, uint64_t addr)
{
    if (c->codes.used >= CODES_MAX) {
        /* Forget everything; ids from now on come from the sequence, so
         * none can repeat an id handed out before the reset. */
        codes_free(c);
        c->ids_from_seq = 1;
    }
    return slots_add(&c->codes, addr);
}

static uint64_t new_id(struct cpy *c, struct code_entry *e)
{
    if (!c->ids_from_seq && e->gen < GEN_LIMIT && e->addr < (1ull << 48))
        return e->addr | ((uint64_t)e->gen << 48);
    return (1ull << 62) | (++c->id_seq << 3);
}

static void emit_name(struct cpy *c, struct code_entry *e)
{
    uint64_t fp;
    if (str_read(c, e->qual_ptr, &fp, c->qual, sizeof c->qual) < 0)
        snprintf(c->qual, sizeof c->qual, "?");
    if (str_read(c, e->file_ptr, &fp, c->file, sizeof c->file) < 0)
        c->file[0] = '\0';
    uint32_t line = e->firstlineno > 0 ? (uint32_t)e->firstlineno : 0;
    if (vmprof_format_name(c->name, NAME_CAP, "py", c->qual, line, c->file) < 0)
        snprintf(c->name, NAME_CAP, "py:?:%u:-", line);
    c->st.names++;
    if (c->base.sink != NULL)
        c->base.sink(c->base.sink_arg, e->id, c->name);
}

/* Read the line table at lt_ptr into the entry (or scratch) and point
 * cur_lt at it. A table that cannot be read leaves cur_lt NULL. */
static void load_linetable(struct cpy *c, struct code_entry *e)
{
    const struct cpython_layout *L = &c->L;
    uint8_t hdr[64];
    c->cur_lt = NULL;
    c->cur_lt_len = 0;
    if (!ptr_ok(e->lt_ptr, 8) || L->by_sval > sizeof hdr ||
        fetch(c, e->lt_ptr, hdr, L->by_sval) < 0 ||
        type_is(c, u64(hdr, sizeof hdr, L->ob_type), &c->bytes_type,
                "bytes") < 0)
        return;
    uint64_t n = u64(hdr, sizeof hdr, L->ob_size);
    if (n > LT_MAX || fetch(c, e->lt_ptr + L->by_sval, c->lt_scratch, n) < 0)
        return;
    c->cur_lt = c->lt_scratch;
    c->cur_lt_len = (uint32_t)n;
    if (e->lt != NULL && e->lt_len == n && memcmp(e->lt, c->lt_scratch, n) == 0) {
        c->cur_lt = e->lt;
        return;
    }
    c->lt_bytes -= e->lt_len;
    free(e->lt);
    e->lt = NULL;
    e->lt_len = 0;
    if (n > 0 && c->lt_bytes + n <= LT_CACHE_BUDGET &&
        (e->lt = malloc(n)) != NULL) {
        memcpy(e->lt, c->lt_scratch, n);
        e->lt_len = (uint32_t)n;
        c->lt_bytes += n;
        c->cur_lt = e->lt;
    }
}

/* 3.14: the entry was proved while no code object has been freed since. */
static int gen_trusted(const struct cpy *c, const struct code_entry *e)
{
    return c->gen_ok && e->checked != 0 && e->gen_interp == c->gen_interp &&
           e->gen_value == c->gen_now;
}

/* The cache entry for the code object at addr, proved for this capture,
 * its name emitted if new; with lines, cur_lt holds its line table.
 * NULL when addr is not a readable code object. */
static struct code_entry *code_resolve(struct cpy *c, uint64_t addr)
{
    const struct cpython_layout *L = &c->L;
    struct code_entry *e = slots_find(&c->codes, addr);
    if (e != NULL && (e->checked == c->capture_no || gen_trusted(c, e))) {
        e->checked = c->capture_no;
        if (c->base.want_lines) {
            c->cur_lt = e->lt;
            c->cur_lt_len = e->lt_len;
            if (e->lt == NULL)
                load_linetable(c, e);
        }
        return e;
    }
    uint8_t head[CPY_MAX_CODE_READ];
    if (fetch(c, addr, head, L->co_read) < 0 ||
        type_is(c, u64(head, L->co_read, L->ob_type), &c->code_type, "code") < 0)
        return NULL;
    int is_new = e == NULL;
    if (is_new && (e = code_insert(c, addr)) == NULL)
        return NULL;
    uint64_t qual = u64(head, L->co_read, L->co_qualname);
    uint64_t file = u64(head, L->co_read, L->co_filename);
    int32_t first = (int32_t)cpy_load_u32(head, L->co_read, L->co_firstlineno);
    uint64_t units = u64(head, L->co_read, L->ob_size);
    uint64_t qfp, ffp;
    if (str_read(c, qual, &qfp, NULL, 0) < 0)
        qfp = 0;
    if (str_read(c, file, &ffp, NULL, 0) < 0)
        ffp = 0;
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
    e->checked = c->capture_no;
    e->gen_interp = c->gen_interp;
    e->gen_value = c->gen_now;
    if (!same) {
        if (!is_new) {              /* the address holds new code */
            e->gen++;
            c->st.identity_changes++;
            c->st.hidden_changes += hidden;
        }
        e->id = new_id(c, e);
        emit_name(c, e);
    }
    if (c->base.want_lines)
        load_linetable(c, e);
    return e;
}

/* ---- threads: OS tid -> thread state ---- */

static struct tid_entry *tid_find(struct cpy *c, pid_t tid)
{
    return tid > 0 ? slots_find(&c->tids, (uint64_t)tid) : NULL;
}

static struct tid_entry *tid_put(struct cpy *c, pid_t tid)
{
    struct tid_entry *e = tid_find(c, tid);
    if (e == NULL && tid > 0 && c->tids.used < 4 * MAX_TSTATES)
        e = slots_add(&c->tids, (uint64_t)tid);
    return e;
}

/* Walk every interpreter's thread list and record tid -> thread state.
 * Threads not found keep an entry with tstate 0 (looked up again after
 * RESCAN_EVERY captures). */
static void scan_threads(struct cpy *c)
{
    const struct cpython_layout *L = &c->L;
    uint8_t ts[CPY_MAX_TSTATE_READ];
    uint64_t interp = 0;
    unsigned nts = 0;

    c->st.rescans++;
    for (uint32_t i = 0; i < c->tids.cap; i++) {
        struct tid_entry *e = (struct tid_entry *)(void *)slot_at(&c->tids, i);
        e->tstate = 0;
        e->scan_no = c->capture_no;
    }
    if (fetch(c, c->runtime + L->rt_interpreters_head, &interp, 8) < 0)
        return;
    for (unsigned ni = 0; ni < MAX_INTERPS && ptr_ok(interp, 8); ni++) {
        uint64_t t = 0;
        if (fetch(c, interp + L->is_threads_head, &t, 8) < 0)
            return;
        while (ptr_ok(t, 8) && nts++ < MAX_TSTATES) {
            if (fetch(c, t, ts, L->ts_read) < 0)
                break;
            uint64_t tid = u64(ts, L->ts_read, L->ts_native_thread_id);
            struct tid_entry *e;
            if (tid > 0 && tid <= INT32_MAX && (e = tid_put(c, (pid_t)tid))) {
                e->tstate = t;
                e->interp = interp;
                e->scan_no = c->capture_no;
            }
            t = u64(ts, L->ts_read, L->ts_next);
        }
        if (fetch(c, interp + L->is_next, &interp, 8) < 0)
            return;
    }
}

/* ---- the walk ---- */

struct walk {
    struct vm_frame *out;
    int max, n;
    int have_sp;
    uint64_t sp;
    uint64_t tstate;
    uint64_t last_anchor;           /* anchors grow strictly outward */
    int group_start;                /* 3.12+: first frame of open group */
    int steps;
    int cut;                        /* frames beyond max were dropped */
};

static int anchor_ok(const struct walk *w, uint64_t a)
{
    if (a & 7)
        return 0;
    if (w->have_sp && (a < w->sp || a - w->sp >= STACK_SPAN))
        return 0;
    return w->last_anchor == 0 || a > w->last_anchor;
}

/* One frame buffer fr: add its code to the output (if room). */
static int emit_frame(struct cpy *c, struct walk *w, const uint8_t *fr,
                      uint64_t anchor)
{
    const struct cpython_layout *L = &c->L;
    if (w->n >= w->max) {
        w->cut = 1;
        return 0;
    }
    uint64_t code = u64(fr, L->fr_read, L->fr_code);
    if (L->tagged_executable)
        code &= ~(uint64_t)3;
    if (!ptr_ok(code, 8))
        return -1;
    struct code_entry *e = code_resolve(c, code);
    if (e == NULL)
        return -1;
    struct vm_frame *f = &w->out[w->n++];
    f->id = e->id;
    f->anchor = anchor;
    f->line = !c->base.want_lines ? 0 :
        cpython_frame_line(c->cur_lt, c->cur_lt_len, e->firstlineno,
                           e->addr + L->co_code_adaptive, e->code_units,
                           u64(fr, L->fr_read, L->fr_instr));
    return 0;
}

/* 3.11: one group per _PyCFrame, from cframe->current_frame down to the
 * frame with is_entry; the root cframe (inside the thread state) anchors
 * nothing and ends the walk. */
static int walk_cframes(struct cpy *c, struct walk *w, uint64_t cf)
{
    const struct cpython_layout *L = &c->L;
    uint64_t root = w->tstate + L->ts_root_cframe;
    uint8_t cfb[64], fr[CPY_MAX_FRAME_READ];

    for (int groups = 0; cf != root && cf != 0; groups++) {
        if (groups >= MAX_GROUPS || w->n >= w->max)
            break;
        if (!anchor_ok(w, cf) || fetch(c, cf, cfb, L->cf_read) < 0)
            return groups == 0 ? WALK_STALE : WALK_FAIL;
        w->last_anchor = cf;
        uint64_t f = u64(cfb, L->cf_read, L->cf_current_frame);
        while (f != 0) {
            if (++w->steps > MAX_STEPS)
                return w->n;
            if (!ptr_ok(f, 8) || fetch(c, f, fr, L->fr_read) < 0)
                return WALK_FAIL;
            uint8_t owner = fr[L->fr_owner];
            if (owner <= CPY_OWNER_GENERATOR && emit_frame(c, w, fr, cf) < 0)
                return WALK_FAIL;
            if (fr[L->fr_is_entry] || w->n >= w->max)
                break;
            f = u64(fr, L->fr_read, L->fr_previous);
        }
        cf = u64(cfb, L->cf_read, L->cf_previous);
    }
    return w->n;
}

/* 3.12+: frames from the top; an entry frame (owner >= 3, a local of its
 * eval call) closes the group of frames before it and is its anchor.
 * Frames outside any group (none, in a consistent chain) keep anchor 0. */
static int walk_entries(struct cpy *c, struct walk *w, uint64_t f)
{
    const struct cpython_layout *L = &c->L;
    uint8_t fr[CPY_MAX_FRAME_READ];
    int groups = 0;

    while (f != 0 && ++w->steps <= MAX_STEPS) {
        if (!ptr_ok(f, 8) || fetch(c, f, fr, L->fr_read) < 0)
            return groups == 0 && w->n == 0 ? WALK_STALE : WALK_FAIL;
        uint8_t owner = fr[L->fr_owner];
        if (owner >= CPY_OWNER_ENTRY) {
            if (!anchor_ok(w, f))
                return groups == 0 ? WALK_STALE : WALK_FAIL;
            for (int i = w->group_start; i < w->n; i++)
                w->out[i].anchor = f;
            w->group_start = w->n;
            w->last_anchor = f;
            if (++groups >= MAX_GROUPS || w->n >= w->max)
                break;
        } else if (owner <= CPY_OWNER_GENERATOR) {
            if (emit_frame(c, w, fr, 0) < 0)
                return WALK_FAIL;
        }
        f = u64(fr, L->fr_read, L->fr_previous);
    }
    return w->n;
}

static int walk_thread(struct cpy *c, pid_t tid, uint64_t tstate,
                       const struct user_regs_struct *regs,
                       struct vm_frame *out, int max)
{
    const struct cpython_layout *L = &c->L;
    uint8_t ts[CPY_MAX_TSTATE_READ];
    if (fetch(c, tstate, ts, L->ts_read) < 0 ||
        u64(ts, L->ts_read, L->ts_native_thread_id) != (uint64_t)tid)
        return WALK_STALE;
    c->gen_ok = 0;
    c->gen_interp = u64(ts, L->ts_read, L->ts_interp);
    c->gen_now = 0;
    if (L->is_code_generation != CPY_OFF_NONE && ptr_ok(c->gen_interp, 8))
        c->gen_ok = fetch(c, c->gen_interp + L->is_code_generation,
                          &c->gen_now, 8) == 0;

    struct walk w = { .out = out, .max = max, .tstate = tstate };
    if (regs != NULL) {
        w.have_sp = 1;
        w.sp = regs->rsp;
    }
    uint64_t top = u64(ts, L->ts_read, L->ts_frame);
    int r;
    uint8_t cfb[64];
    if (L->model == CPY_MODEL_CFRAME) {
        r = walk_cframes(c, &w, top);
    } else if (L->model == CPY_MODEL_ENTRY_VIA_CFRAME) {
        /* 3.12: top is the current cframe (the root one, inside the
         * thread state, when no eval call runs: current_frame NULL) */
        if (top == 0)
            return 0;
        if (!ptr_ok(top, 8) || fetch(c, top, cfb, L->cf_read) < 0)
            return WALK_STALE;
        r = walk_entries(c, &w, u64(cfb, L->cf_read, L->cf_current_frame));
    } else {
        r = walk_entries(c, &w, top);
    }
    c->st.truncated += r >= 0 && w.cut;
    return r;
}

/* ---- vm_decoder ops ---- */

static int cpy_capture(struct vm_decoder *d, pid_t tid,
                       const struct user_regs_struct *regs,
                       struct vm_frame *out, int max)
{
    struct cpy *c = (struct cpy *)d;
    c->st.captures++;
    c->capture_no++;
    c->pc_used = 0;
    c->memo_used = 0;
    if (out == NULL || max <= 0)
        return 0;
    if (max > MAX_VM_FRAMES)
        max = MAX_VM_FRAMES;

    /* Look the thread up again when it is unknown, was not found lately,
     * its chain looks stale, or it shows no frames (a thread state freed
     * while its memory still reads as idle, e.g. PyGILState_Release)
     * and the last lookup is RESCAN_EVERY captures old. */
    int scanned = 0;
    struct tid_entry *te = tid_find(c, tid);
    if (te == NULL ||
        (te->tstate == 0 && c->capture_no - te->scan_no >= RESCAN_EVERY)) {
        scan_threads(c);
        scanned = 1;
        te = tid_find(c, tid);
    }
    for (;;) {
        if (te == NULL || te->tstate == 0)
            return 0;
        int r = walk_thread(c, tid, te->tstate, regs, out, max);
        if (r > 0 || (r == 0 && (scanned ||
                                 c->capture_no - te->scan_no < RESCAN_EVERY)))
            return r;
        if (r == WALK_FAIL || (r < 0 && scanned)) {
            d->stat_capture_fail++;
            return -1;
        }
        scan_threads(c);
        scanned = 1;
        te = tid_find(c, tid);
    }
}

static int cpy_is_interpreter_ip(struct vm_decoder *d, uint64_t ip)
{
    struct cpy *c = (struct cpy *)d;
    return ip >= c->text_lo && ip < c->text_hi;
}

static void cpy_thread_gone(struct vm_decoder *d, pid_t tid)
{
    struct cpy *c = (struct cpy *)d;
    struct tid_entry *e = tid_find(c, tid);
    if (e != NULL)
        slots_del(&c->tids, e);
}

static void cpy_destroy(struct vm_decoder *d)
{
    struct cpy *c = (struct cpy *)d;
    if (c == NULL)
        return;
    codes_free(c);
    free(c->tids.mem);
    free(c->pc_data);
    free(c->lt_scratch);
    free(c->name);
    free(c);
}

static const struct vm_decoder_ops cpython_ops = {
    .kind = "cpython",
    .capture = cpy_capture,
    .is_interpreter_ip = cpy_is_interpreter_ip,
    .thread_gone = cpy_thread_gone,
    .destroy = cpy_destroy,
};

void vm_cpython_get_stats(const struct vm_decoder *d, struct vm_cpython_stats *out)
{
    memset(out, 0, sizeof *out);
    if (d != NULL && d->ops == &cpython_ops)
        *out = ((const struct cpy *)d)->st;
}

struct vm_decoder *vm_cpython_create_with_reader(const struct cpython_target *t,
                                                 cpython_read_fn read,
                                                 void *read_ctx,
                                                 vm_name_sink sink,
                                                 void *sink_arg, int want_lines,
                                                 char *err, size_t errlen)
{
    struct cpython_layout L;
    uint8_t dbg[CPY_DEBUG_OFFSETS_READ];
    size_t dlen = 0;

    if (t == NULL || read == NULL || !ptr_ok(t->runtime_addr, 8)) {
        snprintf(err, errlen, "CPython: no valid _PyRuntime address "
                 "(the shim publishes it; is it preloaded?)");
        return NULL;
    }
    if (cpython_layout_uses_debug_offsets(t->version_hex)) {
        if (read(read_ctx, t->runtime_addr, dbg, sizeof dbg) < 0) {
            snprintf(err, errlen, "CPython: cannot read _PyRuntime at "
                     "0x%llx: %s", (unsigned long long)t->runtime_addr,
                     strerror(errno));
            return NULL;
        }
        dlen = sizeof dbg;
    }
    if (cpython_layout_init(t->version_hex, dbg, dlen, &L, err, errlen) < 0)
        return NULL;

    struct cpy *c = calloc(1, sizeof *c);
    if (c == NULL || (c->pc_data = malloc((size_t)PC_SLOTS * PAGE_SZ)) == NULL ||
        (c->lt_scratch = malloc(LT_MAX)) == NULL ||
        (c->name = malloc(NAME_CAP)) == NULL) {
        snprintf(err, errlen, "CPython decoder: out of memory");
        cpy_destroy(c ? &c->base : NULL);
        return NULL;
    }
    c->codes.esz = sizeof(struct code_entry);
    c->tids.esz = sizeof(struct tid_entry);
    c->L = L;
    c->runtime = t->runtime_addr;
    c->text_lo = t->interp_text_lo;
    c->text_hi = t->interp_text_hi;
    c->read = read;
    c->read_ctx = read_ctx;
    c->base.ops = &cpython_ops;
    c->base.interp_name = "cpython";
    c->base.sink = sink;
    c->base.sink_arg = sink_arg;
    c->base.want_lines = want_lines;
    return &c->base;
}

static int read_remote(void *ctx, uint64_t addr, void *buf, size_t len)
{
    return remote_read(ctx, addr, buf, len);
}

struct vm_decoder *vm_cpython_create(const struct cpython_target *t,
                                     struct remote_mem *mem,
                                     vm_name_sink sink, void *sink_arg,
                                     int want_lines, char *err, size_t errlen)
{
    if (mem == NULL) {
        snprintf(err, errlen, "CPython decoder: no remote memory");
        return NULL;
    }
    struct vm_decoder *d = vm_cpython_create_with_reader(t, read_remote, mem,
                                                         sink, sink_arg,
                                                         want_lines, err,
                                                         errlen);
    if (d != NULL)
        d->mem = mem;
    return d;
}
