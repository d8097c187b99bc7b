/*
 * frames.h - one sample's frames as they travel unwind -> decode -> merge
 * -> writer.
 *
 * A native frame carries the stack range it owns, [sp, cfa): the exact
 * merge places a group of VM frames in place of the native frame whose
 * range holds the group's anchor (DESIGN section 5). Frames are always
 * ordered innermost first, as the vmprof log writes them.
 */
#ifndef VMPROF_FRAMES_H
#define VMPROF_FRAMES_H

#include <stdint.h>

#define MAX_NATIVE_FRAMES 512
#define MAX_VM_FRAMES 1024
#define MAX_STACK_WORDS (2 * (MAX_NATIVE_FRAMES + MAX_VM_FRAMES))

struct native_frame {
    uint64_t ip;                /* pc (innermost) or return address */
    uint64_t sp;                /* lowest stack address of the frame */
    uint64_t cfa;               /* the caller's sp: end of the frame */
    uint64_t func;              /* start of the function (FDE or symbol), 0 unknown */
};

struct vm_frame {
    uint64_t id;                /* code id written to the log: even, unique
                                   per code object identity for the run */
    uint64_t anchor;            /* native stack address that places the
                                   frame's group; 0 = unknown (goes outermost) */
    int32_t line;               /* current line, 0 when unknown */
};

#endif
