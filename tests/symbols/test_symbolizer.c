/*
 * test_symbolizer.c - resolution of live processes through the public API.
 *
 * Each case starts a target the build made (tests/symbols/symtarget.c in
 * its several shapes), reads the addresses the target reports for its own
 * functions, loads its maps and resolves through /proc/PID/root, as the
 * attacher does. Expected names and lines come from the target's source
 * (function names, __LINE__), never from the resolver's own output.
 * Arguments (meson passes them): symtarget, symtarget_nopie,
 * symtarget_stripped (debuglink), symtarget_nolink (build-id only),
 * symtarget.debug, libsymlib.so, libsymlib_stripped.so, symtarget_noaranges.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "symbols.h"

enum { T_SYMTAB, T_NOPIE, T_STRIPPED, T_NOLINK, T_DEBUG, T_LIB, T_LIB_STRIPPED, T_NOARANGES,
       T_DEBUG_NOID,
       T_COUNT };
static const char *paths[T_COUNT];
/* The running target, killed by the teardown if a failed assertion
 * skipped stop(): a leftover child would hold the test's stderr open. */
static pid_t live_pid;

/* ---- a target process ---------------------------------------------------- */

#define MAX_FACTS 16
struct target {
    pid_t pid;
    char key[MAX_FACTS][32];
    char val[MAX_FACTS][64];
    int n;
    struct sym_maps maps;
};

/* Start argv[0] with stdout to a pipe; read "key value" lines to "ready". */
static void start(struct target *t, char *const argv[])
{
    int fds[2];
    FILE *f;
    char line[256];
    memset(t, 0, sizeof *t);
    assert_int_equal(pipe(fds), 0);
    t->pid = fork();
    assert_true(t->pid >= 0);
    live_pid = t->pid;
    if (t->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    f = fdopen(fds[0], "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) && t->n < MAX_FACTS) {
        if (sscanf(line, "%31s %63s", t->key[t->n], t->val[t->n]) != 2) continue;
        if (!strcmp(t->key[t->n], "ready")) break;
        t->n++;
    }
    fclose(f);
    assert_int_equal(sym_maps_load(&t->maps, t->pid), 0);
}

static void stop(struct target *t)
{
    kill(t->pid, SIGKILL);
    waitpid(t->pid, NULL, 0);
    live_pid = 0;
    sym_maps_free(&t->maps);
}

static int kill_leftover(void **state)
{
    (void)state;
    if (live_pid > 0) {
        kill(live_pid, SIGKILL);
        waitpid(live_pid, NULL, 0);
        live_pid = 0;
    }
    return 0;
}

static const char *fact(const struct target *t, const char *key)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->key[i], key)) return t->val[i];
    fail_msg("target did not report %s", key);
    return NULL;
}

static uint64_t fact_addr(const struct target *t, const char *key)
{
    return strtoull(fact(t, key), NULL, 16);
}

static struct symbolizer *open_for(const struct target *t, const char *debug_dir)
{
    char root[64];
    struct symbolizer *s;
    snprintf(root, sizeof root, "/proc/%d/root", (int)t->pid);
    s = sym_open(t->pid, &t->maps, root, debug_dir);
    assert_non_null(s);
    return s;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The checks every shape with full symbols must pass. */
static void check_full_symbols(const struct target *t, struct symbolizer *s,
                               enum sym_source want_src, int want_lines)
{
    struct sym_result r;
    uint64_t marked = fact_addr(t, "marked"), local = fact_addr(t, "local");
    assert_int_equal(sym_resolve(s, marked, 0, &r), 0);
    assert_string_equal(r.name, "symtarget_marked");
    assert_int_equal(r.sym_start, marked);
    assert_int_equal(r.source, want_src);
    assert_null(r.file);

    assert_int_equal(sym_resolve(s, marked + 4, want_lines, &r), 0);
    assert_string_equal(r.name, "symtarget_marked");
    assert_int_equal(r.sym_start, marked);
    if (want_lines) {
        assert_non_null(r.file);
        assert_true(ends_with(r.file, "symtarget.c"));
        assert_int_equal(r.line, atoi(fact(t, "marked_line")));
    }

