/*
 * config.c - the settings table and its loader; see config.h.
 */
#include "server/config.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/hb.h"
#include "server/tls.h"

#define MIB (1024 * 1024)

#define F(field) offsetof(struct config, field)

static const struct config_setting SETTINGS[] = {
    {"DATABASE_URL", CONFIG_SECRET, NULL, 1, 0, 0, F(database_url),
     "PostgreSQL connection URL or conninfo string (may hold a password, so never printed)"},
    {"HUBBUB_READ_DATABASE_URL", CONFIG_SECRET, NULL, 0, 0, 0, F(read_database_url),
     "a streaming replica of DATABASE_URL for the admin API's event queries (results may lag; "
     "the primary answers while it is down); unset: the primary"},
    {"HUBBUB_LISTEN", CONFIG_LISTEN, "127.0.0.1:8080", 0, 0, 0, F(listen),
     "address and port of the HTTP listener (host:port, [v6]:port)"},
    {"HUBBUB_BODY_LIMIT", CONFIG_SIZE, "4MiB", 0, 1024, 64 * MIB, F(body_limit),
     "largest request body accepted; larger ones get 413"},
    {"HUBBUB_DB_POOL_SIZE", CONFIG_INT, "4", 0, 1, 64, F(db_pool_size),
     "database connections for lookups, besides the ingest writers"},
    {"HUBBUB_INGEST_WRITERS", CONFIG_INT, "2", 0, 1, 16, F(ingest_writers),
     "group-commit writer threads, each with its own connection"},
    {"HUBBUB_INGEST_BATCH_MAX", CONFIG_INT, "1000", 0, 1, 10000, F(ingest_batch_max),
     "most deliveries committed in one transaction"},
    {"HUBBUB_INGEST_QUEUE_LIMIT", CONFIG_SIZE, "256MiB", 0, MIB, 16384LL * MIB,
     F(ingest_queue_limit), "bytes of deliveries waiting for a commit; beyond it new ones get 503"},
    {"HUBBUB_MAX_ITEMS", CONFIG_INT, "100000", 0, 1, 10000000, F(max_items),
     "most items (events) in one delivery; more is rejected as malformed"},
    {"HUBBUB_APP_CACHE_TTL", CONFIG_DURATION, "5s", 0, 0, 3600 * 1000, F(app_cache_ttl_ms),
     "how long an app's secrets and verify token are used before being read again"},
    {"HUBBUB_INGEST_STATEMENT_TIMEOUT", CONFIG_DURATION, "15s", 0, 0, 3600 * 1000,
     F(ingest_statement_timeout_ms),
     "a commit of deliveries taking longer is cancelled and answered 503 (0: wait forever)"},
    {"HUBBUB_PARTITION_MONTHS_AHEAD", CONFIG_INT, "3", 0, 1, 24, F(partition_months_ahead),
     "monthly partitions of events and deliveries kept ready beyond the current month"},
    {"HUBBUB_PARTITION_UPKEEP_INTERVAL", CONFIG_DURATION, "1h", 0, 100, 24 * 3600 * 1000,
     F(partition_upkeep_interval_ms),
     "how often the server creates missing partitions and empties the DEFAULT partition"},
    {"HUBBUB_DB_RETRY_MAX", CONFIG_DURATION, "2s", 0, 10, 60 * 1000, F(db_retry_max_ms),
     "longest wait between attempts to reconnect to PostgreSQL"},
    {"HUBBUB_SHUTDOWN_TIMEOUT", CONFIG_DURATION, "10s", 0, 0, 600 * 1000, F(shutdown_timeout_ms),
     "on SIGINT/SIGTERM, how long to finish in-flight deliveries and jobs before exiting"},
    {"HUBBUB_REQUEST_TIMEOUT", CONFIG_DURATION, "10s", 0, 100, 3600 * 1000, F(request_timeout_ms),
     "longest a client may take to send one request (header and body), and longest an idle "
     "keep-alive connection is kept"},
    {"HUBBUB_LOG_LEVEL", CONFIG_LOG_LEVEL, "info", 0, 0, 0, F(log_level),
     "debug, info, warn or error; changing it in HUBBUB_CONFIG_FILE takes effect on SIGHUP"},
    {"HUBBUB_CONFIG_FILE", CONFIG_STRING, NULL, 0, 0, 0, F(config_file),
     "file of KEY=value lines (systemd EnvironmentFile format) read at start and on SIGHUP; "
     "the environment wins over it (only read from the environment)"},
    {"HUBBUB_PROBE_INTERVAL", CONFIG_DURATION, "2s", 0, 50, 60 * 1000, F(probe_interval_ms),
     "how often a background thread checks the database and the schema for /readyz and "
     "counts jobs for /metrics"},
    {"HUBBUB_MASTER_KEY", CONFIG_SECRET, NULL, 0, 0, 0, F(master_key),
     "64 hex characters: the key that encrypts secrets at rest"},
    {"HUBBUB_MASTER_KEY_FILE", CONFIG_STRING, NULL, 0, 0, 0, F(master_key_file),
     "file holding master keys, one per line, the first encrypts (alternative to "
     "HUBBUB_MASTER_KEY)"},
    {"HUBBUB_ADMIN_TOKEN", CONFIG_SECRET, NULL, 0, 0, 0, F(admin_token),
     "the operator's bearer token for the admin API, at least 32 characters (unset: no "
     "operator access)"},
    {"HUBBUB_ADMIN_TOKEN_FILE", CONFIG_STRING, NULL, 0, 0, 0, F(admin_token_file),
     "file whose first line is the operator's token (alternative to HUBBUB_ADMIN_TOKEN)"},
    {"HUBBUB_API_RATE", CONFIG_INT, "50", 0, 1, 1000000, F(api_rate),
     "admin API requests per second each key may make on average; more get 429"},
    {"HUBBUB_API_BURST", CONFIG_INT, "100", 0, 1, 1000000, F(api_burst),
     "admin API requests a key may make at once before HUBBUB_API_RATE applies"},
    {"HUBBUB_TLS_LISTEN", CONFIG_LISTEN, NULL, 0, 0, 0, F(tls_listen),
     "address and port of the HTTPS listener (TLS 1.2/1.3, HTTP/2 by ALPN); unset: none"},
    {"HUBBUB_TLS_CERT", CONFIG_STRING, NULL, 0, 0, 0, F(tls_cert),
     "PEM file with the server certificate followed by its chain; reloaded on SIGHUP"},
    {"HUBBUB_TLS_KEY", CONFIG_STRING, NULL, 0, 0, 0, F(tls_key),
     "PEM file with the certificate's private key; reloaded on SIGHUP"},
    {"HUBBUB_TLS_ADMIN_LISTEN", CONFIG_LISTEN, NULL, 0, 0, 0, F(tls_admin_listen),
     "a second HTTPS listener that never asks for client certificates, for the admin API"},
    {"HUBBUB_MTLS_CA", CONFIG_STRING, NULL, 0, 0, 0, F(mtls_ca),
     "CA file Meta's client certificates must chain to (meta-outbound-api-ca-2025-12.pem); "
     "set: HUBBUB_TLS_LISTEN requires them and webhooks need a verified client"},
    {"HUBBUB_MTLS_CN", CONFIG_STRING, TLS_META_CLIENT_CN, 0, 0, 0, F(mtls_cn),
     "subject CN the client certificate must have"},
    {"HUBBUB_MTLS_PROXY_HEADER", CONFIG_STRING, NULL, 0, 0, 0, F(mtls_proxy_header),
     "header in which a TLS-terminating proxy passes the verified client subject "
     "(X-Amzn-Mtls-Clientcert-Subject for an AWS ALB); set: webhooks need it or mTLS"},
    {"HUBBUB_MTLS_TRUSTED_PROXIES", CONFIG_STRING, NULL, 0, 0, 0, F(mtls_trusted_proxies),
     "comma-separated addresses or CIDR blocks whose HUBBUB_MTLS_PROXY_HEADER is believed"},
    {"HUBBUB_API_AUTH_FAILURES", CONFIG_INT, "20", 0, 1, 1000000, F(api_auth_failures),
     "failed admin API authentications an address may make at once; then one a second, "
     "and more get 429"},
    {"HUBBUB_API_STATEMENT_TIMEOUT", CONFIG_DURATION, "10s", 0, 100, 3600 * 1000,
     F(api_statement_timeout_ms), "longest an admin API query may run before it gets 503"},
    {"HUBBUB_WORKERS", CONFIG_INT, "4", 0, 0, 256, F(workers),
     "worker threads running Graph API jobs (subscriptions, replies), each with its own "
     "database connection; 0 runs no jobs in this process"},
    {"HUBBUB_GRAPH_INSTAGRAM_URL", CONFIG_STRING, "https://graph.instagram.com", 0, 0, 0,
     F(graph_instagram_url), "base URL of the Graph API for Instagram-Login accounts"},
    {"HUBBUB_GRAPH_FACEBOOK_URL", CONFIG_STRING, "https://graph.facebook.com", 0, 0, 0,
     F(graph_facebook_url),
     "base URL of the Graph API for Facebook-Login and Messenger-Platform accounts"},
    {"HUBBUB_GRAPH_CONNECT_TIMEOUT", CONFIG_DURATION, "5s", 0, 10, 600 * 1000,
     F(graph_connect_timeout_ms), "longest wait to connect to the Graph API"},
    {"HUBBUB_GRAPH_TIMEOUT", CONFIG_DURATION, "30s", 0, 10, 600 * 1000, F(graph_timeout_ms),
     "longest a whole Graph API call may take; a send that timed out is retried"},
    {"HUBBUB_JOB_LEASE", CONFIG_DURATION, "2m", 0, 100, 24 * 3600 * 1000, F(job_lease_ms),
     "how long a worker owns a claimed job; after it another process may take the job over "
     "(keep it above a job's longest run)"},
    {"HUBBUB_JOB_POLL_INTERVAL", CONFIG_DURATION, "5s", 0, 10, 3600 * 1000, F(job_poll_interval_ms),
     "how often idle workers look for due jobs besides being woken by NOTIFY"},
    {"HUBBUB_JOB_MAX_ATTEMPTS", CONFIG_INT, "12", 0, 1, 1000, F(job_max_attempts),
     "attempts after which a job failing temporarily is given up (state dead)"},
    {"HUBBUB_JOB_MAX_AGE", CONFIG_DURATION, "24h", 0, 100, 30LL * 24 * 3600 * 1000,
     F(job_max_age_ms), "age after which a job failing temporarily is given up (state dead)"},
    {"HUBBUB_JOB_BACKOFF", CONFIG_DURATION, "2s", 0, 1, 3600 * 1000, F(job_backoff_ms),
     "delay before the first retry; it doubles with every attempt, with jitter"},
    {"HUBBUB_JOB_BACKOFF_MAX", CONFIG_DURATION, "15m", 0, 1, 24 * 3600 * 1000,
     F(job_backoff_max_ms), "longest delay between two attempts of a job"},
    {"HUBBUB_GRAPH_RATE_PAUSE", CONFIG_DURATION, "5m", 0, 1, 24 * 3600 * 1000,
     F(graph_rate_pause_ms),
     "pause after a Graph API rate limit whose headers give no time to regain access"},
    {"HUBBUB_GRAPH_MAX_PAUSE", CONFIG_DURATION, "1h", 0, 1, 7 * 24 * 3600 * 1000LL,
     F(graph_max_pause_ms), "longest pause taken on a rate limit, whatever Meta's headers say"},
    {"HUBBUB_SUBSCRIPTION_CHECK_INTERVAL", CONFIG_DURATION, "6h", 0, 100, 30LL * 24 * 3600 * 1000,
     F(subscription_check_interval_ms),
     "how often each active account's subscription is read back from Meta and repaired"},
};

