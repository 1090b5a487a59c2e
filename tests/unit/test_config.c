/*
 * test_config.c - the settings table: parsing, defaults, clear errors, and
 * the README documenting every setting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "lib/hb.h"
#include "server/config.h"

#ifndef HB_SOURCE_DIR
#define HB_SOURCE_DIR "."
#endif

static void clear_env(void)
{
    size_t n;
    const struct config_setting *s = config_settings(&n);
    for (size_t i = 0; i < n; i++)
        unsetenv(s[i].env);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {{"0", 0},         {"65536", 65536},      {"4MiB", 4194304}, {"4mb", 4194304},
              {"512k", 524288}, {"1 GiB", 1073741824}, {"10b", 10}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        assert_int_equal(config_parse_size(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].want);
    }
    const char *bad[] = {"", "MiB", "-1", "4 TiB", "4MiBs", "1.5MiB", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v;
        assert_int_equal(config_parse_size(bad[i], &v), HB_EINVAL);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {{"1500", 1500}, {"200ms", 200}, {"5s", 5000}, {"2m", 120000}, {"1h", 3600000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        assert_int_equal(config_parse_duration(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].want);
    }
    int64_t v;
    assert_int_equal(config_parse_duration("5 days", &v), HB_EINVAL);
    assert_int_equal(config_parse_duration("s", &v), HB_EINVAL);
}

static void test_listen_addresses(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(config_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(config_parse_listen("[::1]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    const char *bad[] = {"8080",          "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:65536",
                         "127.0.0.1:80x", "[::1]80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(config_parse_listen(bad[i], host, sizeof(host), &port), HB_EINVAL);
}

static void test_defaults(void **state)
{
    (void)state;
    clear_env();
    setenv("DATABASE_URL", "postgresql:///x", 1);
    struct config cfg;
    char err[256] = "";
    assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_int_equal(cfg.body_limit, 4 * 1024 * 1024);
    assert_int_equal(cfg.db_pool_size, 4);
    assert_int_equal(cfg.app_cache_ttl_ms, 5000);
    assert_int_equal(cfg.request_timeout_ms, 10000);
    assert_int_equal(cfg.log_level, HB_LOG_INFO);
    assert_null(cfg.master_key);
    config_dispose(&cfg);
}

static void test_errors_name_the_variable(void **state)
{
    (void)state;
    static const struct {
        const char *env, *value, *expect;
    } cases[] = {
        {"HUBBUB_BODY_LIMIT", "lots", "HUBBUB_BODY_LIMIT"},
        {"HUBBUB_BODY_LIMIT", "1b", "HUBBUB_BODY_LIMIT"}, /* below the minimum */
        {"HUBBUB_DB_POOL_SIZE", "0", "from 1 to 64"},
        {"HUBBUB_DB_POOL_SIZE", "4x", "HUBBUB_DB_POOL_SIZE"},
        {"HUBBUB_LISTEN", "localhost", "host:port"},
        {"HUBBUB_LOG_LEVEL", "loud", "debug, info, warn or error"},
        {"HUBBUB_APP_CACHE_TTL", "soon", "HUBBUB_APP_CACHE_TTL"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        clear_env();
        setenv("DATABASE_URL", "postgresql:///x", 1);
        setenv(cases[i].env, cases[i].value, 1);
        struct config cfg;
        char err[512] = "";
        assert_int_equal(config_load(&cfg, err, sizeof(err)), HB_EINVAL);
        assert_non_null(strstr(err, cases[i].expect));
        assert_non_null(strstr(err, cases[i].value));
        config_dispose(&cfg);
    }
    clear_env();
    struct config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, err, sizeof(err)), HB_EINVAL);
    assert_non_null(strstr(err, "DATABASE_URL is not set"));
    config_dispose(&cfg);
}

static void test_secrets_are_masked(void **state)
{
    (void)state;
    clear_env();
    setenv("DATABASE_URL", "postgresql://u:hunter2@db/x", 1);
    setenv("HUBBUB_MASTER_KEY", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
           1);
    struct config cfg;
    char err[256];
    assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
    size_t n;
    const struct config_setting *s = config_settings(&n);
    for (size_t i = 0; i < n; i++) {
        char out[256];
        config_format_value(&cfg, &s[i], out, sizeof(out));
        assert_null(strstr(out, "hunter2"));
        assert_null(strstr(out, "00112233"));
    }
    config_dispose(&cfg);
}

