/*
 * test_shim.c - libvmprof-shim.so in real processes: nothing is created
 * when it is preloaded into a shell or dlopen'ed, the C API creates the
 * registry lazily and publishes what it is given, a fork child gets its
 * own copy (and a raw clone's inherited copy is refused by the reader), a
 * closed registry fd is still found, and preloading it into CPython
 * publishes Py_Version, _PyRuntime and the interpreter's code range, and
 * (3.11-3.13) counts the code objects the interpreter frees.
 *
 * The shim is dlopen'ed (SHIM_PATH), not linked, so the test sees the
 * process before and after the first API call. Tests run in order and
 * share the loaded shim.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry_reader.h"
#include "vmprof_shim.h"

static int (*p_init)(const char *, const void *);
static int (*p_register_code)(uint64_t, const char *);
static int (*p_register_thread)(struct vmprof_shim_frame **);
static int (*p_unregister_thread)(void);

static __thread struct vmprof_shim_frame *tls_top;
static char err[256];

/* Number of fds of this process that are registries; *ino gets the last
 * one's inode. */
static int registry_fds(ino_t *ino, int *fdnum)
{
    char path[64], link[128];
    struct dirent *de;
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        ssize_t k;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%.20s", de->d_name);
        k = readlink(path, link, sizeof link - 1);
        if (k <= 0)
            continue;
        link[k] = '\0';
        if (strcmp(link, "/memfd:vmprof-registry (deleted)") == 0) {
            struct stat st;

            n++;
            if (ino && stat(path, &st) == 0)
                *ino = st.st_ino;
            if (fdnum)
                *fdnum = atoi(de->d_name);
        }
    }
    closedir(d);
    return n;
}

static int maps_mention(const char *what)
{
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;

    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        if (strstr(line, what))
            found = 1;
    fclose(f);
    return found;
}

static struct registry *open_self(void)
{
    struct registry *r = NULL;

    assert_int_equal(registry_open(getpid(), &r, err, sizeof err), 0);
    return r;
}

static int count_codes(struct registry *r)
{
    return registry_poll_codes(r, NULL, NULL, 0);
}

/* ---- nothing until asked ----------------------------------------------- */

static void test_preload_into_shell_creates_nothing(void **state)
{
    char cmd[1024], buf[4096];
    size_t n, total = 0;
    char *out = NULL;
    FILE *p;

    snprintf(cmd, sizeof cmd, "LD_PRELOAD=%s /bin/sh -c 'ls -l /proc/self/fd; "
             "cat /proc/self/maps; ls -l /proc/$$/fd; grep -h memfd /proc/$$/maps; true' 2>&1",
             SHIM_PATH);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        out = realloc(out, total + n + 1);
        assert_non_null(out);
        memcpy(out + total, buf, n);
        total += n;
        out[total] = '\0';
    }
    assert_int_equal(pclose(p), 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "libvmprof-shim.so"));  /* it was loaded */
    assert_null(strstr(out, "vmprof-registry"));        /* and made nothing */
    free(out);
}

static void test_dlopen_creates_nothing(void **state)
{
    void *h = dlopen(SHIM_PATH, RTLD_NOW | RTLD_GLOBAL);

    assert_non_null(h);
    p_init = (int (*)(const char *, const void *))dlsym(h, "vmprof_shim_init");
    p_register_code = (int (*)(uint64_t, const char *))dlsym(h, "vmprof_shim_register_code");
    p_register_thread = (int (*)(struct vmprof_shim_frame **))
        dlsym(h, "vmprof_shim_register_thread");
    p_unregister_thread = (int (*)(void))dlsym(h, "vmprof_shim_unregister_thread");
    assert_non_null(p_init);
    assert_non_null(p_register_code);
    assert_non_null(p_register_thread);
    assert_non_null(p_unregister_thread);
    assert_null(dlsym(h, "vmreg_code_append"));      /* internals are hidden */
    assert_int_equal(registry_fds(NULL, NULL), 0);
    assert_false(maps_mention("vmprof-registry"));
}

