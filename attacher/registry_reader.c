/*
 * registry_reader.c - the reader half of the registry ABI: finds the
 * target's "vmprof-registry" memfd through /proc, maps it read-only and
 * reads it as hostile data.
 *
 * Invariants:
 *   - The layout (offsets, sizes, counts) is validated once, at open, from
 *     a private copy of the header, against the length of our own mapping;
 *     later reads use only those validated values plus the two published
 *     cursors (code_committed, thread_hwm), which are clamped again on
 *     every read. Nothing is ever read outside [base, base + len).
 *   - The mapping cannot fault: registry_open maps only memfds sealed with
 *     F_SEAL_SHRINK (the shim seals them), so the target cannot truncate
 *     the file under us.
 *   - Records are copied out of the shared mapping before being checked,
 *     so a target rewriting them concurrently cannot change what was
 *     validated. Scans are bounded by the validated table sizes and by the
 *     caller's max.
 *   - A registry whose creator_pid is not the target's own pid (in its
 *     namespace) is a copy inherited over fork/clone and is refused.
 */
#include "registry_reader.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MEMFD_LINK "/memfd:" VMPROF_REG_MEMFD_NAME " (deleted)"
#define MAX_CANDIDATES 16           /* registries tried per open */
#define MAX_FD_ENTRIES 65536        /* /proc/PID/fd entries looked at */
#define MAX_MAPS_BYTES (16u << 20)  /* /proc/PID/maps bytes read */
#define USER_ADDR_END UINT64_C(0x0000800000000000)
#define TID_CACHE 64

struct registry {
    const unsigned char *base;
    size_t len;
    int mapped;                 /* base is our mmap: unmap at close */
    pid_t pid;                  /* host pid, 0 for a buffer */
    int ns_differs;             /* the target sees other pids than we do */
    struct registry_info info;
    uint64_t thr_off;
    uint32_t thr_count;
    uint64_t code_off, code_size;
    uint64_t code_pos;          /* bytes of the code table consumed */
    struct registry_stats st;
    struct {
        pid_t tid;
        uint32_t slot;
        uint64_t seq;
    } tid_cache[TID_CACHE];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- checked text ---------------------------------------------------- */

/* ---- loads from the shared mapping ----------------------------------- */

/* Fields are 4/8-byte aligned (base is, offsets are validated): atomic
 * loads keep the compiler from tearing or re-reading them. */
static uint64_t load64(const struct registry *r, uint64_t off, int order)
{
    return __atomic_load_n((const uint64_t *)(const void *)(r->base + off), order);
}

static uint32_t load32(const struct registry *r, uint64_t off, int order)
{
    return __atomic_load_n((const uint32_t *)(const void *)(r->base + off), order);
}

/* ---- header validation ----------------------------------------------- */

/* Checks the private copy h of the header against a mapping of len bytes
 * and fills r's layout. Returns 0 or -1 (err set). */
static int check_layout(struct registry *r, const struct vmprof_reg_header *h,
                        size_t len, char *err, size_t errlen)
{
    uint64_t lim = len, thr_end, code_end, name_len;
    const char *nul;

    if (h->abi_version != VMPROF_REG_ABI_VERSION) {
        set_err(err, errlen, "registry ABI version %" PRIu32 " (this vmprof-attach reads "
                "version %u): use a shim and an attacher from the same release",
                h->abi_version, VMPROF_REG_ABI_VERSION);
        return -1;
    }
    if (h->total_size < lim)
        lim = h->total_size;
    if (h->header_size < sizeof(*h) || h->header_size % 8 || h->header_size > lim)
        goto bad;
    if (h->vm_kind > VMPROF_REG_KIND_SHADOW)
        goto bad;
    if (h->frame_size != sizeof(struct vmprof_reg_frame) ||
        h->frame_prev_off != offsetof(struct vmprof_reg_frame, prev) ||
        h->frame_id_off != offsetof(struct vmprof_reg_frame, code_id))
        goto bad;
    if (h->thread_slot_size != sizeof(struct vmprof_reg_thread_slot) ||
        h->thread_slot_count > VMPROF_REG_MAX_THREAD_SLOTS || h->thread_table_off % 8 ||
        h->thread_table_off < h->header_size || h->thread_table_off > lim ||
        (uint64_t)h->thread_slot_count * h->thread_slot_size > lim - h->thread_table_off)
        goto bad;
    if (h->code_table_off % 8 || h->code_table_off < h->header_size ||
        h->code_table_off > lim || h->code_table_size > lim - h->code_table_off)
        goto bad;
    thr_end = h->thread_table_off + (uint64_t)h->thread_slot_count * h->thread_slot_size;
    code_end = h->code_table_off + h->code_table_size;
    if (thr_end > h->code_table_off && code_end > h->thread_table_off &&
        h->thread_slot_count > 0 && h->code_table_size > 0)
        goto bad;               /* the tables overlap */
    nul = memchr(h->vm_name, '\0', sizeof h->vm_name);
    name_len = nul ? (uint64_t)(nul - h->vm_name) : sizeof h->vm_name;
    if (!nul || !vmprof_reg_text_valid(h->vm_name, name_len))
        goto bad;

    r->info.abi_version = h->abi_version;
    r->info.kind = h->vm_kind;
    r->info.flags = h->flags;
    r->info.creator_pid = h->creator_pid;
    r->info.fork_generation = h->fork_generation;
    memcpy(r->info.vm_name, h->vm_name, name_len + 1);
    r->info.vm_version = h->vm_version;
    r->info.py_runtime = h->py_runtime;
    if ((h->flags & VMPROF_REG_F_TEXT_RANGE) && h->text_lo < h->text_hi &&
        h->text_hi <= USER_ADDR_END) {
        r->info.text_lo = h->text_lo;
        r->info.text_hi = h->text_hi;
    } else {
        r->info.flags &= ~VMPROF_REG_F_TEXT_RANGE;
    }
    r->info.thread_slots = h->thread_slot_count;
    r->info.code_table_size = h->code_table_size;
    r->thr_off = h->thread_table_off;
    r->thr_count = h->thread_slot_count;
    r->code_off = h->code_table_off;
    r->code_size = h->code_table_size;
    return 0;
bad:
    set_err(err, errlen, "malformed registry (header fields out of range)");
    return -1;
}

/* Validates base[0..len) and returns a new registry: 0, 1 (inherited or
 * not yet published) or -1. */
static int parse(const void *base, size_t len, uint32_t expect_pid,
                 struct registry **out, char *err, size_t errlen)
{
    struct vmprof_reg_header h;
    struct registry *r;

