/*
 * test_payload.c - server/payload.c: how a Meta delivery becomes events.
 *
 * Items are written as Meta sends them (PROTOCOL.md section 2): long base64
 * mids, non-ASCII as \u escapes with surrogate pairs for emoji, '/' as "\/".
 * Each test builds a delivery around such items and checks the events field
 * by field: the field name, the entry id and time, the JSON (the item's exact
 * source bytes) and the deduplication key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "server/payload.h"

#define IG_ID "17841405793187218"
#define IGSID "1146521539887254"
#define MID                                                                                        \
    "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1NzkzMTg3MjE4OjM0MDI4MjM2Njg0MTcxMDMwMTI0"       \
    "NDI3NjAxNzI3NDQ1NDM5MDE5NjozMTYzNjEyMjQ1MDQ4MTk3NTU3NTE1MjkzOTQ2NTMxNzEyMAZDZD"
#define WHO "\"sender\":{\"id\":\"" IGSID "\"},\"recipient\":{\"id\":\"" IG_ID "\"}"
#define WHO_ECHO "\"sender\":{\"id\":\"" IG_ID "\"},\"recipient\":{\"id\":\"" IGSID "\"}"
#define AT "\"timestamp\":1700000000000"

/* A body built from a printf format; items never hold a '%'. */
static char *body_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *body_of(const char *fmt, ...)
{
    struct buf b;
    va_list ap;
    buf_init(&b);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return buf_steal(&b);
}

static void split_ok(const char *body, const struct payload_limits *lim, struct payload *p)
{
    const char *why = NULL;
    int rc = payload_split(body, strlen(body), lim, p, &why);
    if (rc != 0)
        fail_msg("refused (%s): %s", why ? why : "?", body);
}

static void split_fails(const char *body, size_t len, const struct payload_limits *lim,
                        const char *want)
{
    struct payload p;
    memset(&p, 0xA5, sizeof p);
    const char *why = NULL;
    int rc = payload_split(body, len, lim, &p, &why);
    if (rc != HB_EINVAL)
        fail_msg("rc %d for %.*s", rc, (int)(len > 200 ? 200 : len), body);
    if (why == NULL || strcmp(why, want) != 0)
        fail_msg("why \"%s\", want \"%s\" for %.*s", why ? why : "(null)", want,
                 (int)(len > 200 ? 200 : len), body);
    /* Nothing is left to free, and disposing is still harmless. */
    assert_null(p.object);
    assert_null(p.events);
    assert_int_equal(p.nevents, 0);
    payload_dispose(&p);
}

static bool same_key(const struct payload_event *a, const struct payload_event *b)
{
    return memcmp(a->dedup_key, b->dedup_key, PAYLOAD_KEY_LEN) == 0;
}

static void assert_json_is(const struct payload_event *ev, const char *want)
{
    if (ev->json_len != strlen(want) || memcmp(ev->json, want, ev->json_len) != 0)
        fail_msg("json\n  %.*s\nwant\n  %s", (int)ev->json_len, ev->json, want);
    assert_int_equal(ev->json[ev->json_len], '\0');
}

/* ---- messaging: every row of the PROTOCOL.md table ---- */

static const struct {
    const char *item;
    const char *field;
} MESSAGING[] = {
    {"{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"text\":\"Caf\\u00e9 au lait? "
     "\\ud83d\\ude00 https:\\/\\/example.com\\/menu\"}}",
     "messages"},
    {"{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"attachments\":[{\"type\":\"image\","
     "\"payload\":{\"url\":\"https:\\/\\/lookaside.fbsbx.com\\/ig_messaging_cdn\\/?asset_id="
     "17949487764805226&signature=Abz\"}}]}}",
     "messages"},
    {"{" WHO_ECHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"text\":\"Merci \\u2764\\ufe0f\","
     "\"is_echo\":true}}",
     "message_echoes"},
    {"{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"text\":\"hi\",\"is_echo\":false}}",
     "messages"},
    {"{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"is_deleted\":true}}", "messages"},
    {"{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"is_unsupported\":true}}", "messages"},
    {"{" WHO "," AT ",\"reaction\":{\"mid\":\"" MID "\",\"action\":\"react\",\"reaction\":"
     "\"love\",\"emoji\":\"\\u2764\\ufe0f\"}}",
     "message_reactions"},
    {"{" WHO "," AT ",\"reaction\":{\"mid\":\"" MID "\",\"action\":\"unreact\"}}",
     "message_reactions"},
    {"{" WHO "," AT ",\"postback\":{\"mid\":\"" MID "\",\"title\":\"Get started\","
     "\"payload\":\"GET_STARTED\"}}",
     "messaging_postbacks"},
    {"{" AT ",\"read\":{\"mid\":\"" MID "\"}}", "messaging_seen"},
    {"{" WHO "," AT ",\"referral\":{\"ref\":\"summer_sale\",\"source\":\"ADS\",\"type\":"
     "\"OPEN_THREAD\",\"ads_context_data\":{\"ad_title\":\"\\u00c9t\\u00e9\",\"photo_url\":"
     "\"https:\\/\\/scontent.xx.fbcdn.net\\/v\\/t45.1600-4\\/a.jpg\"}}}",
     "messaging_referral"},
    {"{" WHO "," AT ",\"optin\":{\"type\":\"notification_messages\",\"payload\":\"DAILY_TIPS\","
     "\"notification_messages_token\":\"7438298458412307\",\"notification_messages_frequency\":"
     "\"DAILY\",\"notification_messages_timezone\":\"Europe\\/Paris\",\"token_expiry_timestamp\":"
     "1702592000000,\"user_token_status\":\"NOT_REFRESHED\",\"title\":\"Daily tips\"}}",
     "messaging_optins"},
    {"{" WHO "," AT ",\"pass_thread_control\":{\"new_owner_app_id\":\"263902037430900\","
     "\"metadata\":\"handing over to a human\"}}",
     "messaging_handover"},
    {"{" WHO "," AT ",\"take_thread_control\":{\"previous_owner_app_id\":\"263902037430900\","
     "\"metadata\":\"\"}}",
     "messaging_handover"},
    {"{" WHO "," AT ",\"request_thread_control\":{\"requested_owner_app_id\":"
     "\"263902037430900\",\"metadata\":\"please\"}}",
     "messaging_handover"},
    {"{\"recipient\":{\"id\":\"" IG_ID "\"}," AT ",\"policy_enforcement\":{\"action\":\"block\","
     "\"reason\":\"The bot violated our Platform Policies (https:\\/\\/developers.facebook.com"
     "\\/policy\\/#messengerplatform).\"}}",
     "messaging_policy_enforcement"},
    {"{" WHO "," AT ",\"response_feedback\":{\"mid\":\"" MID "\",\"feedback\":\"Good response\"}}",
     "response_feedback"},
    {"{" WHO "," AT ",\"message_edit\":{\"mid\":\"" MID "\",\"text\":\"Caf\\u00e9 (edited)\","
     "\"num_edit\":1}}",
     "message_edit"},
    {"{" WHO "," AT ",\"brand_new_kind\":{\"x\":1}}", "unknown"},
    {"\"not an object\"", "unknown"},
    {"[1,2]", "unknown"},
};

