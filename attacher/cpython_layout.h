/*
 * cpython_layout.h - the one place that knows CPython's memory layout.
 *
 * A struct cpython_layout holds every offset the frame walker needs, for
 * one running interpreter. It comes from one of two sources:
 *   - 3.11 and 3.12: a static table, checked against the real headers by
 *     tests/attacher/test_cpython_layout.c (offsetof on Py_BUILD_CORE
 *     structs);
 *   - 3.13 and 3.14: _Py_DebugOffsets, the table CPython itself keeps at
 *     the start of _PyRuntime; it is read from the target and validated
 *     (cookie, version, free-threading flag, sizes, every offset inside
 *     its struct) before any offset is used.
 * Besides offsets, this file owns the interpretation of raw object bytes
 * that depends on the version: the str header (kind, compact, ascii bits)
 * and its conversion to UTF-8.
 *
 * Everything here is pure: no I/O, bytes in, values out, every index
 * checked against the buffer length. x86-64 (LP64, little-endian) only.
 */
#ifndef VMPROF_CPYTHON_LAYOUT_H
#define VMPROF_CPYTHON_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define CPY_OFF_NONE UINT32_MAX

/* How the frame chain is reached and split into C-level eval calls. */
enum cpython_model {
    /* 3.11: tstate->cframe is a _PyCFrame on the C stack of each
     * _PyEval_EvalFrameDefault call; its frames run from
     * cframe->current_frame down to the one with is_entry set. */
    CPY_MODEL_CFRAME = 1,
    /* 3.12: the top frame is tstate->cframe->current_frame; each eval
     * call pushes an entry frame (owner 3) that lives on its C stack. */
    CPY_MODEL_ENTRY_VIA_CFRAME = 2,
    /* 3.13+: the top frame is tstate->current_frame; entry frames as
     * in 3.12. */
    CPY_MODEL_ENTRY = 3,
};

/* _PyInterpreterFrame.owner values that hold Python code being run. */
#define CPY_OWNER_THREAD 0
#define CPY_OWNER_GENERATOR 1
/* Owner value of the C-stack entry frame (3.12, 3.13, 3.14): frames with
 * owner >= this are markers, never code. */
#define CPY_OWNER_ENTRY 3

/* Bytes read at _PyRuntime to parse _Py_DebugOffsets (more than any
 * supported version's struct). */
#define CPY_DEBUG_OFFSETS_READ 1024

/* Upper bounds for the struct extents read per object (sanity limits
 * for offsets taken from the target). */
#define CPY_MAX_TSTATE_READ 4096
#define CPY_MAX_FRAME_READ 512
#define CPY_MAX_CODE_READ 1024

struct cpython_layout {
    uint32_t version_hex;       /* Py_Version of the target */
    uint8_t model;              /* enum cpython_model */
    uint8_t tagged_executable;  /* 3.14: f_executable is a _PyStackRef */
    uint8_t from_debug_offsets; /* offsets read from the target */

    /* _PyRuntimeState */
    uint32_t rt_interpreters_head;
    /* PyInterpreterState */
    uint32_t is_next;
    uint32_t is_threads_head;
    uint32_t is_code_generation; /* 3.14: bumped by every code_dealloc */
    /* PyThreadState: ts_read bytes from its start cover every field */
    uint32_t ts_read;
    uint32_t ts_next;
    uint32_t ts_interp;
    uint32_t ts_frame;          /* cframe (3.11, 3.12) or current_frame */
    uint32_t ts_native_thread_id;
    uint32_t ts_root_cframe;    /* 3.11, 3.12; else CPY_OFF_NONE */
    /* _PyCFrame (3.11, 3.12) */
    uint32_t cf_current_frame;
    uint32_t cf_previous;
    uint32_t cf_read;
    /* _PyInterpreterFrame: fr_read bytes cover every field */
    uint32_t fr_read;
    uint32_t fr_code;           /* f_code / f_executable */
    uint32_t fr_previous;
    uint32_t fr_instr;          /* prev_instr (3.11, 3.12) / instr_ptr */
    uint32_t fr_is_entry;       /* 3.11 only; else CPY_OFF_NONE */
    uint32_t fr_owner;
    /* PyObject / PyVarObject */
    uint32_t ob_type;
    uint32_t ob_size;
    /* PyTypeObject */
    uint32_t tp_name;
    /* PyCodeObject: co_read bytes cover every field */
    uint32_t co_read;
    uint32_t co_firstlineno;
    uint32_t co_filename;
    uint32_t co_name;
    uint32_t co_qualname;
    uint32_t co_linetable;
    uint32_t co_code_adaptive;
    /* 3.12, 3.13: co_version, a uint32 serial the interpreter gives each
     * code object it creates (from a counter that only grows, and sticks
     * at 0 once it wraps); CPY_OFF_NONE where unknown or not used */
    uint32_t co_version;
    /* PyBytesObject */
    uint32_t by_sval;
    /* PyUnicodeObject (compact forms only) */
    uint32_t str_length;
    uint32_t str_state;
    uint32_t str_ascii_size;    /* sizeof(PyASCIIObject): ASCII data */
    uint32_t str_compact_size;  /* sizeof(PyCompactUnicodeObject) */
};

/* 1 when the version is read from _Py_DebugOffsets (3.13+). */
int cpython_layout_uses_debug_offsets(uint32_t version_hex);

/* Static table for 3.11 and 3.12 (release candidates and finals). */
int cpython_layout_static(uint32_t version_hex, struct cpython_layout *out,
                          char *err, size_t errlen);

/* Parse and validate _Py_DebugOffsets (the first len bytes of
 * _PyRuntime) for a 3.13 or 3.14 target. Refuses free-threaded builds.
 * The runtime size from the table is stored in *runtime_size if given. */
int cpython_layout_from_debug_offsets(const void *buf, size_t len,
                                      uint32_t version_hex,
                                      struct cpython_layout *out,
                                      char *err, size_t errlen);

/* Either of the above, for any supported version: buf/len are ignored
 * below 3.13 (may be NULL). */
int cpython_layout_init(uint32_t version_hex, const void *buf, size_t len,
                        struct cpython_layout *out, char *err, size_t errlen);

/* Little-endian loads from a buffer; 0 when off+width exceeds len. */
uint64_t cpy_load_u64(const uint8_t *buf, size_t len, uint32_t off);
uint32_t cpy_load_u32(const uint8_t *buf, size_t len, uint32_t off);
uint8_t cpy_load_u8(const uint8_t *buf, size_t len, uint32_t off);

/* A str object's header, decoded. */
struct cpython_str {
    uint64_t length;            /* code points */
    uint32_t data_off;          /* where the characters start */
    uint8_t kind;               /* 1, 2 or 4 bytes per code point */
    uint8_t ascii;
};

/* Decode the header of a compact str from hdr[0..n) (n must cover
 * str_compact_size, or str_ascii_size for ASCII). Returns 0, or -1 for
 * a legacy (non-compact) or malformed string. */
int cpython_str_header(const struct cpython_layout *L, const uint8_t *hdr,
                       size_t n, struct cpython_str *out);

/* Convert nchars code points of the given kind from data[0..nbytes) to
 * UTF-8 in dst[0..cap) (always NUL-terminated when cap > 0). Code points
 * that cannot be written as UTF-8 (surrogates, > U+10FFFF) become U+FFFD;
 * NUL becomes '?'. Stops early, on a character boundary, when dst is
 * full. Returns the bytes written (without the NUL). */
size_t cpython_str_to_utf8(uint8_t kind, const uint8_t *data, size_t nbytes,
                           char *dst, size_t cap);

#endif
