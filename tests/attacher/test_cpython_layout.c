/*
 * test_cpython_layout.c - cpython_layout against CPython's own headers.
 *
 * Built once per header set found at configure time (Debian's
 * python3.11-dev, and 3.12/3.13 headers when present), with
 * Py_BUILD_CORE so the internal structs are visible:
 *   - 3.11, 3.12: the static table equals offsetof() of the real structs;
 *   - 3.13: a _Py_DebugOffsets filled from the real structs (as CPython's
 *     own initializer does) parses to those same offsets;
 *   - the str state bits decode a header built with the real bitfields.
 * Plus header-independent cases: debug-offset validation failures and
 * str -> UTF-8 conversion.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_frame.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_pystate.h"
#include "internal/pycore_runtime.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cpython_layout.h"
#include "cpython_debug_tables.h"

static void check_common(const struct cpython_layout *L)
{
    assert_int_equal(L->rt_interpreters_head,
                     offsetof(_PyRuntimeState, interpreters.head));
    assert_int_equal(L->is_next, offsetof(PyInterpreterState, next));
    assert_int_equal(L->is_threads_head,
                     offsetof(PyInterpreterState, threads.head));
    assert_int_equal(L->ts_next, offsetof(PyThreadState, next));
    assert_int_equal(L->ts_interp, offsetof(PyThreadState, interp));
    assert_int_equal(L->ts_native_thread_id,
                     offsetof(PyThreadState, native_thread_id));
    assert_int_equal(L->fr_previous, offsetof(_PyInterpreterFrame, previous));
    assert_int_equal(L->fr_owner, offsetof(_PyInterpreterFrame, owner));
    assert_int_equal(L->ob_type, offsetof(PyObject, ob_type));
    assert_int_equal(L->ob_size, offsetof(PyVarObject, ob_size));
    assert_int_equal(L->tp_name, offsetof(PyTypeObject, tp_name));
    assert_int_equal(L->co_firstlineno, offsetof(PyCodeObject, co_firstlineno));
    assert_int_equal(L->co_filename, offsetof(PyCodeObject, co_filename));
    assert_int_equal(L->co_name, offsetof(PyCodeObject, co_name));
    assert_int_equal(L->co_qualname, offsetof(PyCodeObject, co_qualname));
    assert_int_equal(L->co_linetable, offsetof(PyCodeObject, co_linetable));
    assert_int_equal(L->co_code_adaptive,
                     offsetof(PyCodeObject, co_code_adaptive));
    assert_int_equal(L->by_sval, offsetof(PyBytesObject, ob_sval));
    assert_int_equal(L->str_length, offsetof(PyASCIIObject, length));
    assert_int_equal(L->str_state, offsetof(PyASCIIObject, state));
    assert_int_equal(L->str_ascii_size, sizeof(PyASCIIObject));
    assert_int_equal(L->str_compact_size, sizeof(PyCompactUnicodeObject));
    /* read extents cover every field read from those buffers */
    assert_true(L->ts_read >= L->ts_native_thread_id + 8);
    assert_true(L->ts_read >= L->ts_frame + 8 && L->ts_read >= L->ts_next + 8);
    assert_true(L->ts_read <= sizeof(PyThreadState));
    assert_true(L->fr_read >= L->fr_owner + 1 && L->fr_read >= L->fr_instr + 8);
    assert_true(L->fr_read <= sizeof(_PyInterpreterFrame));
    assert_true(L->co_read >= L->co_linetable + 8 &&
                L->co_read >= L->co_qualname + 8 &&
                L->co_read >= L->co_firstlineno + 4);
    assert_true(L->co_read <= L->co_code_adaptive);
#if PY_MINOR_VERSION == 12 || PY_MINOR_VERSION == 13
    assert_int_equal(L->co_version, offsetof(PyCodeObject, co_version));
    assert_int_equal(sizeof(((PyCodeObject *)0)->co_version), 4);
    assert_true(L->co_read >= L->co_version + 4);
#else
    assert_int_equal(L->co_version, CPY_OFF_NONE);
#endif
}

