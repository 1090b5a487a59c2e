/*
 * test_graph.c - the Graph API client: server/graph_error.c (error objects,
 * classification by PROTOCOL.md section 5, usage headers, backoff, the
 * last_error JSON) as tables, and server/graph.c's transport against a tiny
 * scripted HTTP/1.1 listener on 127.0.0.1 (headers sent, body cap, timeout,
 * "maybe delivered", no redirects, connection reuse). The fake Graph API of
 * tests/fake_graph/ covers the real paths in the integration tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "server/graph.h"
#include "server/graph_error.h"

#define LIT(s) s, sizeof(s) - 1

/* ---- classification ---- */

#define NOERR 0, 0, 0, false
#define ERR(code, sub, tr) 1, code, sub, tr

static const struct {
    int status;
    bool is_timeout;
    int has_error;
    int64_t code;
    int64_t subcode;
    bool is_transient;
    enum graph_class want;
} CLASSIFY[] = {
    /* success */
    {200, false, NOERR, GRAPH_OK},
    {201, false, NOERR, GRAPH_OK},
    {204, false, NOERR, GRAPH_OK},
    /* no answer, timeouts */
    {0, false, NOERR, GRAPH_TEMPORARY},
    {0, true, NOERR, GRAPH_TEMPORARY},
    {200, true, NOERR, GRAPH_TEMPORARY},
    {500, true, NOERR, GRAPH_TEMPORARY},
    /* HTTP 5xx without a body */
    {500, false, NOERR, GRAPH_TEMPORARY},
    {502, false, NOERR, GRAPH_TEMPORARY},
    {503, false, NOERR, GRAPH_TEMPORARY},
    {504, false, NOERR, GRAPH_TEMPORARY},
    {599, false, NOERR, GRAPH_TEMPORARY},
    /* other statuses without an error object */
    {400, false, NOERR, GRAPH_PERMANENT},
    {401, false, NOERR, GRAPH_PERMANENT},
    {403, false, NOERR, GRAPH_PERMANENT},
    {404, false, NOERR, GRAPH_PERMANENT},
    {408, false, NOERR, GRAPH_TEMPORARY},
    {429, false, NOERR, GRAPH_TEMPORARY},
    {302, false, NOERR, GRAPH_PERMANENT},
    {101, false, NOERR, GRAPH_PERMANENT},
    {600, false, NOERR, GRAPH_PERMANENT},
    /* temporary codes */
    {500, false, ERR(1, 0, false), GRAPH_TEMPORARY},
    {400, false, ERR(1, 0, false), GRAPH_TEMPORARY},
    {500, false, ERR(2, 0, true), GRAPH_TEMPORARY},
    {400, false, ERR(2, 0, false), GRAPH_TEMPORARY},
    {400, false, ERR(1200, 0, false), GRAPH_TEMPORARY},
    {400, false, ERR(341, 0, false), GRAPH_TEMPORARY},
    /* app rate limit, wherever the HTTP status puts it */
    {400, false, ERR(4, 0, true), GRAPH_APP_RATE_LIMIT},
    {403, false, ERR(4, 0, false), GRAPH_APP_RATE_LIMIT},
    {429, false, ERR(4, 0, false), GRAPH_APP_RATE_LIMIT},
    {500, false, ERR(4, 0, false), GRAPH_APP_RATE_LIMIT},
    {200, false, ERR(4, 0, false), GRAPH_APP_RATE_LIMIT},
    /* account rate limits */
    {400, false, ERR(17, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {403, false, ERR(32, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {400, false, ERR(613, 0, true), GRAPH_ACCOUNT_RATE_LIMIT},
    {400, false, ERR(80001, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {400, false, ERR(80002, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {400, false, ERR(80006, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {429, false, ERR(80014, 0, false), GRAPH_ACCOUNT_RATE_LIMIT},
    {400, false, ERR(80000, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(80015, 0, false), GRAPH_PERMANENT},
    /* policy block */
    {400, false, ERR(368, 0, false), GRAPH_POLICY_BLOCK},
    {403, false, ERR(368, 1390008, true), GRAPH_POLICY_BLOCK},
    /* token */
    {400, false, ERR(190, 0, false), GRAPH_TOKEN_INVALID},
    {401, false, ERR(190, 460, false), GRAPH_TOKEN_INVALID},
    {400, false, ERR(190, 463, false), GRAPH_TOKEN_INVALID},
    {400, false, ERR(190, 467, false), GRAPH_TOKEN_INVALID},
    {500, false, ERR(190, 0, false), GRAPH_TOKEN_INVALID},
    {200, false, ERR(190, 0, true), GRAPH_TOKEN_INVALID},
    {400, false, ERR(102, 0, false), GRAPH_TOKEN_INVALID},
    {400, false, ERR(100, 463, false), GRAPH_TOKEN_INVALID},
    {400, false, ERR(0, 467, false), GRAPH_TOKEN_INVALID},
    /* permanent */
    {400, false, ERR(10, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(10, 2018278, false), GRAPH_PERMANENT},
    {500, false, ERR(10, 2018278, false), GRAPH_PERMANENT},
    {400, false, ERR(100, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(100, 2018001, false), GRAPH_PERMANENT},
    {500, false, ERR(100, 0, false), GRAPH_PERMANENT},
    {403, false, ERR(200, 0, false), GRAPH_PERMANENT},
    {403, false, ERR(230, 0, false), GRAPH_PERMANENT},
    {403, false, ERR(299, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(551, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(199, 0, false), GRAPH_PERMANENT},
    {400, false, ERR(300, 0, false), GRAPH_PERMANENT},
    /* an error object in a 200 is an error */
    {200, false, ERR(100, 0, false), GRAPH_PERMANENT},
    {200, false, ERR(2, 0, false), GRAPH_TEMPORARY},
    {200, false, ERR(0, 0, false), GRAPH_PERMANENT},
    /* codes the table does not list: 5xx retries, anything else fails */
    {400, false, ERR(3, 0, false), GRAPH_PERMANENT},
    {500, false, ERR(3, 0, false), GRAPH_TEMPORARY},
    {503, false, ERR(0, 0, false), GRAPH_TEMPORARY},
    {400, false, ERR(506, 0, false), GRAPH_PERMANENT},
    /* is_transient beats the generic permanent codes, not the specific ones */
    {400, false, ERR(100, 0, true), GRAPH_TEMPORARY},
    {400, false, ERR(3, 0, true), GRAPH_TEMPORARY},
    {400, false, ERR(368, 0, true), GRAPH_POLICY_BLOCK},
};

static void test_classify_follows_the_protocol_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < HB_ARRAY_SIZE(CLASSIFY); i++) {
        struct graph_error e;
        memset(&e, 0, sizeof(e));
        e.code = CLASSIFY[i].code;
        e.subcode = CLASSIFY[i].subcode;
        e.is_transient = CLASSIFY[i].is_transient;
        enum graph_class got = graph_classify(CLASSIFY[i].status, CLASSIFY[i].is_timeout,
                                              CLASSIFY[i].has_error ? &e : NULL);
        if (got != CLASSIFY[i].want)
            fail_msg("row %zu (HTTP %d, timeout %d, code %lld/%lld, transient %d): %s, want %s", i,
                     CLASSIFY[i].status, CLASSIFY[i].is_timeout,
                     CLASSIFY[i].has_error ? (long long)CLASSIFY[i].code : -1LL,
                     (long long)CLASSIFY[i].subcode, CLASSIFY[i].is_transient,
                     graph_class_name(got), graph_class_name(CLASSIFY[i].want));
    }
}

/* Parsed bodies classify like the table: the two functions meet. */
static void test_classify_parsed_bodies(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *body;
        enum graph_class want;
    } rows[] = {
        {200, "{\"recipient_id\":\"1\",\"message_id\":\"m\"}", GRAPH_OK},
        {200, "{\"success\":true}", GRAPH_OK},
        {200, "", GRAPH_OK},
        {500, "", GRAPH_TEMPORARY},
        {502, "<html><body>Bad Gateway</body></html>", GRAPH_TEMPORARY},
        {400, "<html>", GRAPH_PERMANENT},
        {200, "{\"error\":{\"message\":\"(#100) bad\",\"type\":\"OAuthException\",\"code\":100}}",
         GRAPH_PERMANENT},
        {400, "{\"error\":{\"code\":613,\"message\":\"Calls to this api have exceeded\"}}",
         GRAPH_ACCOUNT_RATE_LIMIT},
        {403, "{\"error\":{\"code\":4,\"is_transient\":true}}", GRAPH_APP_RATE_LIMIT},
        {400, "{\"error\":{\"code\":\"190\",\"error_subcode\":\"463\"}}", GRAPH_TOKEN_INVALID},
        {400, "{\"error\":\"invalid_request\"}", GRAPH_PERMANENT},
        {500, "{\"error\":{}}", GRAPH_TEMPORARY},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
        struct graph_error e;
        bool is_err = graph_error_parse(rows[i].body, strlen(rows[i].body), &e);
        enum graph_class got = graph_classify(rows[i].status, false, is_err ? &e : NULL);
        if (got != rows[i].want)
            fail_msg("HTTP %d %s: %s, want %s", rows[i].status, rows[i].body, graph_class_name(got),
                     graph_class_name(rows[i].want));
    }
}

static void test_class_names(void **state)
{
    (void)state;
    assert_string_equal(graph_class_name(GRAPH_OK), "ok");
    assert_string_equal(graph_class_name(GRAPH_TEMPORARY), "temporary");
    assert_string_equal(graph_class_name(GRAPH_APP_RATE_LIMIT), "app_rate_limited");
    assert_string_equal(graph_class_name(GRAPH_ACCOUNT_RATE_LIMIT), "rate_limited");
    assert_string_equal(graph_class_name(GRAPH_POLICY_BLOCK), "policy_blocked");
    assert_string_equal(graph_class_name(GRAPH_TOKEN_INVALID), "token_invalid");
    assert_string_equal(graph_class_name(GRAPH_PERMANENT), "permanent");
    assert_string_equal(graph_class_name((enum graph_class)99), "unknown");
}

/* ---- parsing error objects ---- */

static void test_parse_real_error_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int64_t code, subcode;
        bool is_transient;
        const char *type, *message, *fbtrace_id;
    } rows[] = {
        {"{\"error\":{\"message\":\"Error validating access token: Session has expired on "
         "Tuesday, 04-Mar-25 10:00:00 PST. The current time is Tuesday, 04-Mar-25 11:12:13 "
         "PST.\",\"type\":\"OAuthException\",\"code\":190,\"error_subcode\":463,"
         "\"fbtrace_id\":\"AbCdEfGhIjK\"}}",
         190, 463, false, "OAuthException",
         "Error validating access token: Session has expired on Tuesday, 04-Mar-25 10:00:00 "
         "PST. The current time is Tuesday, 04-Mar-25 11:12:13 PST.",
         "AbCdEfGhIjK"},
        {"{\"error\":{\"message\":\"(#10) This message is sent outside of allowed window. Learn "
         "more about the new policy here: https:\\/\\/developers.facebook.com\\/docs\\/"
         "messenger-platform\\/policy-overview\",\"type\":\"OAuthException\",\"code\":10,"
         "\"error_subcode\":2018278,\"fbtrace_id\":\"A7qxYz_1\"}}",
         10, 2018278, false, "OAuthException",
         "(#10) This message is sent outside of allowed window. Learn more about the new policy "
         "here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
         "A7qxYz_1"},
        {"{\"error\":{\"message\":\"(#4) Application request limit reached\",\"type\":"
         "\"OAuthException\",\"is_transient\":true,\"code\":4,\"fbtrace_id\":\"B1\"}}",
         4, 0, true, "OAuthException", "(#4) Application request limit reached", "B1"},
        {"{\n  \"error\": {\n    \"message\": \"An unexpected error has occurred. Please retry "
         "your request later.\",\n    \"type\": \"OAuthException\",\n    \"is_transient\": "
         "true,\n    \"code\": 2,\n    \"fbtrace_id\": \"C2\"\n  }\n}\n",
         2, 0, true, "OAuthException",
         "An unexpected error has occurred. Please retry your request later.", "C2"},
        {"{\"error\":{\"message\":\"(#100) Param subscribed_fields[0] must be one of "
         "{comments, messages} - got \\\"feed\\\"\",\"type\":\"OAuthException\",\"code\":100,"
         "\"error_subcode\":null,\"is_transient\":false,\"error_user_title\":\"T\","
         "\"error_user_msg\":\"U\",\"fbtrace_id\":\"D3\"}}",
         100, 0, false, "OAuthException",
         "(#100) Param subscribed_fields[0] must be one of {comments, messages} - got \"feed\"",
         "D3"},
        {"{\"error\":{\"message\":\"Caf\\u00e9 \\ud83d\\udc51\",\"code\":551,\"type\":"
         "\"OAuthException\"}}",
         551, 0, false, "OAuthException", "Caf\xc3\xa9 \xf0\x9f\x91\x91", ""},
        /* numbers as strings are read; wrong types are absent */
        {"{\"error\":{\"code\":\"613\",\"error_subcode\":\"80002\",\"message\":7,"
         "\"type\":{\"a\":1},\"is_transient\":\"true\",\"fbtrace_id\":[\"x\"]}}",
         613, 80002, false, "", "", ""},
        {"{\"error\":{\"code\":190.5,\"error_subcode\":99999999999999999999}}", 0, 0, false, "", "",
         ""},
        {"{\"error\":{\"code\":-1}}", -1, 0, false, "", "", ""},
        {"{\"error\":{}}", 0, 0, false, "", "", ""},
        {"{\"data\":[],\"error\":{\"code\":1},\"error\":{\"code\":2}}", 2, 0, false, "", "", ""},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
        struct graph_error e;
        if (!graph_error_parse(rows[i].body, strlen(rows[i].body), &e))
            fail_msg("row %zu: no error object found", i);
        assert_int_equal(e.code, rows[i].code);
        assert_int_equal(e.subcode, rows[i].subcode);
        assert_int_equal(e.is_transient, rows[i].is_transient);
        assert_string_equal(e.type, rows[i].type);
        assert_string_equal(e.message, rows[i].message);
        assert_string_equal(e.fbtrace_id, rows[i].fbtrace_id);
    }
}

static void test_parse_refuses_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t len;
    } rows[] = {
        {LIT("")},
        {LIT(" ")},
        {LIT("<html><head><title>502 Bad Gateway</title></head></html>")},
        {LIT("{\"error\":\"invalid_token\"}")},
        {LIT("{\"error\":null}")},
        {LIT("{\"error\":[{\"code\":190}]}")},
        {LIT("{\"error\":{\"code\":190")},
        {LIT("{\"error\":{\"code\":190}} trailing")},
        {LIT("{\"error\":{\"code\":190,}}")},
        {LIT("{\"error\":{\"code\":190}}\0{}")},
        {LIT("[{\"error\":{\"code\":190}}]")},
        {LIT("{\"success\":true}")},
        {LIT("{\"data\":[{\"error\":{\"code\":190}}]}")},
        {LIT("{\"Error\":{\"code\":190}}")},
        {LIT("\"error\"")},
        {LIT("{\"error\":{\"message\":\"\xff\xfe\"}}")},
        {LIT("{\"error_type\":\"OAuthException\",\"code\":400,\"error_message\":\"x\"}")},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
        struct graph_error e;
        memset(&e, 0x5a, sizeof(e)); /* left-overs must be cleared */
        if (graph_error_parse(rows[i].body, rows[i].len, &e))
            fail_msg("row %zu: an error object found in garbage", i);
        assert_int_equal(e.code, 0);
        assert_int_equal(e.subcode, 0);
        assert_false(e.is_transient);
        assert_string_equal(e.message, "");
        assert_string_equal(e.type, "");
        assert_string_equal(e.fbtrace_id, "");
    }
    struct graph_error e;
    assert_false(graph_error_parse(NULL, 0, &e));
}

static bool is_valid_utf8(const char *s)
{
    struct buf b;
    buf_init(&b);
    json_write_cstr(&b, s);
    /* the writer replaces invalid sequences: the text is valid iff unchanged */
    bool ok = b.len == strlen(s) + 2 && memcmp(b.data + 1, s, strlen(s)) == 0;
    buf_dispose(&b);
    return ok;
}

static void test_parse_truncates_long_strings_on_a_character(void **state)
{
    (void)state;
    struct buf body;
    buf_init(&body);
    struct graph_error e;

    /* 1000 ASCII bytes: kept to 300 */
    buf_puts(&body, "{\"error\":{\"code\":1,\"message\":\"");
    for (int i = 0; i < 1000; i++)
        buf_putc(&body, (char)('a' + i % 26));
    buf_puts(&body, "\",\"type\":\"");
    for (int i = 0; i < 200; i++)
        buf_putc(&body, 'T');
    buf_puts(&body, "\",\"fbtrace_id\":\"");
    for (int i = 0; i < 200; i++)
        buf_putc(&body, 'F');
    buf_puts(&body, "\"}}");
    assert_true(graph_error_parse(body.data, body.len, &e));
    assert_int_equal(strlen(e.message), GRAPH_ERROR_MESSAGE_MAX);
    assert_memory_equal(e.message, "abcdefghijklmnopqrstuvwxyzabcd", 30);
    assert_int_equal(strlen(e.type), GRAPH_ERROR_TYPE_MAX);
    assert_int_equal(strlen(e.fbtrace_id), GRAPH_ERROR_TRACE_MAX);

    /* 299 ASCII bytes then 2-, 3- and 4-byte characters: none is split */
    static const char *const tails[] = {"\\u00e9", "\\u20ac", "\\ud83d\\udc51", "\xc3\xa9"};
    static const size_t want_len[] = {299, 299, 299, 299};
    for (size_t t = 0; t < HB_ARRAY_SIZE(tails); t++) {
        buf_reset(&body);
        buf_puts(&body, "{\"error\":{\"code\":1,\"message\":\"");
        for (int i = 0; i < 299; i++)
            buf_putc(&body, 'x');
        buf_puts(&body, tails[t]);
        buf_puts(&body, "zz\"}}");
        assert_true(graph_error_parse(body.data, body.len, &e));
        assert_int_equal(strlen(e.message), want_len[t]);
        assert_true(is_valid_utf8(e.message));
    }

    /* exactly 300 bytes ending in a whole 2-byte character is kept whole */
    buf_reset(&body);
    buf_puts(&body, "{\"error\":{\"message\":\"");
    for (int i = 0; i < 298; i++)
        buf_putc(&body, 'x');
    buf_puts(&body, "\\u00e9\"}}");
    assert_true(graph_error_parse(body.data, body.len, &e));
    assert_int_equal(strlen(e.message), 300);
    assert_true(is_valid_utf8(e.message));
    buf_dispose(&body);
}

/* ---- usage headers ---- */

#define MIN_MS 60000LL
#define DEF_MS 300000LL  /* 5 min */
#define MAX_MS 3600000LL /* 1 h */

static void test_usage_pause_from_headers(void **state)
{
    (void)state;
    static const struct {
        const char *buc;
        const char *app;
        int64_t want;
    } rows[] = {
        /* the largest estimate wins, across ids and entries */
        {"{\"123\":[{\"type\":\"messenger\",\"call_count\":100,\"total_cputime\":10,"
         "\"total_time\":20,\"estimated_time_to_regain_access\":5}],"
         "\"456\":[{\"type\":\"pages\",\"call_count\":10,\"estimated_time_to_regain_access\":12},"
         "{\"type\":\"instagram\",\"call_count\":3,\"estimated_time_to_regain_access\":3}]}",
         NULL, 12 * MIN_MS},
        {"{\"1\":[{\"type\":\"messenger\",\"estimated_time_to_regain_access\":1}]}", NULL, MIN_MS},
        {" { \"1\" : [ { \"estimated_time_to_regain_access\" : 7 } ] } ", NULL, 7 * MIN_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":\"7\"}]}", NULL, 7 * MIN_MS},
        /* a bare object instead of an array is read too */
        {"{\"1\":{\"estimated_time_to_regain_access\":2}}", NULL, 2 * MIN_MS},
        /* no estimate: the limit is shown, or not; either way the default */
        {"{\"1\":[{\"type\":\"messenger\",\"call_count\":100,\"total_cputime\":100,"
         "\"total_time\":100,\"estimated_time_to_regain_access\":0}]}",
         NULL, DEF_MS},
        {"{\"1\":[{\"type\":\"messenger\",\"call_count\":4}]}", NULL, DEF_MS},
        {NULL, "{\"call_count\":100,\"total_cputime\":5,\"total_time\":7}", DEF_MS},
        {NULL, "{\"call_count\":100,\"estimated_time_to_regain_access\":4}", 4 * MIN_MS},
        {NULL, NULL, DEF_MS},
        {"", "", DEF_MS},
        {"{}", "{}", DEF_MS},
        /* malformed */
        {"{", NULL, DEF_MS},
        {"not json", "also not", DEF_MS},
        {"[]", NULL, DEF_MS},
        {"[{\"estimated_time_to_regain_access\":9}]", NULL, DEF_MS},
        {"{\"1\":5}", NULL, DEF_MS},
        {"{\"1\":[1,\"x\",null,[{\"estimated_time_to_regain_access\":9}]]}", NULL, DEF_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":\"soon\"}]}", NULL, DEF_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":1.5}]}", NULL, DEF_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":-10}]}", NULL, DEF_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":5}]", NULL, DEF_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":5}]}x", NULL, DEF_MS},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "]]]]]",
         NULL, DEF_MS},
        /* one good entry beside bad ones still counts */
        {"{\"1\":[{\"estimated_time_to_regain_access\":\"x\"}],\"2\":7,"
         "\"3\":[{\"estimated_time_to_regain_access\":9}]}",
         NULL, 9 * MIN_MS},
        /* huge values are capped, never overflow */
        {"{\"1\":[{\"estimated_time_to_regain_access\":61}]}", NULL, MAX_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":60}]}", NULL, MAX_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":59}]}", NULL, 59 * MIN_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":1440}]}", NULL, MAX_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":9223372036854775807}]}", NULL, MAX_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":153722867280912931}]}", NULL, MAX_MS},
        {"{\"1\":[{\"estimated_time_to_regain_access\":99999999999999999999}]}", NULL, DEF_MS},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
        int64_t got = graph_usage_pause_ms(rows[i].buc, rows[i].app, DEF_MS, MAX_MS);
        if (got != rows[i].want)
            fail_msg("row %zu (%s | %s): %lld ms, want %lld", i, rows[i].buc ? rows[i].buc : "-",
                     rows[i].app ? rows[i].app : "-", (long long)got, (long long)rows[i].want);
    }
}

static void test_usage_pause_bounds(void **state)
{
    (void)state;
    const char *eta5 = "{\"1\":[{\"estimated_time_to_regain_access\":5}]}";
    /* the default is capped too */
    assert_int_equal(graph_usage_pause_ms(NULL, NULL, 2 * MAX_MS, MAX_MS), MAX_MS);
    /* a short estimate is not stretched to the default */
    assert_int_equal(graph_usage_pause_ms(eta5, NULL, MAX_MS, MAX_MS), 5 * MIN_MS);
    /* negative arguments count as 0 */
    assert_int_equal(graph_usage_pause_ms(NULL, NULL, -5, MAX_MS), 0);
    assert_int_equal(graph_usage_pause_ms(eta5, NULL, DEF_MS, -1), 0);
    assert_int_equal(graph_usage_pause_ms(eta5, NULL, DEF_MS, 0), 0);
    /* the largest cap there is */
    assert_int_equal(graph_usage_pause_ms(eta5, NULL, DEF_MS, INT64_MAX), 5 * MIN_MS);
    const char *huge = "{\"1\":[{\"estimated_time_to_regain_access\":9223372036854775807}]}";
    assert_int_equal(graph_usage_pause_ms(huge, NULL, DEF_MS, INT64_MAX), INT64_MAX);
    /* short test caps below a minute */
    assert_int_equal(graph_usage_pause_ms(eta5, NULL, 50, 200), 200);
    assert_int_equal(graph_usage_pause_ms(NULL, NULL, 50, 200), 50);
}

static void test_usage_percent(void **state)
{
    (void)state;
    assert_int_equal(graph_usage_percent(NULL, NULL), -1);
    assert_int_equal(graph_usage_percent("garbage", "{"), -1);
    assert_int_equal(graph_usage_percent(NULL, "{\"call_count\":28,\"total_cputime\":25,"
                                               "\"total_time\":41}"),
                     41);
    assert_int_equal(graph_usage_percent("{\"1\":[{\"call_count\":7},{\"total_time\":103}],"
                                         "\"2\":[{\"total_cputime\":99}]}",
                                         "{\"call_count\":5}"),
                     103);
    assert_int_equal(graph_usage_percent("{\"1\":[{\"type\":\"messenger\"}]}", NULL), -1);
}

/* ---- backoff ---- */

/* min(base * 2^(attempt-1), cap), computed without shifts that overflow. */
static uint64_t expected_delay(int attempt, uint64_t base, uint64_t cap)
{
    uint64_t d = base;
    for (int i = 1; i < attempt; i++) {
        if (d >= cap)
            break;
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    }
    return d < cap ? d : cap;
}

static void test_backoff_bounds_over_attempts(void **state)
{
    (void)state;
    static const struct {
        int64_t base, cap;
    } params[] = {
        {1000, 15 * 60 * 1000}, {2000, 900000},         {1, 1},    {1, 2}, {1, 3}, {3, 1000},
        {10, INT64_MAX},        {INT64_MAX, INT64_MAX}, {50, 200},
    };
    static const uint64_t randoms[] = {0, 1, 12345, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t p = 0; p < HB_ARRAY_SIZE(params); p++) {
        int64_t prev_low = 0;
        for (int a = 1; a <= 100; a++) {
            uint64_t d = expected_delay(a, (uint64_t)params[p].base, (uint64_t)params[p].cap);
            uint64_t low = d - d / 2;
            for (size_t r = 0; r < HB_ARRAY_SIZE(randoms); r++) {
                int64_t got = graph_backoff_ms(a, params[p].base, params[p].cap, randoms[r]);
                if (got < 1 || got > params[p].cap || (uint64_t)got < low || (uint64_t)got > d)
                    fail_msg("base %lld cap %lld attempt %d random %llu: %lld outside [%llu, %llu]",
                             (long long)params[p].base, (long long)params[p].cap, a,
                             (unsigned long long)randoms[r], (long long)got,
                             (unsigned long long)low, (unsigned long long)d);
            }
            /* random 0 gives the fixed half exactly; the floor never drops */
            int64_t at0 = graph_backoff_ms(a, params[p].base, params[p].cap, 0);
            assert_int_equal((uint64_t)at0, low);
            assert_true(at0 >= prev_low);
            prev_low = at0;
        }
    }
}

static void test_backoff_values(void **state)
{
    (void)state;
    /* base 1 s, cap 60 s */
    assert_int_equal(graph_backoff_ms(1, 1000, 60000, 0), 500);
    assert_int_equal(graph_backoff_ms(1, 1000, 60000, 500), 1000);
    assert_int_equal(graph_backoff_ms(1, 1000, 60000, 501), 500);
    assert_int_equal(graph_backoff_ms(1, 1000, 60000, UINT64_MAX), 500 + UINT64_MAX % 501);
    assert_int_equal(graph_backoff_ms(2, 1000, 60000, 0), 1000);
    assert_int_equal(graph_backoff_ms(3, 1000, 60000, 0), 2000);
    assert_int_equal(graph_backoff_ms(3, 1000, 60000, 2000), 4000);
    assert_int_equal(graph_backoff_ms(6, 1000, 60000, 16000), 32000);
    assert_int_equal(graph_backoff_ms(7, 1000, 60000, 0), 30000);     /* 64 s capped to 60 */
    assert_int_equal(graph_backoff_ms(7, 1000, 60000, 30000), 60000); /* never above the cap */
    assert_int_equal(graph_backoff_ms(INT_MAX, 1000, 60000, 0), 30000);
    assert_int_equal(graph_backoff_ms(INT_MAX, 1000, 60000, UINT64_MAX),
                     30000 + UINT64_MAX % 30001);
    /* attempt below 1 is the first retry */
    assert_int_equal(graph_backoff_ms(0, 1000, 60000, 0), 500);
    assert_int_equal(graph_backoff_ms(-7, 1000, 60000, 0), 500);
    assert_int_equal(graph_backoff_ms(INT_MIN, 1000, 60000, 0), 500);
    /* never 0, whatever the arguments */
    assert_int_equal(graph_backoff_ms(1, 1, 1000, 0), 1);
    assert_int_equal(graph_backoff_ms(1, 1, 1000, UINT64_MAX), 1);
    assert_int_equal(graph_backoff_ms(1, 0, 0, 0), 1);
    assert_int_equal(graph_backoff_ms(5, -10, -10, UINT64_MAX), 1);
    /* a base above the cap is the cap */
    assert_int_equal(graph_backoff_ms(1, 5000, 1000, 0), 500);
    /* the largest delays do not overflow */
    assert_int_equal(graph_backoff_ms(100, INT64_MAX, INT64_MAX, UINT64_MAX) <= INT64_MAX, 1);
    assert_true(graph_backoff_ms(63, 1, INT64_MAX, UINT64_MAX) >= ((int64_t)1 << 61));
    assert_true(graph_backoff_ms(64, 1, INT64_MAX, 0) >= INT64_MAX / 2);
}

/* Random values spread over the whole upper half, no value outside. */
static void test_backoff_jitter_covers_the_range(void **state)
{
    (void)state;
    bool seen[21] = {false};
    for (uint64_t r = 0; r < 100; r++) {
        int64_t got = graph_backoff_ms(3, 5, 1000, r); /* delay 20: [10, 20] */
        assert_true(got >= 10 && got <= 20);
        seen[got] = true;
    }
    for (int v = 10; v <= 20; v++)
        if (!seen[v])
            fail_msg("jitter never gave %d", v);
}

/* ---- last_error JSON ---- */

static void assert_valid_json(const struct buf *b)
{
    struct json_doc doc;
    const char *why = NULL;
    if (json_parse(&doc, b->data, b->len, JSON_DEFAULT_MAX_DEPTH, &why) != 0)
        fail_msg("not JSON (%s): %s", why, b->data);
    assert_true(json_is_object(&doc, 0));
    json_doc_dispose(&doc);
}

static void test_error_json_exact(void **state)
{
    (void)state;
    struct graph_error e;
    const char *body = "{\"error\":{\"message\":\"Error validating access token\",\"type\":"
                       "\"OAuthException\",\"code\":190,\"error_subcode\":463,\"fbtrace_id\":"
                       "\"AbC\"}}";
    assert_true(graph_error_parse(body, strlen(body), &e));
    struct buf b;
    buf_init(&b);
    graph_error_json(&b, 400, graph_classify(400, false, &e), &e, NULL);
    assert_string_equal(b.data, "{\"class\":\"token_invalid\",\"http_status\":400,\"code\":190,"
                                "\"subcode\":463,\"type\":\"OAuthException\",\"message\":"
                                "\"Error validating access token\",\"fbtrace_id\":\"AbC\"}");
    assert_valid_json(&b);

    buf_reset(&b);
    const char *b2 = "{\"error\":{\"message\":\"(#2) Service temporarily unavailable\",\"type\":"
                     "\"OAuthException\",\"is_transient\":true,\"code\":2,\"fbtrace_id\":\"Z\"}}";
    assert_true(graph_error_parse(b2, strlen(b2), &e));
    graph_error_json(&b, 500, GRAPH_TEMPORARY, &e, "ignored when Meta gave a message");
    assert_string_equal(b.data, "{\"class\":\"temporary\",\"http_status\":500,\"code\":2,"
                                "\"type\":\"OAuthException\",\"message\":\"(#2) Service "
                                "temporarily unavailable\",\"fbtrace_id\":\"Z\","
                                "\"is_transient\":true}");

    /* a timeout: no status, curl's words */
    buf_reset(&b);
    graph_error_json(&b, 0, GRAPH_TEMPORARY, NULL,
                     "Operation timed out after 200 milliseconds with 0 bytes received");
    assert_string_equal(b.data, "{\"class\":\"temporary\",\"message\":\"Operation timed out after "
                                "200 milliseconds with 0 bytes received\"}");

    /* HTTP 5xx without a body, and without anything at all */
    buf_reset(&b);
    graph_error_json(&b, 502, GRAPH_TEMPORARY, NULL, NULL);
    assert_string_equal(b.data, "{\"class\":\"temporary\",\"http_status\":502,\"message\":\"HTTP "
                                "502 without an error object\"}");
    buf_reset(&b);
    graph_error_json(&b, 0, GRAPH_TEMPORARY, NULL, "");
    assert_string_equal(b.data,
                        "{\"class\":\"temporary\",\"message\":\"no answer from the Graph API\"}");
    buf_reset(&b);
    memset(&e, 0, sizeof(e));
    e.code = 3;
    graph_error_json(&b, 400, GRAPH_PERMANENT, &e, NULL);
    assert_string_equal(b.data, "{\"class\":\"permanent\",\"http_status\":400,\"code\":3,"
                                "\"message\":\"HTTP 400 with an error object but no message\"}");
    buf_reset(&b);
    graph_error_json(&b, 200, GRAPH_OK, NULL, NULL);
    assert_string_equal(b.data, "{\"class\":\"ok\",\"http_status\":200}");

    /* appends, never resets */
    buf_reset(&b);
    buf_puts(&b, "[");
    graph_error_json(&b, 0, GRAPH_PERMANENT, NULL, "x");
    assert_string_equal(b.data, "[{\"class\":\"permanent\",\"message\":\"x\"}");
    buf_dispose(&b);
}

static void test_error_json_escapes(void **state)
{
    (void)state;
    struct graph_error e;
    const char *body = "{\"error\":{\"message\":\"quote \\\" backslash \\\\ newline \\n tab \\t "
                       "bell \\u0007 nul \\u0000 slash \\/ caf\\u00e9 <script>\",\"type\":"
                       "\"Weird\\\"Type\",\"code\":100,\"fbtrace_id\":\"a\\\\b\"}}";
    assert_true(graph_error_parse(body, strlen(body), &e));
    struct buf b;
    buf_init(&b);
    graph_error_json(&b, 400, GRAPH_PERMANENT, &e, NULL);
    assert_string_equal(b.data, "{\"class\":\"permanent\",\"http_status\":400,\"code\":100,"
                                "\"type\":\"Weird\\\"Type\",\"message\":\"quote \\\" backslash "
                                "\\\\ newline \\n tab \\t bell \\u0007 nul \xef\xbf\xbd slash / "
                                "caf\xc3\xa9 <script>\",\"fbtrace_id\":\"a\\\\b\"}");
    assert_valid_json(&b);

    /* transport text: control bytes and invalid UTF-8 stay valid JSON */
    buf_reset(&b);
    graph_error_json(&b, 0, GRAPH_TEMPORARY, NULL, "bad \x01\x1f\xff\xc3 \"end\"\r\n");
    assert_valid_json(&b);
    assert_string_equal(b.data, "{\"class\":\"temporary\",\"message\":\"bad \\u0001\\u001f"
                                "\xef\xbf\xbd\xef\xbf\xbd \\\"end\\\"\\r\\n\"}");

    /* a long transport message is cut to GRAPH_ERROR_MESSAGE_MAX bytes */
    char longmsg[1001];
    memset(longmsg, 'm', 1000);
    longmsg[1000] = '\0';
    buf_reset(&b);
    graph_error_json(&b, 0, GRAPH_TEMPORARY, NULL, longmsg);
    assert_valid_json(&b);
    assert_int_equal(b.len, strlen("{\"class\":\"temporary\",\"message\":\"\"}") + 300);

    /* every class renders as valid JSON with its name */
    for (int c = GRAPH_OK; c <= GRAPH_PERMANENT; c++) {
        buf_reset(&b);
        graph_error_json(&b, 403, (enum graph_class)c, &e, "t");
        assert_valid_json(&b);
        char want[64];
        snprintf(want, sizeof(want), "{\"class\":\"%s\",", graph_class_name((enum graph_class)c));
        assert_memory_equal(b.data, want, strlen(want));
    }
    buf_dispose(&b);
}

/* ---- query escaping ---- */

static void test_query_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } rows[] = {
        {LIT(""), ""},
        {LIT("comments"), "comments"},
        {LIT("comments,messages"), "comments%2Cmessages"},
        {LIT("AZaz09-._~"), "AZaz09-._~"},
        {LIT("a b&c=d/e?f#g+h%"), "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25"},
        {LIT("caf\xc3\xa9"), "caf%C3%A9"},
        {LIT("\r\n\x00\xff"), "%0D%0A%00%FF"},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(rows); i++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "x=");
        graph_query_escape(&b, rows[i].in, rows[i].len);
        assert_memory_equal(b.data, "x=", 2);
        assert_string_equal(b.data + 2, rows[i].want);
        buf_dispose(&b);
    }
}

/* ---- the transport, against a scripted local listener ---- */

enum fake_mode {
    FAKE_OK,         /* 200 with usage headers and a JSON body */
    FAKE_500_EMPTY,  /* 500, no body */
    FAKE_BIG_LENGTH, /* 200 announcing 2 MiB */
    FAKE_BIG_CHUNKS, /* 200, chunked, 2 MiB */
    FAKE_SILENT,     /* reads the request, never answers */
    FAKE_DROP,       /* reads the request, closes */
    FAKE_REDIRECT,   /* 302 elsewhere */
    FAKE_CONTINUE,   /* 100 Continue with a usage header, then 200 without */
};

struct fake {
    int listen_fd;
    int port;
    pthread_t thread;
    pthread_mutex_t mu;
    enum fake_mode mode;
    bool is_stopping;
    int connections;
    int requests;
    struct buf last; /* the last request, head and body */
};

static bool fake_stopping(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    bool s = f->is_stopping;
    pthread_mutex_unlock(&f->mu);
    return s;
}

/* Waits up to 50 ms for fd; -1 when stopping or on error. */
static int fake_wait(struct fake *f, int fd)
{
    for (;;) {
        if (fake_stopping(f))
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, 50);
        if (n > 0)
            return 0;
        if (n < 0)
            return -1;
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* Reads one request into req; false when the peer closed or on stop. */
static bool read_request(struct fake *f, int fd, struct buf *req)
{
    buf_reset(req);
    size_t body_len = 0;
    size_t head_len = 0; /* through the blank line; 0 until it is seen */
    for (;;) {
        if (head_len > 0 && req->len >= head_len + body_len)
            return true;
        if (fake_wait(f, fd) != 0)
            return false;
        char tmp[65536];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r <= 0)
            return false;
        buf_append(req, tmp, (size_t)r);
        const char *end = head_len == 0 ? strstr(req->data, "\r\n\r\n") : NULL;
        if (end != NULL) {
            head_len = (size_t)(end - req->data) + 4;
            const char *cl = strcasestr(req->data, "\r\nContent-Length:");
            if (cl != NULL && cl < end)
                body_len = (size_t)strtoul(cl + 17, NULL, 10);
        }
    }
}

static const char OK_BODY[] = "{\"recipient_id\":\"17841\",\"message_id\":\"aWdfZAG\"}";

static void answer(struct fake *f, int fd, enum fake_mode mode)
{
    char head[512];
    switch (mode) {
    case FAKE_OK:
        snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "X-App-Usage: {\"call_count\":28,\"total_cputime\":25,\"total_time\":41}\r\n"
                 "x-business-use-case-usage:   {\"1\":[{\"type\":\"messenger\",\"call_count\":"
                 "100,\"estimated_time_to_regain_access\":3}]}  \r\n"
                 "Content-Length: %zu\r\n\r\n",
                 sizeof(OK_BODY) - 1);
        send_all(fd, head, strlen(head));
        send_all(fd, OK_BODY, sizeof(OK_BODY) - 1);
        break;
    case FAKE_500_EMPTY:
        snprintf(head, sizeof(head),
                 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
        send_all(fd, head, strlen(head));
        break;
    case FAKE_BIG_LENGTH:
    case FAKE_BIG_CHUNKS: {
        size_t total = 2u << 20;
        if (mode == FAKE_BIG_LENGTH)
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", total);
        else
            snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        send_all(fd, head, strlen(head));
        static char chunk[65536];
        memset(chunk, 'x', sizeof(chunk));
        for (size_t sent = 0; sent < total && !fake_stopping(f); sent += sizeof(chunk)) {
            char size_line[32];
            if (mode == FAKE_BIG_CHUNKS) {
                snprintf(size_line, sizeof(size_line), "%zx\r\n", sizeof(chunk));
                send_all(fd, size_line, strlen(size_line));
            }
            send_all(fd, chunk, sizeof(chunk));
            if (mode == FAKE_BIG_CHUNKS)
                send_all(fd, "\r\n", 2);
        }
        if (mode == FAKE_BIG_CHUNKS)
            send_all(fd, "0\r\n\r\n", 5);
        break;
    }
    case FAKE_REDIRECT:
        snprintf(head, sizeof(head),
                 "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/elsewhere\r\n"
                 "Content-Length: 0\r\n\r\n",
                 f->port);
        send_all(fd, head, strlen(head));
        break;
    case FAKE_CONTINUE:
        snprintf(head, sizeof(head),
                 "HTTP/1.1 100 Continue\r\nX-App-Usage: {\"call_count\":100}\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        send_all(fd, head, strlen(head));
        break;
    case FAKE_SILENT:
    case FAKE_DROP:
        break;
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    struct buf req;
    buf_init(&req);
    while (fake_wait(f, f->listen_fd) == 0) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&f->mu);
        f->connections++;
        pthread_mutex_unlock(&f->mu);
        while (read_request(f, fd, &req)) {
            pthread_mutex_lock(&f->mu);
            f->requests++;
            buf_reset(&f->last);
            buf_append(&f->last, req.data, req.len);
            enum fake_mode mode = f->mode;
            pthread_mutex_unlock(&f->mu);
            if (mode == FAKE_DROP)
                break;
            if (mode == FAKE_SILENT) {
                /* until the client gives up and closes */
                char tmp[256];
                while (fake_wait(f, fd) == 0 && recv(fd, tmp, sizeof(tmp), 0) > 0)
                    ;
                break;
            }
            answer(f, fd, mode);
        }
        close(fd);
    }
    buf_dispose(&req);
    return NULL;
}

static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int fake_setup(void **state)
{
    struct fake *f = xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    buf_init(&f->last);
    f->listen_fd = listen_local(&f->port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    *state = f;
    return 0;
}

static int fake_teardown(void **state)
{
    struct fake *f = *state;
    pthread_mutex_lock(&f->mu);
    f->is_stopping = true;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
    buf_dispose(&f->last);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static void fake_set(struct fake *f, enum fake_mode mode)
{
    pthread_mutex_lock(&f->mu);
    f->mode = mode;
    pthread_mutex_unlock(&f->mu);
}

/* A copy of the last request the fake read; the caller frees. */
static char *fake_last(struct fake *f, int *requests, int *connections)
{
    pthread_mutex_lock(&f->mu);
    char *s = xstrndup(f->last.data != NULL ? f->last.data : "", f->last.len);
    if (requests != NULL)
        *requests = f->requests;
    if (connections != NULL)
        *connections = f->connections;
    pthread_mutex_unlock(&f->mu);
    return s;
}

static struct graph_client *client(int64_t timeout_ms)
{
    struct graph_options o = {
        .connect_timeout_ms = 1000,
        .timeout_ms = timeout_ms,
        .max_response_bytes = 0,
        .user_agent = NULL,
        .ca_file = NULL,
    };
    return graph_client_new(&o);
}

#define TOKEN "IGQVJtest-token_0123456789"

static void test_transport_sends_what_it_should(void **state)
{
    struct fake *f = *state;
    struct graph_client *gc = client(2000);
    struct graph_response r;
    char url[128];
    const char body[] = "{\"recipient\":{\"id\":\"1\"},\"message\":{\"text\":\"hi\"}}";

    fake_set(f, FAKE_OK);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/17841/messages", f->port);
    assert_int_equal(
        graph_request(gc, "POST", url, TOKEN, "application/json", body, sizeof(body) - 1, &r), 0);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.curl_code, CURLE_OK);
    assert_string_equal(r.body.data, OK_BODY);
    assert_int_equal(r.body.len, sizeof(OK_BODY) - 1);
    assert_non_null(r.app_usage);
    assert_string_equal(r.app_usage, "{\"call_count\":28,\"total_cputime\":25,\"total_time\":41}");
    assert_non_null(r.buc_usage);
    assert_string_equal(r.buc_usage, "{\"1\":[{\"type\":\"messenger\",\"call_count\":100,"
                                     "\"estimated_time_to_regain_access\":3}]}");
    assert_int_equal(graph_usage_pause_ms(r.buc_usage, r.app_usage, DEF_MS, MAX_MS), 3 * MIN_MS);
    assert_false(r.is_timeout);
    assert_false(r.is_maybe_delivered);
    assert_string_equal(r.error, "");
    graph_response_dispose(&r);

    char *req = fake_last(f, NULL, NULL);
    assert_true(strncmp(req, "POST /v25.0/17841/messages HTTP/1.1\r\n", 37) == 0);
    assert_non_null(strstr(req, "\r\nAuthorization: Bearer " TOKEN "\r\n"));
    assert_non_null(strstr(req, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(req, "\r\nUser-Agent: hubbub/0.1.0\r\n"));
    assert_null(strcasestr(req, "\r\nExpect:"));
    assert_non_null(strstr(req, body));
    free(req);

    /* GET and DELETE carry no body; a POST without one sends Content-Length 0 */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/9/subscribed_apps", f->port);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), 0);
    graph_response_dispose(&r);
    req = fake_last(f, NULL, NULL);
    assert_true(strncmp(req, "GET /v25.0/9/subscribed_apps HTTP/1.1\r\n", 39) == 0);
    free(req);
    assert_int_equal(graph_request(gc, "DELETE", url, TOKEN, NULL, NULL, 0, &r), 0);
    graph_response_dispose(&r);
    req = fake_last(f, NULL, NULL);
    assert_true(strncmp(req, "DELETE /v25.0/9/subscribed_apps HTTP/1.1\r\n", 42) == 0);
    assert_null(strcasestr(req, "\r\nContent-Length:"));
    free(req);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, NULL, NULL, 0, &r), 0);
    graph_response_dispose(&r);
    int requests = 0, connections = 0;
    req = fake_last(f, &requests, &connections);
    assert_true(strncmp(req, "POST /v25.0/9/subscribed_apps HTTP/1.1\r\n", 40) == 0);
    assert_non_null(strcasestr(req, "\r\nContent-Length: 0\r\n"));
    assert_null(strcasestr(req, "\r\nContent-Type:"));
    free(req);

    /* one connection for all four calls; no token without one given */
    assert_int_equal(requests, 4);
    assert_int_equal(connections, 1);

    /* curl asks for 100-continue only for big bodies: not even then */
    size_t big_len = 1536 * 1024;
    char *big = xmalloc(big_len);
    memset(big, 'b', big_len);
    int rc = graph_request(gc, "POST", url, TOKEN, "application/json", big, big_len, &r);
    if (rc != 0)
        fail_msg("big POST: %s", r.error);
    assert_int_equal(r.http_status, 200);
    graph_response_dispose(&r);
    free(big);
    req = fake_last(f, NULL, NULL);
    assert_null(strcasestr(req, "\r\nExpect:"));
    assert_true(strlen(req) > big_len);
    free(req);
    assert_int_equal(graph_request(gc, "GET", url, NULL, NULL, NULL, 0, &r), 0);
    graph_response_dispose(&r);
    req = fake_last(f, NULL, NULL);
    assert_null(strcasestr(req, "Authorization"));
    free(req);
    graph_client_free(gc);
}

static void test_transport_refuses_bad_arguments(void **state)
{
    struct fake *f = *state;
    struct graph_client *gc = client(2000);
    struct graph_response r;
    char url[160];
    int before = 0, after = 0;
    free(fake_last(f, &before, NULL));

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/1/subscribed_apps", f->port);
    assert_int_equal(graph_request(gc, "PUT", url, TOKEN, NULL, NULL, 0, &r), HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, "get", url, TOKEN, NULL, NULL, 0, &r), HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, NULL, url, TOKEN, NULL, NULL, 0, &r), HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, "GET", NULL, TOKEN, NULL, NULL, 0, &r), HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, "GET", url, "tok\r\nX-Evil: 1", NULL, NULL, 0, &r),
                     HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, "GET", url, "", NULL, NULL, 0, &r), HB_EINVAL);
    graph_response_dispose(&r);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, "text/plain\nX: 1", "a", 1, &r),
                     HB_EINVAL);
    graph_response_dispose(&r);
    /* the token in the URL is refused, not sent */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/1/subscribed_apps?access_token=%s",
             f->port, TOKEN);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, NULL, NULL, 0, &r), HB_EINVAL);
    assert_int_equal(r.http_status, 0);
    assert_non_null(r.body.data);
    graph_response_dispose(&r);

    free(fake_last(f, &after, NULL));
    assert_int_equal(after, before);
    graph_client_free(gc);
}

