/*
 * test_json.c - api/json.c: what json_parse accepts and refuses, the readers,
 * the canonical and sanitised forms, and the escaping writer.
 *
 * Most tests are tables: one row per input, the expected outcome beside it.
 * Inputs are given with an explicit length so that rows can hold NUL bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"

/* A string literal and its length, NUL bytes included. */
#define LIT(s) s, sizeof(s) - 1

static int parse(struct json_doc *doc, const char *text, size_t len, const char **why)
{
    *why = NULL;
    return json_parse(doc, text, len, JSON_DEFAULT_MAX_DEPTH, why);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- what is accepted ---- */

static const struct {
    const char *text;
    size_t len;
    int ntoks;
    int root_type;
} VALID[] = {
    {LIT("{}"), 1, JSON_OBJECT},
    {LIT("[]"), 1, JSON_ARRAY},
    {LIT("0"), 1, JSON_PRIMITIVE},
    {LIT("-0"), 1, JSON_PRIMITIVE},
    {LIT("1520383571"), 1, JSON_PRIMITIVE},
    {LIT("-12.5e+10"), 1, JSON_PRIMITIVE},
    {LIT("0.5E-3"), 1, JSON_PRIMITIVE},
    {LIT("1e1000"), 1, JSON_PRIMITIVE},
    {LIT("true"), 1, JSON_PRIMITIVE},
    {LIT("false"), 1, JSON_PRIMITIVE},
    {LIT("null"), 1, JSON_PRIMITIVE},
    {LIT("\"\""), 1, JSON_STRING},
    {LIT("\"plain\""), 1, JSON_STRING},
    {LIT(" \t\r\n{ \"a\" : [ 1 , 2 , { \"b\" : null } ] } \r\n\t "), 8, JSON_OBJECT},
    {LIT("{\"\":\"\"}"), 3, JSON_OBJECT},
    {LIT("[[[]],{},[{}]]"), 6, JSON_ARRAY},
    {LIT("[true,false,null,0,-1,1.5,\"s\",{},[]]"), 10, JSON_ARRAY},
    {LIT("{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}}}"), 11, JSON_OBJECT},
    {LIT("\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u00E9 \\u20AC\""), 1, JSON_STRING},
    {LIT("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF \xEF\xBF\xBD \x7F\""), 1,
     JSON_STRING},
    {LIT("{\"text\":\"https:\\/\\/example.com\\/x?y=1\"}"), 3, JSON_OBJECT},
    {LIT("[9223372036854775807,-9223372036854775808,123456789012345678901234567890]"), 4,
     JSON_ARRAY},
};

static void test_valid_documents_of_every_shape_parse(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(VALID); k++) {
        struct json_doc doc;
        const char *why;
        int rc = parse(&doc, VALID[k].text, VALID[k].len, &why);
        if (rc != 0)
            fail_msg("row %zu (%s) refused: %s", k, VALID[k].text, why);
        if (doc.ntoks != VALID[k].ntoks)
            fail_msg("row %zu (%s): %d tokens", k, VALID[k].text, doc.ntoks);
        assert_int_equal(doc.toks[0].type, VALID[k].root_type);
        assert_false(doc.has_unsafe_escapes);
        assert_ptr_equal(doc.text, VALID[k].text);
        json_doc_dispose(&doc);
        assert_null(doc.toks);
    }
}

/* ---- what is refused, and why ---- */

