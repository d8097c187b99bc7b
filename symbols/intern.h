/*
 * intern.h - a set of immutable strings (internal to the symbols library).
 *
 * intern_str() returns a stable pointer to a copy of the string; the same
 * contents always give the same pointer, so a caller may hand the pointer
 * out for as long as the set lives and repeated lookups cost no memory.
 */
#ifndef VMPROF_SYMBOLS_INTERN_H
#define VMPROF_SYMBOLS_INTERN_H

#include <stddef.h>

struct intern_set {
    char **slots;       /* open addressing; NULL = empty */
    size_t cap, n;      /* cap is 0 or a power of two; n < cap * 3/4 */
};

/* Returns the interned copy of s[0..len) (len bytes, no NUL needed), or
 * NULL when out of memory. */
const char *intern_strn(struct intern_set *set, const char *s, size_t len);
const char *intern_str(struct intern_set *set, const char *s);
void intern_free(struct intern_set *set);

#endif
