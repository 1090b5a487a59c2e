/*
 * api.c - what every admin API handler shares: matching routes, the query
 * string, authentication, errors, bodies, cursors and list replies; see api.h.
 */
#include "api/api.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/pool.h"
#include "lib/base64url.h"
#include "lib/hb.h"
#include "lib/hex.h"
#include "lib/log.h"

/* ---- routes ---- */

/* Matches one pattern segment by segment; {name} takes a positive id. */
static bool pattern_matches(const char *pat, const char *path, size_t len, int64_t ids[2],
                            size_t *nids)
{
    size_t n = 0;
    const char *p = path, *end = path + len;
    while (*pat != '\0') {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            int64_t v = 0;
            size_t digits = 0;
            while (p < end && *p >= '0' && *p <= '9') {
                if (++digits > 18)
                    return false;
                v = v * 10 + (*p++ - '0');
            }
            if (digits == 0 || v == 0 || n == 2)
                return false;
            ids[n++] = v;
            pat = close + 1;
            continue;
        }
        if (p == end || *p != *pat)
            return false;
        p++;
        pat++;
    }
    if (p != end)
        return false;
    *nids = n;
    return true;
}

const struct api_route *api_match(const char *method, const char *path, size_t path_len,
                                  int64_t ids[2], size_t *nids, bool *path_known, char *allow,
                                  size_t allowsz)
{
    size_t count;
    const struct api_route *routes = api_routes(&count);
    *path_known = false;
    if (allowsz > 0)
        allow[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (!pattern_matches(routes[i].pattern, path, path_len, ids, nids))
            continue;
        if (strcmp(routes[i].method, method) == 0)
            return &routes[i];
        size_t used = strlen(allow);
        snprintf(allow + used, allowsz - used, "%s%s", *path_known ? ", " : "", routes[i].method);
        *path_known = true;
    }
    return NULL;
}

/* ---- query string ---- */

static ssize_t percent_decode(char *dst, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hex_value((unsigned char)s[i + 1]), lo = hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0')
            return -1;
        dst[o++] = c;
    }
    dst[o] = '\0';
    return (ssize_t)o;
}

int api_parse_query(struct api_call *call, const char *q, size_t len)
{
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pair_end = amp != NULL ? amp : end;
        if (pair_end > q) {
            if (call->nparams == API_MAX_PARAMS)
                return HB_ETOOBIG;
            const char *eq = memchr(q, '=', (size_t)(pair_end - q));
            const char *key_end = eq != NULL ? eq : pair_end;
            const char *v = eq != NULL ? eq + 1 : pair_end;
            struct api_param *p = &call->params[call->nparams];
            p->name = xmalloc((size_t)(key_end - q) + 1);
            p->value = xmalloc((size_t)(pair_end - v) + 1);
            call->nparams++;
            if (percent_decode(p->name, q, (size_t)(key_end - q)) < 0 ||
                percent_decode(p->value, v, (size_t)(pair_end - v)) < 0)
                return HB_EINVAL;
        }
        q = amp != NULL ? amp + 1 : end;
    }
    return 0;
}

int api_query_id(struct api_call *call, const char *name, char out[24])
{
    const char *s = api_param(call, name);
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n || strspn(s, "0") == n) {
        api_error(call, 400, "bad_request", "%s must be a positive integer", name);
        return -1;
    }
    snprintf(out, 24, "%s", s);
    return 1;
}

const char *api_scope(const struct api_call *call, char buf[24])
{
    if (call->caller.is_operator)
        return NULL;
    snprintf(buf, 24, "%" PRId64, call->caller.tenant_id);
    return buf;
}

const char *api_param(const struct api_call *call, const char *name)
{
    for (size_t i = 0; i < call->nparams; i++)
        if (strcmp(call->params[i].name, name) == 0)
            return call->params[i].value;
    return NULL;
}

void api_call_dispose(struct api_call *call)
{
    for (size_t i = 0; i < call->nparams; i++) {
        free(call->params[i].name);
        free(call->params[i].value);
    }
    call->nparams = 0;
    api_wipe_body(call); /* bodies carry app secrets and access tokens in clear */
    free(call->body);
    call->body = NULL;
    explicit_bzero(call->token, sizeof(call->token));
    buf_dispose(&call->out);
}