static void test_each_messaging_item_kind_gets_its_field_and_exact_json(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(MESSAGING); k++) {
        char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"time\":1700000000123,"
                             "\"id\":\"" IG_ID "\",\"messaging\":[%s]}]}",
                             MESSAGING[k].item);
        struct payload p;
        split_ok(body, NULL, &p);
        assert_string_equal(p.object, "instagram");
        assert_int_equal(p.nevents, 1);
        const struct payload_event *ev = &p.events[0];
        if (strcmp(ev->field, MESSAGING[k].field) != 0)
            fail_msg("row %zu: field %s, want %s", k, ev->field, MESSAGING[k].field);
        assert_string_equal(ev->entry_id, IG_ID);
        assert_true(ev->has_entry_time);
        assert_int_equal(ev->entry_time_ms, 1700000000123);
        assert_json_is(ev, MESSAGING[k].item);
        payload_dispose(&p);
        free(body);
    }
}

static void test_messaging_items_of_one_entry_become_one_event_each_in_order(void **state)
{
    (void)state;
    char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"time\":1700000000123,"
                         "\"id\":\"" IG_ID "\",\"messaging\":[%s,%s,%s]}]}",
                         MESSAGING[0].item, MESSAGING[6].item, MESSAGING[9].item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 3);
    assert_string_equal(p.events[0].field, "messages");
    assert_string_equal(p.events[1].field, "message_reactions");
    assert_string_equal(p.events[2].field, "messaging_seen");
    assert_json_is(&p.events[1], MESSAGING[6].item);
    payload_dispose(&p);
    free(body);
}

/* ---- changes ---- */

static const struct {
    const char *item;
    const char *field;
} CHANGES[] = {
    {"{\"field\":\"comments\",\"value\":{\"from\":{\"id\":\"" IGSID "\",\"username\":"
     "\"jane.doe\"},\"media\":{\"id\":\"18023345989012587\",\"media_product_type\":\"FEED\"},"
     "\"id\":\"17865799348089039\",\"parent_id\":\"17865799348089001\",\"text\":"
     "\"Tr\\u00e8s joli \\ud83d\\ude0d\"}}",
     "comments"},
    {"{\"field\":\"live_comments\",\"value\":{\"from\":{\"id\":\"" IGSID "\",\"username\":"
     "\"jane.doe\"},\"media\":{\"id\":\"18023345989012599\",\"media_product_type\":\"LIVE\"},"
     "\"id\":\"17865799348089040\",\"text\":\"\\ud83d\\udd25\\ud83d\\udd25\"}}",
     "live_comments"},
    {"{\"field\":\"mentions\",\"value\":{\"media_id\":\"17887498072083520\",\"comment_id\":"
     "\"17887498072083521\"}}",
     "mentions"},
    {"{\"field\":\"story_insights\",\"value\":{\"media_id\":\"18023345989012587\",\"exits\":3,"
     "\"replies\":0,\"reach\":170,\"taps_forward\":15,\"taps_back\":2,\"impressions\":228}}",
     "story_insights"},
    /* Instagram Login: the dashboard's messages test arrives as a change. */
    {"{\"field\":\"messages\",\"value\":{\"sender\":{\"id\":\"12334\"},\"recipient\":{\"id\":"
     "\"23245\"},\"timestamp\":\"1527459824\",\"message\":{\"mid\":\"random_mid\",\"text\":"
     "\"random_text\"}}}",
     "messages"},
    {"{\"field\":\"photos\",\"value\":{\"verb\":\"update\",\"object_id\":\"10211885744794461\"}}",
     "photos"},
    {"{\"field\":\"\\u00e9v\\u00e9nement\",\"value\":{}}", "\xC3\xA9v\xC3\xA9nement"},
    {"{\"value\":{\"text\":\"no field\"}}", "unknown"},
    {"{\"field\":42,\"value\":{}}", "unknown"},
    {"{\"field\":null,\"value\":{}}", "unknown"},
    {"{\"field\":\"\",\"value\":{}}", "unknown"},
    {"{\"field\":\"bad\\nname\",\"value\":{}}", "unknown"},
    {"{\"field\":\"bad\\u007fname\",\"value\":{}}", "unknown"},
    {"{\"field\":\"a234567890123456789012345678901234567890123456789012345678901234\"}",
     "a234567890123456789012345678901234567890123456789012345678901234"},
    {"{\"field\":\"a2345678901234567890123456789012345678901234567890123456789012345\"}",
     "unknown"},
    {"\"comments\"", "unknown"},
};