#if PY_MINOR_VERSION == 11 || PY_MINOR_VERSION == 12
static void test_static_table_matches_headers(void **state)
{
    (void)state;
    struct cpython_layout L;
    char err[200];
    assert_int_equal(cpython_layout_static(PY_VERSION_HEX, &L, err, sizeof err), 0);
    check_common(&L);
    assert_int_equal(L.version_hex, PY_VERSION_HEX);
    assert_int_equal(L.ts_frame, offsetof(PyThreadState, cframe));
    assert_int_equal(L.ts_root_cframe, offsetof(PyThreadState, root_cframe));
    assert_int_equal(L.cf_current_frame, offsetof(_PyCFrame, current_frame));
    assert_int_equal(L.cf_previous, offsetof(_PyCFrame, previous));
    assert_true(L.cf_read >= L.cf_previous + 8 &&
                L.cf_read >= L.cf_current_frame + 8);
    assert_true(L.cf_read <= sizeof(_PyCFrame));
    assert_int_equal(L.fr_code, offsetof(_PyInterpreterFrame, f_code));
    assert_int_equal(L.fr_instr, offsetof(_PyInterpreterFrame, prev_instr));
    assert_int_equal(L.fr_read, offsetof(_PyInterpreterFrame, localsplus));
    assert_int_equal(L.is_code_generation, CPY_OFF_NONE);
#if PY_MINOR_VERSION == 11
    assert_int_equal(L.model, CPY_MODEL_CFRAME);
    assert_int_equal(L.fr_is_entry, offsetof(_PyInterpreterFrame, is_entry));
    assert_true(L.fr_read >= L.fr_is_entry + 1);
#else
    assert_int_equal(L.model, CPY_MODEL_ENTRY_VIA_CFRAME);
    assert_int_equal(L.fr_is_entry, CPY_OFF_NONE);
    assert_int_equal(FRAME_OWNED_BY_CSTACK, CPY_OWNER_ENTRY);
#endif
    assert_int_equal(FRAME_OWNED_BY_THREAD, CPY_OWNER_THREAD);
    assert_int_equal(FRAME_OWNED_BY_GENERATOR, CPY_OWNER_GENERATOR);
    /* debug offsets do not exist before 3.13 */
    assert_false(cpython_layout_uses_debug_offsets(PY_VERSION_HEX));
}
#endif

#if PY_MINOR_VERSION == 13
/* A _Py_DebugOffsets filled the way CPython's _Py_DebugOffsets_INIT does,
 * through the real struct, so the parser's word positions are checked. */
static void fill_debug_offsets(_Py_DebugOffsets *d)
{
    memset(d, 0, sizeof *d);
    memcpy(d->cookie, "xdebugpy", 8);
    d->version = PY_VERSION_HEX;
    d->free_threaded = 0;
    d->runtime_state.size = sizeof(_PyRuntimeState);
    d->runtime_state.finalizing = offsetof(_PyRuntimeState, _finalizing);
    d->runtime_state.interpreters_head = offsetof(_PyRuntimeState, interpreters.head);
    d->interpreter_state.size = sizeof(PyInterpreterState);
    d->interpreter_state.id = offsetof(PyInterpreterState, id);
    d->interpreter_state.next = offsetof(PyInterpreterState, next);
    d->interpreter_state.threads_head = offsetof(PyInterpreterState, threads.head);
    d->thread_state.size = sizeof(PyThreadState);
    d->thread_state.prev = offsetof(PyThreadState, prev);
    d->thread_state.next = offsetof(PyThreadState, next);
    d->thread_state.interp = offsetof(PyThreadState, interp);
    d->thread_state.current_frame = offsetof(PyThreadState, current_frame);
    d->thread_state.thread_id = offsetof(PyThreadState, thread_id);
    d->thread_state.native_thread_id = offsetof(PyThreadState, native_thread_id);
    d->thread_state.datastack_chunk = offsetof(PyThreadState, datastack_chunk);
    d->thread_state.status = offsetof(PyThreadState, _status);
    d->interpreter_frame.size = sizeof(_PyInterpreterFrame);
    d->interpreter_frame.previous = offsetof(_PyInterpreterFrame, previous);
    d->interpreter_frame.executable = offsetof(_PyInterpreterFrame, f_executable);
    d->interpreter_frame.instr_ptr = offsetof(_PyInterpreterFrame, instr_ptr);
    d->interpreter_frame.localsplus = offsetof(_PyInterpreterFrame, localsplus);
    d->interpreter_frame.owner = offsetof(_PyInterpreterFrame, owner);
    d->code_object.size = sizeof(PyCodeObject);
    d->code_object.filename = offsetof(PyCodeObject, co_filename);
    d->code_object.name = offsetof(PyCodeObject, co_name);
    d->code_object.qualname = offsetof(PyCodeObject, co_qualname);
    d->code_object.linetable = offsetof(PyCodeObject, co_linetable);
    d->code_object.firstlineno = offsetof(PyCodeObject, co_firstlineno);
    d->code_object.argcount = offsetof(PyCodeObject, co_argcount);
    d->code_object.localsplusnames = offsetof(PyCodeObject, co_localsplusnames);
    d->code_object.localspluskinds = offsetof(PyCodeObject, co_localspluskinds);
    d->code_object.co_code_adaptive = offsetof(PyCodeObject, co_code_adaptive);
    d->pyobject.size = sizeof(PyObject);
    d->pyobject.ob_type = offsetof(PyObject, ob_type);
    d->type_object.size = sizeof(PyTypeObject);
    d->type_object.tp_name = offsetof(PyTypeObject, tp_name);
    d->bytes_object.size = sizeof(PyBytesObject);
    d->bytes_object.ob_size = offsetof(PyBytesObject, ob_base.ob_size);
    d->bytes_object.ob_sval = offsetof(PyBytesObject, ob_sval);
    d->unicode_object.size = sizeof(PyUnicodeObject);
    d->unicode_object.state = offsetof(PyUnicodeObject, _base._base.state);
    d->unicode_object.length = offsetof(PyUnicodeObject, _base._base.length);
    d->unicode_object.asciiobject_size = sizeof(PyASCIIObject);
}

