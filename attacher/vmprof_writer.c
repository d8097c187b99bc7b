/*
 * vmprof_writer.c - the vmprof log writer (format: ../shared/vmprof-format.md,
 * API and guarantees: vmprof_writer.h).
 *
 * Invariants:
 *   - buf[0..len) holds whole records only (plus the 40-byte static header
 *     before the first flush); a record is encoded in place after
 *     reserve() made room for all of it, and len moves past it only once
 *     it is complete.
 *   - The fd receives buf in one write loop per flush. If the loop fails
 *     after writing part of buf, a regular file is cut back to the last
 *     record boundary inside the written part (found by walking our own
 *     records, record_size()), so the file always ends on a whole record.
 *   - err != 0 makes every entry point fail with that errno.
 *
 * The buffer (VMW_BUF_SIZE) is larger than the largest record a caller can
 * make (a 65536-word stack is 524,321 bytes; strings are capped at
 * VMPROF_MAX_STRING), so every record fits once the buffer is flushed.
 */
#include "vmprof_writer.h"
#include "vmprof_registry_abi.h"    /* vmprof_utf8_seq: the one UTF-8 rule */

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VMW_BUF_SIZE (576u * 1024u)
#define VMW_STATIC_HEADER 40u       /* 5 words */

#define MARKER_STACKTRACE     0x01
#define MARKER_VIRTUAL_IP     0x02
#define MARKER_TRAILER        0x03
#define MARKER_HEADER         0x05
#define MARKER_TIME_N_ZONE    0x06
#define MARKER_META           0x07
#define MARKER_NATIVE_SYMBOLS 0x08

/* RPython frame kinds vmprof's reader accepts (it asserts on the others). */
#define RPY_CODE 1
#define RPY_JITTED 3
#define RPY_ASSEMBLER 6
#define RPY_NATIVE 7

struct vmprof_writer {
    int fd;
    int err;                /* sticky errno of the first write failure */
    int truncatable;        /* regular file at a known offset */
    off_t base;             /* file offset where the log starts */
    uint64_t flushed;       /* bytes of whole records on the fd */
    uint8_t mode;
    int lines;              /* (line, id) pairs */
    int rpython;            /* (kind, value) pairs */
    char **keys;            /* META keys written, for uniqueness */
    size_t n_keys;
    size_t len;             /* bytes used in buf */
    uint8_t *buf;           /* VMW_BUF_SIZE bytes */
};

/* ---- encoding helpers ------------------------------------------------ */

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static int fail_arg(int e)
{
    errno = e;
    return -1;
}

static int sticky(const struct vmprof_writer *w)
{
    if (!w)
        return fail_arg(EINVAL);
    if (w->err)
        return fail_arg(w->err);
    return 0;
}

/* ---- failure recovery --------------------------------------------------- */

/* Size of the record at p (one of ours, so well formed). */
static size_t record_size(const struct vmprof_writer *w, const uint8_t *p)
{
    switch (p[0]) {
    case MARKER_STACKTRACE:
        return 1 + 8 + 8 + 8 * (size_t)get_u64(p + 9) + 8 +
               ((w->mode & VMPROF_MODE_MEMORY) ? 8 : 0);
    case MARKER_VIRTUAL_IP:
    case MARKER_NATIVE_SYMBOLS:
        return 1 + 8 + 8 + (size_t)get_u64(p + 9);
    case MARKER_META: {
        size_t k = (size_t)get_u64(p + 1);
        return 1 + 8 + k + 8 + (size_t)get_u64(p + 9 + k);
    }
    case MARKER_HEADER:
        return 1 + 2 + 1 + 1 + p[4];
    case MARKER_TIME_N_ZONE:
    case MARKER_TRAILER:
        return 1 + 24;
    default:
        assert(!"unknown marker in own buffer");
        return 0;
    }
}

/* Largest record boundary in buf that is <= written. */
static size_t last_boundary(const struct vmprof_writer *w, size_t written)
{
    size_t at = w->flushed == 0 ? VMW_STATIC_HEADER : 0, good = 0;

    if (at > written)
        return 0;
    good = at;
    while (at < w->len) {
        size_t n = record_size(w, w->buf + at);
        if (n == 0 || at + n > written)
            break;
        at += n;
        good = at;
    }
    return good;
}

