/*
 * cpython_layout.c - CPython's memory layout per version: the static
 * tables for 3.11 and 3.12, the parser for 3.13+'s _Py_DebugOffsets, and
 * the decoding of str objects.
 *
 * Invariants:
 *   - A layout handed out is complete and validated: every offset lies
 *     inside the struct it indexes, and the read extents (ts_read,
 *     fr_read, co_read...) cover every field read from those buffers and
 *     stay under the CPY_MAX_* limits, so callers can read exactly that
 *     many bytes and index them without further checks.
 *   - Nothing from the target is trusted: _Py_DebugOffsets is checked
 *     field by field; str headers are checked for kind and length.
 *   - The static tables are facts taken from the headers of the named
 *     versions (tests/attacher/test_cpython_layout.c proves them with
 *     offsetof); the debug-offset word positions are facts taken from the
 *     _Py_DebugOffsets definition of each version (proved the same way for
 *     3.13, and against the live 3.14 runtime by the probe tests).
 */
#include "cpython_layout.h"

#include <stdio.h>
#include <string.h>

#define PY_MAJOR_MINOR(v) ((uint32_t)(v) >> 16)
#define PY_RELEASE_LEVEL(v) (((uint32_t)(v) >> 4) & 0xf)
#define V311 0x030bu
#define V312 0x030cu
#define V313 0x030du
#define V314 0x030eu

uint64_t cpy_load_u64(const uint8_t *buf, size_t len, uint32_t off)
{
    uint64_t v;
    if (buf == NULL || off > len || len - off < sizeof v)
        return 0;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

uint32_t cpy_load_u32(const uint8_t *buf, size_t len, uint32_t off)
{
    uint32_t v;
    if (buf == NULL || off > len || len - off < sizeof v)
        return 0;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

uint8_t cpy_load_u8(const uint8_t *buf, size_t len, uint32_t off)
{
    if (buf == NULL || off >= len)
        return 0;
    return buf[off];
}

int cpython_layout_uses_debug_offsets(uint32_t version_hex)
{
    return PY_MAJOR_MINOR(version_hex) >= V313;
}

/* ---- static tables (x86-64, default build, release 3.11.x / 3.12.x) ---- */

static const struct cpython_layout layout_311 = {
    .model = CPY_MODEL_CFRAME,
    .rt_interpreters_head = 40,
    .is_next = 0, .is_threads_head = 16, .is_code_generation = CPY_OFF_NONE,
    .ts_read = 168, .ts_next = 8, .ts_interp = 16, .ts_frame = 56,
    .ts_native_thread_id = 160, .ts_root_cframe = 336,
    .cf_current_frame = 8, .cf_previous = 16, .cf_read = 24,
    .fr_read = 72, .fr_code = 32, .fr_previous = 48, .fr_instr = 56,
    .fr_is_entry = 68, .fr_owner = 69,
    .ob_type = 8, .ob_size = 16, .tp_name = 24,
    .co_read = 144, .co_firstlineno = 72, .co_filename = 112, .co_name = 120,
    .co_qualname = 128, .co_linetable = 136, .co_code_adaptive = 184,
    .co_version = CPY_OFF_NONE,
    .by_sval = 32,
    .str_length = 16, .str_state = 32, .str_ascii_size = 48,
    .str_compact_size = 72,
};

static const struct cpython_layout layout_312 = {
    .model = CPY_MODEL_ENTRY_VIA_CFRAME,
    .rt_interpreters_head = 40,
    .is_next = 0, .is_threads_head = 72, .is_code_generation = CPY_OFF_NONE,
    .ts_read = 152, .ts_next = 8, .ts_interp = 16, .ts_frame = 56,
    .ts_native_thread_id = 144, .ts_root_cframe = 272,
    .cf_current_frame = 0, .cf_previous = 8, .cf_read = 16,
    .fr_read = 72, .fr_code = 0, .fr_previous = 8, .fr_instr = 56,
    .fr_is_entry = CPY_OFF_NONE, .fr_owner = 70,
    .ob_type = 8, .ob_size = 16, .tp_name = 24,
    .co_read = 144, .co_firstlineno = 68, .co_filename = 112, .co_name = 120,
    .co_qualname = 128, .co_linetable = 136, .co_code_adaptive = 192,
    .co_version = 92,
    .by_sval = 32,
    .str_length = 16, .str_state = 32, .str_ascii_size = 40,
    .str_compact_size = 56,
};

static void set_err(char *err, size_t errlen, const char *msg, uint32_t v)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "CPython %u.%u (0x%08x): %s",
                 (unsigned)(v >> 24), (unsigned)((v >> 16) & 0xff),
                 (unsigned)v, msg);
}

