/*
 * t_api_events.c - /v1/events and /v1/deliveries through the real server.
 *
 * Two tenants each get an app and send real signed deliveries; every filter
 * is checked by comparing the ids the API pages out (all pages, in order)
 * with the same selection made in SQL, so a filter that drops, adds or
 * misorders a row fails. Then isolation between the tenants, the operator's
 * views, bad input, the raw deliveries (including rejected and non-UTF-8
 * bodies), and keyset pagination over 10 000 events: every page size in both
 * orders yields every event exactly once, also while new events arrive.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/base64url.h"
#include "lib/buf.h"
#include "tests/integration/harness.h"

#define APP_A "2100000001"
#define APP_B "2100000002"
#define SECRET_A "tenant-a-app-secret-0123456789abcdef"
#define SECRET_B "tenant-b-app-secret-fedcba9876543210"
#define IG_A "17841405822304914"
#define IG_B "17841400123456789"
#define PAGE_ID "107280815400123"
#define WALK_EVENTS 10000
#define WALK_APP 424242

static struct h_db DB;
static struct h_server S;
static char KEY_A[64], KEY_B[64], KEY_C[64];
static long long TA, TB, TC, APP_ID_A, APP_ID_B;

/* ---- helpers ---- */

static void get(struct h_resp *r, const char *token, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void get(struct h_resp *r, const char *token, const char *fmt, ...)
{
    char path[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    h_api(r, &S, token, "GET", path, NULL);
}

/* Percent-encodes s for a query string (caller frees). */
static char *urlenc(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

struct ids {
    long long *v;
    size_t n, cap;
};

static void ids_push(struct ids *l, long long v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = v;
}

/* "1,2,3" (caller frees). */
static char *ids_join(const struct ids *l)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "");
    for (size_t i = 0; i < l->n; i++)
        buf_printf(&b, "%s%lld", i > 0 ? "," : "", l->v[i]);
    return buf_steal(&b);
}

/* Appends the ids of a list answer's "data" to out and returns its
 * next_cursor (caller frees; NULL when null). false when the answer is not a
 * list. */
static bool parse_page(const char *body, size_t len, struct ids *out, char **next)
{
    struct json_doc doc;
    const char *why = NULL;
    *next = NULL;
    if (json_parse(&doc, body, len, JSON_DEFAULT_MAX_DEPTH, &why) != 0) {
        tap_diag("the answer is not JSON: %s", why);
        return false;
    }
    bool ok = doc.ntoks > 0 && json_is_object(&doc, 0);
    int data = ok ? json_get(&doc, 0, "data") : -1;
    int nc = ok ? json_get(&doc, 0, "next_cursor") : -1;
    ok = data >= 0 && json_is_array(&doc, data) && nc >= 0;
    for (int i = 0, k = data + 1; ok && i < doc.toks[data].size; i++, k = json_next(&doc, k)) {
        int id = json_get(&doc, k, "id");
        int64_t v;
        ok = id >= 0 && json_int64(&doc, id, &v);
        if (ok)
            ids_push(out, v);
    }
    if (ok && json_is_string(&doc, nc)) {
        struct buf b;
        buf_init(&b);
        json_string_decode(&doc, nc, &b);
        *next = buf_steal(&b);
    }
    if (!ok)
        tap_diag("not a list answer: %.300s", body);
    json_doc_dispose(&doc);
    return ok;
}

/* GETs path and every following page; the ids in order. false (with a
 * diagnostic) when a page does not answer 200, or when the cursor does not
 * move on (a walk that would never end). */
static bool walk(const char *token, const char *path, struct ids *out, int *pages)
{
    char *cursor = NULL, *prev = NULL;
    bool ok = true;
    *pages = 0;
    do {
        struct h_resp r;
        if (cursor == NULL)
            get(&r, token, "%s", path);
        else
            get(&r, token, "%s%scursor=%s", path, strchr(path, '?') ? "&" : "?", cursor);
        free(prev);
        prev = cursor;
        cursor = NULL;
        (*pages)++;
        if (r.status != 200) {
            tap_diag("GET %s (page %d): %ld %s", path, *pages, r.status, r.body);
            ok = false;
        } else {
            ok = parse_page(r.body, r.len, out, &cursor);
        }
        h_resp_free(&r);
        if (ok && cursor != NULL &&
            ((prev != NULL && strcmp(prev, cursor) == 0) || *pages > 2 * WALK_EVENTS)) {
            tap_diag("GET %s: the cursor does not move on after %d pages", path, *pages);
            ok = false;
        }
    } while (ok && cursor != NULL);
    free(prev);
    free(cursor);
    return ok;
}

/* The ids of events matching where, in list order (caller frees). */
static char *sql_ids(const char *where, bool asc)
{
    return h_db_text(&DB,
                     "SELECT coalesce(string_agg(id::text, ',' ORDER BY received_at %s, id %s), '')"
                     " FROM events WHERE %s",
                     asc ? "ASC" : "DESC", asc ? "ASC" : "DESC", where);
}

/* The list at path (all pages) holds exactly the events matching where, in
 * order, and that is not nothing. */
static void check_list(const char *token, const char *path, const char *where, bool asc,
                       const char *what)
{
    char *want = sql_ids(where, asc);
    struct ids got = {0};
    int pages;
    bool ok = walk(token, path, &got, &pages);
    char *g = ids_join(&got);
    ok = ok && want[0] != '\0' && strcmp(g, want) == 0;
    tap_ok(ok, "%s", what);
    if (!ok)
        tap_diag("GET %s\n  got:  %s\n  want: %s", path, g, want);
    free(g);
    free(want);
    free(got.v);
}

/* GET path answers status and its body holds needle. */
static void check_status(const char *token, const char *path, long status, const char *needle,
                         const char *what)
{
    struct h_resp r;
    get(&r, token, "%s", path);
    bool ok = r.status == status && (needle == NULL || strstr(r.body, needle) != NULL);
    tap_ok(ok, "%s", what);
    if (!ok)
        tap_diag("GET %s: %ld %s", path, r.status, r.body);
    h_resp_free(&r);
}

static long long post(const char *app, const char *secret, const void *body, size_t len,
                      long want_status)
{
    struct h_resp r;
    h_post_signed(&r, &S, app, secret, body, len);
    if (r.status != want_status)
        tap_bail("delivery to %s: %ld %s (wanted %ld)", app, r.status, r.body, want_status);
    long long id = h_json_num(r.body, "delivery_id");
    h_resp_free(&r);
    return id;
}

static void post_fixture(const char *app, const char *secret, const char *file)
{
    char path[128];
    snprintf(path, sizeof(path), "tests/fixtures/%s", file);
    size_t len;
    char *body = h_read_fixture(path, &len);
    post(app, secret, body, len, 200);
    free(body);
}

/* An app for the tenant through the API, or with the CLI while the apps
 * resource is not there yet. Returns the app's internal id. */
static long long make_app(const char *tenant, const char *key, const char *app, const char *secret)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"meta_app_id\":\"%s\",\"app_secret\":\"%s\",\"verify_token\":\"verify-%s\"}", app,
             secret, app);
    struct h_resp r;
    h_api(&r, &S, key, "POST", "/v1/apps", body);
    if (r.status != 201) {
        tap_diag("POST /v1/apps: %ld; creating app %s with the CLI", r.status, app);
        h_setup_app(&DB, tenant, app, "verify-token", secret);
    }
    h_resp_free(&r);
    return h_db_int(&DB, "SELECT id FROM apps WHERE meta_app_id = '%s'", app);
}

