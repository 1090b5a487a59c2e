/*
 * test_sim_payload.c - server/sim_payload.c: the deliveries `hubbub sim send`
 * makes. Each must be JSON that hubbub's own splitter (server/payload.c)
 * classifies as the field it was made for, in the envelope PROTOCOL.md gives;
 * its strings must be escaped as Meta escapes them and decode to the intended
 * UTF-8; its signatures must match known HMAC vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/base64url.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "server/payload.h"
#include "server/sim_payload.h"

#define ENTRY_ID "17841405822304914"
#define NOW_MS INT64_C(1773142401512)

static const char *const CHANGES_FIELDS[] = {"comments", "live_comments", "mentions",
                                             "story_insights", "feed"};

static bool is_changes_field(const char *f)
{
    for (size_t i = 0; i < HB_ARRAY_SIZE(CHANGES_FIELDS); i++)
        if (strcmp(CHANGES_FIELDS[i], f) == 0)
            return true;
    return false;
}

static char *build(const char *field, const char *object, uint64_t seq, size_t *len)
{
    struct sim_payload_params p = {object, ENTRY_ID, 42, seq, NOW_MS + (int64_t)seq};
    struct buf b;
    buf_init(&b);
    assert_int_equal(sim_payload_build(&b, field, &p), 0);
    *len = b.len;
    return buf_steal(&b);
}

/* Every field, built, is split by hubbub into exactly one event of that
 * field, under the right object and entry, with the entry time in the unit
 * PROTOCOL.md gives its kind of entry. */
static void test_every_field_has_its_shape(void **state)
{
    (void)state;
    size_t n;
    const char *const *names = sim_payload_fields(&n);
    assert_int_equal(n, 16);
    for (size_t i = 0; i <= n; i++) {
        const char *field = i < n ? names[i] : "feed";
        const char *object = i < n ? "instagram" : "page";
        assert_true(sim_payload_knows(field));
        size_t len;
        char *body = build(field, object, 0, &len);

        struct json_doc doc;
        const char *why = NULL;
        if (json_parse(&doc, body, len, JSON_DEFAULT_MAX_DEPTH, &why) != 0)
            fail_msg("%s: not JSON (%s): %s", field, why, body);
        int entry = json_child(&doc, json_get(&doc, 0, "entry"), 0);
        assert_true(entry > 0);
        int64_t t = 0;
        assert_true(json_int64(&doc, json_get(&doc, entry, "time"), &t));
        if (is_changes_field(field)) {
            int change = json_child(&doc, json_get(&doc, entry, "changes"), 0);
            assert_true(change > 0);
            struct buf f;
            buf_init(&f);
            json_string_decode(&doc, json_get(&doc, change, "field"), &f);
            assert_string_equal(f.data, field);
            buf_dispose(&f);
            assert_true(json_is_object(&doc, json_get(&doc, change, "value")));
            assert_int_equal(t, NOW_MS / 1000); /* seconds for changes */
        } else {
            const char *list = strcmp(field, "standby") == 0 ? "standby" : "messaging";
            assert_true(json_is_object(&doc, json_child(&doc, json_get(&doc, entry, list), 0)));
            assert_int_equal(t, NOW_MS); /* milliseconds for messaging */
        }
        json_doc_dispose(&doc);

        struct payload_limits lim = {64, 1000};
        struct payload p;
        if (payload_split(body, len, &lim, &p, &why) != 0)
            fail_msg("%s: not split (%s)", field, why);
        assert_string_equal(p.object, object);
        assert_int_equal(p.nevents, 1);
        if (strcmp(p.events[0].field, field) != 0)
            fail_msg("built %s, classified as %s", field, p.events[0].field);
        assert_string_equal(p.events[0].entry_id, ENTRY_ID);
        payload_dispose(&p);
        free(body);
    }
}

/* Another seq (and millisecond, as the CLI gives every delivery) gives
 * another item, not deduplicated; the same ones give the same bytes (so
 * duplicates can be made on purpose). */
static void test_seq_makes_items_distinct(void **state)
{
    (void)state;
    size_t n;
    const char *const *names = sim_payload_fields(&n);
    for (size_t i = 0; i < n; i++) {
        size_t l0, l1, l0b;
        char *b0 = build(names[i], "instagram", 0, &l0);
        char *b1 = build(names[i], "instagram", 1, &l1);
        char *b0b = build(names[i], "instagram", 0, &l0b);
        assert_true(l0 == l0b && memcmp(b0, b0b, l0) == 0);

        struct payload_limits lim = {64, 1000};
        struct payload p0, p1;
        const char *why;
        assert_int_equal(payload_split(b0, l0, &lim, &p0, &why), 0);
        assert_int_equal(payload_split(b1, l1, &lim, &p1, &why), 0);
        if (memcmp(p0.events[0].dedup_key, p1.events[0].dedup_key, PAYLOAD_KEY_LEN) == 0)
            fail_msg("%s: seq 0 and 1 share a deduplication key", names[i]);
        payload_dispose(&p0);
        payload_dispose(&p1);
        free(b0);
        free(b1);
        free(b0b);
    }
}

