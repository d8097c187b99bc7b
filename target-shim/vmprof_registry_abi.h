/*
 * vmprof_registry_abi.h - the registry: the one piece of memory shared by
 * the target shim (writer) and vmprof-attach (reader). This header is the
 * whole contract between them; nothing else crosses.
 *
 * What it is. A memfd named VMPROF_REG_MEMFD_NAME ("vmprof-registry"),
 * created lazily by the shim, sealed against shrinking (F_SEAL_SHRINK, so a
 * reader's mapping can never SIGBUS) and mapped MAP_SHARED in the target.
 * The attacher finds it by readlink of /proc/PID/fd/N ("/memfd:vmprof-
 * registry (deleted)") or, when the target closed the fd, through
 * /proc/PID/map_files; it maps the file read-only.
 *
 * Layout (ABI version 1):
 *
 *   [0, header_size)                 struct vmprof_reg_header
 *   [thread_table_off, +count*32)    struct vmprof_reg_thread_slot[count]
 *   [code_table_off, +code_table_size)
 *                                    append-only code records, each
 *                                    struct vmprof_reg_code_record followed
 *                                    by `len` name bytes padded with zeros
 *                                    to a multiple of 8
 *
 * Rules for both sides:
 *   - Offsets from the start of the segment, never pointers into it. The
 *     only addresses stored are addresses in the target's address space
 *     (py_runtime, text range, thread top pointers), which the attacher
 *     reads through process_vm_readv.
 *   - Fixed-width fields, little-endian (the only hosts are x86-64 and
 *     other little-endian 64-bit Linux targets; the magic catches others).
 *   - Memory ordering: fields marked "release" are written with a release
 *     store after the data they publish and must be read with an acquire
 *     load. Everything else in the header is written once, before `magic`
 *     is release-stored, except the counters (relaxed, informational).
 *   - The reader treats every byte as hostile: it validates offsets, sizes,
 *     counts and alignment against the size of its own mapping, copies a
 *     record before checking it, and bounds every scan.
 *   - After fork() the shim gives the child a private copy with a new
 *     creator_pid; a registry whose creator_pid is not the target's own pid
 *     (as the target sees it: the last NStgid number) is an inherited copy
 *     and must be ignored.
 *
 * Compatibility: a reader accepts exactly the abi_version it knows. Fields
 * may be added in the reserved space or after the header with a version
 * bump only, or in the reserved space together with a flag bit that says
 * the field is maintained (a reader that does not know the flag ignores
 * the field; the shim sets the flag only when it maintains it).
 */
#ifndef VMPROF_REGISTRY_ABI_H
#define VMPROF_REGISTRY_ABI_H

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the vmprof registry ABI is little-endian"
#endif

#define VMPROF_REG_MEMFD_NAME   "vmprof-registry"
/* Bytes 'M','P','R','O','F','R','E','G' read as a little-endian word. */
#define VMPROF_REG_MAGIC        UINT64_C(0x474552464f52504d)
#define VMPROF_REG_ABI_VERSION  1u

/* vm_kind */
#define VMPROF_REG_KIND_NONE    0u  /* registry exists, no VM described yet */
#define VMPROF_REG_KIND_CPYTHON 1u  /* walk CPython's frame chain (py_runtime) */
#define VMPROF_REG_KIND_SHADOW  2u  /* shadow stack through the C API */

/* flags */
#define VMPROF_REG_F_TEXT_RANGE   0x1u  /* text_lo/text_hi are set */
#define VMPROF_REG_F_PY_DEBUG_OFFSETS 0x2u /* _PyRuntime starts with
                                              _Py_DebugOffsets ("xdebugpy") */
#define VMPROF_REG_F_PY_CODE_FREES 0x4u /* py_code_frees counts every code
                                           object freed since the registry
                                           was created */

#define VMPROF_REG_VM_NAME_SIZE 64u     /* vm_name bytes, NUL included */
#define VMPROF_REG_NAME_MAX     4096u   /* max code name length (bytes) */

/* Sizes the shim uses. The segment is large but sparse: pages of a memfd
 * cost nothing until written. */
#define VMPROF_REG_SIZE          (UINT64_C(64) << 20)
#define VMPROF_REG_THREAD_SLOTS  4096u
#define VMPROF_REG_HEADER_SPACE  4096u  /* the thread table starts here */

/* Limits the reader enforces (larger values are rejected as hostile). */
#define VMPROF_REG_MAX_SIZE      (UINT64_C(1) << 30)
#define VMPROF_REG_MAX_THREAD_SLOTS 65536u