/* A write failed after `written` bytes of buf reached the fd: keep the
 * whole records, cut the rest, remember the error. */
static int fail_io(struct vmprof_writer *w, int e, size_t written)
{
    size_t keep = last_boundary(w, written);

    if (w->truncatable) {
        off_t end = w->base + (off_t)(w->flushed + keep);
        /* Best effort: if even this fails the reader still stops at the
         * cut record; the error we report is the first one. */
        if (ftruncate(w->fd, end) == 0)
            (void)lseek(w->fd, end, SEEK_SET);
    }
    w->flushed += keep;
    w->len = 0;
    w->err = e;
    errno = e;
    return -1;
}

static int flush_buf(struct vmprof_writer *w)
{
    size_t off = 0;

    while (off < w->len) {
        ssize_t k = write(w->fd, w->buf + off, w->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return fail_io(w, errno, off);
        if (k == 0)
            return fail_io(w, EIO, off);
        off += (size_t)k;
    }
    w->flushed += w->len;
    w->len = 0;
    return 0;
}

/* Room for a whole record of `need` bytes at the end of buf. */
static uint8_t *reserve(struct vmprof_writer *w, size_t need)
{
    assert(need <= VMW_BUF_SIZE);
    if (w->len + need > VMW_BUF_SIZE && flush_buf(w) < 0)
        return NULL;
    return w->buf + w->len;
}

/* ---- strings -------------------------------------------------------------- */

int vmprof_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        size_t k = u[i] ? vmprof_utf8_seq(u + i, n - i) : 0;
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* Escapes src into dst[0..cap) (see vmprof_escape_name). *complete tells
 * whether all of src fit. */
static size_t escape(char *dst, size_t cap, const char *src, int *complete)
{
    static const char ratio[] = "\xe2\x88\xb6";  /* U+2236 */
    const unsigned char *s = (const unsigned char *)(src ? src : "");
    size_t n = strlen((const char *)s), i = 0, o = 0;

    *complete = 0;
    if (cap == 0)
        return 0;
    while (i < n) {
        const char *rep = NULL;
        size_t k = vmprof_utf8_seq(s + i, n - i), in = k, out = k;

        if (s[i] == ':') {
            rep = ratio;
            out = 3;
        } else if (k == 0 || s[i] < 0x20 || s[i] == 0x7f) {
            rep = "?";
            in = out = 1;
        }
        if (o + out + 1 > cap)
            break;
        memcpy(dst + o, rep ? rep : (const char *)s + i, out);
        o += out;
        i += in;
    }
    dst[o] = '\0';
    *complete = i == n;
    return o;
}

size_t vmprof_escape_name(char *dst, size_t cap, const char *src)
{
    int complete;

    return escape(dst, cap, src, &complete);
}

int vmprof_format_name(char *dst, size_t cap, const char *lang,
                       const char *name, uint32_t line, const char *file)
{
    char num[16];
    int complete, n;
    size_t o;

    if (!dst || cap == 0)
        return -1;
    o = escape(dst, cap, lang, &complete);
    if (!complete || o + 2 > cap)
        return -1;
    dst[o++] = ':';
    o += escape(dst + o, cap - o, name, &complete);
    n = snprintf(num, sizeof num, ":%u:", line);
    if (!complete || o + (size_t)n + 1 > cap)
        return -1;
    memcpy(dst + o, num, (size_t)n + 1);
    o += (size_t)n;
    o += escape(dst + o, cap - o, (file && *file) ? file : "-", &complete);
    if (!complete || o > (size_t)INT32_MAX)
        return -1;
    return (int)o;
}

/* ---- records -------------------------------------------------------------- */

static int put_time_record(struct vmprof_writer *w, uint8_t marker,
                           const struct timeval *tv)
{
    uint8_t *p = reserve(w, 25);

    if (!p)
        return -1;
    *p++ = marker;
    p = put_u64(p, (uint64_t)(int64_t)tv->tv_sec);
    p = put_u64(p, (uint64_t)(int64_t)tv->tv_usec);
    memset(p, 0, 8);                /* zone: none */
    w->len += 25;
    return 0;
}

static int put_string_record(struct vmprof_writer *w, uint8_t marker,
                             uint64_t id, const char *name)
{
    size_t n;
    uint8_t *p;

    if (sticky(w) < 0)
        return -1;
    if (!name || id == 0 || (id >> 63))
        return fail_arg(EINVAL);
    n = strlen(name);
    if (n > VMPROF_MAX_STRING)
        return fail_arg(E2BIG);
    if (!vmprof_utf8_valid(name, n))
        return fail_arg(EILSEQ);
    if (!(p = reserve(w, 17 + n)))
        return -1;
    *p++ = marker;
    p = put_u64(p, id);
    p = put_u64(p, n);
    put_bytes(p, name, n);
    w->len += 17 + n;
    return 0;
}

static void writer_free(struct vmprof_writer *w)
{
    for (size_t i = 0; i < w->n_keys; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->buf);
    free(w);
}

static int now(struct timeval *tv)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

int vmw_open_at(struct vmprof_writer **out, int fd,
                const struct vmprof_writer_opts *o,
                const struct timeval *start)
{
    const char *name;
    size_t nl;
    struct vmprof_writer *w;
    struct stat st;
    uint8_t *p;

    if (!out)
        return fail_arg(EINVAL);
    *out = NULL;
    if (!o || !start || fd < 0 || (o->mode_flags & ~0x1fu))
        return fail_arg(EINVAL);
    name = o->interp_name ? o->interp_name : "native";
    nl = strlen(name);
    if (nl == 0 || nl > 255 || !vmprof_utf8_valid(name, nl))
        return fail_arg(EINVAL);
    if ((o->mode_flags & VMPROF_MODE_LINES) &&
        ((o->mode_flags & VMPROF_MODE_RPYTHON) || strcmp(name, "pypy") == 0))
        return fail_arg(EINVAL);    /* vmprof's reader would drop the lines */

    w = calloc(1, sizeof *w);
    if (!w || !(w->buf = malloc(VMW_BUF_SIZE))) {
        free(w);
        return fail_arg(ENOMEM);
    }
    w->fd = fd;
    w->mode = o->mode_flags;
    w->lines = (w->mode & VMPROF_MODE_LINES) != 0;
    w->rpython = (w->mode & VMPROF_MODE_RPYTHON) || strcmp(name, "pypy") == 0;
    w->base = lseek(fd, 0, SEEK_CUR);
    w->truncatable = w->base >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);

    p = w->buf;                     /* static header: 0, 3, 0, period, 0 */
    p = put_u64(p, 0);
    p = put_u64(p, 3);
    p = put_u64(p, 0);
    p = put_u64(p, o->period_usec);
    p = put_u64(p, 0);
    *p++ = MARKER_HEADER;           /* version, big-endian */
    *p++ = (uint8_t)(VMPROF_FORMAT_VERSION >> 8);
    *p++ = (uint8_t)VMPROF_FORMAT_VERSION;
    *p++ = w->mode;
    *p++ = (uint8_t)nl;
    p = put_bytes(p, name, nl);
    w->len = (size_t)(p - w->buf);
    if (put_time_record(w, MARKER_TIME_N_ZONE, start) < 0 || flush_buf(w) < 0) {
        int e = errno;
        writer_free(w);
        return fail_arg(e);
    }
    *out = w;
    return 0;
}

