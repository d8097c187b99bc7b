/*
 * registry_writer.c - the writer half of the registry ABI: lays out a
 * segment, appends code records, fills and frees thread slots.
 *
 * Invariants kept here:
 *   - code_committed only grows, always by whole records, and is
 *     release-stored after the record's bytes: a reader that acquires it
 *     sees complete records below it, never a partial one.
 *   - A thread slot reads PUBLISHED only when tid, top_addr and seq are
 *     written; thread_hwm covers every slot that was ever used, so a
 *     reader's scan is bounded by it and touches no untouched page.
 *   - Nothing here reads past the tables the header describes; the caller
 *     (the shim) is trusted and serialises all writers.
 */
#include "registry_writer.h"

#include <errno.h>
#include <string.h>

static struct vmprof_reg_header *hdr(void *base)
{
    return (struct vmprof_reg_header *)base;
}

static struct vmprof_reg_thread_slot *slots(void *base)
{
    return (struct vmprof_reg_thread_slot *)((char *)base + hdr(base)->thread_table_off);
}

int vmreg_format(void *base, uint64_t size, uint32_t thread_slots,
                 uint32_t kind, uint32_t creator_pid)
{
    struct vmprof_reg_header *h = hdr(base);
    uint64_t thr_off = VMPROF_REG_HEADER_SPACE;
    uint64_t code_off = thr_off + (uint64_t)thread_slots * sizeof(struct vmprof_reg_thread_slot);

    code_off = (code_off + 4095u) & ~UINT64_C(4095);
    if (size > VMPROF_REG_MAX_SIZE || code_off + 4096u > size || thread_slots == 0 ||
        thread_slots > VMPROF_REG_MAX_THREAD_SLOTS) {
        errno = EINVAL;
        return -1;
    }
    h->abi_version = VMPROF_REG_ABI_VERSION;
    h->header_size = sizeof(*h);
    h->total_size = size;
    h->vm_kind = kind;
    h->creator_pid = creator_pid;
    h->frame_size = sizeof(struct vmprof_reg_frame);
    h->frame_prev_off = offsetof(struct vmprof_reg_frame, prev);
    h->frame_id_off = offsetof(struct vmprof_reg_frame, code_id);
    h->thread_slot_size = sizeof(struct vmprof_reg_thread_slot);
    h->thread_table_off = thr_off;
    h->thread_slot_count = thread_slots;
    h->code_table_off = code_off;
    h->code_table_size = size - code_off;
    return 0;
}

void vmreg_publish(void *base)
{
    __atomic_store_n(&hdr(base)->magic, VMPROF_REG_MAGIC, __ATOMIC_RELEASE);
}

int vmreg_set_vm(void *base, uint32_t kind, const char *name, uint64_t version)
{
    struct vmprof_reg_header *h = hdr(base);
    size_t n = name ? strnlen(name, VMPROF_REG_VM_NAME_SIZE) : 0;

    if (n == 0 || n >= VMPROF_REG_VM_NAME_SIZE || !vmprof_reg_text_valid(name, n)) {
        errno = EINVAL;
        return -1;
    }
    memset(h->vm_name, 0, sizeof h->vm_name);
    memcpy(h->vm_name, name, n);
    h->vm_kind = kind;
    h->vm_version = version;
    return 0;
}

void vmreg_set_text(void *base, uint64_t lo, uint64_t hi)
{
    struct vmprof_reg_header *h = hdr(base);

    if (lo < hi) {
        h->text_lo = lo;
        h->text_hi = hi;
        h->flags |= VMPROF_REG_F_TEXT_RANGE;
    } else {
        h->flags &= ~VMPROF_REG_F_TEXT_RANGE;
        h->text_lo = h->text_hi = 0;
    }
}

void vmreg_set_cpython(void *base, uint64_t runtime, int debug_offsets, int code_frees)
{
    struct vmprof_reg_header *h = hdr(base);

    h->py_runtime = runtime;
    if (debug_offsets)
        h->flags |= VMPROF_REG_F_PY_DEBUG_OFFSETS;
    else
        h->flags &= ~VMPROF_REG_F_PY_DEBUG_OFFSETS;
    if (code_frees)
        h->flags |= VMPROF_REG_F_PY_CODE_FREES;
    else
        h->flags &= ~VMPROF_REG_F_PY_CODE_FREES;
}

