/*
 * events.c - /v1/events and /v1/deliveries; see events.h.
 *
 * Both lists page by keyset on (received_at, id): the cursor holds the last
 * row's received_at in microseconds and its id, and the next page starts
 * strictly after that pair. Rows sharing a received_at are therefore neither
 * skipped nor repeated, and rows stored while a client pages (newer than
 * anything it has seen) never shift what is left of a newest-first walk.
 *
 * Every filter becomes one clause through a small builder that numbers the
 * parameters; no value from the request is ever part of the SQL text.
 *
 * A tenant's query always holds its tenant, written "tenant_id BETWEEN $n AND
 * $n" and ordered by (tenant_id, received_at, id) rather than as "tenant_id =
 * $n". The two select the same rows, but with "=" PostgreSQL drops tenant_id
 * from the order and may walk events_received (every tenant, newest first)
 * filtering on the tenant: it expects the tenant's rows spread evenly in time,
 * and for a tenant whose events are all older than the others' it reads the
 * whole table's recent part. The range leaves only the (tenant_id,
 * [field | entry_id,] received_at DESC, id DESC) indexes able to give the
 * order, so a page costs limit + 1 index entries. Deliveries filtered by app
 * are pinned to deliveries_app_received the same way.
 *
 * Times reach PostgreSQL as timestamptz text written here from the
 * microsecond count, and come back as (extract(epoch ...) * 1000000)::int8,
 * which is numeric and exact since PostgreSQL 14: no floating point on the
 * way, so a cursor lands exactly on the row it was made from.
 *
 * A delivery's body is bytea and need not be UTF-8, which json_build_object
 * cannot render: the list is fetched in binary and each row's JSON is
 * finished here with the body as a string (when valid UTF-8) and in base64.
 * Bodies may be megabytes each, so a page also stops once DELIVERY_PAGE_BYTES
 * of bodies are in it (its next_cursor then continues after the last row).
 */
#include "api/events.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENT_JSON                                                                                 \
    "jsonb_build_object('id', id, 'app_id', app_id, 'tenant_id', tenant_id, 'delivery_id',"        \
    " delivery_id, 'object', object, 'field', field, 'entry_id', entry_id, 'entry_time',"          \
    " entry_time, 'received_at', received_at, 'payload', payload)::text"
#define DELIVERY_JSON                                                                              \
    "jsonb_build_object('id', id, 'app_id', app_id, 'received_at', received_at, 'status', status," \
    " 'reject_reason', reject_reason, 'signature', signature, 'item_count', item_count)::text"
/* received_at in exact microseconds since the Unix epoch: the cursor's time. */
#define RECEIVED_US "(extract(epoch FROM received_at) * 1000000)::int8"

#define FIELDS_MAX 20
#define CONTAINS_MAX 4096
#define CONTAINS_DEPTH 32
#define DELIVERY_PAGE_BYTES (8 * 1024 * 1024)

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: the times q_time writes. */
#define TIME_MIN_US (-62135596800LL * 1000000)
#define TIME_MAX_US (253402300800LL * 1000000 - 1)

/* ---- the statement builder ---- */

#define Q_MAX_PARAMS (FIELDS_MAX + 16)
#define Q_VALUE_MAX 48

struct query {
    struct buf sql;
    int n;
    bool has_where;
    const char *params[Q_MAX_PARAMS];
    char own[Q_MAX_PARAMS][Q_VALUE_MAX]; /* numbers, times and copies written here */
};

static void q_init(struct query *q, const char *select)
{
    buf_init(&q->sql);
    buf_puts(&q->sql, select);
    q->n = 0;
    q->has_where = false;
}

static void q_sql(struct query *q, const char *s)
{
    buf_puts(&q->sql, s);
}

/* Starts the next condition. */
static void q_and(struct query *q)
{
    buf_puts(&q->sql, q->has_where ? " AND " : " WHERE ");
    q->has_where = true;
}

