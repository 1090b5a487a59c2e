/*
 * test_api.c - the admin API's pure parts: route matching, query strings,
 * times, cursors, base64url and the per-key rate limiter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "lib/base64url.h"
#include "lib/hb.h"
#include "server/ratelimit.h"

static const struct api_route *match(const char *method, const char *path, int64_t ids[2],
                                     size_t *nids, bool *known, char *allow)
{
    return api_match(method, path, strlen(path), ids, nids, known, allow, 64);
}

static void test_routes(void **state)
{
    (void)state;
    int64_t ids[2] = {0, 0};
    size_t nids = 9;
    bool known;
    char allow[64];

    const struct api_route *r = match("GET", "/v1/tenants", ids, &nids, &known, allow);
    assert_non_null(r);
    assert_string_equal(r->pattern, "/v1/tenants");
    assert_int_equal(nids, 0);

    r = match("DELETE", "/v1/tenants/12/keys/345", ids, &nids, &known, allow);
    assert_non_null(r);
    assert_string_equal(r->pattern, "/v1/tenants/{id}/keys/{key_id}");
    assert_int_equal(nids, 2);
    assert_int_equal(ids[0], 12);
    assert_int_equal(ids[1], 345);

    r = match("PUT", "/v1/accounts/7/subscribed_fields", ids, &nids, &known, allow);
    assert_non_null(r);
    assert_int_equal(ids[0], 7);

    /* Known path, wrong method: a 405 with the methods that exist. */
    r = match("PUT", "/v1/tenants/3", ids, &nids, &known, allow);
    assert_null(r);
    assert_true(known);
    assert_string_equal(allow, "GET, PATCH, DELETE");

    /* Ids are positive decimal numbers that fit comfortably in int64. */
    const char *unknown[] = {"/v1/tenants/",
                             "/v1/tenants/0",
                             "/v1/tenants/-1",
                             "/v1/tenants/1x",
                             "/v1/tenants/x",
                             "/v1/tenants/1/",
                             "/v1/tenant",
                             "/v1/tenants/1/keys/",
                             "/v1",
                             "/v1/tenants/1234567890123456789",
                             "/v1/events/1/2",
                             ""};
    for (size_t i = 0; i < HB_ARRAY_SIZE(unknown); i++) {
        r = match("GET", unknown[i], ids, &nids, &known, allow);
        assert_null(r);
        assert_false(known);
    }
    r = match("GET", "/v1/tenants/123456789012345678", ids, &nids, &known, allow);
    assert_non_null(r);
    assert_int_equal(ids[0], 123456789012345678LL);
}

static void test_query(void **state)
{
    (void)state;
    struct api_call call;
    memset(&call, 0, sizeof(call));
    const char q[] = "field=comments&field=messages&contains=%7B%22a%22%3A1%7D&empty=&flag&&x=a+b";
    assert_int_equal(api_parse_query(&call, q, strlen(q)), 0);
    assert_int_equal(call.nparams, 6);
    assert_string_equal(api_param(&call, "field"), "comments"); /* the first wins */
    assert_string_equal(call.params[1].value, "messages");
    assert_string_equal(api_param(&call, "contains"), "{\"a\":1}");
    assert_string_equal(api_param(&call, "empty"), "");
    assert_string_equal(api_param(&call, "flag"), "");
    assert_string_equal(api_param(&call, "x"), "a b");
    assert_null(api_param(&call, "missing"));
    api_call_dispose(&call);

    const char *bad[] = {"a=%", "a=%4", "a=%zz", "%=1", "a=%00"};
    for (size_t i = 0; i < HB_ARRAY_SIZE(bad); i++) {
        memset(&call, 0, sizeof(call));
        assert_int_equal(api_parse_query(&call, bad[i], strlen(bad[i])), HB_EINVAL);
        api_call_dispose(&call);
    }

    struct buf many;
    buf_init(&many);
    for (int i = 0; i <= API_MAX_PARAMS; i++)
        buf_printf(&many, "p%d=1&", i);
    memset(&call, 0, sizeof(call));
    assert_int_equal(api_parse_query(&call, many.data, many.len), HB_ETOOBIG);
    api_call_dispose(&call);
    buf_dispose(&many);
}

static int64_t time_of(const char *value, int *rc)
{
    struct api_call call;
    memset(&call, 0, sizeof(call));
    struct buf q;
    buf_init(&q);
    buf_printf(&q, "since=%s", value);
    assert_int_equal(api_parse_query(&call, q.data, q.len), 0);
    int64_t us = -1;
    *rc = api_time_param(&call, "since", &us);
    if (*rc < 0) {
        assert_int_equal(call.status, 400);
        assert_non_null(strstr(call.out.data, "since must be"));
    }
    api_call_dispose(&call);
    buf_dispose(&q);
    return us;
}