    assert_int_equal(sym_resolve(s, local + 1, 0, &r), 0);
    assert_string_equal(r.name, "symtarget_local");
    assert_int_equal(r.sym_start, local);
    assert_int_equal(r.source, want_src);
    assert_true(strstr(r.object, "symtarget") != NULL);
}

/* ---- cases ---------------------------------------------------------------- */

static void test_symtab_pie(void **state)
{
    struct target t;
    char *argv[] = { (char *)paths[T_SYMTAB], NULL };
    (void)state;
    start(&t, argv);
    struct symbolizer *s = open_for(&t, NULL);
    check_full_symbols(&t, s, SYM_SRC_SYMTAB, 1);
    sym_close(s);
    stop(&t);
}

static void test_symtab_non_pie(void **state)
{
    struct target t;
    char *argv[] = { (char *)paths[T_NOPIE], NULL };
    (void)state;
    start(&t, argv);
    /* ET_EXEC: code runs at its link-time address. */
    assert_true(fact_addr(&t, "marked") < 0x10000000ull);
    struct symbolizer *s = open_for(&t, NULL);
    check_full_symbols(&t, s, SYM_SRC_SYMTAB, 1);
    sym_close(s);
    stop(&t);
}

/* Without .debug_aranges every unit's lines are read into one table. */
static void test_lines_without_aranges(void **state)
{
    struct target t;
    char *argv[] = { (char *)paths[T_NOARANGES], NULL };
    (void)state;
    start(&t, argv);
    struct symbolizer *s = open_for(&t, NULL);
    check_full_symbols(&t, s, SYM_SRC_SYMTAB, 1);
    sym_close(s);
    stop(&t);
}

static void test_debuglink(void **state)
{
    struct target t;
    char *argv[] = { (char *)paths[T_STRIPPED], NULL };
    (void)state;
    start(&t, argv);
    struct symbolizer *s = open_for(&t, "/nonexistent-debug-dir");
    check_full_symbols(&t, s, SYM_SRC_DEBUGFILE, 1);
    sym_close(s);
    stop(&t);
}

static int copy_file(const char *from, const char *to, int flip_last_byte)
{
    char buf[1 << 15];
    ssize_t r;
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (in < 0 || out < 0) return -1;
    while ((r = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)r) != r) return -1;
    if (flip_last_byte) {
        off_t end = lseek(out, 0, SEEK_END);
        unsigned char c;
        if (pread(in, &c, 1, end - 1) != 1) return -1;
        c ^= 0xff;
        if (pwrite(out, &c, 1, end - 1) != 1) return -1;
    }
    close(in);
    close(out);
    return 0;
}

static char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return (char *)(s ? s + 1 : p);
}

/* A debuglink file whose CRC does not match must not be used. */
static void test_debuglink_bad_crc(void **state)
{
    char dir[] = "/tmp/symtest-XXXXXX", exe[256], dbg[256];
    struct target t;
    struct sym_result r;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(exe, sizeof exe, "%s/%s", dir, base_name(paths[T_STRIPPED]));
    snprintf(dbg, sizeof dbg, "%s/%s", dir, base_name(paths[T_DEBUG]));
    assert_int_equal(copy_file(paths[T_STRIPPED], exe, 0), 0);
    assert_int_equal(copy_file(paths[T_DEBUG], dbg, 1), 0);
    char *argv[] = { exe, NULL };
    start(&t, argv);
    struct symbolizer *s = open_for(&t, "/nonexistent-debug-dir");
    uint64_t marked = fact_addr(&t, "marked");
    assert_int_equal(sym_resolve(s, marked, 1, &r), 1);
    assert_int_not_equal(r.source, SYM_SRC_DEBUGFILE);
    assert_null(strstr(r.name, "symtarget_marked"));
    assert_null(r.file);
    sym_close(s);
    stop(&t);
    unlink(exe);
    unlink(dbg);
    rmdir(dir);
}