/* Appends $n for v, which must outlive the query. */
static void q_param(struct query *q, const char *v)
{
    assert(q->n < Q_MAX_PARAMS);
    q->params[q->n++] = v;
    buf_printf(&q->sql, "$%d", q->n);
}

static void q_int(struct query *q, int64_t v)
{
    assert(q->n < Q_MAX_PARAMS);
    snprintf(q->own[q->n], Q_VALUE_MAX, "%" PRId64, v);
    q_param(q, q->own[q->n]);
    q_sql(q, "::int8");
}

/* A short value (an id from a row) copied into the query. */
static void q_copy(struct query *q, const char *v)
{
    assert(q->n < Q_MAX_PARAMS && strlen(v) < Q_VALUE_MAX);
    snprintf(q->own[q->n], Q_VALUE_MAX, "%s", v);
    q_param(q, q->own[q->n]);
}

/* us (within TIME_MIN_US..TIME_MAX_US) as timestamptz input text: exact. */
static void q_time(struct query *q, int64_t us)
{
    assert(q->n < Q_MAX_PARAMS && us >= TIME_MIN_US && us <= TIME_MAX_US);
    int64_t s = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        s--;
        frac += 1000000;
    }
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(q->own[q->n], Q_VALUE_MAX, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    q_param(q, q->own[q->n]);
    q_sql(q, "::timestamptz");
}

/* "lead BETWEEN $n AND $n": the column pinned to v, see the top. */
static void q_pin(struct query *q, const char *lead, int64_t v)
{
    q_and(q);
    q_sql(q, lead);
    q_sql(q, " BETWEEN ");
    q_int(q, v);
    q_sql(q, " AND ");
    q_int(q, v);
}

/* The list order: newest first, or oldest first for asc; after the pinned
 * column lead (may be NULL), in the direction that lets the index be read
 * forwards or backwards as a whole. */
static void order_by(struct buf *b, const char *lead, bool asc)
{
    if (lead != NULL)
        buf_printf(b, "%s%s, ", lead, asc ? " DESC" : "");
    buf_puts(b, asc ? "received_at, id" : "received_at DESC, id DESC");
}

/* The keyset condition and order shared by both lists. */
static void q_page(struct query *q, bool has_cursor, int64_t cur_us, int64_t cur_id, bool asc,
                   const char *lead, int limit)
{
    if (has_cursor) {
        q_and(q);
        q_sql(q, asc ? "(received_at, id) > (" : "(received_at, id) < (");
        q_time(q, cur_us);
        q_sql(q, ", ");
        q_int(q, cur_id);
        q_sql(q, ")");
    }
    q_sql(q, " ORDER BY ");
    order_by(&q->sql, lead, asc);
    q_sql(q, " LIMIT ");
    q_int(q, limit + 1);
}

/* ---- query parameters ---- */

/* name as a positive id: 0 absent, 1 present, -1 with a 400 set. */
static int id_param(struct api_call *call, const char *name, int64_t *out)
{
    const char *s = api_param(call, name);
    if (s == NULL)
        return 0;
    int64_t v = 0;
    size_t n = strlen(s);
    bool ok = n > 0 && n <= 18;
    for (size_t i = 0; i < n && ok; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (s[i] - '0');
    }
    if (!ok || v == 0) {
        api_error(call, 400, "bad_request", "%s must be a positive id", name);
        return -1;
    }
    *out = v;
    return 1;
}

/* A text filter value: 0 absent, 1 present, -1 (400) when empty. */
static int text_param(struct api_call *call, const char *name, const char **out)
{
    *out = api_param(call, name);
    if (*out == NULL)
        return 0;
    if (**out == '\0') {
        api_error(call, 400, "bad_request", "%s must not be empty", name);
        return -1;
    }
    return 1;
}

/* since/until: api_time_param, with times past year 9999 (where nothing is)
 * read as its last microsecond. */
static int time_param(struct api_call *call, const char *name, int64_t *us)
{
    int rc = api_time_param(call, name, us);
    if (rc == 1 && *us > TIME_MAX_US)
        *us = TIME_MAX_US;
    return rc;
}

