/*
 * registry_reader.h - finds, maps and reads a target's registry (the
 * shared memory the shim writes, target-shim/vmprof_registry_abi.h).
 *
 * Every byte of the registry is hostile: the reader validates the layout
 * once at open against the size of its own read-only mapping, re-reads
 * only the published counters afterwards, copies each record before
 * checking it, and bounds every scan. It never writes to the target.
 *
 * Use:
 *   registry_open(pid)            at attach; cheap to retry (spawn mode:
 *                                 the registry appears when the shim's
 *                                 constructor or the VM's first call runs)
 *   registry_info()               what the registry describes
 *   registry_poll_codes()         tails newly committed code records
 *   registry_thread_anchor(tid)   where a thread's shadow-stack top pointer is
 *   registry_close()
 */
#ifndef VMPROF_REGISTRY_READER_H
#define VMPROF_REGISTRY_READER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmprof_registry_abi.h"

struct registry;

/* What the registry describes (validated; fixed at open). */
struct registry_info {
    uint32_t abi_version;
    uint32_t kind;              /* VMPROF_REG_KIND_* */
    uint32_t flags;             /* VMPROF_REG_F_* (TEXT_RANGE cleared if the
                                   range was not valid) */
    uint32_t creator_pid;       /* the target's pid in its own namespace */
    uint32_t fork_generation;   /* 0 in the creator, +1 per fork copy */
    char vm_name[VMPROF_REG_VM_NAME_SIZE]; /* valid UTF-8, NUL-terminated;
                                              "" when the shim gave none */
    uint64_t vm_version;        /* Py_Version for CPython */
    uint64_t py_runtime;        /* &_PyRuntime in the target (CPython) */
    uint64_t text_lo, text_hi;  /* interpreter code [lo, hi), or 0, 0 */
    uint32_t thread_slots;
    uint64_t code_table_size;
};

struct registry_stats {
    uint64_t codes_read;        /* code records delivered by poll */
    uint64_t bad_records;       /* records skipped: invalid name, unknown kind */
    int code_table_broken;      /* a record header made the rest unreadable;
                                   polling has stopped for good */
    /* The target's own counters, as published (untrusted, informational): */
    uint64_t codes_registered;
    uint64_t codes_dropped;
    uint64_t threads_dropped;
};

/* Finds the registry of process pid (host view), maps it read-only and
 * validates it.
 *   0   *out is an open registry
 *   1   no usable registry: no shim, not created yet, or only a copy
 *       inherited from a parent (err says which when there is something
 *       to say, else "")
 *  -1   error: err names it (no such process, permission, a malformed or
 *       unsealed registry, an ABI version this attacher does not know)
 * A 1 costs a scan of /proc/PID/fd (and /proc/PID/maps): retrying a few
 * times a second is fine. */
int registry_open(pid_t pid, struct registry **out, char *err, size_t errlen);

/* The same checks on a registry image in memory (tests, fuzzing). buf
 * must be 8-byte aligned and stay valid and mapped until registry_close;
 * it is read live, so a test can append to it between polls.
 * expect_pid: 0 skips the creator check; otherwise a different creator
 * returns 1 (inherited). Returns 0, 1 or -1 as registry_open. */
int registry_open_buffer(const void *buf, size_t len, uint32_t expect_pid,
                         struct registry **out, char *err, size_t errlen);

const struct registry_info *registry_info(const struct registry *reg);

/* Tails the code table: calls fn(arg, id, name, len) for each record
 * committed since the last poll, oldest first; name is NUL-terminated,
 * valid UTF-8 without control characters, 1..VMPROF_REG_NAME_MAX bytes.
 * Malformed records are skipped and counted. At most max records per
 * call (0: no limit). Returns the number delivered. */
typedef void (*registry_code_fn)(void *arg, uint64_t id, const char *name, size_t len);
int registry_poll_codes(struct registry *reg, registry_code_fn fn, void *arg, size_t max);
/* 1 when committed records remain unread (a poll stopped at max). */
int registry_codes_pending(const struct registry *reg);

/* Address (in the target) of the shadow-stack top pointer that thread
 * tid registered; tid as the target sees it (see registry_ns_tid).
 * 0 found, 1 not registered, -1 the entry is not plausible. O(1) for a
 * thread seen before, else a scan of the slots ever used. */
int registry_thread_anchor(struct registry *reg, pid_t tid, uint64_t *top_addr);

/* The target's own id for host thread host_tid (they differ when the
 * target is in another PID namespace: last number of NSpid in
 * /proc/PID/task/TID/status). Returns host_tid when they do not differ,
 * -1 when the thread cannot be read. */
pid_t registry_ns_tid(const struct registry *reg, pid_t host_tid);
/* CPython: the shim's count of code objects freed (py_code_frees), a word
 * of the mapping that moves while the target runs: read it with an
 * acquire load. NULL when the registry does not maintain it. Valid until
 * registry_close. */
const uint64_t *registry_py_code_frees(const struct registry *reg);

void registry_stats(const struct registry *reg, struct registry_stats *st);
void registry_close(struct registry *reg);

#endif