    *out = NULL;
    if (!base || ((uintptr_t)base & 7u)) {
        set_err(err, errlen, "registry buffer not 8-byte aligned");
        return -1;
    }
    if (len < sizeof h) {
        set_err(err, errlen, "registry too small (%zu bytes)", len);
        return -1;
    }
    /* magic first, with acquire: it is published after everything else */
    h.magic = __atomic_load_n((const uint64_t *)base, __ATOMIC_ACQUIRE);
    if (h.magic == 0) {
        set_err(err, errlen, "registry not published yet");
        return 1;
    }
    if (h.magic != VMPROF_REG_MAGIC) {
        set_err(err, errlen, "not a vmprof registry (bad magic)");
        return -1;
    }
    memcpy((char *)&h + 8, (const char *)base + 8, sizeof h - 8);
    r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    r->base = base;
    r->len = len;
    if (check_layout(r, &h, len, err, errlen) != 0) {
        free(r);
        return -1;
    }
    if (expect_pid && h.creator_pid != expect_pid) {
        set_err(err, errlen, "registry inherited from process %" PRIu32
                " (fork without the shim's handler); ignored", h.creator_pid);
        free(r);
        return 1;
    }
    *out = r;
    return 0;
}

int registry_open_buffer(const void *buf, size_t len, uint32_t expect_pid,
                         struct registry **out, char *err, size_t errlen)
{
    set_err(err, errlen, "%s", "");
    return parse(buf, len, expect_pid, out, err, errlen);
}

/* ---- /proc ------------------------------------------------------------ */

/* Reads up to cap-1 bytes of a /proc file, NUL-terminated. Returns the
 * length or -1 (errno set). */
static ssize_t read_proc(const char *path, char *buf, size_t cap)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < cap - 1) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;

            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* The last number on the line starting with key in a status file: the
 * id in the innermost PID namespace. 0 if the line is missing, -1 if the
 * file cannot be read. */