/* A binary deleted after it started is read through /proc/PID/map_files. */
static void test_deleted_binary(void **state)
{
    char dir[] = "/tmp/symtest-XXXXXX", exe[256];
    struct target t;
    struct sym_result r;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(exe, sizeof exe, "%s/%s", dir, base_name(paths[T_SYMTAB]));
    assert_int_equal(copy_file(paths[T_SYMTAB], exe, 0), 0);
    char *argv[] = { exe, NULL };
    start(&t, argv);
    assert_int_equal(unlink(exe), 0);
    assert_int_equal(rmdir(dir), 0);
    sym_maps_free(&t.maps);
    assert_int_equal(sym_maps_load(&t.maps, t.pid), 0);
    const struct sym_mapping *mp = sym_maps_find(&t.maps, fact_addr(&t, "marked"));
    assert_non_null(mp);
    assert_true(ends_with(mp->path, " (deleted)"));
    struct symbolizer *s = open_for(&t, NULL);
    check_full_symbols(&t, s, SYM_SRC_SYMTAB, 1);
    assert_int_equal(sym_resolve(s, fact_addr(&t, "marked"), 0, &r), 0);
    assert_string_equal(r.object, mp->path);
    sym_close(s);
    stop(&t);
}

/* Read the GNU build-id note of an ELF file with libelf. */
static size_t build_id_of(const char *path, unsigned char *out)
{
    size_t len = 0;
    int fd = open(path, O_RDONLY);
    Elf *e;
    assert_true(fd >= 0);
    elf_version(EV_CURRENT);
    e = elf_begin(fd, ELF_C_READ, NULL);
    assert_non_null(e);
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn && !len; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        GElf_Nhdr nh;
        Elf_Data *d;
        size_t off = 0, next, no, dsc;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
        d = elf_getdata(scn, NULL);
        while (d && (next = gelf_getnote(d, off, &nh, &no, &dsc)) > 0) {
            if (nh.n_type == NT_GNU_BUILD_ID && nh.n_descsz <= 64) {
                memcpy(out, (char *)d->d_buf + dsc, nh.n_descsz);
                len = nh.n_descsz;
                break;
            }
            off = next;
        }
    }
    elf_end(e);
    close(fd);
    return len;
}

static void test_build_id_dir(void **state)
{
    char dir[] = "/tmp/symtest-XXXXXX", sub[300], file[600], hex[129];
    unsigned char id[64];
    size_t n;
    struct target t;
    struct sym_result r;
    (void)state;
    n = build_id_of(paths[T_NOLINK], id);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", id[i]);
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/.build-id", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/.build-id/%.2s", dir, hex);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(file, sizeof file, "%s/%s.debug", sub, hex + 2);
    assert_int_equal(copy_file(paths[T_DEBUG], file, 0), 0);

    char *argv[] = { (char *)paths[T_NOLINK], NULL };
    start(&t, argv);
    /* Without the debug dir the stripped PIE has no name for its code. */
    struct symbolizer *s = open_for(&t, "/nonexistent-debug-dir");
    assert_int_equal(sym_resolve(s, fact_addr(&t, "marked"), 0, &r), 1);
    assert_int_not_equal(r.source, SYM_SRC_DEBUGFILE);
    assert_null(strstr(r.name, "symtarget"));
    sym_close(s);
    /* A file at the build-id path that carries no build-id is not taken
     * (the same debug file with its note removed). */
    assert_int_equal(copy_file(paths[T_DEBUG_NOID], file, 0), 0);
    s = open_for(&t, dir);
    assert_int_equal(sym_resolve(s, fact_addr(&t, "marked"), 0, &r), 1);
    assert_int_not_equal(r.source, SYM_SRC_DEBUGFILE);
    sym_close(s);
    assert_int_equal(copy_file(paths[T_DEBUG], file, 0), 0);
    s = open_for(&t, dir);
    check_full_symbols(&t, s, SYM_SRC_DEBUGFILE, 1);
    sym_close(s);
    stop(&t);
    unlink(file);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/.build-id", dir);
    rmdir(sub);
    rmdir(dir);
}

