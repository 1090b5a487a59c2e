/*
 * t_api_accounts.c - /v1/accounts: every route's happy path, every
 * validation the design names (the seed's field/login-type table included),
 * duplicates, tenant isolation, shared apps, the access token never stored or
 * shown in clear, and the routing of a shared app's early events to the
 * account created after them.
 *
 * JSON answers are read with PostgreSQL's jsonb operators on the test's own
 * connection, so the checks do not depend on how the server spaces its JSON.
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/secretbox.h"
#include "tests/integration/harness.h"

#define SHARED_META "1000000003"
#define SHARED_SECRET "shared-app-secret-0123456789"
/* Tokens with a middle part that appears nowhere else; the hint shows the last 4. */
#define TOKEN_A1 "EAAGqq1MIDDLEofTOKENa1zz9876"
#define TOKEN_A1_MIDDLE "MIDDLEofTOKENa1"
#define TOKEN_A2 "EAAGqq2MIDDLEofTOKENa2zz5432"
#define TOKEN_A2_MIDDLE "MIDDLEofTOKENa2"
#define TOKEN_B "IGQVJmiddleOFtokenBBxx1111"
#define TOKEN_B_MIDDLE "middleOFtokenBB"

static struct h_db db;
static struct h_server srv;
static char key_a[64], key_b[64];
static long long ta, tb;
static struct buf seen; /* every answer of the test, searched for tokens at the end */

/* Calls the API; returns the status and (if body) the answer (caller frees). */
static long api(const char *token, const char *method, const char *path, const char *json,
                char **body)
{
    struct h_resp r;
    h_api(&r, &srv, token, method, path, json);
    if (r.status == 0)
        tap_diag("%s %s: %s", method, path, r.error);
    buf_puts(&seen, r.body != NULL ? r.body : "");
    buf_puts(&seen, r.headers != NULL ? r.headers : "");
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return st;
}

/* The text at path ("{subscription,state}") of a JSON answer, or NULL for
 * JSON null or absent; "(not JSON)" when the answer is not JSON. Caller frees. */
static char *jget(const char *json, const char *path)
{
    const char *params[] = {json, path};
    PGresult *r =
        PQexecParams(db.conn, "SELECT $1::jsonb #>> $2::text[]", 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        tap_diag("not JSON: %.200s", json);
        PQclear(r);
        return strdup("(not JSON)");
    }
    char *out = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

/* Whether jget(json, path) equals want (NULL: is null or absent). */
static bool jis(const char *json, const char *path, const char *want, const char *what)
{
    char *got = jget(json, path);
    bool ok = want == NULL ? tap_ok(got == NULL, "%s (got %s)", what, got ? got : "null")
                           : tap_is_str(got != NULL ? got : "(null)", want, "%s", what);
    free(got);
    return ok;
}

static long long jnum(const char *json, const char *path)
{
    char *s = jget(json, path);
    long long v = s != NULL ? strtoll(s, NULL, 10) : -1;
    free(s);
    return v;
}

/* A query on the test's connection with text parameters: the first value as
 * a number (-1 for no row or NULL). */
static long long sql_num(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db.conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        tap_bail("%s: %s", sql, PQerrorMessage(db.conn));
    long long v =
        PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

/* POST /v1/accounts that must succeed: the new id (bails out otherwise). */
static long long create(const char *token, const char *json, char **body)
{
    char *b = NULL;
    long st = api(token, "POST", "/v1/accounts", json, &b);
    if (st != 201)
        tap_bail("creating an account: %ld %s (%s)", st, b, json);
    long long id = jnum(b, "{id}");
    if (body != NULL)
        *body = b;
    else
        free(b);
    return id;
}

/* A call that must be refused with a 422 naming field; message (may be NULL)
 * must be the error's whole message. */
static void expect_422(const char *token, const char *method, const char *path, const char *json,
                       const char *field, const char *message, const char *what)
{
    char *b = NULL;
    long st = api(token, method, path, json, &b);
    if (!tap_is_int(st, 422, "%s: 422", what))
        tap_diag("answer: %s", b);
    jis(b, "{error,code}", "validation_failed", what);
    jis(b, "{error,field}", field, what);
    if (message != NULL)
        jis(b, "{error,message}", message, what);
    free(b);
}

static void expect_create_422(const char *token, const char *json, const char *field,
                              const char *message, const char *what)
{
    expect_422(token, "POST", "/v1/accounts", json, field, message, what);
}

/* tmpl with each "@APP@" replaced by app, into out. */
static void with_app(char *out, size_t outsz, const char *tmpl, const char *app)
{
    size_t o = 0;
    for (const char *p = tmpl; *p != '\0' && o + 1 < outsz;) {
        if (strncmp(p, "@APP@", 5) == 0) {
            o += (size_t)snprintf(out + o, outsz - o, "%s", app);
            p += 5;
        } else {
            out[o++] = *p++;
        }
    }
    out[o < outsz ? o : outsz - 1] = '\0';
}

static long long app_create(const char *json)
{
    char *b = NULL;
    long st = api(H_ADMIN_TOKEN, "POST", "/v1/apps", json, &b);
    if (st != 201)
        tap_bail("creating an app (%s): %ld %s", json, st, b);
    long long id = jnum(b, "{id}");
    free(b);
    return id;
}

/* Whether the sealed token in the row opens to want with the account's
 * context: the worker must be able to use what we stored. */
static bool token_opens(long long id, const char *want)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT 'access_token:' || app_id || ':' || ig_id, access_token_sealed"
             " FROM accounts WHERE id = %lld",
             id);
    PGresult *r = PQexec(db.conn, sql);
    bool ok = false;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        struct secretbox sb;
        const char *why = NULL;
        struct buf out;
        buf_init(&out);
        secretbox_init(&sb);
        if (secretbox_load(&sb, h_master_key(), NULL, &why) == 0 &&
            secretbox_open(&sb, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), &out) == 0)
            ok = out.len == strlen(want) && memcmp(out.data, want, out.len) == 0;
        secretbox_dispose(&sb);
        buf_dispose(&out);
    }
    PQclear(r);
    return ok;
}

