/*
 * vm_cpython.c - CPython's frames, read from outside the process while the
 * thread is stopped: thread state lookup and the frame-chain walk with
 * anchors. Names, ids and lines of code objects are cpython_names.c's;
 * the reads of one stop are cpython_mem.c's.
 *
 * Invariants:
 *   - Every byte comes through cpy_mem (one reader, swappable for tests)
 *     and is untrusted: pointers are checked for alignment and range,
 *     walks are bounded (MAX_STEPS frames, MAX_GROUPS C-level calls,
 *     MAX_INTERPS/MAX_TSTATES in the thread lists), and a capture reads
 *     at most CPY_MEM_BYTES, whatever the target's memory says.
 *   - Anchors are C-stack addresses: each lies in [sp, sp + STACK_SPAN)
 *     of the stopped thread and they grow strictly from inner to outer
 *     groups. A chain that breaks this is stale (rescan the thread list
 *     once) or inconsistent (the capture fails, -1).
 *   - Names: every id returned was emitted through the sink first, under
 *     cpython_names' identity rules (a cached code address is re-proved
 *     in each capture, or trusted through 3.14's code generation or the
 *     shim's count of code objects freed).
 *   - Reads are few (cost model in cpython_mem.h): a capture starts with
 *     one batched read of the pages this thread's last captures used
 *     (its hint), walks the chain from cached pages, then proves all the
 *     code objects of the stack in at most two more batches; what lies in
 *     the snapshot's copy of the C stack (vm_cpython_stack_copy) is not
 *     read at all. A warm capture of a stack like the last one is one
 *     process_vm_readv. Nothing read while one thread was stopped is
 *     reused for another stop.
 */
#include "vm_cpython.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpython_layout.h"
#include "cpython_mem.h"
#include "cpython_names.h"
#include "cpython_table.h"

#define MAX_INTERPS 256
#define MAX_TSTATES 8192
#define MAX_STEPS 8192              /* frames visited per capture */
#define MAX_GROUPS 1024             /* C-level eval calls per capture */
#define RESCAN_EVERY 32             /* captures before a thread without a
                                       thread state is looked up again */
#define STACK_SPAN (1ull << 30)     /* anchors lie within this above sp */

enum { WALK_FAIL = -1, WALK_STALE = -2 };

struct tid_entry {
    uint64_t tid;                   /* the table's key */
    uint64_t tstate;                /* 0 = no thread state found */
    uint64_t interp;
    uint64_t scan_no;               /* capture of the last scan */
    struct cpy_hint *hint;          /* pages its captures used, or NULL */
};

struct cpy {
    struct vm_decoder base;         /* first: a vm_decoder* is a cpy* */
    struct cpython_layout L;
    uint64_t runtime, text_lo, text_hi;
    const uint64_t *code_frees;     /* the shim's counter, or NULL */
    struct cpy_mem mem;
    struct cpy_names names;
    struct cpy_table tids;          /* of struct tid_entry */
    uint64_t capture_no;
    const void *stk;                /* stack copy for the next capture */
    uint64_t stk_lo;
    size_t stk_len;
    struct vm_cpython_stats st;
    uint64_t code[MAX_VM_FRAMES];   /* per frame of the walk: its code */
    uint64_t instr[MAX_VM_FRAMES];  /* ... and instruction pointer */
};

static uint64_t u64(const uint8_t *b, size_t n, uint32_t off)
{
    return cpy_load_u64(b, n, off);
}

static int fetch(struct cpy *c, uint64_t addr, void *buf, size_t len)
{
    return cpy_mem_fetch(&c->mem, addr, buf, len);
}

/* ---- threads: OS tid -> thread state ---- */

static struct tid_entry *tid_find(struct cpy *c, pid_t tid)
{
    return tid > 0 ? cpy_table_find(&c->tids, (uint64_t)tid) : NULL;
}

