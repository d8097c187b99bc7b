/*
 * vmprof_reader.c - parses a vmprof log held in memory (API: vmprof_reader.h).
 *
 * Semantics follow vmprof's reader.py (0.6.0) where it is defined and the
 * 2015 reader for legacy logs:
 *   - word size from where the 3 sits in the static header; 4-byte words
 *     with a 5th header word of 1 mean 8-byte addresses (Windows 64).
 *     Counts, depths and string lengths are words; frames, thread ids, RSS
 *     and name ids are addresses; times are always 8 bytes.
 *   - HEADER (0x05): big-endian version; mode byte from version 4; before
 *     that MEMORY means version 3. Interpreter "pypy" means RPYTHON pairs.
 *   - legacy 0x04 record: interpreter name only, version 0, plain words.
 *   - STACKTRACE: thread id from version 1, RSS with MEMORY, a nanosecond
 *     time from version 7. LINES: (line, id) pairs, line first; a lone
 *     last line word is ignored (vmprof keeps it as a line of no frame).
 *     RPYTHON: (kind, value) pairs, depth must be even; the kind is kept.
 *   - TRAILER: end time from version 5; legacy logs put a memory map after
 *     it, counted in trailing_bytes and otherwise ignored.
 *   - An id named twice: a VIRTUAL_IP name beats a NATIVE_SYMBOLS one
 *     (vmprof 0.4 dumps "<native symbol 0x..>" placeholders for Python
 *     code ids too), otherwise the first record wins.
 *
 * Invariants: the cursor never passes len; a record changes the profile
 * only once all of it has been read (frames are written past n_frames and
 * committed with the sample), so a cut record leaves no trace.
 */
#include "vmprof_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VMR_MAX_VERSION 7
#define VMR_MAX_DEPTH 65536

enum rec { REC_OK, REC_SHORT, REC_BAD, REC_END, REC_NOMEM };

struct cur {
    const uint8_t *b;
    size_t len, pos;
    unsigned ws, as;        /* word and address size */
};

struct raw_name {
    uint64_t id;
    size_t off;             /* into the arena */
    size_t seq;
    int native;
};

struct raw_meta {
    size_t key, value;      /* arena offsets */
};

/* Parse state around the profile being built. */
struct st {
    struct vmprof_profile *p;
    struct cur c;
    int seen_header;
    int memory, lines, rpython;
    size_t cap_samples, cap_frames;
    char *arena;
    size_t arena_len, arena_cap;
    struct raw_name *rn;
    size_t n_rn, cap_rn;
    struct raw_meta *rm;
    size_t n_rm, cap_rm;
};

/* ---- bounded input ---------------------------------------------------- */

static uint64_t le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    while (n--)
        v = (v << 8) | p[n];
    return v;
}

static int need(const struct cur *c, size_t n)
{
    return c->len - c->pos >= n;
}

static const uint8_t *take(struct cur *c, size_t n)
{
    const uint8_t *p;
    if (!need(c, n))
        return NULL;
    p = c->b + c->pos;
    c->pos += n;
    return p;
}

/* A signed word (count, depth, length), sign-extended from 4 bytes. */
static int rd_word(struct cur *c, int64_t *v)
{
    const uint8_t *p = take(c, c->ws);
    if (!p)
        return -1;
    *v = c->ws == 8 ? (int64_t)le(p, 8) : (int64_t)(int32_t)le(p, 4);
    return 0;
}

static int rd_addr(struct cur *c, uint64_t *v)
{
    const uint8_t *p = take(c, c->as);
    if (!p)
        return -1;
    *v = le(p, c->as);
    return 0;
}

/* ---- growth ------------------------------------------------------------ */

static int grow(void *arrp, size_t *cap, size_t want, size_t elem)
{
    void **arr = arrp;
    size_t n = *cap ? *cap : 64;
    void *q;

    if (want <= *cap)
        return 0;
    while (n < want) {
        if (n > SIZE_MAX / 2)
            return -1;
        n *= 2;
    }
    if (n > SIZE_MAX / elem || !(q = realloc(*arr, n * elem)))
        return -1;
    *arr = q;
    *cap = n;
    return 0;
}

