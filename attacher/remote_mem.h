/*
 * remote_mem.h - the one checked path for reading the target's memory.
 *
 * Everything the attacher learns from the target's address space goes
 * through remote_read(): process_vm_readv, never PTRACE_PEEKDATA, never a
 * write. A read is all-or-nothing: callers never see a half-filled buffer
 * reported as success. Whatever comes back is untrusted data.
 */
#ifndef VMPROF_REMOTE_MEM_H
#define VMPROF_REMOTE_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct remote_mem {
    pid_t pid;
    uint64_t reads;             /* calls that reached the kernel */
    uint64_t bytes;             /* bytes copied */
    uint64_t faults;            /* reads that failed (unmapped, gone) */
};

void remote_mem_init(struct remote_mem *m, pid_t pid);
/* Copy len bytes at addr into buf. 0 when every byte was read, -1
 * otherwise (errno: EFAULT for unmapped memory, ESRCH when the process
 * is gone). len 0 succeeds. */
int remote_read(struct remote_mem *m, uint64_t addr, void *buf, size_t len);
/* Copy up to len bytes; stops at the first unreadable page. Returns the
 * number of bytes copied (0..len), or -1 when nothing could be read. */
ssize_t remote_read_upto(struct remote_mem *m, uint64_t addr, void *buf, size_t len);
/* One piece of a batched read. */
struct remote_span {
    uint64_t addr;
    void *buf;
    size_t len;
    int ok;                     /* out: 1 when all len bytes were read */
};

/* Read n spans with as few process_vm_readv calls as possible (one when
 * every span is readable; after a span that fails, the batch goes on
 * from the next span). Sets each span's ok. Returns how many spans were
 * read whole. */
int remote_readv(struct remote_mem *m, struct remote_span *spans, int n);

/* Read a NUL-terminated string of at most cap-1 bytes into buf (always
 * terminated). Returns its length, or -1. */
ssize_t remote_read_cstr(struct remote_mem *m, uint64_t addr, char *buf, size_t cap);

#endif