static void test_each_change_item_is_named_by_its_field(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(CHANGES); k++) {
        char *body = body_of("{\"entry\": [{\"id\": \"" IG_ID "\", \"time\": 1520383571, "
                             "\"changes\": [%s]}], \"object\": \"instagram\"}",
                             CHANGES[k].item);
        struct payload p;
        split_ok(body, NULL, &p);
        assert_int_equal(p.nevents, 1);
        const struct payload_event *ev = &p.events[0];
        if (strcmp(ev->field, CHANGES[k].field) != 0)
            fail_msg("row %zu: field %s, want %s", k, ev->field, CHANGES[k].field);
        assert_string_equal(ev->entry_id, IG_ID);
        assert_true(ev->has_entry_time);
        assert_int_equal(ev->entry_time_ms, INT64_C(1520383571000));
        assert_json_is(ev, CHANGES[k].item);
        payload_dispose(&p);
        free(body);
    }
}

static void test_test_button_delivery_with_entry_id_zero_and_string_time(void **state)
{
    (void)state;
    static const char body[] =
        "{\"entry\":[{\"id\":\"0\",\"time\":\"1520383571\",\"changes\":[{\"field\":\"comments\","
        "\"value\":{\"from\":{\"id\":\"232323232\",\"username\":\"test\"},\"media\":{\"id\":"
        "\"123123123\",\"media_product_type\":\"FEED\"},\"id\":\"17865799348089039\","
        "\"parent_id\":\"1231231234\",\"text\":\"This is an example.\"}}]}],"
        "\"object\":\"instagram\"}";
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 1);
    assert_string_equal(p.events[0].field, "comments");
    assert_string_equal(p.events[0].entry_id, "0");
    assert_true(p.events[0].has_entry_time);
    assert_int_equal(p.events[0].entry_time_ms, INT64_C(1520383571000));
    payload_dispose(&p);
}

/* ---- standby, changed_fields, other shapes ---- */

static void test_standby_items_belong_to_standby(void **state)
{
    (void)state;
    char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":"
                         "1700000000123,\"standby\":[%s,%s]}]}",
                         MESSAGING[0].item, MESSAGING[9].item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 2);
    assert_string_equal(p.events[0].field, "standby");
    assert_string_equal(p.events[1].field, "standby");
    assert_json_is(&p.events[0], MESSAGING[0].item);
    assert_json_is(&p.events[1], MESSAGING[9].item);
    payload_dispose(&p);
    free(body);
}

static void test_changed_fields_give_one_event_per_name(void **state)
{
    (void)state;
    static const char entry[] = "{\"id\":\"" IG_ID "\",\"time\":1520383571,"
                                "\"changed_fields\":[\"comments\",\"mentions\",42,\"comments\"]}";
    char *body = body_of("{\"object\":\"instagram\",\"entry\":[%s]}", entry);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 4);
    static const char *const fields[] = {"comments", "mentions", "unknown", "comments"};
    static const char *const names[] = {"\"comments\"", "\"mentions\"", "42", "\"comments\""};
    for (size_t k = 0; k < 4; k++) {
        assert_string_equal(p.events[k].field, fields[k]);
        assert_string_equal(p.events[k].entry_id, IG_ID);
        assert_int_equal(p.events[k].entry_time_ms, INT64_C(1520383571000));
        /* Each event is the entry reduced to its one name, not a copy of it. */
        char want[256];
        snprintf(want, sizeof(want),
                 "{\"changed_fields\":[%s],\"id\":\"" IG_ID "\",\"time\":1520383571}", names[k]);
        assert_json_is(&p.events[k], want);
    }
    assert_false(same_key(&p.events[0], &p.events[1]));
    /* Same field, same entry: one key, however often it is listed. */
    assert_true(same_key(&p.events[0], &p.events[3]));
    payload_dispose(&p);
    free(body);
}

static void test_entry_time_outside_1970_to_9999_is_no_time(void **state)
{
    (void)state;
    static const struct {
        const char *time;
        bool has;
        int64_t ms;
    } cases[] = {
        {"9223372036854775807", false, 0}, /* would overflow when scaled to microseconds */
        {"-10000000000000", false, 0},
        {"-1", false, 0},
        {"10000000000000000", false, 0}, /* milliseconds in the year 318857 */
        {"253402300799999", true, INT64_C(253402300799999)}, /* 9999-12-31T23:59:59.999 */
        {"253402300800000", false, 0},
        {"0", true, 0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":%s,"
                             "\"changes\":[{\"field\":\"comments\",\"value\":{}}]}]}",
                             cases[k].time);
        struct payload p;
        split_ok(body, NULL, &p);
        assert_int_equal(p.nevents, 1);
        if (p.events[0].has_entry_time != cases[k].has)
            fail_msg("time %s: has_entry_time %d", cases[k].time, p.events[0].has_entry_time);
        if (cases[k].has)
            assert_int_equal(p.events[0].entry_time_ms, cases[k].ms);
        payload_dispose(&p);
        free(body);
    }
}

