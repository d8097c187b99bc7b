/*
 * remote_mem.c - reads of the target's memory through process_vm_readv.
 *
 * Invariants: nothing here writes to the target; a read either fills the
 * whole buffer or reports failure; counters say how often the kernel was
 * asked, so --stats can show the cost of decoding.
 */
#include "remote_mem.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

void remote_mem_init(struct remote_mem *m, pid_t pid)
{
    memset(m, 0, sizeof(*m));
    m->pid = pid;
}

ssize_t remote_read_upto(struct remote_mem *m, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (addr + len < addr) {            /* wraps: cannot be mapped */
        m->faults++;
        errno = EFAULT;
        return -1;
    }
    struct iovec local = { .iov_base = buf, .iov_len = len };
    struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
    m->reads++;
    ssize_t n = process_vm_readv(m->pid, &local, 1, &remote, 1, 0);
    if (n <= 0) {
        m->faults++;
        if (n == 0)
            errno = EFAULT;
        return -1;
    }
    m->bytes += (uint64_t)n;
    return n;
}

int remote_read(struct remote_mem *m, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    ssize_t n = remote_read_upto(m, addr, buf, len);
    if (n < 0)
        return -1;
    if ((size_t)n != len) {
        m->faults++;
        errno = EFAULT;
        return -1;
    }
    return 0;
}

#define READV_MAX 64             /* iovecs per call; far below IOV_MAX */

int remote_readv(struct remote_mem *m, struct remote_span *spans, int n)
{
    int done = 0;
    for (int i = 0; i < n; i++)
        spans[i].ok = 0;
    int i = 0;
    while (i < n) {
        struct iovec local[READV_MAX], remote[READV_MAX];
        int k = 0;
        size_t total = 0;
        for (; k < READV_MAX && i + k < n; k++) {
            struct remote_span *sp = &spans[i + k];
            if (sp->addr + sp->len < sp->addr)
                break;          /* wraps: handled alone below */
            local[k] = (struct iovec){ sp->buf, sp->len };
            remote[k] = (struct iovec){ (void *)(uintptr_t)sp->addr, sp->len };
            total += sp->len;
        }
        if (k == 0) {           /* a wrapping span: never readable */
            m->faults++;
            i++;
            continue;
        }
        m->reads++;
        ssize_t got = process_vm_readv(m->pid, local, (unsigned long)k, remote,
                                       (unsigned long)k, 0);
        if (got < 0)
            got = 0;
        m->bytes += (uint64_t)got;
        /* The kernel stops at the first remote iovec it cannot read whole:
         * spans before it are complete. */
        size_t left = (size_t)got;
        int j = 0;
        for (; j < k && left >= spans[i + j].len; j++) {
            left -= spans[i + j].len;
            spans[i + j].ok = 1;
            done++;
        }
        if ((size_t)got == total) {
            i += k;
            continue;
        }
        m->faults++;
        i += j + 1;             /* skip the span that failed, go on after it */
    }
    return done;
}

ssize_t remote_read_cstr(struct remote_mem *m, uint64_t addr, char *buf, size_t cap)
{
    if (cap == 0) {
        errno = EINVAL;
        return -1;
    }
    /* Read in chunks that never cross a page boundary, so a string that
     * ends just before an unmapped page is still read. */
    size_t got = 0;
    while (got < cap - 1) {
        size_t page_left = 4096 - ((addr + got) & 4095);
        size_t want = cap - 1 - got;
        if (want > page_left)
            want = page_left;
        if (remote_read(m, addr + got, buf + got, want) < 0) {
            buf[got] = '\0';
            return -1;
        }
        char *nul = memchr(buf + got, '\0', want);
        if (nul)
            return nul - buf;
        got += want;
    }
    buf[cap - 1] = '\0';
    return (ssize_t)(cap - 1);
}