/* Sends a signed comments delivery for entry id entry to the shared app. */
static void deliver(const char *entry, int n)
{
    char body[512];
    int len = snprintf(body, sizeof(body),
                       "{\"object\":\"instagram\",\"entry\":[{\"id\":\"%s\",\"time\":1700000000,"
                       "\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"BF%d\","
                       "\"text\":\"early %d\"}}]}]}",
                       entry, n, n);
    struct h_resp r;
    h_post_signed(&r, &srv, SHARED_META, SHARED_SECRET, body, (size_t)len);
    if (r.status != 200)
        tap_bail("delivery for %s: %ld %s", entry, r.status, r.body ? r.body : r.error);
    h_resp_free(&r);
}

/* The tenant of the shared app's events for entry: -1 for NULL, -2 for none,
 * -3 when they disagree. */
static long long event_tenant(long long app, const char *entry)
{
    char a[24];
    snprintf(a, sizeof(a), "%lld", app);
    const char *params[] = {a, entry};
    return sql_num("SELECT CASE WHEN count(*) = 0 THEN -2"
                   " WHEN count(DISTINCT coalesce(tenant_id, -1)) > 1 THEN -3"
                   " ELSE coalesce(min(tenant_id), -1) END"
                   " FROM events WHERE app_id = $1 AND entry_id = $2",
                   2, params);
}

static void set_active(long long id)
{
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'active' WHERE id = %lld", id);
}