static void test_debug_offsets_match_headers(void **state)
{
    (void)state;
    static uint8_t buf[CPY_DEBUG_OFFSETS_READ];
    _Py_DebugOffsets d;
    fill_debug_offsets(&d);
    assert_true(sizeof d <= sizeof buf);
    memset(buf, 0, sizeof buf);
    memcpy(buf, &d, sizeof d);
    struct cpython_layout L;
    char err[200] = "";
    int r = cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L, err, sizeof err);
    if (r != 0)
        fail_msg("%s", err);
    check_common(&L);
    assert_int_equal(L.model, CPY_MODEL_ENTRY);
    assert_true(L.from_debug_offsets);
    assert_false(L.tagged_executable);
    assert_int_equal(L.ts_frame, offsetof(PyThreadState, current_frame));
    assert_int_equal(L.ts_root_cframe, CPY_OFF_NONE);
    assert_int_equal(L.fr_code, offsetof(_PyInterpreterFrame, f_executable));
    assert_int_equal(L.fr_instr, offsetof(_PyInterpreterFrame, instr_ptr));
    assert_int_equal(FRAME_OWNED_BY_CSTACK, CPY_OWNER_ENTRY);

    /* the same table, marked free-threaded, is refused */
    d.free_threaded = 1;
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L,
                                         err, sizeof err), -1);
    assert_non_null(strstr(err, "free-threaded"));
    /* an offset outside its struct is refused */
    fill_debug_offsets(&d);
    d.thread_state.native_thread_id = d.thread_state.size;
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L,
                                         err, sizeof err), -1);
    assert_non_null(strstr(err, "native_thread_id"));
    /* another minor version named inside is refused */
    fill_debug_offsets(&d);
    d.version = 0x030c05f0;
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L,
                                         err, sizeof err), -1);
    /* a wrong cookie (wrong address) is refused */
    fill_debug_offsets(&d);
    d.cookie[0] = 'y';
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L,
                                         err, sizeof err), -1);
    assert_non_null(strstr(err, "cookie"));
    /* too few bytes */
    fill_debug_offsets(&d);
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, 64, &L,
                                         err, sizeof err), -1);
}
#endif

