/*
 * cpython_debug_tables.h - test data: the _Py_DebugOffsets tables found at
 * the start of _PyRuntime in Debian's CPython 3.13.5 (trixie) and 3.14.8
 * (forky), from word 3 on (the "xdebugpy" cookie, the version and the
 * free-threaded flag are rebuilt by whoever uses them). One copy, read by
 * the layout unit tests and by the CPython fuzz harness's seeds.
 */
#ifndef VMPROF_TEST_CPYTHON_DEBUG_TABLES_H
#define VMPROF_TEST_CPYTHON_DEBUG_TABLES_H

#include <stdint.h>

static const uint64_t debian313_debug_offsets[] = {
    283376, 608, 632, 194976, 7272, 7264, 7344, 7400,
    7656, 7640, 7648, 16, 7752, 0, 7768, 7760,
    304, 0, 8, 16, 72, 152, 160, 232,
    32, 80, 8, 0, 56, 72, 70, 208,
    112, 120, 128, 136, 68, 52, 96, 104,
    200, 16, 8, 416, 24, 88, 168, 32,
    24, 16, 40, 24, 16, 48, 32, 40,
    24, 16, 32, 16, 24, 40, 16, 32,
    64, 32, 16, 40, 240, 200,
};
static const uint64_t debian314_debug_offsets[] = {
    316616, 784, 808, 225864, 7280, 7272, 7344, 7360,
    7408, 7688, 7672, 7680, 16, 7784, 0, 7800,
    7792, 7992, 0, 832, 0, 8, 16, 72,
    152, 160, 232, 32, 88, 8, 0, 56,
    80, 74, 64, 0, 216, 112, 120, 128,
    136, 68, 52, 96, 104, 208, 0, 16,
    8, 416, 24, 88, 168, 40, 32, 16,
    40, 24, 16, 200, 24, 40, 32, 48,
    32, 40, 24, 16, 32, 16, 24, 40,
    16, 32, 64, 32, 16, 40, 264, 192,
    160, 24, 72, 67, 0, 8, 24, 304,
    8076, 0, 4, 512,
};

#endif
