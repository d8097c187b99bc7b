/*
 * debug_file.c - where a separate debug file for an object may live, and
 * the CRC that proves a .gnu_debuglink match.
 *
 * Order (as gdb and perf look): the build-id path
 * DEBUG_DIR/.build-id/xx/rest.debug, then the .gnu_debuglink name in the
 * object's directory, in DIR/.debug/, and in DEBUG_DIR/DIR/. Each is tried
 * under the target's root first, then, when a root is given, on the host
 * (a target that just exited has no /proc/PID/root any more). Host copies
 * are safe because the caller verifies the build-id or the CRC.
 * A debuglink name is data from the object: one containing '/' or naming
 * "." or ".." is refused.
 */
#include "elf_object.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void add(struct debug_candidate *out, size_t *n, int by_build_id,
                const char *root, const char *a, const char *b, const char *c)
{
    char *s;
    if (*n >= DEBUG_MAX_CANDIDATES) return;
    if (asprintf(&s, "%s%s%s", a, b, c) < 0) return;
    out[*n].root = root;
    out[*n].path = s;
    out[*n].by_build_id = by_build_id;
    (*n)++;
}

/* Add a+b+c under root and, if root is not empty, also on the host. */
static void add_rooted(struct debug_candidate *out, size_t *n, int by_build_id,
                       const char *root, const char *a, const char *b, const char *c)
{
    add(out, n, by_build_id, root, a, b, c);
    if (*root)
        add(out, n, by_build_id, "", a, b, c);
}

static int sane_link_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

size_t debug_file_candidates(const struct debug_query *q,
                             struct debug_candidate out[DEBUG_MAX_CANDIDATES])
{
    size_t n = 0;
    if (q->build_id_len >= 2 && q->build_id_len <= 64) {
        char hex[2 * 64 + 1], sub[4 + 2 + 1 + 1];
        for (size_t i = 0; i < q->build_id_len; i++)
            snprintf(hex + 2 * i, 3, "%02x", q->build_id[i]);
        snprintf(sub, sizeof sub, "/%.2s/", hex);
        char *name;
        if (asprintf(&name, "%s.debug", hex + 2) >= 0) {
            char *mid;
            if (asprintf(&mid, "/.build-id%s", sub) >= 0) {
                add_rooted(out, &n, 1, q->root, q->debug_dir, mid, name);
                free(mid);
            }
            free(name);
        }
    }
    if (q->debuglink && sane_link_name(q->debuglink) && q->path[0] == '/') {
        const char *slash = strrchr(q->path, '/');
        char *dir = strndup(q->path, (size_t)(slash - q->path) + 1);   /* keeps the '/' */
        if (dir) {
            add_rooted(out, &n, 0, q->root, dir, "", q->debuglink);
            add_rooted(out, &n, 0, q->root, dir, ".debug/", q->debuglink);
            add_rooted(out, &n, 0, q->root, q->debug_dir, dir, q->debuglink);
            free(dir);
        }
    }
    return n;
}

/* Reflected CRC-32, polynomial 0xEDB88320 (what zlib's crc32() and
 * .gnu_debuglink use), one table lookup per byte: ~20 ms for an 11 MB
 * debug file, paid only when a debuglink candidate exists. */
static uint32_t crc_table[256];

static void crc_init(void)
{
    if (crc_table[1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

int debug_file_crc32(int fd, uint32_t *out)
{
    enum { BUFSZ = 1 << 16 };
    unsigned char *buf = malloc(BUFSZ);
    uint32_t crc = 0xFFFFFFFFu;
    off_t pos = 0;
    if (!buf) return -1;
    crc_init();
    for (;;) {
        ssize_t r = pread(fd, buf, BUFSZ, pos);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            return -1;
        }
        if (r == 0) break;
        for (ssize_t i = 0; i < r; i++)
            crc = crc_table[(crc ^ buf[i]) & 0xFF] ^ (crc >> 8);
        pos += r;
    }
    free(buf);
    *out = crc ^ 0xFFFFFFFFu;
    return 0;
}