/* ---- setup ---- */

static long long REJ_TEXT, REJ_BINARY;
static const char REJ_TEXT_BODY[] = "not a Meta envelope: \"quoted\" back\\slash\nnew line\t"
                                    "\x01 ctl \xc3\xa9t\xc3\xa9 \xf0\x9f\x91\x91 </script>";
static const char REJ_BINARY_BODY[] = "\xff\xfe binary \xc3 \xed\xa0\x80 \xc0\xaf";

static void setup(void)
{
    TA = h_api_tenant(&S, "acme", KEY_A);
    TB = h_api_tenant(&S, "bravo", KEY_B);
    TC = h_api_tenant(&S, "walker", KEY_C);
    APP_ID_A = make_app("acme", KEY_A, APP_A, SECRET_A);
    APP_ID_B = make_app("bravo", KEY_B, APP_B, SECRET_B);
    tap_ok(APP_ID_A > 0 && APP_ID_B > 0, "each tenant has an app");

    post_fixture(APP_A, SECRET_A, "batch.json");
    post_fixture(APP_A, SECRET_A, "comments.json");
    post_fixture(APP_A, SECRET_A, "page.json");
    post_fixture(APP_A, SECRET_A, "mentions.json");
    post_fixture(APP_A, SECRET_A, "messages.json");
    post_fixture(APP_B, SECRET_B, "batch.json");
    for (int i = 1; i <= 3; i++) {
        size_t len;
        char *body = h_comment_delivery(i, &len);
        post(APP_B, SECRET_B, body, len, 200);
        free(body);
    }
    REJ_TEXT = post(APP_A, SECRET_A, REJ_TEXT_BODY, sizeof(REJ_TEXT_BODY) - 1, 400);
    REJ_BINARY = post(APP_A, SECRET_A, REJ_BINARY_BODY, sizeof(REJ_BINARY_BODY) - 1, 400);

    /* An unrouted event (a shared app's, for no known account). */
    h_db_exec(&DB,
              "INSERT INTO events (app_id, tenant_id, delivery_id, object, field, entry_id,"
              " received_at, dedup_key, payload) VALUES (%lld, NULL, 0, 'instagram',"
              " 'comments', '999', now(), '\\x01', '{\"unrouted\":true}')",
              APP_ID_A + 1000);
    tap_ok(h_db_int(&DB, "SELECT count(*) FROM events WHERE tenant_id = %lld", TA) >= 10 &&
               h_db_int(&DB, "SELECT count(*) FROM events WHERE tenant_id = %lld", TB) >= 9,
           "both tenants have events");
}

/* ---- events: filters ---- */