struct vmprof_reg_header {
    uint64_t magic;             /* VMPROF_REG_MAGIC; release, written last */
    uint32_t abi_version;       /* VMPROF_REG_ABI_VERSION */
    uint32_t header_size;       /* sizeof(struct vmprof_reg_header) */
    uint64_t total_size;        /* bytes in the segment (the memfd size) */
    uint32_t vm_kind;           /* VMPROF_REG_KIND_* */
    uint32_t flags;             /* VMPROF_REG_F_* */
    uint32_t creator_pid;       /* getpid() of the owner of this copy */
    uint32_t fork_generation;   /* 0 in the creator, +1 per fork copy */
    char     vm_name[VMPROF_REG_VM_NAME_SIZE]; /* UTF-8, NUL-terminated */
    uint64_t vm_version;        /* Py_Version for CPython; VM-defined */
    uint64_t py_runtime;        /* &_PyRuntime for CPython, else 0 */
    uint64_t text_lo;           /* [text_lo, text_hi): executable code of */
    uint64_t text_hi;           /*   the object that holds the interpreter */
    /* The shadow-stack frame record (struct vmprof_reg_frame) */
    uint32_t frame_size;        /* 16 */
    uint32_t frame_prev_off;    /* 0 */
    uint32_t frame_id_off;      /* 8 */
    uint32_t thread_slot_size;  /* sizeof(struct vmprof_reg_thread_slot) */
    uint64_t thread_table_off;
    uint32_t thread_slot_count;
    uint32_t thread_hwm;        /* release: slots [0, hwm) were ever used */
    uint64_t code_table_off;
    uint64_t code_table_size;   /* capacity in bytes */
    uint64_t code_committed;    /* release: bytes of complete records */
    uint64_t codes_registered;  /* counters, relaxed */
    uint64_t codes_dropped;     /* code table full or name invalid */
    uint64_t threads_dropped;   /* thread table full */
    /* CPython 3.11-3.13, with VMPROF_REG_F_PY_CODE_FREES: code objects
     * freed so far. The shim adds 1 (sequentially consistent) before each
     * code object's memory is released, so a reader that sees the same
     * value twice knows no code object was freed in between: an address
     * it proved to hold a code object still holds that object. */
    uint64_t py_code_frees;
    uint64_t reserved[4];
};

/* Thread slot states */
#define VMPROF_REG_SLOT_FREE      0u
#define VMPROF_REG_SLOT_WRITING   1u
#define VMPROF_REG_SLOT_PUBLISHED 2u

struct vmprof_reg_thread_slot {
    uint32_t state;             /* release: PUBLISHED after tid/top/seq */
    uint32_t tid;               /* gettid() in the target */
    uint64_t top_addr;          /* address of the thread's top pointer
                                   (a struct vmprof_shim_frame *) */
    uint64_t seq;               /* registration order: if a tid appears
                                   twice, the larger seq is current */
    uint64_t reserved;
};

/* Code record kinds */
#define VMPROF_REG_REC_CODE 1u  /* id -> "lang:name:line:file" */

struct vmprof_reg_code_record {
    uint64_t id;                /* the VM's code id (frame records carry it) */
    uint32_t len;               /* name bytes that follow, 1..NAME_MAX, no NUL */
    uint32_t kind;              /* VMPROF_REG_REC_*; readers skip unknown kinds */
};

/* Size of a code record with a name of len bytes. */
#define VMPROF_REG_RECORD_SIZE(len) \
    ((uint64_t)sizeof(struct vmprof_reg_code_record) + (((uint64_t)(len) + 7u) & ~UINT64_C(7)))

/* The shadow-stack frame record as the attacher reads it from the target's
 * native stack: public struct vmprof_shim_frame has this layout. */
struct vmprof_reg_frame {
    uint64_t prev;              /* the caller's record (older, higher address), 0 ends */
    uint64_t code_id;
};

#if defined(__cplusplus)
#define VMPROF_REG_ASSERT(c, m) static_assert(c, m)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define VMPROF_REG_ASSERT(c, m) _Static_assert(c, m)
#else   /* C99: the layout is checked when the shim and attacher are built */
#define VMPROF_REG_ASSERT(c, m) struct vmprof_reg_assert_unused
#endif
VMPROF_REG_ASSERT(sizeof(struct vmprof_reg_header) == 256, "header size");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, total_size) == 16, "total_size");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, creator_pid) == 32, "creator_pid");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, vm_name) == 40, "vm_name");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, vm_version) == 104, "vm_version");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, py_runtime) == 112, "py_runtime");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, text_lo) == 120, "text_lo");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, frame_size) == 136, "frame_size");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, thread_table_off) == 152, "thread table");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, thread_hwm) == 164, "thread_hwm");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, code_table_off) == 168, "code table");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, code_committed) == 184, "committed");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, threads_dropped) == 208, "counters");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_header, py_code_frees) == 216, "code frees");
VMPROF_REG_ASSERT(sizeof(struct vmprof_reg_thread_slot) == 32, "thread slot");
VMPROF_REG_ASSERT(offsetof(struct vmprof_reg_thread_slot, top_addr) == 8, "top_addr");
VMPROF_REG_ASSERT(sizeof(struct vmprof_reg_code_record) == 16, "code record");
VMPROF_REG_ASSERT(sizeof(struct vmprof_reg_frame) == 16, "frame record");
VMPROF_REG_ASSERT(VMPROF_REG_HEADER_SPACE >= sizeof(struct vmprof_reg_header), "header space");
VMPROF_REG_ASSERT(VMPROF_REG_HEADER_SPACE + (uint64_t)VMPROF_REG_THREAD_SLOTS * 32u
                  < VMPROF_REG_SIZE, "tables fit");

/* ---- text -------------------------------------------------------------- */

/* Names in the registry (and in the vmprof log) are UTF-8: this is the one
 * definition of a valid sequence, used by the shim when it publishes a
 * name, by the attacher when it reads one, and by the log writer.
 * Returns the length of the UTF-8 sequence at s (n bytes available), or 0
 * when it is invalid (overlong, surrogate, above U+10FFFF, cut short). */
static inline size_t vmprof_utf8_seq(const unsigned char *s, size_t n)
{
    size_t k, i;
    uint32_t c;

    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        k = 2, c = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        k = 3, c = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        k = 4, c = s[0] & 0x07u;
    else
        return 0;
    if (k > n)
        return 0;
    for (i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3fu);
    }
    if ((k == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
        (k == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    return k;
}

/* 1 if s[0..n) is valid registry text: UTF-8 without NUL or other
 * control characters. */
static inline int vmprof_reg_text_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        size_t k;

        if (u[i] < 0x20 || u[i] == 0x7f)
            return 0;
        k = vmprof_utf8_seq(u + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

#endif