static void test_config_file_parse(void **state)
{
    (void)state;
    static const char text[] = "# a comment\n"
                               "; another\n"
                               "\n"
                               "   \t\n"
                               "HUBBUB_LOG_LEVEL=debug\n"
                               "  HUBBUB_LISTEN = 127.0.0.1:9000  \n"
                               "export HUBBUB_DB_POOL_SIZE=8\n"
                               "DATABASE_URL=\"postgresql://u:p@h/db?x=1 #not a comment\"\n"
                               "HUBBUB_MTLS_CN='single \\ \"kept\"'\n"
                               "Q=\"a\\\"b\\\\c\\nd\"\n"
                               "EMPTY=\n"
                               "CRLF=value\r\n"
                               "CRLF_QUOTED=\"a b\"\r\n"
                               "CRLF_SINGLE='c d' \r\n"
                               "LAST=no newline";
    struct config_pair *p;
    size_t n;
    char err[128];
    assert_int_equal(config_file_parse(text, sizeof(text) - 1, &p, &n, err, sizeof(err)), 0);
    static const char *const want[][2] = {
        {"HUBBUB_LOG_LEVEL", "debug"},
        {"HUBBUB_LISTEN", "127.0.0.1:9000"},
        {"HUBBUB_DB_POOL_SIZE", "8"},
        {"DATABASE_URL", "postgresql://u:p@h/db?x=1 #not a comment"},
        {"HUBBUB_MTLS_CN", "single \\ \"kept\""},
        {"Q", "a\"b\\c\nd"},
        {"EMPTY", ""},
        {"CRLF", "value"},
        {"CRLF_QUOTED", "a b"},
        {"CRLF_SINGLE", "c d"},
        {"LAST", "no newline"},
    };
    assert_int_equal(n, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(p[i].key, want[i][0]);
        assert_string_equal(p[i].value, want[i][1]);
    }
    config_pairs_free(p, n);

    static const struct {
        const char *text, *err;
    } bad[] = {
        {"JUSTAWORD\n", "line 1"}, {"A=1\n=2\n", "line 2"}, {"A=1\nB=\"open\n", "line 2"},
        {"A='x' y\n", "line 1"},   {"1A=x\n", "line 1"},    {"A B=x\n", "line 1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            config_file_parse(bad[i].text, strlen(bad[i].text), &p, &n, err, sizeof(err)),
            HB_EINVAL);
        assert_non_null(strstr(err, bad[i].err));
    }
}

static void test_environment_wins_over_file(void **state)
{
    (void)state;
    char path[] = "/tmp/hubbub-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char text[] = "DATABASE_URL=postgresql:///fromfile\n"
                               "HUBBUB_LOG_LEVEL=debug\n"
                               "HUBBUB_DB_POOL_SIZE=9\n"
                               "HUBBUB_CONFIG_FILE=/elsewhere\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    clear_env();
    setenv("HUBBUB_CONFIG_FILE", path, 1);
    setenv("HUBBUB_DB_POOL_SIZE", "3", 1);
    struct config cfg;
    char err[512] = "";
    assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.database_url, "postgresql:///fromfile");
    assert_int_equal(cfg.log_level, HB_LOG_DEBUG);
    assert_int_equal(cfg.db_pool_size, 3);
    assert_string_equal(cfg.config_file, path);
    size_t n;
    const struct config_setting *s = config_settings(&n);
    for (size_t i = 0; i < n; i++) {
        const char *want = "default";
        if (strcmp(s[i].env, "DATABASE_URL") == 0 || strcmp(s[i].env, "HUBBUB_LOG_LEVEL") == 0)
            want = "file";
        else if (strcmp(s[i].env, "HUBBUB_DB_POOL_SIZE") == 0 ||
                 strcmp(s[i].env, "HUBBUB_CONFIG_FILE") == 0)
            want = "env";
        else if (s[i].default_value == NULL)
            continue; /* unset */
        if (strcmp(config_source_name((enum config_source)cfg.sources[i]), want) != 0)
            fail_msg("%s came from %s, not %s", s[i].env,
                     config_source_name((enum config_source)cfg.sources[i]), want);
    }
    config_dispose(&cfg);

    /* A bad value in the file names the variable; a missing file is an error. */
    fd = open(path, O_WRONLY | O_TRUNC);
    static const char bad[] = "DATABASE_URL=x\nHUBBUB_LOG_LEVEL=loud\n";
    assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
    close(fd);
    assert_int_equal(config_load(&cfg, err, sizeof(err)), HB_EINVAL);
    assert_non_null(strstr(err, "HUBBUB_LOG_LEVEL"));
    config_dispose(&cfg);
    unlink(path);
    assert_int_equal(config_load(&cfg, err, sizeof(err)), HB_EINVAL);
    assert_non_null(strstr(err, "HUBBUB_CONFIG_FILE"));
    config_dispose(&cfg);
    clear_env();
}

