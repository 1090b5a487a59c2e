/*
 * test_keyring.c - master keys replaced while hubbub serves: a reload picks
 * up a rewritten key file, a bad file keeps the old keys, an unknown key id
 * reloads at most once per interval, readers on other threads always see a
 * whole keyring; and which values a rotation must re-seal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/keyring.h"
#include "lib/secretbox.h"

static const char K1[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char K2[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
static const char K3[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static char path[64];

static void write_keys(const char *first, const char *second)
{
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", first);
    if (second != NULL)
        fprintf(f, "%s\n", second);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* as an operator's tool would */
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/hubbub-keyring-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static char *seal_with(const char *hex, const char *context, const char *plain)
{
    struct secretbox sb;
    secretbox_init(&sb);
    secretbox_add_key_hex(&sb, hex, strlen(hex));
    char *s = secretbox_seal(&sb, context, plain, strlen(plain));
    secretbox_dispose(&sb);
    return s;
}

static void test_reload_picks_up_new_first_key(void **state)
{
    (void)state;
    const char *why = NULL;
    write_keys(K1, NULL);
    struct keyring *kr = keyring_new(NULL, path, &why);
    assert_non_null(kr);
    assert_true(keyring_has_file(kr));
    const struct secretbox *before = keyring_current(kr);
    char *old = keyring_seal(kr, "c", "old value", 9);

    bool changed = true;
    assert_int_equal(keyring_reload(kr, "test", &changed, &why), 0);
    assert_false(changed); /* same file: the same keyring stays */
    assert_ptr_equal(keyring_current(kr), before);

    write_keys(K2, K1);
    assert_int_equal(keyring_reload(kr, "test", &changed, &why), 0);
    assert_true(changed);
    const struct secretbox *after = keyring_current(kr);
    assert_ptr_not_equal(after, before);
    assert_int_equal(after->nkeys, 2);
    /* The replaced keyring stays readable for a reader still holding it. */
    assert_int_equal(before->nkeys, 1);

    char *fresh = keyring_seal(kr, "c", "new value", 9);
    assert_true(secretbox_is_sealed_by_first(after, fresh));
    assert_false(secretbox_is_sealed_by_first(after, old)); /* needs re-sealing */
    assert_true(secretbox_is_sealed_by_first(before, old));
    struct buf out;
    buf_init(&out);
    assert_int_equal(keyring_open(kr, "c", old, &out), 0);
    assert_string_equal(out.data, "old value");
    assert_int_equal(keyring_open(kr, "c", fresh, &out), 0);
    assert_string_equal(out.data, "new value");

    /* The old key removed: its values no longer open, the new ones do. */
    write_keys(K2, NULL);
    assert_int_equal(keyring_reload(kr, "test", &changed, &why), 0);
    assert_true(changed);
    assert_int_equal(keyring_open(kr, "c", old, &out), HB_ENOTFOUND);
    assert_int_equal(keyring_open(kr, "c", fresh, &out), 0);
    buf_dispose(&out);
    free(old);
    free(fresh);
    keyring_free(kr);
}

static void test_failed_reload_keeps_old_keys(void **state)
{
    (void)state;
    const char *why = NULL;
    write_keys(K1, NULL);
    struct keyring *kr = keyring_new(NULL, path, &why);
    assert_non_null(kr);
    const struct secretbox *before = keyring_current(kr);
    bool changed = true;

    write_keys(K2, "not a key");
    assert_int_not_equal(keyring_reload(kr, "test", &changed, &why), 0);
    assert_false(changed);
    assert_non_null(why);
    assert_null(strstr(why, K2)); /* never key material */
    assert_ptr_equal(keyring_current(kr), before);

    unlink(path);
    assert_int_equal(keyring_reload(kr, "test", &changed, &why), HB_EIO);
    assert_ptr_equal(keyring_current(kr), before);

    FILE *f = fopen(path, "w"); /* an empty file: no key */
    fclose(f);
    assert_int_not_equal(keyring_reload(kr, "test", &changed, &why), 0);
    assert_ptr_equal(keyring_current(kr), before);
    assert_string_equal(keyring_current(kr)->keys[0].id, before->keys[0].id);
    keyring_free(kr);
}