static int cursor_param(struct api_call *call, int64_t *us, int64_t *id)
{
    int rc = api_cursor_decode(call, us, id);
    if (rc == 1 && (*us < TIME_MIN_US || *us > TIME_MAX_US || *id < 0)) {
        api_error(call, 400, "bad_request", "cursor is not one this API gave out");
        return -1;
    }
    return rc;
}

static void time_range(struct query *q, int has_since, int64_t since, int has_until, int64_t until)
{
    if (has_since > 0) {
        q_and(q);
        q_sql(q, "received_at >= ");
        q_time(q, since);
    }
    if (has_until > 0) {
        q_and(q);
        q_sql(q, "received_at < ");
        q_time(q, until);
    }
}

/* ---- events ---- */

static const char *const EVENT_PARAMS[] = {"account", "field",    "object",   "since",
                                           "until",   "entry_id", "contains", "limit",
                                           "cursor",  "order",    "tenant",   NULL};

/* contains=<JSON object>: the text jsonb will take (see json_copy_sanitized),
 * 1 present, 0 absent, -1 with a 400 set. */
static int contains_param(struct api_call *call, struct buf *out)
{
    const char *s = api_param(call, "contains");
    if (s == NULL)
        return 0;
    size_t len = strlen(s);
    if (len > CONTAINS_MAX) {
        api_error(call, 400, "bad_request", "contains is longer than %d bytes", CONTAINS_MAX);
        return -1;
    }
    struct json_doc doc;
    const char *why = NULL;
    if (json_parse(&doc, s, len, CONTAINS_DEPTH, &why) != 0) {
        api_error(call, 400, "bad_request", "contains is not valid JSON: %s",
                  why != NULL ? why : "malformed");
        return -1;
    }
    int rc = 1;
    if (doc.ntoks == 0 || !json_is_object(&doc, 0)) {
        api_error(call, 400, "bad_request", "contains must be a JSON object");
        rc = -1;
    } else {
        json_copy_sanitized(&doc, 0, out);
    }
    json_doc_dispose(&doc);
    return rc;
}

/* Whose events a list holds: *tenant is the tenant pinned, 0 for the
 * unrouted events (tenant=none), -1 for all (the operator without tenant=).
 * false with a 400 set. */
static bool tenant_scope(struct api_call *call, int64_t *tenant)
{
    const char *t = api_param(call, "tenant");
    if (!call->caller.is_operator && call->caller.tenant_id <= 0) {
        /* api_authenticate sets it; should it ever not, never widen the view. */
        api_error(call, 500, "internal", "the request could not be completed");
        return false;
    }
    *tenant = call->caller.is_operator ? -1 : call->caller.tenant_id;
    if (t == NULL)
        return true;
    if (!call->caller.is_operator) {
        api_error(call, 400, "bad_request", "tenant is for the operator only");
        return false;
    }
    if (strcmp(t, "none") == 0) {
        *tenant = 0;
        return true;
    }
    if (id_param(call, "tenant", tenant) < 0) {
        api_error(call, 400, "bad_request", "tenant must be a tenant id or \"none\"");
        return false;
    }
    return true;
}

/* The tenant clause; the lead column of the order (see the top), or NULL. */
static const char *tenant_filter(struct query *q, int64_t tenant)
{
    if (tenant < 0)
        return NULL;
    if (tenant == 0) {
        q_and(q);
        q_sql(q, "tenant_id IS NULL");
    } else {
        q_pin(q, "tenant_id", tenant);
    }
    return "tenant_id";
}

/* What account=<id> selects: events of its app whose entry is its Instagram
 * account id, or also its Page id. */
struct account_entries {
    int64_t app_id;
    char ig_id[Q_VALUE_MAX];
    char page_id[Q_VALUE_MAX];
    bool has_page;
};

/* A tenant only finds its own accounts. false with 404 or a database error
 * set. */