static void check_filters(void)
{
    char where[512], path[1024];
    snprintf(where, sizeof(where), "tenant_id = %lld", TA);
    check_list(KEY_A, "/v1/events", where, false, "a tenant lists all its events, newest first");
    check_list(KEY_A, "/v1/events?limit=3", where, false, "the same in pages of 3");
    check_list(KEY_A, "/v1/events?order=asc&limit=4", where, true,
               "order=asc lists them oldest first");
    check_list(KEY_A, "/v1/events?order=desc&limit=1000", where, false,
               "order=desc and limit=1000 are accepted");

    snprintf(where, sizeof(where), "tenant_id = %lld AND field = 'comments'", TA);
    check_list(KEY_A, "/v1/events?field=comments&limit=1", where, false,
               "field=comments selects the tenant's comments");
    snprintf(where, sizeof(where), "tenant_id = %lld AND field IN ('comments', 'mentions')", TA);
    check_list(KEY_A, "/v1/events?field=comments&field=mentions&limit=2", where, false,
               "a repeated field selects any of the fields");
    snprintf(where, sizeof(where), "tenant_id = %lld AND field IN ('messages', 'standby')", TA);
    check_list(KEY_A, "/v1/events?field=messages&field=standby&field=no_such&order=asc", where,
               true, "three fields, one matching nothing, oldest first");
    snprintf(where, sizeof(where), "tenant_id = %lld AND object = 'page'", TA);
    check_list(KEY_A, "/v1/events?object=page", where, false, "object=page selects the Page event");
    snprintf(where, sizeof(where), "tenant_id = %lld AND entry_id = '" IG_B "'", TA);
    check_list(KEY_A, "/v1/events?entry_id=" IG_B, where, false,
               "entry_id selects the events of that entry");
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND entry_id = '" IG_A "' AND field = 'messages'", TA);
    check_list(KEY_A, "/v1/events?entry_id=" IG_A "&field=messages", where, false,
               "entry_id and field combine");

    /* contains: a nested object, matched anywhere it is a subset. */
    char *c = urlenc("{\"value\":{\"from\":{\"username\":\"marie.dupont\"}}}");
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND payload @> '{\"value\":{\"from\":{\"username\":"
             "\"marie.dupont\"}}}'",
             TA);
    snprintf(path, sizeof(path), "/v1/events?contains=%s&limit=1", c);
    check_list(KEY_A, path, where, false, "contains matches a nested object in the payload");
    tap_is_int(h_db_int(&DB, "SELECT count(*) FROM events WHERE %s", where), 2,
               "(both of the tenant's marie.dupont comments)");
    free(c);
    c = urlenc("{\"message\":{\"text\":\"Bonjour, vous livrez \\u00e0 Montr\\u00e9al ? "
               "\\ud83d\\ude4f\"}}");
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND payload->'message'->>'text'"
             " = 'Bonjour, vous livrez \xc3\xa0 Montr\xc3\xa9"
             "al ? \xf0\x9f\x99\x8f'",
             TA);
    snprintf(path, sizeof(path), "/v1/events?contains=%s", c);
    check_list(KEY_A, path, where, false, "contains with \\u escapes matches the decoded text");
    free(c);

    /* since (inclusive) and until (exclusive) on received_at, to the microsecond. */
    char *mid = h_db_text(&DB,
                          "SELECT to_char(received_at AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM events"
                          " WHERE tenant_id = %lld AND object = 'page'",
                          TA);
    char *rt = h_db_text(&DB,
                         "SELECT received_at::text FROM events WHERE tenant_id = %lld"
                         " AND object = 'page'",
                         TA);
    snprintf(where, sizeof(where), "tenant_id = %lld AND received_at >= '%s'", TA, rt);
    snprintf(path, sizeof(path), "/v1/events?since=%s&limit=2", mid);
    check_list(KEY_A, path, where, false, "since includes events received at that instant");
    snprintf(where, sizeof(where), "tenant_id = %lld AND received_at < '%s'", TA, rt);
    snprintf(path, sizeof(path), "/v1/events?until=%s&order=asc", mid);
    check_list(KEY_A, path, where, true, "until excludes events received at that instant");
    char *offset = h_db_text(&DB,
                             "SELECT to_char(received_at AT TIME ZONE 'Asia/Kolkata',"
                             " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+05:30\"')"
                             " FROM events WHERE tenant_id = %lld AND object = 'page'",
                             TA);
    char *enc = urlenc(offset);
    snprintf(where, sizeof(where), "tenant_id = %lld AND received_at >= '%s'", TA, rt);
    snprintf(path, sizeof(path), "/v1/events?since=%s", enc);
    check_list(KEY_A, path, where, false, "since with a +05:30 offset is the same instant");
    free(enc);
    free(offset);
    long long secs = h_db_int(&DB,
                              "SELECT floor(extract(epoch FROM received_at))::int8 FROM events"
                              " WHERE tenant_id = %lld AND object = 'page'",
                              TA);
    snprintf(where, sizeof(where), "tenant_id = %lld AND received_at >= to_timestamp(%lld)", TA,
             secs);
    snprintf(path, sizeof(path), "/v1/events?since=%lld", secs);
    check_list(KEY_A, path, where, false, "since in Unix seconds");
    check_status(KEY_A, "/v1/events?until=0", 200, "{\"data\":[],\"next_cursor\":null}",
                 "until=0 lists nothing");
    check_status(KEY_A, "/v1/events?since=99999999999", 200, "{\"data\":[],\"next_cursor\":null}",
                 "a since far in the future lists nothing");
    free(mid);
    free(rt);
}

/* ---- events: accounts ---- */