static void test_unknown_key_id_reloads_throttled(void **state)
{
    (void)state;
    const char *why = NULL;
    write_keys(K1, NULL);
    struct keyring *kr = keyring_new(NULL, path, &why);
    assert_non_null(kr);
    keyring_set_reload_interval_ms(kr, 60000);
    struct buf out;
    buf_init(&out);

    /* Another process rotated first: a value under K2 makes this one read
     * the file again, and it seals with K2 from then on. */
    write_keys(K2, K1);
    char *by_k2 = seal_with(K2, "c", "from elsewhere");
    assert_int_equal(keyring_open(kr, "c", by_k2, &out), 0);
    assert_string_equal(out.data, "from elsewhere");
    char *mine = keyring_seal(kr, "c", "x", 1);
    assert_true(secretbox_is_sealed_by_first(keyring_current(kr), mine));
    char *by_k1 = seal_with(K1, "c", "y");
    assert_false(secretbox_is_sealed_by_first(keyring_current(kr), by_k1));
    assert_false(secretbox_is_sealed_by_first(keyring_current(kr), "not sealed"));
    free(by_k1);

    /* Within the interval a second unknown id does not read the file. */
    write_keys(K3, K2);
    char *by_k3 = seal_with(K3, "c", "third");
    const struct secretbox *held = keyring_current(kr);
    assert_int_equal(keyring_open(kr, "c", by_k3, &out), HB_ENOTFOUND);
    assert_ptr_equal(keyring_current(kr), held);

    /* Once the interval has passed it does. */
    keyring_set_reload_interval_ms(kr, 0);
    assert_int_equal(keyring_open(kr, "c", by_k3, &out), 0);
    assert_string_equal(out.data, "third");

    /* A value under a key that is nowhere stays unopened, keys unchanged. */
    char *stranger = seal_with(K1, "c", "gone");
    held = keyring_current(kr);
    assert_int_equal(keyring_open(kr, "c", stranger, &out), HB_ENOTFOUND);
    assert_ptr_equal(keyring_current(kr), held);

    free(by_k2);
    free(by_k3);
    free(mine);
    free(stranger);
    buf_dispose(&out);
    keyring_free(kr);
}

static void test_without_file_nothing_reloads(void **state)
{
    (void)state;
    const char *why = NULL;
    struct keyring *kr = keyring_new(K1, NULL, &why);
    assert_non_null(kr);
    assert_false(keyring_has_file(kr));
    char *by_k2 = seal_with(K2, "c", "v");
    struct buf out;
    buf_init(&out);
    assert_int_equal(keyring_open(kr, "c", by_k2, &out), HB_ENOTFOUND);
    buf_dispose(&out);
    free(by_k2);
    keyring_free(kr);
    assert_null(keyring_new(NULL, NULL, &why));
    assert_null(keyring_new("abc", NULL, &why));
    assert_null(strstr(why, "abc"));
}

/* Readers on other threads seal and open without a lock while the key file
 * flips and reloads run: every value opens, none is lost. */
struct race {
    struct keyring *kr;
    atomic_bool stop;
    atomic_long failures, opened;
};

static void *reader(void *arg)
{
    struct race *r = arg;
    struct buf out;
    buf_init(&out);
    while (!atomic_load(&r->stop)) {
        char *s = keyring_seal(r->kr, "ctx", "value", 5);
        if (keyring_open(r->kr, "ctx", s, &out) != 0 || strcmp(out.data, "value") != 0)
            atomic_fetch_add(&r->failures, 1);
        else
            atomic_fetch_add(&r->opened, 1);
        free(s);
    }
    buf_dispose(&out);
    return NULL;
}

static void test_readers_during_reloads(void **state)
{
    (void)state;
    const char *why = NULL;
    write_keys(K1, NULL);
    struct race r = {.kr = keyring_new(NULL, path, &why)};
    assert_non_null(r.kr);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, reader, &r);
    bool changed;
    for (int i = 0; i < 200; i++) {
        /* Every file keeps the previous first key, as a rotation does. */
        write_keys(i % 2 == 0 ? K2 : K1, i % 2 == 0 ? K1 : K2);
        assert_int_equal(keyring_reload(r.kr, "test", &changed, &why), 0);
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.failures), 0);
    assert_true(atomic_load(&r.opened) > 0);
    keyring_free(r.kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reload_picks_up_new_first_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_reload_keeps_old_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_id_reloads_throttled, setup, teardown),
        cmocka_unit_test(test_without_file_nothing_reloads),
        cmocka_unit_test_setup_teardown(test_readers_during_reloads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
