/*
 * profile.c - from samples to a complete vmprof log (see profile.h).
 *
 * Invariants: every native word written in a stack (addr | 1) is in the
 * `natives` set until it gets its one NATIVE_SYMBOLS record: at the end,
 * or when the target execs (profile_new_image), while the old image's
 * files can still be named. Words of later images carry the image's
 * number in bits 57-59 (above any user address), so an address the new
 * image reuses is a key of its own and never borrows an old name. VM
 * names are written when first reported, before any stack that uses
 * them. In LINES mode words alternate line, frame: only odd positions are
 * frames.
 */
#include "profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"
#include "vmprof_writer.h"

#define IMAGE_SHIFT 57
#define IMAGE_MAX 7u            /* execs after the 7th share the 7th's tag */
#define IMAGE_MASK ((uint64_t)IMAGE_MAX << IMAGE_SHIFT)

struct profile {
    struct vmprof_writer *w;
    int lines;
    uint64_t samples;
    uint64_t *natives;          /* open addressing, 0 = empty */
    size_t ncap, nlen;
    int failed;
    unsigned image;             /* execs seen, capped at IMAGE_MAX */
    uint64_t tagged[MAX_STACK_WORDS];   /* a sample's words with the image tag */
};

struct profile *profile_open(const struct profile_opts *o, char *err, size_t errlen)
{
    struct profile *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct vmprof_writer_opts wo = {
        .period_usec = o->period_usec,
        .mode_flags = (uint8_t)((o->memory ? VMPROF_MODE_MEMORY : 0) |
                                (o->lines ? VMPROF_MODE_LINES : 0) |
                                (o->native ? VMPROF_MODE_NATIVE : 0) |
                                (o->wall ? VMPROF_MODE_REAL_TIME : 0)),
        .interp_name = o->interp,
    };
    p->lines = o->lines;
    p->ncap = 4096;
    p->natives = calloc(p->ncap, sizeof(*p->natives));
    if (!p->natives) {
        snprintf(err, errlen, "out of memory");
        free(p);
        return NULL;
    }
    if ((o->start ? vmw_open_at(&p->w, o->fd, &wo, o->start) : vmw_open(&p->w, o->fd, &wo)) < 0) {
        snprintf(err, errlen, "cannot write the log: %s; free space or choose another -o",
                 strerror(errno));
        free(p->natives);
        free(p);
        return NULL;
    }
    return p;
}

int profile_meta(struct profile *p, const char *key, const char *value)
{
    return vmw_meta(p->w, key, value);
}

void profile_vm_name(void *arg, uint64_t id, const char *name)
{
    struct profile *p = arg;
    if (vmw_virtual_ip(p->w, id, name) < 0)
        p->failed = 1;
}

static size_t slot_of(uint64_t a, size_t cap)
{
    return (size_t)((a * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static int natives_add(struct profile *p, uint64_t a)
{
    size_t j = slot_of(a, p->ncap);
    while (p->natives[j]) {
        if (p->natives[j] == a)
            return 0;
        j = (j + 1) & (p->ncap - 1);
    }
    p->natives[j] = a;
    if (++p->nlen * 2 <= p->ncap)
        return 0;
    size_t nc = p->ncap * 2;
    uint64_t *nv = calloc(nc, sizeof(*nv));
    if (!nv)
        return -1;
    for (size_t i = 0; i < p->ncap; i++) {
        if (!p->natives[i])
            continue;
        size_t k = slot_of(p->natives[i], nc);
        while (nv[k])
            k = (k + 1) & (nc - 1);
        nv[k] = p->natives[i];
    }
    free(p->natives);
    p->natives = nv;
    p->ncap = nc;
    return 0;
}

int profile_add(struct profile *p, const uint64_t *words, int n, pid_t tid, int repeat,
                uint64_t rss_kb)
{
    if (p->image && n > 0) {
        if (n > MAX_STACK_WORDS)
            n = MAX_STACK_WORDS;
        memcpy(p->tagged, words, (size_t)n * sizeof(*words));
        for (int i = p->lines ? 1 : 0; i < n; i += p->lines ? 2 : 1)
            if (p->tagged[i] & 1)
                p->tagged[i] |= (uint64_t)p->image << IMAGE_SHIFT;
        words = p->tagged;
    }
    for (int i = p->lines ? 1 : 0; i < n; i += p->lines ? 2 : 1)
        if ((words[i] & 1) && natives_add(p, words[i]) < 0)
            return -1;
    for (int r = 0; r < repeat; r++) {
        if (vmw_stack(p->w, words, (size_t)n, (uint64_t)tid, rss_kb) < 0) {
            p->failed = 1;
            return -1;
        }
        p->samples++;
    }
    return 0;
}

uint64_t profile_samples(const struct profile *p)
{
    return p->samples;
}

/* A native word is (function start | 1). Starts may be odd (code built
 * without alignment), so the start is the word itself or the word - 1:
 * resolving the word lands inside the function either way. */
static void native_name(struct symbolizer *sym, uint64_t word, char *out, size_t cap)
{
    struct sym_result r;
    word &= ~IMAGE_MASK;
    char esc_name[1024], esc_file[1024];
    if (!sym) {
        snprintf(out, cap, "n:0x%llx:0:-", (unsigned long long)(word & ~(uint64_t)1));
        return;
    }
    sym_resolve(sym, word, 0, &r);
    uint64_t start = r.sym_start ? r.sym_start : (word & ~(uint64_t)1);
    sym_resolve(sym, start, 1, &r);
    vmprof_escape_name(esc_name, sizeof(esc_name), r.name);
    if (r.file)
        vmprof_escape_name(esc_file, sizeof(esc_file), r.file);
    else if (r.object && r.object[0])
        vmprof_escape_name(esc_file, sizeof(esc_file), r.object);
    else
        snprintf(esc_file, sizeof(esc_file), "-");
    snprintf(out, cap, "n:%s:%d:%s", esc_name, r.file ? r.line : 0, esc_file);
}

/* One NATIVE_SYMBOLS record per address in the set, which is emptied. */
static void name_natives(struct profile *p, struct symbolizer *sym)
{
    char name[2200];
    for (size_t i = 0; i < p->ncap; i++) {
        if (!p->natives[i])
            continue;
        native_name(sym, p->natives[i], name, sizeof(name));
        vmw_native_symbol(p->w, p->natives[i], name);
        p->natives[i] = 0;
    }
    p->nlen = 0;
}

void profile_new_image(struct profile *p, struct symbolizer *sym)
{
    name_natives(p, sym);
    if (p->image < IMAGE_MAX)
        p->image++;
}

int profile_finish(struct profile *p, struct symbolizer *sym, const struct timeval *end,
                   char *err, size_t errlen)
{
    name_natives(p, sym);
    int e = vmw_error(p->w);
    int rc = end ? vmw_close_at(p->w, end) : vmw_close(p->w);
    if (!e && rc < 0)
        e = errno;
    if (e)
        snprintf(err, errlen, "writing the log failed: %s (it is readable up to the "
                 "last whole record); free space or choose another -o", strerror(e));
    free(p->natives);
    free(p);
    return e ? -1 : 0;
}