/* Copies a string into the arena (NUL bytes become '?'); -1 on ENOMEM. */
static int arena_put(struct st *s, const uint8_t *src, size_t n, size_t *off)
{
    size_t cap = s->arena_cap;

    if (n >= SIZE_MAX - s->arena_len ||
        grow(&s->arena, &cap, s->arena_len + n + 1, 1) < 0)
        return -1;
    s->arena_cap = cap;
    *off = s->arena_len;
    for (size_t i = 0; i < n; i++)
        s->arena[s->arena_len + i] = src[i] ? (char)src[i] : '?';
    s->arena[s->arena_len + n] = '\0';
    s->arena_len += n + 1;
    return 0;
}

/* Frame arrays hold at least `want` entries (lines/kinds only if used). */
static int ensure_frames(struct st *s, size_t want)
{
    struct vmprof_profile *p = s->p;
    size_t old = s->cap_frames, cap = old;
    void *q;

    if (want <= old)
        return 0;
    if (grow(&p->frame_ids, &cap, want, sizeof *p->frame_ids) < 0)
        return -1;
    s->cap_frames = cap;
    if (p->frame_lines) {
        if (!(q = realloc(p->frame_lines, cap * sizeof *p->frame_lines)))
            return -1;
        p->frame_lines = q;
        memset(p->frame_lines + old, 0, (cap - old) * sizeof *p->frame_lines);
    }
    if (p->frame_kinds) {
        if (!(q = realloc(p->frame_kinds, cap)))
            return -1;
        p->frame_kinds = q;
        memset(p->frame_kinds + old, 0, cap - old);
    }
    return 0;
}

/* ---- records ------------------------------------------------------------ */

static void set_detail(struct vmprof_profile *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->end_detail, sizeof p->end_detail, fmt, ap);
    va_end(ap);
}

static void apply_mode(struct st *s)
{
    struct vmprof_profile *p = s->p;

    s->memory = (p->mode & VMPROF_MODE_MEMORY) != 0;
    s->lines = (p->mode & VMPROF_MODE_LINES) != 0;
    s->rpython = (p->mode & VMPROF_MODE_RPYTHON) != 0;
}

static enum rec rec_header(struct st *s)
{
    struct vmprof_profile *p = s->p;
    const uint8_t *v, *m = NULL, *l, *name;
    int version;

    if (!(v = take(&s->c, 2)))
        return REC_SHORT;
    version = (int16_t)(uint16_t)((v[0] << 8) | v[1]);
    if (version >= 4 && !(m = take(&s->c, 1)))
        return REC_SHORT;
    if (!(l = take(&s->c, 1)) || !(name = take(&s->c, *l)))
        return REC_SHORT;
    if (s->seen_header) {
        set_detail(p, "a second header record");
        return REC_BAD;
    }
    if (version < 0 || version > VMR_MAX_VERSION) {
        set_detail(p, "format version %d, this reader knows 0-%d: update "
                   "vmprof-report", version, VMR_MAX_VERSION);
        return REC_BAD;
    }
    s->seen_header = 1;
    p->version = version;
    p->mode = m ? *m : (version == 3 ? VMPROF_MODE_MEMORY : 0);
    memcpy(p->interp, name, *l);
    p->interp[*l] = '\0';
    if (strcmp(p->interp, "pypy") == 0)     /* as vmprof: whatever the mode */
        p->mode |= VMPROF_MODE_RPYTHON;
    apply_mode(s);
    return REC_OK;
}

static enum rec rec_legacy_name(struct st *s)
{
    const uint8_t *l, *name;