static struct tid_entry *tid_put(struct cpy *c, pid_t tid)
{
    struct tid_entry *e = tid_find(c, tid);
    if (e == NULL && tid > 0 && c->tids.used < 4 * MAX_TSTATES)
        e = cpy_table_add(&c->tids, (uint64_t)tid);
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
        struct tid_entry *e = cpy_table_at(&c->tids, i);
        if (e != NULL) {
            e->tstate = 0;
            e->scan_no = c->capture_no;
        }
    }
    if (fetch(c, c->runtime + L->rt_interpreters_head, &interp, 8) < 0)
        return;
    for (unsigned ni = 0; ni < MAX_INTERPS && cpy_ptr_ok(interp, 8); ni++) {
        uint64_t t = 0;
        if (fetch(c, interp + L->is_threads_head, &t, 8) < 0)
            return;
        while (cpy_ptr_ok(t, 8) && nts++ < MAX_TSTATES) {
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

/* The walk only gathers frames (code and instruction pointers, anchors);
 * their code objects are proved afterwards, all at once (resolve_frames),
 * so that their reads can be batched. */
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

/* One frame buffer fr: note its code for the output (if room). */
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
    if (!cpy_ptr_ok(code, 8))
        return -1;
    c->code[w->n] = code;
    c->instr[w->n] = u64(fr, L->fr_read, L->fr_instr);
    w->out[w->n++] = (struct vm_frame){ .anchor = anchor };
    return 0;
}

/* 3.11: one group per _PyCFrame, from cframe->current_frame down to the
 * frame with is_entry, and never into the frame the next (outer) cframe
 * runs: an entry frame's previous is that frame, and a thread stopped in
 * _PyEval_EvalFrameDefault between installing its cframe and setting
 * is_entry (the stores are not ordered) shows an entry frame without the
 * flag, which would lend the outer group's frames to this one too (seen:
 * callback_sort's chain twice above sort_key). The root cframe (inside the
 * thread state) anchors nothing and ends the walk. */
static int walk_cframes(struct cpy *c, struct walk *w, uint64_t cf)
{
    const struct cpython_layout *L = &c->L;
    uint64_t root = w->tstate + L->ts_root_cframe;
    uint8_t cfb[64], outer_b[64], fr[CPY_MAX_FRAME_READ];
    int have = 0;                   /* cfb holds cf: read as the last outer */

    for (int groups = 0; cf != root && cf != 0; groups++) {
        if (groups >= MAX_GROUPS || w->n >= w->max) {
            w->cut = 1;             /* a group is left */
            break;
        }
        if (!anchor_ok(w, cf) || (!have && fetch(c, cf, cfb, L->cf_read) < 0))
            return groups == 0 ? WALK_STALE : WALK_FAIL;
        w->last_anchor = cf;
        uint64_t outer = u64(cfb, L->cf_read, L->cf_previous);
        uint64_t stop = 0;          /* the outer cframe's current frame */
        have = 0;
        if (outer != root && outer != 0 && anchor_ok(w, outer) &&
            fetch(c, outer, outer_b, L->cf_read) == 0) {
            have = 1;
            stop = u64(outer_b, L->cf_read, L->cf_current_frame);
        }
        uint64_t f = u64(cfb, L->cf_read, L->cf_current_frame);
        while (f != 0 && f != stop) {
            if (++w->steps > MAX_STEPS) {
                w->cut = 1;
                return w->n;
            }
            if (!cpy_ptr_ok(f, 8) || fetch(c, f, fr, L->fr_read) < 0)
                return WALK_FAIL;
            uint8_t owner = fr[L->fr_owner];
            if (owner <= CPY_OWNER_GENERATOR && emit_frame(c, w, fr, cf) < 0)
                return WALK_FAIL;
            if (fr[L->fr_is_entry])
                break;
            f = u64(fr, L->fr_read, L->fr_previous);
            if (w->n >= w->max) {
                w->cut |= f != 0 && f != stop;  /* frames of this group left */
                break;
            }
        }
        cf = outer;
        if (have)
            memcpy(cfb, outer_b, L->cf_read);
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
        if (!cpy_ptr_ok(f, 8) || fetch(c, f, fr, L->fr_read) < 0)
            return groups == 0 && w->n == 0 ? WALK_STALE : WALK_FAIL;
        uint8_t owner = fr[L->fr_owner];
        if (owner >= CPY_OWNER_ENTRY) {
            if (!anchor_ok(w, f))
                return groups == 0 ? WALK_STALE : WALK_FAIL;
            for (int i = w->group_start; i < w->n; i++)
                w->out[i].anchor = f;
            w->group_start = w->n;
            w->last_anchor = f;
            if (++groups >= MAX_GROUPS || w->n >= w->max) {
                w->cut |= u64(fr, L->fr_read, L->fr_previous) != 0;
                break;
            }
        } else if (owner <= CPY_OWNER_GENERATOR) {
            if (emit_frame(c, w, fr, 0) < 0)
                return WALK_FAIL;
        }
        f = u64(fr, L->fr_read, L->fr_previous);
    }
    w->cut |= f != 0 && w->steps > MAX_STEPS;
    return w->n;
}

/* Ids (and lines) of the n frames the walk gathered: their code objects'
 * reads in two batches, then each proved from this stop's pages. */
static int resolve_frames(struct cpy *c, struct vm_frame *out, int n)
{
    cpy_names_prepare(&c->names, c->code, n);
    for (int i = 0; i < n; i++) {
        if (cpy_names_frame(&c->names, c->code[i], c->instr[i], &out[i].id,
                            &out[i].line) < 0)
            return WALK_FAIL;
    }
    return n;
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
    /* What proves a cached code address without reading it (see
     * cpython_names.h): 3.14's own code generation, or before it the
     * shim's count of code objects freed; read during this stop, while
     * the thread's frames hold their code objects alive. */
    uint64_t interp = u64(ts, L->ts_read, L->ts_interp), gen = 0;
    int gen_ok = 0;
    if (L->is_code_generation != CPY_OFF_NONE)
        gen_ok = cpy_ptr_ok(interp, 8) &&
                 fetch(c, interp + L->is_code_generation, &gen, 8) == 0;
    else if (c->code_frees != NULL && cpy_ptr_ok(interp, 8)) {
        gen = __atomic_load_n(c->code_frees, __ATOMIC_ACQUIRE);
        gen_ok = 1;
    }
    cpy_names_generation(&c->names, gen_ok, interp, gen);

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
        if (!cpy_ptr_ok(top, 8) || fetch(c, top, cfb, L->cf_read) < 0)
            return WALK_STALE;
        r = walk_entries(c, &w, u64(cfb, L->cf_read, L->cf_current_frame));
    } else {
        r = walk_entries(c, &w, top);
    }
    if (r > 0)
        r = resolve_frames(c, out, r);
    c->base.stat_truncated += r >= 0 && w.cut;
    return r;
}