/* 400 for a parameter not in allowed, or given twice unless it is repeatable:
 * a misspelt filter must not silently widen a list. */
bool api_params_only(struct api_call *call, const char *const *allowed, const char *repeatable)
{
    for (size_t i = 0; i < call->nparams; i++) {
        const char *name = call->params[i].name;
        bool known = false;
        for (const char *const *a = allowed; *a != NULL && !known; a++)
            known = strcmp(*a, name) == 0;
        if (!known) {
            api_error(call, 400, "bad_request", "unknown query parameter \"%.64s\"", name);
            return false;
        }
        if (repeatable != NULL && strcmp(name, repeatable) == 0)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(call->params[j].name, name) == 0) {
                api_error(call, 400, "bad_request", "%s may be given only once", name);
                return false;
            }
        }
    }
    return true;
}

/* ---- errors ---- */

static void error_body(struct api_call *call, int status, const char *code, const char *field,
                       const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    buf_reset(&call->out);
    buf_puts(&call->out, "{\"error\":{\"code\":");
    json_write_cstr(&call->out, code);
    buf_puts(&call->out, ",\"message\":");
    json_write_cstr(&call->out, msg);
    if (field != NULL) {
        buf_puts(&call->out, ",\"field\":");
        json_write_cstr(&call->out, field);
    }
    buf_puts(&call->out, "}}");
    call->status = status;
    call->location[0] = '\0';
    if (status == 503 && call->retry_after == 0)
        call->retry_after = 1;
}

void api_error(struct api_call *call, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_body(call, status, code, NULL, fmt, ap);
    va_end(ap);
}

void api_invalid(struct api_call *call, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_body(call, 422, "validation_failed", field, fmt, ap);
    va_end(ap);
}

void api_not_found(struct api_call *call, const char *what)
{
    api_error(call, 404, "not_found", "%s", what);
}

void api_db_error(struct api_call *call, PGconn *c, const PGresult *r, const char *conflict_msg)
{
    int rc = db_result_rc(c, r);
    snprintf(call->sqlstate, sizeof(call->sqlstate), "%s", db_sqlstate(r));
    if (strcmp(db_sqlstate(r), "57014") == 0) {
        api_error(call, 503, "timeout", "the query took too long; narrow the filters");
    } else if (rc == HB_EUNAVAILABLE) {
        api_error(call, 503, "unavailable", "the database is unavailable; retry later");
    } else if (rc == HB_EEXIST && conflict_msg != NULL) {
        api_error(call, 409, "conflict", "%s", conflict_msg);
    } else {
        /* libpq's message may quote values from the statement, never its
         * parameters; the SQLSTATE is what an operator needs. On the
         * replica the primary answers next, and says so if it matters. */
        char ctx[128];
        api_log_context(call, ctx, sizeof(ctx));
        log_write(call->is_on_replica ? HB_LOG_DEBUG : HB_LOG_ERROR, "admin API statement failed",
                  "%s sqlstate=%s%s", ctx, db_sqlstate(r), call->is_on_replica ? " replica=1" : "");
        api_error(call, 500, "internal", "the request could not be completed");
    }
}

void api_log_context(const struct api_call *call, char *out, size_t outsz)
{
    const char *req = call->request_id[0] != '\0' ? call->request_id : "-";
    if (call->caller.is_operator)
        snprintf(out, outsz, "req=%s tenant=operator", req);
    else if (call->caller.tenant_id >= 0)
        snprintf(out, outsz, "req=%s tenant=%" PRId64, req, call->caller.tenant_id);
    else
        snprintf(out, outsz, "req=%s tenant=none", req);
}

/* ---- authentication ---- */

