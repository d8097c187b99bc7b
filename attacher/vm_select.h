/*
 * vm_select.h - which VM runs in the target, and its decoder.
 *
 * Reads the target's registry (published by the shim) and builds the
 * matching vm_decoder backend: vm_cpython for CPython, vm_shadow for a VM
 * using the C API. The only place that knows the list of backends.
 */
#ifndef VMPROF_VM_SELECT_H
#define VMPROF_VM_SELECT_H

#include <stddef.h>
#include <sys/types.h>

#include "remote_mem.h"
#include "vm_decoder.h"

/* Returns a decoder, or NULL with a one-line note (no shim, unsupported
 * version...) in note. Cheap enough to retry while a spawned VM starts. */
struct vm_decoder *vm_select_find(pid_t pid, struct remote_mem *mem, vm_name_sink sink,
                                  void *sink_arg, int want_lines, char *note, size_t notelen);

/* Destroy a decoder from vm_select_find and whatever it reads from. */
void vm_select_release(struct vm_decoder *d);

#endif