static void test_lists_are_split_in_a_fixed_order_whatever_the_key_order(void **state)
{
    (void)state;
    char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"changed_fields\":[\"photos\"],"
                         "\"standby\":[%s],\"id\":\"" IG_ID "\",\"messaging\":[%s],"
                         "\"changes\":[%s],\"time\":1700000000123}]}",
                         MESSAGING[9].item, MESSAGING[0].item, CHANGES[2].item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 4);
    assert_string_equal(p.events[0].field, "mentions");
    assert_string_equal(p.events[1].field, "messages");
    assert_string_equal(p.events[2].field, "standby");
    assert_string_equal(p.events[3].field, "photos");
    payload_dispose(&p);
    free(body);
}

static void test_unknown_object_page_is_stored_too(void **state)
{
    (void)state;
    char *body = body_of("{\"object\":\"page\",\"entry\":[{\"id\":\"106000000000001\",\"time\":"
                         "1700000000123,\"messaging\":[%s]}]}",
                         MESSAGING[0].item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_string_equal(p.object, "page");
    assert_int_equal(p.nevents, 1);
    assert_string_equal(p.events[0].field, "messages");
    assert_string_equal(p.events[0].entry_id, "106000000000001");
    payload_dispose(&p);
    free(body);

    split_ok("{\"object\":\"perm\\u0069ssions\",\"entry\":[]}", NULL, &p);
    assert_string_equal(p.object, "permissions");
    payload_dispose(&p);
}

static const struct {
    const char *entry;
    bool has_id;
} UNSPLITTABLE[] = {
    {"{\"id\":\"" IG_ID "\",\"time\":1520383571,\"uid\":\"x\",\"brand_new\":[1,2]}", true},
    {"{\"id\":\"" IG_ID "\",\"time\":1520383571,\"changes\":[],\"messaging\":[],"
     "\"standby\":[],\"changed_fields\":[]}",
     true},
    {"{\"id\":\"" IG_ID "\",\"changes\":{\"field\":\"comments\"},\"messaging\":\"x\"}", true},
    {"{}", false},
    {"42", false},
    {"\"" IG_ID "\"", false},
    {"[{\"field\":\"comments\"}]", false},
    {"null", false},
};

static void test_an_entry_of_unknown_shape_is_kept_whole_as_unknown(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(UNSPLITTABLE); k++) {
        char *body = body_of("{\"object\":\"instagram\",\"entry\":[%s]}", UNSPLITTABLE[k].entry);
        struct payload p;
        split_ok(body, NULL, &p);
        assert_int_equal(p.nevents, 1);
        assert_string_equal(p.events[0].field, "unknown");
        assert_json_is(&p.events[0], UNSPLITTABLE[k].entry);
        if (UNSPLITTABLE[k].has_id)
            assert_string_equal(p.events[0].entry_id, IG_ID);
        else
            assert_null(p.events[0].entry_id);
        payload_dispose(&p);
        free(body);
    }
}

/* ---- entry id and time ---- */

static const struct {
    const char *id;
    const char *want; /* NULL: no usable id */
} ENTRY_IDS[] = {
    {"\"" IG_ID "\"", IG_ID},
    {IG_ID, IG_ID},
    {"0", "0"},
    {"\"0\"", "0"},
    {"-5", "-5"},
    {"123456789012345678901234567890", "123456789012345678901234567890"},
    {"\"\\u0031\\u0037\"", "17"},
    {"\"\"", NULL},
    {"1.5", NULL},
    {"1e3", NULL},
    {"true", NULL},
    {"null", NULL},
    {"{\"id\":\"1\"}", NULL},
    {"[\"1\"]", NULL},
    {"\"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
     "123456789012345678901234567890123456789012345678\"",
     "12345678901234567890123456789012345678901234567890123456789012345678901234567890"
     "123456789012345678901234567890123456789012345678"},
    {"\"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
     "1234567890123456789012345678901234567890123456789\"",
     NULL},
};

static void test_entry_id_is_text_from_a_string_or_an_integer(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(ENTRY_IDS); k++) {
        char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":%s,\"time\":1520383571,"
                             "\"changes\":[%s]}]}",
                             ENTRY_IDS[k].id, CHANGES[2].item);
        struct payload p;
        split_ok(body, NULL, &p);
        assert_int_equal(p.nevents, 1);
        const char *got = p.events[0].entry_id, *want = ENTRY_IDS[k].want;
        if (want == NULL ? got != NULL : (got == NULL || strcmp(got, want) != 0))
            fail_msg("row %zu (%s): entry_id %s", k, ENTRY_IDS[k].id, got ? got : "NULL");
        payload_dispose(&p);
        free(body);
    }
}

static const struct {
    const char *time;
    bool has_time;
    int64_t ms;
} ENTRY_TIMES[] = {
    {"1520383571", true, INT64_C(1520383571000)},
    {"1700000000123", true, INT64_C(1700000000123)},
    {"\"1520383571\"", true, INT64_C(1520383571000)},
    {"0", true, 0},
    {"1520383571.5", false, 0},
    {"1.520383571e9", false, 0},
    {"\"soon\"", false, 0},
    {"null", false, 0},
    {"{}", false, 0},
    {"99999999999999999999", false, 0},
};

