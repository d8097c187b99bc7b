/*
 * dwarf_lines.h - address -> source file:line from DWARF .debug_line
 * (internal to the symbols library).
 */
#ifndef VMPROF_SYMBOLS_DWARF_LINES_H
#define VMPROF_SYMBOLS_DWARF_LINES_H

#include <stdint.h>

struct dwarf_lines;

/* Take a file holding DWARF. The fd stays owned by the caller and must
 * stay open until dwarf_lines_free. NULL when libdwarf cannot read it. */
struct dwarf_lines *dwarf_lines_open(int fd);
/* Link-time address -> file and line. 0 when found; *file lives as long
 * as dl. Line tables are parsed once, per compilation unit, on demand. */
int dwarf_lines_find(struct dwarf_lines *dl, uint64_t vaddr, const char **file, int *line);
void dwarf_lines_free(struct dwarf_lines *dl);

#endif