static void check_accounts(void)
{
    /* The accounts resource is another file's: rows go in directly. */
    long long acc_ig =
        h_db_int(&DB,
                 "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type, access_token_sealed,"
                 " access_token_hint) VALUES (%lld, %lld, '" IG_B "', 'instagram_login', 'x', '')"
                 " RETURNING id",
                 TA, APP_ID_A);
    long long acc_page = h_db_int(
        &DB,
        "INSERT INTO accounts (tenant_id, app_id, ig_id, page_id, login_type, access_token_sealed,"
        " access_token_hint) VALUES (%lld, %lld, '" IG_A "', '" PAGE_ID "', 'facebook_login',"
        " 'x', '') RETURNING id",
        TA, APP_ID_A);
    long long acc_b =
        h_db_int(&DB,
                 "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type, access_token_sealed,"
                 " access_token_hint) VALUES (%lld, %lld, '" IG_A "', 'instagram_login', 'x', '')"
                 " RETURNING id",
                 TB, APP_ID_B);
    char where[256], path[128];
    snprintf(where, sizeof(where), "tenant_id = %lld AND app_id = %lld AND entry_id = '" IG_B "'",
             TA, APP_ID_A);
    snprintf(path, sizeof(path), "/v1/events?account=%lld", acc_ig);
    check_list(KEY_A, path, where, false, "account selects the events of its Instagram id");
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND app_id = %lld AND entry_id IN ('" IG_A "', '" PAGE_ID "')", TA,
             APP_ID_A);
    snprintf(path, sizeof(path), "/v1/events?account=%lld&limit=2", acc_page);
    check_list(KEY_A, path, where, false, "an account with a Page id also gets the Page's events");
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND app_id = %lld AND entry_id = '" PAGE_ID "'", TA, APP_ID_A);
    snprintf(path, sizeof(path), "/v1/events?account=%lld&object=page", acc_page);
    check_list(KEY_A, path, where, false, "account and object combine");
    snprintf(path, sizeof(path), "/v1/events?account=%lld", acc_ig);
    check_status(KEY_B, path, 404, "no account with this id",
                 "another tenant's account is 404 for a tenant");
    snprintf(path, sizeof(path), "/v1/events?account=%lld", acc_b);
    check_status(KEY_A, path, 404, "\"not_found\"", "and the other way round");
    snprintf(where, sizeof(where), "app_id = %lld AND entry_id = '" IG_A "'", APP_ID_B);
    snprintf(path, sizeof(path), "/v1/events?account=%lld", acc_b);
    check_list(H_ADMIN_TOKEN, path, where, false, "the operator may filter by any account");
    snprintf(where, sizeof(where), "app_id = %lld AND entry_id IN ('" IG_A "', '" PAGE_ID "')",
             APP_ID_A);
    snprintf(path, sizeof(path), "/v1/events?account=%lld&order=asc&limit=1", acc_page);
    check_list(H_ADMIN_TOKEN, path, where, true,
               "the operator's view of an account with a Page id, oldest first, one by one");
    check_status(KEY_A, "/v1/events?account=999999", 404, "no account with this id",
                 "an unknown account is 404");
    check_status(KEY_A, "/v1/events?account=abc", 400, "\"bad_request\"",
                 "a malformed account id is 400");
    h_db_exec(&DB, "DELETE FROM accounts");
}

/* ---- events: bad input ---- */

static void check_bad_input(void)
{
    static const struct {
        const char *query, *needle, *what;
    } BAD[] = {
        {"limit=0", "limit", "limit=0"},
        {"limit=1001", "limit", "limit=1001"},
        {"limit=x", "limit", "limit=x"},
        {"limit=", "limit", "an empty limit"},
        {"cursor=garbage", "cursor", "a cursor that is not base64url of 16 bytes"},
        {"cursor=AAAAAAAAAAAAAAAAAAAAAA%3D%3D", "cursor", "a padded cursor"},
        {"order=up", "order", "order=up"},
        {"fields=comments", "fields", "an unknown parameter (named in the message)"},
        {"field=comments&Field=mentions", "Field", "a parameter in the wrong case"},
        {"object=instagram&object=page", "object", "object given twice"},
        {"since=yesterday", "since", "since=yesterday"},
        {"until=2026-02-31T00:00:00Z", "until", "until on a day that does not exist"},
        {"field=", "field", "an empty field"},
        {"entry_id=", "entry_id", "an empty entry_id"},
        {"contains=%5B1%5D", "contains", "contains=[1] (not an object)"},
        {"contains=%7Bbad", "contains", "contains that is not JSON"},
        {"contains=%7B%22a%22%3A1%7D%7B%7D", "contains", "contains with two values"},
        {"contains=", "contains", "an empty contains"},
        {"tenant=1", "operator", "tenant from a tenant key"},
        {"account=0", "account", "account=0"},
    };
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/events?%s", BAD[i].query);
        struct h_resp r;
        get(&r, KEY_A, "%s", path);
        bool ok = r.status == 400 && strstr(r.body, "\"bad_request\"") != NULL &&
                  strstr(r.body, BAD[i].needle) != NULL;
        tap_ok(ok, "%s is a 400 naming %s", BAD[i].what, BAD[i].needle);
        if (!ok)
            tap_diag("GET %s: %ld %s", path, r.status, r.body);
        h_resp_free(&r);
    }

    /* A cursor of the right shape whose time is outside anything stored. */
    uint8_t raw[16] = {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1};
    char cur[32], path[128];
    base64url_encode(cur, raw, sizeof(raw));
    snprintf(path, sizeof(path), "/v1/events?cursor=%s", cur);
    check_status(KEY_A, path, 400, "cursor", "a well-formed cursor with an impossible time is 400");
    check_status(H_ADMIN_TOKEN, "/v1/events?tenant=abc", 400, "tenant",
                 "tenant=abc is 400 for the operator");

    /* 21 fields, and a contains over 4 KiB. */
    struct buf q;
    buf_init(&q);
    buf_puts(&q, "/v1/events?");
    for (int i = 0; i < 21; i++)
        buf_printf(&q, "%sfield=f%d", i ? "&" : "", i);
    check_status(KEY_A, q.data, 400, "20", "21 field values are 400");
    buf_reset(&q);
    buf_puts(&q, "/v1/events?");
    for (int i = 0; i < 20; i++)
        buf_printf(&q, "%sfield=f%d", i ? "&" : "", i);
    check_status(KEY_A, q.data, 200, "{\"data\":[]", "20 field values are accepted");
    buf_reset(&q);
    buf_printf(&q, "%s/v1/events?contains=%%7B%%22a%%22%%3A%%22", S.base);
    for (int i = 0; i < 4100; i++)
        buf_putc(&q, 'x');
    buf_puts(&q, "%22%7D");
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", KEY_A);
    const char *headers[] = {auth, NULL};
    struct h_resp r;
    h_http(&r, "GET", q.data, headers, NULL, 0);
    tap_ok(r.status == 400 && strstr(r.body, "4096") != NULL, "contains over 4 KiB is 400");
    h_resp_free(&r);
    buf_dispose(&q);
}