static void test_invalid_arguments_create_nothing(void **state)
{
    char big[VMPROF_REG_NAME_MAX + 2];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    errno = 0;
    assert_int_equal(p_register_code(1, NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(p_register_code(1, ""), -1);
    assert_int_equal(p_register_code(1, "bad\xc3"), -1);
    assert_int_equal(p_register_code(1, "tab\there"), -1);
    assert_int_equal(p_register_code(1, big), -1);
    assert_int_equal(p_init(NULL, NULL), -1);
    assert_int_equal(p_init("", NULL), -1);
    assert_int_equal(p_init("0123456789012345678901234567890123456789012345678901234567890123",
                            NULL), -1);
    assert_int_equal(p_register_thread(NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(registry_fds(NULL, NULL), 0);
}

/* ---- the C API --------------------------------------------------------- */

struct seen {
    int n;
    uint64_t last_id;
    char last[VMPROF_REG_NAME_MAX + 1];
};

static void collect(void *arg, uint64_t id, const char *name, size_t len)
{
    struct seen *s = arg;

    s->n++;
    s->last_id = id;
    memcpy(s->last, name, len + 1);
}

static void test_first_registration_creates_registry(void **state)
{
    const struct registry_info *in;
    struct seen s = { 0 };
    struct registry *r;
    char big[VMPROF_REG_NAME_MAX + 1];

    assert_int_equal(p_register_code(7, "t:seven:7:t.c"), 0);
    assert_int_equal(registry_fds(NULL, NULL), 1);
    assert_true(maps_mention("/memfd:vmprof-registry"));
    r = open_self();
    in = registry_info(r);
    assert_int_equal(in->kind, VMPROF_REG_KIND_SHADOW);
    assert_string_equal(in->vm_name, "vm");
    assert_int_equal(in->creator_pid, (uint32_t)getpid());
    assert_int_equal(in->fork_generation, 0);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 1);
    assert_int_equal(s.last_id, 7);
    assert_string_equal(s.last, "t:seven:7:t.c");
    memset(big, 'y', VMPROF_REG_NAME_MAX);
    big[VMPROF_REG_NAME_MAX] = '\0';
    assert_int_equal(p_register_code(UINT64_MAX, big), 0);     /* the longest name */
    assert_int_equal(p_register_code(8, "t:caf\xc3\xa9:8:t.c"), 0);
    assert_int_equal(registry_poll_codes(r, collect, &s, 0), 2);
    assert_string_equal(s.last, "t:caf\xc3\xa9:8:t.c");
    registry_close(r);
    assert_int_equal(registry_fds(NULL, NULL), 1);      /* still one */
}

static void test_init_describes_vm(void **state)
{
    const struct registry_info *in;
    struct registry *r;
    uintptr_t here = (uintptr_t)test_init_describes_vm;
    uintptr_t shim_code = (uintptr_t)p_init;

    assert_int_equal(p_init("testvm", (const void *)test_init_describes_vm), 0);
    r = open_self();
    in = registry_info(r);
    assert_int_equal(in->kind, VMPROF_REG_KIND_SHADOW);
    assert_string_equal(in->vm_name, "testvm");
    assert_true(in->flags & VMPROF_REG_F_TEXT_RANGE);
    assert_true(here >= in->text_lo && here < in->text_hi);
    assert_false(shim_code >= in->text_lo && shim_code < in->text_hi);
    assert_int_equal(in->py_runtime, 0);
    registry_close(r);
    /* an address in no object: no range */
    assert_int_equal(p_init("testvm", (const void *)16), 0);
    r = open_self();
    assert_false(registry_info(r)->flags & VMPROF_REG_F_TEXT_RANGE);
    registry_close(r);
    assert_int_equal(p_init("testvm", (const void *)test_init_describes_vm), 0);
}

static pid_t thread_tid;
static struct vmprof_shim_frame *thread_top;

static void *exit_without_unregister(void *arg)
{
    thread_tid = (pid_t)gettid();
    if (p_register_thread(&thread_top) != 0)
        return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    static struct vmprof_shim_frame *other_top;
    struct registry *r = open_self();
    pid_t me = (pid_t)gettid();
    pthread_t th;
    uint64_t top;
    void *ret;

    assert_int_equal(registry_thread_anchor(r, me, &top), 1);
    assert_int_equal(p_register_thread(&tls_top), 0);
    assert_int_equal(registry_thread_anchor(r, me, &top), 0);
    assert_int_equal(top, (uint64_t)(uintptr_t)&tls_top);
    /* registering again replaces the entry */
    assert_int_equal(p_register_thread(&other_top), 0);
    assert_int_equal(registry_thread_anchor(r, me, &top), 0);
    assert_int_equal(top, (uint64_t)(uintptr_t)&other_top);
    assert_int_equal(p_unregister_thread(), 0);
    assert_int_equal(registry_thread_anchor(r, me, &top), 1);

    /* a thread that exits registered is unregistered by the destructor */
    assert_int_equal(pthread_create(&th, NULL, exit_without_unregister, NULL), 0);
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    assert_int_equal(registry_thread_anchor(r, thread_tid, &top), 1);

    assert_int_equal(p_register_thread(&tls_top), 0);      /* kept for the fork test */
    registry_close(r);
}

/* ---- fork ------------------------------------------------------------ */

/* The child's checks; returns 0 or the number of the failed check. */
static int fork_child_checks(ino_t parent_ino, int parent_codes)
{
    const struct registry_info *in;
    struct registry *r = NULL;
    ino_t ino = 0;
    uint64_t top;

    if (registry_fds(&ino, NULL) != 1)
        return 1;
    if (ino == parent_ino)
        return 2;
    if (registry_open(getpid(), &r, err, sizeof err) != 0)
        return 3;
    in = registry_info(r);
    if (in->creator_pid != (uint32_t)getpid() || in->fork_generation != 1)
        return 4;
    if (count_codes(r) != parent_codes)
        return 5;
    if (registry_thread_anchor(r, getpid(), &top) != 0 || top != (uint64_t)(uintptr_t)&tls_top)
        return 6;
    if (p_register_code(99, "child:only:1:c.c") != 0 || count_codes(r) != 1)
        return 7;
    if (strcmp(in->vm_name, "testvm") != 0 || !(in->flags & VMPROF_REG_F_TEXT_RANGE))
        return 8;
    registry_close(r);
    return 0;
}

static void test_fork_child_gets_own_copy(void **state)
{
    struct registry *r = open_self();
    ino_t ino = 0;
    int codes, status;
    uint64_t top;
    pid_t pid;

    assert_int_equal(registry_fds(&ino, NULL), 1);
    codes = count_codes(r);
    assert_true(codes >= 3);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fork_child_checks(ino, codes));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent's registry is untouched by the child */
    assert_int_equal(count_codes(r), 0);
    assert_int_equal(registry_info(r)->fork_generation, 0);
    assert_int_equal(registry_thread_anchor(r, (pid_t)gettid(), &top), 0);
    assert_int_equal(top, (uint64_t)(uintptr_t)&tls_top);
    registry_close(r);
    r = open_self();
    assert_int_equal(count_codes(r), codes);
    registry_close(r);
}

/* A clone that bypasses the fork handlers (the raw system call) inherits
 * the parent's registry; the reader must refuse it. */
static void test_raw_fork_copy_is_refused(void **state)
{
    int status;
    long pid = syscall(SYS_fork);

    assert_true(pid >= 0);
    if (pid == 0) {
        struct registry *r = NULL;
        int rc = registry_open(getpid(), &r, err, sizeof err);

        _exit(rc == 1 && r == NULL && strstr(err, "inherited") ? 0 : 1);
    }
    assert_int_equal(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The application closes the registry fd and reuses its number: the
 * reader still finds the registry through /proc/PID/maps, and a fork
 * child never closes the application's file. */
static void test_closed_fd(void **state)
{
    struct registry *r = NULL;
    int fd = -1, other, status;
    pid_t pid;

    assert_int_equal(registry_fds(NULL, &fd), 1);
    assert_int_equal(close(fd), 0);
    other = open("/dev/null", O_RDONLY);
    assert_int_equal(other, fd);
    assert_int_equal(registry_open(getpid(), &r, err, sizeof err), 0);
    assert_int_equal(registry_info(r)->kind, VMPROF_REG_KIND_SHADOW);
    registry_close(r);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct stat a, b;
        int ok = fstat(other, &a) == 0 && stat("/dev/null", &b) == 0 &&
                 a.st_ino == b.st_ino && registry_fds(NULL, NULL) == 1 &&
                 registry_open(getpid(), &r, err, sizeof err) == 0;

        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(other);
}

/* ---- CPython ------------------------------------------------------------ */

static const char py_script[] =
    "import ctypes, os, sys\n"
    "api = ctypes.pythonapi\n"
    "rt = ctypes.addressof(ctypes.c_char.in_dll(api, '_PyRuntime'))\n"
    "fn = ctypes.cast(api.Py_Initialize, ctypes.c_void_p).value\n"
    "print(os.getpid(), sys.hexversion, rt, fn, flush=True)\n"
    "sys.stdin.readline()\n"
    "for i in range(100):\n"
    "    c = compile('x = %d' % i, '<t>', 'exec')\n"
    "    del c\n"
    "print('freed', flush=True)\n"
    "sys.stdin.read()\n";

/* Runs python with the shim preloaded and checks what its registry says. */
static void check_python(const char *python)
{
    unsigned long long hexv, rt, fn;
    int in[2], out[2], status, pypid;
    struct registry *r = NULL;
    const struct registry_info *info;
    const uint64_t *frees;
    char line[256];
    FILE *f;
    pid_t pid;

    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        setenv("LD_PRELOAD", SHIM_PATH, 1);
        execl(python, python, "-c", py_script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    f = fdopen(out[0], "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "%d %llu %llu %llu", &pypid, &hexv, &rt, &fn), 4);
    assert_int_equal(registry_open(pypid, &r, err, sizeof err), 0);
    info = registry_info(r);
    assert_int_equal(info->kind, VMPROF_REG_KIND_CPYTHON);
    assert_string_equal(info->vm_name, "cpython");
    assert_int_equal(info->vm_version, hexv);
    assert_int_equal(info->py_runtime, rt);
    assert_int_equal(info->creator_pid, (uint32_t)pypid);
    assert_true(info->flags & VMPROF_REG_F_TEXT_RANGE);
    assert_true(fn >= info->text_lo && fn < info->text_hi);
    assert_int_equal(!!(info->flags & VMPROF_REG_F_PY_DEBUG_OFFSETS), hexv >= 0x030d0000);
    /* 3.11-3.13: every code object freed is counted (3.14 counts itself) */
    frees = registry_py_code_frees(r);
    assert_int_equal(frees != NULL, hexv >= 0x030b0000 && hexv < 0x030e0000);
    if (frees) {
        uint64_t before = __atomic_load_n(frees, __ATOMIC_ACQUIRE);

        assert_int_equal(write(in[1], "go\n", 3), 3);
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, "freed\n");
        assert_true(__atomic_load_n(frees, __ATOMIC_ACQUIRE) >= before + 100);
    }
    registry_close(r);
    close(in[1]);
    fclose(f);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_cpython_preload(void **state)
{
    const char *pythons[] = { PYTHON3_PATH, "/usr/bin/python3.11" };
    int ran = 0;
    size_t i;

    for (i = 0; i < sizeof pythons / sizeof pythons[0]; i++) {
        if (!pythons[i][0] || access(pythons[i], X_OK) != 0)
            continue;
        check_python(pythons[i]);
        ran++;
    }
    if (!ran)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preload_into_shell_creates_nothing),
        cmocka_unit_test(test_dlopen_creates_nothing),
        cmocka_unit_test(test_invalid_arguments_create_nothing),
        cmocka_unit_test(test_first_registration_creates_registry),
        cmocka_unit_test(test_init_describes_vm),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fork_child_gets_own_copy),
        cmocka_unit_test(test_raw_fork_copy_is_refused),
        cmocka_unit_test(test_closed_fd),
        cmocka_unit_test(test_cpython_preload),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