static void test_transport_failures(void **state)
{
    struct fake *f = *state;
    struct graph_client *gc = client(300);
    struct graph_response r;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/1/messages", f->port);

    /* 500 without a body is an answer */
    fake_set(f, FAKE_500_EMPTY);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, "application/json", "{}", 2, &r), 0);
    assert_int_equal(r.http_status, 500);
    assert_int_equal(r.body.len, 0);
    assert_string_equal(r.body.data, "");
    assert_null(r.app_usage);
    assert_null(r.buc_usage);
    graph_response_dispose(&r);

    /* no answer in time: timed out, and Meta may have the request */
    fake_set(f, FAKE_SILENT);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, "application/json", "{}", 2, &r),
                     HB_EIO);
    assert_int_equal(r.http_status, 0);
    assert_int_equal(r.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_true(r.is_timeout);
    assert_true(r.is_maybe_delivered);
    assert_true(r.error[0] != '\0');
    assert_null(strstr(r.error, TOKEN));
    assert_int_equal(graph_classify(r.http_status, r.is_timeout, NULL), GRAPH_TEMPORARY);
    graph_response_dispose(&r);

    /* the connection drops after the request */
    fake_set(f, FAKE_DROP);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, "application/json", "{}", 2, &r),
                     HB_EIO);
    assert_int_equal(r.http_status, 0);
    assert_false(r.is_timeout);
    assert_true(r.is_maybe_delivered);
    assert_null(strstr(r.error, TOKEN));
    graph_response_dispose(&r);

    /* bodies over the cap are cut, announced or not */
    fake_set(f, FAKE_BIG_LENGTH);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), HB_EIO);
    assert_true(r.is_too_big);
    assert_int_equal(r.http_status, 0);
    assert_int_equal(r.body.len, 0);
    graph_response_dispose(&r);
    fake_set(f, FAKE_BIG_CHUNKS);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), HB_EIO);
    assert_true(r.is_too_big);
    assert_false(r.is_timeout);
    assert_int_equal(r.http_status, 0);
    graph_response_dispose(&r);

    /* redirects are answers, not followed */
    int before = 0, after = 0;
    free(fake_last(f, &before, NULL));
    fake_set(f, FAKE_REDIRECT);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.http_status, 302);
    graph_response_dispose(&r);
    free(fake_last(f, &after, NULL));
    assert_int_equal(after, before + 1);

    /* only the final response's headers are kept */
    fake_set(f, FAKE_CONTINUE);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.http_status, 200);
    assert_null(r.app_usage);
    assert_string_equal(r.body.data, "{}");
    graph_response_dispose(&r);

    /* the client is still good after all that */
    fake_set(f, FAKE_OK);
    assert_int_equal(graph_request(gc, "GET", url, TOKEN, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.http_status, 200);
    graph_response_dispose(&r);
    graph_client_free(gc);
}