/* ---- events: one event, isolation, the operator ---- */

static void check_isolation(void)
{
    long long ev_a = h_db_int(&DB,
                              "SELECT id FROM events WHERE tenant_id = %lld AND field = 'comments'"
                              " AND entry_id = '" IG_A "'",
                              TA);
    struct h_resp r;
    get(&r, KEY_A, "/v1/events/%lld", ev_a);
    tap_is_int(r.status, 200, "a tenant reads its own event");
    struct json_doc doc;
    const char *why;
    bool ok = json_parse(&doc, r.body, r.len, JSON_DEFAULT_MAX_DEPTH, &why) == 0;
    if (ok) {
        int64_t v = 0;
        struct buf s;
        buf_init(&s);
        int p = json_get(&doc, 0, "payload");
        ok = p >= 0 && json_is_object(&doc, p) && json_get(&doc, p, "value") >= 0;
        tap_ok(ok, "payload is the JSON object itself, not a string");
        ok = json_int64(&doc, json_get(&doc, 0, "id"), &v) && v == ev_a &&
             json_int64(&doc, json_get(&doc, 0, "tenant_id"), &v) && v == TA &&
             json_int64(&doc, json_get(&doc, 0, "app_id"), &v) && v == APP_ID_A &&
             json_int64(&doc, json_get(&doc, 0, "delivery_id"), &v) && v > 0;
        tap_ok(ok, "id, tenant_id, app_id and delivery_id are the event's");
        static const char *const want[][2] = {{"object", "instagram"},
                                              {"field", "comments"},
                                              {"entry_id", IG_A},
                                              {"entry_time", "2026-03-10T11:32:25+00:00"}};
        for (size_t i = 0; i < 4; i++) {
            buf_reset(&s);
            int k = json_get(&doc, 0, want[i][0]);
            if (k >= 0)
                json_string_decode(&doc, k, &s);
            tap_is_str(s.data ? s.data : "", want[i][1], "the event's %s", want[i][0]);
        }
        buf_reset(&s);
        json_string_decode(&doc, json_get(&doc, 0, "received_at"), &s);
        char *rt =
            h_db_text(&DB, "SELECT to_json(received_at)#>>'{}' FROM events WHERE id = %lld", ev_a);
        tap_is_str(s.data, rt, "received_at as PostgreSQL writes it in UTC");
        free(rt);
        buf_dispose(&s);
        json_doc_dispose(&doc);
    } else {
        tap_ok(false, "the event is JSON: %s", r.body);
    }
    h_resp_free(&r);

    get(&r, KEY_B, "/v1/events/%lld", ev_a);
    tap_ok(r.status == 404 && strstr(r.body, "no event with this id") != NULL,
           "another tenant's event is 404");
    h_resp_free(&r);
    long long unrouted = h_db_int(&DB, "SELECT id FROM events WHERE tenant_id IS NULL");
    check_status(KEY_B, "/v1/events/999999999", 404, "not_found", "an unknown event is 404");
    char path[512];
    snprintf(path, sizeof(path), "/v1/events/%lld", unrouted);
    check_status(KEY_A, path, 404, "not_found", "an unrouted event is 404 for a tenant");
    check_status(H_ADMIN_TOKEN, path, 200, "\"tenant_id\": null",
                 "the operator reads an unrouted event");
    snprintf(path, sizeof(path), "/v1/events/%lld", ev_a);
    check_status(H_ADMIN_TOKEN, path, 200, "marie.dupont", "the operator reads a tenant's event");

    char where[128];
    snprintf(where, sizeof(where), "tenant_id = %lld", TB);
    check_list(KEY_B, "/v1/events?limit=2", where, false, "tenant B lists only its own events");
    snprintf(where, sizeof(where), "tenant_id = %lld AND field = 'comments'", TB);
    check_list(KEY_B, "/v1/events?field=comments", where, false,
               "tenant B's field filter stays in tenant B");
    char *c = urlenc("{\"value\":{\"from\":{\"username\":\"marie.dupont\"}}}");
    snprintf(path, sizeof(path), "/v1/events?contains=%s", c);
    free(c);
    snprintf(where, sizeof(where),
             "tenant_id = %lld AND payload @> '{\"value\":{\"from\":{\"username\":"
             "\"marie.dupont\"}}}'",
             TB);
    check_list(KEY_B, path, where, false, "contains stays in the tenant too");
    snprintf(where, sizeof(where), "tenant_id = %lld AND entry_id = '" IG_B "'", TB);
    check_list(KEY_B, "/v1/events?entry_id=" IG_B, where, false,
               "tenant B's entry_id filter finds its own copy of the batch");
    struct ids b = {0};
    int pages;
    walk(KEY_B, "/v1/events?limit=1000", &b, &pages);
    long long leaked = 0;
    for (size_t i = 0; i < b.n; i++)
        leaked += h_db_int(&DB,
                           "SELECT count(*) FROM events WHERE id = %lld AND"
                           " tenant_id IS DISTINCT FROM %lld",
                           b.v[i], TB);
    tap_ok(b.n > 0 && leaked == 0, "none of tenant B's %zu listed events is another's", b.n);
    free(b.v);

    check_list(H_ADMIN_TOKEN, "/v1/events?limit=5", "true", false,
               "the operator lists every event, unrouted ones too");
    snprintf(where, sizeof(where), "tenant_id = %lld", TA);
    snprintf(path, sizeof(path), "/v1/events?tenant=%lld", TA);
    check_list(H_ADMIN_TOKEN, path, where, false, "the operator's tenant=<id>");
    check_list(H_ADMIN_TOKEN, "/v1/events?tenant=none", "tenant_id IS NULL", false,
               "the operator's tenant=none lists the unrouted events");
    snprintf(where, sizeof(where), "tenant_id = %lld AND field = 'comments'", TB);
    snprintf(path, sizeof(path), "/v1/events?tenant=%lld&field=comments&order=asc", TB);
    check_list(H_ADMIN_TOKEN, path, where, true, "the operator's tenant and field combine");
    check_list(H_ADMIN_TOKEN, "/v1/events?field=comments&limit=3", "field = 'comments'", false,
               "the operator's field filter spans tenants");
}