static long status_last_id(const char *path, const char *key)
{
    char buf[4096], *line, *p, *end;
    long last = 0;

    if (read_proc(path, buf, sizeof buf) < 0)
        return -1;
    line = strstr(buf, key);
    if (!line || (line != buf && line[-1] != '\n'))
        return 0;
    p = line + strlen(key);
    for (;;) {
        long v;

        while (*p == ' ' || *p == '\t')
            p++;
        if (*p < '0' || *p > '9')
            break;
        errno = 0;
        v = strtol(p, &end, 10);
        if (errno || v <= 0 || v > INT_MAX)
            return 0;
        last = v;
        p = end;
    }
    return last;
}

/* Maps the memfd behind fd (which is consumed) read-only and parses it. */
static int map_fd(int fd, pid_t pid, uint32_t expect, struct registry **out,
                  char *err, size_t errlen)
{
    struct stat st;
    size_t len;
    void *p;
    int seals, rc;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size < (off_t)sizeof(struct vmprof_reg_header)) {
        close(fd);
        set_err(err, errlen, "registry of process %d is not a usable file", (int)pid);
        return -1;
    }
    seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(fd);
        set_err(err, errlen, "registry of process %d is not sealed against "
                "shrinking; refusing to map it", (int)pid);
        return -1;
    }
    len = (uint64_t)st.st_size > VMPROF_REG_MAX_SIZE ? (size_t)VMPROF_REG_MAX_SIZE
                                                      : (size_t)st.st_size;
    p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        set_err(err, errlen, "cannot map the registry of process %d: %s",
                (int)pid, strerror(errno));
        return -1;
    }
    rc = parse(p, len, expect, out, err, errlen);
    if (rc != 0) {
        munmap(p, len);
        return rc;
    }
    (*out)->mapped = 1;
    (*out)->pid = pid;
    return 0;
}

struct search {
    pid_t pid;
    uint32_t expect;            /* creator pid we accept */
    int tried;
    int inherited;              /* candidates refused as inherited */
    int failed;                 /* candidates refused otherwise (err set) */
    dev_t dev[MAX_CANDIDATES];
    ino_t ino[MAX_CANDIDATES];
};

/* Tries the file at path once per inode. 0 accepted, 1 not accepted. */
static int try_path(struct search *s, const char *path, struct registry **out,
                    char *err, size_t errlen)
{
    struct stat st;
    int fd, i, rc;

    if (s->tried >= MAX_CANDIDATES)
        return 1;
    /* O_NONBLOCK: the target chooses what its fd is; a FIFO named like
     * the memfd must not block us at open (and is refused below). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == EACCES || errno == EPERM) {
            s->failed++;
            set_err(err, errlen, "cannot open %s: %s (need the right to ptrace "
                    "process %d)", path, strerror(errno), (int)s->pid);
        }
        return 1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 1;
    }
    for (i = 0; i < s->tried; i++)
        if (s->dev[i] == st.st_dev && s->ino[i] == st.st_ino) {
            close(fd);
            return 1;
        }
    s->dev[s->tried] = st.st_dev;
    s->ino[s->tried] = st.st_ino;
    s->tried++;
    rc = map_fd(fd, s->pid, s->expect, out, err, errlen);
    if (rc == 0)
        return 0;
    if (rc == 1)
        s->inherited++;
    else
        s->failed++;
    return 1;
}

/* Looks through /proc/PID/fd for the memfd. 0 found, 1 not found. */
static int search_fds(struct search *s, struct registry **out, char *err, size_t errlen)
{
    char dir[64], path[96], link[128];
    struct dirent *de;
    DIR *d;
    int n = 0, rc = 1;

    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)s->pid);
    d = opendir(dir);
    if (!d)
        return 1;
    while (rc != 0 && n++ < MAX_FD_ENTRIES && (de = readdir(d)) != NULL) {
        ssize_t k;

        if (de->d_name[0] < '0' || de->d_name[0] > '9' || strlen(de->d_name) > 12)
            continue;
        snprintf(path, sizeof path, "%.40s/%.12s", dir, de->d_name);
        k = readlink(path, link, sizeof link - 1);
        if (k <= 0)
            continue;
        link[k] = '\0';
        if (strcmp(link, MEMFD_LINK) == 0)
            rc = try_path(s, path, out, err, errlen);
    }
    closedir(d);
    return rc;
}

/* The target may have closed the fd (daemons close everything): look for
 * the mapping in /proc/PID/maps and open it through map_files (this needs
 * CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE). 0 found, 1 not found. */