#undef F

const struct config_setting *config_settings(size_t *count)
{
    *count = HB_ARRAY_SIZE(SETTINGS);
    return SETTINGS;
}

static int parse_number_suffix(const char *s, int64_t *num, const char **suffix)
{
    errno = 0;
    char *end;
    if (!isdigit((unsigned char)*s))
        return HB_EINVAL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0)
        return HB_EINVAL;
    while (*end == ' ')
        end++;
    *num = v;
    *suffix = end;
    return 0;
}

struct unit {
    const char *name;
    int64_t mult;
};

/* A whole number and one of units' suffixes (case-insensitive). */
static int parse_with_units(const char *s, const struct unit *units, size_t n, int64_t *out)
{
    int64_t v;
    const char *suffix;
    if (parse_number_suffix(s, &v, &suffix) != 0)
        return HB_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(suffix, units[i].name) == 0) {
            if (v > INT64_MAX / units[i].mult)
                return HB_EINVAL;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return HB_EINVAL;
}

int config_parse_size(const char *s, int64_t *out)
{
    static const struct unit units[] = {
        {"", 1},           {"b", 1},           {"k", 1024},        {"kb", 1024},
        {"kib", 1024},     {"m", MIB},         {"mb", MIB},        {"mib", MIB},
        {"g", 1024 * MIB}, {"gb", 1024 * MIB}, {"gib", 1024 * MIB}};
    return parse_with_units(s, units, HB_ARRAY_SIZE(units), out);
}