static bool account_lookup(struct api_call *call, PGconn *c, int64_t account,
                           struct account_entries *out)
{
    char id[24], tenant[24];
    snprintf(id, sizeof(id), "%" PRId64, account);
    snprintf(tenant, sizeof(tenant), "%" PRId64, call->caller.tenant_id);
    const char *params[] = {id, tenant};
    PGresult *r =
        call->caller.is_operator
            ? api_exec(c, "SELECT app_id, ig_id, page_id FROM accounts WHERE id = $1", 1, params)
            : api_exec(c,
                       "SELECT app_id, ig_id, page_id FROM accounts"
                       " WHERE id = $1 AND tenant_id = $2",
                       2, params);
    bool ok = false;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_error(call, c, r, NULL);
    } else if (PQntuples(r) == 0) {
        api_not_found(call, "no account with this id");
    } else {
        /* ig_id and page_id are at most 32 digits (a CHECK of the table). */
        out->app_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        snprintf(out->ig_id, sizeof(out->ig_id), "%s", PQgetvalue(r, 0, 1));
        out->has_page = !PQgetisnull(r, 0, 2) && strcmp(PQgetvalue(r, 0, 2), out->ig_id) != 0;
        snprintf(out->page_id, sizeof(out->page_id), "%s", PQgetvalue(r, 0, 2));
        ok = true;
    }
    PQclear(r);
    return ok;
}

/* What every time-ordered list reads: the parameters allowed, limit, order,
 * the received-time window and the cursor. false with a 400 set. */
struct page {
    int limit;
    bool asc;
    int has_since, has_until, has_cursor;
    int64_t since, until, cur_us, cur_id;
};

static bool read_page(struct api_call *call, const char *const *allowed, const char *repeatable,
                      struct page *pg)
{
    memset(pg, 0, sizeof(*pg));
    return api_params_only(call, allowed, repeatable) && api_limit(call, &pg->limit) &&
           api_order_asc(call, &pg->asc) &&
           (pg->has_since = time_param(call, "since", &pg->since)) >= 0 &&
           (pg->has_until = time_param(call, "until", &pg->until)) >= 0 &&
           (pg->has_cursor = cursor_param(call, &pg->cur_us, &pg->cur_id)) >= 0;
}