    if (!(l = take(&s->c, 1)) || !(name = take(&s->c, *l)))
        return REC_SHORT;
    if (s->seen_header) {
        set_detail(s->p, "interpreter name record after a header");
        return REC_BAD;
    }
    s->seen_header = 1;
    s->p->legacy_name = 1;
    memcpy(s->p->interp, name, *l);
    s->p->interp[*l] = '\0';
    return REC_OK;
}

static enum rec rd_time(struct cur *c, struct vmr_time *t)
{
    const uint8_t *b = take(c, 24);
    if (!b)
        return REC_SHORT;
    t->sec = (int64_t)le(b, 8);
    t->usec = (int64_t)le(b + 8, 8);
    return REC_OK;
}

/* A length-prefixed string: REC_SHORT if it runs past the end. */
static enum rec rd_string(struct cur *c, const uint8_t **str, size_t *n)
{
    int64_t l;

    if (rd_word(c, &l) < 0)
        return REC_SHORT;
    if (l < 0)
        return REC_BAD;
    if (!(*str = take(c, (size_t)l)))
        return REC_SHORT;
    *n = (size_t)l;
    return REC_OK;
}

static enum rec rec_meta(struct st *s)
{
    const uint8_t *k, *v;
    size_t kl, vl;
    enum rec r;
    struct raw_meta m;

    if ((r = rd_string(&s->c, &k, &kl)) != REC_OK ||
        (r = rd_string(&s->c, &v, &vl)) != REC_OK) {
        if (r == REC_BAD)
            set_detail(s->p, "negative string length");
        return r;
    }
    for (size_t i = 0; i < s->n_rm; i++) {
        const char *old = s->arena + s->rm[i].key;
        if (strlen(old) == kl && memcmp(old, k, kl) == 0) {
            s->p->dup_meta++;
            return REC_OK;
        }
    }
    if (grow(&s->rm, &s->cap_rm, s->n_rm + 1, sizeof *s->rm) < 0 ||
        arena_put(s, k, kl, &m.key) < 0 || arena_put(s, v, vl, &m.value) < 0)
        return REC_NOMEM;
    s->rm[s->n_rm++] = m;
    return REC_OK;
}

static enum rec rec_name(struct st *s, int native)
{
    uint64_t id;
    const uint8_t *str;
    size_t n;
    enum rec r;
    struct raw_name rn;

    if (rd_addr(&s->c, &id) < 0)
        return REC_SHORT;
    if ((r = rd_string(&s->c, &str, &n)) != REC_OK) {
        if (r == REC_BAD)
            set_detail(s->p, "negative name length");
        return r;
    }
    rn.id = id;
    rn.seq = s->n_rn;
    rn.native = native;
    if (grow(&s->rn, &s->cap_rn, s->n_rn + 1, sizeof *s->rn) < 0 ||
        arena_put(s, str, n, &rn.off) < 0)
        return REC_NOMEM;
    s->rn[s->n_rn++] = rn;
    return REC_OK;
}

/* Decodes `depth` words at w into frames from index at; returns the
 * number of frames. Room for depth frames is already there. */
static uint32_t decode_frames(struct st *s, const uint8_t *w, size_t depth,
                              size_t at)
{
    struct vmprof_profile *p = s->p;
    unsigned as = s->c.as;
    uint32_t nf = 0;

    if (s->rpython) {
        for (size_t i = 0; i + 1 < depth; i += 2, nf++) {
            uint64_t kind = le(w + i * as, as);
            p->frame_ids[at + nf] = le(w + (i + 1) * as, as);
            p->frame_kinds[at + nf] = kind > 255 ? 255 : (uint8_t)kind;
        }
    } else if (s->lines) {
        for (size_t i = 0; i + 1 < depth; i += 2, nf++) {
            p->frame_lines[at + nf] = (int64_t)le(w + i * as, as);
            p->frame_ids[at + nf] = le(w + (i + 1) * as, as);
        }
    } else {
        for (size_t i = 0; i < depth; i++, nf++)
            p->frame_ids[at + nf] = le(w + i * as, as);
    }
    return nf;
}

