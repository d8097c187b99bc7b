/*
 * maps.c - /proc/PID/maps text -> a sorted table of mappings.
 *
 * The text is untrusted: every line is parsed with explicit bounds, numbers
 * are checked for overflow, and a line that does not have the full shape
 * "start-end perms offset major:minor inode [path]" is skipped and counted.
 * Invariants of a parsed table: sorted by start, start < end, no two
 * mappings overlap (of overlapping lines the earlier-starting one wins),
 * every path is a NUL-terminated heap string ("" for anonymous). Paths keep
 * everything after the inode column except the padding: spaces inside the
 * path and a trailing " (deleted)" are preserved.
 */
#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A maps file larger than this is not a maps file we want to parse. */
#define MAPS_MAX_BYTES (256u << 20)

struct cursor { const char *p, *end; };

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse 1..16 hex digits (a maps field never has more) into *v. */
static int take_hex(struct cursor *c, uint64_t *v)
{
    uint64_t x = 0;
    int n = 0, d;
    while (c->p < c->end && (d = hexval(*c->p)) >= 0) {
        if (++n > 16) return -1;
        x = (x << 4) | (uint64_t)d;
        c->p++;
    }
    if (n == 0) return -1;
    *v = x;
    return 0;
}

static int take_dec(struct cursor *c, uint64_t *v)
{
    uint64_t x = 0;
    int n = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (x > (UINT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
        n++;
        c->p++;
    }
    if (n == 0) return -1;
    *v = x;
    return 0;
}

static int take_char(struct cursor *c, char ch)
{
    if (c->p >= c->end || *c->p != ch) return -1;
    c->p++;
    return 0;
}

/* At least one blank. */
static int take_blanks(struct cursor *c)
{
    const char *s = c->p;
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
    return c->p > s ? 0 : -1;
}

static int take_perms(struct cursor *c, uint32_t *prot)
{
    static const char want[3] = { 'r', 'w', 'x' };
    uint32_t bits = 0;
    if (c->end - c->p < 4) return -1;
    for (int i = 0; i < 3; i++) {
        if (c->p[i] == want[i]) bits |= 1u << i;
        else if (c->p[i] != '-') return -1;
    }
    if (c->p[3] != 'p' && c->p[3] != 's') return -1;
    c->p += 4;
    *prot = bits;   /* SYM_PROT_R/W/X are bits 0/1/2 in r, w, x order */
    return 0;
}

/* Parse one line [p, end) (no newline) into *out; path is malloc'd. */
static int parse_line(const char *p, const char *end, struct sym_mapping *out)
{
    struct cursor c = { p, end };
    uint64_t maj, min;
    memset(out, 0, sizeof *out);
    if (take_hex(&c, &out->start) || take_char(&c, '-') || take_hex(&c, &out->end) ||
        take_blanks(&c) || take_perms(&c, &out->prot) || take_blanks(&c) ||
        take_hex(&c, &out->offset) || take_blanks(&c) ||
        take_hex(&c, &maj) || take_char(&c, ':') || take_hex(&c, &min) ||
        take_blanks(&c) || take_dec(&c, &out->inode))
        return -1;
    if (out->start >= out->end || maj > UINT32_MAX || min > UINT32_MAX)
        return -1;
    out->dev_major = (uint32_t)maj;
    out->dev_minor = (uint32_t)min;
    if (c.p < c.end && take_blanks(&c))
        return -1;                       /* junk glued to the inode */
    const char *pe = c.end;   /* the path runs to the end of the line */
    /* A path with an embedded NUL cannot be opened: reject the line. */
    if (memchr(c.p, '\0', (size_t)(pe - c.p)))
        return -1;
    out->path = strndup(c.p, (size_t)(pe - c.p));
    return out->path ? 0 : -2;
}

static int cmp_start(const void *a, const void *b)
{
    const struct sym_mapping *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return 0;
}

/* Sort, then drop every mapping that overlaps an earlier one. */
static void sort_and_dedupe(struct sym_maps *m, size_t *bad)
{
    size_t w = 0;
    if (m->n > 1) qsort(m->v, m->n, sizeof m->v[0], cmp_start);
    for (size_t i = 0; i < m->n; i++) {
        if (w > 0 && m->v[i].start < m->v[w - 1].end) {
            free(m->v[i].path);
            (*bad)++;
            continue;
        }
        m->v[w++] = m->v[i];
    }
    m->n = w;
}

int sym_maps_parse(struct sym_maps *m, const char *text, size_t len, size_t *bad_lines)
{
    size_t cap = 0, bad = 0;
    const char *p = text, *end = text + len;
    m->v = NULL;
    m->n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p) {
            struct sym_mapping mp;
            int rc = parse_line(p, le, &mp);
            if (rc == -2) goto nomem;
            if (rc < 0) {
                bad++;
            } else {
                if (m->n == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    struct sym_mapping *nv = realloc(m->v, ncap * sizeof *nv);
                    if (!nv) { free(mp.path); goto nomem; }
                    m->v = nv;
                    cap = ncap;
                }
                m->v[m->n++] = mp;
            }
        }
        p = nl ? nl + 1 : end;
    }
    sort_and_dedupe(m, &bad);
    if (bad_lines) *bad_lines = bad;
    return 0;
nomem:
    sym_maps_free(m);
    errno = ENOMEM;
    return -1;
}

int sym_maps_load(struct sym_maps *m, pid_t pid)
{
    char path[64];
    size_t cap = 1 << 16, len = 0;
    char *buf = NULL;
    int fd, rc = -1, saved;
    m->v = NULL;
    m->n = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    buf = malloc(cap);
    if (!buf) { errno = ENOMEM; goto out; }
    for (;;) {
        if (len == cap) {
            char *nb;
            if (cap >= MAPS_MAX_BYTES) { errno = EFBIG; goto out; }
            nb = realloc(buf, cap * 2);
            if (!nb) { errno = ENOMEM; goto out; }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0) {
            if (errno == EINTR) continue;
            goto out;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    rc = sym_maps_parse(m, buf, len, NULL);
out:
    saved = errno;
    free(buf);
    close(fd);
    errno = saved;
    return rc;
}

const struct sym_mapping *sym_maps_find(const struct sym_maps *m, uint64_t addr)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {                    /* first mapping with end > addr */
        size_t mid = lo + (hi - lo) / 2;
        if (m->v[mid].end <= addr) lo = mid + 1;
        else hi = mid;
    }
    if (lo < m->n && m->v[lo].start <= addr)
        return &m->v[lo];
    return NULL;
}

void sym_maps_free(struct sym_maps *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->n = 0;
}