void events_list(struct api_call *call, PGconn *c)
{
    struct page pg;
    int64_t account = 0;
    if (!read_page(call, EVENT_PARAMS, "field", &pg))
        return;
    int has_account = id_param(call, "account", &account);
    if (has_account < 0)
        return;
    const char *object, *entry_id;
    int has_object = text_param(call, "object", &object);
    if (has_object < 0)
        return;
    int has_entry = text_param(call, "entry_id", &entry_id);
    if (has_entry < 0)
        return;
    int64_t tenant;
    if (!tenant_scope(call, &tenant))
        return;

    const char *fields[FIELDS_MAX];
    size_t nfields = 0;
    for (size_t i = 0; i < call->nparams; i++) {
        if (strcmp(call->params[i].name, "field") != 0)
            continue;
        if (nfields == FIELDS_MAX) {
            api_error(call, 400, "bad_request", "at most %d field values may be given", FIELDS_MAX);
            return;
        }
        if (call->params[i].value[0] == '\0') {
            api_error(call, 400, "bad_request", "field must not be empty");
            return;
        }
        fields[nfields++] = call->params[i].value;
    }

    struct buf contains;
    buf_init(&contains);
    int has_contains = contains_param(call, &contains);
    struct account_entries acc;
    if (has_contains < 0 || (has_account > 0 && !account_lookup(call, c, account, &acc))) {
        buf_dispose(&contains);
        return;
    }

    /* No index gives the order of two entries at once: an account with a
     * Page id is read as two ordered index walks of limit + 1 rows each,
     * merged. */
    bool two_entries = has_account > 0 && acc.has_page;
    struct query q;
    if (two_entries) {
        q_init(&q, "SELECT j, us, id FROM unnest(ARRAY[");
        q_copy(&q, acc.ig_id);
        q_sql(&q, ", ");
        q_copy(&q, acc.page_id);
        q_sql(&q, "]::text[]) AS acc(entry_id) CROSS JOIN LATERAL (SELECT " EVENT_JSON
                  " AS j, " RECEIVED_US " AS us, id, tenant_id, received_at FROM events");
    } else {
        q_init(&q, "SELECT " EVENT_JSON ", " RECEIVED_US ", id FROM events");
    }
    const char *lead = tenant_filter(&q, tenant);
    if (has_account > 0) {
        q_and(&q);
        q_sql(&q, "app_id = ");
        q_int(&q, acc.app_id);
        q_and(&q);
        if (two_entries) {
            q_sql(&q, "entry_id = acc.entry_id");
        } else {
            q_sql(&q, "entry_id = ");
            q_copy(&q, acc.ig_id);
        }
    }

    if (nfields == 1) {
        q_and(&q);
        q_sql(&q, "field = ");
        q_param(&q, fields[0]);
    } else if (nfields > 1) {
        q_and(&q);
        q_sql(&q, "field IN (");
        for (size_t i = 0; i < nfields; i++) {
            if (i > 0)
                q_sql(&q, ", ");
            q_param(&q, fields[i]);
        }
        q_sql(&q, ")");
    }
    if (has_object > 0) {
        q_and(&q);
        q_sql(&q, "object = ");
        q_param(&q, object);
    }
    if (has_entry > 0) {
        q_and(&q);
        q_sql(&q, "entry_id = ");
        q_param(&q, entry_id);
    }
    if (has_contains > 0) {
        q_and(&q);
        q_sql(&q, "payload @> ");
        q_param(&q, contains.data);
        q_sql(&q, "::jsonb");
    }
    time_range(&q, pg.has_since, pg.since, pg.has_until, pg.until);
    q_page(&q, pg.has_cursor > 0, pg.cur_us, pg.cur_id, pg.asc, lead, pg.limit);
    if (two_entries) {
        q_sql(&q, ") e ORDER BY ");
        order_by(&q.sql, lead, pg.asc);
        buf_printf(&q.sql, " LIMIT $%d", q.n); /* q_page's last: limit + 1 */
    }

    PGresult *r = api_exec(c, q.sql.data, q.n, q.params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, pg.limit, 1, 2);
    PQclear(r);
    buf_dispose(&q.sql);
    buf_dispose(&contains);
}

