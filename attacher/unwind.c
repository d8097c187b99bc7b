/*
 * unwind.c - libunwind remote unwinding over snapshots, with our own
 * accessors (the perf approach; see unwind.h).
 *
 * Objects: each file-backed mapping is tied lazily to an "uobj", the
 * object file mapped read-only here (opened under the target's root, the
 * inode checked, /proc/PID/map_files as a fallback) or, for the [vdso], a
 * copy of its bytes. From the uobj we know its PT_LOAD segments and where
 * .eh_frame_hdr's binary search table is. Invariants:
 *  - a read served from a uobj is only ever from a non-writable PT_LOAD
 *    segment's file bytes (those equal the target's memory);
 *  - a read served from the snapshot lies wholly inside the copy;
 *  - nothing is written to the target; libunwind's writes are refused.
 * Cost notes: function starts (for the log) are cached by IP in a small
 * direct-mapped table, so unw_get_proc_info runs once per new IP.
 *
 * Code without unwind tables (JIT code in anonymous or memfd mappings,
 * objects without .eh_frame_hdr) is stepped here, not by libunwind: its
 * own fallback guesses the caller's SP as CFA + 16, which is wrong for
 * any frame with locals or saved registers, and the caller's unwind then
 * goes astray. We follow the frame-pointer convention instead ([rbp] =
 * caller's rbp, [rbp + 8] = return address, caller's sp = rbp + 16),
 * checking each step against the stack mapping, and restart libunwind on
 * the caller's registers. The function start of such a frame (the word
 * the log uses, so that all samples in one JIT function share it) is the
 * start of its entry in the target's perf map, when it has one.
 */
#include "unwind.h"
#include "mono_clock.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* DWARF pointer encodings used by .eh_frame_hdr. */
#define DW_EH_PE_udata4 0x03
#define DW_EH_PE_sdata4 0x0b
#define DW_EH_PE_datarel 0x30

/* Exported by libunwind but not declared in its public headers. */
extern int _Ux86_64_dwarf_search_unwind_table(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

#define MAX_SEGS 16
#define FUNC_CACHE_SIZE 65536   /* power of two */
#define PERFMAP_MAX_BYTES (64u << 20)
#define PERFMAP_CHECK_NS 100000000ull  /* re-stat the perf map at most this often */

struct useg { uint64_t vaddr, offset, filesz; uint32_t flags; };

struct uobj {
    struct uobj *next;
    char *path;
    uint64_t inode;
    const uint8_t *data;        /* whole file (or vdso copy) */
    size_t size;
    int is_mmap;
    struct useg seg[MAX_SEGS];
    int nseg;
    int has_table;              /* .eh_frame_hdr with a searchable table */
    uint64_t hdr_vaddr, table_vaddr, fde_count;
};

/* Per mapping of the target, parallel to maps->v. */
struct umap {
    struct uobj *obj;           /* NULL: not file-backed or failed */
    int state;                  /* 0 unresolved, 1 resolved */
    uint64_t bias;              /* target address = bias + ELF vaddr */
};

struct func_slot { uint64_t key, func; };

/* The target's perf map, read here for function starts only (names come
 * from symbols/ at the end). Re-read when a lookup misses and the file
 * changed, at most every PERFMAP_CHECK_NS. */
struct jit_map {
    struct sym_perfmap_file file;   /* path NULL: no lookups */
    uint64_t next_check_ns;
};

struct unwinder {
    struct remote_mem *mem;
    char root[64];
    unw_addr_space_t as;
    const struct sym_maps *maps;
    const struct sym_mapping *last_map; /* the last find_map hit (the
                                   reads of one unwind step cluster in one
                                   object), NULL after set_maps */
    struct umap *umaps;
    struct uobj *objs;
    struct func_slot *funcs;
    struct jit_map jit;
    struct unwind_stats st;
    const struct snapshot *cur; /* the snapshot being unwound */
    struct user_regs_struct regs;   /* what access_reg serves: the snapshot's,
                                       then a frame-pointer step's result */
    uint64_t stack_lo, stack_hi;    /* the stack mapping of the snapshot's SP, */
    int stack_known;                /* or (0) the copy, when maps lack it */
};

/* ---- objects ----------------------------------------------------------- */

static int parse_elf(struct uobj *o)
{
    if (o->size < sizeof(Elf64_Ehdr))
        return -1;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)o->data;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_phentsize != sizeof(Elf64_Phdr))
        return -1;
    if (eh->e_phoff > o->size || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > o->size - eh->e_phoff)
        return -1;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(o->data + eh->e_phoff);
    const Elf64_Phdr *hdr = NULL;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && o->nseg < MAX_SEGS) {
            struct useg *s = &o->seg[o->nseg++];
            s->vaddr = ph[i].p_vaddr;
            s->offset = ph[i].p_offset;
            s->filesz = ph[i].p_filesz;
            s->flags = ph[i].p_flags;
        } else if (ph[i].p_type == PT_GNU_EH_FRAME) {
            hdr = &ph[i];
        }
    }
    if (!hdr || hdr->p_offset > o->size || o->size - hdr->p_offset < 12)
        return 0;
    const uint8_t *h = o->data + hdr->p_offset;
    /* version 1; eh_frame_ptr (4 bytes in the encodings we accept);
     * fde_count as udata4; table as datarel|sdata4 (binary searchable). */
    uint8_t ptr_enc = h[1], cnt_enc = h[2], tab_enc = h[3];
    if (h[0] != 1 || tab_enc != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
        return 0;
    if ((ptr_enc & 0x0f) != DW_EH_PE_sdata4 && (ptr_enc & 0x0f) != DW_EH_PE_udata4)
        return 0;
    if ((cnt_enc & 0x0f) != DW_EH_PE_udata4)
        return 0;
    uint32_t count;
    memcpy(&count, h + 8, 4);
    if ((uint64_t)count * 8 > o->size - hdr->p_offset - 12)
        return 0;
    o->hdr_vaddr = hdr->p_vaddr;
    o->table_vaddr = hdr->p_vaddr + 12;
    o->fde_count = count;
    o->has_table = count > 0;
    return 0;
}