static const struct {
    const char *text;
    size_t len;
    const char *why;
} INVALID[] = {
    /* nothing */
    {LIT(""), "body is empty"},
    {LIT(" \t\r\n"), "body is empty"},
    /* separators jsmn does not insist on */
    {LIT("[1 2]"), "invalid JSON syntax"},
    {LIT("[\"a\" \"b\"]"), "invalid JSON syntax"},
    {LIT("{\"a\" 1}"), "invalid JSON syntax"},
    {LIT("{\"a\" \"b\"}"), "invalid JSON syntax"},
    {LIT("[,1]"), "invalid JSON syntax"},
    {LIT("[1,]"), "invalid JSON syntax"},
    {LIT("[1,,2]"), "invalid JSON syntax"},
    {LIT("[,]"), "invalid JSON syntax"},
    {LIT("{,}"), "invalid JSON syntax"},
    {LIT("{,\"a\":1}"), "invalid JSON syntax"},
    {LIT("{\"a\":1,}"), "invalid JSON syntax"},
    {LIT("{\"a\":1 \"b\":2}"), "invalid JSON syntax"},
    {LIT("{\"a\":{} \"b\":2}"), "invalid JSON syntax"},
    {LIT("{\"a\"}"), "invalid JSON syntax"},
    {LIT("{\"a\":}"), "invalid JSON syntax"},
    {LIT("{\"a\"::1}"), "invalid JSON syntax"},
    {LIT("{\"a\":\"b\":\"c\"}"), "invalid JSON syntax"},
    {LIT("{\"a\",\"b\"}"), "invalid JSON syntax"},
    {LIT("[\"a\":1]"), "invalid JSON syntax"},
    {LIT("{1:2}"), "invalid JSON syntax"},
    {LIT("{[]:1}"), "invalid JSON syntax"},
    {LIT("[}"), "invalid JSON syntax"},
    {LIT("{]"), "invalid JSON syntax"},
    {LIT("[x]"), "invalid JSON syntax"},
    {LIT("['a']"), "invalid JSON syntax"},
    /* bare words and numbers outside the grammar */
    {LIT("tru"), "invalid literal"},
    {LIT("[tru]"), "invalid literal"},
    {LIT("[truex]"), "invalid literal"},
    {LIT("{\"a\":nul}"), "invalid literal"},
    {LIT("True"), "invalid literal"},
    {LIT("NaN"), "invalid literal"},
    {LIT("01"), "invalid number"},
    {LIT("[01]"), "invalid number"},
    {LIT("[-01]"), "invalid number"},
    {LIT("1.2.3"), "invalid number"},
    {LIT("[1.2.3]"), "invalid number"},
    {LIT("-"), "invalid number"},
    {LIT("[-]"), "invalid number"},
    {LIT("[1.]"), "invalid number"},
    {LIT(".5"), "invalid number"},
    {LIT("[1e]"), "invalid number"},
    {LIT("[1e+]"), "invalid number"},
    {LIT("+1"), "invalid number"},
    {LIT("[0x10]"), "invalid number"},
    {LIT("[-Infinity]"), "invalid number"},
    {LIT("[1\"a\"]"), "invalid number"},
    {LIT("[1:2]"), "invalid number"},
    /* jsmn lets a number swallow a quote, so it sees two roots here */
    {LIT("[1\"] [2\"]"), "invalid number"},
    /* numbers PostgreSQL's numeric cannot hold */
    {LIT("1e1001"), "number out of range"},
    {LIT("[-1E-1001]"), "number out of range"},
    /* more than one value */
    {LIT("{}{}"), "unexpected text after the JSON value"},
    {LIT("{} {}"), "unexpected text after the JSON value"},
    {LIT("[1]]"), "unexpected text after the JSON value"},
    {LIT("{} x"), "unexpected text after the JSON value"},
    {LIT("\"a\" \"b\""), "unexpected text after the JSON value"},
    {LIT("1 2"), "unexpected text after the JSON value"},
    {LIT("1,"), "invalid number"},
    {LIT("{}\f"), "unexpected text after the JSON value"},
    {LIT("\xEF\xBB\xBF{}"), "invalid JSON syntax"},
};

static void check_refused(const char *text, size_t len, const char *want, size_t row)
{
    struct json_doc doc;
    const char *why;
    int rc = parse(&doc, text, len, &why);
    if (rc != HB_EINVAL)
        fail_msg("row %zu (%.*s) accepted", row, (int)len, text);
    if (why == NULL || strcmp(why, want) != 0)
        fail_msg("row %zu (%.*s): why \"%s\", want \"%s\"", row, (int)len, text,
                 why ? why : "(null)", want);
    assert_null(doc.toks);
    assert_int_equal(doc.ntoks, 0);
}

static void test_lax_jsmn_inputs_are_refused_with_a_reason(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(INVALID); k++)
        check_refused(INVALID[k].text, INVALID[k].len, INVALID[k].why, k);
}

static const struct {
    const char *text;
    size_t len;
} TRUNCATED[] = {
    {LIT("{")},
    {LIT("[")},
    {LIT("\"abc")},
    {LIT("{\"a\":")},
    {LIT("{\"a\":\"b")},
    {LIT("[1,2")},
    {LIT("{\"object\":\"instagram\",\"entry\":[{\"id\":\"1\"}")},
    {LIT("\"ends in a backslash\\")},
};

static void test_truncated_json_is_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(TRUNCATED); k++)
        check_refused(TRUNCATED[k].text, TRUNCATED[k].len, "truncated JSON", k);
}

static const struct {
    const char *text;
    size_t len;
} BAD_UTF8[] = {
    {LIT("\"\xC0\xAF\"")},         /* overlong '/' */
    {LIT("\"\xC1\xBF\"")},         /* overlong */
    {LIT("\"\xE0\x80\xAF\"")},     /* overlong, three bytes */
    {LIT("\"\xF0\x80\x80\xAF\"")}, /* overlong, four bytes */
    {LIT("\"\xED\xA0\x80\"")},     /* U+D800 encoded in UTF-8 */
    {LIT("\"\xED\xBF\xBF\"")},     /* U+DFFF encoded in UTF-8 */
    {LIT("\"\xF4\x90\x80\x80\"")}, /* U+110000 */
    {LIT("\"\xF5\x80\x80\x80\"")}, /* lead byte past U+10FFFF */
    {LIT("\"\xFF\"")},
    {LIT("\"\xFE\xFF\"")},
    {LIT("\"\x80\"")},                  /* lone continuation byte */
    {LIT("\"\xE2\x82\"")},              /* cut: euro sign without its last byte */
    {LIT("\"\xF0\x9F\x98\"")},          /* cut: emoji without its last byte */
    {LIT("\"\xC3\"")},                  /* cut at the closing quote */
    {LIT("\"\xE2\x82 x\"")},            /* cut in the middle */
    {LIT("{\"caf\xC3\":1}")},           /* in a key */
    {LIT("[\"ok\",\"\xC3\xA9\xFF\"]")}, /* after valid UTF-8 */
};