static void test_dynsym_only_library(void **state)
{
    struct target t;
    struct sym_result r;
    char *argv[] = { (char *)paths[T_SYMTAB], (char *)paths[T_LIB_STRIPPED], NULL };
    (void)state;
    start(&t, argv);
    struct symbolizer *s = open_for(&t, "/nonexistent-debug-dir");
    uint64_t exp = fact_addr(&t, "lib_exported"), hid = fact_addr(&t, "lib_hidden");
    assert_int_equal(sym_resolve(s, exp + 2, 0, &r), 0);
    assert_string_equal(r.name, "symlib_exported");
    assert_int_equal(r.sym_start, exp);
    assert_int_equal(r.source, SYM_SRC_DYNSYM);
    assert_true(ends_with(r.object, "libsymlib_stripped.so"));
    /* The hidden function is not in .dynsym: the answer must not pretend. */
    assert_int_equal(sym_resolve(s, hid, 0, &r), 1);
    assert_null(strstr(r.name, "symlib_hidden"));
    assert_int_equal(r.sym_start, 0);
    const char *plus = strstr(r.name, "+0x");
    if (plus) {
        assert_int_equal(r.source, SYM_SRC_DYNSYM);
        assert_true(strtoull(plus + 3, NULL, 16) > 0);
    } else {
        assert_true(strncmp(r.name, "0x", 2) == 0);
    }
    sym_close(s);
    stop(&t);

    /* The unstripped library names it from .symtab. */
    argv[1] = (char *)paths[T_LIB];
    start(&t, argv);
    s = open_for(&t, "/nonexistent-debug-dir");
    assert_int_equal(sym_resolve(s, fact_addr(&t, "lib_hidden") + 1, 0, &r), 0);
    assert_string_equal(r.name, "symlib_hidden");
    assert_int_equal(r.source, SYM_SRC_SYMTAB);
    sym_close(s);
    stop(&t);
}

/* Resolving our own process with root "" (the local filesystem). */
static void test_self_local_root(void **state)
{
    struct sym_maps m;
    struct sym_result r;
    (void)state;
    assert_int_equal(sym_maps_load(&m, getpid()), 0);
    struct symbolizer *s = sym_open(getpid(), &m, "", NULL);
    assert_non_null(s);
    uint64_t a = (uint64_t)(uintptr_t)test_self_local_root;
    assert_int_equal(sym_resolve(s, a + 3, 1, &r), 0);
    assert_string_equal(r.name, "test_self_local_root");
    assert_int_equal(r.sym_start, a);
    assert_true(ends_with(r.file, "test_symbolizer.c"));
    /* Same answer, same pointers, the second time. */
    struct sym_result r2;
    sym_resolve(s, a + 3, 1, &r2);
    assert_ptr_equal(r.name, r2.name);
    assert_ptr_equal(r.file, r2.file);
    /* Nothing mapped there. */
    assert_int_equal(sym_resolve(s, 0x10, 1, &r), 1);
    assert_string_equal(r.name, "0x10");
    assert_string_equal(r.object, "");
    assert_int_equal(r.source, SYM_SRC_NONE);
    sym_close(s);
    sym_maps_free(&m);
}

static void test_update_maps(void **state)
{
    struct sym_maps m, none = { NULL, 0 };
    struct sym_result r;
    uint64_t a = (uint64_t)(uintptr_t)test_update_maps;
    (void)state;
    struct symbolizer *s = sym_open(getpid(), &none, "", NULL);
    assert_non_null(s);
    assert_int_equal(sym_resolve(s, a, 0, &r), 1);
    assert_int_equal(sym_maps_load(&m, getpid()), 0);
    assert_int_equal(sym_update_maps(s, &m), 0);
    sym_maps_free(&m);                    /* the symbolizer keeps its copy */
    assert_int_equal(sym_resolve(s, a, 0, &r), 0);
    assert_string_equal(r.name, "test_update_maps");
    sym_close(s);
}