static void test_readme_documents_every_setting(void **state)
{
    (void)state;
    FILE *f = fopen(HB_SOURCE_DIR "/README.md", "r");
    assert_non_null(f);
    static char text[256 * 1024];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    text[len] = '\0';
    fclose(f);
    size_t n;
    const struct config_setting *s = config_settings(&n);
    for (size_t i = 0; i < n; i++) {
        char cell[128];
        snprintf(cell, sizeof(cell), "| `%s` |", s[i].env);
        if (strstr(text, cell) == NULL)
            fail_msg("README.md's settings table has no row for %s", s[i].env);
    }
}

/* The line of ops/systemd/hubbub.env that sets or shows (commented out as
 * "#KEY=") setting env, or NULL; *is_commented says which. */
static const char *env_file_line(const char *text, const char *env, bool *is_commented)
{
    size_t n = strlen(env);
    for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
        bool commented = line[0] == '#';
        const char *k = commented ? line + 1 : line;
        if (strncmp(k, env, n) == 0 && k[n] == '=') {
            *is_commented = commented;
            return k + n + 1;
        }
        if (strchr(line, '\n') == NULL)
            break;
    }
    return NULL;
}

static void test_env_file_lists_every_setting(void **state)
{
    (void)state;
    FILE *f = fopen(HB_SOURCE_DIR "/ops/systemd/hubbub.env", "r");
    assert_non_null(f);
    static char text[64 * 1024];
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    text[len] = '\0';
    fclose(f);
    size_t n;
    const struct config_setting *s = config_settings(&n);
    clear_env();
    for (size_t i = 0; i < n; i++) {
        bool commented = false;
        const char *v = env_file_line(text, s[i].env, &commented);
        if (v == NULL)
            fail_msg("ops/systemd/hubbub.env has no line for %s", s[i].env);
        size_t vlen = strcspn(v, "\n");
        if (s[i].default_value != NULL &&
            (strlen(s[i].default_value) != vlen || strncmp(v, s[i].default_value, vlen) != 0))
            fail_msg("ops/systemd/hubbub.env shows %s=%.*s, but its default is %s", s[i].env,
                     (int)vlen, v, s[i].default_value);
        /* A secret is only ever a placeholder there; the required URL is
         * shown without a password. */
        if (s[i].type == CONFIG_SECRET && !s[i].required && (!commented || vlen != 0))
            fail_msg("ops/systemd/hubbub.env must leave %s as a commented placeholder", s[i].env);
        if (vlen > 0) {
            char value[512];
            snprintf(value, sizeof(value), "%.*s", (int)vlen, v);
            setenv(s[i].env, value, 1);
        }
    }
    /* Every value the file shows is one hubbub accepts. */
    struct config cfg;
    char err[512] = "";
    if (config_load(&cfg, err, sizeof(err)) != 0)
        fail_msg("ops/systemd/hubbub.env: %s", err);
    config_dispose(&cfg);
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_name_the_variable),
        cmocka_unit_test(test_secrets_are_masked),
        cmocka_unit_test(test_config_file_parse),
        cmocka_unit_test(test_environment_wins_over_file),
        cmocka_unit_test(test_readme_documents_every_setting),
        cmocka_unit_test(test_env_file_lists_every_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
