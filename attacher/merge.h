/*
 * merge.h - one sample's native and VM frames into the words of a vmprof
 * STACKTRACE record, exactly (DESIGN section 5).
 *
 * Rule: a VM frame whose anchor lies in the native frame's [sp, cfa)
 * takes that native frame's place (the group goes right where the
 * interpreter frame running it is). No counting, no guessing: a VM frame
 * whose anchor no native frame holds goes outermost; a native frame whose
 * cfa is unknown (UINT64_MAX: the last one unwound) holds none.
 */
#ifndef VMPROF_MERGE_H
#define VMPROF_MERGE_H

#include <stdint.h>

#include "frames.h"
#include "options.h"

struct merge_input {
    const struct native_frame *nat;
    int n_nat;
    const struct vm_frame *vm;
    int n_vm;
    enum native_mode native;
    int lines;                  /* LINES mode: a line word before every frame */
    /* 1 when ip is the interpreter's own code (hidden by NATIVE_EXT) */
    int (*is_interp)(void *arg, uint64_t ip);
    void *arg;
};

/* Writes at most max words, innermost first; returns the count. Native
 * frames become (func ? func : ip) | 1. In NATIVE_EXT mode, when the
 * sample has VM frames, native frames outside the outermost VM frame
 * (process and thread start-up: _start, __libc_start_main, start_thread)
 * are hidden too. */
int merge_stack(const struct merge_input *in, uint64_t *words, int max);

#endif
