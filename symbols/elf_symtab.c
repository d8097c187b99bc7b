/*
 * elf_symtab.c - an ELF symbol table reduced to what naming code needs.
 *
 * Only defined FUNC and GNU_IFUNC symbols with a non-empty name and a
 * non-zero address are kept. The table is sorted once by address and holds
 * one entry per address: of aliases (malloc/__libc_malloc, weak/strong
 * pairs) the preferred one is kept: sized before unsized, GLOBAL before
 * WEAK before LOCAL, fewer leading underscores, shorter, then by bytes.
 * Lookups are binary searches. Names are copied into one buffer owned by
 * the table, so the ELF file can be closed after loading.
 */
#include "elf_object.h"

#include <gelf.h>
#include <stdlib.h>
#include <string.h>

/* How many entries a lookup walks back over to find an enclosing symbol
 * when the nearest one ends before the address (nested symbols, as in
 * hand-written assembly). Bounded so a hostile table cannot cost O(n). */
#define SYMTAB_BACKSCAN 16

/* Hard cap on symbols taken from one table (a hostile sh_size). */
#define SYMTAB_MAX_SYMS (1u << 24)

struct tmp_sym { uint64_t addr, size; const char *name; int bind; };

static int bind_rank(int bind)
{
    return bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
}

static size_t underscores(const char *s)
{
    size_t n = 0;
    while (s[n] == '_') n++;
    return n;
}

static int cmp_tmp(const void *a, const void *b)
{
    const struct tmp_sym *x = a, *y = b;
    size_t ux, uy, lx, ly;
    if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
    if ((x->size == 0) != (y->size == 0)) return x->size == 0 ? 1 : -1;
    if (bind_rank(x->bind) != bind_rank(y->bind))
        return bind_rank(x->bind) - bind_rank(y->bind);
    ux = underscores(x->name);
    uy = underscores(y->name);
    if (ux != uy) return ux < uy ? -1 : 1;
    lx = strlen(x->name);
    ly = strlen(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Gather the candidate symbols of one table into *out (malloc'd). */
static long gather(Elf *e, Elf_Scn *scn, const GElf_Shdr *sh, struct tmp_sym **out)
{
    Elf_Data *d = elf_getdata(scn, NULL);
    size_t count, n = 0, symsz = gelf_fsize(e, ELF_T_SYM, 1, EV_CURRENT);
    struct tmp_sym *v;
    if (!d || symsz == 0) return -1;
    count = d->d_size / symsz;
    if (count > SYMTAB_MAX_SYMS) count = SYMTAB_MAX_SYMS;
    v = malloc((count ? count : 1) * sizeof *v);
    if (!v) return -1;
    for (size_t i = 0; i < count; i++) {
        GElf_Sym s;
        const char *name;
        int type;
        if (!gelf_getsym(d, (int)i, &s)) break;
        type = GELF_ST_TYPE(s.st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF ||
            s.st_value == 0)
            continue;
        name = elf_strptr(e, sh->sh_link, s.st_name);
        if (!name || !*name) continue;
        v[n].addr = s.st_value;
        v[n].size = s.st_value + s.st_size < s.st_value ? 0 : s.st_size;
        v[n].name = name;
        v[n].bind = GELF_ST_BIND(s.st_info);
        n++;
    }
    *out = v;
    return (long)n;
}

int elf_symtab_load(Elf *e, size_t scn_index, struct elf_symtab *t)
{
    Elf_Scn *scn = elf_getscn(e, scn_index);
    GElf_Shdr sh;
    struct tmp_sym *v = NULL;
    size_t names_len = 0, w = 0;
    long n;
    memset(t, 0, sizeof *t);
    if (!scn || !gelf_getshdr(scn, &sh)) return -1;
    if ((sh.sh_flags & SHF_COMPRESSED) && elf_compress(scn, 0, 0) < 0) return -1;
    n = gather(e, scn, &sh, &v);
    if (n < 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_tmp);
    for (long i = 0; i < n; i++)
        if (i == 0 || v[i].addr != v[i - 1].addr)
            names_len += strlen(v[i].name) + 1;
    t->v = malloc(((size_t)n ? (size_t)n : 1) * sizeof *t->v);
    t->names = malloc(names_len ? names_len : 1);
    if (!t->v || !t->names) {
        free(v);
        elf_symtab_free(t);
        return -1;
    }
    names_len = 0;
    for (long i = 0; i < n; i++) {
        size_t len;
        if (i > 0 && v[i].addr == v[i - 1].addr) continue;   /* alias */
        if (names_len > UINT32_MAX) break;
        /* "memcpy@@GLIBC_2.14": the version is not part of the name. */
        len = strcspn(v[i].name, "@");
        memcpy(t->names + names_len, v[i].name, len);
        t->names[names_len + len++] = '\0';
        t->v[w].addr = v[i].addr;
        t->v[w].size = v[i].size;
        t->v[w].name = (uint32_t)names_len;
        names_len += len;
        w++;
    }
    t->n = w;
    t->names_len = names_len;
    free(v);
    return 0;
}

long elf_symtab_floor(const struct elf_symtab *t, uint64_t vaddr)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {                    /* first entry with addr > vaddr */
        size_t mid = lo + (hi - lo) / 2;
        if (t->v[mid].addr <= vaddr) lo = mid + 1;
        else hi = mid;
    }
    return (long)lo - 1;
}

long elf_symtab_containing(const struct elf_symtab *t, long i, uint64_t vaddr)
{
    for (int k = 0; i >= 0 && k < SYMTAB_BACKSCAN; k++, i--) {
        const struct elf_sym *s = &t->v[i];
        if (s->size && vaddr - s->addr < s->size)
            return i;
    }
    return -1;
}

void elf_symtab_free(struct elf_symtab *t)
{
    free(t->v);
    free(t->names);
    memset(t, 0, sizeof *t);
}
