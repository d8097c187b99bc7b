/*
 * vm_shadow.c - decodes the frames of VMs that use the shim's C API.
 *
 * Per sample (the thread is stopped): poll the registry's code table for
 * new names, find the thread's top-pointer address in the thread table,
 * read the top pointer, then walk the frame records (struct
 * vmprof_reg_frame: prev, code_id) that the VM keeps on its native stack.
 * Each record's own address is the frame's anchor for the exact merge.
 *
 * Invariants:
 *   - The walk is bounded by the caller's max, and every record must lie
 *     strictly above the previous one (the stack grows down, so a caller's
 *     record is at a higher address): no cycle can survive that, and a
 *     chain that breaks the rule is refused whole (-1), never guessed at.
 *     The innermost record must also lie at or above the thread's stack
 *     pointer (less the 128-byte red zone a leaf function may use); one
 *     below it is a dead frame (a pop the VM skipped).
 *   - Log ids are even, nonzero, below 2^63 and never reused: a VM code id
 *     maps to one log id per name, so an id re-registered with another
 *     name (an address reused by the VM) gets a fresh log id. Native
 *     frames are written as addr|1, so the two never collide.
 *   - A log id's name goes through the sink exactly once, before the first
 *     stack that holds it is returned.
 */
#include "vm_shadow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmprof_writer.h"

#define POLL_PER_CAPTURE 4096       /* code records read while a thread is stopped */
#define WINDOW 4096                 /* bytes of stack read at a time */
#define TID_CACHE 64
#define FIRST_LOG_ID UINT64_C(0x1000)
#define USER_ADDR_END UINT64_C(0x0000800000000000)
#define RED_ZONE 128                /* x86-64: a leaf may keep locals below sp */
#define NAME_CAP (VMPROF_REG_NAME_MAX * 3 + 64)   /* escaped ':' takes 3 bytes */

struct code_entry {
    uint64_t vm_id;
    uint64_t log_id;            /* 0: slot unused */
    char *name;                 /* formatted, escaped */
    int emitted;                /* name went through the sink */
};

struct shadow {
    struct vm_decoder base;     /* first: the decoder is a struct shadow */
    struct registry *reg;
    uint64_t text_lo, text_hi;
    char interp[VMPROF_REG_VM_NAME_SIZE];
    char lang[VMPROF_REG_VM_NAME_SIZE * 3];  /* for names that lack one */
    struct code_entry *tab;     /* open addressing, cap a power of two */
    size_t cap, count;
    uint64_t next_log_id;
    struct {
        pid_t host, ns;
    } tids[TID_CACHE];
    uint64_t win_base;          /* [win_base, +win_len) of target memory */
    size_t win_len;             /*   copied in win during this capture */
    unsigned char win[WINDOW];
    struct vm_shadow_stats st;
};

/* ---- names ------------------------------------------------------------- */

/* Position of the first ":<digits>" field in s followed by ':' or the end,
 * or NULL. *line gets its value (at most 9 digits, so it fits). */
static const char *find_line_field(const char *s, uint32_t *line)
{
    const char *p;

    for (p = strchr(s, ':'); p; p = strchr(p + 1, ':')) {
        size_t k = strspn(p + 1, "0123456789");

        if (k > 0 && k <= 9 && (p[1 + k] == ':' || p[1 + k] == '\0')) {
            *line = (uint32_t)strtoul(p + 1, NULL, 10);
            return p;
        }
    }
    return NULL;
}

int vm_shadow_format_name(char *dst, size_t cap, const char *raw, const char *default_lang)
{
    char *copy, *lang, *name, *file = NULL;
    const char *colon, *lf;
    uint32_t line = 0;
    int n;

    copy = strdup(raw ? raw : "");
    if (!copy)
        return -1;
    colon = strchr(copy, ':');
    if (colon && colon != copy) {
        lang = copy;
        copy[colon - copy] = '\0';
        name = copy + (colon - copy) + 1;
    } else {
        lang = (char *)default_lang;
        name = colon ? copy + 1 : copy;
    }
    lf = find_line_field(name, &line);
    if (lf) {
        char *after = name + (lf - name) + 1 + strspn(lf + 1, "0123456789");

        name[lf - name] = '\0';
        file = *after == ':' ? after + 1 : NULL;
    }
    n = vmprof_format_name(dst, cap, lang, name, line, file);
    free(copy);
    return n;
}

/* ---- the id table ---------------------------------------------------- */

static size_t slot_of(const struct shadow *s, uint64_t vm_id)
{
    return (size_t)((vm_id * UINT64_C(0x9e3779b97f4a7c15)) >> 17) & (s->cap - 1);
}

static struct code_entry *lookup(struct shadow *s, uint64_t vm_id)
{
    size_t i;