static void test_times(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t us;
    } ok[] = {
        {"0", 0},
        {"1764198000", 1764198000000000LL},
        {"2026-11-26T23:00:00Z", 1795734000000000LL},
        {"2026-11-26T23:00:00.5Z", 1795734000500000LL},
        {"2026-11-26T23:00:00.123456789Z", 1795734000123456LL},
        {"2026-11-27T00:30:00%2B01:30", 1795734000000000LL},
        {"2026-11-26T21:00:00-02:00", 1795734000000000LL},
        {"2024-02-29T00:00:00Z", 1709164800000000LL},
    };
    for (size_t i = 0; i < HB_ARRAY_SIZE(ok); i++) {
        int rc;
        int64_t us = time_of(ok[i].in, &rc);
        assert_int_equal(rc, 1);
        assert_int_equal(us, ok[i].us);
    }
    const char *bad[] = {"",
                         "yesterday",
                         "2026-11-26",
                         "2026-11-26T23:00:00",
                         "2026-13-01T00:00:00Z",
                         "2026-02-30T00:00:00Z",
                         "2026-11-26T24:00:00Z",
                         "2026-11-26T23:00:00.Z",
                         "2026-11-26T23:00:00Zjunk",
                         "-5",
                         "1e9",
                         "9999999999999"};
    for (size_t i = 0; i < HB_ARRAY_SIZE(bad); i++) {
        int rc;
        time_of(bad[i], &rc);
        assert_int_equal(rc, -1);
    }
}

static void test_cursor(void **state)
{
    (void)state;
    static const int64_t pairs[][2] = {
        {0, 0}, {1795734000123456LL, 42}, {INT64_MAX, INT64_MIN}, {-1, 1}};
    for (size_t i = 0; i < HB_ARRAY_SIZE(pairs); i++) {
        char cursor[32];
        api_cursor_encode(pairs[i][0], pairs[i][1], cursor);
        struct api_call call;
        memset(&call, 0, sizeof(call));
        struct buf q;
        buf_init(&q);
        buf_printf(&q, "cursor=%s", cursor);
        assert_int_equal(api_parse_query(&call, q.data, q.len), 0);
        int64_t a, b;
        assert_int_equal(api_cursor_decode(&call, &a, &b), 1);
        assert_int_equal(a, pairs[i][0]);
        assert_int_equal(b, pairs[i][1]);
        api_call_dispose(&call);
        buf_dispose(&q);
    }
    const char *bad[] = {"cursor=", "cursor=abc",
                         "cursor=AAAAAAAAAAAAAAAAAAAAAA==", "cursor=AAAAAAAAAAAAAAAAAAAAA!"};
    for (size_t i = 0; i < HB_ARRAY_SIZE(bad); i++) {
        struct api_call call;
        memset(&call, 0, sizeof(call));
        assert_int_equal(api_parse_query(&call, bad[i], strlen(bad[i])), 0);
        int64_t a, b;
        assert_int_equal(api_cursor_decode(&call, &a, &b), -1);
        assert_int_equal(call.status, 400);
        api_call_dispose(&call);
    }
}

static void test_limit_and_order(void **state)
{
    (void)state;
    static const struct {
        const char *q;
        int limit; /* -1: refused */
    } cases[] = {{"", 50},           {"limit=1", 1},   {"limit=1000", 1000}, {"limit=0", -1},
                 {"limit=1001", -1}, {"limit=-5", -1}, {"limit=x", -1},      {"limit=", -1},
                 {"limit=+5", -1},   {"limit=5x", -1}};
    for (size_t i = 0; i < HB_ARRAY_SIZE(cases); i++) {
        struct api_call call;
        memset(&call, 0, sizeof(call));
        assert_int_equal(api_parse_query(&call, cases[i].q, strlen(cases[i].q)), 0);
        int limit;
        bool ok = api_limit(&call, &limit);
        assert_int_equal(ok, cases[i].limit >= 0);
        if (ok)
            assert_int_equal(limit, cases[i].limit);
        else
            assert_int_equal(call.status, 400);
        api_call_dispose(&call);
    }
    const char *orders[] = {"order=asc", "order=desc", "", "order=ASC"};
    const int want[] = {1, 0, 0, -1};
    for (size_t i = 0; i < HB_ARRAY_SIZE(orders); i++) {
        struct api_call call;
        memset(&call, 0, sizeof(call));
        assert_int_equal(api_parse_query(&call, orders[i], strlen(orders[i])), 0);
        bool asc;
        bool ok = api_order_asc(&call, &asc);
        assert_int_equal(ok ? (int)asc : -1, want[i]);
        api_call_dispose(&call);
    }
}

