/*
 * merge.c - the exact native/VM merge (see merge.h).
 *
 * Both lists are innermost first and both walk up the stack, so one pass
 * with two cursors suffices: VM frames are emitted while their anchor is
 * below the current native frame's cfa. Invariant: every input frame is
 * emitted at most once and in input order within its kind.
 */
#include "merge.h"

static int hidden(const struct merge_input *in, const struct native_frame *f)
{
    if (in->native == NATIVE_NONE)
        return 1;
    if (in->native == NATIVE_EXT && in->is_interp && in->is_interp(in->arg, f->ip))
        return 1;
    return 0;
}

static int put(uint64_t *words, int n, int max, int lines, int32_t line, uint64_t w)
{
    if (n + 1 + (lines ? 1 : 0) > max)
        return n;
    if (lines)
        words[n++] = (uint64_t)(int64_t)(line > 0 ? line : 0);
    words[n++] = w;
    return n;
}

int merge_stack(const struct merge_input *in, uint64_t *words, int max)
{
    int n = 0, v = 0;
    /* Index of the native frame that holds the outermost VM frame: frames
     * outside it are start-up frames, hidden in NATIVE_EXT mode. */
    int last_native = in->n_nat;
    if (in->native == NATIVE_EXT && in->n_vm > 0) {
        uint64_t outer = in->vm[in->n_vm - 1].anchor;
        for (int i = 0; i < in->n_nat; i++)
            if (outer && outer >= in->nat[i].sp && outer < in->nat[i].cfa) {
                last_native = i + 1;
                break;
            }
    }
    for (int i = 0; i < in->n_nat; i++) {
        const struct native_frame *f = &in->nat[i];
        /* A frame whose end is unknown (the outermost one unwound: a
         * thread's entry, or where the unwind stopped short) holds no VM
         * frame: they go outside it. An entry frame never runs Python; a
         * leaf whose unwind failed (assembly without unwind tables, the
         * instruction after clone3's system call) was called by them. */
        while (v < in->n_vm && in->vm[v].anchor && f->cfa != UINT64_MAX &&
               in->vm[v].anchor < f->cfa) {
            n = put(words, n, max, in->lines, in->vm[v].line, in->vm[v].id);
            v++;
        }
        if (i < last_native && !hidden(in, f))
            n = put(words, n, max, in->lines, 0, (f->func ? f->func : f->ip) | 1);
    }
    for (; v < in->n_vm; v++)
        n = put(words, n, max, in->lines, in->vm[v].line, in->vm[v].id);
    return n;
}
