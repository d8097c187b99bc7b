/*
 * cpython_mem.c - per-stop page cache and batched reads for the CPython
 * decoder (the cost model and invariants are in cpython_mem.h).
 *
 * Slots are handed out in order during a stop and never reused within it;
 * a page -> slot hash (stamped with the stop, so a new stop needs no
 * clearing) makes each lookup O(1). A batch gives each run of consecutive
 * pages consecutive slots, so the run is one span of one contiguous
 * buffer; a run that fails leaves its slots empty (wasted for this stop,
 * bounded by CPY_MEM_PAGES).
 */
#include "cpython_mem.h"

#include <stdlib.h>
#include <string.h>

#define PAGE_MASK (~(uint64_t)(CPY_PAGE - 1))

int cpy_mem_init(struct cpy_mem *m, cpy_mem_read_fn read,
                 cpy_mem_readv_fn readv, void *ctx)
{
    memset(m, 0, sizeof *m);
    m->read = read;
    m->readv = readv;
    m->ctx = ctx;
    m->stop = 1;
    m->data = malloc((size_t)CPY_MEM_PAGES * CPY_PAGE);
    return m->data != NULL ? 0 : -1;
}

void cpy_mem_free(struct cpy_mem *m)
{
    free(m->data);
    m->data = NULL;
}

void cpy_mem_begin(struct cpy_mem *m)
{
    m->n = 0;
    m->nbad = 0;
    m->ov = NULL;
    m->ov_len = 0;
    m->nwant = 0;
    m->bytes = 0;
    if (++m->stop == 0) {           /* stamps wrapped: clear them once */
        memset(m->hstamp, 0, sizeof m->hstamp);
        m->stop = 1;
    }
}

void cpy_mem_overlay(struct cpy_mem *m, uint64_t lo, const void *buf,
                     size_t len)
{
    int ok = buf != NULL && lo < CPY_USER_END && len <= CPY_USER_END - lo;
    m->ov = ok ? buf : NULL;
    m->ov_lo = lo;
    m->ov_len = ok ? len : 0;
}

static int in_overlay(const struct cpy_mem *m, uint64_t addr, size_t len)
{
    return m->ov != NULL && addr >= m->ov_lo && len <= m->ov_len &&
           addr - m->ov_lo <= m->ov_len - len;
}

static uint32_t hash_page(uint64_t page)
{
    return (uint32_t)(((page >> 12) * 0x9e3779b97f4a7c15ull) >> 40) &
           (CPY_MEM_HASH - 1);
}

/* The slot holding page, or -1. */
static int slot_of(const struct cpy_mem *m, uint64_t page)
{
    for (uint32_t h = hash_page(page), k = 0; k < CPY_MEM_HASH;
         h = (h + 1) & (CPY_MEM_HASH - 1), k++) {
        if (m->hstamp[h] != m->stop)
            return -1;
        if (m->tag[m->hslot[h]] == page)
            return m->hslot[h];
    }
    return -1;
}

/* Record that slot i now holds page (cached until the next stop). The
 * hash has 4x the slots, so it always has room. */
static void slot_set(struct cpy_mem *m, uint32_t i, uint64_t page)
{
    uint32_t h = hash_page(page);
    while (m->hstamp[h] == m->stop)
        h = (h + 1) & (CPY_MEM_HASH - 1);
    m->hstamp[h] = m->stop;
    m->hslot[h] = (uint16_t)i;
    m->tag[i] = page;
}

/* Charge len bytes to this stop; -1 when over the budget. */
static int charge(struct cpy_mem *m, size_t len)
{
    if (len > CPY_MEM_BYTES - m->bytes)
        return -1;
    m->bytes += len;
    return 0;
}

static int raw_read(struct cpy_mem *m, uint64_t addr, void *buf, size_t len)
{
    if (charge(m, len) < 0)
        return -1;
    m->calls++;
    return m->read(m->ctx, addr, buf, len);
}

/* 1 with *out set, 0 when the cache is full, -1 when unreadable. */
static int page_get(struct cpy_mem *m, uint64_t page, const uint8_t **out)
{
    int s = slot_of(m, page);
    if (s < 0) {
        for (uint32_t i = 0; i < m->nbad; i++)
            if (m->bad[i] == page)
                return -1;
        if (m->n == CPY_MEM_PAGES)
            return 0;
        uint8_t *buf = m->data + (size_t)m->n * CPY_PAGE;
        if (raw_read(m, page, buf, CPY_PAGE) < 0) {
            if (m->nbad < CPY_MEM_BAD)
                m->bad[m->nbad++] = page;
            return -1;
        }
        m->pages++;
        s = (int)m->n++;
        slot_set(m, (uint32_t)s, page);
    }
    m->used[s] = 1;
    *out = m->data + (size_t)s * CPY_PAGE;
    return 1;
}

int cpy_mem_fetch(struct cpy_mem *m, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (addr == 0 || addr >= CPY_USER_END || len > CPY_USER_END - addr)
        return -1;
    if (in_overlay(m, addr, len)) {
        memcpy(buf, m->ov + (addr - m->ov_lo), len);
        return 0;
    }
    uint64_t first = addr & PAGE_MASK, last = (addr + len - 1) & PAGE_MASK;
    if (last - first >= 2 * CPY_PAGE)       /* big: read exactly */
        return raw_read(m, addr, buf, len);
    uint8_t *o = buf;
    uint64_t a = addr;
    size_t left = len;
    while (left > 0) {
        uint64_t pg = a & PAGE_MASK;
        size_t in = CPY_PAGE - (size_t)(a - pg);
        if (in > left)
            in = left;
        const uint8_t *p;
        int r = page_get(m, pg, &p);
        if (r < 0)
            return -1;
        if (r == 0)
            return raw_read(m, addr, buf, len);
        memcpy(o, p + (a - pg), in);
        o += in;
        a += in;
        left -= in;
    }
    return 0;
}