/* ---- deliveries ---- */

/* The bytes of standard base64 (caller frees). */
static unsigned char *unbase64(const char *s, size_t *n)
{
    size_t len = strlen(s);
    unsigned char *out = malloc(len / 4 * 3 + 3);
    int k = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (k < 0) {
        free(out);
        return NULL;
    }
    while (len > 0 && s[len - 1] == '=') {
        len--;
        k--;
    }
    *n = (size_t)k;
    return out;
}

/* Checks delivery id in a list answer: body as text (or null) and base64. */
static void check_delivery_body(const char *answer, size_t alen, long long id, const char *sent,
                                size_t sent_len, bool is_text, const char *what)
{
    struct json_doc doc;
    const char *why;
    if (json_parse(&doc, answer, alen, JSON_DEFAULT_MAX_DEPTH, &why) != 0) {
        tap_ok(false, "%s: the answer is JSON (%s)", what, why);
        return;
    }
    int data = json_get(&doc, 0, "data"), row = -1;
    for (int i = 0, k = data + 1; data >= 0 && i < doc.toks[data].size;
         i++, k = json_next(&doc, k)) {
        int64_t v;
        if (json_int64(&doc, json_get(&doc, k, "id"), &v) && v == id)
            row = k;
    }
    tap_ok(row >= 0, "%s: the delivery is listed", what);
    if (row < 0) {
        json_doc_dispose(&doc);
        return;
    }
    struct buf s;
    buf_init(&s);
    int body = json_get(&doc, row, "body");
    if (is_text) {
        json_string_decode(&doc, body, &s);
        tap_ok(json_is_string(&doc, body) && s.len == sent_len &&
                   memcmp(s.data, sent, sent_len) == 0,
               "%s: body is the text sent, escaped and decoded back byte for byte", what);
    } else {
        tap_ok(body >= 0 && doc.toks[body].type == JSON_PRIMITIVE &&
                   doc.text[doc.toks[body].start] == 'n',
               "%s: body is null", what);
    }
    buf_reset(&s);
    json_string_decode(&doc, json_get(&doc, row, "body_base64"), &s);
    size_t n = 0;
    unsigned char *raw = s.data ? unbase64(s.data, &n) : NULL;
    tap_ok(raw != NULL && n == sent_len && memcmp(raw, sent, n) == 0,
           "%s: body_base64 decodes to the bytes sent", what);
    free(raw);
    buf_reset(&s);
    json_string_decode(&doc, json_get(&doc, row, "status"), &s);
    tap_is_str(s.data, "rejected", "%s: status", what);
    buf_reset(&s);
    int reason = json_get(&doc, row, "reject_reason");
    if (reason >= 0)
        json_string_decode(&doc, reason, &s);
    tap_ok(s.len > 0, "%s: reject_reason says why (%s)", what, s.data ? s.data : "");
    buf_dispose(&s);
    json_doc_dispose(&doc);
}

static char *sql_delivery_ids(const char *where, bool asc)
{
    return h_db_text(&DB,
                     "SELECT coalesce(string_agg(id::text, ',' ORDER BY received_at %s, id %s), '')"
                     " FROM deliveries WHERE %s",
                     asc ? "ASC" : "DESC", asc ? "ASC" : "DESC", where);
}

static void check_delivery_list(const char *path, const char *where, bool asc, const char *what)
{
    char *want = sql_delivery_ids(where, asc);
    struct ids got = {0};
    int pages;
    bool ok = walk(H_ADMIN_TOKEN, path, &got, &pages);
    char *g = ids_join(&got);
    ok = ok && want[0] != '\0' && strcmp(g, want) == 0;
    tap_ok(ok, "%s", what);
    if (!ok)
        tap_diag("GET %s\n  got:  %s\n  want: %s", path, g, want);
    free(g);
    free(want);
    free(got.v);
}