int vmw_open(struct vmprof_writer **out, int fd,
             const struct vmprof_writer_opts *o)
{
    struct timeval tv;

    if (now(&tv) < 0) {
        if (out)
            *out = NULL;
        return -1;
    }
    return vmw_open_at(out, fd, o, &tv);
}

int vmw_meta(struct vmprof_writer *w, const char *key, const char *value)
{
    size_t kl, vl;
    char **keys, *copy;
    uint8_t *p;

    if (sticky(w) < 0)
        return -1;
    if (!key || !value || !*key)
        return fail_arg(EINVAL);
    kl = strlen(key);
    vl = strlen(value);
    if (kl > VMPROF_MAX_STRING || vl > VMPROF_MAX_STRING - kl)
        return fail_arg(E2BIG);
    if (!vmprof_utf8_valid(key, kl) || !vmprof_utf8_valid(value, vl))
        return fail_arg(EILSEQ);
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0)
            return fail_arg(EEXIST);
    /* META records are few and come first: a copy of the key each is fine. */
    keys = realloc(w->keys, (w->n_keys + 1) * sizeof *keys);
    if (!keys)
        return fail_arg(ENOMEM);
    w->keys = keys;
    if (!(copy = strdup(key)))
        return fail_arg(ENOMEM);
    if (!(p = reserve(w, 17 + kl + vl))) {
        free(copy);
        return -1;
    }
    *p++ = MARKER_META;
    p = put_u64(p, kl);
    p = put_bytes(p, key, kl);
    p = put_u64(p, vl);
    put_bytes(p, value, vl);
    w->len += 17 + kl + vl;
    w->keys[w->n_keys++] = copy;
    return 0;
}

