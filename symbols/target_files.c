/*
 * target_files.c - opening files that the target (or whoever shares its
 * root) controls: objects, debug files, perf maps.
 *
 * Every such open goes through sym_open_regular: read-only, close-on-exec,
 * O_NONBLOCK and O_NOCTTY (a FIFO or a device planted at the path can
 * neither hang nor take over the attacher), and only a regular file is
 * returned. A perf map is also checked for its owner (sym_owners): the
 * target writes it as one of its own users, so a file there owned by
 * someone else was planted (e.g. a predictable /tmp/perf-PID.map) and is
 * not read.
 * A path the target names is looked up under its root (sym_open_rooted)
 * the way the target itself would: symbolic links, absolute ones and ".."
 * included, stay inside that root (openat2's RESOLVE_IN_ROOT), so a
 * container cannot point the attacher at a file of the host. Only where
 * openat2 is missing (kernels before 5.6, or a seccomp filter that refuses
 * it: sym_rooted_confined, asked once) is root+path opened from the
 * attacher's own root, as before; the caller says so to the user.
 */
#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* fd if it is a regular file (its stat in *st), else closed and -1. */
static int keep_regular(int fd, struct stat *st)
{
    struct stat tmp;
    if (!st)
        st = &tmp;
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

int sym_open_regular(const char *path, struct stat *st)
{
    return keep_regular(open(path, OPEN_FLAGS), st);
}

/* Whether openat2 with RESOLVE_IN_ROOT works here, asked once: 1 yes, 0 no
 * (ENOSYS before Linux 5.6, or refused by a seccomp filter). */
int sym_rooted_confined(void)
{
    static int known = -1;
    if (known < 0) {
        struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
        int fd = (int)syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
        known = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    return known;
}

/* openat2 fails with EAGAIN when a rename or a mount anywhere raced a
 * lookup that went through ".." (openat2(2)); build-id links are often
 * relative ("../../usr/bin/x.debug"). Tried again this many times. */
#define ROOTED_TRIES 16

int sym_open_rooted(const char *root, const char *path, struct stat *st)
{
    if (!root || !root[0])
        return sym_open_regular(path, st);
    if (!sym_rooted_confined()) {
        char *p;
        if (asprintf(&p, "%s%s", root, path) < 0)
            return -1;
        int fd = sym_open_regular(p, st);
        int e = errno;
        free(p);
        errno = e;
        return fd;
    }
    int dir = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    struct open_how how = {
        .flags = OPEN_FLAGS,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    int fd = -1;
    for (int i = 0; i < ROOTED_TRIES; i++) {
        fd = (int)syscall(SYS_openat2, dir, path, &how, sizeof(how));
        if (fd >= 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    int e = errno;
    close(dir);
    errno = e;
    return keep_regular(fd, st);
}

void sym_owners_of(pid_t pid, struct sym_owners *o)
{
    char path[64], line[256];
    o->n = 0;
    o->uid[o->n++] = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        unsigned long u[4];
        if (sscanf(line, "Uid: %lu %lu %lu %lu", &u[0], &u[1], &u[2], &u[3]) == 4) {
            for (int i = 0; i < 4; i++)
                o->uid[o->n++] = (uid_t)u[i];
            break;
        }
    }
    fclose(f);
}

int sym_owners_allow(const struct sym_owners *o, uid_t uid)
{
    for (int i = 0; i < o->n; i++)
        if (o->uid[i] == uid)
            return 1;
    return 0;
}
