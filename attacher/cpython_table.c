/*
 * cpython_table.c - open addressing with linear probing for records that
 * start with a non-zero uint64 key (see cpython_table.h for the rules).
 * The hash is Fibonacci hashing of the key: code addresses are 16-byte
 * aligned and thread ids are dense, both spread well by the multiply.
 */
#include "cpython_table.h"

#include <stdlib.h>
#include <string.h>

static uint32_t hash_u64(uint64_t k, uint32_t cap)
{
    return (uint32_t)((k * 0x9e3779b97f4a7c15ull) >> 32) & (cap - 1);
}

static uint64_t *slot(const struct cpy_table *t, uint32_t i)
{
    return (uint64_t *)(void *)(t->mem + (size_t)i * t->esz);
}

void cpy_table_init(struct cpy_table *t, size_t esz)
{
    memset(t, 0, sizeof *t);
    t->esz = esz;
}

void cpy_table_free(struct cpy_table *t)
{
    free(t->mem);
    t->mem = NULL;
    t->cap = t->used = 0;
}

void *cpy_table_find(const struct cpy_table *t, uint64_t key)
{
    if (t->cap == 0 || key == 0)
        return NULL;
    for (uint32_t h = hash_u64(key, t->cap); *slot(t, h) != 0;
         h = (h + 1) & (t->cap - 1)) {
        if (*slot(t, h) == key)
            return slot(t, h);
    }
    return NULL;
}

void *cpy_table_at(const struct cpy_table *t, uint32_t i)
{
    return i < t->cap && *slot(t, i) != 0 ? slot(t, i) : NULL;
}

static int grow(struct cpy_table *t)
{
    struct cpy_table n = { .esz = t->esz, .cap = t->cap ? t->cap * 2 : 256 };
    if (n.cap < t->cap || (n.mem = calloc(n.cap, n.esz)) == NULL)
        return -1;
    for (uint32_t i = 0; i < t->cap; i++) {
        uint64_t k = *slot(t, i);
        if (k == 0)
            continue;
        uint32_t h = hash_u64(k, n.cap);
        while (*slot(&n, h) != 0)
            h = (h + 1) & (n.cap - 1);
        memcpy(slot(&n, h), slot(t, i), t->esz);
    }
    free(t->mem);
    t->mem = n.mem;
    t->cap = n.cap;
    return 0;
}

void *cpy_table_add(struct cpy_table *t, uint64_t key)
{
    if (key == 0 || ((t->used + 1) * 2 > t->cap && grow(t) < 0))
        return NULL;
    uint32_t h = hash_u64(key, t->cap);
    while (*slot(t, h) != 0)
        h = (h + 1) & (t->cap - 1);
    uint64_t *e = slot(t, h);
    memset(e, 0, t->esz);
    *e = key;
    t->used++;
    return e;
}

/* Delete by shifting later members of the cluster back into the hole: a
 * record moves into the hole unless its home slot lies cyclically in
 * (hole, its slot], where it is still reachable without the hole. */
void cpy_table_del(struct cpy_table *t, void *rec)
{
    uint32_t mask = t->cap - 1;
    uint32_t i = (uint32_t)(((uint8_t *)rec - t->mem) / t->esz), j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint64_t k = *slot(t, j);
        if (k == 0)
            break;
        uint32_t home = hash_u64(k, t->cap);
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            memcpy(slot(t, i), slot(t, j), t->esz);
            i = j;
        }
    }
    *slot(t, i) = 0;
    t->used--;
}