static enum rec rec_stack(struct st *s)
{
    struct vmprof_profile *p = s->p;
    struct cur *c = &s->c;
    int64_t count, depth;
    const uint8_t *w;
    struct vmr_sample smp = {0};

    if (rd_word(c, &count) < 0 || rd_word(c, &depth) < 0)
        return REC_SHORT;
    if (count != 1 || depth < 0 || depth > VMR_MAX_DEPTH ||
        (s->rpython && (depth & 1))) {
        set_detail(p, "stack record with count %lld, depth %lld",
                   (long long)count, (long long)depth);
        return REC_BAD;
    }
    if (!(w = take(c, (size_t)depth * c->as)))
        return REC_SHORT;
    if (p->version >= 1 && rd_addr(c, &smp.tid) < 0)
        return REC_SHORT;
    if (s->memory && rd_addr(c, &smp.rss_kb) < 0)
        return REC_SHORT;
    if (p->version >= 7) {
        const uint8_t *t = take(c, 8);
        if (!t)
            return REC_SHORT;
        smp.time_ns = (int64_t)le(t, 8);
    }
    if (ensure_frames(s, p->n_frames + (size_t)depth) < 0 ||
        grow(&p->samples, &s->cap_samples, p->n_samples + 1,
             sizeof *p->samples) < 0)
        return REC_NOMEM;
    if (s->lines && !s->rpython && !p->frame_lines &&
        !(p->frame_lines = calloc(s->cap_frames, sizeof *p->frame_lines)))
        return REC_NOMEM;
    if (s->rpython && !p->frame_kinds &&
        !(p->frame_kinds = calloc(s->cap_frames, 1)))
        return REC_NOMEM;
    smp.first = p->n_frames;
    smp.depth = decode_frames(s, w, (size_t)depth, p->n_frames);
    p->n_frames += smp.depth;
    p->samples[p->n_samples++] = smp;
    return REC_OK;
}

static enum rec rec_trailer(struct st *s)
{
    struct vmprof_profile *p = s->p;

    if (p->version >= 5) {
        if (rd_time(&s->c, &p->end_time) != REC_OK)
            return REC_SHORT;
        p->has_end = 1;
    }
    return REC_END;
}

static enum rec one_record(struct st *s, uint8_t marker)
{
    switch (marker) {
    case 0x01: return rec_stack(s);
    case 0x02: return rec_name(s, 0);
    case 0x03: return rec_trailer(s);
    case 0x04: return rec_legacy_name(s);
    case 0x05: return rec_header(s);
    case 0x06: {
        enum rec r = rd_time(&s->c, &s->p->start_time);
        if (r == REC_OK)
            s->p->has_start = 1;
        return r;
    }
    case 0x07: return rec_meta(s);
    case 0x08: return rec_name(s, 1);
    default:
        set_detail(s->p, "unknown record marker 0x%02x", marker);
        return REC_BAD;
    }
}