static void check_deliveries(void)
{
    struct h_resp r;
    get(&r, H_ADMIN_TOKEN, "/v1/deliveries?status=rejected");
    tap_is_int(r.status, 200, "the operator lists rejected deliveries");
    check_delivery_body(r.body, r.len, REJ_TEXT, REJ_TEXT_BODY, sizeof(REJ_TEXT_BODY) - 1, true,
                        "a rejected UTF-8 body");
    check_delivery_body(r.body, r.len, REJ_BINARY, REJ_BINARY_BODY, sizeof(REJ_BINARY_BODY) - 1,
                        false, "a rejected non-UTF-8 body");
    tap_ok(strstr(r.body, "\\\"quoted\\\" back\\\\slash\\nnew line\\t\\u0001") != NULL,
           "quotes, backslashes and control characters are escaped in body");
    h_resp_free(&r);

    check_delivery_list("/v1/deliveries", "true", false, "the operator lists every delivery");
    check_delivery_list("/v1/deliveries?limit=2&order=asc", "true", true,
                        "in pages of 2, oldest first");
    check_delivery_list("/v1/deliveries?status=rejected", "status = 'rejected'", false,
                        "status=rejected");
    check_delivery_list("/v1/deliveries?status=accepted&limit=3", "status = 'accepted'", false,
                        "status=accepted");
    char path[128], where[128];
    snprintf(path, sizeof(path), "/v1/deliveries?app_id=%lld&limit=1", APP_ID_B);
    snprintf(where, sizeof(where), "app_id = %lld", APP_ID_B);
    check_delivery_list(path, where, false, "app_id selects one app's deliveries");
    char *mid = h_db_text(&DB,
                          "SELECT to_char(received_at AT TIME ZONE 'UTC',"
                          " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM deliveries WHERE id = %lld",
                          REJ_TEXT);
    snprintf(path, sizeof(path), "/v1/deliveries?since=%s&app_id=%lld", mid, APP_ID_A);
    snprintf(where, sizeof(where),
             "app_id = %lld AND received_at >= (SELECT received_at FROM deliveries"
             " WHERE id = %lld)",
             APP_ID_A, REJ_TEXT);
    check_delivery_list(path, where, false, "since on deliveries, inclusive");
    snprintf(path, sizeof(path), "/v1/deliveries?until=%s&order=asc", mid);
    snprintf(where, sizeof(where),
             "received_at < (SELECT received_at FROM deliveries WHERE id = %lld)", REJ_TEXT);
    check_delivery_list(path, where, true, "until on deliveries, exclusive");
    free(mid);

    check_status(KEY_A, "/v1/deliveries", 404, "\"not_found\"", "a tenant key gets 404");
    check_status(H_ADMIN_TOKEN, "/v1/deliveries?status=lost", 400, "status", "status=lost is 400");
    check_status(H_ADMIN_TOKEN, "/v1/deliveries?tenant=1", 400, "tenant",
                 "an unknown parameter is 400");
    check_status(H_ADMIN_TOKEN, "/v1/deliveries?app_id=x", 400, "app_id", "app_id=x is 400");
    check_status(H_ADMIN_TOKEN, "/v1/deliveries?limit=1001", 400, "limit", "limit=1001 is 400");
    check_status(H_ADMIN_TOKEN, "/v1/deliveries?cursor=abc", 400, "cursor", "a bad cursor is 400");

    /* Five 2 MiB bodies: a page stops after 8 MiB of bodies, and goes on. */
    h_db_exec(&DB,
              "INSERT INTO deliveries (app_id, received_at, status, signature, item_count,"
              " body) SELECT 777777, now() - g * interval '1 second', 'accepted', 'sha256=00', 0,"
              " convert_to(repeat(chr(97 + g), 2 * 1024 * 1024), 'UTF8')"
              " FROM generate_series(1, 5) g");
    struct ids got = {0};
    char *next = NULL;
    get(&r, H_ADMIN_TOKEN, "/v1/deliveries?app_id=777777&limit=10");
    bool ok = r.status == 200 && parse_page(r.body, r.len, &got, &next);
    tap_ok(ok && got.n == 4 && next != NULL,
           "a page of big bodies stops at 4 of 5 (8 MiB) with a next_cursor (%zu rows, %zu bytes)",
           got.n, r.len);
    h_resp_free(&r);
    if (next != NULL) {
        get(&r, H_ADMIN_TOKEN, "/v1/deliveries?app_id=777777&limit=10&cursor=%s", next);
        free(next);
        next = NULL;
        ok = r.status == 200 && parse_page(r.body, r.len, &got, &next);
        h_resp_free(&r);
    }
    char *g = ids_join(&got);
    char *want = sql_delivery_ids("app_id = 777777", false);
    tap_ok(ok && next == NULL && strcmp(g, want) == 0, "the next page holds the fifth");
    free(g);
    free(want);
    free(next);
    free(got.v);
    h_db_exec(&DB, "DELETE FROM deliveries WHERE app_id = 777777");
}

/* ---- pagination over 10 000 events ---- */

static void seed_walk(void)
{
    /* ids in one order, times in another: groups of three share a received_at
     * (down to the microsecond), so only the id tie-break orders them. */
    h_db_exec(&DB,
              "INSERT INTO events (app_id, tenant_id, delivery_id, object, field, entry_id,"
              " received_at, dedup_key, payload)"
              " SELECT %d, %lld, 0, 'instagram', 'comments', 'walk',"
              "  timestamptz '2026-01-01 00:00:00.000001+00'"
              "   + ((g * 7919) %% %d / 3) * interval '1234567 microseconds',"
              "  convert_to('walk' || g, 'UTF8'), jsonb_build_object('g', g)"
              " FROM generate_series(1, %d) g",
              WALK_APP, TC, WALK_EVENTS, WALK_EVENTS);
    /* As autovacuum would soon: with the statistics of before the load the
     * planner expects a few rows of this tenant and sorts all of them for
     * each page (still correct, only slower). */
    h_db_exec(&DB, "ANALYZE events");
    tap_is_int(
        h_db_int(&DB,
                 "SELECT count(*) FROM (SELECT received_at FROM events WHERE tenant_id = %lld"
                 " GROUP BY 1 HAVING count(*) > 1) s",
                 TC),
        WALK_EVENTS / 3, "the walk's events share received_at in groups");
}

