/*
 * cpython_lines.h - current line of a CPython frame from its code
 * object's location table (co_linetable, 3.11 and later; the format is
 * described in Objects/locations.md of CPython's source).
 *
 * Pure: the table is a byte buffer copied from the target and treated as
 * hostile; decoding is bounded by its length and never reads past it.
 */
#ifndef VMPROF_CPYTHON_LINES_H
#define VMPROF_CPYTHON_LINES_H

#include <stddef.h>
#include <stdint.h>

/* Line of code unit `unit` (0-based, 2-byte units) of a code object whose
 * location table is tab[0..len) and whose first line is firstlineno.
 * Returns 0 with *line set, or -1 when the table gives no line there (a
 * "no location" entry, unit past the table's end, or a malformed table). */
int cpython_addr2line(const uint8_t *tab, size_t len, int32_t firstlineno,
                      uint32_t unit, int32_t *line);

/* Current line of a frame: instr is its instruction pointer (3.11/3.12
 * prev_instr, 3.13+ instr_ptr), code_start the address of the code's
 * first unit (code object + co_code_adaptive), code_units its length.
 * An instr before the first unit (a frame that has not started: lasti is
 * -1) is on firstlineno. Returns 0 when the line is unknown. */
int32_t cpython_frame_line(const uint8_t *tab, size_t len, int32_t firstlineno,
                           uint64_t code_start, uint32_t code_units,
                           uint64_t instr);

#endif