/* ---- whole log ----------------------------------------------------------- */

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Static header: word size, period. -1 (err set) if not a vmprof log. */
static int static_header(struct st *s, char *err, size_t errlen)
{
    const uint8_t *b = s->c.b;
    size_t len = s->c.len;
    unsigned ws;

    if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        errf(err, errlen, "gzip-compressed log: gunzip it first");
        return -1;
    }
    if (len >= 8 && b[4] == 3 && le(b, 4) == 0 && le(b + 4, 4) == 3)
        ws = 4;
    else if (len >= 16 && le(b, 8) == 0 && le(b + 8, 8) == 3)
        ws = 8;
    else if (len >= 16 && (b[7] == 3 || b[15] == 3)) {
        errf(err, errlen, "big-endian vmprof log: not supported (vmprof's "
             "reader refuses them too)");
        return -1;
    } else {
        if (len < 16)
            errf(err, errlen, "file too short (%zu bytes) to be a vmprof log: "
                 "was the profiler stopped before it wrote anything?", len);
        else
            errf(err, errlen, "not a vmprof log (it does not start with the "
                 "words 0, 3): pass a file written by vmprof or vmprof-attach");
        return -1;
    }
    if (len < 5 * (size_t)ws || le(b + 2 * ws, ws) != 0) {
        errf(err, errlen, "vmprof header cut short or malformed (%zu bytes): "
             "not a usable vmprof log", len);
        return -1;
    }
    s->c.ws = s->c.as = ws;
    s->p->word_size = ws;
    s->p->period_usec = le(b + 3 * ws, ws);
    if (ws == 4 && le(b + 4 * ws, ws) == 1)
        s->c.as = 8;              /* Windows 64-bit */
    s->p->addr_size = s->c.as;
    s->c.pos = 5 * (size_t)ws;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    const struct raw_name *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->native != y->native)
        return x->native - y->native;   /* VIRTUAL_IP first */
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Moves names and meta out of the parse state, resolving arena offsets. */
static int finish(struct st *s)
{
    struct vmprof_profile *p = s->p;

    if (s->n_rn)
        qsort(s->rn, s->n_rn, sizeof *s->rn, cmp_name);
    if (s->n_rn && !(p->names = calloc(s->n_rn, sizeof *p->names)))
        return -1;
    for (size_t i = 0; i < s->n_rn; i++) {
        if (p->n_names && p->names[p->n_names - 1].id == s->rn[i].id)
            continue;
        p->names[p->n_names].id = s->rn[i].id;
        p->names[p->n_names].name = s->arena + s->rn[i].off;
        p->names[p->n_names].native = s->rn[i].native;
        p->n_names++;
    }
    if (s->n_rm && !(p->meta = calloc(s->n_rm, sizeof *p->meta)))
        return -1;
    for (size_t i = 0; i < s->n_rm; i++) {
        p->meta[i].key = s->arena + s->rm[i].key;
        p->meta[i].value = s->arena + s->rm[i].value;
    }
    p->n_meta = s->n_rm;
    return 0;
}

/* What vmr_parse hands out: the profile first (vmr_free casts back), and
 * the arena its strings point into. */
struct owned {
    struct vmprof_profile p;
    char *arena;
};

static void records(struct st *s)
{
    struct vmprof_profile *p = s->p;

    for (;;) {
        size_t at = s->c.pos;
        const uint8_t *m = take(&s->c, 1);
        enum rec r;

        if (!m) {
            p->stop = VMR_END_EOF;
            set_detail(p, "no trailer: the writer did not finish");
            p->end_offset = at;
            return;
        }
        r = one_record(s, *m);
        if (r == REC_OK)
            continue;
        p->end_offset = r == REC_END ? s->c.pos : at;
        if (r == REC_END) {
            p->stop = VMR_END_TRAILER;
            p->trailing_bytes = s->c.len - s->c.pos;
        } else if (r == REC_SHORT) {
            p->stop = VMR_END_TRUNCATED;
            set_detail(p, "last record (marker 0x%02x at byte %zu) cut off",
                       *m, at);
        } else {
            size_t dl;
            /* Out of memory also stops here: what was read stays usable. */
            p->stop = VMR_END_CORRUPT;
            if (r == REC_NOMEM)
                set_detail(p, "out of memory");
            dl = strlen(p->end_detail);
            snprintf(p->end_detail + dl, sizeof p->end_detail - dl,
                     " at byte %zu", at);
        }
        return;
    }
}