static struct uobj *obj_from_file(struct unwinder *u, const struct sym_mapping *m)
{
    char path[4096];
    struct stat st;
    int fd = -1;
    if (m->path[0] == '/') {
        fd = sym_open_rooted(u->root, m->path, &st);
        if (fd >= 0 && st.st_ino != m->inode) {
            close(fd);          /* replaced on disk since it was mapped */
            fd = -1;
        }
    }
    if (fd < 0) {
        snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)u->mem->pid,
                 (unsigned long long)m->start, (unsigned long long)m->end);
        fd = sym_open_regular(path, &st);
    }
    if (fd < 0)
        return NULL;
    if (st.st_size <= 0) {
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    struct uobj *o = calloc(1, sizeof(*o));
    if (!o) {
        munmap(p, (size_t)st.st_size);
        return NULL;
    }
    o->data = p;
    o->size = (size_t)st.st_size;
    o->is_mmap = 1;
    o->inode = m->inode;
    o->path = strdup(m->path);
    if (!o->path || parse_elf(o) < 0) {
        munmap(p, o->size);
        free(o->path);
        free(o);
        return NULL;
    }
    return o;
}

/* The vdso has no file: copy its bytes from the target once. */
static struct uobj *obj_from_memory(struct unwinder *u, const struct sym_mapping *m)
{
    size_t len = m->end - m->start;
    if (len == 0 || len > (1u << 20))
        return NULL;
    uint8_t *buf = malloc(len);
    struct uobj *o = calloc(1, sizeof(*o));
    if (!buf || !o || remote_read(u->mem, m->start, buf, len) < 0) {
        free(buf);
        free(o);
        return NULL;
    }
    o->data = buf;
    o->size = len;
    o->path = strdup(m->path);
    if (!o->path || parse_elf(o) < 0) {
        free(buf);
        free(o->path);
        free(o);
        return NULL;
    }
    return o;
}

static void obj_free(struct uobj *o)
{
    if (o->is_mmap)
        munmap((void *)o->data, o->size);
    else
        free((void *)o->data);
    free(o->path);
    free(o);
}

