/*
 * cpython_mem.h - the target's memory as the CPython decoder sees it
 * during one stop: a cache of whole pages, filled by batched reads.
 *
 * Cost model (process_vm_readv on this class of machine, kernel 6.x,
 * measured with a resident target): about 1 us per call, plus 0.3-0.4 us
 * for every page the kernel pins to copy from, however few bytes are
 * taken from it. So the decoder reads whole pages, each at most once per
 * stop, and gathers the pages it will need into as few calls as it can:
 *   - at the start of a capture, the pages the same thread's last few
 *     captures used (a cpy_hint): a stack that has not changed much is
 *     then read in one call;
 *   - during the decode, everything one phase will touch (all the code
 *     objects to prove, then all their strings) in one call per phase.
 *
 * Invariants: the cache is emptied by cpy_mem_begin (nothing read during
 * one stop is used in another); a stop reads at most CPY_MEM_BYTES, so a
 * hostile target cannot make a stop last long; pages that could not be
 * read are never cached; a page that failed on its own read fails again
 * without a read for the rest of the stop.
 */
#ifndef VMPROF_CPYTHON_MEM_H
#define VMPROF_CPYTHON_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "remote_mem.h"

#define CPY_PAGE 4096u
#define CPY_MEM_PAGES 128           /* pages cached per stop */
#define CPY_MEM_HASH 512            /* page -> slot index, 4x the slots */
#define CPY_MEM_BYTES (8u << 20)    /* bytes read per stop, at most */
#define CPY_MEM_BAD 16              /* unreadable pages remembered */
#define CPY_USER_END (1ull << 47)   /* x86-64 user addresses lie below */
#define CPY_HINT_PAGES 64           /* pages remembered per thread */
#define CPY_HINT_AGE 2              /* captures a page stays unused in it */

/* 0 when all len bytes at addr were copied to buf, -1 otherwise. */
typedef int (*cpy_mem_read_fn)(void *ctx, uint64_t addr, void *buf, size_t len);
/* Read every span (setting its ok); returns the reader calls it made. */
typedef int (*cpy_mem_readv_fn)(void *ctx, struct remote_span *spans, int n);

struct cpy_mem {
    cpy_mem_read_fn read;
    cpy_mem_readv_fn readv;         /* NULL: spans read one by one */
    void *ctx;
    uint8_t *data;                  /* CPY_MEM_PAGES pages */
    uint64_t tag[CPY_MEM_PAGES];    /* page held by a slot; 0 = none */
    uint8_t used[CPY_MEM_PAGES];    /* a fetch touched it this stop */
    uint32_t n;                     /* slots handed out this stop */
    uint32_t stop;                  /* stamp of the current stop */
    uint32_t hstamp[CPY_MEM_HASH];  /* hslot[i] is valid when == stop */
    uint16_t hslot[CPY_MEM_HASH];
    uint64_t bad[CPY_MEM_BAD];      /* pages that failed alone */
    uint32_t nbad;
    uint64_t want[CPY_MEM_PAGES];   /* pages noted for the next load */
    uint32_t nwant;
    const uint8_t *ov;              /* this stop's copy of the C stack */
    uint64_t ov_lo;                 /* ... of [ov_lo, ov_lo + ov_len) */
    size_t ov_len;
    size_t bytes;                   /* asked for this stop */
    uint64_t calls;                 /* reader calls, since init */
    uint64_t pages;                 /* pages read, since init */
};

/* Pages one thread's recent captures used, with how many captures ago. */
struct cpy_hint {
    uint32_t n;
    uint64_t page[CPY_HINT_PAGES];
    uint8_t age[CPY_HINT_PAGES];
};

static inline int cpy_ptr_ok(uint64_t p, uint64_t align)
{
    return p != 0 && p < CPY_USER_END && (p & (align - 1)) == 0;
}

/* 0, or -1 when out of memory. */
int cpy_mem_init(struct cpy_mem *m, cpy_mem_read_fn read,
                 cpy_mem_readv_fn readv, void *ctx);
void cpy_mem_free(struct cpy_mem *m);
/* A new stop: forget every page (and the stack copy). */
void cpy_mem_begin(struct cpy_mem *m);
/* For this stop only: reads inside [lo, lo + len) come from buf, a copy
 * of the target's memory taken during the same stop (the snapshot's copy
 * of the native stack). */
void cpy_mem_overlay(struct cpy_mem *m, uint64_t lo, const void *buf,
                     size_t len);
/* Copy len bytes at addr: 0, or -1 when some byte cannot be read. Served
 * from cached pages, reading a missing page whole; ranges over more than
 * two pages are read exactly, uncached. */
int cpy_mem_fetch(struct cpy_mem *m, uint64_t addr, void *buf, size_t len);
/* Note the pages of [addr, addr+len) for the next cpy_mem_load (ranges
 * over more than two pages and invalid ones are ignored). */
void cpy_mem_want(struct cpy_mem *m, uint64_t addr, size_t len);
/* Read every page noted and not cached yet in one batch (consecutive
 * pages as one span). Returns the number of pages now cached from it. */
int cpy_mem_load(struct cpy_mem *m);

/* Note the hint's pages for the next cpy_mem_load. */
void cpy_hint_want(const struct cpy_hint *h, struct cpy_mem *m);
/* After a stop: the pages its fetches used, then older pages still young
 * enough (and readable this time), up to CPY_HINT_PAGES. */
void cpy_hint_update(struct cpy_hint *h, const struct cpy_mem *m);

#endif