static void test_invalid_utf8_in_strings_is_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(BAD_UTF8); k++)
        check_refused(BAD_UTF8[k].text, BAD_UTF8[k].len, "invalid UTF-8 in a string", k);
}

static const struct {
    const char *text;
    size_t len;
    const char *why;
} BAD_STRINGS[] = {
    {LIT("\"a\x01z\""), "control character in a string"},
    {LIT("\"tab\there\""), "control character in a string"},
    {LIT("\"new\nline\""), "control character in a string"},
    {LIT("[\"\x1f\"]"), "control character in a string"},
    {LIT("{\"k\x0d\":1}"), "control character in a string"},
    {LIT("\"\\x41\""), "invalid escape in a string"},
    {LIT("\"\\'\""), "invalid escape in a string"},
    {LIT("[\"\\u12G4\"]"), "invalid escape in a string"},
    {LIT("\"\\u12\""), "invalid escape in a string"},
    {LIT("\"\\U0041\""), "invalid escape in a string"},
    {LIT("\"\\ud83d\\u\""), "invalid escape in a string"},
};

static void test_control_characters_and_bad_escapes_are_refused(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(BAD_STRINGS); k++)
        check_refused(BAD_STRINGS[k].text, BAD_STRINGS[k].len, BAD_STRINGS[k].why, k);
}

/* jsmn stops at a NUL byte as if the text ended there. */
static void test_nul_bytes_are_refused_wherever_they_are(void **state)
{
    (void)state;
    check_refused(LIT("[1,\0 2]"), "invalid JSON syntax", 0);
    check_refused(LIT("\"a\0b\""), "control character in a string", 1);
    check_refused(LIT("{\"a\":\"\0\"}"), "control character in a string", 2);
    check_refused(LIT("{}\0"), "unexpected text after the JSON value", 3);
    check_refused(LIT("{} \0 {}"), "unexpected text after the JSON value", 4);
    check_refused(LIT("1\0"), "invalid number", 5);
    check_refused(LIT("\0{}"), "invalid JSON syntax", 6);
}

static void test_len_above_int_max_is_too_big(void **state)
{
    (void)state;
    struct json_doc doc;
    const char *why = NULL;
    /* The length is refused before a byte is read. */
    assert_int_equal(json_parse(&doc, "{}", (size_t)INT_MAX + 1, 0, &why), HB_ETOOBIG);
    assert_non_null(why);
    assert_null(doc.toks);
}

/* ---- depth and size ---- */