int vmreg_code_append(void *base, uint64_t id, const char *name, size_t len)
{
    struct vmprof_reg_header *h = hdr(base);
    uint64_t at = h->code_committed, need = VMPROF_REG_RECORD_SIZE(len);
    struct vmprof_reg_code_record rec;
    char *p;

    if (len == 0 || len > VMPROF_REG_NAME_MAX || !vmprof_reg_text_valid(name, len)) {
        __atomic_fetch_add(&h->codes_dropped, 1, __ATOMIC_RELAXED);
        errno = EINVAL;
        return -1;
    }
    if (at > h->code_table_size || need > h->code_table_size - at) {
        __atomic_fetch_add(&h->codes_dropped, 1, __ATOMIC_RELAXED);
        errno = ENOSPC;
        return -1;
    }
    p = (char *)base + h->code_table_off + at;
    rec.id = id;
    rec.len = (uint32_t)len;
    rec.kind = VMPROF_REG_REC_CODE;
    memcpy(p, &rec, sizeof rec);
    memcpy(p + sizeof rec, name, len);
    memset(p + sizeof rec + len, 0, need - sizeof rec - len);
    __atomic_store_n(&h->code_committed, at + need, __ATOMIC_RELEASE);
    __atomic_fetch_add(&h->codes_registered, 1, __ATOMIC_RELAXED);
    return 0;
}

int vmreg_thread_add(void *base, uint32_t tid, uint64_t top, uint64_t seq)
{
    struct vmprof_reg_header *h = hdr(base);
    struct vmprof_reg_thread_slot *s = slots(base);
    uint32_t i;

    for (i = 0; i < h->thread_slot_count; i++) {
        if (__atomic_load_n(&s[i].state, __ATOMIC_RELAXED) != VMPROF_REG_SLOT_FREE)
            continue;
        __atomic_store_n(&s[i].state, VMPROF_REG_SLOT_WRITING, __ATOMIC_RELAXED);
        s[i].tid = tid;
        s[i].top_addr = top;
        s[i].seq = seq;
        if (i + 1 > h->thread_hwm)
            __atomic_store_n(&h->thread_hwm, i + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&s[i].state, VMPROF_REG_SLOT_PUBLISHED, __ATOMIC_RELEASE);
        return (int)i;
    }
    __atomic_fetch_add(&h->threads_dropped, 1, __ATOMIC_RELAXED);
    errno = ENOSPC;
    return -1;
}

void vmreg_thread_clear(void *base, uint32_t slot)
{
    struct vmprof_reg_header *h = hdr(base);
    struct vmprof_reg_thread_slot *s = slots(base);

    if (slot >= h->thread_slot_count)
        return;
    __atomic_store_n(&s[slot].state, VMPROF_REG_SLOT_FREE, __ATOMIC_RELEASE);
    s[slot].tid = 0;
    s[slot].top_addr = 0;
}

void vmreg_thread_clear_tid(void *base, uint32_t tid)
{
    struct vmprof_reg_header *h = hdr(base);
    struct vmprof_reg_thread_slot *s = slots(base);
    uint32_t i;

    for (i = 0; i < h->thread_hwm && i < h->thread_slot_count; i++)
        if (s[i].state != VMPROF_REG_SLOT_FREE && s[i].tid == tid)
            vmreg_thread_clear(base, i);
}

void vmreg_thread_reset(void *base, int keep, uint32_t new_tid)
{
    struct vmprof_reg_header *h = hdr(base);
    struct vmprof_reg_thread_slot *s = slots(base);
    uint32_t i;

    for (i = 0; i < h->thread_hwm && i < h->thread_slot_count; i++) {
        if (keep >= 0 && i == (uint32_t)keep && s[i].state == VMPROF_REG_SLOT_PUBLISHED)
            s[i].tid = new_tid;
        else if (s[i].state != VMPROF_REG_SLOT_FREE)
            vmreg_thread_clear(base, i);
    }
}

int vmreg_used_ranges(const void *base, struct vmreg_range out[3])
{
    const struct vmprof_reg_header *h = (const struct vmprof_reg_header *)base;

    out[0].off = 0;
    out[0].len = VMPROF_REG_HEADER_SPACE;
    out[1].off = h->thread_table_off;
    out[1].len = (uint64_t)h->thread_hwm * sizeof(struct vmprof_reg_thread_slot);
    out[2].off = h->code_table_off;
    out[2].len = h->code_committed;
    return 3;
}
