/*
 * registry_writer.h - builds and updates a registry segment in memory
 * (the writer half of vmprof_registry_abi.h). Internal to the shim; the
 * tests use it to build valid registries before damaging them.
 *
 * None of these functions locks: the caller serialises every writer (the
 * shim's spinlock). Readers may run concurrently in another process; the
 * functions publish with release stores in the order the ABI header
 * describes. `base` is 8-byte aligned, `size` bytes long and zeroed before
 * vmreg_format.
 */
#ifndef VMPROF_REGISTRY_WRITER_H
#define VMPROF_REGISTRY_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "vmprof_registry_abi.h"

/* Lays out an empty registry (header, thread table, code table) in a
 * zeroed segment of size bytes with thread_slots slots, without
 * publishing it. Returns 0, or -1 (EINVAL) if the tables do not fit. */
int vmreg_format(void *base, uint64_t size, uint32_t thread_slots,
                 uint32_t kind, uint32_t creator_pid);
/* Release-stores the magic: from now on readers accept the segment. */
void vmreg_publish(void *base);


/* Describes the VM. Name: 1..63 bytes of valid text (EINVAL otherwise). */
int vmreg_set_vm(void *base, uint32_t kind, const char *name, uint64_t version);
void vmreg_set_text(void *base, uint64_t lo, uint64_t hi);
/* code_frees: the shim counts code objects freed (py_code_frees). */
void vmreg_set_cpython(void *base, uint64_t runtime, int debug_offsets, int code_frees);

/* Appends id -> name (len bytes, 1..VMPROF_REG_NAME_MAX, valid text) and
 * publishes it. -1 with errno EINVAL (bad name) or ENOSPC (table full;
 * counted in codes_dropped). */
int vmreg_code_append(void *base, uint64_t id, const char *name, size_t len);

/* Publishes tid -> top in a free slot and returns the slot, or -1 with
 * ENOSPC (counted in threads_dropped). */
int vmreg_thread_add(void *base, uint32_t tid, uint64_t top, uint64_t seq);
/* Frees one slot / every slot that holds tid. */
void vmreg_thread_clear(void *base, uint32_t slot);
void vmreg_thread_clear_tid(void *base, uint32_t tid);
/* After fork: keeps only `keep` (renamed to new_tid), frees the others.
 * keep < 0 frees all. */
void vmreg_thread_reset(void *base, int keep, uint32_t new_tid);

/* The byte ranges that hold data (header, used thread slots, committed
 * code records): what a fork copy must carry. Fills up to 3 ranges,
 * returns how many. */
struct vmreg_range {
    uint64_t off, len;
};
int vmreg_used_ranges(const void *base, struct vmreg_range out[3]);

#endif
