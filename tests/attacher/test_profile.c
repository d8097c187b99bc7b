/*
 * test_profile.c - the log being written: every native address used gets
 * one NATIVE_SYMBOLS record, and after an exec (profile_new_image) the
 * same address in the new image is a key of its own, named apart from
 * the old image's (read back with our reader).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "profile.h"
#include "vmprof_reader.h"

static int tmp_fd(char *path)
{
    strcpy(path, "/tmp/test_profile.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

static int has_name(const struct vmprof_profile *p, uint64_t id)
{
    for (size_t i = 0; i < p->n_names; i++)
        if (p->names[i].id == id)
            return p->names[i].native;
    return 0;
}

static void test_exec_keys_addresses_apart(void **state)
{
    (void)state;
    char path[64], err[256];
    int fd = tmp_fd(path);
    struct profile_opts o = { .fd = fd, .period_usec = 4000, .native = 1, .interp = "native" };
    struct profile *p = profile_open(&o, err, sizeof(err));
    assert_non_null(p);
    const uint64_t before[2] = { 0x401001, 0x402001 };   /* innermost first */
    assert_int_equal(profile_add(p, before, 2, 7, 1, 0), 0);
    profile_new_image(p, NULL);
    const uint64_t after[2] = { 0x401001, 0x403001 };    /* 0x401001 reused */
    assert_int_equal(profile_add(p, after, 2, 7, 2, 0), 0);
    assert_int_equal(profile_samples(p), 3);
    assert_int_equal(profile_finish(p, NULL, NULL, err, sizeof(err)), 0);
    close(fd);

    struct vmprof_profile *r = NULL;
    assert_int_equal(vmr_read_file(&r, path, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(r->n_samples, 3);
    /* the old image's words as they were; the new image's carry a tag
     * above every user address (and below the ids legacy logs use) */
    uint64_t old = 0, reused = 0;
    for (uint32_t d = 0; d < 2; d++) {
        uint64_t w0 = r->frame_ids[r->samples[0].first + d];
        uint64_t w1 = r->frame_ids[r->samples[1].first + d];
        if (w0 == 0x401001)
            old = w0;
        if ((w1 & ((1ull << 57) - 1)) == 0x401001)
            reused = w1;
    }
    assert_true(old == 0x401001);
    assert_true(reused != 0 && reused != 0x401001);
    assert_true((reused >> 60) == 0);
    /* every key used has its own native name record */
    for (size_t s = 0; s < r->n_samples; s++)
        for (uint32_t d = 0; d < r->samples[s].depth; d++)
            assert_true(has_name(r, r->frame_ids[r->samples[s].first + d]));
    assert_true(has_name(r, 0x401001) && has_name(r, reused));
    vmr_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_keys_addresses_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
