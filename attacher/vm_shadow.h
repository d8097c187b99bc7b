/*
 * vm_shadow.h - the vm_decoder backend for VMs that use the shim's C API
 * (target-shim/vmprof_shim.h): frame records that the VM pushes on its
 * native stack, linked from a per-thread top pointer registered in the
 * registry's thread table, and code names from the registry's code table.
 */
#ifndef VMPROF_VM_SHADOW_H
#define VMPROF_VM_SHADOW_H

#include <stddef.h>
#include <stdint.h>

#include "registry_reader.h"
#include "vm_decoder.h"

/* Creates the decoder for a registry of kind VMPROF_REG_KIND_SHADOW. The
 * decoder borrows reg and mem (the caller closes them after destroy) and
 * reads the code records already committed, so that the first samples
 * need not. Returns NULL with err set (wrong kind, out of memory). */
struct vm_decoder *vm_shadow_create(struct registry *reg, struct remote_mem *mem,
                                    vm_name_sink sink, void *sink_arg,
                                    char *err, size_t errlen);

struct vm_shadow_stats {
    uint64_t captures;          /* capture() calls */
    uint64_t frames;            /* VM frames returned */
    uint64_t no_thread;         /* captures of threads not registered */
    uint64_t bad_chains;        /* chains refused: misaligned, not strictly
                                   increasing, below the stack pointer */
    uint64_t read_faults;       /* target memory that could not be read */
    uint64_t unknown_ids;       /* frame ids with no registered name */
    uint64_t renamed_ids;       /* ids registered again with a new name */
};

void vm_shadow_stats(const struct vm_decoder *d, struct vm_shadow_stats *st);

/* Exposed for tests: splits "lang:name:line:file" (the first all-digit
 * field after the language is the line) and formats it with ':' inside
 * name and file escaped. default_lang replaces a missing language.
 * Returns the length written, or -1 if cap is too small. */
int vm_shadow_format_name(char *dst, size_t cap, const char *raw,
                          const char *default_lang);

#endif
