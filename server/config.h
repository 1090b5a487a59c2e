/*
 * config.h - hubbub's settings: one declarative table (config.c), read from
 * the environment and checked before anything starts.
 *
 * The table is the single source of truth: config_load() walks it, `hubbub
 * config` prints it, and a unit test checks that README.md documents every
 * entry, as pgbouncer does for its own table.
 *
 * Values come from the environment, else from the file HUBBUB_CONFIG_FILE
 * names (KEY=value lines, as a systemd EnvironmentFile), else from the
 * table's defaults. The file is read again on SIGHUP (main.c), and what may
 * change while running is applied.
 */
#ifndef HB_CONFIG_H
#define HB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/log.h"

#define CONFIG_SETTINGS_MAX 96

enum config_source { CONFIG_FROM_DEFAULT, CONFIG_FROM_ENV, CONFIG_FROM_FILE };

struct config {
    char *database_url;
    char *read_database_url; /* NULL: event queries run on the primary */
    char *listen;            /* host:port */
    size_t body_limit;       /* bytes */
    int db_pool_size;
    int ingest_writers;
    int ingest_batch_max;      /* deliveries per commit */
    size_t ingest_queue_limit; /* bytes waiting for a commit before 503 */
    int max_items;             /* items in one delivery */
    int64_t app_cache_ttl_ms;
    int64_t db_retry_max_ms;
    int partition_months_ahead;
    int64_t partition_upkeep_interval_ms;
    int64_t ingest_statement_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t request_timeout_ms; /* to send one request; idle keep-alive */
    enum log_level log_level;
    char *master_key; /* secret */
    char *master_key_file;
    char *admin_token; /* secret */
    char *admin_token_file;
    int api_rate;          /* requests per second per key */
    int api_burst;         /* bucket size */
    int api_auth_failures; /* bucket size of failed authentications per address */
    int64_t api_statement_timeout_ms;
    char *tls_listen;
    char *tls_cert;
    char *tls_key;
    char *tls_admin_listen;
    char *mtls_ca;
    char *mtls_cn;
    char *mtls_proxy_header;
    char *mtls_trusted_proxies;
    int workers; /* job worker threads; 0: none */
    char *graph_instagram_url;
    char *graph_facebook_url;
    int64_t graph_connect_timeout_ms;
    int64_t graph_timeout_ms;
    int64_t job_lease_ms;
    int64_t job_poll_interval_ms;
    int job_max_attempts;
    int64_t job_max_age_ms;
    int64_t job_backoff_ms;
    int64_t job_backoff_max_ms;
    int64_t graph_rate_pause_ms;
    int64_t graph_max_pause_ms;
    int64_t subscription_check_interval_ms;
    char *config_file;
    int64_t probe_interval_ms;
    /* where each setting's value came from, by its index in the table */
    unsigned char sources[CONFIG_SETTINGS_MAX];
};

enum config_type {
    CONFIG_STRING,
    CONFIG_SECRET,
    CONFIG_INT,
    CONFIG_SIZE,
    CONFIG_DURATION,
    CONFIG_LOG_LEVEL,
    CONFIG_LISTEN,
};

struct config_setting {
    const char *env;
    enum config_type type;
    const char *default_value; /* NULL: no default */
    int required;
    int64_t min, max; /* for numbers, sizes (bytes) and durations (ms) */
    size_t offset;
    const char *help;
};

const struct config_setting *config_settings(size_t *count);

/* Fills cfg from the environment (getenv) and HUBBUB_CONFIG_FILE. On a bad
 * value or an unreadable file returns HB_EINVAL and writes a sentence naming
 * the variable (or the file's line) and what it expects into err. */
int config_load(struct config *cfg, char *err, size_t errsz);
const char *config_source_name(enum config_source s); /* "env", "file", "default" */

/* One KEY=value of a config file. */
struct config_pair {
    char *key;
    char *value;
};

/* Parses the text of a config file in systemd's EnvironmentFile format:
 * one KEY=value per line; blank lines and lines starting with # or ; are
 * skipped; whitespace around the key and an unquoted value is dropped; a
 * value may be in double quotes (with \", \\ and \n escapes) or single
 * quotes (taken as is); an optional "export " before the key is accepted.
 * On success *out (caller frees: config_pairs_free) holds the pairs in
 * order (a later one of the same key wins at lookup). HB_EINVAL with err
 * naming the line otherwise. */
int config_file_parse(const char *text, size_t len, struct config_pair **out, size_t *n, char *err,
                      size_t errsz);
void config_pairs_free(struct config_pair *pairs, size_t n);
void config_dispose(struct config *cfg);

/* Whether a and b hold the same value of s (secrets compared, not shown). */
bool config_value_equal(const struct config *a, const struct config *b,
                        const struct config_setting *s);

/* Formats the effective setting s of cfg (secrets masked) into out. */
void config_format_value(const struct config *cfg, const struct config_setting *s, char *out,
                         size_t outsz);

/* Parsers shared with the command line; 0 or HB_EINVAL. */
int config_parse_size(const char *s, int64_t *out);    /* "4MiB", "512k", "1048576" */
int config_parse_duration(const char *s, int64_t *ms); /* "5s", "200ms", "2m", "1500" (ms) */
int config_parse_listen(const char *s, char *host, size_t hostsz, int *port);

#endif