static void want_page(struct cpy_mem *m, uint64_t page)
{
    if (slot_of(m, page) >= 0)
        return;
    for (uint32_t i = 0; i < m->nbad; i++)
        if (m->bad[i] == page)
            return;
    for (uint32_t i = 0; i < m->nwant; i++)
        if (m->want[i] == page)
            return;
    if (m->nwant < CPY_MEM_PAGES)
        m->want[m->nwant++] = page;
}

void cpy_mem_want(struct cpy_mem *m, uint64_t addr, size_t len)
{
    if (len == 0 || addr == 0 || addr >= CPY_USER_END ||
        len > CPY_USER_END - addr || in_overlay(m, addr, len))
        return;
    uint64_t first = addr & PAGE_MASK, last = (addr + len - 1) & PAGE_MASK;
    if (last - first >= 2 * CPY_PAGE)
        return;
    want_page(m, first);
    if (last != first)
        want_page(m, last);
}

/* Insertion sort: the wanted pages are few (<= CPY_MEM_PAGES) and come
 * mostly in order (the hint is kept sorted), where it is linear. */
static void sort_pages(uint64_t *p, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = p[i];
        uint32_t j = i;
        for (; j > 0 && p[j - 1] > v; j--)
            p[j] = p[j - 1];
        p[j] = v;
    }
}

int cpy_mem_load(struct cpy_mem *m)
{
    struct remote_span span[CPY_MEM_PAGES];
    uint32_t first_slot[CPY_MEM_PAGES];
    int ns = 0;

    sort_pages(m->want, m->nwant);
    for (uint32_t i = 0; i < m->nwant; i++) {
        uint64_t pg = m->want[i];
        if (slot_of(m, pg) >= 0)
            continue;
        if (m->n == CPY_MEM_PAGES || charge(m, CPY_PAGE) < 0)
            break;
        uint32_t s = m->n++;
        m->tag[s] = 0;
        m->used[s] = 0;
        struct remote_span *prev = ns > 0 ? &span[ns - 1] : NULL;
        if (prev != NULL && prev->addr + prev->len == pg) {
            prev->len += CPY_PAGE;  /* consecutive slot: same buffer */
            continue;
        }
        first_slot[ns] = s;
        span[ns++] = (struct remote_span){
            .addr = pg, .buf = m->data + (size_t)s * CPY_PAGE, .len = CPY_PAGE };
    }
    m->nwant = 0;
    if (ns == 0)
        return 0;
    if (m->readv != NULL) {
        int calls = m->readv(m->ctx, span, ns);
        m->calls += calls > 0 ? (uint64_t)calls : 0;
    } else {
        for (int i = 0; i < ns; i++) {
            m->calls++;
            span[i].ok = m->read(m->ctx, span[i].addr, span[i].buf,
                                 span[i].len) == 0;
        }
    }
    int got = 0;
    for (int i = 0; i < ns; i++) {
        if (!span[i].ok)
            continue;
        uint32_t pages = (uint32_t)(span[i].len / CPY_PAGE);
        for (uint32_t k = 0; k < pages; k++)
            slot_set(m, first_slot[i] + k, span[i].addr + (uint64_t)k * CPY_PAGE);
        got += (int)pages;
    }
    m->pages += (uint64_t)got;
    return got;
}

void cpy_hint_want(const struct cpy_hint *h, struct cpy_mem *m)
{
    if (m->nwant == 0 && m->n == 0) {   /* a fresh stop: no need to dedup */
        for (uint32_t i = 0; i < h->n && i < CPY_HINT_PAGES; i++)
            m->want[m->nwant++] = h->page[i];
        return;
    }
    for (uint32_t i = 0; i < h->n && i < CPY_HINT_PAGES; i++)
        want_page(m, h->page[i]);
}

void cpy_hint_update(struct cpy_hint *h, const struct cpy_mem *m)
{
    struct cpy_hint old = *h;
    h->n = 0;
    for (uint32_t i = 0; i < m->n && h->n < CPY_HINT_PAGES; i++) {
        if (m->used[i] && m->tag[i] != 0) {
            h->page[h->n] = m->tag[i];
            h->age[h->n++] = 0;
        }
    }
    for (uint32_t i = 0; i < old.n && h->n < CPY_HINT_PAGES; i++) {
        int s = slot_of(m, old.page[i]);
        if (s < 0 || m->used[s] || old.age[i] >= CPY_HINT_AGE)
            continue;               /* unreadable, kept above, or too old */
        h->page[h->n] = old.page[i];
        h->age[h->n++] = (uint8_t)(old.age[i] + 1);
    }
    /* sorted, ages along, so the next load sorts in linear time */
    for (uint32_t i = 1; i < h->n; i++) {
        uint64_t p = h->page[i];
        uint8_t a = h->age[i];
        uint32_t j = i;
        for (; j > 0 && h->page[j - 1] > p; j--) {
            h->page[j] = h->page[j - 1];
            h->age[j] = h->age[j - 1];
        }
        h->page[j] = p;
        h->age[j] = a;
    }
}
