/*
 * test_metrics.c - the Prometheus text format: family lines, label escaping,
 * number formatting, and histogram buckets (cumulative, with _count equal to
 * the +Inf bucket).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/metrics.h"

static void test_family_and_samples(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b);
    metrics_write_family(&b, "hubbub_x_total", "counter", "a help\nline with \\ in it");
    struct metrics_label l[] = {{"app", "123"}, {"outcome", "accepted"}};
    metrics_write_uint(&b, "hubbub_x_total", l, 2, 42);
    metrics_write_uint(&b, "hubbub_y", NULL, 0, 0);
    metrics_write_double(&b, "hubbub_z", l, 1, 0.25);
    assert_string_equal(b.data, "# HELP hubbub_x_total a help\\nline with \\\\ in it\n"
                                "# TYPE hubbub_x_total counter\n"
                                "hubbub_x_total{app=\"123\",outcome=\"accepted\"} 42\n"
                                "hubbub_y 0\n"
                                "hubbub_z{app=\"123\"} 0.25\n");
    buf_dispose(&b);
}

static void test_label_escaping(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"plain", "plain"},
        {"a\"b", "a\\\"b"},
        {"back\\slash", "back\\\\slash"},
        {"two\nlines", "two\\nlines"},
        {"", ""},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b);
        buf_puts(&b, "");
        metrics_escape_label(&b, cases[i].in);
        assert_string_equal(b.data, cases[i].want);
        buf_dispose(&b);
    }
}

static void test_number_format(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *want;
    } cases[] = {{0, "0"},           {1, "1"},        {10000, "10000"},   {0.005, "0.005"},
                 {0.0005, "0.0005"}, {2.5, "2.5"},    {INFINITY, "+Inf"}, {-INFINITY, "-Inf"},
                 {NAN, "NaN"},       {1e6, "1000000"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b);
        metrics_format_double(&b, cases[i].v);
        assert_string_equal(b.data, cases[i].want);
        buf_dispose(&b);
    }
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.01, 0.1};
    struct metrics_histogram h;
    metrics_histogram_init(&h, bounds, 3, 1e-6); /* observing microseconds */
    metrics_histogram_observe(&h, 1000);         /* exactly 0.001: le="0.001" */
    metrics_histogram_observe(&h, 1001);         /* just above: le="0.01" */
    metrics_histogram_observe(&h, 0);
    metrics_histogram_observe(&h, 100000);  /* exactly 0.1 */
    metrics_histogram_observe(&h, 5000000); /* 5 s: only +Inf */
    struct buf b;
    buf_init(&b);
    struct metrics_label l[] = {{"route", "webhook"}};
    metrics_write_histogram(&b, "hubbub_d_seconds", l, 1, &h);
    assert_string_equal(b.data, "hubbub_d_seconds_bucket{route=\"webhook\",le=\"0.001\"} 2\n"
                                "hubbub_d_seconds_bucket{route=\"webhook\",le=\"0.01\"} 3\n"
                                "hubbub_d_seconds_bucket{route=\"webhook\",le=\"0.1\"} 4\n"
                                "hubbub_d_seconds_bucket{route=\"webhook\",le=\"+Inf\"} 5\n"
                                "hubbub_d_seconds_sum{route=\"webhook\"} 5.102001\n"
                                "hubbub_d_seconds_count{route=\"webhook\"} 5\n");
    buf_dispose(&b);
}

static void test_histogram_counts(void **state)
{
    (void)state;
    struct metrics_histogram h;
    metrics_histogram_init(&h, METRICS_SIZE_BOUNDS, METRICS_SIZE_NBOUNDS, 1);
    for (uint64_t v = 1; v <= 1000; v++)
        metrics_histogram_observe(&h, v);
    struct buf b;
    buf_init(&b);
    metrics_write_histogram(&b, "hubbub_n", NULL, 0, &h);
    assert_non_null(strstr(b.data, "hubbub_n_bucket{le=\"1\"} 1\n"));
    assert_non_null(strstr(b.data, "hubbub_n_bucket{le=\"5\"} 5\n"));
    assert_non_null(strstr(b.data, "hubbub_n_bucket{le=\"500\"} 500\n"));
    assert_non_null(strstr(b.data, "hubbub_n_bucket{le=\"1000\"} 1000\n"));
    assert_non_null(strstr(b.data, "hubbub_n_bucket{le=\"+Inf\"} 1000\n"));
    assert_non_null(strstr(b.data, "hubbub_n_sum 500500\n"));
    assert_non_null(strstr(b.data, "hubbub_n_count 1000\n"));
    buf_dispose(&b);
}

static void test_counter(void **state)
{
    (void)state;
    struct metrics_counter c;
    atomic_init(&c.value, 0);
    metrics_counter_add(&c, 3);
    metrics_counter_add(&c, 1);
    assert_int_equal(metrics_counter_get(&c), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples), cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_number_format),      cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_histogram_counts),   cmocka_unit_test(test_counter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