void events_get(struct api_call *call, PGconn *c)
{
    char id[24], tenant[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    snprintf(tenant, sizeof(tenant), "%" PRId64, call->caller.tenant_id);
    const char *params[] = {id, tenant};
    PGresult *r = call->caller.is_operator
                      ? api_exec(c, "SELECT " EVENT_JSON " FROM events WHERE id = $1", 1, params)
                      : api_exec(c,
                                 "SELECT " EVENT_JSON " FROM events"
                                 " WHERE id = $1 AND tenant_id = $2",
                                 2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no event with this id");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

/* ---- deliveries ---- */

static const char *const DELIVERY_PARAMS[] = {"app_id", "status", "since", "until",
                                              "limit",  "cursor", "order", NULL};

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. json_write_string would quietly repair the rest. */
static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            k = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < k || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t j = 2; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

/* Appends the row's JSON (column 0, ending in '}') with body and body_base64
 * (column 1, raw bytes) added. */
static void delivery_row(struct buf *out, const PGresult *r, int i)
{
    const char *json = PQgetvalue(r, i, 0);
    size_t jlen = (size_t)PQgetlength(r, i, 0);
    const unsigned char *body = (const unsigned char *)PQgetvalue(r, i, 1);
    size_t blen = (size_t)PQgetlength(r, i, 1);
    assert(jlen > 0 && json[jlen - 1] == '}');
    buf_append(out, json, jlen - 1);
    buf_puts(out, ", \"body\" : ");
    if (utf8_valid(body, blen))
        json_write_string(out, (const char *)body, blen);
    else
        buf_puts(out, "null");
    buf_puts(out, ", \"body_base64\" : \"");
    size_t b64 = 4 * ((blen + 2) / 3);
    buf_reserve(out, b64);
    /* Bodies are bounded by HUBBUB_BODY_LIMIT (at most 64 MiB): an int. */
    int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, body, (int)blen);
    out->len += (size_t)w;
    buf_puts(out, "\"}");
}

/* The column of a binary-format result that holds text, as a number. */
static int64_t text_int(const PGresult *r, int row, int col)
{
    char s[32];
    snprintf(s, sizeof(s), "%.*s", PQgetlength(r, row, col), PQgetvalue(r, row, col));
    return strtoll(s, NULL, 10);
}

void deliveries_list(struct api_call *call, PGconn *c)
{
    struct page pg;
    int64_t app_id = 0;
    if (!read_page(call, DELIVERY_PARAMS, NULL, &pg))
        return;
    int has_app = id_param(call, "app_id", &app_id);
    if (has_app < 0)
        return;
    const char *status = api_param(call, "status");
    if (status != NULL && strcmp(status, "accepted") != 0 && strcmp(status, "rejected") != 0) {
        api_error(call, 400, "bad_request", "status must be \"accepted\" or \"rejected\"");
        return;
    }

    /* The inner query is the page (limit + 1 rows by the index); the outer
     * one drops the rows after DELIVERY_PAGE_BYTES of bodies (never the
     * first) and counts what the page held, so that a cut page still has a
     * next_cursor. Bodies past the cut are never read. */
    struct query q;
    q_init(&q, "SELECT id, app_id, received_at, status, reject_reason, signature, item_count, body"
               " FROM deliveries");
    if (has_app > 0)
        q_pin(&q, "app_id", app_id);
    if (status != NULL) {
        q_and(&q);
        q_sql(&q, "status = ");
        q_param(&q, status);
    }
    time_range(&q, pg.has_since, pg.since, pg.has_until, pg.until);
    const char *lead = has_app > 0 ? "app_id" : NULL;
    q_page(&q, pg.has_cursor > 0, pg.cur_us, pg.cur_id, pg.asc, lead, pg.limit);

    struct buf order, sql;
    buf_init(&order);
    buf_init(&sql);
    order_by(&order, lead, pg.asc);
    buf_printf(
        &sql,
        "SELECT j, body, ts::text AS cursor_ts, id::text AS cursor_id, total::text AS n FROM ("
        " SELECT " DELIVERY_JSON " AS j, body, " RECEIVED_US " AS ts, id, app_id, received_at,"
        "  count(*) OVER () AS total,"
        "  sum(octet_length(body)) OVER (ORDER BY %s ROWS UNBOUNDED PRECEDING)"
        "   - octet_length(body) AS before"
        " FROM (%s) page) s"
        " WHERE before < %d ORDER BY %s",
        order.data, q.sql.data, DELIVERY_PAGE_BYTES, order.data);
    PGresult *r = PQexecParams(c, sql.data, q.n, NULL, q.params, NULL, NULL, 1);
    buf_dispose(&order);
    buf_dispose(&sql);
    buf_dispose(&q.sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_error(call, c, r, NULL);
        PQclear(r);
        return;
    }

    int n = PQntuples(r), shown = n < pg.limit ? n : pg.limit;
    bool more = n > 0 && text_int(r, 0, 4) > shown;
    buf_reset(&call->out);
    buf_puts(&call->out, "{\"data\":[");
    for (int i = 0; i < shown; i++) {
        if (i > 0)
            buf_putc(&call->out, ',');
        delivery_row(&call->out, r, i);
    }
    buf_puts(&call->out, "],\"next_cursor\":");
    if (more) {
        char cursor[32];
        api_cursor_encode(text_int(r, shown - 1, 2), text_int(r, shown - 1, 3), cursor);
        buf_printf(&call->out, "\"%s\"}", cursor);
    } else {
        buf_puts(&call->out, "null}");
    }
    call->status = 200;
    PQclear(r);
}
