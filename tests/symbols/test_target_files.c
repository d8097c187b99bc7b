/*
 * test_target_files.c - opening a path the target names under its root
 * (sym_open_rooted): links inside a container's root, absolute ones and
 * ones that climb with "..", resolve inside that root, never to the
 * attacher's (the host's) files; plain paths still open; a FIFO or a
 * directory is refused at once; magic links (/proc/self/root) are not
 * followed; a lookup through ".." raced by renames elsewhere (openat2's
 * EAGAIN) still opens.
 * Each test builds its own root in a fresh temporary directory, and a
 * "host" file outside it whose absolute path a link in the root names.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "symbols.h"

struct scene {
    char root[64];              /* the target's root */
    char host_dir[64];          /* outside it */
    char host_file[128];        /* absolute, on the host */
    char shadow[256];           /* root + host_file: the same name inside the root */
};

/* Confinement needs openat2 (Linux 5.6, not refused by a seccomp filter);
 * without it sym_open_rooted opens root+path, and those tests skip. */
static void need_openat2(void)
{
    struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
    if (fd < 0)
        skip();
    close(fd);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* What fd holds, as a string (the files here are a few bytes). */
static void slurp(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);
    assert_true(n >= 0);
    buf[n] = 0;
}

/* root+path opens (sym_open_rooted) and holds text. */
static void expect_text(const char *root, const char *path, const char *text)
{
    char buf[64];
    int fd = sym_open_rooted(root, path, NULL);
    assert_true(fd >= 0);
    slurp(fd, buf, sizeof buf);
    assert_string_equal(buf, text);
    close(fd);
}

static void mkdirs_for(const char *file)
{
    char p[256];
    snprintf(p, sizeof p, "%s", file);
    for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        if (mkdir(p, 0755) != 0)
            assert_int_equal(errno, EEXIST);
        *s = '/';
    }
}

static int setup(void **state)
{
    struct scene *sc = calloc(1, sizeof(*sc));
    assert_non_null(sc);
    snprintf(sc->root, sizeof sc->root, "/tmp/vmprof-root-XXXXXX");
    snprintf(sc->host_dir, sizeof sc->host_dir, "/tmp/vmprof-host-XXXXXX");
    assert_non_null(mkdtemp(sc->root));
    assert_non_null(mkdtemp(sc->host_dir));
    snprintf(sc->host_file, sizeof sc->host_file, "%s/secret", sc->host_dir);
    snprintf(sc->shadow, sizeof sc->shadow, "%s%s", sc->root, sc->host_file);
    put(sc->host_file, "host\n");
    char lib[128];
    snprintf(lib, sizeof lib, "%s/lib", sc->root);
    assert_int_equal(mkdir(lib, 0755), 0);
    *state = sc;
    return 0;
}

static int teardown(void **state)
{
    struct scene *sc = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", sc->root, sc->host_dir);
    assert_int_equal(system(cmd), 0);
    free(sc);
    return 0;
}

/* /lib/x, an absolute link to the host file: the host's file must not
 * open; the file of that name inside the root must. */
static void test_absolute_link_stays_in_root(void **state)
{
    struct scene *sc = *state;
    need_openat2();
    char link[128];
    struct stat st;
    snprintf(link, sizeof link, "%s/lib/x", sc->root);
    assert_int_equal(symlink(sc->host_file, link), 0);

    errno = 0;
    assert_int_equal(sym_open_rooted(sc->root, "/lib/x", &st), -1);
    assert_int_equal(errno, ENOENT);

    mkdirs_for(sc->shadow);
    put(sc->shadow, "root\n");
    expect_text(sc->root, "/lib/x", "root\n");
}

/* A relative link that climbs far past the root, and a path given with
 * "..": both stop at the root. */
static void test_dotdot_stays_in_root(void **state)
{
    struct scene *sc = *state;
    need_openat2();
    char link[128], target[256], path[256];
    snprintf(link, sizeof link, "%s/lib/y", sc->root);
    snprintf(target, sizeof target, "../../../../../../../..%s", sc->host_file);
    assert_int_equal(symlink(target, link), 0);
    snprintf(path, sizeof path, "/lib/../../../..%s", sc->host_file);

    assert_int_equal(sym_open_rooted(sc->root, "/lib/y", NULL), -1);
    assert_int_equal(sym_open_rooted(sc->root, path, NULL), -1);

    mkdirs_for(sc->shadow);
    put(sc->shadow, "root\n");
    expect_text(sc->root, "/lib/y", "root\n");
    expect_text(sc->root, path, "root\n");
}

/* A file in the root opens with its stat; a FIFO (no writer) and a
 * directory are refused at once; root "" is the attacher's own root. */
static void test_plain_files_and_refusals(void **state)
{
    struct scene *sc = *state;
    char p[128], buf[32];
    struct stat st, want;
    snprintf(p, sizeof p, "%s/lib/libz.so", sc->root);
    put(p, "elf?\n");
    assert_int_equal(stat(p, &want), 0);
    int fd = sym_open_rooted(sc->root, "/lib/libz.so", &st);
    assert_true(fd >= 0);
    assert_int_equal(st.st_ino, want.st_ino);
    slurp(fd, buf, sizeof buf);
    assert_string_equal(buf, "elf?\n");
    close(fd);

    snprintf(p, sizeof p, "%s/lib/fifo", sc->root);
    assert_int_equal(mkfifo(p, 0600), 0);
    time_t t0 = time(NULL);
    assert_int_equal(sym_open_rooted(sc->root, "/lib/fifo", &st), -1);
    assert_true(time(NULL) - t0 < 2);
    assert_int_equal(sym_open_rooted(sc->root, "/lib", &st), -1);
    assert_int_equal(sym_open_rooted(sc->root, "/lib/none", &st), -1);

    expect_text("", sc->host_file, "host\n");
    assert_int_equal(sym_open_rooted("/nonexistent-root-dir", "/lib/libz.so", &st), -1);
}