/* Bodies are pure ASCII, as Meta's are: everything else is escaped. */
static void test_bodies_are_ascii_with_meta_escapes(void **state)
{
    (void)state;
    size_t n;
    const char *const *names = sim_payload_fields(&n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *body = build(names[i], "instagram", 3, &len);
        for (size_t k = 0; k < len; k++)
            if ((unsigned char)body[k] >= 0x80 || (unsigned char)body[k] < 0x20)
                fail_msg("%s: byte 0x%02x at %zu is not escaped", names[i], (unsigned char)body[k],
                         k);
        free(body);
    }
    size_t len;
    char *body = build("comments", "instagram", 3, &len);
    assert_non_null(strstr(body, "Trop beau \\ud83d\\udc51 j'adore l'\\u00e9t\\u00e9 ! "
                                 "https:\\/\\/example.com\\/x"));
    free(body);
}

/* The comment's text decodes to the intended UTF-8. */
static void test_text_decodes_to_utf8(void **state)
{
    (void)state;
    size_t len;
    char *body = build("comments", "instagram", 5, &len);
    struct json_doc doc;
    const char *why;
    assert_int_equal(json_parse(&doc, body, len, JSON_DEFAULT_MAX_DEPTH, &why), 0);
    int entry = json_child(&doc, json_get(&doc, 0, "entry"), 0);
    int change = json_child(&doc, json_get(&doc, entry, "changes"), 0);
    int text = json_get(&doc, json_get(&doc, change, "value"), "text");
    struct buf out;
    buf_init(&out);
    json_string_decode(&doc, text, &out);
    assert_string_equal(out.data, "Trop beau \xf0\x9f\x91\x91 j'adore l'\xc3\xa9t\xc3\xa9 ! "
                                  "https://example.com/x");
    buf_dispose(&out);
    json_doc_dispose(&doc);
    free(body);
}

static const struct {
    const char *in;
    const char *want;
} ESCAPES[] = {
    {"plain", "\"plain\""},
    {"l'\xc3\xa9t\xc3\xa9", "\"l'\\u00e9t\\u00e9\""},
    {"\xf0\x9f\x91\x91", "\"\\ud83d\\udc51\""},
    {"\xe2\x9d\xa4\xef\xb8\x8f", "\"\\u2764\\ufe0f\""},
    {"a/b \"q\" \\", "\"a\\/b \\\"q\\\" \\\\\""},
    {"\n\t\x01\x7f", "\"\\n\\t\\u0001\\u007f\""},
    {"\xff"
     "x",
     "\"\\ufffdx\""},                              /* not UTF-8 */
    {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* an encoded surrogate */
    {"\xf0\x9f\x91", "\"\\ufffd\\ufffd\\ufffd\""}, /* cut short */
};

static void test_escape_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < HB_ARRAY_SIZE(ESCAPES); i++) {
        struct buf b;
        buf_init(&b);
        sim_payload_escape(&b, ESCAPES[i].in, strlen(ESCAPES[i].in));
        if (strcmp(b.data, ESCAPES[i].want) != 0)
            fail_msg("case %zu: got %s, want %s", i, b.data, ESCAPES[i].want);
        /* and it is JSON that decodes back (valid UTF-8 comes back unchanged) */
        struct json_doc doc;
        const char *why;
        assert_int_equal(json_parse(&doc, b.data, b.len, 8, &why), 0);
        struct buf back;
        buf_init(&back);
        json_string_decode(&doc, 0, &back);
        if (i < 6)
            assert_string_equal(back.data, ESCAPES[i].in);
        buf_dispose(&back);
        json_doc_dispose(&doc);
        buf_dispose(&b);
    }
}

static void test_sign_vectors(void **state)
{
    (void)state;
    char s256[SIM_PAYLOAD_SIG256_LEN], s1[SIM_PAYLOAD_SIG1_LEN];
    /* RFC 4231 and RFC 2202, test case 2 of each. */
    sim_payload_sign("Jefe", "what do ya want for nothing?", 28, s256, s1);
    assert_string_equal(s256,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_string_equal(s1, "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

static void test_unknown_field(void **state)
{
    (void)state;
    struct sim_payload_params p = {"instagram", ENTRY_ID, 1, 1, NOW_MS};
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "x");
    assert_int_equal(sim_payload_build(&b, "Comments", &p), HB_EINVAL);
    assert_int_equal(sim_payload_build(&b, "unknown", &p), HB_EINVAL);
    assert_false(sim_payload_knows("photos"));
    assert_string_equal(b.data, "x");
    buf_dispose(&b);
}

/* The message id names the entry's account in full, however long its id. */
static void test_mid_with_a_long_entry_id(void **state)
{
    (void)state;
    char id[401];
    for (size_t i = 0; i < sizeof(id) - 1; i++)
        id[i] = (char)('1' + i % 9);
    id[sizeof(id) - 1] = '\0';
    struct sim_payload_params p = {"instagram", id, 7, 3, NOW_MS};
    struct buf b;
    buf_init(&b);
    assert_int_equal(sim_payload_build(&b, "messages", &p), 0);
    const char *mid = strstr(b.data, "\"mid\":\"");
    assert_non_null(mid);
    mid += strlen("\"mid\":\"");
    size_t n = strcspn(mid, "\"");
    uint8_t *raw = malloc(n);
    long len = base64url_decode(raw, mid, n);
    assert_true(len > 0);
    char *text = strndup((const char *)raw, (size_t)len);
    assert_non_null(strstr(text, id));
    assert_non_null(strstr(text, ":v2"));
    free(text);
    free(raw);
    buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_has_its_shape),
        cmocka_unit_test(test_seq_makes_items_distinct),
        cmocka_unit_test(test_bodies_are_ascii_with_meta_escapes),
        cmocka_unit_test(test_text_decodes_to_utf8),
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_sign_vectors),
        cmocka_unit_test(test_mid_with_a_long_entry_id),
        cmocka_unit_test(test_unknown_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