bool api_authenticate(struct api_call *call, PGconn *c)
{
    if (call->caller.is_operator)
        return true;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)call->token, call->token_len, digest);
    explicit_bzero(call->token, sizeof(call->token));
    char hex[2 * SHA256_DIGEST_LENGTH + 3] = "\\x";
    hex_encode(hex + 2, digest, sizeof(digest));
    const char *params[] = {hex};
    /* The hash is the lookup key, so there is no secret comparison to time. */
    PGresult *r = api_exec(c,
                           "SELECT id, tenant_id FROM api_keys"
                           " WHERE key_hash = $1::bytea AND revoked_at IS NULL",
                           1, params);
    bool ok = false;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_error(call, c, r, NULL);
    } else if (PQntuples(r) == 0) {
        api_error(call, 401, "unauthorized", "the API key is not valid or was revoked");
    } else {
        call->caller.key_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        call->caller.tenant_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        ok = true;
    }
    PQclear(r);
    return ok;
}

/* ---- bodies ---- */

void api_wipe_body(struct api_call *call)
{
    if (call->body != NULL)
        explicit_bzero(call->body, call->body_len);
}

bool api_body_object(struct api_call *call, struct json_doc *doc)
{
    const char *why = NULL;
    if (call->body == NULL || call->body_len == 0) {
        api_error(call, 400, "bad_request", "the request needs a JSON object body");
        return false;
    }
    if (json_parse(doc, call->body, call->body_len, 32, &why) != 0) {
        api_error(call, 400, "bad_request", "the body is not valid JSON: %s",
                  why != NULL ? why : "malformed");
        return false;
    }
    if (doc->ntoks == 0 || !json_is_object(doc, 0)) {
        json_doc_dispose(doc);
        api_error(call, 400, "bad_request", "the body must be a JSON object");
        return false;
    }
    return true;
}

bool api_body_only(struct api_call *call, const struct json_doc *doc, const char *const *allowed)
{
    struct buf key;
    buf_init(&key);
    int n = doc->toks[0].size;
    for (int i = 0, k = 1; i < n; i++, k = json_next(doc, k + 1)) {
        buf_reset(&key);
        json_string_decode(doc, k, &key);
        bool known = false;
        for (const char *const *a = allowed; *a != NULL && !known; a++)
            known = key.len == strlen(*a) && memcmp(key.data, *a, key.len) == 0;
        if (!known) {
            api_invalid(call, key.len > 0 ? key.data : "", "unknown member \"%.64s\"",
                        key.len > 0 ? key.data : "");
            buf_dispose(&key);
            return false;
        }
    }
    buf_dispose(&key);
    return true;
}

int api_body_string(struct api_call *call, const struct json_doc *doc, const char *key, size_t max,
                    struct buf *out)
{
    int v = json_get(doc, 0, key);
    if (v < 0)
        return 0;
    if (doc->toks[v].type == JSON_PRIMITIVE && doc->text[doc->toks[v].start] == 'n')
        return 0;
    if (!json_is_string(doc, v)) {
        api_invalid(call, key, "%s must be a string", key);
        return -1;
    }
    buf_reset(out);
    json_string_decode(doc, v, out);
    if (out->len > max) {
        api_invalid(call, key, "%s is longer than %zu bytes", key, max);
        return -1;
    }
    if (strlen(out->data != NULL ? out->data : "") != out->len) {
        api_invalid(call, key, "%s must not contain NUL characters", key);
        return -1;
    }
    if (out->data == NULL)
        buf_puts(out, "");
    return 1;
}

/* ---- lists ---- */

bool api_limit(struct api_call *call, int *limit)
{
    const char *s = api_param(call, "limit");
    *limit = API_LIMIT_DEFAULT;
    if (s == NULL)
        return true;
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || !isdigit((unsigned char)*s) || v < 1 || v > API_LIMIT_MAX) {
        api_error(call, 400, "bad_request", "limit must be a whole number from 1 to %d",
                  API_LIMIT_MAX);
        return false;
    }
    *limit = (int)v;
    return true;
}

bool api_order_asc(struct api_call *call, bool *asc)
{
    const char *s = api_param(call, "order");
    *asc = false;
    if (s == NULL || strcmp(s, "desc") == 0)
        return true;
    if (strcmp(s, "asc") == 0) {
        *asc = true;
        return true;
    }
    api_error(call, 400, "bad_request", "order must be \"desc\" or \"asc\"");
    return false;
}

static void put_be64(uint8_t *p, int64_t v)
{
    for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        p[i] = (uint8_t)v;
}

static int64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