int config_parse_duration(const char *s, int64_t *ms)
{
    static const struct unit units[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    return parse_with_units(s, units, HB_ARRAY_SIZE(units), ms);
}

int config_parse_listen(const char *s, char *host, size_t hostsz, int *port)
{
    const char *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return HB_EINVAL;
        hlen = (size_t)(close - s - 1);
        s++;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return HB_EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostsz)
        return HB_EINVAL;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || colon[1] == '\0' || p < 0 || p > 65535)
        return HB_EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static int set_value(struct config *cfg, const struct config_setting *s, const char *v, char *err,
                     size_t errsz)
{
    char *base = (char *)cfg + s->offset;
    int64_t n;
    switch (s->type) {
    case CONFIG_STRING:
    case CONFIG_SECRET:
        free(*(char **)base);
        *(char **)base = xstrdup(v);
        return 0;
    case CONFIG_LISTEN: {
        char host[256];
        int port;
        if (config_parse_listen(v, host, sizeof(host), &port) != 0) {
            snprintf(err, errsz,
                     "%s: expected host:port such as 127.0.0.1:8080 or [::1]:8080, got '%s'",
                     s->env, v);
            return HB_EINVAL;
        }
        free(*(char **)base);
        *(char **)base = xstrdup(v);
        return 0;
    }
    case CONFIG_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (errno != 0 || *end != '\0' || end == v || x < s->min || x > s->max) {
            snprintf(err, errsz,
                     "%s: expected a whole number from %" PRId64 " to %" PRId64 ", got '%s'",
                     s->env, s->min, s->max, v);
            return HB_EINVAL;
        }
        *(int *)base = (int)x;
        return 0;
    }
    case CONFIG_SIZE:
        if (config_parse_size(v, &n) != 0 || n < s->min || n > s->max) {
            snprintf(err, errsz,
                     "%s: expected a size such as 4MiB or 65536 (bytes) from %" PRId64
                     " to %" PRId64 " bytes, got '%s'",
                     s->env, s->min, s->max, v);
            return HB_EINVAL;
        }
        *(size_t *)base = (size_t)n;
        return 0;
    case CONFIG_DURATION:
        if (config_parse_duration(v, &n) != 0 || n < s->min || n > s->max) {
            snprintf(err, errsz,
                     "%s: expected a duration such as 5s or 200ms from %" PRId64 "ms to %" PRId64
                     "ms, got '%s'",
                     s->env, s->min, s->max, v);
            return HB_EINVAL;
        }
        *(int64_t *)base = n;
        return 0;
    case CONFIG_LOG_LEVEL: {
        enum log_level lvl;
        if (log_parse_level(v, &lvl) != 0) {
            snprintf(err, errsz, "%s: expected debug, info, warn or error, got '%s'", s->env, v);
            return HB_EINVAL;
        }
        *(enum log_level *)base = lvl;
        return 0;
    }
    }
    return HB_EINVAL;
}