/* Checks words[] against the mode's layout (see vmw_stack in the header). */
static int stack_words_ok(const struct vmprof_writer *w, const uint64_t *words,
                          size_t n)
{
    int pairs = w->lines || w->rpython;

    if (pairs && (n & 1))
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = words[i];
        if (pairs && (i & 1) == 0) {
            if (w->rpython && v != RPY_CODE && v != RPY_JITTED &&
                v != RPY_ASSEMBLER && v != RPY_NATIVE)
                return 0;
            if (w->lines && (v >> 63))
                return 0;
            continue;
        }
        if (v == 0 || (v >> 63))
            return 0;
    }
    return 1;
}

int vmw_stack(struct vmprof_writer *w, const uint64_t *words, size_t n,
              uint64_t tid, uint64_t rss_kb)
{
    int mem;
    size_t need;
    uint8_t *p;

    if (sticky(w) < 0)
        return -1;
    if ((n && !words) || n > VMPROF_MAX_DEPTH)
        return fail_arg(EINVAL);
    if (!stack_words_ok(w, words, n))
        return fail_arg(EINVAL);
    mem = (w->mode & VMPROF_MODE_MEMORY) != 0;
    need = 1 + 8 + 8 + 8 * n + 8 + (mem ? 8 : 0);
    if (!(p = reserve(w, need)))
        return -1;
    *p++ = MARKER_STACKTRACE;
    p = put_u64(p, 1);              /* count */
    p = put_u64(p, n);
    for (size_t i = 0; i < n; i++)
        p = put_u64(p, words[i]);
    p = put_u64(p, tid);
    if (mem)
        put_u64(p, rss_kb);
    w->len += need;
    return 0;
}

int vmw_virtual_ip(struct vmprof_writer *w, uint64_t id, const char *name)
{
    return put_string_record(w, MARKER_VIRTUAL_IP, id, name);
}

int vmw_native_symbol(struct vmprof_writer *w, uint64_t addr_or1,
                      const char *name)
{
    if (w && !w->err && !(addr_or1 & 1))
        return fail_arg(EINVAL);
    return put_string_record(w, MARKER_NATIVE_SYMBOLS, addr_or1, name);
}

int vmw_flush(struct vmprof_writer *w)
{
    if (sticky(w) < 0)
        return -1;
    return flush_buf(w);
}

int vmw_close_at(struct vmprof_writer *w, const struct timeval *end)
{
    int rc = -1, e;

    if (!w)
        return fail_arg(EINVAL);
    if (!end)
        e = EINVAL;                 /* still free the writer */
    else if (sticky(w) == 0 && put_time_record(w, MARKER_TRAILER, end) == 0 &&
             flush_buf(w) == 0)
        rc = 0, e = 0;
    else
        e = errno;
    writer_free(w);
    if (rc < 0)
        errno = e;
    return rc;
}

int vmw_close(struct vmprof_writer *w)
{
    struct timeval tv;

    if (now(&tv) < 0) {
        int e = errno;
        if (w)
            writer_free(w);
        return fail_arg(e);
    }
    return vmw_close_at(w, &tv);
}

int vmw_error(const struct vmprof_writer *w)
{
    return w ? w->err : EINVAL;
}

uint64_t vmw_bytes(const struct vmprof_writer *w)
{
    return w ? w->flushed + w->len : 0;
}
