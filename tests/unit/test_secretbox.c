/*
 * test_secretbox.c - sealing secrets at rest: round trips, binding to their
 * context, tampering, unknown keys, and key rotation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/secretbox.h"

static const char K1[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char K2[] = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

static void test_round_trip_and_no_plaintext(void **state)
{
    (void)state;
    struct secretbox sb;
    secretbox_init(&sb);
    assert_int_equal(secretbox_add_key_hex(&sb, K1, strlen(K1)), 0);
    const char secret[] = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6";
    char *sealed = secretbox_seal(&sb, "app_secret:42", secret, strlen(secret));
    assert_non_null(strstr(sealed, "hb1:"));
    assert_null(strstr(sealed, secret));
    assert_null(strstr(sealed, "a1b2c3"));
    struct buf out;
    buf_init(&out);
    assert_int_equal(secretbox_open(&sb, "app_secret:42", sealed, &out), 0);
    assert_int_equal(out.len, strlen(secret));
    assert_memory_equal(out.data, secret, out.len);
    /* Two seals of one secret differ (random nonce). */
    char *again = secretbox_seal(&sb, "app_secret:42", secret, strlen(secret));
    assert_string_not_equal(sealed, again);
    free(again);
    free(sealed);
    buf_dispose(&out);
    secretbox_dispose(&sb);
}

static void test_context_binds_ciphertext(void **state)
{
    (void)state;
    struct secretbox sb;
    secretbox_init(&sb);
    secretbox_add_key_hex(&sb, K1, strlen(K1));
    char *sealed = secretbox_seal(&sb, "app_secret:42", "s", 1);
    struct buf out;
    buf_init(&out);
    assert_int_equal(secretbox_open(&sb, "app_secret:43", sealed, &out), HB_ECRYPTO);
    assert_int_equal(secretbox_open(&sb, "verify_token:42", sealed, &out), HB_ECRYPTO);
    free(sealed);
    buf_dispose(&out);
    secretbox_dispose(&sb);
}

static void test_tampering_detected(void **state)
{
    (void)state;
    struct secretbox sb;
    secretbox_init(&sb);
    secretbox_add_key_hex(&sb, K1, strlen(K1));
    char *sealed = secretbox_seal(&sb, "c", "attack at dawn", 14);
    struct buf out;
    buf_init(&out);
    size_t n = strlen(sealed);
    for (size_t i = 14; i < n; i += 3) {
        char saved = sealed[i];
        sealed[i] = sealed[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(secretbox_open(&sb, "c", sealed, &out), 0);
        sealed[i] = saved;
    }
    assert_int_equal(secretbox_open(&sb, "c", sealed, &out), 0);
    assert_int_equal(secretbox_open(&sb, "c", "plain text", &out), HB_EINVAL);
    char empty[32];
    snprintf(empty, sizeof(empty), "hb1:%s:", sb.keys[0].id);
    assert_int_equal(secretbox_open(&sb, "c", empty, &out), HB_EINVAL);
    snprintf(empty, sizeof(empty), "hb1:%s:AAAA", sb.keys[0].id);
    assert_int_equal(secretbox_open(&sb, "c", empty, &out), HB_EINVAL);
    free(sealed);
    buf_dispose(&out);
    secretbox_dispose(&sb);
}

static void test_rotation_keyring(void **state)
{
    (void)state;
    struct secretbox old_only, rotated, new_only;
    secretbox_init(&old_only);
    secretbox_init(&rotated);
    secretbox_init(&new_only);
    secretbox_add_key_hex(&old_only, K1, strlen(K1));
    secretbox_add_key_hex(&rotated, K2, strlen(K2)); /* new key seals */
    secretbox_add_key_hex(&rotated, K1, strlen(K1)); /* old key still opens */
    secretbox_add_key_hex(&new_only, K2, strlen(K2));

    char *by_old = secretbox_seal(&old_only, "c", "x", 1);
    char *by_new = secretbox_seal(&rotated, "c", "y", 1);
    struct buf out;
    buf_init(&out);
    assert_int_equal(secretbox_open(&rotated, "c", by_old, &out), 0);
    assert_int_equal(secretbox_open(&rotated, "c", by_new, &out), 0);
    assert_int_equal(secretbox_open(&new_only, "c", by_old, &out), HB_ENOTFOUND);
    char id[9];
    assert_non_null(secretbox_key_id_of(by_new, id));
    assert_string_equal(id, new_only.keys[0].id);
    free(by_old);
    free(by_new);
    buf_dispose(&out);
    secretbox_dispose(&old_only);
    secretbox_dispose(&rotated);
    secretbox_dispose(&new_only);
}

static void test_loading_keys(void **state)
{
    (void)state;
    struct secretbox sb;
    const char *why = NULL;
    secretbox_init(&sb);
    assert_int_equal(secretbox_load(&sb, NULL, NULL, &why), HB_EINVAL);
    assert_non_null(strstr(why, "HUBBUB_MASTER_KEY"));
    secretbox_init(&sb);
    assert_int_equal(secretbox_load(&sb, "abc", NULL, &why), HB_EINVAL);
    assert_null(strstr(why, "abc")); /* never echo key material */

    char path[] = "/tmp/hubbub-keyfile-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# current key first\n%s\n\n  %s  \n", K2, K1);
    fclose(f);
    secretbox_init(&sb);
    assert_int_equal(secretbox_load(&sb, NULL, path, &why), 0);
    assert_int_equal(sb.nkeys, 2);
    secretbox_dispose(&sb);
    f = fopen(path, "w");
    fprintf(f, "not a key\n");
    fclose(f);
    secretbox_init(&sb);
    assert_int_not_equal(secretbox_load(&sb, NULL, path, &why), 0);
    unlink(path);
    secretbox_init(&sb);
    assert_int_equal(secretbox_load(&sb, NULL, "/nonexistent/key", &why), HB_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_no_plaintext),
        cmocka_unit_test(test_context_binds_ciphertext),
        cmocka_unit_test(test_tampering_detected),
        cmocka_unit_test(test_rotation_keyring),
        cmocka_unit_test(test_loading_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