static char *repeat(const char *open, size_t nopen, const char *close, size_t nclose)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = xmalloc(nopen * lo + nclose * lc + 1);
    char *p = s;
    for (size_t k = 0; k < nopen; k++, p += lo)
        memcpy(p, open, lo);
    for (size_t k = 0; k < nclose; k++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_nesting_at_the_limit_parses_and_one_more_level_is_refused(void **state)
{
    (void)state;
    struct json_doc doc;
    const char *why;
    char *ok = repeat("[", 128, "]", 128);
    assert_int_equal(parse(&doc, ok, strlen(ok), &why), 0);
    assert_int_equal(doc.ntoks, 128);
    json_doc_dispose(&doc);
    char *deep = repeat("[", 129, "]", 129);
    assert_int_equal(parse(&doc, deep, strlen(deep), &why), HB_EINVAL);
    assert_string_equal(why, "nesting deeper than 128 levels");
    char *objs = repeat("{\"a\":", 129, "}", 129);
    assert_int_equal(parse(&doc, objs, strlen(objs), &why), HB_EINVAL);
    assert_string_equal(why, "nesting deeper than 128 levels");
    assert_int_equal(json_parse(&doc, LIT("[[[[]]]]"), 3, &why), HB_EINVAL);
    assert_string_equal(why, "nesting too deep");
    /* Brackets inside strings do not nest. */
    assert_int_equal(json_parse(&doc, LIT("[[[\"[[[[{{{{\\\"]]]\"]]]"), 3, &why), 0);
    json_doc_dispose(&doc);
    free(ok);
    free(deep);
    free(objs);
}

static void test_hundred_thousand_open_brackets_are_refused_quickly(void **state)
{
    (void)state;
    struct json_doc doc;
    const char *why;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *open = repeat("[", 100000, "", 0);
    assert_int_equal(parse(&doc, open, strlen(open), &why), HB_EINVAL);
    assert_string_equal(why, "nesting deeper than 128 levels");
    char *closed = repeat("[", 100000, "]", 100000);
    assert_int_equal(parse(&doc, closed, strlen(closed), &why), HB_EINVAL);
    assert_string_equal(why, "nesting deeper than 128 levels");
    char *objs = repeat("{\"a\":[", 100000, "]}", 100000);
    assert_int_equal(parse(&doc, objs, strlen(objs), &why), HB_EINVAL);
    assert_string_equal(why, "nesting deeper than 128 levels");
    /* jsmn alone would take seconds here (its closing-bracket search is
     * quadratic in depth); the pre-scan stops at level 129. */
    assert_true(seconds_since(&t0) < 1.0);
    free(open);
    free(closed);
    free(objs);
}

static void test_array_of_ten_thousand_entries_parses(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    buf_putc(&b, '[');
    for (int k = 0; k < 10000; k++)
        buf_printf(&b, "%s{\"id\":\"%d\",\"n\":%d}", k ? "," : "", k, k);
    buf_putc(&b, ']');
    struct json_doc doc;
    const char *why;
    assert_int_equal(parse(&doc, b.data, b.len, &why), 0);
    assert_int_equal(doc.toks[0].size, 10000);
    assert_int_equal(doc.ntoks, 1 + 10000 * 5);
    /* Walking the siblings reaches the last one and then the end. */
    int c = 1;
    for (int k = 0; k < 9999; k++)
        c = json_next(&doc, c);
    int64_t n;
    assert_true(json_int64(&doc, json_get(&doc, c, "n"), &n));
    assert_int_equal(n, 9999);
    assert_int_equal(json_next(&doc, c), doc.ntoks);
    assert_int_equal(json_child(&doc, 0, 9999), c);
    json_doc_dispose(&doc);
    buf_dispose(&b);
}

static void test_four_mebibyte_body_of_two_million_tokens_parses(void **state)
{
    (void)state;
    /* "[0,0,...,0]" of 4 MiB less one byte: 2 Mi tokens. */
    size_t n = 2 * 1024 * 1024 - 2;
    char *text = xrealloc(repeat("[", 1, "0,", n), 1 + 2 * n + 3);
    memcpy(text + 1 + 2 * n, "0]", 3);
    struct json_doc doc;
    const char *why;
    int rc = parse(&doc, text, strlen(text), &why);
    if (rc != 0)
        fail_msg("refused: %s", why);
    assert_int_equal(strlen(text), 4 * 1024 * 1024 - 1);
    assert_int_equal(doc.ntoks, 2 * 1024 * 1024);
    assert_int_equal(doc.toks[0].size, (int)n + 1);
    json_doc_dispose(&doc);
    free(text);
}

/* ---- unsafe escapes and the sanitised copy ---- */

static const struct {
    const char *text;
    bool is_unsafe;
    const char *sanitized;
} ESCAPES[] = {
    {"\"\\u0000\"", true, "\"\\ufffd\""},
    {"\"a\\u0000b\"", true, "\"a\\ufffdb\""},
    {"\"\\ud83d\"", true, "\"\\ufffd\""},
    {"\"\\uD83D\"", true, "\"\\ufffd\""},
    {"\"\\udc51\"", true, "\"\\ufffd\""},
    {"\"\\uDC51x\"", true, "\"\\ufffdx\""},
    {"\"\\ud83dx\"", true, "\"\\ufffdx\""},
    {"\"\\ud83d\\u0041\"", true, "\"\\ufffd\\u0041\""},
    {"\"\\ud83d\\n\"", true, "\"\\ufffd\\n\""},
    {"\"\\udc51\\ud83d\"", true, "\"\\ufffd\\ufffd\""},
    {"\"\\ud83d\\ud83d\\udc51\"", true, "\"\\ufffd\\ud83d\\udc51\""},
    {"[\"\\ud83d\",\"\\udc51\"]", true, "[\"\\ufffd\",\"\\ufffd\"]"},
    {"{\"\\u0000\":\"\\u0000\"}", true, "{\"\\ufffd\":\"\\ufffd\"}"},
    {"\"\\ud83d\\udc51\"", false, "\"\\ud83d\\udc51\""},
    {"\"\\uD83D\\uDE00\"", false, "\"\\uD83D\\uDE00\""},
    {"\"\\\\u0000\"", false, "\"\\\\u0000\""},
    {"\"\\\\\\u0000\"", true, "\"\\\\\\ufffd\""},
    {"\"\\u0001\\ufffd\\uFFFF\"", false, "\"\\u0001\\ufffd\\uFFFF\""},
};

static void test_unsafe_escapes_are_accepted_flagged_and_sanitized(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(ESCAPES); k++) {
        struct json_doc doc, again;
        const char *why;
        const char *text = ESCAPES[k].text;
        if (parse(&doc, text, strlen(text), &why) != 0)
            fail_msg("row %zu (%s) refused: %s", k, text, why);
        if (doc.has_unsafe_escapes != ESCAPES[k].is_unsafe)
            fail_msg("row %zu (%s): has_unsafe_escapes %d", k, text, doc.has_unsafe_escapes);
        struct buf b;
        buf_init(&b);
        json_copy_sanitized(&doc, 0, &b);
        assert_string_equal(b.data, ESCAPES[k].sanitized);
        assert_int_equal(parse(&again, b.data, b.len, &why), 0);
        assert_false(again.has_unsafe_escapes);
        json_doc_dispose(&again);
        buf_dispose(&b);
        json_doc_dispose(&doc);
    }
}

