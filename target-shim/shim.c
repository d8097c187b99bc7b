/*
 * shim.c - libvmprof-shim.so: publishes, inside the target, the facts
 * vmprof-attach needs to show VM frames, in the shared-memory registry
 * (vmprof_registry_abi.h). It is preloaded (LD_PRELOAD) or linked by a VM.
 *
 * What runs, and when:
 *   - the constructor: looks up Py_Version and _PyRuntime with dlsym. In
 *     CPython it creates the registry (kind cpython) at once; anywhere else
 *     it creates nothing (no memfd, no mapping): preloading the shim into
 *     sh or ls costs one dlsym pair.
 *   - the C API (vmprof_shim.h): the first call creates the registry
 *     (kind shadow); registrations append to it.
 *   - fork: the child handler gives the child its own copy of the
 *     registry (new memfd, same address), so a child never shares its
 *     parent's; threads other than the forking one are dropped from it.
 *   - thread exit: a pthread key destructor frees the thread's slot.
 *   - CPython 3.11-3.13 only: PyCode_Type's tp_dealloc is wrapped (in the
 *     constructor, before the registry exists) so that each code object
 *     freed adds 1 to the registry's py_code_frees first. That counter is
 *     what lets the attacher trust a code address it proved once, until a
 *     code object is freed, instead of reading the object again at every
 *     sample (3.14 keeps such a counter itself). The wrap is installed
 *     only when PyCode_Type has the default build's layout (tp_name
 *     "code" where expected, tp_dealloc inside the interpreter).
 * Nothing else: no thread, timer, signal handler, per-call hook, or GIL.
 *
 * Invariants: every registry write happens under g_lock (a spinlock:
 * registrations are rare and short), which the fork handlers hold across
 * fork so the child's copy is never half-written. g_base, when not NULL,
 * maps the whole memfd (g_size bytes) read-write; the fd, when still ours,
 * is g_fd with inode g_ino. Exported symbols carry VMPROF_SHIM_EXPORT; the
 * library is built with hidden visibility, so nothing else leaks.
 */
#include "vmprof_shim.h"
#include "registry_writer.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_lock;                  /* 0 free, 1 held */
static unsigned char *g_base;       /* the mapped registry, or NULL */
static uint64_t g_size;
static int g_fd = -1;
static dev_t g_dev;                 /* identity of g_fd, checked before */
static ino_t g_ino;                 /*   closing it (the app may reuse it) */
static uint64_t g_thread_seq;

/* What the registry describes; kept here so a re-created registry (after
 * a failed fork copy) says the same. */
static uint32_t g_kind = VMPROF_REG_KIND_NONE;
static char g_name[VMPROF_REG_VM_NAME_SIZE];
static uint64_t g_version, g_runtime, g_text_lo, g_text_hi;
static int g_debug_offsets;
static int g_code_frees;            /* the tp_dealloc wrap is installed */

static __thread int t_slot = -1;    /* this thread's slot, -1 if none */
static pthread_key_t g_exit_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static int g_key_ok;

static void lock(void)
{
    while (__atomic_exchange_n(&g_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&g_lock, __ATOMIC_RELAXED))
            sched_yield();
}

static void unlock(void)
{
    __atomic_store_n(&g_lock, 0, __ATOMIC_RELEASE);
}

/* ---- the interpreter's text range ----------------------------------- */

struct text_query {
    uintptr_t addr;
    uint64_t lo, hi;
    int found;
};

/* For the object whose PT_LOAD segments hold q->addr: the union of its
 * executable PT_LOAD segments. */
static int text_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct text_query *q = arg;
    uint64_t lo = UINT64_MAX, hi = 0;
    int holds = 0;
    ElfW(Half) i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uint64_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;

        if (ph->p_type != PT_LOAD)
            continue;
        if (q->addr >= start && q->addr < end)
            holds = 1;
        if (ph->p_flags & PF_X) {
            lo = start < lo ? start : lo;
            hi = end > hi ? end : hi;
        }
    }
    if (!holds)
        return 0;
    if (lo < hi) {
        q->lo = lo;
        q->hi = hi;
        q->found = 1;
    }
    return 1;
}