int main(void)
{
    buf_init(&seen);
    h_db_create(&db, "api_accounts");
    char *out = NULL;
    const char *migrate[] = {"migrate", NULL};
    if (h_run(&db, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    const char *env[] = {"HUBBUB_API_RATE=100000", "HUBBUB_API_BURST=100000", NULL};
    h_server_start(&srv, &db, env);

    ta = h_api_tenant(&srv, "acme", key_a);
    tb = h_api_tenant(&srv, "globex", key_b);
    char json[4096], path[256];
    char *b = NULL, *b2 = NULL;

    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1000000001\",\"app_secret\":\"app-a-secret-0123456789\","
             "\"verify_token\":\"verify-a-0123456789\",\"tenant_id\":%lld}",
             ta);
    long long app_a = app_create(json);
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1000000002\",\"app_secret\":\"app-b-secret-0123456789\","
             "\"verify_token\":\"verify-b-0123456789\",\"tenant_id\":%lld}",
             tb);
    long long app_b = app_create(json);
    long long app_s =
        app_create("{\"meta_app_id\":\"" SHARED_META "\",\"app_secret\":\"" SHARED_SECRET
                   "\",\"verify_token\":\"verify-shared-0123456789\"}");
    tap_is_int(sql_num("SELECT count(*) FROM apps WHERE tenant_id IS NULL", 0, NULL), 1,
               "the operator's app without tenant_id is shared");

    /* ---- create, as a tenant key ---- */
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000100\",\"username\":\"acme_ig\","
             "\"login_type\":\"instagram_login\",\"access_token\":\"" TOKEN_A1 "\","
             "\"subscribed_fields\":[\"comments\",\"messages\",\"messaging_optins\"]}",
             app_a);
    struct h_resp r;
    h_api(&r, &srv, key_a, "POST", "/v1/accounts", json);
    buf_puts(&seen, r.body != NULL ? r.body : "");
    tap_is_int(r.status, 201, "a tenant creates an account on its own app: 201");
    long long acc1 = jnum(r.body, "{id}");
    snprintf(path, sizeof(path), "location: /v1/accounts/%lld", acc1);
    tap_contains(r.headers, path, "the 201 has the account's Location");
    b = strdup(r.body != NULL ? r.body : "");
    h_resp_free(&r);
    tap_is_int(jnum(b, "{tenant_id}"), ta, "the account belongs to the key's tenant");
    tap_is_int(jnum(b, "{app_id}"), app_a, "app_id is our app id");
    jis(b, "{ig_id}", "17841400000000100", "ig_id is a string, as sent");
    jis(b, "{page_id}", NULL, "page_id is null when not sent");
    jis(b, "{username}", "acme_ig", "username as sent");
    jis(b, "{login_type}", "instagram_login", "login_type as sent");
    jis(b, "{access_token_hint}",
        "\xe2\x80\xa6"
        "9876",
        "the hint is … and the last 4 characters");
    jis(b, "{subscribed_fields}", "[\"comments\", \"messages\", \"messaging_optins\"]",
        "subscribed_fields in the order sent (messaging_optins with instagram_login)");
    jis(b, "{subscription,state}", "pending", "a new account's subscription is pending");
    jis(b, "{subscription,fields}", "[]", "subscription.fields is an empty array");
    jis(b, "{subscription,last_error}", NULL, "subscription.last_error is null");
    jis(b, "{subscription,last_checked_at}", NULL, "subscription.last_checked_at is null");
    char *created = jget(b, "{created_at}"), *updated = jget(b, "{updated_at}");
    tap_ok(created != NULL && updated != NULL, "created_at and updated_at are set");
    free(created);
    free(updated);
    jis(b, "{access_token}", NULL, "the answer has no access_token member");
    tap_ok(token_opens(acc1, TOKEN_A1),
           "the stored token opens with the master key for access_token:<app>:<ig_id>");
    free(b);

    /* facebook_login: page_id required, story_insights allowed; tenant_id may be its own. */
    snprintf(json, sizeof(json),
             "{\"tenant_id\":%lld,\"app_id\":%lld,\"ig_id\":\"17841400000000200\","
             "\"page_id\":\"500000000000200\",\"login_type\":\"facebook_login\","
             "\"access_token\":\"" TOKEN_A2 "\","
             "\"subscribed_fields\":[\"story_insights\",\"mentions\",\"comments\"]}",
             ta, app_a);
    long long acc2 = create(key_a, json, &b);
    tap_ok(acc2 > acc1, "a tenant may name its own tenant_id; story_insights with facebook_login");
    jis(b, "{page_id}", "500000000000200", "page_id as sent");
    jis(b, "{username}", NULL, "username is null when not sent");
    free(b);

    /* messenger_platform, by the operator for tenant A, with the fields only it has. */
    snprintf(json, sizeof(json),
             "{\"tenant_id\":%lld,\"app_id\":%lld,\"ig_id\":\"17841400000000300\","
             "\"page_id\":\"500000000000300\",\"login_type\":\"messenger_platform\","
             "\"access_token\":\"short\",\"subscribed_fields\":[\"messages\","
             "\"messaging_policy_enforcement\",\"response_feedback\"]}",
             ta, app_a);
    long long acc3 = create(H_ADMIN_TOKEN, json, &b);
    tap_is_int(jnum(b, "{tenant_id}"), ta, "the operator creates an account for the named tenant");
    jis(b, "{access_token_hint}", "", "a token under 12 characters gets no hint");
    free(b);

    /* An empty field list is fine. */
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000400\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"tok-400-abcdefghijk\",\"subscribed_fields\":[]}",
             app_a);
    long long acc4 = create(key_a, json, &b);
    jis(b, "{subscribed_fields}", "[]", "subscribed_fields may be empty");
    free(b);

    /* ---- read ---- */
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc1);
    tap_is_int(api(key_a, "GET", path, NULL, &b), 200, "GET of an own account: 200");
    tap_is_int(jnum(b, "{id}"), acc1, "GET returns that account");
    jis(b, "{subscribed_fields}", "[\"comments\", \"messages\", \"messaging_optins\"]",
        "GET shows the fields");
    free(b);
    tap_is_int(api(H_ADMIN_TOKEN, "GET", path, NULL, &b), 200, "the operator GETs any account");
    free(b);
    tap_is_int(api(key_a, "GET", "/v1/accounts/999999", NULL, &b), 404,
               "GET of a missing account: 404");
    jis(b, "{error,code}", "not_found", "the 404 is not_found");
    free(b);

    tap_is_int(api(key_a, "GET", "/v1/accounts", NULL, &b), 200, "the list: 200");
    char want[256];
    snprintf(want, sizeof(want), "%lld", acc1);
    jis(b, "{data,0,id}", want, "the list is in id order");
    tap_is_int(jnum(b, "{data,3,id}"), acc4, "the list holds the tenant's 4 accounts");
    jis(b, "{data,4}", NULL, "and no more");
    jis(b, "{next_cursor}", NULL, "a complete list has no next_cursor");
    free(b);

    tap_is_int(api(key_a, "GET", "/v1/accounts?limit=3", NULL, &b), 200, "limit=3: 200");
    tap_is_int(jnum(b, "{data,2,id}"), acc3, "limit=3 gives the first 3");
    jis(b, "{data,3}", NULL, "and only 3");
    char *cursor = jget(b, "{next_cursor}");
    tap_ok(cursor != NULL, "a cut list has a next_cursor");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts?limit=3&cursor=%s", cursor ? cursor : "");
    free(cursor);
    tap_is_int(api(key_a, "GET", path, NULL, &b), 200, "the next page: 200");
    tap_is_int(jnum(b, "{data,0,id}"), acc4, "the next page starts after the cursor");
    jis(b, "{data,1}", NULL, "the next page holds the rest");
    jis(b, "{next_cursor}", NULL, "the last page has no next_cursor");
    free(b);
    tap_is_int(api(key_a, "GET", "/v1/accounts?cursor=nonsense", NULL, NULL), 400,
               "a bad cursor: 400");
    tap_is_int(api(key_a, "GET", "/v1/accounts?app_id=x1", NULL, NULL), 400,
               "a malformed app_id filter: 400");
    tap_is_int(api(H_ADMIN_TOKEN, "GET", "/v1/accounts?tenant_id=0", NULL, NULL), 400,
               "a malformed tenant_id filter: 400");

    /* ---- validation of create ---- */
    long long before = sql_num("SELECT count(*) FROM accounts", 0, NULL);
