/*
 * fuzz_cpython.c - libFuzzer harness for the CPython frame decoder
 * (vm_cpython + cpython_layout + cpython_lines) over a fuzzed memory image.
 *
 * Input: a 16-byte header, then the image, mapped at IMAGE_BASE where
 * _PyRuntime is said to live:
 *   [0] version: 3.11, 3.12 (static tables), 3.13, 3.14 (debug offsets)
 *   [1] flags: 1 lines, 2 reads outside the image wrap into it (else they
 *       fail), 4 no registers, 8 keep the image's own debug-offset table
 *       (else a real one from Debian's 3.13.5 / 3.14.8 is written over it),
 *       16 lend the decoder a copy of up to 8 KiB of the image from the
 *       stack pointer before each capture (as the snapshot does),
 *       32 give it a count of code objects freed (the shim's), moved
 *       between captures only when [11] is odd: an even [11] makes a
 *       target that lies about it
 *   [2..5] thread id, [6..9] offset of the stack pointer in the image,
 *   [10] number of captures (1..4), [11] a byte XORed, between captures,
 *   into the 32 bytes at [12..15] (the target "runs": code objects die,
 *   strings change, frames move)
 * Checked on every capture: the decoder stays inside its buffers (ASan),
 * every id returned is even, in [2, 2^63) and was named before; names are
 * valid UTF-8 "py:" names with exactly three ':'; anchors never decrease
 * from inner to outer frames, except trailing zeros.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address -D_GNU_SOURCE -Iattacher -Itarget-shim
 *   tests/fuzz/fuzz_cpython.c attacher/vm_cpython.c attacher/cpython_layout.c
 *   attacher/cpython_lines.c attacher/cpython_mem.c attacher/cpython_names.c
 *   attacher/cpython_table.c attacher/remote_mem.c attacher/vmprof_writer.c
 * With -DFUZZ_CPYTHON_MAIN (and without -fsanitize=fuzzer) it is a plain
 * program that runs the files named and prints the names and frames, or
 * writes a seed corpus: `fuzz_cpython_main --seeds DIR` (without seeds
 * the fuzzer rarely gets past the thread lookup in a minute).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/user.h>

#include "frames.h"
#include "vm_cpython.h"
#include "vmprof_writer.h"
#include "../attacher/cpython_debug_tables.h"

#define IMAGE_BASE 0x10000000ull
#define HDR 16

struct image {
    const uint8_t *data;
    size_t len;
    int wrap;
};

static int image_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
    const struct image *im = ctx;
    if (im->len == 0)
        return -1;
    if (!im->wrap) {
        if (addr < IMAGE_BASE || addr - IMAGE_BASE > im->len ||
            im->len - (addr - IMAGE_BASE) < len)
            return -1;
        memcpy(buf, im->data + (addr - IMAGE_BASE), len);
        return 0;
    }
    uint8_t *o = buf;
    uint64_t off = (addr - IMAGE_BASE) % im->len;
    for (size_t i = 0; i < len; i++) {
        o[i] = im->data[off];
        off = off + 1 == im->len ? 0 : off + 1;
    }
    return 0;
}

#define MAX_IDS 4096
static uint64_t named[MAX_IDS];
static size_t n_named;

static void sink(void *arg, uint64_t id, const char *name)
{
    (void)arg;
#ifdef FUZZ_CPYTHON_MAIN
    printf("name %#llx %s\n", (unsigned long long)id, name);
#endif
    size_t len = strlen(name), colons = 0;
    if (strncmp(name, "py:", 3) != 0 || !vmprof_utf8_valid(name, len))
        abort();
    for (size_t i = 0; i < len; i++)
        colons += name[i] == ':';
    if (colons != 3)
        abort();
    for (size_t i = 0; i < n_named; i++)
        if (named[i] == id)
            abort();                /* one id, one name */
    if (n_named < MAX_IDS)
        named[n_named++] = id;
}