static void test_transport_before_sending(void **state)
{
    (void)state;
    struct graph_client *gc = client(300);
    struct graph_response r;
    char url[128];

    /* nobody listens: nothing can have been delivered */
    int port = 0;
    int fd = listen_local(&port);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v25.0/1/messages", port);
    assert_int_equal(graph_request(gc, "POST", url, TOKEN, "application/json", "{}", 2, &r),
                     HB_EIO);
    assert_int_equal(r.curl_code, CURLE_COULDNT_CONNECT);
    assert_false(r.is_maybe_delivered);
    assert_false(r.is_timeout);
    assert_int_equal(r.http_status, 0);
    assert_true(r.error[0] != '\0');
    graph_response_dispose(&r);

    /* schemes other than http and https are refused by curl */
    assert_int_equal(graph_request(gc, "GET", "file:///etc/passwd", TOKEN, NULL, NULL, 0, &r),
                     HB_EIO);
    assert_int_equal(r.curl_code, CURLE_UNSUPPORTED_PROTOCOL);
    assert_false(r.is_maybe_delivered);
    assert_int_equal(r.body.len, 0);
    graph_response_dispose(&r);

    /* a zeroed response disposes, and so does NULL client */
    struct graph_response z;
    memset(&z, 0, sizeof(z));
    graph_response_dispose(&z);
    graph_client_free(NULL);
    graph_client_free(gc);
}

int main(void)
{
    /* The fake speaks plain HTTP on loopback: no proxy may get in between. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_follows_the_protocol_table),
        cmocka_unit_test(test_classify_parsed_bodies),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_parse_real_error_bodies),
        cmocka_unit_test(test_parse_refuses_garbage),
        cmocka_unit_test(test_parse_truncates_long_strings_on_a_character),
        cmocka_unit_test(test_usage_pause_from_headers),
        cmocka_unit_test(test_usage_pause_bounds),
        cmocka_unit_test(test_usage_percent),
        cmocka_unit_test(test_backoff_bounds_over_attempts),
        cmocka_unit_test(test_backoff_values),
        cmocka_unit_test(test_backoff_jitter_covers_the_range),
        cmocka_unit_test(test_error_json_exact),
        cmocka_unit_test(test_error_json_escapes),
        cmocka_unit_test(test_query_escape),
        cmocka_unit_test_setup_teardown(test_transport_sends_what_it_should, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_transport_refuses_bad_arguments, fake_setup,
                                        fake_teardown),
        cmocka_unit_test_setup_teardown(test_transport_failures, fake_setup, fake_teardown),
        cmocka_unit_test(test_transport_before_sending),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