#define BASE_IG "\"ig_id\":\"17841400000000999\",\"login_type\":\"instagram_login\""
#define BASE_TOKEN "\"access_token\":\"tok-validation-0123\""
#define BASE_FIELDS "\"subscribed_fields\":[\"comments\"]"
    char app[64];
    snprintf(app, sizeof(app), "\"app_id\":%lld", app_a);
    struct {
        const char *members; /* @APP@: "app_id":N */
        const char *field, *message, *what;
    } bad[] = {
        {"{@APP@," BASE_IG "," BASE_TOKEN "," BASE_FIELDS ",\"foo\":1}", "foo", NULL,
         "an unknown member"},
        {"{" BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", "app_id", "app_id is required",
         "a missing app_id"},
        {"{\"app_id\":\"1\"," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", "app_id", NULL,
         "app_id as a string"},
        {"{\"app_id\":0," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", "app_id", NULL, "app_id 0"},
        {"{\"app_id\":1.5," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", "app_id", NULL,
         "a fractional app_id"},
        {"{\"app_id\":999999," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", "app_id",
         "no app with this id", "an app that does not exist"},
        {"{@APP@,\"login_type\":\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}", "ig_id",
         "ig_id is required", "a missing ig_id"},
        {"{@APP@,\"ig_id\":\"1784a\",\"login_type\":\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS
         "}",
         "ig_id", NULL, "an ig_id with a letter"},
        {"{@APP@,\"ig_id\":\"\",\"login_type\":\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}",
         "ig_id", NULL, "an empty ig_id"},
        {"{@APP@,\"ig_id\":\"123456789012345678901234567890123\",\"login_type\":\"instagram_"
         "login\","
         "" BASE_TOKEN "," BASE_FIELDS "}",
         "ig_id", NULL, "an ig_id of 33 digits"},
        {"{@APP@,\"ig_id\":17841400000000999,\"login_type\":\"instagram_login\"," BASE_TOKEN
         "," BASE_FIELDS "}",
         "ig_id", NULL, "ig_id as a number"},
        {"{@APP@," BASE_IG ",\"page_id\":\"12x\"," BASE_TOKEN "," BASE_FIELDS "}", "page_id", NULL,
         "a page_id with a letter"},
        {"{@APP@," BASE_IG ",\"username\":\"\"," BASE_TOKEN "," BASE_FIELDS "}", "username", NULL,
         "an empty username"},
        {"{@APP@,\"ig_id\":\"17841400000000999\"," BASE_TOKEN "," BASE_FIELDS "}", "login_type",
         "login_type is required", "a missing login_type"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"login_type\":\"instagram\"," BASE_TOKEN
         "," BASE_FIELDS "}",
         "login_type", NULL, "an unknown login_type"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"login_type\":\"Instagram_Login\"," BASE_TOKEN
         "," BASE_FIELDS "}",
         "login_type", NULL, "login_type in the wrong case"},
        {"{@APP@," BASE_IG "," BASE_FIELDS "}", "access_token", "access_token is required",
         "a missing access_token"},
        {"{@APP@," BASE_IG ",\"access_token\":\"\"," BASE_FIELDS "}", "access_token", NULL,
         "an empty access_token"},
        {"{@APP@," BASE_IG ",\"access_token\":\"abc def\"," BASE_FIELDS "}", "access_token", NULL,
         "an access_token with a space"},
        {"{@APP@," BASE_IG ",\"access_token\":\"abc\\ndef\"," BASE_FIELDS "}", "access_token", NULL,
         "an access_token with a newline"},
        {"{@APP@," BASE_IG ",\"access_token\":\"abc\\u00e9def\"," BASE_FIELDS "}", "access_token",
         NULL, "an access_token with a non-ASCII character"},
        {"{@APP@," BASE_IG ",\"access_token\":12345," BASE_FIELDS "}", "access_token", NULL,
         "an access_token that is a number"},
        {"{@APP@," BASE_IG "," BASE_TOKEN "}", "subscribed_fields", NULL,
         "a missing subscribed_fields"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":\"comments\"}",
         "subscribed_fields", NULL, "subscribed_fields as a string"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[1]}", "subscribed_fields", NULL,
         "subscribed_fields holding a number"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"comments\",\"foo\"]}",
         "subscribed_fields", "subscribed_fields: \"foo\" is not a known Instagram webhook field",
         "an unknown field is named"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"Comments\"]}",
         "subscribed_fields",
         "subscribed_fields: \"Comments\" is not a known Instagram webhook field",
         "field names are case-sensitive"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"comments\",\"comments\"]}",
         "subscribed_fields", "subscribed_fields: \"comments\" is listed more than once",
         "a duplicated field"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"story_insights\"]}",
         "subscribed_fields", "story_insights is only available with facebook_login",
         "story_insights with instagram_login"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"page_id\":\"5\",\"login_type\":"
         "\"messenger_platform\"," BASE_TOKEN ",\"subscribed_fields\":[\"story_insights\"]}",
         "subscribed_fields", "story_insights is only available with facebook_login",
         "story_insights with messenger_platform"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"page_id\":\"5\",\"login_type\":"
         "\"facebook_login\"," BASE_TOKEN ",\"subscribed_fields\":[\"messaging_optins\"]}",
         "subscribed_fields", "messaging_optins is only available with instagram_login",
         "messaging_optins with facebook_login"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"page_id\":\"5\",\"login_type\":"
         "\"messenger_platform\"," BASE_TOKEN ",\"subscribed_fields\":[\"messaging_optins\"]}",
         "subscribed_fields", "messaging_optins is only available with instagram_login",
         "messaging_optins with messenger_platform"},
        {"{@APP@," BASE_IG "," BASE_TOKEN
         ",\"subscribed_fields\":[\"messaging_policy_enforcement\"]}",
         "subscribed_fields",
         "messaging_policy_enforcement is only available with messenger_platform",
         "messaging_policy_enforcement with instagram_login"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"page_id\":\"5\",\"login_type\":"
         "\"facebook_login\"," BASE_TOKEN ",\"subscribed_fields\":[\"response_feedback\"]}",
         "subscribed_fields", "response_feedback is only available with messenger_platform",
         "response_feedback with facebook_login"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"response_feedback\"]}",
         "subscribed_fields", "response_feedback is only available with messenger_platform",
         "response_feedback with instagram_login"},
        {"{@APP@," BASE_IG "," BASE_TOKEN ",\"subscribed_fields\":[\"mentions\"]}",
         "subscribed_fields",
         "mentions is not a field of its own with instagram_login: it arrives with comments",
         "mentions with instagram_login"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"login_type\":\"facebook_login\"," BASE_TOKEN
         "," BASE_FIELDS "}",
         "page_id", "page_id is required for facebook_login", "facebook_login without page_id"},
        {"{@APP@,\"ig_id\":\"17841400000000999\",\"page_id\":null,\"login_type\":"
         "\"messenger_platform\"," BASE_TOKEN ",\"subscribed_fields\":[\"messages\"]}",
         "page_id", "page_id is required for messenger_platform",
         "messenger_platform with a null page_id"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        with_app(json, sizeof(json), bad[i].members, app);
        expect_create_422(key_a, json, bad[i].field, bad[i].message, bad[i].what);
    }
    /* Sizes. */
    char big[2600];
    snprintf(json, sizeof(json),
             "{%s," BASE_IG "," BASE_TOKEN "," BASE_FIELDS ",\"username\":\"%0201d\"}", app, 0);
    expect_create_422(key_a, json, "username", NULL, "a username of 201 bytes");
    memset(big, 'A', 2049);
    big[2049] = '\0';
    snprintf(json, sizeof(json), "{%s," BASE_IG ",\"access_token\":\"%s\"," BASE_FIELDS "}", app,
             big);
    expect_create_422(key_a, json, "access_token", NULL, "an access_token of 2049 bytes");
    big[2048] = '\0';
    snprintf(json, sizeof(json),
             "{%s,\"ig_id\":\"17841400000000500\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"%s\"," BASE_FIELDS ",\"username\":\"%0200d\"}",
             app, big, 0);
    long long acc5 = create(key_a, json, NULL);
    tap_ok(acc5 > 0, "a 2048-byte access_token and a 200-byte username are accepted");

    /* Tenants and apps. */
    snprintf(json, sizeof(json),
             "{\"tenant_id\":%lld,%s," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", tb, app);
    expect_create_422(key_a, json, "tenant_id", NULL, "a tenant key naming another tenant");
    snprintf(json, sizeof(json), "{%s," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", app);
    expect_create_422(H_ADMIN_TOKEN, json, "tenant_id", NULL, "the operator without tenant_id");
    snprintf(json, sizeof(json),
             "{\"tenant_id\":999999,%s," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", app);
    expect_create_422(H_ADMIN_TOKEN, json, "tenant_id", "no tenant with this id",
                      "the operator naming a missing tenant");
    snprintf(json, sizeof(json),
             "{\"tenant_id\":%lld,\"app_id\":%lld," BASE_IG "," BASE_TOKEN "," BASE_FIELDS "}", ta,
             app_b);
    expect_create_422(H_ADMIN_TOKEN, json, "app_id", NULL,
                      "the operator attaching tenant A's account to B's app");
    tap_is_int(sql_num("SELECT count(*) FROM accounts", 0, NULL), before + 1,
               "no refused request created an account");
    tap_is_int(api(key_a, "POST", "/v1/accounts", "{\"app_id\":", NULL), 400,
               "malformed JSON: 400");
    tap_is_int(api(key_a, "POST", "/v1/accounts", "[]", NULL), 400,
               "a body that is not an object: 400");
    tap_is_int(api(NULL, "POST", "/v1/accounts", "{}", NULL), 401, "no key: 401");

    /* ---- duplicates ---- */
    snprintf(json, sizeof(json),
             "{%s,\"ig_id\":\"17841400000000100\",\"login_type\":\"instagram_login\"," BASE_TOKEN
             "," BASE_FIELDS "}",
             app);
    tap_is_int(api(key_a, "POST", "/v1/accounts", json, &b), 409,
               "the same ig_id on the same app: 409");
    jis(b, "{error,code}", "conflict", "the 409 is a conflict");
    free(b);
    snprintf(json, sizeof(json),
             "{%s,\"ig_id\":\"17841400000000201\",\"page_id\":\"500000000000200\","
             "\"login_type\":\"facebook_login\"," BASE_TOKEN "," BASE_FIELDS "}",
             app);
    tap_is_int(api(key_a, "POST", "/v1/accounts", json, NULL), 409,
               "the same page_id on the same app: 409");
    snprintf(json, sizeof(json),
             "{\"tenant_id\":%lld,\"app_id\":%lld,\"ig_id\":\"17841400000000100\","
             "\"login_type\":\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}",
             tb, app_b);
    long long acc_b = create(H_ADMIN_TOKEN, json, NULL);
    tap_ok(acc_b > 0, "the same ig_id on another app is fine");

    /* ---- update ---- */
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc1);
    set_active(acc1);
    h_db_exec(&db, "UPDATE accounts SET updated_at = now() - interval '1 hour' WHERE id = %lld",
              acc1);
    tap_is_int(api(key_a, "PATCH", path, "{\"username\":\"acme_renamed\",\"page_id\":\"700\"}", &b),
               200, "PATCH username and page_id: 200");
    jis(b, "{username}", "acme_renamed", "the username changed");
    jis(b, "{page_id}", "700", "the page_id changed");
    jis(b, "{subscription,state}", "active", "changing neither token nor fields keeps the state");
    jis(b, "{access_token_hint}",
        "\xe2\x80\xa6"
        "9876",
        "the token is unchanged");
    snprintf(want, sizeof(want), "%lld", acc1);
    {
        const char *p[] = {want};
        tap_is_int(sql_num("SELECT count(*) FROM accounts WHERE id = $1"
                           " AND updated_at > now() - interval '1 minute'",
                           1, p),
                   1, "updated_at is now");
    }
    free(b);
    tap_is_int(api(key_a, "PATCH", path, "{\"username\":null,\"page_id\":null}", &b), 200,
               "PATCH with nulls: 200");
    jis(b, "{username}", NULL, "a null username clears it");
    jis(b, "{page_id}", NULL, "a null page_id clears it (instagram_login needs none)");
    free(b);
    tap_is_int(api(key_a, "PATCH", path, "{\"access_token\":\"" TOKEN_A1 "NEW1\"}", &b), 200,
               "PATCH access_token: 200");
    jis(b, "{access_token_hint}",
        "\xe2\x80\xa6"
        "NEW1",
        "the hint follows the new token");
    jis(b, "{subscription,state}", "pending", "a new token sets the state back to pending");
    free(b);
    tap_ok(token_opens(acc1, TOKEN_A1 "NEW1"), "the new token is sealed for the account");
    set_active(acc1);
    tap_is_int(api(key_a, "PATCH", path, "{\"subscribed_fields\":[\"live_comments\"]}", &b), 200,
               "PATCH subscribed_fields: 200");
    jis(b, "{subscribed_fields}", "[\"live_comments\"]", "the fields were replaced");
    jis(b, "{subscription,state}", "pending", "new fields set the state back to pending");
    free(b);
    tap_is_int(api(key_a, "PATCH", path, "{}", &b), 200, "an empty PATCH: 200");
    jis(b, "{subscribed_fields}", "[\"live_comments\"]", "an empty PATCH changes nothing");
    free(b);

    const char *immutable[] = {"app_id", "ig_id", "login_type", "tenant_id"};
    const char *values[] = {"1", "\"17841400000000100\"", "\"instagram_login\"", "1"};
    for (int i = 0; i < 4; i++) {
        char msg[64], what[96];
        snprintf(json, sizeof(json), "{\"%s\":%s}", immutable[i], values[i]);
        snprintf(msg, sizeof(msg), "%s cannot be changed", immutable[i]);
        snprintf(what, sizeof(what), "PATCH of %s", immutable[i]);
        expect_422(key_a, "PATCH", path, json, immutable[i], msg, what);
    }
    expect_422(key_a, "PATCH", path, "{\"id\":5}", "id", NULL, "PATCH of an unknown member");
    expect_422(key_a, "PATCH", path, "{\"subscribed_fields\":[\"story_insights\"]}",
               "subscribed_fields", "story_insights is only available with facebook_login",
               "PATCH checks fields against the account's login type");
    expect_422(key_a, "PATCH", path, "{\"subscribed_fields\":[\"nope\"]}", "subscribed_fields",
               "subscribed_fields: \"nope\" is not a known Instagram webhook field",
               "PATCH names an unknown field");
    expect_422(key_a, "PATCH", path, "{\"access_token\":\"\"}", "access_token", NULL,
               "PATCH of an empty access_token");
    expect_422(key_a, "PATCH", path, "{\"access_token\":null}", "access_token", NULL,
               "PATCH of a null access_token");
    expect_422(key_a, "PATCH", path, "{\"username\":\"\"}", "username", NULL,
               "PATCH of an empty username");
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc2);
    expect_422(key_a, "PATCH", path, "{\"page_id\":null}", "page_id",
               "page_id is required for facebook_login",
               "PATCH cannot clear the page_id of a facebook_login account");
    tap_is_int(api(key_a, "PATCH", path, "{\"page_id\":\"500000000000300\"}", NULL), 409,
               "PATCH to a page_id another account of the app has: 409");
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc1);
    tap_is_int(api(key_a, "GET", path, NULL, &b), 200, "GET after the refused PATCHes");
    jis(b, "{subscribed_fields}", "[\"live_comments\"]", "refused PATCHes changed nothing");
    jis(b, "{access_token_hint}",
        "\xe2\x80\xa6"
        "NEW1",
        "refused PATCHes kept the token");
    free(b);
    tap_is_int(api(key_a, "PATCH", "/v1/accounts/999999", "{\"username\":\"x\"}", NULL), 404,
               "PATCH of a missing account: 404");

    /* ---- PUT subscribed_fields ---- */
    snprintf(path, sizeof(path), "/v1/accounts/%lld/subscribed_fields", acc2);
    set_active(acc2);
    tap_is_int(
        api(key_a, "PUT", path, "{\"subscribed_fields\":[\"comments\",\"story_insights\"]}", &b),
        200, "PUT subscribed_fields: 200");
    jis(b, "{subscribed_fields}", "[\"comments\", \"story_insights\"]", "PUT replaces the fields");
    jis(b, "{subscription,state}", "pending", "PUT sets the state back to pending");
    tap_is_int(jnum(b, "{id}"), acc2, "PUT answers with the account");
    free(b);
    tap_is_int(api(key_a, "PUT", path, "{\"subscribed_fields\":[]}", &b), 200,
               "PUT of an empty list: 200");
    jis(b, "{subscribed_fields}", "[]", "PUT may empty the fields");
    free(b);
    expect_422(key_a, "PUT", path, "{\"subscribed_fields\":[\"messages\"]}", "subscribed_fields",
               "messages is only available with instagram_login and messenger_platform",
               "PUT checks fields against the login type");
    expect_422(key_a, "PUT", path, "{\"subscribed_fields\":[\"foo\"]}", "subscribed_fields",
               "subscribed_fields: \"foo\" is not a known Instagram webhook field",
               "PUT names an unknown field");
    expect_422(key_a, "PUT", path, "{\"subscribed_fields\":[\"comments\",\"comments\"]}",
               "subscribed_fields", NULL, "PUT refuses a duplicate");
    expect_422(key_a, "PUT", path, "{}", "subscribed_fields", NULL, "PUT without the list");
    expect_422(key_a, "PUT", path, "{\"subscribed_fields\":[],\"username\":\"x\"}", "username",
               NULL, "PUT with another member");
    tap_is_int(api(key_a, "PUT", "/v1/accounts/999999/subscribed_fields",
                   "{\"subscribed_fields\":[]}", NULL),
               404, "PUT on a missing account: 404");

    /* ---- isolation ---- */
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc1);
    tap_is_int(api(key_b, "GET", path, NULL, &b), 404, "B's GET of A's account: 404");
    jis(b, "{error,message}", "no account with this id", "the same 404 as a missing account");
    free(b);
    tap_is_int(api(key_b, "PATCH", path, "{\"username\":\"stolen\"}", NULL), 404,
               "B's PATCH of A's account: 404");
    tap_is_int(api(key_b, "PATCH", path, "{\"subscribed_fields\":[\"story_insights\"]}", NULL), 404,
               "B's invalid PATCH of A's account: 404, not a 422 about A's login type");
    tap_is_int(api(key_b, "DELETE", path, NULL, NULL), 404, "B's DELETE of A's account: 404");
    snprintf(path, sizeof(path), "/v1/accounts/%lld/subscribed_fields", acc1);
    tap_is_int(api(key_b, "PUT", path, "{\"subscribed_fields\":[]}", NULL), 404,
               "B's PUT of A's fields: 404");
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc1);
    tap_is_int(api(key_a, "GET", path, NULL, &b), 200, "A's account is still there");
    jis(b, "{username}", NULL, "B changed nothing of it");
    jis(b, "{subscribed_fields}", "[\"live_comments\"]", "B changed none of its fields");
    free(b);

    tap_is_int(api(key_b, "GET", "/v1/accounts", NULL, &b), 200, "B's list: 200");
    {
        const char *p[] = {b};
        tap_is_int(sql_num("SELECT count(*) FROM jsonb_array_elements($1::jsonb->'data') e", 1, p),
                   1, "B's list holds only B's one account");
        free(b);
    }
    snprintf(path, sizeof(path), "/v1/accounts?tenant_id=%lld", ta);
    tap_is_int(api(key_b, "GET", path, NULL, &b), 200, "B's list filtered by A's tenant: 200");
    jis(b, "{data,0}", NULL, "B filtering by A's tenant sees nothing");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts?app_id=%lld", app_a);
    tap_is_int(api(key_b, "GET", path, NULL, &b), 200, "B's list filtered by A's app: 200");
    jis(b, "{data,0}", NULL, "B filtering by A's app sees nothing");
    free(b);
    tap_is_int(api(key_a, "GET", path, NULL, &b), 200, "A's list filtered by its app: 200");
    tap_is_int(jnum(b, "{data,4,id}"), acc5, "A's app has A's 5 accounts");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts?tenant_id=%lld", tb);
    tap_is_int(api(H_ADMIN_TOKEN, "GET", path, NULL, &b), 200,
               "the operator's list by tenant: 200");
    tap_is_int(jnum(b, "{data,0,id}"), acc_b, "the operator filters by tenant");
    jis(b, "{data,1}", NULL, "only that tenant's accounts");
    free(b);
    tap_is_int(api(H_ADMIN_TOKEN, "GET", "/v1/accounts", NULL, &b), 200,
               "the operator's list: 200");
    tap_is_int(jnum(b, "{data,5,id}"), acc_b, "the operator sees every tenant's accounts");
    free(b);

    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000800\",\"login_type\":\"instagram_login\","
             "" BASE_TOKEN "," BASE_FIELDS "}",
             app_a);
    expect_422(key_b, "POST", "/v1/accounts", json, "app_id", "no app with this id",
               "B cannot attach an account to A's app");
    snprintf(
        json, sizeof(json),
        "{\"app_id\":999999,\"ig_id\":\"17841400000000800\",\"login_type\":\"instagram_login\","
        "" BASE_TOKEN "," BASE_FIELDS "}");
    api(key_b, "POST", "/v1/accounts", json, &b);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000800\",\"login_type\":\"instagram_login\","
             "" BASE_TOKEN "," BASE_FIELDS "}",
             app_a);
    api(key_b, "POST", "/v1/accounts", json, &b2);
    tap_is_str(b2, b, "A's app and a missing app get the same answer");
    free(b);
    free(b2);

    /* ---- shared app and backfill ---- */
    /* Events of the shared app before any account: no tenant. */
    deliver("17841400000000900", 1); /* B's account-to-be, by ig_id */
    deliver("500000000000900", 2);   /* its Page */
    deliver("17841400000000901", 3); /* nobody's */
    deliver("500000000000901", 4);   /* a Page added later by PATCH */
    tap_is_int(event_tenant(app_s, "17841400000000900"), -1,
               "an event of a shared app without an account has tenant_id NULL");
    tap_is_int(event_tenant(app_s, "500000000000900"), -1, "so has the Page's event");
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000900\",\"page_id\":\"500000000000900\","
             "\"login_type\":\"facebook_login\",\"access_token\":\"" TOKEN_B "\","
             "\"subscribed_fields\":[\"comments\"]}",
             app_s);
    long long acc_s = create(key_b, json, &b);
    tap_is_int(jnum(b, "{app_id}"), app_s, "a tenant attaches an account to a shared app");
    tap_is_int(jnum(b, "{tenant_id}"), tb, "the account is the tenant's");
    free(b);
    tap_ok(token_opens(acc_s, TOKEN_B), "the shared app's account token is sealed for it");
    {
        const char *p[] = {TOKEN_B_MIDDLE};
        tap_is_int(sql_num("SELECT count(*) FROM accounts a WHERE strpos(a::text, $1) > 0", 1, p),
                   0, "token 3 is in no column of accounts while it exists");
    }
    tap_is_int(event_tenant(app_s, "17841400000000900"), tb,
               "creating the account routes the earlier events of its ig_id to its tenant");
    tap_is_int(event_tenant(app_s, "500000000000900"), tb, "and the earlier events of its page_id");
    tap_is_int(event_tenant(app_s, "17841400000000901"), -1, "other entries' events stay unrouted");
    tap_is_int(event_tenant(app_s, "500000000000901"), -1, "including the later Page's");
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc_s);
    tap_is_int(api(key_b, "PATCH", path, "{\"page_id\":\"500000000000901\"}", NULL), 200,
               "PATCH of the page_id: 200");
    tap_is_int(event_tenant(app_s, "500000000000901"), tb,
               "a new page_id routes that Page's earlier events");
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000900\",\"login_type\":\"instagram_login\","
             "" BASE_TOKEN "," BASE_FIELDS "}",
             app_s);
    tap_is_int(api(key_a, "POST", "/v1/accounts", json, NULL), 409,
               "another tenant cannot take the same ig_id on the shared app: 409");
    /* Routing matches entry.id against ig_id or page_id, oldest account first:
     * an id one account has as either must be no other account's of the app. */
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000902\",\"page_id\":\"17841400000000900\","
             "\"login_type\":\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}",
             app_s);
    tap_is_int(api(key_a, "POST", "/v1/accounts", json, NULL), 409,
               "another tenant cannot take B's ig_id as its page_id on the shared app: 409");
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"500000000000901\",\"login_type\":\"instagram_login\","
             "" BASE_TOKEN "," BASE_FIELDS "}",
             app_s);
    tap_is_int(api(key_a, "POST", "/v1/accounts", json, NULL), 409,
               "another tenant cannot take B's page_id as its ig_id on the shared app: 409");
    {
        /* A's account older than B's: taking B's ig_id as its page_id by PATCH
         * would route B's events to A. */
        char pa[64], *ba = NULL;
        snprintf(json, sizeof(json),
                 "{\"app_id\":%lld,\"ig_id\":\"17841400000000903\",\"login_type\":"
                 "\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}",
                 app_s);
        long long acc_old = create(key_a, json, &ba);
        free(ba);
        snprintf(json, sizeof(json),
                 "{\"app_id\":%lld,\"ig_id\":\"17841400000000904\",\"login_type\":"
                 "\"instagram_login\"," BASE_TOKEN "," BASE_FIELDS "}",
                 app_s);
        long long acc_new = create(key_b, json, &ba);
        free(ba);
        snprintf(pa, sizeof(pa), "/v1/accounts/%lld", acc_old);
        tap_is_int(api(key_a, "PATCH", pa, "{\"page_id\":\"17841400000000904\"}", NULL), 409,
                   "PATCH to a page_id that is another account's ig_id on the app: 409");
        deliver("17841400000000904", 5);
        tap_is_int(event_tenant(app_s, "17841400000000904"), tb,
                   "B's events stay B's after A's attempt");
        tap_is_int(api(key_a, "DELETE", pa, NULL, NULL), 204, "(A's older account deleted)");
        snprintf(pa, sizeof(pa), "/v1/accounts/%lld", acc_new);
        tap_is_int(api(key_b, "DELETE", pa, NULL, NULL), 204, "(B's newer account deleted)");
    }
    tap_is_int(api(key_b, "DELETE", path, NULL, NULL), 204, "DELETE of the account: 204");
    tap_is_int(api(key_b, "GET", path, NULL, NULL), 404, "a deleted account: 404");
    tap_is_int(api(key_b, "DELETE", path, NULL, NULL), 404, "a second DELETE: 404");
    tap_is_int(event_tenant(app_s, "17841400000000900"), tb,
               "the deleted account's events stay, still the tenant's");

    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc4);
    tap_is_int(api(H_ADMIN_TOKEN, "DELETE", path, NULL, NULL), 204,
               "the operator deletes any tenant's account: 204");

    /* ---- the token in clear: nowhere ---- */
    const char *middles[] = {TOKEN_A1_MIDDLE, TOKEN_A2_MIDDLE, TOKEN_B_MIDDLE};
    for (int i = 0; i < 3; i++) {
        const char *p[] = {middles[i]};
        tap_is_int(sql_num("SELECT count(*) FROM accounts a WHERE strpos(a::text, $1) > 0", 1, p),
                   0, "token %d is in no column of accounts", i + 1);
        tap_ok(strstr(seen.data, middles[i]) == NULL, "token %d is in no answer of the API", i + 1);
    }
    tap_ok(sql_num("SELECT count(*) FROM accounts WHERE access_token_sealed LIKE 'hb1:%'", 0,
                   NULL) == sql_num("SELECT count(*) FROM accounts", 0, NULL),
           "every stored token is sealed");
    char *log = h_server_log(&srv);
    for (int i = 0; i < 3; i++)
        tap_ok(strstr(log, middles[i]) == NULL, "token %d is not in the server's log", i + 1);
    tap_ok(strstr(log, "route=/v1/accounts") != NULL, "(the log does hold the account requests)");
    free(log);

    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "the server stops cleanly");
    h_db_drop(&db);
    buf_dispose(&seen);
    return tap_done();
}