const char *config_source_name(enum config_source s)
{
    return s == CONFIG_FROM_ENV ? "env" : s == CONFIG_FROM_FILE ? "file" : "default";
}

void config_pairs_free(struct config_pair *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(pairs[i].key);
        free(pairs[i].value);
    }
    free(pairs);
}

static bool is_key_char(char c, bool first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
}

/* Parses one line's value starting at p (up to end) into out. */
static int parse_value(const char *p, const char *end, struct buf *out)
{
    if (end > p && end[-1] == '\r')
        end--; /* a CRLF line ending, after a quoted value too */
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p < end && (*p == '"' || *p == '\'')) {
        char q = *p++;
        for (;;) {
            if (p == end)
                return HB_EINVAL; /* no closing quote */
            char c = *p++;
            if (c == q)
                break;
            if (q == '"' && c == '\\' && p < end) {
                c = *p++;
                if (c == 'n')
                    c = '\n';
                else if (c != '"' && c != '\\' && c != '$' && c != '`') {
                    buf_putc(out, '\\');
                }
            }
            buf_putc(out, c);
        }
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        return p == end ? 0 : HB_EINVAL; /* nothing may follow the closing quote */
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    buf_append(out, p, (size_t)(end - p));
    return 0;
}

int config_file_parse(const char *text, size_t len, struct config_pair **out, size_t *n, char *err,
                      size_t errsz)
{
    struct config_pair *pairs = NULL;
    size_t count = 0, cap = 0;
    const char *p = text, *end = text + len;
    int line = 0;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol != NULL ? eol : end;
        const char *q = p;
        p = eol != NULL ? eol + 1 : end;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        if (q == le || *q == '#' || *q == ';' || (*q == '\r' && q + 1 == le))
            continue;
        if ((size_t)(le - q) > 7 && memcmp(q, "export ", 7) == 0)
            q += 7;
        const char *k = q;
        while (q < le && is_key_char(*q, q == k))
            q++;
        const char *ke = q;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        if (ke == k || q == le || *q != '=') {
            snprintf(err, errsz, "line %d: expected KEY=value", line);
            config_pairs_free(pairs, count);
            return HB_EINVAL;
        }
        struct buf v;
        buf_init(&v);
        buf_puts(&v, "");
        if (parse_value(q + 1, le, &v) != 0) {
            buf_dispose(&v);
            snprintf(err, errsz, "line %d: a quoted value must end with its quote", line);
            config_pairs_free(pairs, count);
            return HB_EINVAL;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            pairs = xrealloc(pairs, cap * sizeof(*pairs));
        }
        pairs[count].key = xstrndup(k, (size_t)(ke - k));
        pairs[count].value = buf_steal(&v);
        count++;
    }
    *out = pairs;
    *n = count;
    return 0;
}

