/*
 * cpython_lines.c - decoding of CPython's location table (co_linetable,
 * 3.11+) to find the line of one instruction.
 *
 * The table is a sequence of entries. An entry starts with a byte that has
 * bit 7 set: bits 3-6 are a code, bits 0-2 the number of code units it
 * covers minus one. Following bytes (bit 7 clear) carry the payload:
 *   codes 0-9    short form: same line, one column byte
 *   codes 10-12  one-line form: line += code - 10, two column bytes
 *   code 13      no columns: line += svarint
 *   code 14      long form: line += svarint, then end line and columns
 *   code 15      no location (the running line is unchanged)
 * varint: 6-bit chunks, least significant first, bit 6 = more follow;
 * svarint: varint v, value (v >> 1), negated when v & 1.
 * The running line starts at co_firstlineno.
 *
 * Invariants: every byte access is below len; a varint is at most six
 * chunks and must not run into the next entry; the running line stays an
 * int32; the walk is linear in len. Unlike CPython, which trusts its own
 * tables, any malformation ends the lookup with "no line".
 */
#include "cpython_lines.h"

#define ENTRY_START 0x80u

static int read_varint(const uint8_t *t, size_t len, size_t *pos, uint32_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift <= 30; shift += 6) {
        if (*pos >= len || (t[*pos] & ENTRY_START))
            return -1;
        uint8_t b = t[(*pos)++];
        v |= (uint64_t)(b & 0x3f) << shift;
        if (!(b & 0x40)) {
            if (v > UINT32_MAX)
                return -1;
            *out = (uint32_t)v;
            return 0;
        }
    }
    return -1;
}

int cpython_addr2line(const uint8_t *tab, size_t len, int32_t firstlineno,
                      uint32_t unit, int32_t *line)
{
    int64_t ln = firstlineno;
    uint64_t start = 0;
    size_t pos = 0;

    if (tab == NULL)
        return -1;
    while (pos < len) {
        uint8_t b = tab[pos++];
        if (!(b & ENTRY_START))
            return -1;
        unsigned code = (b >> 3) & 15;
        unsigned n = (b & 7) + 1;
        int has_line = code != 15;
        if (code == 13 || code == 14) {
            uint32_t u;
            if (read_varint(tab, len, &pos, &u) < 0)
                return -1;
            int64_t d = (int64_t)(u >> 1);
            ln += (u & 1) ? -d : d;
        } else if (code >= 10 && code <= 12) {
            ln += code - 10;
        }
        if (ln < INT32_MIN || ln > INT32_MAX)
            return -1;
        if (unit < start + n) {
            if (!has_line)
                return -1;
            *line = (int32_t)ln;
            return 0;
        }
        start += n;
        while (pos < len && !(tab[pos] & ENTRY_START))
            pos++;
    }
    return -1;
}

int32_t cpython_frame_line(const uint8_t *tab, size_t len, int32_t firstlineno,
                           uint64_t code_start, uint32_t code_units,
                           uint64_t instr)
{
    int32_t line;
    if (instr < code_start)
        return firstlineno > 0 ? firstlineno : 0;
    uint64_t unit = (instr - code_start) / 2;
    if (unit >= code_units ||
        cpython_addr2line(tab, len, firstlineno, (uint32_t)unit, &line) < 0 ||
        line < 0)
        return 0;
    return line;
}
