/*
 * test_signature.c - X-Hub-Signature-256 parsing and verification over raw
 * bytes, including Meta's escaped unicode and '\/'.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "lib/hb.h"
#include "server/signature.h"

static const char SECRET[] = "b2d1c0ffee5ecre7";

/* The digest of body under SECRET, as Meta would send it (lowercase hex). */
static void header_for(const char *secret, const char *body, size_t len, char out[72])
{
    uint8_t d[SIGNATURE_LEN];
    signature_compute(secret, strlen(secret), body, len, d);
    signature_format(d, out);
}

static void test_known_vector(void **state)
{
    (void)state;
    /* RFC 4231 test case 2. */
    uint8_t d[SIGNATURE_LEN];
    signature_compute("Jefe", 4, "what do ya want for nothing?", 28, d);
    char hdr[72];
    signature_format(d, hdr);
    assert_string_equal(hdr, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_escaped_unicode_body_verifies_as_sent(void **state)
{
    (void)state;
    /* Meta escapes emoji as surrogate pairs and '/' as '\/': the signature is
     * over these exact bytes, not over a re-serialised form. */
    const char body[] = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":1,\"changes\":"
                        "[{\"field\":\"comments\",\"value\":{\"text\":\"\\ud83d\\udc51 king\","
                        "\"url\":\"https:\\/\\/example.com\\/a\"}}]}]}";
    char hdr[72];
    header_for(SECRET, body, strlen(body), hdr);
    uint8_t d[SIGNATURE_LEN];
    assert_int_equal(signature_parse(hdr, strlen(hdr), d), 0);
    assert_true(signature_matches(d, SECRET, strlen(SECRET), body, strlen(body)));

    /* The same content with the emoji as raw UTF-8 and '/' unescaped is a
     * different byte string and must not verify. */
    const char reserialised[] = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":1,"
                                "\"changes\":[{\"field\":\"comments\",\"value\":{\"text\":"
                                "\"\xf0\x9f\x91\x91 king\",\"url\":\"https://example.com/a\"}}]}]}";
    assert_false(signature_matches(d, SECRET, strlen(SECRET), reserialised, strlen(reserialised)));
}

static void test_raw_utf8_body(void **state)
{
    (void)state;
    const char body[] = "{\"text\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}";
    char hdr[72];
    header_for(SECRET, body, strlen(body), hdr);
    uint8_t d[SIGNATURE_LEN];
    assert_int_equal(signature_parse(hdr, strlen(hdr), d), 0);
    assert_true(signature_matches(d, SECRET, strlen(SECRET), body, strlen(body)));
}

static void test_wrong_secret_fails(void **state)
{
    (void)state;
    const char body[] = "{\"object\":\"instagram\",\"entry\":[]}";
    char hdr[72];
    header_for(SECRET, body, strlen(body), hdr);
    uint8_t d[SIGNATURE_LEN];
    assert_int_equal(signature_parse(hdr, strlen(hdr), d), 0);
    assert_false(signature_matches(d, "another-secret", 14, body, strlen(body)));
    /* One changed byte of body fails too. */
    char changed[sizeof(body)];
    memcpy(changed, body, sizeof(body));
    changed[3] ^= 1;
    assert_false(signature_matches(d, SECRET, strlen(SECRET), changed, strlen(changed)));
}

static void test_uppercase_hex_and_spaces_accepted(void **state)
{
    (void)state;
    const char body[] = "{}";
    char hdr[72];
    header_for(SECRET, body, 2, hdr);
    char upper[80];
    snprintf(upper, sizeof(upper), "  sha256=%s ", hdr + 7);
    for (char *p = upper + 9; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    uint8_t d[SIGNATURE_LEN];
    assert_int_equal(signature_parse(upper, strlen(upper), d), 0);
    assert_true(signature_matches(d, SECRET, strlen(SECRET), body, 2));
}

static void test_malformed_headers_rejected(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "sha256=",
        "sha1=0123456789abcdef0123456789abcdef01234567",
        /* 63 and 65 hex digits */
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384",
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec38433",
        /* a non-hex digit */
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384g",
        /* no prefix */
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    };
    uint8_t d[SIGNATURE_LEN];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(signature_parse(bad[i], strlen(bad[i]), d), HB_EINVAL);
    /* A NUL inside the value must not end the check early. */
    const char with_nul[] = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    char copy[sizeof(with_nul)];
    memcpy(copy, with_nul, sizeof(with_nul));
    copy[20] = '\0';
    assert_int_equal(signature_parse(copy, sizeof(with_nul) - 1, d), HB_EINVAL);
}

static void test_empty_body_and_empty_secret(void **state)
{
    (void)state;
    char hdr[72];
    header_for(SECRET, "", 0, hdr);
    uint8_t d[SIGNATURE_LEN];
    assert_int_equal(signature_parse(hdr, strlen(hdr), d), 0);
    assert_true(signature_matches(d, SECRET, strlen(SECRET), "", 0));
    assert_false(signature_matches(d, "", 0, "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vector),
        cmocka_unit_test(test_escaped_unicode_body_verifies_as_sent),
        cmocka_unit_test(test_raw_utf8_body),
        cmocka_unit_test(test_wrong_secret_fails),
        cmocka_unit_test(test_uppercase_hex_and_spaces_accepted),
        cmocka_unit_test(test_malformed_headers_rejected),
        cmocka_unit_test(test_empty_body_and_empty_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