/* Alphas and betas move structs around; only rc and final are known. */
static int release_ok(uint32_t v)
{
    return PY_RELEASE_LEVEL(v) >= 0xc;
}

int cpython_layout_static(uint32_t version_hex, struct cpython_layout *out,
                          char *err, size_t errlen)
{
    uint32_t mm = PY_MAJOR_MINOR(version_hex);
    if (mm != V311 && mm != V312) {
        set_err(err, errlen, "no static layout for this version "
                "(supported: 3.11, 3.12, and 3.13+ through debug offsets)",
                version_hex);
        return -1;
    }
    if (!release_ok(version_hex)) {
        set_err(err, errlen, "pre-release builds (alpha, beta) are not "
                "supported: their layouts differ from the release", version_hex);
        return -1;
    }
    *out = mm == V311 ? layout_311 : layout_312;
    out->version_hex = version_hex;
    return 0;
}

/* ---- _Py_DebugOffsets (3.13, 3.14) ---- */

/* Word positions (8-byte units from the start of _Py_DebugOffsets) of the
 * fields used, per version; each section starts with its struct size. */
struct dbg_schema {
    uint32_t major_minor;
    uint16_t words;                 /* total words of the struct */
    uint16_t cookie_end;            /* 1: cookie is word 0 */
    uint16_t version, free_threaded;
    uint16_t rt_size, rt_interpreters_head;
    uint16_t is_size, is_next, is_threads_head, is_code_generation;
    uint16_t ts_size, ts_next, ts_interp, ts_current_frame,
             ts_native_thread_id;
    uint16_t fr_size, fr_previous, fr_executable, fr_instr_ptr, fr_owner;
    uint16_t co_size, co_filename, co_name, co_qualname, co_linetable,
             co_firstlineno, co_code_adaptive;
    uint16_t po_size, po_ob_type;
    uint16_t tp_size, tp_name;
    uint16_t by_size, by_ob_size, by_sval;
    uint16_t str_size, str_state, str_length, str_ascii_size;
};

#define W_NONE UINT16_MAX

/* 3.13: runtime_state(3) interpreter_state(13) thread_state(9)
 * interpreter_frame(6) code_object(10) pyobject(2) type_object(4)
 * tuple(3) list(3) dict(3) float(2) long(3) bytes(3) unicode(4) gc(2). */
static const struct dbg_schema schema_313 = {
    .major_minor = V313, .words = 73, .cookie_end = 1,
    .version = 1, .free_threaded = 2,
    .rt_size = 3, .rt_interpreters_head = 5,
    .is_size = 6, .is_next = 8, .is_threads_head = 9,
    .is_code_generation = W_NONE,
    .ts_size = 19, .ts_next = 21, .ts_interp = 22, .ts_current_frame = 23,
    .ts_native_thread_id = 25,
    .fr_size = 28, .fr_previous = 29, .fr_executable = 30, .fr_instr_ptr = 31,
    .fr_owner = 33,
    .co_size = 34, .co_filename = 35, .co_name = 36, .co_qualname = 37,
    .co_linetable = 38, .co_firstlineno = 39, .co_code_adaptive = 43,
    .po_size = 44, .po_ob_type = 45,
    .tp_size = 46, .tp_name = 47,
    .by_size = 64, .by_ob_size = 65, .by_sval = 66,
    .str_size = 67, .str_state = 68, .str_length = 69, .str_ascii_size = 70,
};

/* 3.14: runtime_state(3) interpreter_state(16: + threads_main,
 * code_object_generation, tlbc_generation) thread_state(9)
 * interpreter_frame(8: + stackpointer, tlbc_index) code_object(11:
 * + co_tlbc) pyobject(2) type_object(4) tuple(3) list(3) set(4) dict(3)
 * float(2) long(3) bytes(3) unicode(4) gc(2) gen_object(4) llist_node(2)
 * debugger_support(6). */