/* A str header built with the real bitfields decodes to the same facts. */
static void test_str_state_bits(void **state)
{
    (void)state;
    struct cpython_layout L;
    char err[200];
#if PY_MINOR_VERSION == 13
    static uint8_t buf[CPY_DEBUG_OFFSETS_READ];
    _Py_DebugOffsets d;
    fill_debug_offsets(&d);
    memcpy(buf, &d, sizeof d);
    assert_int_equal(cpython_layout_init(PY_VERSION_HEX, buf, sizeof buf, &L,
                                         err, sizeof err), 0);
#else
    assert_int_equal(cpython_layout_static(PY_VERSION_HEX, &L, err, sizeof err), 0);
#endif
    PyCompactUnicodeObject u;
    struct cpython_str s;
    static const struct { unsigned kind, ascii; } cases[] = {
        { 1, 1 }, { 1, 0 }, { 2, 0 }, { 4, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&u, 0, sizeof u);
        u._base.length = 7 + (Py_ssize_t)i;
        u._base.state.kind = cases[i].kind;
        u._base.state.compact = 1;
        u._base.state.ascii = cases[i].ascii;
        u._base.state.interned = 1;
#if PY_MINOR_VERSION == 11
        u._base.state.ready = 1;
#endif
        assert_int_equal(cpython_str_header(&L, (const uint8_t *)&u, sizeof u, &s), 0);
        assert_int_equal(s.kind, cases[i].kind);
        assert_int_equal(s.ascii, cases[i].ascii);
        assert_int_equal(s.length, 7 + i);
        assert_int_equal(s.data_off, cases[i].ascii ? sizeof(PyASCIIObject)
                                                     : sizeof(PyCompactUnicodeObject));
    }
    /* legacy (not compact) strings are refused */
    memset(&u, 0, sizeof u);
    u._base.state.kind = 1;
    u._base.state.compact = 0;
    assert_int_equal(cpython_str_header(&L, (const uint8_t *)&u, sizeof u, &s), -1);
    /* kind 3 does not exist */
    u._base.state.kind = 3;
    u._base.state.compact = 1;
    assert_int_equal(cpython_str_header(&L, (const uint8_t *)&u, sizeof u, &s), -1);
    /* a header shorter than PyASCIIObject is refused */
    assert_int_equal(cpython_str_header(&L, (const uint8_t *)&u, 8, &s), -1);
}

static void test_utf8_conversion(void **state)
{
    (void)state;
    char out[64];
    const uint8_t latin1[] = { 'g', 'r', 0xf6, 0xdf, 'e' };
    assert_int_equal(cpython_str_to_utf8(1, latin1, sizeof latin1, out, sizeof out), 7);
    assert_string_equal(out, "gr\xc3\xb6\xc3\x9f" "e");
    const uint16_t ucs2[] = { 0x51fd, 0x6570, 0xd800, 0 };
    assert_int_equal(cpython_str_to_utf8(2, (const uint8_t *)ucs2, sizeof ucs2,
                                         out, sizeof out), 10);
    assert_string_equal(out, "\xe5\x87\xbd\xe6\x95\xb0\xef\xbf\xbd?");
    const uint32_t ucs4[] = { 0x10400, 'x', 0x110000 };
    assert_int_equal(cpython_str_to_utf8(4, (const uint8_t *)ucs4, sizeof ucs4,
                                         out, sizeof out), 8);
    assert_string_equal(out, "\xf0\x90\x90\x80x\xef\xbf\xbd");
    /* a full buffer stops on a character boundary, NUL-terminated */
    assert_int_equal(cpython_str_to_utf8(4, (const uint8_t *)ucs4, sizeof ucs4,
                                         out, 4), 0);
    assert_string_equal(out, "");
    assert_int_equal(cpython_str_to_utf8(4, (const uint8_t *)ucs4, sizeof ucs4,
                                         out, 6), 5);
    assert_string_equal(out, "\xf0\x90\x90\x80x");
    assert_int_equal(cpython_str_to_utf8(1, latin1, sizeof latin1, out, 1), 0);
    assert_int_equal(cpython_str_to_utf8(3, latin1, sizeof latin1, out, sizeof out), 0);
    /* an odd byte count converts the whole characters only */
    assert_int_equal(cpython_str_to_utf8(2, (const uint8_t *)ucs2, 3, out, sizeof out), 3);
}

/* Debian's tables (cpython_debug_tables.h) behind a rebuilt header. */
static int parse_real(const uint64_t *words, size_t n, uint64_t version,
                      uint64_t free_threaded, struct cpython_layout *L)
{
    static uint8_t buf[CPY_DEBUG_OFFSETS_READ];
    char err[200];
    uint64_t head[3] = { 0, version, free_threaded };
    memset(buf, 0, sizeof buf);
    memcpy(head, "xdebugpy", 8);
    memcpy(buf, head, sizeof head);
    memcpy(buf + sizeof head, words, n * 8);
    return cpython_layout_init((uint32_t)version, buf, sizeof buf, L, err, sizeof err);
}

