/*
 * profile.h - the log being written: stacks as they come, VM names as
 * decoders learn them, native symbols once at the end.
 *
 * Owns the vmprof writer and the set of native addresses the log uses
 * (each resolved once, by the symbols library, when the run ends or when
 * an exec replaces the image they belong to).
 */
#ifndef VMPROF_PROFILE_H
#define VMPROF_PROFILE_H

#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

#include "symbols.h"

struct profile;

struct profile_opts {
    int fd;                     /* output, opened by the caller */
    uint64_t period_usec;
    int lines, wall, native;    /* mode flags for the header */
    int memory;                 /* MEMORY flag: an RSS word with every sample */
    const char *interp;         /* "cpython", a VM's name, or "native" */
    const struct timeval *start;/* when sampling started (NULL: now) */
};

struct profile *profile_open(const struct profile_opts *o, char *err, size_t errlen);
int profile_meta(struct profile *p, const char *key, const char *value);
/* Sink for vm_decoder names (vm_name_sink). */
void profile_vm_name(void *arg, uint64_t id, const char *name);
/* Append one sample (words as merge_stack made them) `repeat` times;
 * rss_kb (the process's resident set in KiB) is written in MEMORY mode. */
int profile_add(struct profile *p, const uint64_t *words, int n, pid_t tid, int repeat,
                uint64_t rss_kb);
uint64_t profile_samples(const struct profile *p);
/* The target is about to be seen in a new image (exec): name the native
 * addresses used so far with sym (which still knows the old mappings;
 * may be NULL), and key the new image's addresses apart from them. */
void profile_new_image(struct profile *p, struct symbolizer *sym);
/* Resolve native symbols (sym may be NULL), write the trailer with the
 * time sampling ended (NULL: now), flush. Returns 0, or -1 with the write
 * error in err. Frees p. */
int profile_finish(struct profile *p, struct symbolizer *sym, const struct timeval *end,
                   char *err, size_t errlen);

#endif