/* Tie mapping i to its object and compute the load bias, once. */
static struct umap *umap_get(struct unwinder *u, const struct sym_mapping *m)
{
    struct umap *um = &u->umaps[m - u->maps->v];
    if (um->state)
        return um;
    um->state = 1;
    int is_vdso = strcmp(m->path, "[vdso]") == 0;
    if (m->path[0] != '/' && !is_vdso)
        return um;
    struct uobj *o;
    for (o = u->objs; o; o = o->next)
        if (o->inode == m->inode && strcmp(o->path, m->path) == 0 && (is_vdso == !o->is_mmap))
            break;
    if (!o) {
        o = is_vdso ? obj_from_memory(u, m) : obj_from_file(u, m);
        if (!o)
            return um;
        o->next = u->objs;
        u->objs = o;
        u->st.objects++;
    }
    /* The segment this mapping shows: vdso maps from offset 0. */
    for (int i = 0; i < o->nseg; i++) {
        const struct useg *s = &o->seg[i];
        uint64_t page_off = s->offset & ~(uint64_t)4095;
        if (is_vdso || (m->offset >= page_off && m->offset < s->offset + s->filesz)) {
            um->bias = m->start - (s->vaddr - s->offset + m->offset);
            um->obj = o;
            break;
        }
    }
    return um;
}

static const struct sym_mapping *find_map(struct unwinder *u, uint64_t addr)
{
    const struct sym_mapping *m = u->last_map;
    if (m && addr >= m->start && addr < m->end)
        return m;
    m = u->maps ? sym_maps_find(u->maps, addr) : NULL;
    if (m)
        u->last_map = m;
    return m;
}

/* Serve a read from the object file when addr lies in a non-writable
 * PT_LOAD segment's file bytes. 0 on success. */
static int read_from_obj(struct unwinder *u, uint64_t addr, void *out, size_t len)
{
    const struct sym_mapping *m = find_map(u, addr);
    if (!m || (m->prot & SYM_PROT_W))
        return -1;
    struct umap *um = umap_get(u, m);
    if (!um->obj)
        return -1;
    uint64_t vaddr = addr - um->bias;
    for (int i = 0; i < um->obj->nseg; i++) {
        const struct useg *s = &um->obj->seg[i];
        if ((s->flags & PF_W) || vaddr < s->vaddr || vaddr - s->vaddr >= s->filesz ||
            s->filesz - (vaddr - s->vaddr) < len)
            continue;
        uint64_t off = s->offset + (vaddr - s->vaddr);
        if (off > um->obj->size || um->obj->size - off < len)
            return -1;
        memcpy(out, um->obj->data + off, len);
        return 0;
    }
    return -1;
}

/* ---- libunwind accessors ----------------------------------------------- */

static int acc_find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                              int need_unwind_info, void *arg)
{
    struct unwinder *u = arg;
    const struct sym_mapping *m = find_map(u, ip);
    if (!m)
        return -UNW_ENOINFO;
    struct umap *um = umap_get(u, m);
    if (!um->obj || !um->obj->has_table)
        return -UNW_ENOINFO;
    unw_dyn_info_t di;
    memset(&di, 0, sizeof(di));
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.start_ip = m->start;
    di.end_ip = m->end;
    di.u.rti.segbase = um->bias + um->obj->hdr_vaddr;
    di.u.rti.table_data = um->bias + um->obj->table_vaddr;
    di.u.rti.table_len = um->obj->fde_count * 8 / sizeof(unw_word_t);
    return _Ux86_64_dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
}

static void acc_put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
    /* Unwind info from dwarf_search_unwind_table is owned by libunwind. */
}

static int acc_get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg)
{
    return -UNW_ENOINFO;
}

/* One word of the target: from the snapshot, an object file, or (last)
 * the live process. 0 on success. */
static int read_word(struct unwinder *u, uint64_t addr, uint64_t *valp)
{
    const struct snapshot *sn = u->cur;
    if (sn && addr >= sn->stack_lo && addr - sn->stack_lo <= sn->stack_len &&
        sn->stack_len - (addr - sn->stack_lo) >= sizeof(*valp)) {
        memcpy(valp, sn->stack + (addr - sn->stack_lo), sizeof(*valp));
        return 0;
    }
    if (read_from_obj(u, addr, valp, sizeof(*valp)) == 0)
        return 0;
    u->st.live_reads++;
    if (addr >= u->stack_lo && (addr < u->stack_hi || !u->stack_known))
        u->st.stack_live_reads++;
    return remote_read(u->mem, addr, valp, sizeof(*valp)) == 0 ? 0 : -1;
}

static int acc_access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *valp,
                          int write, void *arg)
{
    struct unwinder *u = arg;
    if (write)
        return -UNW_EINVAL;
    uint64_t v;
    if (read_word(u, addr, &v) < 0)
        return -UNW_EINVAL;
    *valp = v;
    return 0;
}

