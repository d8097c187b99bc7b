/*
 * vm_select.c - registry -> decoder (see vm_select.h).
 *
 * The registry stays open as long as a decoder that reads it (vm_shadow
 * tails its code table; the CPython decoder reads the shim's count of
 * code objects freed, when there is one); otherwise the CPython decoder
 * needs only the addresses it was created with and its registry is
 * closed at once. Ownership is kept
 * in a short list here so that vm_select_release() frees both in order.
 */
#include "vm_select.h"

#include <stdio.h>
#include <stdlib.h>

#include "registry_reader.h"
#include "vm_cpython.h"
#include "vm_shadow.h"

struct owned {
    struct owned *next;
    struct vm_decoder *dec;
    struct registry *reg;
};
static struct owned *owned_list;

/* d reads reg: both are freed by vm_select_release. -1 (both freed at
 * once) when out of memory. */
static int keep(struct vm_decoder *d, struct registry *reg)
{
    struct owned *o = malloc(sizeof(*o));
    if (!o) {
        d->ops->destroy(d);
        registry_close(reg);
        return -1;
    }
    *o = (struct owned){ owned_list, d, reg };
    owned_list = o;
    return 0;
}

struct vm_decoder *vm_select_find(pid_t pid, struct remote_mem *mem, vm_name_sink sink,
                                  void *sink_arg, int want_lines, char *note, size_t notelen)
{
    struct registry *reg = NULL;
    char err[256] = "";
    note[0] = '\0';
    int r = registry_open(pid, &reg, err, sizeof(err));
    if (r == 1) {
        snprintf(note, notelen, "no vmprof shim in process %d: native frames only; for "
                 "Python frames start it with LD_PRELOAD=libvmprof-shim.so or use "
                 "vmprof-attach -- COMMAND", (int)pid);
        return NULL;
    }
    if (r < 0) {
        snprintf(note, notelen, "the shim's registry in process %d is unusable (%s): "
                 "native frames only", (int)pid, err);
        return NULL;
    }
    const struct registry_info *info = registry_info(reg);
    struct vm_decoder *d = NULL;
    if (info->kind == VMPROF_REG_KIND_CPYTHON) {
        struct cpython_target t = {
            .runtime_addr = info->py_runtime,
            .version_hex = (uint32_t)info->vm_version,
            .interp_text_lo = info->text_lo,
            .interp_text_hi = info->text_hi,
            .code_frees = registry_py_code_frees(reg),
        };
        d = vm_cpython_create(&t, mem, sink, sink_arg, want_lines, err, sizeof(err));
        if (!d) {
            registry_close(reg);
            snprintf(note, notelen, "cannot decode CPython frames in process %d: %s; "
                     "native frames only", (int)pid, err);
            return NULL;
        }
        if (!t.code_frees) {
            registry_close(reg);
            return d;
        }
        if (keep(d, reg) < 0) {
            snprintf(note, notelen, "cannot decode CPython frames in process %d: "
                     "out of memory", (int)pid);
            return NULL;
        }
        return d;
    }
    if (info->kind == VMPROF_REG_KIND_SHADOW) {
        d = vm_shadow_create(reg, mem, sink, sink_arg, err, sizeof(err));
        if (!d) {
            registry_close(reg);
            snprintf(note, notelen, "cannot decode VM frames in process %d: %s",
                     (int)pid, err);
            return NULL;
        }
        if (keep(d, reg) < 0) {
            snprintf(note, notelen, "cannot decode VM frames in process %d: "
                     "out of memory", (int)pid);
            return NULL;
        }
        return d;
    }
    registry_close(reg);
    /* KIND_NONE: the shim is loaded but no VM has described itself yet. */
    snprintf(note, notelen, "the vmprof shim in process %d describes no VM yet: "
             "native frames only", (int)pid);
    return NULL;
}

void vm_select_release(struct vm_decoder *d)
{
    if (!d)
        return;
    d->ops->destroy(d);
    for (struct owned **p = &owned_list; *p; p = &(*p)->next) {
        if ((*p)->dec == d) {
            struct owned *o = *p;
            *p = o->next;
            registry_close(o->reg);
            free(o);
            return;
        }
    }
}
