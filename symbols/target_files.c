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
 */
#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sym_open_regular(const char *path, struct stat *st)
{
    struct stat tmp;
    if (!st)
        st = &tmp;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
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