static int acc_access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *valp,
                          int write, void *arg)
{
    struct unwinder *u = arg;
    if (write || !u->cur)
        return -UNW_EINVAL;
    const struct user_regs_struct *r = &u->regs;
    switch (reg) {
    case UNW_X86_64_RAX: *valp = r->rax; break;
    case UNW_X86_64_RDX: *valp = r->rdx; break;
    case UNW_X86_64_RCX: *valp = r->rcx; break;
    case UNW_X86_64_RBX: *valp = r->rbx; break;
    case UNW_X86_64_RSI: *valp = r->rsi; break;
    case UNW_X86_64_RDI: *valp = r->rdi; break;
    case UNW_X86_64_RBP: *valp = r->rbp; break;
    case UNW_X86_64_RSP: *valp = r->rsp; break;
    case UNW_X86_64_R8: *valp = r->r8; break;
    case UNW_X86_64_R9: *valp = r->r9; break;
    case UNW_X86_64_R10: *valp = r->r10; break;
    case UNW_X86_64_R11: *valp = r->r11; break;
    case UNW_X86_64_R12: *valp = r->r12; break;
    case UNW_X86_64_R13: *valp = r->r13; break;
    case UNW_X86_64_R14: *valp = r->r14; break;
    case UNW_X86_64_R15: *valp = r->r15; break;
    case UNW_X86_64_RIP: *valp = r->rip; break;
    default: return -UNW_EBADREG;
    }
    return 0;
}

static int acc_access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val,
                            int write, void *arg)
{
    return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
    return -UNW_EINVAL;
}

static int acc_get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len,
                             unw_word_t *offp, void *arg)
{
    return -UNW_ENOINFO;        /* names come from symbols/, at the end */
}

static unw_accessors_t accessors = {
    .find_proc_info = acc_find_proc_info,
    .put_unwind_info = acc_put_unwind_info,
    .get_dyn_info_list_addr = acc_get_dyn_info_list_addr,
    .access_mem = acc_access_mem,
    .access_reg = acc_access_reg,
    .access_fpreg = acc_access_fpreg,
    .resume = acc_resume,
    .get_proc_name = acc_get_proc_name,
};

/* ---- code without unwind tables (JIT) ---------------------------------- */

/* Start of the perf map entry holding ip, 0 if none. A miss re-reads a
 * changed file, at most every PERFMAP_CHECK_NS: a JIT writes the entry
 * when it emits the code, so misses are rare once it has warmed up. */
static uint64_t jit_func(struct unwinder *u, uint64_t ip)
{
    struct jit_map *j = &u->jit;
    if (!j->file.path)
        return 0;
    const struct sym_perfmap_entry *e = sym_perfmap_find(&j->file.pm, ip);
    if (!e) {
        uint64_t now = mono_ns();
        if (now < j->next_check_ns)
            return 0;
        j->next_check_ns = now + PERFMAP_CHECK_NS;
        sym_perfmap_file_refresh(&j->file, PERFMAP_MAX_BYTES);
        e = sym_perfmap_find(&j->file.pm, ip);
    }
    return e ? e->start : 0;
}

/* Executable memory libunwind has no unwind table for: anonymous or
 * non-ELF mappings (JIT code), objects without .eh_frame_hdr. */
static int lacks_table(struct unwinder *u, const struct sym_mapping *m)
{
    if (!(m->prot & SYM_PROT_X))
        return 0;
    struct umap *um = umap_get(u, m);
    return !um->obj || !um->obj->has_table;
}

/* The registers libunwind knows for the cursor's frame (those it cannot
 * tell keep their previous value). */
static void regs_from_cursor(unw_cursor_t *c, struct user_regs_struct *r)
{
    static const struct { int reg; size_t off; } take[] = {
        { UNW_X86_64_RIP, offsetof(struct user_regs_struct, rip) },
        { UNW_X86_64_RSP, offsetof(struct user_regs_struct, rsp) },
        { UNW_X86_64_RBP, offsetof(struct user_regs_struct, rbp) },
        { UNW_X86_64_RBX, offsetof(struct user_regs_struct, rbx) },
        { UNW_X86_64_R12, offsetof(struct user_regs_struct, r12) },
        { UNW_X86_64_R13, offsetof(struct user_regs_struct, r13) },
        { UNW_X86_64_R14, offsetof(struct user_regs_struct, r14) },
        { UNW_X86_64_R15, offsetof(struct user_regs_struct, r15) },
    };
    for (size_t i = 0; i < sizeof(take) / sizeof(take[0]); i++) {
        unw_word_t v;
        if (unw_get_reg(c, take[i].reg, &v) == 0)
            memcpy((char *)r + take[i].off, &v, sizeof(v));
    }
}