void api_cursor_encode(int64_t a, int64_t b, char out[32])
{
    uint8_t raw[16];
    put_be64(raw, a);
    put_be64(raw + 8, b);
    base64url_encode(out, raw, sizeof(raw));
}

int api_cursor_decode(struct api_call *call, int64_t *a, int64_t *b)
{
    const char *s = api_param(call, "cursor");
    if (s == NULL)
        return 0;
    uint8_t raw[24];
    size_t len = strlen(s);
    if (len != BASE64URL_LEN(16) || base64url_decode(raw, s, len) != 16) {
        api_error(call, 400, "bad_request", "cursor is not one this API gave out");
        return -1;
    }
    *a = get_be64(raw);
    *b = get_be64(raw + 8);
    return 1;
}

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* RFC 3339: 2026-11-26T23:00:00Z, with optional fraction and +hh:mm offset. */
static bool parse_rfc3339(const char *s, int64_t *us)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int year, mon, day, hour, min, sec;
    const char *p = s;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
        !digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return false;
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return false;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 6) {
                frac = frac * 10 + (*p - '0');
                n++;
            }
            p++;
        }
        if (n == 0)
            return false;
        while (n++ < 6)
            frac *= 10;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (tm.tm_mday != day) /* 2026-02-31 normalised into March */
        return false;
    *us = ((int64_t)t - offset) * 1000000 + frac;
    return true;
}

int api_time_param(struct api_call *call, const char *name, int64_t *us)
{
    const char *s = api_param(call, name);
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    bool all_digits = n > 0 && n <= 12;
    for (size_t i = 0; i < n && all_digits; i++)
        all_digits = isdigit((unsigned char)s[i]);
    if (all_digits) {
        *us = strtoll(s, NULL, 10) * 1000000;
        return 1;
    }
    if (parse_rfc3339(s, us))
        return 1;
    api_error(call, 400, "bad_request",
              "%s must be an RFC 3339 time (2026-11-26T23:00:00Z) or Unix seconds", name);
    return -1;
}

void api_reply_list(struct api_call *call, const PGresult *r, int row_col, int limit, int ca,
                    int cb)
{
    int n = PQntuples(r);
    bool more = n > limit;
    if (more)
        n = limit;
    buf_reset(&call->out);
    buf_puts(&call->out, "{\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i > 0)
            buf_putc(&call->out, ',');
        buf_append(&call->out, PQgetvalue(r, i, row_col), (size_t)PQgetlength(r, i, row_col));
    }
    buf_puts(&call->out, "],\"next_cursor\":");
    if (more) {
        char cursor[32];
        int64_t a = strtoll(PQgetvalue(r, n - 1, ca), NULL, 10);
        int64_t b = cb >= 0 ? strtoll(PQgetvalue(r, n - 1, cb), NULL, 10) : 0;
        api_cursor_encode(a, b, cursor);
        buf_printf(&call->out, "\"%s\"}", cursor);
    } else {
        buf_puts(&call->out, "null}");
    }
    call->status = 200;
}

void api_reply_row(struct api_call *call, int status, const PGresult *r)
{
    buf_reset(&call->out);
    buf_append(&call->out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
    call->status = status;
}

static bool transaction_command(struct api_call *call, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        api_db_error(call, c, r, NULL); /* replaces any answer already set */
    PQclear(r);
    return ok;
}

bool api_begin(struct api_call *call, PGconn *c)
{
    return transaction_command(call, c, "BEGIN");
}

bool api_commit(struct api_call *call, PGconn *c)
{
    return transaction_command(call, c, "COMMIT");
}

void api_rollback(PGconn *c)
{
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
}

PGresult *api_exec(PGconn *c, const char *sql, int n, const char *const *params)
{
    return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

void api_secret_hint(const char *secret, size_t len, char out[16])
{
    if (len < 12) {
        out[0] = '\0';
        return;
    }
    /* Never start inside a UTF-8 sequence: PostgreSQL refuses such text. */
    size_t start = len - 4;
    while (start < len && ((unsigned char)secret[start] & 0xc0) == 0x80)
        start++;
    snprintf(out, 16, "\xe2\x80\xa6%.*s", (int)(len - start), secret + start);
}