#define CONFIG_FILE_MAX (1024 * 1024)

static int read_file(const char *path, struct config_pair **pairs, size_t *n, char *err,
                     size_t errsz)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errsz, "HUBBUB_CONFIG_FILE %s cannot be read: %s", path, strerror(errno));
        return HB_EINVAL;
    }
    char *text = xmalloc(CONFIG_FILE_MAX + 1);
    size_t len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed || len > CONFIG_FILE_MAX) {
        free(text);
        snprintf(err, errsz, "HUBBUB_CONFIG_FILE %s: %s", path,
                 failed ? "read error" : "larger than 1 MiB");
        return HB_EINVAL;
    }
    char why[128];
    int rc = config_file_parse(text, len, pairs, n, why, sizeof(why));
    free(text);
    if (rc != 0)
        snprintf(err, errsz, "HUBBUB_CONFIG_FILE %s, %s", path, why);
    return rc;
}

static const char *file_value(const struct config_pair *pairs, size_t n, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(pairs[i].key, key) == 0)
            v = pairs[i].value;
    return v;
}

int config_load(struct config *cfg, char *err, size_t errsz)
{
    _Static_assert(HB_ARRAY_SIZE(SETTINGS) <= CONFIG_SETTINGS_MAX, "raise CONFIG_SETTINGS_MAX");
    memset(cfg, 0, sizeof(*cfg));
    struct config_pair *pairs = NULL;
    size_t npairs = 0;
    const char *path = getenv("HUBBUB_CONFIG_FILE");
    if (path != NULL && path[0] != '\0' && read_file(path, &pairs, &npairs, err, errsz) != 0)
        return HB_EINVAL;
    int rc = 0;
    for (size_t i = 0; i < HB_ARRAY_SIZE(SETTINGS) && rc == 0; i++) {
        const struct config_setting *s = &SETTINGS[i];
        const char *v = getenv(s->env);
        cfg->sources[i] = CONFIG_FROM_ENV;
        if (v != NULL && v[0] == '\0')
            v = NULL;
        if (v == NULL && strcmp(s->env, "HUBBUB_CONFIG_FILE") != 0) {
            v = file_value(pairs, npairs, s->env);
            cfg->sources[i] = CONFIG_FROM_FILE;
            if (v != NULL && v[0] == '\0')
                v = NULL;
        }
        if (v == NULL) {
            v = s->default_value;
            cfg->sources[i] = CONFIG_FROM_DEFAULT;
        }
        if (v == NULL) {
            if (s->required) {
                snprintf(err, errsz, "%s is not set: %s", s->env, s->help);
                rc = HB_EINVAL;
            }
            continue;
        }
        if (set_value(cfg, s, v, err, errsz) != 0)
            rc = HB_EINVAL;
    }
    config_pairs_free(pairs, npairs);
    return rc;
}