static void test_entry_time_is_read_in_seconds_or_milliseconds(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(ENTRY_TIMES); k++) {
        char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":%s,"
                             "\"changes\":[%s]}]}",
                             ENTRY_TIMES[k].time, CHANGES[2].item);
        struct payload p;
        split_ok(body, NULL, &p);
        if (p.events[0].has_entry_time != ENTRY_TIMES[k].has_time)
            fail_msg("row %zu (%s): has_entry_time %d", k, ENTRY_TIMES[k].time,
                     p.events[0].has_entry_time);
        if (ENTRY_TIMES[k].has_time)
            assert_int_equal(p.events[0].entry_time_ms, ENTRY_TIMES[k].ms);
        payload_dispose(&p);
        free(body);
    }
    struct payload p;
    split_ok("{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\"}]}", NULL, &p);
    assert_false(p.events[0].has_entry_time);
    payload_dispose(&p);
}

static void test_time_unit_rule_scales_seconds_and_saturates(void **state)
{
    (void)state;
    static const struct {
        int64_t in, out;
    } rows[] = {
        {0, 0},
        {1520383571, INT64_C(1520383571000)},
        {INT64_C(99999999999), INT64_C(99999999999000)},
        {INT64_C(100000000000), INT64_C(100000000000)},
        {INT64_C(1700000000123), INT64_C(1700000000123)},
        {INT64_MAX, INT64_MAX},
        {-1, -1000},
        {INT64_MIN / 1000, INT64_MIN / 1000 * 1000},
        {INT64_MIN / 1000 - 1, INT64_MIN},
        {INT64_MIN, INT64_MIN},
    };
    for (size_t k = 0; k < HB_ARRAY_SIZE(rows); k++)
        assert_int_equal(payload_time_ms(rows[k].in), rows[k].out);
}

/* ---- deduplication keys ---- */

static void split_one(const char *body, struct payload *p)
{
    split_ok(body, NULL, p);
    assert_int_equal(p->nevents, 1);
}

static void test_dedup_key_is_sha256_of_id_field_and_canonical_item(void **state)
{
    (void)state;
    struct payload p;
    split_one("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":1520383571,"
              "\"changes\":[{ \"value\" : {\"media_id\":\"1\", \"comment_id\":\"2\"}, "
              "\"field\" : \"mentions\" }]}]}",
              &p);
    static const char input[] = IG_ID "\0mentions\0"
                                      "{\"field\":\"mentions\",\"value\":{\"comment_id\":\"2\","
                                      "\"media_id\":\"1\"}}";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)input, sizeof input - 1, md);
    assert_memory_equal(p.events[0].dedup_key, md, PAYLOAD_KEY_LEN);
    payload_dispose(&p);

    /* Without an id the id part is empty. */
    split_one("{\"object\":\"instagram\",\"entry\":[{\"standby\":[{\"a\":1}]}]}", &p);
    static const char no_id[] = "\0standby\0{\"a\":1}";
    SHA256((const unsigned char *)no_id, sizeof no_id - 1, md);
    assert_memory_equal(p.events[0].dedup_key, md, PAYLOAD_KEY_LEN);
    payload_dispose(&p);
}

static void test_dedup_key_ignores_spacing_and_key_order(void **state)
{
    (void)state;
    struct payload a, b;
    split_one("{\"object\":\"instagram\",\"entry\":[{\"time\":1700000000123,\"id\":\"" IG_ID "\","
              "\"messaging\":[{\"sender\":{\"id\":\"" IGSID "\"},\"recipient\":{\"id\":\"" IG_ID
              "\"},\"timestamp\":1700000000000,\"reaction\":{\"mid\":\"" MID "\",\"action\":"
              "\"react\",\"reaction\":\"love\",\"emoji\":\"\\u2764\\ufe0f\"}}]}]}",
              &a);
    split_one("{\n  \"entry\": [\n    {\n      \"id\": \"" IG_ID "\",\n      \"messaging\": [\n"
              "        {\n          \"reaction\": {\"emoji\": \"\\u2764\\ufe0f\", \"reaction\": "
              "\"love\", \"action\": \"react\", \"mid\": \"" MID "\"},\n          \"timestamp\": "
              "1700000000000,\n          \"recipient\": { \"id\": \"" IG_ID "\" },\n          "
              "\"sender\": { \"id\": \"" IGSID "\" }\n        }\n      ],\n      \"time\": "
              "1700000000999\n    }\n  ],\n  \"object\": \"instagram\"\n}\n",
              &b);
    assert_string_equal(a.events[0].field, "message_reactions");
    assert_string_equal(b.events[0].field, "message_reactions");
    assert_true(same_key(&a.events[0], &b.events[0]));
    /* The stored JSON stays as each delivery sent it. */
    assert_int_not_equal(a.events[0].json_len, b.events[0].json_len);
    payload_dispose(&a);
    payload_dispose(&b);
}

static void test_dedup_key_survives_rebatching_into_another_delivery(void **state)
{
    (void)state;
    const char *m1 = MESSAGING[0].item, *m2 = MESSAGING[6].item, *m3 = MESSAGING[9].item;
    char *first = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":"
                          "1700000000123,\"messaging\":[%s,%s]}]}",
                          m1, m2);
    char *retry = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":"
                          "1700000005555,\"messaging\":[%s]},{\"id\":\"" IG_ID "\",\"time\":"
                          "1700000005556,\"messaging\":[%s]}]}",
                          m3, m2);
    struct payload a, b;
    split_ok(first, NULL, &a);
    split_ok(retry, NULL, &b);
    assert_int_equal(a.nevents, 2);
    assert_int_equal(b.nevents, 2);
    assert_true(same_key(&a.events[1], &b.events[1]));
    assert_false(same_key(&a.events[0], &a.events[1]));
    assert_false(same_key(&a.events[0], &b.events[0]));
    assert_false(same_key(&b.events[0], &b.events[1]));
    payload_dispose(&a);
    payload_dispose(&b);
    free(first);
    free(retry);
}