static void test_sanitized_copy_of_a_member_and_of_a_clean_document_is_exact(void **state)
{
    (void)state;
    static const char text[] = "{ \"a\" : [ \"x\\u0000\" , 1 ] ,\n \"b\" : \"\\u00e9\\/\" }";
    struct json_doc doc;
    const char *why;
    assert_int_equal(parse(&doc, text, strlen(text), &why), 0);
    struct buf b;
    buf_init(&b);
    json_copy_sanitized(&doc, json_get(&doc, 0, "a"), &b);
    assert_string_equal(b.data, "[ \"x\\ufffd\" , 1 ]");
    buf_reset(&b);
    json_copy_sanitized(&doc, json_get(&doc, 0, "b"), &b);
    assert_string_equal(b.data, "\"\\u00e9\\/\"");
    json_doc_dispose(&doc);

    static const char clean[] = " {\"t\":\"caf\\u00e9 \\ud83d\\ude00\", \"u\":\"https:\\/\\/x\"} ";
    assert_int_equal(parse(&doc, clean, strlen(clean), &why), 0);
    buf_reset(&b);
    json_copy_sanitized(&doc, 0, &b);
    assert_int_equal(b.len, strlen(clean) - 2);
    assert_memory_equal(b.data, clean + 1, b.len);
    json_doc_dispose(&doc);
    buf_dispose(&b);
}

/* ---- readers ---- */

static void test_duplicate_keys_last_wins_in_json_get(void **state)
{
    (void)state;
    static const char text[] = "{\"a\":1,\"b\":{\"a\":9},\"a\":2,\"c\":3,\"a\":[4]}";
    struct json_doc doc;
    const char *why;
    assert_int_equal(parse(&doc, text, strlen(text), &why), 0);
    int a = json_get(&doc, 0, "a");
    assert_true(json_is_array(&doc, a));
    int64_t v;
    assert_true(json_int64(&doc, json_child(&doc, a, 0), &v));
    assert_int_equal(v, 4);
    assert_true(json_int64(&doc, json_get(&doc, 0, "c"), &v));
    assert_int_equal(v, 3);
    assert_int_equal(json_get(&doc, 0, "d"), -1);
    assert_int_equal(json_get(&doc, 0, ""), -1);
    assert_int_equal(json_get(&doc, a, "a"), -1); /* not an object */
    assert_int_equal(json_get(&doc, -1, "a"), -1);
    assert_int_equal(json_get(&doc, 1000, "a"), -1);
    json_doc_dispose(&doc);
}

static void test_json_get_compares_keys_after_unescaping(void **state)
{
    (void)state;
    static const char text[] = "{\"\\u0061\":1,\"caf\\u00e9\":2,\"\\ud83d\\ude00\":3,\"a\\\"b\":4,"
                               "\"n\\u0000\":5,\"ab\":6}";
    struct json_doc doc;
    const char *why;
    assert_int_equal(parse(&doc, text, strlen(text), &why), 0);
    static const struct {
        const char *key;
        int64_t want;
    } rows[] = {
        {"a", 1},    {"caf\xC3\xA9", 2},   {"\xF0\x9F\x98\x80", 3},
        {"a\"b", 4}, {"n\xEF\xBF\xBD", 5}, {"ab", 6},
    };
    for (size_t k = 0; k < HB_ARRAY_SIZE(rows); k++) {
        int64_t v = -1;
        assert_true(json_int64(&doc, json_get(&doc, 0, rows[k].key), &v));
        assert_int_equal(v, rows[k].want);
    }
    assert_int_equal(json_get(&doc, 0, "caf"), -1);
    assert_int_equal(json_get(&doc, 0, "\\u0061"), -1);
    json_doc_dispose(&doc);
}

