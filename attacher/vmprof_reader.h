/*
 * vmprof_reader.h - reads a whole vmprof log into memory (format:
 * ../shared/vmprof-format.md; the judge is vmprof's reader.py).
 *
 * Reads every log vmprof's writers have made: 8- and 4-byte words (and
 * Windows' 4-byte words with 8-byte addresses), HEADER versions 0-7, the
 * legacy interpreter-name record (0x04) of 2015 logs and the memory map
 * text those logs carry after their trailer (ignored), MEMORY, LINES and
 * RPYTHON stacks. Little-endian logs only, as vmprof.
 *
 * Input is untrusted: every length and count is checked against the bytes
 * left, depth is capped at 65536 words, nothing is read past the buffer.
 * A log that ends early (writer killed) or carries a record the reader
 * cannot make sense of is read up to the last whole record, and `stop`
 * says why it stopped.
 */
#ifndef VMPROF_READER_H
#define VMPROF_READER_H

#include <stddef.h>
#include <stdint.h>

#include "vmprof_writer.h"    /* VMPROF_MODE_* */

enum vmr_end {
    VMR_END_TRAILER = 0,    /* complete log */
    VMR_END_EOF,            /* ended between records, no trailer */
    VMR_END_TRUNCATED,      /* the last record is cut off */
    VMR_END_CORRUPT,        /* unknown marker or impossible record */
};

/* RPython frame kinds (vmprof's VMPROF_*_TAG). */
#define VMR_KIND_CODE 1
#define VMR_KIND_BLACKHOLE 2
#define VMR_KIND_JITTED 3
#define VMR_KIND_JITTING 4
#define VMR_KIND_GC 5
#define VMR_KIND_ASSEMBLER 6
#define VMR_KIND_NATIVE 7

struct vmr_time {
    int64_t sec, usec;
};

struct vmr_meta {
    const char *key, *value;
};

struct vmr_name {
    uint64_t id;
    const char *name;       /* as in the log ("lang:name:line:file"); NUL
                               bytes inside it read as '?' */
    int native;             /* from a NATIVE_SYMBOLS record */
};

struct vmr_sample {
    size_t first;           /* index of its innermost frame in frame_* */
    uint32_t depth;         /* frames (pairs count once) */
    uint64_t tid;           /* 0 before version 1 */
    uint64_t rss_kb;        /* 0 unless MEMORY */
    int64_t time_ns;        /* version 7 only, else 0 */
};

struct vmprof_profile {
    unsigned word_size;     /* 4 or 8 */
    unsigned addr_size;     /* 4 or 8 (8 with 4-byte words: Windows 64) */
    uint64_t period_usec;
    int version;            /* HEADER version, 0 for legacy logs */
    int legacy_name;        /* name from the 0x04 record (2015 logs) */
    uint8_t mode;           /* VMPROF_MODE_* as the reader applies them */
    char interp[256];
    int has_start, has_end;
    struct vmr_time start_time, end_time;

    struct vmr_meta *meta;
    size_t n_meta;
    unsigned dup_meta;      /* repeated META keys (first one kept) */

    struct vmr_sample *samples;
    size_t n_samples;
    /* Frames of all samples, each sample's innermost first. frame_lines is
     * non-NULL when some sample had LINES (the line as written, positive;
     * 0 where none); frame_kinds when some had RPYTHON pairs. */
    uint64_t *frame_ids;
    int64_t *frame_lines;
    uint8_t *frame_kinds;
    size_t n_frames;

    struct vmr_name *names; /* sorted by id, one per id (see vmprof_reader.c
                               for which record wins a repeated id) */
    size_t n_names;

    enum vmr_end stop;      /* why reading stopped */
    size_t end_offset;      /* bytes of whole records read */
    char end_detail[96];    /* the detail, when not at the trailer */
    size_t trailing_bytes;  /* after the trailer (legacy memory map) */
};

/* Parses buf[0..len). On failure returns -1, *out = NULL and err (if
 * given) holds a one-line cause and fix. A log that merely ends early or
 * turns corrupt is a success: see p->stop. */
int vmr_parse(struct vmprof_profile **out, const void *buf, size_t len,
              char *err, size_t errlen);
/* Reads the file (path "-" is stdin) and parses it. */
int vmr_read_file(struct vmprof_profile **out, const char *path,
                  char *err, size_t errlen);
void vmr_free(struct vmprof_profile *p);

/* Name of id, NULL if the log has none. */
const char *vmr_name(const struct vmprof_profile *p, uint64_t id);
/* Name of a frame: vmr_name(), and in legacy (2015) logs the rule those
 * logs were read with: a frame in the virtual range 0x7000000000000000-
 * 0x7fffffffffffffff that is an odd id + 1 is JIT-compiled code of that id
 * (PyPy); *jit (if given) is set then. NULL if unnamed. */
const char *vmr_frame_name(const struct vmprof_profile *p, uint64_t id,
                           int *jit);
const char *vmr_meta(const struct vmprof_profile *p, const char *key);
const char *vmr_end_str(enum vmr_end e);

#endif