static const struct dbg_schema schema_314 = {
    .major_minor = V314, .words = 95, .cookie_end = 1,
    .version = 1, .free_threaded = 2,
    .rt_size = 3, .rt_interpreters_head = 5,
    .is_size = 6, .is_next = 8, .is_threads_head = 9,
    .is_code_generation = 20,
    .ts_size = 22, .ts_next = 24, .ts_interp = 25, .ts_current_frame = 26,
    .ts_native_thread_id = 28,
    .fr_size = 31, .fr_previous = 32, .fr_executable = 33, .fr_instr_ptr = 34,
    .fr_owner = 36,
    .co_size = 39, .co_filename = 40, .co_name = 41, .co_qualname = 42,
    .co_linetable = 43, .co_firstlineno = 44, .co_code_adaptive = 48,
    .po_size = 50, .po_ob_type = 51,
    .tp_size = 52, .tp_name = 53,
    .by_size = 74, .by_ob_size = 75, .by_sval = 76,
    .str_size = 77, .str_state = 78, .str_length = 79, .str_ascii_size = 80,
};

struct dbg_reader {
    const uint8_t *buf;
    size_t len;
    int bad;                        /* a check failed */
    const char *why;                /* first failed check */
};

static uint64_t dbg_word(const struct dbg_reader *r, uint16_t w)
{
    return cpy_load_u64(r->buf, r->len, (uint32_t)w * 8u);
}

/* Offset of a field of width bytes inside a struct of struct_size bytes;
 * marks the reader bad (with why) when it does not fit. */
static uint32_t dbg_field(struct dbg_reader *r, uint16_t w, uint64_t struct_size,
                          uint32_t width, const char *why)
{
    uint64_t off = dbg_word(r, w);
    if (off > struct_size || struct_size - off < width) {
        if (!r->bad)
            r->why = why;
        r->bad = 1;
        return 0;
    }
    return (uint32_t)off;
}

/* A struct size from the table, within [lo, hi]. */
static uint64_t dbg_size(struct dbg_reader *r, uint16_t w, uint64_t lo,
                         uint64_t hi, const char *why)
{
    uint64_t v = dbg_word(r, w);
    if (v < lo || v > hi) {
        if (!r->bad)
            r->why = why;
        r->bad = 1;
        return 0;
    }
    return v;
}

static void dbg_expect(struct dbg_reader *r, int cond, const char *why)
{
    if (!cond && !r->bad) {
        r->why = why;
        r->bad = 1;
    }
}

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t m = a > b ? a : b;
    return m > c ? m : c;
}

/* Fill the offsets of L from the debug table; r->bad reports a failure.
 * Long but flat: one validated assignment per field. */
static void dbg_fill(struct dbg_reader *r, const struct dbg_schema *s,
                     struct cpython_layout *L)
{
    uint64_t rt = dbg_size(r, s->rt_size, CPY_DEBUG_OFFSETS_READ, 1u << 24,
                           "runtime_state.size out of range");
    L->rt_interpreters_head = dbg_field(r, s->rt_interpreters_head, rt, 8,
                                        "runtime_state.interpreters_head");
    uint64_t is = dbg_size(r, s->is_size, 64, 1u << 24,
                           "interpreter_state.size out of range");
    L->is_next = dbg_field(r, s->is_next, is, 8, "interpreter_state.next");
    L->is_threads_head = dbg_field(r, s->is_threads_head, is, 8,
                                   "interpreter_state.threads_head");
    L->is_code_generation = s->is_code_generation == W_NONE ? CPY_OFF_NONE :
        dbg_field(r, s->is_code_generation, is, 8,
                  "interpreter_state.code_object_generation");

    uint64_t ts = dbg_size(r, s->ts_size, 64, 1u << 16,
                           "thread_state.size out of range");
    L->ts_next = dbg_field(r, s->ts_next, ts, 8, "thread_state.next");
    L->ts_interp = dbg_field(r, s->ts_interp, ts, 8, "thread_state.interp");
    L->ts_frame = dbg_field(r, s->ts_current_frame, ts, 8,
                            "thread_state.current_frame");
    L->ts_native_thread_id = dbg_field(r, s->ts_native_thread_id, ts, 8,
                                       "thread_state.native_thread_id");
    L->ts_root_cframe = CPY_OFF_NONE;
    L->ts_read = 8 + max3(max3(L->ts_next, L->ts_interp, L->ts_frame),
                          L->ts_native_thread_id, 0);

    uint64_t fr = dbg_size(r, s->fr_size, 32, CPY_MAX_FRAME_READ,
                           "interpreter_frame.size out of range");
    L->fr_previous = dbg_field(r, s->fr_previous, fr, 8,
                               "interpreter_frame.previous");
    L->fr_code = dbg_field(r, s->fr_executable, fr, 8,
                           "interpreter_frame.executable");
    L->fr_instr = dbg_field(r, s->fr_instr_ptr, fr, 8,
                            "interpreter_frame.instr_ptr");
    L->fr_owner = dbg_field(r, s->fr_owner, fr, 1, "interpreter_frame.owner");
    L->fr_is_entry = CPY_OFF_NONE;
    L->fr_read = max3(L->fr_previous + 8, L->fr_code + 8,
                      max3(L->fr_instr + 8, L->fr_owner + 1, 0));