static int search_maps(struct search *s, struct registry **out, char *err, size_t errlen)
{
    char path[128], *buf, *line, *next;
    size_t cap = 256u << 10;
    ssize_t n;
    int rc = 1;

    snprintf(path, sizeof path, "/proc/%d/maps", (int)s->pid);
    for (;;) {                  /* grow until the whole file fits (bounded) */
        buf = malloc(cap);
        if (!buf)
            return 1;
        n = read_proc(path, buf, cap);
        if (n < 0 || (size_t)n < cap - 1 || cap >= MAX_MAPS_BYTES)
            break;
        free(buf);
        cap *= 2;
    }
    for (line = buf; n > 0 && rc != 0 && line && *line; line = next) {
        unsigned long long lo, hi;
        size_t ll;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        ll = strlen(line);
        if (ll < sizeof MEMFD_LINK || strcmp(line + ll - (sizeof MEMFD_LINK - 1), MEMFD_LINK) ||
            sscanf(line, "%llx-%llx", &lo, &hi) != 2)
            continue;
        snprintf(path, sizeof path, "/proc/%d/map_files/%llx-%llx", (int)s->pid, lo, hi);
        rc = try_path(s, path, out, err, errlen);
    }
    free(buf);
    return rc;
}

int registry_open(pid_t pid, struct registry **out, char *err, size_t errlen)
{
    struct search s;
    char path[64];
    long nspid;

    *out = NULL;
    set_err(err, errlen, "%s", "");
    memset(&s, 0, sizeof s);
    s.pid = pid;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    nspid = status_last_id(path, "NStgid:");
    if (nspid < 0) {
        if (errno == ENOENT || errno == ESRCH)
            set_err(err, errlen, "no such process: %d", (int)pid);
        else
            set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    s.expect = nspid > 0 ? (uint32_t)nspid : (uint32_t)pid;
    if (search_fds(&s, out, err, errlen) != 0 && search_maps(&s, out, err, errlen) != 0) {
        if (s.failed)
            return -1;          /* err names the last failure */
        return 1;               /* err says "inherited" or is empty */
    }
    (*out)->ns_differs = s.expect != (uint32_t)pid;
    set_err(err, errlen, "%s", "");
    return 0;
}

const struct registry_info *registry_info(const struct registry *reg)
{
    return &reg->info;
}

/* ---- code table -------------------------------------------------------- */

int registry_codes_pending(const struct registry *reg)
{
    uint64_t c = load64(reg, offsetof(struct vmprof_reg_header, code_committed),
                        __ATOMIC_ACQUIRE);

    return !reg->st.code_table_broken && c > reg->code_pos &&
           reg->code_pos + sizeof(struct vmprof_reg_code_record) <= reg->code_size;
}

int registry_poll_codes(struct registry *reg, registry_code_fn fn, void *arg, size_t max)
{
    char name[VMPROF_REG_NAME_MAX + 1];
    uint64_t committed;
    int n = 0;

    if (reg->st.code_table_broken)
        return 0;
    committed = load64(reg, offsetof(struct vmprof_reg_header, code_committed),
                       __ATOMIC_ACQUIRE);
    if (committed > reg->code_size)
        committed = reg->code_size;
    /* A record header fits before `committed` (checked first, so the
     * subtractions below cannot wrap). */
    while (reg->code_pos <= committed &&
           committed - reg->code_pos >= sizeof(struct vmprof_reg_code_record) &&
           (max == 0 || (size_t)n < max)) {
        struct vmprof_reg_code_record rec;
        const unsigned char *at = reg->base + reg->code_off + reg->code_pos;
        uint64_t size;

        memcpy(&rec, at, sizeof rec);
        if (rec.len == 0 || rec.len > VMPROF_REG_NAME_MAX) {
            reg->st.code_table_broken = 1;      /* cannot find the next record */
            reg->st.bad_records++;
            break;
        }
        size = VMPROF_REG_RECORD_SIZE(rec.len);
        if (size > committed - reg->code_pos)
            break;              /* not committed whole: wait for more */
        memcpy(name, at + sizeof rec, rec.len);
        name[rec.len] = '\0';
        reg->code_pos += size;
        if (rec.kind != VMPROF_REG_REC_CODE ||
            !vmprof_reg_text_valid(name, rec.len)) {
            reg->st.bad_records++;
            continue;
        }
        reg->st.codes_read++;
        n++;
        if (fn)
            fn(arg, rec.id, name, rec.len);
    }
    return n;
}

/* ---- thread table ------------------------------------------------------ */

struct slot_copy {
    uint32_t state, tid;
    uint64_t top, seq;
};

static void read_slot(const struct registry *r, uint32_t i, struct slot_copy *c)
{
    uint64_t off = r->thr_off + (uint64_t)i * sizeof(struct vmprof_reg_thread_slot);

    c->state = load32(r, off + offsetof(struct vmprof_reg_thread_slot, state),
                      __ATOMIC_ACQUIRE);
    c->tid = load32(r, off + offsetof(struct vmprof_reg_thread_slot, tid), __ATOMIC_RELAXED);
    c->top = load64(r, off + offsetof(struct vmprof_reg_thread_slot, top_addr),
                    __ATOMIC_RELAXED);
    c->seq = load64(r, off + offsetof(struct vmprof_reg_thread_slot, seq), __ATOMIC_RELAXED);
}

int registry_thread_anchor(struct registry *reg, pid_t tid, uint64_t *top_addr)
{
    uint32_t hwm, i, best = UINT32_MAX, h = (uint32_t)tid % TID_CACHE;
    struct slot_copy c, bc = { 0 };
    int cached = 0;

    if (tid <= 0 || reg->thr_count == 0)
        return 1;
    hwm = load32(reg, offsetof(struct vmprof_reg_header, thread_hwm), __ATOMIC_ACQUIRE);
    if (hwm > reg->thr_count)
        hwm = reg->thr_count;
    if (reg->tid_cache[h].tid == tid && reg->tid_cache[h].slot < hwm) {
        read_slot(reg, reg->tid_cache[h].slot, &c);
        if (c.state == VMPROF_REG_SLOT_PUBLISHED && c.tid == (uint32_t)tid &&
            c.seq == reg->tid_cache[h].seq) {
            best = reg->tid_cache[h].slot;
            bc = c;
            cached = 1;
        }
    }
    /* No valid cache entry: scan the slots ever used; if a tid appears
     * twice (a stale entry the shim could not clear), the newest wins. A
     * cached slot that is still published for tid with the same seq is
     * current: the shim frees a tid's old slots when it registers again. */
    for (i = 0; !cached && i < hwm; i++) {
        read_slot(reg, i, &c);
        if (c.state == VMPROF_REG_SLOT_PUBLISHED && c.tid == (uint32_t)tid &&
            (best == UINT32_MAX || c.seq > bc.seq))
            best = i, bc = c;
    }
    if (best == UINT32_MAX)
        return 1;
    if (bc.top == 0 || bc.top % 8 || bc.top >= USER_ADDR_END)
        return -1;
    reg->tid_cache[h].tid = tid;
    reg->tid_cache[h].slot = best;
    reg->tid_cache[h].seq = bc.seq;
    *top_addr = bc.top;
    return 0;
}

pid_t registry_ns_tid(const struct registry *reg, pid_t host_tid)
{
    char path[96];
    long v;

    if (!reg->ns_differs || reg->pid <= 0)
        return host_tid;
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", (int)reg->pid, (int)host_tid);
    v = status_last_id(path, "NSpid:");
    return v > 0 ? (pid_t)v : -1;
}

void registry_stats(const struct registry *reg, struct registry_stats *st)
{
    *st = reg->st;
    st->codes_registered = load64(reg, offsetof(struct vmprof_reg_header, codes_registered),
                                  __ATOMIC_RELAXED);
    st->codes_dropped = load64(reg, offsetof(struct vmprof_reg_header, codes_dropped),
                               __ATOMIC_RELAXED);
    st->threads_dropped = load64(reg, offsetof(struct vmprof_reg_header, threads_dropped),
                                 __ATOMIC_RELAXED);
}

void registry_close(struct registry *reg)
{
    if (!reg)
        return;
    if (reg->mapped)
        munmap((void *)reg->base, reg->len);
    free(reg);
}

const uint64_t *registry_py_code_frees(const struct registry *reg)
{
    if (reg->info.kind != VMPROF_REG_KIND_CPYTHON ||
        !(reg->info.flags & VMPROF_REG_F_PY_CODE_FREES))
        return NULL;
    return (const uint64_t *)(const void *)
        (reg->base + offsetof(struct vmprof_reg_header, py_code_frees));
}
