/*
 * test_log.c - the logfmt line: ts, level and msg first, the fields after
 * one space (none and no trailing space when there are none), values quoted
 * and escaped by log_quote, levels below the set one dropped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"

/* Runs one log_write with stderr sent to a pipe; returns what it wrote. */
static char *capture(enum log_level level, const char *msg, const char *fields)
{
    static char out[4096];
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    if (fields == NULL)
        log_write(level, msg, "%s", "");
    else
        log_write(level, msg, "%s", fields);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void test_line_shape(void **state)
{
    (void)state;
    log_set_level(HB_LOG_INFO);
    char *line = capture(HB_LOG_INFO, "listening", "addr=127.0.0.1:8080");
    assert_int_equal(strncmp(line, "ts=", 3), 0);
    assert_non_null(strstr(line, " level=info msg=listening addr=127.0.0.1:8080\n"));
    assert_int_equal((int)strlen(line), (int)strlen("ts=2026-11-27T04:19:43.107Z ") +
                                            (int)strlen("level=info msg=listening ") +
                                            (int)strlen("addr=127.0.0.1:8080\n"));
}

static void test_no_fields_no_trailing_space(void **state)
{
    (void)state;
    log_set_level(HB_LOG_INFO);
    char *line = capture(HB_LOG_INFO, "stopped", NULL);
    size_t len = strlen(line);
    assert_true(len > 2);
    assert_int_equal(line[len - 1], '\n');
    assert_int_not_equal(line[len - 2], ' ');
    assert_non_null(strstr(line, " msg=stopped\n"));
}

static void test_msg_quoted(void **state)
{
    (void)state;
    log_set_level(HB_LOG_INFO);
    char *line = capture(HB_LOG_WARN, "a \"quoted\" sentence", "n=1");
    assert_non_null(strstr(line, " level=warn msg=\"a \\\"quoted\\\" sentence\" n=1\n"));
}

static void test_level_filter(void **state)
{
    (void)state;
    log_set_level(HB_LOG_WARN);
    assert_string_equal(capture(HB_LOG_INFO, "dropped", "n=1"), "");
    assert_string_equal(capture(HB_LOG_DEBUG, "dropped", "n=1"), "");
    assert_non_null(strstr(capture(HB_LOG_ERROR, "kept", "n=1"), "level=error msg=kept n=1"));
    log_set_level(HB_LOG_INFO);
}

static void test_quote(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(log_quote(out, sizeof(out), "plain", 5), "plain");
    assert_string_equal(log_quote(out, sizeof(out), "two words", 9), "\"two words\"");
    assert_string_equal(log_quote(out, sizeof(out), "a\"b", 3), "\"a\\\"b\"");
    assert_string_equal(log_quote(out, sizeof(out), "", 0), "\"\"");
    /* A newline never splits a line. */
    assert_null(strchr(log_quote(out, sizeof(out), "a\nb", 3), '\n'));
    /* Truncated to fit, still one quoted value. */
    char small[8];
    char *q = log_quote(small, sizeof(small), "a long value with spaces", 24);
    assert_true(strlen(q) < sizeof(small));
    assert_int_equal(q[0], '"');
    assert_int_equal(q[strlen(q) - 1], '"');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_shape), cmocka_unit_test(test_no_fields_no_trailing_space),
        cmocka_unit_test(test_msg_quoted), cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