static void test_json_child_and_json_next_walk_siblings(void **state)
{
    (void)state;
    static const char text[] = "{\"a\":[1,[2,3],{\"x\":[4]}],\"b\":\"s\",\"c\":{}}";
    struct json_doc doc;
    const char *why;
    assert_int_equal(parse(&doc, text, strlen(text), &why), 0);
    int a = json_child(&doc, 0, 0);
    assert_int_equal(a, json_get(&doc, 0, "a"));
    assert_int_equal(json_child(&doc, 0, 1), json_get(&doc, 0, "b"));
    assert_int_equal(json_child(&doc, 0, 2), json_get(&doc, 0, "c"));
    assert_int_equal(json_child(&doc, 0, 3), -1);
    assert_int_equal(json_child(&doc, 0, -1), -1);
    int third = json_child(&doc, a, 2);
    assert_true(json_is_object(&doc, third));
    assert_int_equal(json_next(&doc, json_child(&doc, a, 1)), third);
    /* From a key, json_next skips the key's value too. */
    assert_int_equal(json_next(&doc, 1), json_get(&doc, 0, "b") - 1);
    assert_int_equal(json_next(&doc, 0), doc.ntoks);
    assert_int_equal(json_next(&doc, -1), -1);
    assert_int_equal(json_child(&doc, json_get(&doc, 0, "b"), 0), -1);
    assert_int_equal(json_child(&doc, json_get(&doc, 0, "c"), 0), -1);
    const char *p;
    size_t n;
    json_raw(&doc, json_get(&doc, 0, "b"), &p, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\"s\"", 3);
    json_raw(&doc, third, &p, &n);
    assert_int_equal(n, strlen("{\"x\":[4]}"));
    assert_memory_equal(p, "{\"x\":[4]}", n);
    json_raw(&doc, -1, &p, &n);
    assert_null(p);
    assert_int_equal(n, 0);
    assert_true(json_is_string(&doc, json_get(&doc, 0, "b")));
    assert_false(json_is_string(&doc, a));
    assert_false(json_is_object(&doc, -1));
    json_doc_dispose(&doc);
}

static const struct {
    const char *text;
    bool is_int;
    int64_t value;
} INT64S[] = {
    {"0", true, 0},
    {"1520383571", true, 1520383571},
    {"-42", true, -42},
    {"9223372036854775807", true, INT64_MAX},
    {"-9223372036854775808", true, INT64_MIN},
    {"\"1520383571\"", true, 1520383571},
    {"\"-7\"", true, -7},
    {"9223372036854775808", false, 0},
    {"-9223372036854775809", false, 0},
    {"\"99999999999999999999\"", false, 0},
    {"1.5", false, 0},
    {"1e3", false, 0},
    {"-0.0", false, 0},
    {"\"12a\"", false, 0},
    {"\"\"", false, 0},
    {"\"-\"", false, 0},
    {"\" 1\"", false, 0},
    {"\"\\u0031\"", false, 0},
    {"true", false, 0},
    {"null", false, 0},
    {"[1]", false, 0},
    {"{}", false, 0},
};

static void test_json_int64_takes_integers_and_digit_strings_only(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(INT64S); k++) {
        struct json_doc doc;
        const char *why;
        assert_int_equal(parse(&doc, INT64S[k].text, strlen(INT64S[k].text), &why), 0);
        int64_t v = 12345;
        bool ok = json_int64(&doc, 0, &v);
        if (ok != INT64S[k].is_int)
            fail_msg("row %zu (%s): json_int64 %d", k, INT64S[k].text, ok);
        if (ok)
            assert_int_equal(v, INT64S[k].value);
        else
            assert_int_equal(v, 12345); /* untouched on failure */
        json_doc_dispose(&doc);
    }
}

static const struct {
    const char *text;
    const char *decoded;
} DECODES[] = {
    {"\"plain\"", "plain"},
    {"\"\"", ""},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
    {"\"caf\\u00e9 \\u20ac\"", "caf\xC3\xA9 \xE2\x82\xAC"},
    {"\"\\ud83d\\udc51\"", "\xF0\x9F\x91\x91"},
    {"\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF"},
    {"\"caf\xC3\xA9\"", "caf\xC3\xA9"},
    {"\"a\\u0000b\"", "a\357\277\275b"}, /* octal: a hex escape would eat the b */
    {"\"\\ud83d!\"", "\xEF\xBF\xBD!"},
    {"\"\\udc51\\ud83d\"", "\xEF\xBF\xBD\xEF\xBF\xBD"},
    {"\"\\u0041\\u0042\"", "AB"},
    {"12.5e3", "12.5e3"},
    {"true", "true"},
};

static void test_string_decode_unescapes_and_replaces_unsafe_escapes(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(DECODES); k++) {
        struct json_doc doc;
        const char *why;
        assert_int_equal(parse(&doc, DECODES[k].text, strlen(DECODES[k].text), &why), 0);
        struct buf b;
        buf_init(&b);
        buf_puts(&b, ">");
        json_string_decode(&doc, 0, &b);
        if (strcmp(b.data + 1, DECODES[k].decoded) != 0)
            fail_msg("row %zu (%s): decoded \"%s\"", k, DECODES[k].text, b.data + 1);
        buf_dispose(&b);
        json_doc_dispose(&doc);
    }
}

/* ---- canonical form ---- */

static char *canonical_of(const char *text)
{
    struct json_doc doc;
    const char *why;
    if (parse(&doc, text, strlen(text), &why) != 0)
        fail_msg("%s refused: %s", text, why);
    struct buf b;
    buf_init(&b);
    json_canonical(&doc, 0, &b);
    json_doc_dispose(&doc);
    return buf_steal(&b);
}