    uint64_t co = dbg_size(r, s->co_size, 64, CPY_MAX_CODE_READ,
                           "code_object.size out of range");
    L->co_filename = dbg_field(r, s->co_filename, co, 8, "code_object.filename");
    L->co_name = dbg_field(r, s->co_name, co, 8, "code_object.name");
    L->co_qualname = dbg_field(r, s->co_qualname, co, 8, "code_object.qualname");
    L->co_linetable = dbg_field(r, s->co_linetable, co, 8,
                                "code_object.linetable");
    L->co_firstlineno = dbg_field(r, s->co_firstlineno, co, 4,
                                  "code_object.firstlineno");
    L->co_code_adaptive = dbg_field(r, s->co_code_adaptive, co, 2,
                                    "code_object.co_code_adaptive");
    L->co_read = max3(max3(L->co_filename, L->co_name, L->co_qualname) + 8,
                      L->co_linetable + 8, L->co_firstlineno + 4);

    uint64_t po = dbg_size(r, s->po_size, 16, 64, "pyobject.size out of range");
    L->ob_type = dbg_field(r, s->po_ob_type, po, 8, "pyobject.ob_type");
    uint64_t tp = dbg_size(r, s->tp_size, 64, 4096, "type_object.size");
    L->tp_name = dbg_field(r, s->tp_name, tp, 8, "type_object.tp_name");
    uint64_t by = dbg_size(r, s->by_size, 24, 256, "bytes_object.size");
    L->ob_size = dbg_field(r, s->by_ob_size, by, 8, "bytes_object.ob_size");
    L->by_sval = dbg_field(r, s->by_sval, by, 1, "bytes_object.ob_sval");

    uint64_t us = dbg_size(r, s->str_size, 32, 256, "unicode_object.size");
    L->str_state = dbg_field(r, s->str_state, us, 4, "unicode_object.state");
    L->str_length = dbg_field(r, s->str_length, us, 8, "unicode_object.length");
    L->str_ascii_size = dbg_field(r, s->str_ascii_size, us, 0,
                                  "unicode_object.asciiobject_size");
    /* PyUnicodeObject = PyCompactUnicodeObject + one data pointer. */
    L->str_compact_size = us >= 8 ? (uint32_t)us - 8 : 0;
}

int cpython_layout_from_debug_offsets(const void *buf, size_t len,
                                      uint32_t version_hex,
                                      struct cpython_layout *out,
                                      char *err, size_t errlen)
{
    uint32_t mm = PY_MAJOR_MINOR(version_hex);
    const struct dbg_schema *s = mm == V313 ? &schema_313 :
                                 mm == V314 ? &schema_314 : NULL;
    if (s == NULL) {
        set_err(err, errlen, "unsupported version (debug offsets are known "
                "for 3.13 and 3.14)", version_hex);
        return -1;
    }
    if (!release_ok(version_hex)) {
        set_err(err, errlen, "pre-release builds (alpha, beta) are not "
                "supported: their debug offsets differ", version_hex);
        return -1;
    }
    struct dbg_reader r = { .buf = buf, .len = len };
    if (buf == NULL || len < (size_t)s->words * 8) {
        set_err(err, errlen, "debug offsets: too few bytes", version_hex);
        return -1;
    }
    if (memcmp(buf, "xdebugpy", 8) != 0) {
        set_err(err, errlen, "no _Py_DebugOffsets cookie at _PyRuntime "
                "(wrong address or not CPython)", version_hex);
        return -1;
    }
    uint64_t v = dbg_word(&r, s->version);
    if (PY_MAJOR_MINOR(v) != mm) {
        set_err(err, errlen, "debug offsets name another version than "
                "Py_Version", version_hex);
        return -1;
    }
    if (dbg_word(&r, s->free_threaded) != 0) {
        set_err(err, errlen, "free-threaded build: not supported (object "
                "headers differ and this walker is untested there)", version_hex);
        return -1;
    }

    struct cpython_layout L;
    memset(&L, 0, sizeof L);
    dbg_fill(&r, s, &L);
    /* The default (GIL) build's fixed object header and str fields: a
     * table saying otherwise was misread or comes from a build we do not
     * know. */
    dbg_expect(&r, L.ob_type == 8 && L.ob_size == 16, "object header");
    dbg_expect(&r, L.str_length == 16 && L.str_state == 32,
               "unicode_object fields");
    dbg_expect(&r, L.str_ascii_size >= 32 && L.str_ascii_size <= 64 &&
                   L.str_compact_size >= L.str_ascii_size + 16,
               "unicode_object sizes");
    dbg_expect(&r, L.co_code_adaptive >= L.co_read, "code_object layout");
    dbg_expect(&r, L.ts_read <= CPY_MAX_TSTATE_READ &&
                   L.fr_read <= CPY_MAX_FRAME_READ &&
                   L.co_read <= CPY_MAX_CODE_READ, "read extents");
    if (r.bad) {
        char msg[160];
        snprintf(msg, sizeof msg, "debug offsets fail validation (%s)",
                 r.why ? r.why : "?");
        set_err(err, errlen, msg, version_hex);
        return -1;
    }
    L.version_hex = version_hex;
    L.model = CPY_MODEL_ENTRY;
    L.tagged_executable = mm >= V314;
    /* co_version is not in the debug offsets. 3.13's default build has it
     * at 92 (as 3.12): trusted only when every code field the table gives
     * is where that build has it. 3.14 uses its code generation instead. */
    L.co_version = CPY_OFF_NONE;
    if (mm == V313 && L.co_firstlineno == 68 && L.co_filename == 112 &&
        L.co_name == 120 && L.co_qualname == 128 && L.co_linetable == 136 &&
        L.co_code_adaptive == 200)
        L.co_version = 92;
    L.from_debug_offsets = 1;
    L.cf_current_frame = L.cf_previous = CPY_OFF_NONE;
    L.cf_read = 0;
    *out = L;
    return 0;
}