static void text_range_of(const void *addr, uint64_t *lo, uint64_t *hi)
{
    struct text_query q = { .addr = (uintptr_t)addr };
    Dl_info di;

    *lo = *hi = 0;
    if (!addr || !dladdr(addr, &di))     /* not inside any loaded object */
        return;
    dl_iterate_phdr(text_cb, &q);
    if (q.found) {
        *lo = q.lo;
        *hi = q.hi;
    }
}

/* ---- creating and describing the registry --------------------------- */

static void describe_locked(void)
{
    if (g_name[0])
        vmreg_set_vm(g_base, g_kind, g_name, g_version);
    else
        ((struct vmprof_reg_header *)g_base)->vm_kind = g_kind;
    vmreg_set_text(g_base, g_text_lo, g_text_hi);
    vmreg_set_cpython(g_base, g_runtime, g_debug_offsets, g_code_frees);
}

static int new_memfd(uint64_t size)
{
    int fd = memfd_create(VMPROF_REG_MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Seals the size so a reader's mapping never faults, and remembers the
 * fd's identity. */
static void adopt_fd(int fd)
{
    struct stat st;

    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    g_fd = fd;
    if (fstat(fd, &st) == 0) {
        g_dev = st.st_dev;
        g_ino = st.st_ino;
    }
}

/* Closes g_fd only if it is still the registry (the application may
 * have closed it and reused the number). */
static void drop_fd(void)
{
    struct stat st;

    if (g_fd >= 0 && fstat(g_fd, &st) == 0 && st.st_dev == g_dev && st.st_ino == g_ino)
        close(g_fd);
    g_fd = -1;
}

static int create_locked(void)
{
    void *p;
    int fd;

    if (g_base)
        return 0;
    fd = new_memfd(VMPROF_REG_SIZE);
    if (fd < 0)
        return -1;
    p = mmap(NULL, VMPROF_REG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return -1;
    }
    if (vmreg_format(p, VMPROF_REG_SIZE, VMPROF_REG_THREAD_SLOTS, g_kind,
                     (uint32_t)getpid()) != 0) {
        munmap(p, VMPROF_REG_SIZE);
        close(fd);
        return -1;
    }
    g_size = VMPROF_REG_SIZE;
    __atomic_store_n(&g_base, (unsigned char *)p, __ATOMIC_RELEASE);
    adopt_fd(fd);
    describe_locked();
    vmreg_publish(g_base);
    return 0;
}

/* For the C API: a registry of kind shadow (unless this is CPython). */
static int ensure_shadow_locked(void)
{
    if (g_kind == VMPROF_REG_KIND_NONE) {
        g_kind = VMPROF_REG_KIND_SHADOW;
        if (!g_name[0])
            memcpy(g_name, "vm", 3);
        if (g_base)
            describe_locked();
    }
    return create_locked();
}

/* ---- fork ------------------------------------------------------------ */

/* In the child: copy the used parts of the registry into a new memfd and
 * map it over the old address (MAP_FIXED), so every address the VM gave
 * stays valid and the parent's registry is never written by the child.
 * If anything fails the child gets no registry at all (never a shared
 * one): its profile then lacks VM frames, the VM is unaffected. */
static void fork_child_copy(void)
{
    struct vmreg_range r[3];
    struct vmprof_reg_header *h;
    int fd, n, i;

    if (!g_base)
        return;
    fd = new_memfd(g_size);
    if (fd < 0)
        goto fail;
    n = vmreg_used_ranges(g_base, r);
    for (i = 0; i < n; i++) {
        uint64_t done = 0;

        if (r[i].off > g_size || r[i].len > g_size - r[i].off)
            goto fail;
        while (done < r[i].len) {
            ssize_t w = pwrite(fd, g_base + r[i].off + done, r[i].len - done,
                               (off_t)(r[i].off + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto fail;
            done += (uint64_t)w;
        }
    }
    if (mmap(g_base, g_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        g_base = NULL;          /* MAP_FIXED failed: the range is gone */
        goto fail;
    }
    drop_fd();
    adopt_fd(fd);
    h = (struct vmprof_reg_header *)g_base;
    h->creator_pid = (uint32_t)getpid();
    h->fork_generation++;
    vmreg_thread_reset(g_base, t_slot, (uint32_t)gettid());
    return;
fail:
    if (fd >= 0)
        close(fd);
    if (g_base)
        munmap(g_base, g_size);
    g_base = NULL;
    drop_fd();
    t_slot = -1;
}

static void atfork_prepare(void)
{
    lock();
}

static void atfork_parent(void)
{
    unlock();
}

static void atfork_child(void)
{
    fork_child_copy();
    unlock();
}

/* ---- CPython: counting code objects freed ---------------------------- */

/* PyTypeObject of a default CPython build (not free-threaded, no
 * Py_TRACE_REFS), 3.11 to 3.14: ob_refcnt, ob_type, ob_size, tp_name,
 * tp_basicsize, tp_itemsize, tp_dealloc. */
#define PYTYPE_TP_NAME_OFF     24
#define PYTYPE_TP_DEALLOC_OFF  48

typedef void (*py_destructor)(void *);
static py_destructor g_code_dealloc;    /* the interpreter's own */

static void code_dealloc_counted(void *op)
{
    unsigned char *b = __atomic_load_n(&g_base, __ATOMIC_ACQUIRE);

    if (b)
        __atomic_fetch_add(&((struct vmprof_reg_header *)b)->py_code_frees, 1,
                           __ATOMIC_SEQ_CST);
    g_code_dealloc(op);
}

/* Same loaded object? (dladdr's base address) */
static int same_object(const void *a, const void *b)
{
    Dl_info da, db;

    return a && b && dladdr(a, &da) && dladdr(b, &db) && da.dli_fbase == db.dli_fbase;
}

/* Wraps PyCode_Type.tp_dealloc when the layout is the one expected;
 * returns 1 when the wrap is in place. Runs before the registry exists
 * (so every code object freed while it exists is counted). */
static int count_code_frees(uint64_t version)
{
    unsigned char *type;
    const char *name;
    py_destructor d;

    if (version < 0x030b0000 || version >= 0x030e0000)
        return 0;               /* 3.14+ counts them itself */
    type = dlsym(RTLD_DEFAULT, "PyCode_Type");
    if (!type)
        return 0;
    memcpy(&name, type + PYTYPE_TP_NAME_OFF, sizeof name);
    /* In the other layouts this word is ob_type or a refcount: only a
     * pointer into a loaded object is read, and it must say "code". */
    if (!same_object(name, type) || memcmp(name, "code", 5) != 0)
        return 0;
    memcpy(&d, type + PYTYPE_TP_DEALLOC_OFF, sizeof d);
    if (d == code_dealloc_counted)
        return 1;               /* (the shim loaded twice) */
    if (!same_object((const void *)d, type))
        return 0;
    g_code_dealloc = d;
    __atomic_store_n((py_destructor *)(void *)(type + PYTYPE_TP_DEALLOC_OFF),
                     code_dealloc_counted, __ATOMIC_SEQ_CST);
    return 1;
}

/* ---- constructor: CPython detection --------------------------------- */

__attribute__((constructor)) static void shim_init(void)
{
    const unsigned long *ver;
    void *rt;

    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    rt = dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (!rt)
        return;                 /* not CPython: create nothing */
    ver = dlsym(RTLD_DEFAULT, "Py_Version");
    lock();
    g_code_frees = count_code_frees(ver ? *ver : 0);
    g_kind = VMPROF_REG_KIND_CPYTHON;
    memcpy(g_name, "cpython", 8);
    g_version = ver ? *ver : 0;
    g_runtime = (uint64_t)(uintptr_t)rt;
    g_debug_offsets = memcmp(rt, "xdebugpy", 8) == 0;
    text_range_of(rt, &g_text_lo, &g_text_hi);
    create_locked();
    unlock();
}

/* ---- the C API ------------------------------------------------------- */

VMPROF_SHIM_EXPORT int vmprof_shim_init(const char *vm_name, const void *addr_in_interpreter)
{
    size_t n = vm_name ? strnlen(vm_name, VMPROF_REG_VM_NAME_SIZE) : 0;
    uint64_t lo, hi;
    int rc;

    if (n == 0 || n >= VMPROF_REG_VM_NAME_SIZE || !vmprof_reg_text_valid(vm_name, n)) {
        errno = EINVAL;
        return -1;
    }
    text_range_of(addr_in_interpreter, &lo, &hi);  /* outside the lock */
    lock();
    if (g_kind == VMPROF_REG_KIND_CPYTHON) {
        unlock();
        errno = EBUSY;
        return -1;
    }
    g_kind = VMPROF_REG_KIND_SHADOW;
    memset(g_name, 0, sizeof g_name);
    memcpy(g_name, vm_name, n);
    g_text_lo = lo;
    g_text_hi = hi;
    if (g_base)
        describe_locked();
    rc = create_locked();
    unlock();
    return rc;
}

VMPROF_SHIM_EXPORT int vmprof_shim_register_code(uint64_t code_id, const char *name)
{
    size_t n = name ? strnlen(name, VMPROF_REG_NAME_MAX + 1) : 0;
    int rc;

    if (n == 0 || n > VMPROF_REG_NAME_MAX || !vmprof_reg_text_valid(name, n)) {
        errno = EINVAL;
        return -1;
    }
    lock();
    rc = ensure_shadow_locked();
    if (rc == 0)
        rc = vmreg_code_append(g_base, code_id, name, n);
    unlock();
    return rc;
}

/* Thread-exit destructor: frees the slot if it still names this thread. */
static void thread_exit(void *value)
{
    uint32_t slot = (uint32_t)((uintptr_t)value - 1);
    const struct vmprof_reg_thread_slot *s;

    lock();
    if (g_base && t_slot == (int)slot) {
        s = (const struct vmprof_reg_thread_slot *)
            (g_base + ((struct vmprof_reg_header *)g_base)->thread_table_off);
        if (s[slot].tid == (uint32_t)gettid())
            vmreg_thread_clear(g_base, slot);
    }
    t_slot = -1;
    unlock();
}

static void key_init(void)
{
    g_key_ok = pthread_key_create(&g_exit_key, thread_exit) == 0;
}

VMPROF_SHIM_EXPORT int vmprof_shim_register_thread(struct vmprof_shim_frame **top)
{
    uint32_t tid = (uint32_t)gettid();
    int slot = -1;

    if (!top) {
        errno = EINVAL;
        return -1;
    }
    pthread_once(&g_key_once, key_init);
    lock();
    if (ensure_shadow_locked() == 0) {
        if (t_slot >= 0)
            vmreg_thread_clear(g_base, (uint32_t)t_slot);
        vmreg_thread_clear_tid(g_base, tid);    /* stale: a dead thread's tid */
        slot = vmreg_thread_add(g_base, tid, (uint64_t)(uintptr_t)top, ++g_thread_seq);
    }
    t_slot = slot;
    unlock();
    if (g_key_ok)
        pthread_setspecific(g_exit_key, slot >= 0 ? (void *)(uintptr_t)(slot + 1) : NULL);
    return slot >= 0 ? 0 : -1;
}

VMPROF_SHIM_EXPORT int vmprof_shim_unregister_thread(void)
{
    lock();
    if (g_base && t_slot >= 0)
        vmreg_thread_clear(g_base, (uint32_t)t_slot);
    t_slot = -1;
    unlock();
    if (g_key_ok)
        pthread_setspecific(g_exit_key, NULL);
    return 0;
}