/* One step out of a frame without unwind table, by the frame-pointer
 * convention. For the innermost frame, a pc on `push rbp` or `ret` means
 * the frame is not (or no more) set up, and on `mov rbp, rsp` that only
 * rbp is pushed: the return address is then found from sp. Checked: rbp
 * aligned, at or above sp and inside the stack mapping; the return
 * address in executable memory. Returns 1 (r is the caller's), 0 at the
 * end of the chain (rbp 0), -1 when the chain cannot be trusted. */
static int fp_step(struct unwinder *u, struct user_regs_struct *r, int innermost)
{
    uint64_t sp = r->rsp, rbp = r->rbp, caller_rbp = rbp, ret, nsp, code;
    int op = -1;
    if (innermost && read_word(u, r->rip, &code) == 0) {
        if ((code & 0xff) == 0x55 || (code & 0xff) == 0xc3)
            op = 0;                             /* push rbp / ret */
        else if ((code & 0xffffff) == 0xe58948)
            op = 1;                             /* mov rbp, rsp */
    }
    if (op >= 0) {
        if ((op == 1 && read_word(u, sp, &caller_rbp) < 0) ||
            read_word(u, sp + 8 * (uint64_t)op, &ret) < 0)
            return -1;
        nsp = sp + 8 + 8 * (uint64_t)op;
    } else {
        if (rbp == 0)
            return 0;
        if ((rbp & 7) || rbp < sp || rbp >= u->stack_hi || u->stack_hi - rbp < 16 ||
            read_word(u, rbp, &caller_rbp) < 0 || read_word(u, rbp + 8, &ret) < 0)
            return -1;
        nsp = rbp + 16;
    }
    const struct sym_mapping *m = find_map(u, ret);
    if (!m || !(m->prot & SYM_PROT_X))
        return -1;
    r->rip = ret;
    r->rsp = nsp;
    r->rbp = caller_rbp;
    return 1;
}

/* ---- public ------------------------------------------------------------ */

struct unwinder *unwinder_new(struct remote_mem *mem, const char *root)
{
    struct unwinder *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->mem = mem;
    snprintf(u->root, sizeof(u->root), "%s", root);
    u->funcs = calloc(FUNC_CACHE_SIZE, sizeof(*u->funcs));
    u->as = unw_create_addr_space(&accessors, 0);
    if (!u->funcs || !u->as) {
        unwinder_free(u);
        return NULL;
    }
    /* Each unw_step takes this cache's lock, and libunwind's lock blocks
     * every signal around it: two sigprocmask calls per frame (~400 per
     * sample on a 190-frame stack, ~1% of a core at 250 Hz). The lock-free
     * UNW_CACHE_PER_THREAD exists only in builds configured with
     * --enable-per-thread-cache, which Debian's is not (it becomes GLOBAL);
     * UNW_CACHE_NONE would parse every FDE again. */
    unw_set_caching_policy(u->as, UNW_CACHE_GLOBAL);
    return u;
}

int unwinder_set_maps(struct unwinder *u, const struct sym_maps *maps)
{
    struct umap *um = calloc(maps->n ? maps->n : 1, sizeof(*um));
    free(u->umaps);
    u->umaps = um;
    u->maps = um ? maps : NULL;     /* without maps: live reads only */
    u->last_map = NULL;
    unw_flush_cache(u->as, 0, 0);
    memset(u->funcs, 0, FUNC_CACHE_SIZE * sizeof(*u->funcs));
    return um ? 0 : -1;
}

int unwinder_follow_perfmap(struct unwinder *u)
{
    sym_perfmap_file_close(&u->jit.file);
    memset(&u->jit, 0, sizeof(u->jit));
    return sym_perfmap_file_open(&u->jit.file, u->mem->pid, u->root);
}

/* Start of the function holding the cursor's frame, cached by IP. */
static uint64_t func_start(struct unwinder *u, unw_cursor_t *c, uint64_t ip, int innermost)
{
    uint64_t key = (ip << 1) | (uint64_t)innermost;
    struct func_slot *slot = &u->funcs[(key * 0x9E3779B97F4A7C15ull) >> 48 & (FUNC_CACHE_SIZE - 1)];
    if (slot->key == key)
        return slot->func;
    unw_proc_info_t pi;
    uint64_t f = 0;
    if (unw_get_proc_info(c, &pi) == 0 && pi.start_ip <= ip && ip <= pi.end_ip)
        f = pi.start_ip;
    slot->key = key;
    slot->func = f;
    return f;
}