/* ---- vm_decoder ops ---- */

/* Find the thread and walk it, looking the thread up again when it is
 * unknown, was not found lately, its chain looks stale, or it shows no
 * frames (a thread state freed while its memory still reads as idle,
 * e.g. PyGILState_Release) and the last lookup is RESCAN_EVERY captures
 * old. */
static int capture_thread(struct cpy *c, pid_t tid,
                          const struct user_regs_struct *regs,
                          struct vm_frame *out, int max)
{
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
            c->base.stat_capture_fail++;
            return -1;
        }
        scan_threads(c);
        scanned = 1;
        te = tid_find(c, tid);
    }
}

static int cpy_capture(struct vm_decoder *d, pid_t tid,
                       const struct user_regs_struct *regs,
                       struct vm_frame *out, int max)
{
    struct cpy *c = (struct cpy *)d;
    c->st.captures++;
    c->capture_no++;
    cpy_mem_begin(&c->mem);
    cpy_mem_overlay(&c->mem, c->stk_lo, c->stk, c->stk_len);
    c->stk = NULL;                  /* good for this stop only */
    cpy_names_begin(&c->names, c->capture_no);
    if (out == NULL || max <= 0)
        return 0;
    if (max > MAX_VM_FRAMES)
        max = MAX_VM_FRAMES;

    struct tid_entry *te = tid_find(c, tid);
    if (te != NULL && te->tstate != 0 && te->hint != NULL) {
        cpy_hint_want(te->hint, &c->mem);   /* one read, most stops */
        cpy_mem_load(&c->mem);
    }
    int r = capture_thread(c, tid, regs, out, max);