/* The vdso has no file: it is read out of the process. */
static void test_vdso(void **state)
{
    uint64_t base = getauxval(AT_SYSINFO_EHDR), want = 0;
    struct sym_maps m;
    struct sym_result r;
    (void)state;
    if (!base) skip();
    /* Find __vdso_clock_gettime in the image with libelf directly. */
    const struct sym_mapping *mp;
    assert_int_equal(sym_maps_load(&m, getpid()), 0);
    mp = sym_maps_find(&m, base);
    assert_non_null(mp);
    elf_version(EV_CURRENT);
    Elf *e = elf_memory((char *)(uintptr_t)base, (size_t)(mp->end - mp->start));
    assert_non_null(e);
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM) continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        GElf_Sym sym;
        for (int i = 0; d && gelf_getsym(d, i, &sym); i++) {
            const char *nm = elf_strptr(e, sh.sh_link, sym.st_name);
            if (nm && !strcmp(nm, "__vdso_clock_gettime")) want = sym.st_value;
        }
    }
    elf_end(e);
    if (!want) { sym_maps_free(&m); skip(); }
    struct symbolizer *s = sym_open(getpid(), &m, "", NULL);
    assert_int_equal(sym_resolve(s, base + want + 1, 0, &r), 0);
    assert_true(!strcmp(r.name, "__vdso_clock_gettime") || !strcmp(r.name, "clock_gettime"));
    assert_int_equal(r.sym_start, base + want);
    assert_int_equal(r.source, SYM_SRC_DYNSYM);
    assert_string_equal(r.object, "[vdso]");
    sym_close(s);
    sym_maps_free(&m);
}

/* JIT code: an anonymous executable mapping named by /tmp/perf-PID.map,
 * which is re-read when it grows. */
static void test_perf_map(void **state)
{
    char path[64];
    struct sym_maps m;
    struct sym_result r;
    FILE *f;
    (void)state;
    void *code = mmap(NULL, 8192, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(code != MAP_FAILED);
    uint64_t a = (uint64_t)(uintptr_t)code;
    snprintf(path, sizeof path, "/tmp/perf-%d.map", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%" PRIx64 " 100 jit:first one\n", a);
    fclose(f);
    assert_int_equal(sym_maps_load(&m, getpid()), 0);
    struct symbolizer *s = sym_open(getpid(), &m, "", NULL);
    assert_int_equal(sym_resolve(s, a + 0x10, 1, &r), 0);
    assert_string_equal(r.name, "jit:first one");      /* no escaping here */
    assert_int_equal(r.sym_start, a);
    assert_int_equal(r.source, SYM_SRC_PERFMAP);
    assert_int_equal(sym_resolve(s, a + 0x1000, 0, &r), 1);
    assert_int_equal(r.source, SYM_SRC_NONE);
    f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "0x%" PRIx64 " 0x40 second\n", a + 0x1000);
    fclose(f);
    assert_int_equal(sym_resolve(s, a + 0x1004, 0, &r), 0);
    assert_string_equal(r.name, "second");
    assert_int_equal(r.sym_start, a + 0x1000);
    /* The first answer's name is still valid after the re-read. */
    sym_close(s);
    sym_maps_free(&m);
    unlink(path);
    munmap(code, 8192);
}

/* Debian's /usr/bin/python3.11: non-PIE, stripped, its symbols in
 * python3.11-dbg's build-id debug file. */
static void test_debian_python(void **state)
{
    const char *exe = "/usr/bin/python3.11";
    unsigned char id[64];
    char dbg[256], hex[129], *argv[] = { (char *)exe, "-c",
        "import sys, time; print('ready 1', flush=True); time.sleep(60)", NULL };
    uint64_t eval = 0, eval_size = 0, local = 0;
    char local_name[128] = "";
    size_t n = 0, nf = 0;
    struct target t;
    struct sym_result r;
    (void)state;
    if (access(exe, X_OK) != 0 || (n = build_id_of(exe, id)) < 2) skip();
    for (size_t i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", id[i]);
    snprintf(dbg, sizeof dbg, "/usr/lib/debug/.build-id/%.2s/%s.debug", hex, hex + 2);
    int fd = open(dbg, O_RDONLY);
    if (fd < 0) skip();
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    assert_non_null(e);
    GElf_Sym *funcs = NULL;
    Elf_Data *d = NULL;
    size_t link = 0;
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB) continue;
        d = elf_getdata(scn, NULL);
        link = sh.sh_link;
        funcs = calloc(d->d_size / sizeof(Elf64_Sym) + 1, sizeof *funcs);
        assert_non_null(funcs);
        GElf_Sym sym;
        for (int i = 0; gelf_getsym(d, i, &sym); i++)
            if (GELF_ST_TYPE(sym.st_info) == STT_FUNC && sym.st_value)
                funcs[nf++] = sym;
    }
    /* _PyEval_EvalFrameDefault, and a static function of the interpreter
     * that no other symbol shares an address with (nothing exported to
     * match: .dynsym alone would name it after some export). */
    for (size_t i = 0; i < nf; i++) {
        const char *nm = elf_strptr(e, link, funcs[i].st_name);
        if (!nm) continue;
        if (!strcmp(nm, "_PyEval_EvalFrameDefault")) {
            eval = funcs[i].st_value;
            eval_size = funcs[i].st_size;
        }
        if (local || GELF_ST_BIND(funcs[i].st_info) != STB_LOCAL || funcs[i].st_size < 64)
            continue;
        size_t same = 0;
        for (size_t j = 0; j < nf; j++)
            same += funcs[j].st_value == funcs[i].st_value;
        if (same == 1) {
            local = funcs[i].st_value;
            snprintf(local_name, sizeof local_name, "%s", nm);
        }
    }
    free(funcs);
    elf_end(e);
    close(fd);
    assert_true(eval != 0 && eval_size > 100);
    start(&t, argv);
    struct symbolizer *s = open_for(&t, NULL);
    assert_int_equal(sym_resolve(s, eval + eval_size / 2, 1, &r), 0);
    assert_string_equal(r.name, "_PyEval_EvalFrameDefault");
    assert_int_equal(r.sym_start, eval);
    assert_int_equal(r.source, SYM_SRC_DEBUGFILE);
    assert_string_equal(r.object, exe);
    assert_non_null(r.file);
    assert_true(ends_with(r.file, "ceval.c"));
    assert_true(r.line > 0);
    assert_true(local != 0);
    assert_int_equal(sym_resolve(s, local + 8, 0, &r), 0);
    assert_string_equal(r.name, local_name);
    assert_int_equal(r.sym_start, local);
    sym_close(s);
    stop(&t);
}

