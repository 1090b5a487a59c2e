/*
 * test_stats.c - hubbub's metric set keeps its label values bounded: apps
 * beyond STATS_APPS_MAX share app="other", unknown fields count as
 * field="other", and Graph API answers map to their outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "server/stats.h"

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_apps_are_bounded(void **state)
{
    (void)state;
    struct stats *s = stats_new();
    char id[32];
    struct stats_app *first = stats_app(s, "1000");
    for (int i = 0; i < STATS_APPS_MAX + 50; i++) {
        snprintf(id, sizeof(id), "%d", 1000 + i);
        stats_delivery(stats_app(s, id), STATS_ACCEPTED);
    }
    assert_ptr_equal(stats_app(s, "1000"), first); /* rows stay put as the table grows */
    assert_ptr_equal(stats_app(s, NULL), stats_app(s, NULL));
    stats_delivery(stats_app(s, NULL), STATS_UNKNOWN_APP);
    struct buf b;
    buf_init(&b);
    stats_render(s, &b, 7);
    /* One row per outcome for each known app, "unknown" and "other". */
    assert_int_equal(count(b.data, "hubbub_webhook_deliveries_total{app="),
                     (size_t)(STATS_APPS_MAX + 2) * STATS_DELIVERY_N);
    assert_non_null(strstr(b.data, "{app=\"other\",outcome=\"accepted\"} 50\n"));
    assert_non_null(strstr(b.data, "{app=\"1000\",outcome=\"accepted\"} 1\n"));
    assert_non_null(strstr(b.data, "{app=\"unknown\",outcome=\"unknown_app\"} 1\n"));
    assert_non_null(strstr(b.data, "{app=\"unknown\",outcome=\"too_large\"} 7\n"));
    buf_dispose(&b);
    stats_free(s);
}

static void test_fields_and_graph_outcomes(void **state)
{
    (void)state;
    struct stats *s = stats_new();
    stats_events_stored(s, "comments", 3);
    stats_events_stored(s, "not_a_field", 2);
    stats_events_stored(s, "also_not", 1);
    struct graph_response ok = {.http_status = 200};
    struct graph_response none = {.http_status = 0};
    struct graph_response late = {.http_status = 0, .is_timeout = true};
    stats_graph_call(s, &ok, GRAPH_OK);
    stats_graph_call(s, &ok, GRAPH_ACCOUNT_RATE_LIMIT);
    stats_graph_call(s, &ok, GRAPH_TOKEN_INVALID);
    stats_graph_call(s, &none, GRAPH_TEMPORARY);
    stats_graph_call(s, &late, GRAPH_TEMPORARY);
    stats_graph_call(NULL, &ok, GRAPH_OK); /* no stats: nothing happens */
    struct buf b;
    buf_init(&b);
    stats_render(s, &b, 0);
    assert_non_null(strstr(b.data, "hubbub_events_total{field=\"comments\"} 3\n"));
    assert_non_null(strstr(b.data, "hubbub_events_total{field=\"other\"} 3\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"ok\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"rate_limited\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"token_invalid\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"transport_error\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"timeout\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_graph_requests_total{outcome=\"temporary\"} 0\n"));
    assert_int_equal(count(b.data, "# TYPE "), 7);
    buf_dispose(&b);
    stats_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apps_are_bounded),
        cmocka_unit_test(test_fields_and_graph_outcomes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