int vmr_parse(struct vmprof_profile **out, const void *buf, size_t len,
              char *err, size_t errlen)
{
    struct owned *o;
    struct st s;

    if (!out)
        return -1;
    *out = NULL;
    if (!buf && len) {
        errf(err, errlen, "no buffer");
        return -1;
    }
    if (!(o = calloc(1, sizeof *o))) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    memset(&s, 0, sizeof s);
    s.p = &o->p;
    s.c.b = buf;
    s.c.len = len;
    if (static_header(&s, err, errlen) < 0) {
        free(o);
        return -1;
    }
    records(&s);
    if (o->p.stop == VMR_END_CORRUPT &&
        o->p.end_offset == 5 * (size_t)o->p.word_size) {
        /* Not one record makes sense: this is not a log we can read. */
        errf(err, errlen, "unreadable vmprof log: %s", o->p.end_detail);
        free(s.arena);
        free(s.rn);
        free(s.rm);
        vmr_free(&o->p);
        return -1;
    }
    if (finish(&s) < 0) {
        o->arena = s.arena;
        vmr_free(&o->p);
        free(s.rn);
        free(s.rm);
        errf(err, errlen, "out of memory");
        return -1;
    }
    o->arena = s.arena;
    free(s.rn);
    free(s.rm);
    *out = &o->p;
    return 0;
}

void vmr_free(struct vmprof_profile *p)
{
    struct owned *o = (struct owned *)p;   /* p is o's first member */

    if (!p)
        return;
    free(o->arena);
    free(p->meta);
    free(p->samples);
    free(p->frame_ids);
    free(p->frame_lines);
    free(p->frame_kinds);
    free(p->names);
    free(o);
}

/* Reads all of fd into a malloc'd buffer. */
static int slurp(int fd, uint8_t **out, size_t *outlen)
{
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap), *q;
    struct stat st;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size < SIZE_MAX - 1) {
        cap = (size_t)st.st_size + 1;
        free(b);
        b = malloc(cap);
    }
    if (!b)
        return -1;
    for (;;) {
        ssize_t k;
        if (len == cap) {
            if (cap > SIZE_MAX / 2 || !(q = realloc(b, cap * 2))) {
                free(b);
                errno = ENOMEM;
                return -1;
            }
            b = q;
            cap *= 2;
        }
        k = read(fd, b + len, cap - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(b);
            errno = e;
            return -1;
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    *out = b;
    *outlen = len;
    return 0;
}

int vmr_read_file(struct vmprof_profile **out, const char *path,
                  char *err, size_t errlen)
{
    int fd, rc;
    uint8_t *b;
    size_t len;
    struct stat st;

    if (!out || !path)
        return -1;
    *out = NULL;
    fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errf(err, errlen, "cannot open (%s): check the path and read "
             "permission", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        errf(err, errlen, "is a directory: pass the log file itself");
        close(fd);
        return -1;
    }
    rc = slurp(fd, &b, &len);
    if (rc < 0)
        errf(err, errlen, "cannot read (%s): is it a regular file?",
             strerror(errno));
    if (fd != 0)
        close(fd);
    if (rc < 0)
        return -1;
    rc = vmr_parse(out, b, len, err, errlen);
    free(b);
    return rc;
}

const char *vmr_name(const struct vmprof_profile *p, uint64_t id)
{
    size_t lo = 0, hi = p ? p->n_names : 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->names[mid].id == id)
            return p->names[mid].name;
        if (p->names[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *vmr_frame_name(const struct vmprof_profile *p, uint64_t id,
                           int *jit)
{
    const char *n = vmr_name(p, id);

    if (jit)
        *jit = 0;
    if (n || !p || !p->legacy_name || (id >> 60) != 7 || !(id & 1))
        return n;
    if ((n = vmr_name(p, id - 1)) && jit)
        *jit = 1;
    return n;
}

const char *vmr_meta(const struct vmprof_profile *p, const char *key)
{
    for (size_t i = 0; p && key && i < p->n_meta; i++)
        if (strcmp(p->meta[i].key, key) == 0)
            return p->meta[i].value;
    return NULL;
}

const char *vmr_end_str(enum vmr_end e)
{
    switch (e) {
    case VMR_END_TRAILER: return "complete";
    case VMR_END_EOF: return "no trailer";
    case VMR_END_TRUNCATED: return "truncated";
    case VMR_END_CORRUPT: return "corrupt";
    }
    return "?";
}