    for (i = slot_of(s, vm_id); s->tab[i].log_id; i = (i + 1) & (s->cap - 1))
        if (s->tab[i].vm_id == vm_id)
            return &s->tab[i];
    return NULL;
}

static int grow(struct shadow *s)
{
    struct code_entry *old = s->tab;
    size_t oldcap = s->cap, i;

    s->tab = calloc(oldcap * 2, sizeof *s->tab);
    if (!s->tab) {
        s->tab = old;
        return -1;
    }
    s->cap = oldcap * 2;
    for (i = 0; i < oldcap; i++) {
        size_t j;

        if (!old[i].log_id)
            continue;
        for (j = slot_of(s, old[i].vm_id); s->tab[j].log_id; j = (j + 1) & (s->cap - 1))
            ;
        s->tab[j] = old[i];
    }
    free(old);
    return 0;
}

/* The entry for vm_id, created with `name` (taken over) if absent. */
static struct code_entry *insert(struct shadow *s, uint64_t vm_id, char *name)
{
    size_t i;

    if ((s->count + 1) * 10 > s->cap * 7 && grow(s) != 0)
        return NULL;
    for (i = slot_of(s, vm_id); s->tab[i].log_id; i = (i + 1) & (s->cap - 1))
        ;
    s->tab[i].vm_id = vm_id;
    s->tab[i].log_id = s->next_log_id;
    s->tab[i].name = name;
    s->tab[i].emitted = 0;
    s->next_log_id += 2;
    s->count++;
    return &s->tab[i];
}

/* Poll callback: id -> raw name from the code table. */
static void learn_code(void *arg, uint64_t vm_id, const char *raw, size_t len)
{
    struct shadow *s = arg;
    struct code_entry *e;
    char buf[NAME_CAP], *name;

    if (vm_shadow_format_name(buf, sizeof buf, raw, s->lang) < 0)
        return;
    e = lookup(s, vm_id);
    if (e && strcmp(e->name, buf) == 0)
        return;                 /* registered again, same name */
    name = strdup(buf);
    if (!name)
        return;
    if (!e) {
        if (!insert(s, vm_id, name))
            free(name);
        return;
    }
    free(e->name);
    e->name = name;
    if (e->emitted) {           /* the old name is in the log: new id */
        e->log_id = s->next_log_id;
        s->next_log_id += 2;
        e->emitted = 0;
        s->st.renamed_ids++;
    }
}

/* The log id for a frame's vm_id, its name sent to the sink if new; 0 if
 * out of memory. */
static uint64_t log_id_for(struct shadow *s, uint64_t vm_id)
{
    struct code_entry *e = lookup(s, vm_id);
    char buf[NAME_CAP];

    if (!e && registry_codes_pending(s->reg)) {
        registry_poll_codes(s->reg, learn_code, s, 0);
        e = lookup(s, vm_id);
    }
    if (!e) {
        char raw[64], *name;

        s->st.unknown_ids++;
        snprintf(raw, sizeof raw, ":<unknown code 0x%llx>:0:-", (unsigned long long)vm_id);
        if (vm_shadow_format_name(buf, sizeof buf, raw, s->lang) < 0 || !(name = strdup(buf)))
            return 0;
        e = insert(s, vm_id, name);
        if (!e) {
            free(name);
            return 0;
        }
    }
    if (!e->emitted) {
        e->emitted = 1;
        if (s->base.sink)
            s->base.sink(s->base.sink_arg, e->log_id, e->name);
    }
    return e->log_id;
}

/* ---- the walk ---------------------------------------------------------- */

/* One frame record at addr, from the window when it holds it. */
static int read_record(struct shadow *s, uint64_t addr, struct vmprof_reg_frame *f)
{
    ssize_t n;

    if (addr >= s->win_base && addr - s->win_base <= s->win_len &&
        s->win_len - (addr - s->win_base) >= sizeof *f) {
        memcpy(f, s->win + (addr - s->win_base), sizeof *f);
        return 0;
    }
    n = remote_read_upto(s->base.mem, addr, s->win, WINDOW);
    if (n < (ssize_t)sizeof *f) {
        s->win_len = 0;
        s->st.read_faults++;
        return -1;
    }
    s->win_base = addr;
    s->win_len = (size_t)n;
    memcpy(f, s->win, sizeof *f);
    return 0;
}

/* Walks the chain from the record at top; fills out[0..max) innermost
 * first. Returns the count, or -1 for a chain that cannot be trusted. */
