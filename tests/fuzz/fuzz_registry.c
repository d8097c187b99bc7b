/*
 * fuzz_registry.c - libFuzzer harness for the registry parser
 * (attacher/registry_reader.c) and the shadow decoder's name splitting
 * (vm_shadow_format_name): the input is a registry image, as hostile as
 * the fuzzer can make it. Everything that reads it is exercised: open,
 * info, code-table tailing (in pieces, then whole), thread lookups for the
 * tids the image itself mentions, and the formatting of every name.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *     -Iattacher -Itarget-shim tests/fuzz/fuzz_registry.c \
 *     attacher/registry_reader.c attacher/vm_shadow.c attacher/remote_mem.c \
 *     attacher/vmprof_writer.c -o /tmp/fuzz_registry
 *   mkdir -p /tmp/fuzz-registry-corpus
 *   /tmp/fuzz_registry -max_total_time=60 -max_len=20000 \
 *     /tmp/fuzz-registry-corpus tests/fuzz/seeds/registry
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_reader.h"
#include "vm_shadow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_code(void *arg, uint64_t id, const char *name, size_t len)
{
    static char out[VMPROF_REG_NAME_MAX * 3 + 64];
    size_t *count = arg;

    (void)id;
    if (strlen(name) != len)
        abort();                /* the reader promised a NUL-free name */
    vm_shadow_format_name(out, sizeof out, name, "vm");
    vm_shadow_format_name(out, 16, name, "vm");       /* too small: -1, no overflow */
    (*count)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct registry *reg = NULL;
    struct registry_stats st;
    size_t count = 0, i;
    char err[256];
    void *buf;
    int rc;

    /* the parser requires an 8-byte aligned image; malloc gives 16 */
    buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    rc = registry_open_buffer(buf, size, 0, &reg, err, sizeof err);
    if (rc == 0) {
        const struct registry_info *info = registry_info(reg);
        uint64_t top;

        if (strlen(info->vm_name) >= sizeof info->vm_name)
            abort();
        registry_poll_codes(reg, on_code, &count, 3);
        registry_codes_pending(reg);
        registry_poll_codes(reg, on_code, &count, 0);
        /* every 32-bit value at a 4-byte offset in the first KiB is a tid
         * candidate: this reaches the slots the image publishes */
        for (i = 0; i + 4 <= size && i < 1024; i += 4) {
            uint32_t tid;

            memcpy(&tid, data + i, 4);
            registry_thread_anchor(reg, (pid_t)tid, &top);
            registry_thread_anchor(reg, (pid_t)tid, &top);    /* cached path */
        }
        for (i = 0; i < 8; i++)
            registry_thread_anchor(reg, (pid_t)(i + 1), &top);
        registry_stats(reg, &st);
        registry_close(reg);
    }
    /* with a creator check: must never accept another pid's image */
    rc = registry_open_buffer(buf, size, 1, &reg, err, sizeof err);
    if (rc == 0) {
        if (registry_info(reg)->creator_pid != 1)
            abort();
        registry_close(reg);
    }
    free(buf);
    return 0;
}