static void test_canonical_is_equal_for_reordered_and_respaced_input(void **state)
{
    (void)state;
    char *a = canonical_of("{\"sender\":{\"id\":\"1\"},\"recipient\":{\"id\":\"2\"},"
                           "\"timestamp\":1700000000000,\"reaction\":{\"mid\":\"m\","
                           "\"action\":\"react\",\"emoji\":\"\\u2764\"}}");
    char *b = canonical_of(" {\n  \"reaction\" : { \"emoji\" : \"\\u2764\" , \"action\" : "
                           "\"react\",\r\n \"mid\":\"m\" },\t\"timestamp\": 1700000000000,"
                           " \"recipient\": {\"id\": \"2\"}, \"sender\": {\"id\": \"1\"}\n} ");
    char *c = canonical_of("{\"sender\":{\"id\":\"1\"},\"recipient\":{\"id\":\"2\"},"
                           "\"timestamp\":1700000000001,\"reaction\":{\"mid\":\"m\","
                           "\"action\":\"react\",\"emoji\":\"\\u2764\"}}");
    assert_string_equal(a, b);
    assert_string_equal(a, "{\"reaction\":{\"action\":\"react\",\"emoji\":\"\\u2764\",\"mid\":"
                           "\"m\"},\"recipient\":{\"id\":\"2\"},\"sender\":{\"id\":\"1\"},"
                           "\"timestamp\":1700000000000}");
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
}

static const struct {
    const char *text;
    const char *canonical;
} CANONICAL[] = {
    {" 12 ", "12"},
    {" \"a b\" ", "\"a b\""},
    {"[ 3 , 1 , 2 ]", "[3,1,2]"},
    {"{ }", "{}"},
    {"[ [ ] , { } ]", "[[],{}]"},
    {"{\"b\":1,\"a\":2,\"a\":1}", "{\"a\":2,\"a\":1,\"b\":1}"},
    {"{\"a\":1,\"a\":2}", "{\"a\":1,\"a\":2}"},
    {"{\"ab\":1,\"a\":2,\"\":3,\"B\":4}", "{\"\":3,\"B\":4,\"a\":2,\"ab\":1}"},
    {"{\"\\u00e9\":1,\"z\":2}", "{\"\\u00e9\":1,\"z\":2}"},
    {"{\"\xC3\xA9\":1,\"z\":2}", "{\"z\":2,\"\xC3\xA9\":1}"},
    {"[{\"y\":[{\"d\":1,\"c\":2}],\"x\":0}, {\"b\":0,\"a\":0}]",
     "[{\"x\":0,\"y\":[{\"c\":2,\"d\":1}]},{\"a\":0,\"b\":0}]"},
    {"{\"s\":\" spaced  { \\\"x\\\" : 1 } \"}", "{\"s\":\" spaced  { \\\"x\\\" : 1 } \"}"},
    {"{\"n\":1.50E+3,\"m\":-0}", "{\"m\":-0,\"n\":1.50E+3}"},
};

static void test_canonical_sorts_members_at_every_level_and_keeps_values_as_sent(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(CANONICAL); k++) {
        char *c = canonical_of(CANONICAL[k].text);
        if (strcmp(c, CANONICAL[k].canonical) != 0)
            fail_msg("row %zu (%s): canonical %s", k, CANONICAL[k].text, c);
        free(c);
    }
}

static void test_canonical_sorts_a_large_object_stably(void **state)
{
    (void)state;
    /* 1000 keys in a scrambled order, each twice with the copies' values in
     * document order: exercises the merge sort and its stability. */
    struct buf in, want;
    buf_init(&in);
    buf_init(&want);
    buf_putc(&in, '{');
    for (int k = 0; k < 2000; k++) {
        int key = (k % 1000) * 7919 % 1000;
        buf_printf(&in, "%s\"k%03d\" : %d", k ? ", " : "", key, k);
    }
    buf_putc(&in, '}');
    buf_putc(&want, '{');
    for (int key = 0; key < 1000; key++) {
        int first = -1;
        for (int k = 0; k < 1000 && first < 0; k++)
            if ((k % 1000) * 7919 % 1000 == key)
                first = k;
        buf_printf(&want, "%s\"k%03d\":%d,\"k%03d\":%d", key ? "," : "", key, first, key,
                   first + 1000);
    }
    buf_putc(&want, '}');
    char *c = canonical_of(in.data);
    assert_string_equal(c, want.data);
    free(c);
    buf_dispose(&in);
    buf_dispose(&want);
}

static void test_canonical_of_a_deep_document_does_not_recurse(void **state)
{
    (void)state;
    char *text = repeat("{\"b\":1,\"a\":[", 120, "]}", 120);
    struct json_doc doc;
    const char *why;
    assert_int_equal(json_parse(&doc, text, strlen(text), 240, &why), 0);
    struct buf b;
    buf_init(&b);
    json_canonical(&doc, 0, &b);
    char *want = repeat("{\"a\":[", 120, "],\"b\":1}", 120);
    assert_string_equal(b.data, want);
    /* The canonical form parses and is its own canonical form. */
    struct json_doc again;
    struct buf c;
    buf_init(&c);
    assert_int_equal(json_parse(&again, b.data, b.len, 240, &why), 0);
    json_canonical(&again, 0, &c);
    assert_string_equal(c.data, want);
    json_doc_dispose(&again);
    buf_dispose(&c);
    free(want);
    buf_dispose(&b);
    json_doc_dispose(&doc);
    free(text);
}