static int walk(struct shadow *s, uint64_t top, uint64_t sp, struct vm_frame *out, int max)
{
    uint64_t addr = top, prev = 0;
    int n = 0;

    s->win_len = 0;             /* memory changed since the last sample */
    while (addr != 0) {
        struct vmprof_reg_frame f;
        uint64_t id;

        if (n >= max) {
            s->base.stat_truncated++;  /* keep the innermost max frames */
            break;
        }
        if (addr % 8 || addr <= prev || addr >= USER_ADDR_END - sizeof f ||
            (sp > RED_ZONE && addr < sp - RED_ZONE)) {
            s->st.bad_chains++;
            return -1;
        }
        if (read_record(s, addr, &f) != 0)
            return -1;
        id = log_id_for(s, f.code_id);
        if (id == 0)
            return -1;
        out[n].id = id;
        out[n].anchor = addr;
        out[n].line = 0;
        n++;
        prev = addr;
        addr = f.prev;
    }
    return n;
}

static pid_t ns_tid(struct shadow *s, pid_t tid)
{
    unsigned h = (unsigned)tid % TID_CACHE;
    pid_t ns;

    if (s->tids[h].host == tid)
        return s->tids[h].ns;
    ns = registry_ns_tid(s->reg, tid);
    if (ns > 0) {
        s->tids[h].host = tid;
        s->tids[h].ns = ns;
    }
    return ns;
}

static int shadow_capture(struct vm_decoder *d, pid_t tid,
                          const struct user_regs_struct *regs,
                          struct vm_frame *out, int max)
{
    struct shadow *s = (struct shadow *)d;
    uint64_t top_addr, top;
    pid_t ns;
    int rc, n;

    s->st.captures++;
    registry_poll_codes(s->reg, learn_code, s, POLL_PER_CAPTURE);
    ns = ns_tid(s, tid);
    if (ns <= 0)
        goto fail;
    rc = registry_thread_anchor(s->reg, ns, &top_addr);
    if (rc == 1) {
        s->st.no_thread++;
        return 0;               /* not a VM thread (yet): native frames only */
    }
    if (rc != 0)
        goto fail;
    if (remote_read(d->mem, top_addr, &top, sizeof top) != 0) {
        s->st.read_faults++;
        goto fail;
    }
    n = walk(s, top, regs ? (uint64_t)regs->rsp : 0, out, max < 0 ? 0 : max);
    if (n < 0)
        goto fail;
    s->st.frames += (uint64_t)n;
    return n;
fail:
    d->stat_capture_fail++;
    return -1;
}

static int shadow_is_interpreter_ip(struct vm_decoder *d, uint64_t ip)
{
    const struct shadow *s = (const struct shadow *)d;

    return ip >= s->text_lo && ip < s->text_hi;
}

static void shadow_thread_gone(struct vm_decoder *d, pid_t tid)
{
    struct shadow *s = (struct shadow *)d;
    unsigned h = (unsigned)tid % TID_CACHE;

    if (s->tids[h].host == tid)
        s->tids[h].host = 0;
}

static void shadow_destroy(struct vm_decoder *d)
{
    struct shadow *s = (struct shadow *)d;
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->cap; i++)
        free(s->tab[i].name);
    free(s->tab);
    free(s);
}

static const struct vm_decoder_ops shadow_ops = {
    .kind = "shadow",
    .capture = shadow_capture,
    .is_interpreter_ip = shadow_is_interpreter_ip,
    .thread_gone = shadow_thread_gone,
    .destroy = shadow_destroy,
};

struct vm_decoder *vm_shadow_create(struct registry *reg, struct remote_mem *mem,
                                    vm_name_sink sink, void *sink_arg,
                                    char *err, size_t errlen)
{
    const struct registry_info *info = registry_info(reg);
    struct shadow *s;

    if (info->kind != VMPROF_REG_KIND_SHADOW) {
        snprintf(err, errlen, "registry describes VM kind %u, not a shadow-stack VM",
                 (unsigned)info->kind);
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s)
        s->tab = calloc(1024, sizeof *s->tab);
    if (!s || !s->tab) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cap = 1024;
    s->next_log_id = FIRST_LOG_ID;
    s->reg = reg;
    snprintf(s->interp, sizeof s->interp, "%s", info->vm_name[0] ? info->vm_name : "vm");
    vmprof_escape_name(s->lang, sizeof s->lang, s->interp);
    if (info->flags & VMPROF_REG_F_TEXT_RANGE) {
        s->text_lo = info->text_lo;
        s->text_hi = info->text_hi;
    }
    s->base.ops = &shadow_ops;
    s->base.interp_name = s->interp;
    s->base.mem = mem;
    s->base.sink = sink;
    s->base.sink_arg = sink_arg;
    registry_poll_codes(reg, learn_code, s, 0);   /* the backlog, before any stop */
    return &s->base;
}

void vm_shadow_stats(const struct vm_decoder *d, struct vm_shadow_stats *st)
{
    *st = ((const struct shadow *)d)->st;
}