int cpython_layout_init(uint32_t version_hex, const void *buf, size_t len,
                        struct cpython_layout *out, char *err, size_t errlen)
{
    if (PY_MAJOR_MINOR(version_hex) < V311 || (version_hex >> 24) != 3) {
        set_err(err, errlen, "unsupported version (vmprof-attach decodes "
                "CPython 3.11 to 3.14)", version_hex);
        return -1;
    }
    if (cpython_layout_uses_debug_offsets(version_hex))
        return cpython_layout_from_debug_offsets(buf, len, version_hex, out,
                                                 err, errlen);
    return cpython_layout_static(version_hex, out, err, errlen);
}

/* ---- str objects ---- */

/* Longest str accepted as a name or file (code points). */
#define CPY_STR_MAX_LENGTH (1u << 20)

int cpython_str_header(const struct cpython_layout *L, const uint8_t *hdr,
                       size_t n, struct cpython_str *out)
{
    if (n < L->str_ascii_size)
        return -1;
    uint32_t state = cpy_load_u32(hdr, n, L->str_state);
    uint64_t length = cpy_load_u64(hdr, n, L->str_length);
    uint8_t kind = (state >> 2) & 7;
    int compact = (state >> 5) & 1;
    int ascii = (state >> 6) & 1;
    if (!compact || length > CPY_STR_MAX_LENGTH)
        return -1;
    if (kind != 1 && kind != 2 && kind != 4)
        return -1;
    if (ascii && kind != 1)
        return -1;
    out->length = length;
    out->kind = kind;
    out->ascii = (uint8_t)ascii;
    out->data_off = ascii ? L->str_ascii_size : L->str_compact_size;
    return 0;
}

static size_t put_utf8(uint32_t cp, char *d)
{
    if (cp == 0)
        cp = '?';
    if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        cp = 0xfffd;
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xc0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xe0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

size_t cpython_str_to_utf8(uint8_t kind, const uint8_t *data, size_t nbytes,
                           char *dst, size_t cap)
{
    if (cap == 0)
        return 0;
    size_t w = 0;
    if (kind == 1 || kind == 2 || kind == 4) {
        size_t n = nbytes / kind;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp;
            if (kind == 1) {
                cp = data[i];
            } else if (kind == 2) {
                uint16_t u;
                memcpy(&u, data + 2 * i, 2);
                cp = u;
            } else {
                memcpy(&cp, data + 4 * i, 4);
            }
            char tmp[4];
            size_t k = put_utf8(cp, tmp);
            if (w + k >= cap)
                break;
            memcpy(dst + w, tmp, k);
            w += k;
        }
    }
    dst[w] = '\0';
    return w;
}