static void test_dedup_keys_differ_for_react_unreact_react(void **state)
{
    (void)state;
    char *body = body_of(
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":1700000000123,"
        "\"messaging\":["
        "{" WHO ",\"timestamp\":1700000000001,\"reaction\":{\"mid\":\"%s\",\"action\":\"react\","
        "\"reaction\":\"love\",\"emoji\":\"\\u2764\\ufe0f\"}},"
        "{" WHO ",\"timestamp\":1700000000002,\"reaction\":{\"mid\":\"%s\",\"action\":"
        "\"unreact\"}},"
        "{" WHO ",\"timestamp\":1700000000003,\"reaction\":{\"mid\":\"%s\",\"action\":\"react\","
        "\"reaction\":\"love\",\"emoji\":\"\\u2764\\ufe0f\"}}]}]}",
        MID, MID, MID);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 3);
    for (size_t k = 0; k < 3; k++)
        assert_string_equal(p.events[k].field, "message_reactions");
    assert_false(same_key(&p.events[0], &p.events[1]));
    assert_false(same_key(&p.events[1], &p.events[2]));
    assert_false(same_key(&p.events[0], &p.events[2]));
    payload_dispose(&p);
    free(body);
}

static void test_dedup_keys_differ_for_same_item_under_other_entry_id_or_list(void **state)
{
    (void)state;
    const char *item = MESSAGING[0].item;
    char *body = body_of("{\"object\":\"instagram\",\"entry\":["
                         "{\"id\":\"" IG_ID "\",\"time\":1700000000123,\"messaging\":[%s]},"
                         "{\"id\":\"17841400000000000\",\"time\":1700000000123,\"messaging\":[%s]},"
                         "{\"id\":" IG_ID ",\"time\":1,\"messaging\":[%s]},"
                         "{\"id\":\"" IG_ID "\",\"time\":1700000000123,\"standby\":[%s]},"
                         "{\"time\":1700000000123,\"messaging\":[%s]}]}",
                         item, item, item, item, item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 5);
    for (size_t k = 0; k < 5; k++)
        assert_json_is(&p.events[k], item);
    assert_false(same_key(&p.events[0], &p.events[1])); /* other account */
    assert_true(same_key(&p.events[0], &p.events[2]));  /* same id as a number; time ignored */
    assert_false(same_key(&p.events[0], &p.events[3])); /* standby, not messages */
    assert_false(same_key(&p.events[0], &p.events[4])); /* no id */
    payload_dispose(&p);
    free(body);
}

static void test_dedup_key_of_changed_fields_includes_the_entry_time(void **state)
{
    (void)state;
    struct payload a, b, c;
    split_one("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":1520383571,"
              "\"changed_fields\":[\"comments\"]}]}",
              &a);
    split_one("{\"object\":\"instagram\",\"entry\":[{\"changed_fields\":[\"comments\"],"
              "\"time\":1520383571, \"id\":\"" IG_ID "\"}]}",
              &b);
    split_one("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":1520383572,"
              "\"changed_fields\":[\"comments\"]}]}",
              &c);
    assert_true(same_key(&a.events[0], &b.events[0]));
    assert_false(same_key(&a.events[0], &c.events[0]));
    payload_dispose(&a);
    payload_dispose(&b);
    payload_dispose(&c);
}

/* ---- JSON PostgreSQL would refuse ---- */

static void test_unsafe_escapes_are_sanitized_and_other_items_kept_exact(void **state)
{
    (void)state;
    static const char bad[] = "{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"text\":"
                              "\"nul \\u0000 and half an emoji \\ud83d!\"}}";
    static const char fixed[] = "{" WHO "," AT ",\"message\":{\"mid\":\"" MID "\",\"text\":"
                                "\"nul \\ufffd and half an emoji \\ufffd!\"}}";
    char *body = body_of("{\"object\":\"instagram\",\"entry\":[{\"id\":\"" IG_ID "\",\"time\":"
                         "1700000000123,\"messaging\":[%s,%s]}]}",
                         bad, MESSAGING[0].item);
    struct payload p;
    split_ok(body, NULL, &p);
    assert_int_equal(p.nevents, 2);
    assert_json_is(&p.events[0], fixed);
    assert_json_is(&p.events[1], MESSAGING[0].item);
    struct json_doc doc;
    const char *why;
    assert_int_equal(json_parse(&doc, p.events[0].json, p.events[0].json_len, 0, &why), 0);
    assert_false(doc.has_unsafe_escapes);
    json_doc_dispose(&doc);
    payload_dispose(&p);
    free(body);
}

/* ---- the envelope ---- */

