/*
 * vm_select.c - registry -> decoder (see vm_select.h).
 */
#include "vm_select.h"

#include <stdio.h>

struct vm_decoder *vm_select_find(pid_t pid, struct remote_mem *mem, vm_name_sink sink,
                                  void *sink_arg, int want_lines, char *note, size_t notelen)
{
    snprintf(note, notelen, "no vmprof shim in process %d: native frames only; for Python "
             "frames start it with LD_PRELOAD=libvmprof-shim.so or use vmprof-attach -- COMMAND",
             (int)pid);
    return NULL;
}