    /* remember the pages used, for this thread's next capture (not for a
     * thread without a thread state: its next capture reads nothing) */
    te = tid_find(c, tid);
    if (te != NULL && te->tstate != 0 && te->hint == NULL)
        te->hint = calloc(1, sizeof *te->hint);
    if (te != NULL && te->tstate != 0 && te->hint != NULL)
        cpy_hint_update(te->hint, &c->mem);
    c->st.reads = c->mem.calls;
    c->st.pages = c->mem.pages;
    return r;
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
    if (e != NULL) {
        free(e->hint);
        cpy_table_del(&c->tids, e);
    }
}

static void cpy_destroy(struct vm_decoder *d)
{
    struct cpy *c = (struct cpy *)d;
    if (c == NULL)
        return;
    for (uint32_t i = 0; i < c->tids.cap; i++) {
        struct tid_entry *e = cpy_table_at(&c->tids, i);
        if (e != NULL)
            free(e->hint);
    }
    cpy_table_free(&c->tids);
    cpy_names_free(&c->names);
    cpy_mem_free(&c->mem);
    free(c);
}

static const struct vm_decoder_ops cpython_ops = {
    .kind = "cpython",
    .capture = cpy_capture,
    .stack_copy = vm_cpython_stack_copy,
    .is_interpreter_ip = cpy_is_interpreter_ip,
    .thread_gone = cpy_thread_gone,
    .destroy = cpy_destroy,
};

void vm_cpython_stack_copy(struct vm_decoder *d, uint64_t lo, const void *buf,
                           size_t len)
{
    if (d == NULL || d->ops != &cpython_ops)
        return;
    struct cpy *c = (struct cpy *)d;
    c->stk = buf;
    c->stk_lo = lo;
    c->stk_len = buf != NULL ? len : 0;
}

void vm_cpython_get_stats(const struct vm_decoder *d, struct vm_cpython_stats *out)
{
    memset(out, 0, sizeof *out);
    if (d != NULL && d->ops == &cpython_ops)
        *out = ((const struct cpy *)d)->st;
}

static struct vm_decoder *create(const struct cpython_target *t,
                                 cpython_read_fn read, cpy_mem_readv_fn readv,
                                 void *read_ctx, vm_name_sink sink,
                                 void *sink_arg, int want_lines,
                                 char *err, size_t errlen)
{
    struct cpython_layout L;
    uint8_t dbg[CPY_DEBUG_OFFSETS_READ];
    size_t dlen = 0;

    if (t == NULL || read == NULL || !cpy_ptr_ok(t->runtime_addr, 8)) {
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
    if (c != NULL)
        c->L = L;
    if (c == NULL || cpy_mem_init(&c->mem, read, readv, read_ctx) < 0 ||
        cpy_names_init(&c->names, &c->L, &c->mem, &c->st, sink, sink_arg,
                       want_lines) < 0) {
        snprintf(err, errlen, "CPython decoder: out of memory");
        cpy_destroy(c ? &c->base : NULL);
        return NULL;
    }
    cpy_table_init(&c->tids, sizeof(struct tid_entry));
    c->runtime = t->runtime_addr;
    c->code_frees = t->code_frees;
    c->text_lo = t->interp_text_lo;
    c->text_hi = t->interp_text_hi;
    c->base.ops = &cpython_ops;
    c->base.interp_name = "cpython";
    c->base.sink = sink;
    c->base.sink_arg = sink_arg;
    c->base.want_lines = want_lines;
    return &c->base;
}

struct vm_decoder *vm_cpython_create_with_reader(const struct cpython_target *t,
                                                 cpython_read_fn read,
                                                 void *read_ctx,
                                                 vm_name_sink sink,
                                                 void *sink_arg, int want_lines,
                                                 char *err, size_t errlen)
{
    return create(t, read, NULL, read_ctx, sink, sink_arg, want_lines, err,
                  errlen);
}

static int read_remote(void *ctx, uint64_t addr, void *buf, size_t len)
{
    return remote_read(ctx, addr, buf, len);
}

/* One batch: process_vm_readv calls it took, from remote_mem's count. */
static int readv_remote(void *ctx, struct remote_span *spans, int n)
{
    struct remote_mem *m = ctx;
    uint64_t before = m->reads;
    remote_readv(m, spans, n);
    return (int)(m->reads - before);
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
    struct vm_decoder *d = create(t, read_remote, readv_remote, mem, sink,
                                  sink_arg, want_lines, err, errlen);
    if (d != NULL)
        d->mem = mem;
    return d;
}
