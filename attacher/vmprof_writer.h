/*
 * vmprof_writer.h - writes a standard vmprof log (format version 6) to a
 * file descriptor: static header, HEADER, TIME_N_ZONE, META, STACKTRACE,
 * VIRTUAL_IP, NATIVE_SYMBOLS, TRAILER (../shared/vmprof-format.md).
 *
 * Guarantees:
 *   - Records are buffered whole (one buffer allocated at open, no
 *     allocation per record) and only whole records reach the fd.
 *   - On a write failure (ENOSPC, EFBIG, EPIPE...) a regular file is cut
 *     back to the end of its last whole record, so it stays readable; the
 *     error is remembered and every later call returns -1 with that errno
 *     (vmw_error() tells it). vmw_close() still frees the writer.
 *   - Argument errors (EINVAL, EEXIST, E2BIG, EILSEQ) are reported by the
 *     call that made them and are not remembered: the log is unchanged.
 *   - Every string written is valid UTF-8 (vmprof's reader decodes them and
 *     fails on the whole file otherwise): the writer rejects other bytes.
 *
 * Words are 8 bytes, little-endian, whatever the host.
 */
#ifndef VMPROF_WRITER_H
#define VMPROF_WRITER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define VMPROF_MODE_MEMORY    0x01  /* one RSS word (KiB) per sample */
#define VMPROF_MODE_LINES     0x02  /* (line, id) word pairs */
#define VMPROF_MODE_NATIVE    0x04  /* native frames (addr | 1) present */
#define VMPROF_MODE_RPYTHON   0x08  /* (kind, value) word pairs (PyPy) */
#define VMPROF_MODE_REAL_TIME 0x10  /* wall-clock sampling */

#define VMPROF_FORMAT_VERSION 6
#define VMPROF_MAX_DEPTH 65536      /* words per stack; vmprof rejects more */
#define VMPROF_MAX_STRING 65536     /* bytes per name / meta key+value */

struct vmprof_writer;

struct vmprof_writer_opts {
    uint64_t period_usec;           /* sampling period, static header word 4 */
    uint8_t mode_flags;             /* VMPROF_MODE_* */
    const char *interp_name;        /* <= 255 bytes; NULL means "native".
                                       "pypy" implies RPYTHON pairs (that is
                                       how vmprof's reader reads it) */
};

/* Writes the static header (5 words), the HEADER record (version 6) and
 * TIME_N_ZONE with the current wall-clock time, and flushes them, so an
 * unwritable fd fails here. On error *out is NULL and errno is set. */
int vmw_open(struct vmprof_writer **out, int fd,
             const struct vmprof_writer_opts *o);
/* The same with a fixed start time (tests, byte-exact output). */
int vmw_open_at(struct vmprof_writer **out, int fd,
                const struct vmprof_writer_opts *o,
                const struct timeval *start);

/* One META record. Keys are unique: a repeated key fails with EEXIST.
 * Key and value must be UTF-8, key non-empty, key+value <= VMPROF_MAX_STRING. */
int vmw_meta(struct vmprof_writer *w, const char *key, const char *value);

/* One STACKTRACE record. words[] innermost first, exactly as they go in
 * the record: in LINES mode (line, id) pairs, line first (write line 0 for
 * a native frame); in RPYTHON mode (kind, value) pairs. n <= VMPROF_MAX_DEPTH
 * and n even in pair modes (EINVAL otherwise). Every id (not line, not kind)
 * must be in [1, 2^63): vmprof's tree reads ids <= 0 as line numbers.
 * rss_kb is written only in MEMORY mode. */
int vmw_stack(struct vmprof_writer *w, const uint64_t *words, size_t n,
              uint64_t tid, uint64_t rss_kb);

/* Names: "lang:name:line:file", UTF-8, <= VMPROF_MAX_STRING bytes.
 * vmprof_format_name() builds one with the parts escaped. */
int vmw_virtual_ip(struct vmprof_writer *w, uint64_t id, const char *name);
/* addr_or1 must have its lowest bit set (a native frame in a stack). */
int vmw_native_symbol(struct vmprof_writer *w, uint64_t addr_or1,
                      const char *name);

int vmw_flush(struct vmprof_writer *w);
/* Writes the TRAILER (end time), flushes and frees. The fd stays open.
 * Returns -1 (errno set) if anything failed, now or earlier. */
int vmw_close(struct vmprof_writer *w);
int vmw_close_at(struct vmprof_writer *w, const struct timeval *end);

/* errno of the first write failure, 0 if none. */
int vmw_error(const struct vmprof_writer *w);
/* Bytes of whole records accepted so far (written or buffered). */
uint64_t vmw_bytes(const struct vmprof_writer *w);

/*
 * Makes a symbol or function name safe for the "lang:name:line:file"
 * field: every ':' becomes U+2236 RATIO ("∶", bytes E2 88 B6), so that
 * C++ "ns::f" shows as "ns∶∶f" and vmprof.show's split on ':' sees exactly
 * four fields; control characters (< 0x20, 0x7f) and bytes that are not
 * part of valid UTF-8 become '?'. Writes at most cap bytes including the
 * NUL, never splits a character, always NUL-terminates when cap > 0.
 * Returns the length written (without the NUL). src NULL reads as "".
 */
size_t vmprof_escape_name(char *dst, size_t cap, const char *src);

/* "lang:name:line:file" with name and file escaped as above (file NULL or
 * empty becomes "-"). Returns the length, or -1 if cap was too small (dst
 * then holds nothing useful). */
int vmprof_format_name(char *dst, size_t cap, const char *lang,
                       const char *name, uint32_t line, const char *file);

/* 1 if s[0..n) is valid UTF-8 without NUL (the writer's string check). */
int vmprof_utf8_valid(const char *s, size_t n);

#endif