static void test_errors_are_json(void **state)
{
    (void)state;
    struct api_call call;
    memset(&call, 0, sizeof(call));
    api_invalid(&call, "name\"x", "bad \"%s\"\n", "va\\lue");
    assert_int_equal(call.status, 422);
    assert_string_equal(call.out.data, "{\"error\":{\"code\":\"validation_failed\",\"message\":"
                                       "\"bad \\\"va\\\\lue\\\"\\n\",\"field\":\"name\\\"x\"}}");
    api_error(&call, 503, "unavailable", "down");
    assert_int_equal(call.retry_after, 1);
    api_call_dispose(&call);

    char hint[16];
    api_secret_hint("short", 5, hint);
    assert_string_equal(hint, "");
    api_secret_hint("0123456789abcdef", 16, hint);
    assert_string_equal(hint, "\xe2\x80\xa6"
                              "cdef");
}

static void test_base64url(void **state)
{
    (void)state;
    /* RFC 4648 test vectors, without padding. */
    static const char *const vectors[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < HB_ARRAY_SIZE(vectors); i++) {
        char out[16];
        base64url_encode(out, (const uint8_t *)vectors[i][0], strlen(vectors[i][0]));
        assert_string_equal(out, vectors[i][1]);
        uint8_t back[16];
        long n = base64url_decode(back, vectors[i][1], strlen(vectors[i][1]));
        assert_int_equal(n, (long)strlen(vectors[i][0]));
        assert_memory_equal(back, vectors[i][0], (size_t)n);
    }
    const uint8_t all[] = {0xfb, 0xff, 0xbf};
    char out[8];
    base64url_encode(out, all, 3);
    assert_string_equal(out, "-_-_");
    uint8_t back[8];
    assert_int_equal(base64url_decode(back, "Zg==", 4), -1);
    assert_int_equal(base64url_decode(back, "Zh", 2), -1); /* stray bits */
    assert_int_equal(base64url_decode(back, "Z", 1), -1);
    assert_int_equal(base64url_decode(back, "Zm+v", 4), -1);
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct ratelimit *rl = ratelimit_new(10, 3, 4);
    uint8_t a[RATELIMIT_KEY_LEN] = {1}, b[RATELIMIT_KEY_LEN] = {2};
    uint64_t t = 1000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ratelimit_take(rl, a, t), 0);
    int64_t wait = ratelimit_take(rl, a, t);
    assert_true(wait > 0 && wait <= 100);
    assert_int_equal(ratelimit_take(rl, b, t), 0); /* another key has its own bucket */
    assert_true(ratelimit_take(rl, a, t + 50) > 0);
    assert_int_equal(ratelimit_take(rl, a, t + 100), 0); /* 10/s: one token per 100 ms */
    assert_true(ratelimit_take(rl, a, t + 100) > 0);
    assert_int_equal(ratelimit_take(rl, a, t + 10000), 0);

    /* The table stays bounded however many keys are tried. */
    for (int i = 0; i < 2; i++)
        ratelimit_take(rl, a, t + 10000);
    assert_true(ratelimit_take(rl, a, t + 10000) > 0);
    for (int i = 0; i < 1000; i++) {
        uint8_t k[RATELIMIT_KEY_LEN] = {0};
        memcpy(k + 4, &i, sizeof(i));
        k[0] = 9;
        ratelimit_take(rl, k, t + 10000 + (uint64_t)i * 1000);
        assert_true(ratelimit_size(rl) <= 4);
    }
    ratelimit_free(rl);

    rl = ratelimit_new(1, 1, 2);
    assert_int_equal(ratelimit_peek(rl, a, 0), 0); /* unknown: nothing held back */
    assert_int_equal(ratelimit_size(rl), 0);       /* and peeking adds nothing */
    assert_int_equal(ratelimit_take(rl, a, 0), 0);
    assert_int_equal(ratelimit_peek(rl, a, 0), 1000);
    assert_int_equal(ratelimit_take(rl, a, 0), 1000);
    assert_int_equal(ratelimit_take(rl, b, 0), 0);
    assert_int_equal(ratelimit_peek(rl, a, 500), 500); /* peeking takes nothing */
    assert_int_equal(ratelimit_peek(rl, a, 500), 500);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),          cmocka_unit_test(test_query),
        cmocka_unit_test(test_times),           cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_limit_and_order), cmocka_unit_test(test_errors_are_json),
        cmocka_unit_test(test_base64url),       cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
