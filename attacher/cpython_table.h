/*
 * cpython_table.h - an open-addressing hash table of fixed-size records,
 * each starting with a non-zero uint64 key: the CPython decoder's code
 * cache (key: code object address) and thread map (key: OS thread id).
 *
 * Invariants: 0 is never a key (it marks a free slot); the capacity is a
 * power of two and the table is at most half full (it grows by doubling,
 * so a lookup always ends on a free slot); deletion shifts the rest of the
 * probe cluster back, so there are no tombstones. Records move when the
 * table grows or a neighbour is deleted: never keep a pointer to one
 * across cpy_table_add or cpy_table_del.
 */
#ifndef VMPROF_CPYTHON_TABLE_H
#define VMPROF_CPYTHON_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct cpy_table {
    uint8_t *mem;
    size_t esz;                 /* record size, >= 8 */
    uint32_t cap, used;
};

/* An empty table of records of esz bytes (allocates on first add). */
void cpy_table_init(struct cpy_table *t, size_t esz);
/* Free the records' memory (not what they point to). */
void cpy_table_free(struct cpy_table *t);
/* The record with this key, or NULL. */
void *cpy_table_find(const struct cpy_table *t, uint64_t key);
/* A new zeroed record with this key (which must be absent and non-zero),
 * or NULL when out of memory. */
void *cpy_table_add(struct cpy_table *t, uint64_t key);
/* Remove a record returned by find or add. */
void cpy_table_del(struct cpy_table *t, void *rec);
/* Record i of 0..cap-1, or NULL when slot i is free (for iteration). */
void *cpy_table_at(const struct cpy_table *t, uint32_t i);

#endif