/* ---- writer ---- */

static const struct {
    const char *in;
    size_t len;
    const char *out;
} WRITES[] = {
    {LIT(""), "\"\""},
    {LIT("plain text"), "\"plain text\""},
    {LIT("say \"hi\""), "\"say \\\"hi\\\"\""},
    {LIT("back\\slash"), "\"back\\\\slash\""},
    {LIT("https://example.com/a/b"), "\"https://example.com/a/b\""},
    {LIT("\b\f\n\r\t"), "\"\\b\\f\\n\\r\\t\""},
    {LIT("\x01\x1f\x7f"), "\"\\u0001\\u001f\x7f\""},
    {LIT("nul\0byte"), "\"nul\\u0000byte\""},
    {LIT("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x91\x91"),
     "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x91\x91\""},
    {LIT("\xFF"), "\"\xEF\xBF\xBD\""},
    {LIT("a\xC0\xAFz"), "\"a\xEF\xBF\xBD\xEF\xBF\xBDz\""},
    {LIT("\xED\xA0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
    {LIT("cut \xE2\x82"), "\"cut \xEF\xBF\xBD\""},
    {LIT("cut \xF0\x9F\x91!"), "\"cut \xEF\xBF\xBD!\""},
    {LIT("\xF4\x90\x80\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
};

static void test_write_string_escapes_and_repairs_utf8(void **state)
{
    (void)state;
    for (size_t k = 0; k < HB_ARRAY_SIZE(WRITES); k++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "x:");
        json_write_string(&b, WRITES[k].in, WRITES[k].len);
        if (strcmp(b.data + 2, WRITES[k].out) != 0)
            fail_msg("row %zu: wrote %s", k, b.data + 2);
        /* What the writer produces, json_parse accepts; only a NUL byte
         * makes an escape jsonb would refuse. */
        struct json_doc doc;
        const char *why;
        assert_int_equal(parse(&doc, b.data + 2, b.len - 2, &why), 0);
        assert_int_equal(doc.has_unsafe_escapes, memchr(WRITES[k].in, 0, WRITES[k].len) != NULL);
        json_doc_dispose(&doc);
        buf_dispose(&b);
    }
}

static void test_write_cstr_quotes_and_writes_null_for_null(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    json_write_cstr(&b, "a\tb");
    buf_putc(&b, ',');
    json_write_cstr(&b, NULL);
    assert_string_equal(b.data, "\"a\\tb\",null");
    buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_documents_of_every_shape_parse),
        cmocka_unit_test(test_lax_jsmn_inputs_are_refused_with_a_reason),
        cmocka_unit_test(test_truncated_json_is_refused),
        cmocka_unit_test(test_invalid_utf8_in_strings_is_refused),
        cmocka_unit_test(test_control_characters_and_bad_escapes_are_refused),
        cmocka_unit_test(test_nul_bytes_are_refused_wherever_they_are),
        cmocka_unit_test(test_len_above_int_max_is_too_big),
        cmocka_unit_test(test_nesting_at_the_limit_parses_and_one_more_level_is_refused),
        cmocka_unit_test(test_hundred_thousand_open_brackets_are_refused_quickly),
        cmocka_unit_test(test_array_of_ten_thousand_entries_parses),
        cmocka_unit_test(test_four_mebibyte_body_of_two_million_tokens_parses),
        cmocka_unit_test(test_unsafe_escapes_are_accepted_flagged_and_sanitized),
        cmocka_unit_test(test_sanitized_copy_of_a_member_and_of_a_clean_document_is_exact),
        cmocka_unit_test(test_duplicate_keys_last_wins_in_json_get),
        cmocka_unit_test(test_json_get_compares_keys_after_unescaping),
        cmocka_unit_test(test_json_child_and_json_next_walk_siblings),
        cmocka_unit_test(test_json_int64_takes_integers_and_digit_strings_only),
        cmocka_unit_test(test_string_decode_unescapes_and_replaces_unsafe_escapes),
        cmocka_unit_test(test_canonical_is_equal_for_reordered_and_respaced_input),
        cmocka_unit_test(test_canonical_sorts_members_at_every_level_and_keeps_values_as_sent),
        cmocka_unit_test(test_canonical_sorts_a_large_object_stably),
        cmocka_unit_test(test_canonical_of_a_deep_document_does_not_recurse),
        cmocka_unit_test(test_write_string_escapes_and_repairs_utf8),
        cmocka_unit_test(test_write_cstr_quotes_and_writes_null_for_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