static int was_named(uint64_t id)
{
    for (size_t i = 0; i < n_named; i++)
        if (named[i] == id)
            return 1;
    return n_named >= MAX_IDS;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t versions[] = { 0x030b02f0, 0x030c01f0, 0x030d05f0,
                                         0x030e08f0 };
    static uint8_t img[1 << 20];
    static struct vm_frame out[MAX_VM_FRAMES];
    if (size < HDR || size - HDR > sizeof img)
        return 0;
    uint32_t version = versions[data[0] & 3];
    uint8_t flags = data[1];
    pid_t tid = (pid_t)(le32(data + 2) & 0x7fffffff);
    size_t n = size - HDR;
    memcpy(img, data + HDR, n);
    if (!(flags & 8) && (data[0] & 3) >= 2) {
        const uint64_t *t = (data[0] & 3) == 2 ? debian313_debug_offsets : debian314_debug_offsets;
        size_t words = (data[0] & 3) == 2 ? sizeof debian313_debug_offsets / 8 : sizeof debian314_debug_offsets / 8;
        uint64_t head[3];
        memcpy(head, "xdebugpy", 8);
        head[1] = version;
        head[2] = 0;
        size_t need = sizeof head + words * 8;
        if (n < need)
            n = need;
        memcpy(img, head, sizeof head);
        memcpy(img + sizeof head, t, words * 8);
    }
    struct image im = { img, n, (flags & 2) != 0 };
    static uint64_t code_frees;
    struct cpython_target target = { .runtime_addr = IMAGE_BASE,
                                     .version_hex = version,
                                     .code_frees = (flags & 32) ? &code_frees : NULL };
    char err[256];
    n_named = 0;
    struct vm_decoder *d = vm_cpython_create_with_reader(&target, image_read, &im,
                                                         sink, NULL, flags & 1,
                                                         err, sizeof err);
    if (d == NULL)
        return 0;
    struct user_regs_struct regs;
    memset(&regs, 0, sizeof regs);
    regs.rsp = IMAGE_BASE + le32(data + 6) % (n + 1);
    int captures = 1 + (data[10] & 3);
    static uint8_t stack_copy[8192];
    for (int k = 0; k < captures; k++) {
        size_t at = (size_t)(regs.rsp - IMAGE_BASE);
        if ((flags & 16) && at < n) {
            size_t len = n - at < sizeof stack_copy ? n - at : sizeof stack_copy;
            memcpy(stack_copy, img + at, len);
            vm_cpython_stack_copy(d, regs.rsp, stack_copy, len);
        }
        int r = d->ops->capture(d, tid, (flags & 4) ? NULL : &regs, out,
                                MAX_VM_FRAMES);
        if (r < -1 || r > MAX_VM_FRAMES)
            abort();
        uint64_t last = 0;
        for (int i = 0; i < r; i++) {
            if (out[i].id == 0 || (out[i].id & 1) || out[i].id >= (1ull << 63) ||
                !was_named(out[i].id))
                abort();
            if (out[i].anchor != 0) {
                if (out[i].anchor < last)
                    abort();
                last = out[i].anchor;
            }
        }
#ifdef FUZZ_CPYTHON_MAIN
        for (int i = 0; i < r; i++)
            printf("frame %d id=%#llx anchor=%#llx line=%d\n", i,
                   (unsigned long long)out[i].id,
                   (unsigned long long)out[i].anchor, out[i].line);
        printf("capture %d: %d\n", k, r);
#endif
        if (k == 1)
            d->ops->thread_gone(d, tid);
        for (size_t i = 0; i < 32 && data[11] != 0 && n > 0; i++)
            img[(le32(data + 12) + i) % n] ^= data[11];
        code_frees += data[11] & 1;
    }
    (void)d->ops->is_interpreter_ip(d, IMAGE_BASE);
    d->ops->destroy(d);
    return 0;
}

#ifdef FUZZ_CPYTHON_MAIN
/* ---- seeds: a consistent two-frame stack per version ---- */

struct seed_layout {
    uint32_t rt_head, is_threads, ts_interp, ts_tid, ts_frame, ascii, compact,
             first, file, qual, lt, adaptive, fr_code, fr_prev, fr_instr, owner;
    int model;                      /* 1 cframe, 2 entry via cframe, 3 entry */
};

static const struct seed_layout seed_layouts[4] = {
    { 40, 16, 16, 160, 56, 48, 72, 72, 112, 128, 136, 184, 32, 48, 56, 69, 1 },
    { 40, 72, 16, 144, 56, 40, 56, 68, 112, 128, 136, 192, 0, 8, 56, 70, 2 },
    { 632, 7344, 16, 160, 72, 40, 56, 68, 112, 128, 136, 200, 0, 8, 56, 70, 3 },
    { 808, 7344, 16, 160, 72, 40, 56, 68, 112, 128, 136, 208, 0, 8, 56, 74, 3 },
};

static void put64(uint8_t *img, uint32_t off, uint64_t v) { memcpy(img + off, &v, 8); }
static uint64_t P(uint32_t off) { return IMAGE_BASE + off; }

static void seed_str(uint8_t *img, const struct seed_layout *L, uint32_t off,
                     const char *s, int kind2)
{
    size_t n = strlen(s);
    put64(img, off + 8, P(0x6200));
    put64(img, off + 16, n);
    uint32_t state = (uint32_t)((kind2 ? 2 : 1) << 2 | 1 << 5 | (!kind2) << 6 | 1 << 7);
    memcpy(img + off + 32, &state, 4);
    for (size_t i = 0; i < n; i++) {
        if (kind2) {
            uint16_t u = (uint16_t)(i + 1 == n ? 0x51fd : (uint8_t)s[i]);
            memcpy(img + off + L->compact + 2 * i, &u, 2);
        } else {
            img[off + L->ascii + i] = (uint8_t)s[i];
        }
    }
}

