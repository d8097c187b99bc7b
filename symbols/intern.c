/*
 * intern.c - the string set behind intern.h.
 *
 * Open addressing with linear probing over FNV-1a hashes. Each slot owns
 * one malloc'd NUL-terminated copy; the table grows at 3/4 load, so probes
 * stay short and every interned pointer stays valid until intern_free.
 */
#include "intern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int grow(struct intern_set *set)
{
    size_t ncap = set->cap ? set->cap * 2 : 256;
    char **ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < set->cap; i++) {
        char *s = set->slots[i];
        if (!s) continue;
        size_t j = fnv1a(s, strlen(s)) & (ncap - 1);
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = s;
    }
    free(set->slots);
    set->slots = ns;
    set->cap = ncap;
    return 0;
}

const char *intern_strn(struct intern_set *set, const char *s, size_t len)
{
    len = strnlen(s, len);      /* an embedded NUL ends the string */
    if ((set->n + 1) * 4 > set->cap * 3 && grow(set) < 0)
        return NULL;
    size_t j = fnv1a(s, len) & (set->cap - 1);
    for (char *t; (t = set->slots[j]) != NULL; j = (j + 1) & (set->cap - 1)) {
        if (strncmp(t, s, len) == 0 && t[len] == '\0')
            return t;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    set->slots[j] = copy;
    set->n++;
    return copy;
}

const char *intern_str(struct intern_set *set, const char *s)
{
    return intern_strn(set, s, strlen(s));
}

void intern_free(struct intern_set *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    set->slots = NULL;
    set->cap = set->n = 0;
}