static void test_real_debug_tables(void **state)
{
    (void)state;
    struct cpython_layout L;
    assert_int_equal(parse_real(debian313_debug_offsets, sizeof debian313_debug_offsets / 8, 0x030d05f0, 0, &L), 0);
    assert_int_equal(L.rt_interpreters_head, 632);
    assert_int_equal(L.is_threads_head, 7344);
    assert_int_equal(L.ts_frame, 72);
    assert_int_equal(L.ts_native_thread_id, 160);
    assert_int_equal(L.fr_owner, 70);
    assert_int_equal(L.co_code_adaptive, 200);
    assert_int_equal(L.co_version, 92);
    assert_int_equal(L.is_code_generation, CPY_OFF_NONE);
    assert_false(L.tagged_executable);
    /* a 3.13 table whose code object is laid out otherwise: no co_version */
    uint64_t moved[sizeof debian313_debug_offsets / 8];
    memcpy(moved, debian313_debug_offsets, sizeof moved);
    assert_int_equal(moved[43 - 3], 200);         /* code_object.co_code_adaptive */
    moved[43 - 3] = 192;
    assert_int_equal(parse_real(moved, sizeof moved / 8, 0x030d05f0, 0, &L), 0);
    assert_int_equal(L.co_code_adaptive, 192);
    assert_int_equal(L.co_version, CPY_OFF_NONE);

    assert_int_equal(parse_real(debian314_debug_offsets, sizeof debian314_debug_offsets / 8, 0x030e08f0, 0, &L), 0);
    assert_int_equal(L.rt_interpreters_head, 808);
    assert_int_equal(L.is_next, 7272);
    assert_int_equal(L.is_threads_head, 7344);
    assert_int_equal(L.is_code_generation, 7992);
    assert_int_equal(L.ts_next, 8);
    assert_int_equal(L.ts_interp, 16);
    assert_int_equal(L.ts_frame, 72);
    assert_int_equal(L.ts_native_thread_id, 160);
    assert_int_equal(L.fr_previous, 8);
    assert_int_equal(L.fr_code, 0);
    assert_int_equal(L.fr_instr, 56);
    assert_int_equal(L.fr_owner, 74);
    assert_int_equal(L.co_filename, 112);
    assert_int_equal(L.co_qualname, 128);
    assert_int_equal(L.co_linetable, 136);
    assert_int_equal(L.co_firstlineno, 68);
    assert_int_equal(L.co_code_adaptive, 208);
    assert_int_equal(L.tp_name, 24);
    assert_int_equal(L.by_sval, 32);
    assert_int_equal(L.str_ascii_size, 40);
    assert_int_equal(L.str_compact_size, 56);
    assert_int_equal(L.co_version, CPY_OFF_NONE);   /* 3.14: generation */
    assert_true(L.tagged_executable);
    /* each table read as the other version's fails validation */
    assert_int_equal(parse_real(debian313_debug_offsets, sizeof debian313_debug_offsets / 8, 0x030e08f0, 0, &L), -1);
    assert_int_equal(parse_real(debian314_debug_offsets, sizeof debian314_debug_offsets / 8, 0x030d05f0, 0, &L), -1);
    /* the free-threaded builds are refused */
    assert_int_equal(parse_real(debian314_debug_offsets, sizeof debian314_debug_offsets / 8, 0x030e08f0, 1, &L), -1);
}

static void test_versions_refused(void **state)
{
    (void)state;
    struct cpython_layout L;
    char err[200];
    uint8_t buf[CPY_DEBUG_OFFSETS_READ] = { 0 };
    /* 3.10, a beta of 3.11, 3.15, and Python 2 */
    assert_int_equal(cpython_layout_init(0x030a0cf0, NULL, 0, &L, err, sizeof err), -1);
    assert_int_equal(cpython_layout_init(0x030b00b4, NULL, 0, &L, err, sizeof err), -1);
    assert_non_null(strstr(err, "pre-release"));
    assert_int_equal(cpython_layout_init(0x030f00f0, buf, sizeof buf, &L, err, sizeof err), -1);
    assert_int_equal(cpython_layout_init(0x020712f0, NULL, 0, &L, err, sizeof err), -1);
    /* 3.13 and 3.14 need a table: zeros are refused */
    assert_int_equal(cpython_layout_init(0x030d05f0, buf, sizeof buf, &L, err, sizeof err), -1);
    assert_int_equal(cpython_layout_init(0x030e08f0, NULL, 0, &L, err, sizeof err), -1);
    /* release candidates of known versions are accepted */
    assert_int_equal(cpython_layout_init(0x030b00c1, NULL, 0, &L, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#if PY_MINOR_VERSION == 11 || PY_MINOR_VERSION == 12
        cmocka_unit_test(test_static_table_matches_headers),
#endif
#if PY_MINOR_VERSION == 13
        cmocka_unit_test(test_debug_offsets_match_headers),
#endif
        cmocka_unit_test(test_str_state_bits),
        cmocka_unit_test(test_real_debug_tables),
        cmocka_unit_test(test_utf8_conversion),
        cmocka_unit_test(test_versions_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