/* The perf map of a process, followed through a run, read under the root:
 * a link planted at /tmp/perf-PID.map naming a host file gives nothing. */
static void test_perfmap_file_stays_in_root(void **state)
{
    struct scene *sc = *state;
    need_openat2();
    char dir[128], link[160];
    struct sym_perfmap_file f;
    put(sc->host_file, "1000 10 host_name\n");
    snprintf(dir, sizeof dir, "%s/tmp", sc->root);
    assert_int_equal(mkdir(dir, 01777), 0);
    snprintf(link, sizeof link, "%s/tmp/perf-%d.map", sc->root, (int)getpid());
    assert_int_equal(symlink(sc->host_file, link), 0);

    assert_int_equal(sym_perfmap_file_open(&f, getpid(), sc->root), 0);
    sym_perfmap_file_refresh(&f, 1 << 20);
    assert_int_equal(f.have, 0);
    assert_null(sym_perfmap_find(&f.pm, 0x1004));

    mkdirs_for(sc->shadow);
    put(sc->shadow, "1000 10 root_name\n");
    sym_perfmap_file_refresh(&f, 1 << 20);
    assert_int_equal(f.have, 1);
    assert_non_null(sym_perfmap_find(&f.pm, 0x1004));
    assert_string_equal(sym_perfmap_find(&f.pm, 0x1004)->name, "root_name");
    /* changed: read again; unchanged: kept (not read again) */
    put(sc->shadow, "1000 10 root_name\n2000 10 second\n");
    sym_perfmap_file_refresh(&f, 1 << 20);
    assert_int_equal(f.pm.n, 2);
    const struct sym_perfmap_entry *before = f.pm.v;
    sym_perfmap_file_refresh(&f, 1 << 20);
    assert_ptr_equal(f.pm.v, before);
    sym_perfmap_file_close(&f);
}

/* The roots the attacher passes: /proc/PID/root, or /proc/self/fd/N
 * holding it; a magic link inside the root is not followed. */
static void test_proc_roots_and_magic_links(void **state)
{
    struct scene *sc = *state;
    char p[128], root[64];
    need_openat2();
    snprintf(p, sizeof p, "%s/lib/libz.so", sc->root);
    put(p, "elf?\n");
    int dir = open(sc->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    assert_true(dir >= 0);
    snprintf(root, sizeof root, "/proc/self/fd/%d", dir);
    expect_text(root, "/lib/libz.so", "elf?\n");
    close(dir);
    snprintf(root, sizeof root, "/proc/%d/root", (int)getpid());
    expect_text(root, sc->host_file, "host\n");
    /* /proc/self/root is a magic link: refused (it would leave any root) */
    errno = 0;
    assert_int_equal(sym_open_rooted("/", "/proc/self/root/etc/hostname", NULL), -1);
    assert_int_equal(errno, ELOOP);
}

struct renamer { const char *dir; volatile int stop; };

static void *rename_loop(void *arg)
{
    struct renamer *r = arg;
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/a", r->dir);
    snprintf(b, sizeof b, "%s/b", r->dir);
    put(a, "x");
    while (!r->stop) {
        if (rename(a, b) != 0 || rename(b, a) != 0)
            break;
    }
    return NULL;
}

/* A relative build-id link (../../../usr/bin/x.debug, as distributions
 * ship them) opened while another thread renames files elsewhere: the
 * kernel fails such lookups with EAGAIN now and then (11% here without a
 * retry); every open must succeed. */
static void test_dotdot_lookup_raced_by_renames(void **state)
{
    struct scene *sc = *state;
    char p[256], link[256];
    need_openat2();
    snprintf(p, sizeof p, "%s/usr/bin/x.debug", sc->root);
    mkdirs_for(p);
    put(p, "debug\n");
    snprintf(link, sizeof link, "%s/lib/.build-id/ab/cdef.debug", sc->root);
    mkdirs_for(link);
    assert_int_equal(symlink("../../../usr/bin/x.debug", link), 0);
    struct renamer r = { sc->host_dir, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, rename_loop, &r), 0);
    int failed = 0, first_errno = 0;
    for (int i = 0; i < 20000; i++) {
        int fd = sym_open_rooted(sc->root, "/lib/.build-id/ab/cdef.debug", NULL);
        if (fd < 0) {
            if (!failed++)
                first_errno = errno;
        } else {
            close(fd);
        }
    }
    r.stop = 1;
    pthread_join(th, NULL);
    if (failed)
        print_error("%d of 20000 opens failed, first with errno %d\n", failed, first_errno);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_absolute_link_stays_in_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotdot_stays_in_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_files_and_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_perfmap_file_stays_in_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_roots_and_magic_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotdot_lookup_raced_by_renames, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