int main(int argc, char **argv)
{
    if (argc != 1 + T_COUNT) {
        fprintf(stderr, "usage: %s symtarget symtarget_nopie symtarget_stripped "
                        "symtarget_nolink symtarget.debug libsymlib.so libsymlib_stripped.so "
                        "symtarget_noaranges\n",
                argv[0]);
        return 2;
    }
    for (int i = 0; i < T_COUNT; i++) {
        /* Targets are started by path from a forked child: make it absolute. */
        paths[i] = realpath(argv[1 + i], NULL);
        if (!paths[i]) {
            fprintf(stderr, "%s: %s\n", argv[1 + i], strerror(errno));
            return 2;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_symtab_pie, kill_leftover),
        cmocka_unit_test_teardown(test_symtab_non_pie, kill_leftover),
        cmocka_unit_test_teardown(test_lines_without_aranges, kill_leftover),
        cmocka_unit_test_teardown(test_debuglink, kill_leftover),
        cmocka_unit_test_teardown(test_debuglink_bad_crc, kill_leftover),
        cmocka_unit_test_teardown(test_deleted_binary, kill_leftover),
        cmocka_unit_test_teardown(test_build_id_dir, kill_leftover),
        cmocka_unit_test_teardown(test_dynsym_only_library, kill_leftover),
        cmocka_unit_test_teardown(test_self_local_root, kill_leftover),
        cmocka_unit_test_teardown(test_update_maps, kill_leftover),
        cmocka_unit_test_teardown(test_vdso, kill_leftover),
        cmocka_unit_test_teardown(test_perf_map, kill_leftover),
        cmocka_unit_test_teardown(test_debian_python, kill_leftover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