static int write_seed(const char *dir, int v, int mutate)
{
    static uint8_t buf[HDR + 0xc000];
    const struct seed_layout *L = &seed_layouts[v];
    uint8_t *img = buf + HDR;
    const uint32_t interp = 0xa000, ts = 0x4000, fr1 = 0x3000, fr2 = 0x3100,
                   stack = 0x8000, entry = 0x8040;
    memset(buf, 0, sizeof buf);
    put64(img, L->rt_head, P(interp));
    put64(img, interp + L->is_threads, P(ts));
    put64(img, ts + L->ts_interp, P(interp));
    put64(img, ts + L->ts_tid, 4242);
    static const char *tn[3] = { "code", "str", "bytes" };
    for (int i = 0; i < 3; i++) {
        put64(img, 0x6000 + 0x200 * (uint32_t)i + 24, P(0x6100 + 0x200 * (uint32_t)i));
        memcpy(img + 0x6100 + 0x200 * i, tn[i], strlen(tn[i]) + 1);
    }
    seed_str(img, L, 0x5000, "/tmp/prog.py", 0);
    seed_str(img, L, 0x5100, "outer", 0);
    seed_str(img, L, 0x5300, "Klass.x", 1);
    static const uint8_t lt[] = { 0x80 | 11 << 3 | 3, 0, 4, 0x80 | 3, 0x10 };
    put64(img, 0x5200 + 8, P(0x6400));
    put64(img, 0x5200 + 16, sizeof lt);
    memcpy(img + 0x5200 + 32, lt, sizeof lt);
    for (uint32_t k = 0; k < 2; k++) {
        uint32_t code = 0x7000 + 0x400 * k, fr = k ? fr2 : fr1;
        put64(img, code + 8, P(0x6000));
        put64(img, code + 16, 8);
        int32_t first = 10;
        memcpy(img + code + L->first, &first, 4);
        put64(img, code + L->file, P(0x5000));
        put64(img, code + L->qual, P(k ? 0x5300 : 0x5100));
        put64(img, code + L->lt, P(0x5200));
        put64(img, fr + L->fr_code, P(code));
        put64(img, fr + L->fr_instr, P(code + L->adaptive + 6 - 4 * k));
    }
    put64(img, fr1 + L->fr_prev, P(fr2));
    if (L->model == 1) {            /* 3.11: cframe on the stack */
        put64(img, ts + L->ts_frame, P(stack));
        put64(img, stack + 8, P(fr1));
        put64(img, stack + 16, P(ts + 336));
        img[fr2 + 68] = 1;
    } else {                        /* entry frame on the stack */
        put64(img, fr2 + L->fr_prev, P(entry));
        img[entry + L->owner] = 3;
        put64(img, ts + L->ts_frame, P(L->model == 2 ? stack : fr1));
        if (L->model == 2)
            put64(img, stack, P(fr1));
    }
    uint32_t tid = 4242, sp = stack - 0x100, patch = 0x5100 + L->ascii;
    buf[0] = (uint8_t)v;
    /* mutating (1): with a stack copy; counted (2): mutating too, with a
     * count of code objects freed that does not move (a lying target) */
    buf[1] = mutate == 2 ? 1 | 16 | 32 : mutate ? 1 | 16 : 1;
    memcpy(buf + 2, &tid, 4);
    memcpy(buf + 6, &sp, 4);
    buf[10] = mutate ? 3 : 1;
    buf[11] = mutate == 2 ? 2 : mutate ? 1 : 0;
    memcpy(buf + 12, &patch, 4);
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-3.%d%s", dir, 11 + v,
             mutate == 2 ? "-counted" : mutate ? "-mutating" : "");
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, sizeof buf, f) != sizeof buf) {
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

/* Without libFuzzer: run each file named and print what was decoded;
 * or, with --seeds DIR, write a seed corpus (one consistent stack per
 * version, each also with its qualname changing between captures, with
 * and without a count of code objects freed). */
int main(int argc, char **argv)
{
    static uint8_t buf[(1 << 20) + HDR];
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0) {
        for (int v = 0; v < 4; v++)
            if (write_seed(argv[2], v, 0) < 0 || write_seed(argv[2], v, 1) < 0 ||
                write_seed(argv[2], v, 2) < 0)
                return 1;
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL)
            return 1;
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        printf("== %s\n", argv[i]);
        LLVMFuzzerTestOneInput(buf, n);
    }
    return 0;
}
#endif