/* The stack mapping of the snapshot's SP bounds frame-pointer steps (the
 * copy's end when the maps do not know it yet). */
static void set_stack_bounds(struct unwinder *u, const struct snapshot *sn)
{
    const struct sym_mapping *m = find_map(u, sn->regs.rsp);
    u->stack_known = m && !(m->prot & SYM_PROT_X);
    u->stack_lo = u->stack_known ? m->start : sn->stack_lo;
    u->stack_hi = u->stack_known ? m->end : sn->stack_lo + sn->stack_len;
}

/* One frame up: libunwind for code with tables, our frame-pointer step
 * for code without (the cursor then restarts on the caller's registers).
 * Returns > 0 stepped, 0 outermost, < 0 error. */
static int step(struct unwinder *u, unw_cursor_t *c, int raw, int innermost)
{
    if (!raw)
        return unw_step(c);
    if (!innermost)
        regs_from_cursor(c, &u->regs);
    int r = fp_step(u, &u->regs, innermost);
    if (r <= 0)
        return r;
    u->st.fp_steps++;
    return unw_init_remote(c, u->as, u) < 0 ? -1 : 1;
}

int unwinder_run(struct unwinder *u, const struct snapshot *sn,
                 struct native_frame *out, int max, int *unknown)
{
    unw_cursor_t c;
    int n = 0;
    *unknown = 0;
    u->cur = sn;
    u->regs = sn->regs;
    set_stack_bounds(u, sn);
    u->st.samples++;
    if (max <= 0 || unw_init_remote(&c, u->as, u) < 0) {
        u->st.failures++;
        if (max > 0) {          /* at least the PC is known */
            out[0] = (struct native_frame){ sn->regs.rip, sn->regs.rsp, UINT64_MAX, 0 };
            n = 1;
        }
        goto done;
    }
    for (;;) {
        unw_word_t ip = 0, sp = 0;
        unw_get_reg(&c, UNW_REG_IP, &ip);
        unw_get_reg(&c, UNW_REG_SP, &sp);
        if (ip == 0)
            break;
        const struct sym_mapping *m = find_map(u, ip);
        if (!m) {
            *unknown = UNWIND_NO_MAPPING;
            u->st.unknown_ips++;
        } else if (!(m->prot & SYM_PROT_X)) {
            if (!*unknown)
                *unknown = UNWIND_NOT_CODE;
            /* A return address in data: the step read a word that is not
             * one (seen: a new thread stopped just after clone3's system
             * call, where glibc has no unwind table on purpose, gave a
             * heap address 117 times over). No frame, and nothing past
             * it; the caller reads the maps again in case they were
             * stale. Not counted as a failure: that new thread's stack
             * does end there. The innermost frame is where the thread
             * is: kept. */
            if (n > 0)
                break;
        }
        int raw = m && lacks_table(u, m);
        out[n].ip = ip;
        out[n].sp = sp;
        out[n].cfa = UINT64_MAX;
        out[n].func = raw ? jit_func(u, ip) : func_start(u, &c, ip, n == 0);
        if (n > 0)
            out[n - 1].cfa = sp;
        n++;
        if (n >= max)
            break;
        int r = step(u, &c, raw, n == 1);
        if (r <= 0) {
            if (r < 0)
                u->st.failures++;
            break;
        }
        unw_word_t nsp = 0;
        unw_get_reg(&c, UNW_REG_SP, &nsp);
        if (nsp <= sp) {        /* the stack grows down: a caller is above */
            u->st.failures++;
            break;
        }
    }
done:
    u->st.frames += (uint64_t)n;
    u->cur = NULL;
    return n;
}

const struct unwind_stats *unwinder_stats(const struct unwinder *u)
{
    return &u->st;
}

void unwinder_free(struct unwinder *u)
{
    if (!u)
        return;
    if (u->as)
        unw_destroy_addr_space(u->as);
    while (u->objs) {
        struct uobj *o = u->objs;
        u->objs = o->next;
        obj_free(o);
    }
    free(u->umaps);
    free(u->funcs);
    sym_perfmap_file_close(&u->jit.file);
    free(u);
}