void config_dispose(struct config *cfg)
{
    for (size_t i = 0; i < HB_ARRAY_SIZE(SETTINGS); i++) {
        const struct config_setting *s = &SETTINGS[i];
        if (s->type == CONFIG_STRING || s->type == CONFIG_SECRET || s->type == CONFIG_LISTEN) {
            char **p = (char **)((char *)cfg + s->offset);
            free(*p);
            *p = NULL;
        }
    }
}

void config_format_value(const struct config *cfg, const struct config_setting *s, char *out,
                         size_t outsz)
{
    const char *base = (const char *)cfg + s->offset;
    switch (s->type) {
    case CONFIG_STRING:
    case CONFIG_LISTEN:
        snprintf(out, outsz, "%s", *(char *const *)base ? *(char *const *)base : "(unset)");
        break;
    case CONFIG_SECRET:
        snprintf(out, outsz, "%s", *(char *const *)base ? "(set, hidden)" : "(unset)");
        break;
    case CONFIG_INT:
        snprintf(out, outsz, "%d", *(const int *)base);
        break;
    case CONFIG_SIZE:
        snprintf(out, outsz, "%zu bytes", *(const size_t *)base);
        break;
    case CONFIG_DURATION:
        snprintf(out, outsz, "%" PRId64 "ms", *(const int64_t *)base);
        break;
    case CONFIG_LOG_LEVEL:
        snprintf(out, outsz, "%s", log_level_name(*(const enum log_level *)base));
        break;
    }
}

bool config_value_equal(const struct config *a, const struct config *b,
                        const struct config_setting *s)
{
    const char *x = (const char *)a + s->offset, *y = (const char *)b + s->offset;
    switch (s->type) {
    case CONFIG_STRING:
    case CONFIG_SECRET:
    case CONFIG_LISTEN: {
        const char *u = *(char *const *)x, *v = *(char *const *)y;
        return (u == NULL && v == NULL) || (u != NULL && v != NULL && strcmp(u, v) == 0);
    }
    case CONFIG_INT:
        return *(const int *)x == *(const int *)y;
    case CONFIG_SIZE:
        return *(const size_t *)x == *(const size_t *)y;
    case CONFIG_DURATION:
        return *(const int64_t *)x == *(const int64_t *)y;
    case CONFIG_LOG_LEVEL:
        return *(const enum log_level *)x == *(const enum log_level *)y;
    }
    return false;
}