static const struct {
    const char *body;
    const char *why;
} BAD_ENVELOPES[] = {
    {"", "body is empty"},
    {"{\"object\":\"instagram\",\"entry\":[}]}", "invalid JSON syntax"},
    {"{\"object\":\"instagram\",\"entry\":[", "truncated JSON"},
    {"{\"object\":\"instagram\" \"entry\":[]}", "invalid JSON syntax"},
    {"{\"object\":\"instagram\",\"entry\":[]}{}", "unexpected text after the JSON value"},
    {"{\"object\":\"insta\xFFgram\",\"entry\":[]}", "invalid UTF-8 in a string"},
    {"[{\"object\":\"instagram\",\"entry\":[]}]", "the body must be a JSON object"},
    {"\"instagram\"", "the body must be a JSON object"},
    {"{\"entry\":[]}", "\"object\" must be a non-empty string"},
    {"{\"object\":42,\"entry\":[]}", "\"object\" must be a non-empty string"},
    {"{\"object\":null,\"entry\":[]}", "\"object\" must be a non-empty string"},
    {"{\"object\":\"\",\"entry\":[]}", "\"object\" must be a non-empty string"},
    {"{\"object\":[\"instagram\"],\"entry\":[]}", "\"object\" must be a non-empty string"},
    {"{\"object\":\"a2345678901234567890123456789012345678901234567890123456789012345\","
     "\"entry\":[]}",
     "\"object\" is too long"},
    {"{\"object\":\"instagram\"}", "\"entry\" must be an array"},
    {"{\"object\":\"instagram\",\"entry\":{}}", "\"entry\" must be an array"},
    {"{\"object\":\"instagram\",\"entry\":\"[]\"}", "\"entry\" must be an array"},
    {"{\"object\":\"instagram\",\"entry\":null}", "\"entry\" must be an array"},
};

static void test_bad_envelopes_are_refused_with_a_reason(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(BAD_ENVELOPES); k++)
        split_fails(BAD_ENVELOPES[k].body, strlen(BAD_ENVELOPES[k].body), NULL,
                    BAD_ENVELOPES[k].why);
}

static void test_empty_entry_array_gives_no_events(void **state)
{
    (void)state;
    struct payload p;
    split_ok(" {\"entry\" : [ ], \"object\" : \"instagram\"} ", NULL, &p);
    assert_string_equal(p.object, "instagram");
    assert_int_equal(p.nevents, 0);
    payload_dispose(&p);
    assert_null(p.object);
}

static void test_duplicate_envelope_keys_take_the_last(void **state)
{
    (void)state;
    struct payload p;
    split_ok("{\"object\":\"page\",\"entry\":{},\"object\":\"instagram\",\"entry\":[{}]}", NULL,
             &p);
    assert_string_equal(p.object, "instagram");
    assert_int_equal(p.nevents, 1);
    payload_dispose(&p);
}

/* ---- limits ---- */

static char *delivery_of_empty_items(size_t n)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"messaging\":[");
    for (size_t k = 0; k < n; k++)
        buf_puts(&b, k ? ",{}" : "{}");
    buf_puts(&b, "]}]}");
    return buf_steal(&b);
}

static void test_too_many_items_are_refused(void **state)
{
    (void)state;
    struct payload_limits lim = {.max_depth = 0, .max_events = 3};
    char *three = delivery_of_empty_items(3), *four = delivery_of_empty_items(4);
    struct payload p;
    split_ok(three, &lim, &p);
    assert_int_equal(p.nevents, 3);
    payload_dispose(&p);
    split_fails(four, strlen(four), &lim, "delivery holds too many items");
    /* Items of several entries count together. */
    static const char two_entries[] = "{\"object\":\"instagram\",\"entry\":[{\"messaging\":"
                                      "[{},{}]},{\"standby\":[{},{}]}]}";
    split_fails(two_entries, strlen(two_entries), &lim, "delivery holds too many items");
    free(three);
    free(four);

    /* Without limits, PAYLOAD_DEFAULT_MAX_EVENTS applies. */
    char *most = delivery_of_empty_items(PAYLOAD_DEFAULT_MAX_EVENTS);
    char *over = delivery_of_empty_items(PAYLOAD_DEFAULT_MAX_EVENTS + 1);
    split_ok(most, NULL, &p);
    assert_int_equal(p.nevents, PAYLOAD_DEFAULT_MAX_EVENTS);
    payload_dispose(&p);
    split_fails(over, strlen(over), NULL, "delivery holds too many items");
    free(most);
    free(over);
}

static void test_changed_fields_cannot_multiply_a_body_without_bound(void **state)
{
    (void)state;
    /* 200 000 names: each event is small, so the events stay linear in the body. */
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":1520383571,"
                 "\"changed_fields\":[");
    for (int k = 0; k < 200000; k++)
        buf_printf(&b, "%s\"f%d\"", k ? "," : "", k);
    buf_puts(&b, "]}]}");
    struct payload_limits lim = {.max_depth = 0, .max_events = 10000000};
    struct payload p;
    split_ok(b.data, &lim, &p);
    assert_int_equal(p.nevents, 200000);
    size_t total = 0;
    for (size_t k = 0; k < p.nevents; k++)
        total += p.events[k].json_len;
    assert_true(total < 8 * b.len);
    payload_dispose(&p);
    buf_dispose(&b);

    /* A huge id repeated in every event is still bounded: the delivery is
     * refused rather than copied a thousand times. */
    buf_init(&b);
    buf_puts(&b, "{\"object\":\"instagram\",\"entry\":[{\"id\":\"");
    for (int k = 0; k < 100000; k++)
        buf_putc(&b, 'x');
    buf_puts(&b, "\",\"changed_fields\":[");
    for (int k = 0; k < 1000; k++)
        buf_printf(&b, "%s\"f%d\"", k ? "," : "", k);
    buf_puts(&b, "]}]}");
    split_fails(b.data, b.len, &lim, "delivery holds too many items");
    buf_dispose(&b);

    /* An entry naming every field there is splits fine. */
    static const char all[] =
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\",\"time\":1520383571,"
        "\"changed_fields\":[\"comments\",\"live_comments\",\"mentions\",\"messages\","
        "\"message_echoes\",\"message_reactions\",\"messaging_postbacks\",\"messaging_seen\","
        "\"messaging_referral\",\"messaging_optins\",\"messaging_handover\",\"standby\","
        "\"messaging_policy_enforcement\",\"response_feedback\",\"message_edit\","
        "\"story_insights\"]}]}";
    split_ok(all, NULL, &p);
    assert_int_equal(p.nevents, 16);
    assert_string_equal(p.events[15].field, "story_insights");
    payload_dispose(&p);
}