static void check_walks(void)
{
    char where[64];
    snprintf(where, sizeof(where), "tenant_id = %lld", TC);
    char *want_desc = sql_ids(where, false), *want_asc = sql_ids(where, true);
    static const int SIZES[] = {1, 7, 50, 333, 1000};
    for (size_t i = 0; i < sizeof(SIZES) / sizeof(SIZES[0]); i++) {
        for (int asc = 0; asc < 2; asc++) {
            char path[96];
            snprintf(path, sizeof(path), "/v1/events?limit=%d&order=%s", SIZES[i],
                     asc ? "asc" : "desc");
            struct ids got = {0};
            int pages;
            int64_t t0 = h_now_ms();
            bool ok = walk(KEY_C, path, &got, &pages);
            int64_t ms = h_now_ms() - t0;
            char *g = ids_join(&got);
            int want_pages = (WALK_EVENTS + SIZES[i] - 1) / SIZES[i];
            tap_ok(ok && strcmp(g, asc ? want_asc : want_desc) == 0 && pages == want_pages,
                   "pages of %d, %s: all %d events once each, in order, in %d pages (%lld ms)",
                   SIZES[i], asc ? "oldest first" : "newest first", WALK_EVENTS, pages,
                   (long long)ms);
            if (!ok || got.n != WALK_EVENTS)
                tap_diag("got %zu ids", got.n);
            free(g);
            free(got.v);
        }
    }
    free(want_desc);
    free(want_asc);
}

struct inserter {
    const char *url;
    long long tenant;
    volatile int stop;
    int inserted;
    char error[256];
};

/* Adds events "now" until told to stop: they are newer than any cursor. */
static void *insert_loop(void *arg)
{
    struct inserter *in = arg;
    PGconn *c = PQconnectdb(in->url);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(in->error, sizeof(in->error), "%s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    char tenant[24];
    snprintf(tenant, sizeof(tenant), "%lld", in->tenant);
    while (!__atomic_load_n(&in->stop, __ATOMIC_ACQUIRE)) {
        char n[24];
        snprintf(n, sizeof(n), "%d", __atomic_load_n(&in->inserted, __ATOMIC_ACQUIRE));
        const char *params[] = {tenant, n};
        PGresult *r = PQexecParams(
            c,
            "INSERT INTO events (app_id, tenant_id, delivery_id, object, field, entry_id,"
            " received_at, dedup_key, payload) VALUES (424243, $1, 0, 'instagram', 'comments',"
            " 'walk', now(), convert_to('new' || $2, 'UTF8'), '{}')",
            2, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(in->error, sizeof(in->error), "%s", PQresultErrorMessage(r));
            PQclear(r);
            break;
        }
        PQclear(r);
        __atomic_add_fetch(&in->inserted, 1, __ATOMIC_RELEASE);
        h_sleep_ms(1);
    }
    PQfinish(c);
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void check_walk_while_inserting(void)
{
    struct inserter in = {.url = DB.url, .tenant = TC};
    pthread_t th;
    if (pthread_create(&th, NULL, insert_loop, &in) != 0)
        tap_bail("pthread_create failed");
    /* Some new events exist before the walk starts, so the inserter is
     * known to be running (on a loaded machine it may take a while). */
    int64_t deadline = h_now_ms() + 20000;
    while (__atomic_load_n(&in.inserted, __ATOMIC_ACQUIRE) < 5 && h_now_ms() < deadline)
        h_sleep_ms(5);
    int before = __atomic_load_n(&in.inserted, __ATOMIC_ACQUIRE);
    struct ids got = {0};
    int pages;
    bool ok = walk(KEY_C, "/v1/events?limit=50", &got, &pages);
    int after = __atomic_load_n(&in.inserted, __ATOMIC_ACQUIRE);
    __atomic_store_n(&in.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    if (in.error[0] != '\0')
        tap_diag("inserter: %s", in.error);
    tap_ok(in.error[0] == '\0' && after > before,
           "events were added while the walk ran (%d during %d pages)", after - before, pages);

    qsort(got.v, got.n, sizeof(got.v[0]), cmp_ll);
    size_t dups = 0;
    for (size_t i = 1; i < got.n; i++)
        dups += got.v[i] == got.v[i - 1];
    tap_ok(ok && dups == 0, "no event appears twice in a walk with inserts (%zu ids)", got.n);
    /* The walk's originals (ids up to the last seeded: the new ones come
     * after), sorted, are exactly the 10 000 seeded. */
    long long last = h_db_int(&DB, "SELECT max(id) FROM events WHERE app_id = %d", WALK_APP);
    struct ids orig = {0};
    for (size_t i = 0; i < got.n; i++)
        if (got.v[i] <= last)
            ids_push(&orig, got.v[i]);
    char *g = ids_join(&orig);
    char *want = h_db_text(&DB,
                           "SELECT string_agg(id::text, ',' ORDER BY id) FROM events"
                           " WHERE app_id = %d",
                           WALK_APP);
    tap_ok(orig.n == WALK_EVENTS && strcmp(g, want) == 0,
           "every original event is seen exactly once (%zu of them)", orig.n);
    free(g);
    free(want);
    free(orig.v);
    free(got.v);
}

int main(void)
{
    h_db_create(&DB, "api_events");
    char *out = NULL;
    const char *migrate[] = {"migrate", NULL};
    if (h_run(&DB, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    const char *env[] = {"HUBBUB_APP_CACHE_TTL=100ms", "HUBBUB_API_RATE=1000000",
                         "HUBBUB_API_BURST=1000000", NULL};
    h_server_start(&S, &DB, env);

    setup();
    check_filters();
    check_accounts();
    check_bad_input();
    check_isolation();
    check_deliveries();
    seed_walk();
    check_walks();
    check_walk_while_inserting();

    char *log = h_server_log(&S);
    tap_ok(strstr(log, KEY_A) == NULL && strstr(log, SECRET_A) == NULL &&
               strstr(log, "marie.dupont") == NULL,
           "neither keys, secrets nor payloads appear in the log");
    free(log);
    tap_is_int(h_server_stop(&S, SIGTERM), 0, "SIGTERM stops the server with status 0");
    h_db_drop(&DB);
    return tap_done();
}