static void test_nesting_limit_applies_to_the_whole_body(void **state)
{
    (void)state;
    static const char body[] = "{\"object\":\"instagram\",\"entry\":[{\"changes\":[{\"field\":"
                               "\"comments\",\"value\":{\"a\":[[1]]}}]}]}";
    struct payload_limits lim = {.max_depth = 8, .max_events = 0};
    struct payload p;
    split_ok(body, &lim, &p);
    assert_int_equal(p.nevents, 1);
    payload_dispose(&p);
    lim.max_depth = 7;
    split_fails(body, strlen(body), &lim, "nesting too deep");
    split_ok(body, NULL, &p);
    payload_dispose(&p);
}

static void test_ten_thousand_entries_split_into_ten_thousand_events(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"object\":\"instagram\",\"entry\":[");
    for (int k = 0; k < 10000; k++)
        buf_printf(&b,
                   "%s{\"id\":\"178414%011d\",\"time\":1520383571,\"changes\":[{\"field\":"
                   "\"mentions\",\"value\":{\"media_id\":\"%d\",\"comment_id\":\"%d\"}}]}",
                   k ? "," : "", k, k, k + 1);
    buf_puts(&b, "]}");
    struct payload p;
    split_ok(b.data, NULL, &p);
    assert_int_equal(p.nevents, 10000);
    for (int k = 0; k < 10000; k += 999) {
        char id[32], json[128];
        snprintf(id, sizeof id, "178414%011d", k);
        snprintf(json, sizeof json,
                 "{\"field\":\"mentions\",\"value\":{\"media_id\":\"%d\","
                 "\"comment_id\":\"%d\"}}",
                 k, k + 1);
        assert_string_equal(p.events[k].entry_id, id);
        assert_string_equal(p.events[k].field, "mentions");
        assert_json_is(&p.events[k], json);
    }
    assert_string_equal(p.events[9999].entry_id, "17841400000009999");
    assert_false(same_key(&p.events[0], &p.events[1]));
    payload_dispose(&p);
    buf_dispose(&b);
}

static void test_dispose_is_safe_on_zeroed_and_disposed_payloads(void **state)
{
    (void)state;
    struct payload p = {0};
    payload_dispose(&p);
    payload_dispose(NULL);
    split_ok("{\"object\":\"instagram\",\"entry\":[{}]}", NULL, &p);
    payload_dispose(&p);
    payload_dispose(&p);
    assert_null(p.events);
    assert_int_equal(p.nevents, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_messaging_item_kind_gets_its_field_and_exact_json),
        cmocka_unit_test(test_messaging_items_of_one_entry_become_one_event_each_in_order),
        cmocka_unit_test(test_each_change_item_is_named_by_its_field),
        cmocka_unit_test(test_test_button_delivery_with_entry_id_zero_and_string_time),
        cmocka_unit_test(test_standby_items_belong_to_standby),
        cmocka_unit_test(test_changed_fields_give_one_event_per_name),
        cmocka_unit_test(test_entry_time_outside_1970_to_9999_is_no_time),
        cmocka_unit_test(test_lists_are_split_in_a_fixed_order_whatever_the_key_order),
        cmocka_unit_test(test_unknown_object_page_is_stored_too),
        cmocka_unit_test(test_an_entry_of_unknown_shape_is_kept_whole_as_unknown),
        cmocka_unit_test(test_entry_id_is_text_from_a_string_or_an_integer),
        cmocka_unit_test(test_entry_time_is_read_in_seconds_or_milliseconds),
        cmocka_unit_test(test_time_unit_rule_scales_seconds_and_saturates),
        cmocka_unit_test(test_dedup_key_is_sha256_of_id_field_and_canonical_item),
        cmocka_unit_test(test_dedup_key_ignores_spacing_and_key_order),
        cmocka_unit_test(test_dedup_key_survives_rebatching_into_another_delivery),
        cmocka_unit_test(test_dedup_keys_differ_for_react_unreact_react),
        cmocka_unit_test(test_dedup_keys_differ_for_same_item_under_other_entry_id_or_list),
        cmocka_unit_test(test_dedup_key_of_changed_fields_includes_the_entry_time),
        cmocka_unit_test(test_unsafe_escapes_are_sanitized_and_other_items_kept_exact),
        cmocka_unit_test(test_bad_envelopes_are_refused_with_a_reason),
        cmocka_unit_test(test_empty_entry_array_gives_no_events),
        cmocka_unit_test(test_duplicate_envelope_keys_take_the_last),
        cmocka_unit_test(test_too_many_items_are_refused),
        cmocka_unit_test(test_changed_fields_cannot_multiply_a_body_without_bound),
        cmocka_unit_test(test_nesting_limit_applies_to_the_whole_body),
        cmocka_unit_test(test_ten_thousand_entries_split_into_ten_thousand_events),
        cmocka_unit_test(test_dispose_is_safe_on_zeroed_and_disposed_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
