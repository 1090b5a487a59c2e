/*
 * t_api_tenants.c - the admin API's front door and the operator's routes:
 * tenants, API keys (hashed, shown once, revocable), authentication, rate
 * limits, error shapes, the OpenAPI document, and 503 while the database
 * refuses connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define OP H_ADMIN_TOKEN

static long call(const struct h_server *s, const char *token, const char *method, const char *path,
                 const char *json, char **body)
{
    struct h_resp r;
    h_api(&r, s, token, method, path, json);
    if (body != NULL)
        *body = strdup(r.body);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

static void migrate(struct h_db *db)
{
    const char *argv[] = {"migrate", NULL};
    char *out = NULL;
    if (h_run(db, argv, NULL, NULL, &out) != 0)
        tap_bail("migrate failed: %s", out);
    free(out);
}

static void test_tenants(const struct h_server *s)
{
    char *b = NULL, path[128];
    tap_is_int(call(s, OP, "POST", "/v1/tenants", "{\"name\":\"acme\"}", &b), 201,
               "the operator creates a tenant");
    long long acme = h_json_num(b, "id");
    tap_contains(b, "\"name\": \"acme\"", "the answer is the tenant");
    tap_contains(b, "\"created_at\"", "with its creation time");
    free(b);

    struct h_resp r;
    h_api(&r, s, OP, "POST", "/v1/tenants", "{\"name\":\"globex\"}");
    tap_is_int(r.status, 201, "a second tenant");
    long long globex = h_json_num(r.body, "id");
    char want[64];
    snprintf(want, sizeof(want), "location: /v1/tenants/%lld", globex);
    tap_contains(r.headers, want, "a 201 says where the tenant is");
    tap_contains(r.headers, "content-type: application/json", "answers are JSON");
    tap_contains(r.headers, "cache-control: no-store", "and never cached");
    h_resp_free(&r);

    tap_is_int(call(s, OP, "POST", "/v1/tenants", "{\"name\":\"acme\"}", &b), 409,
               "a taken name gets 409");
    tap_contains(b, "\"code\":\"conflict\"", "with the conflict code");
    free(b);
    const char *bad_names[] = {
        "{\"name\":\"\"}",
        "{\"name\":\"-x\"}",
        "{\"name\":\"a b\"}",
        "{\"name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        "{\"name\":7}",
        "{}",
        "{\"name\":\"ok\",\"extra\":1}"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        tap_is_int(call(s, OP, "POST", "/v1/tenants", bad_names[i], &b), 422,
                   "an invalid body %s gets 422", bad_names[i]);
        tap_contains(b, "\"code\":\"validation_failed\"", "  with a validation error");
        tap_contains(b, "\"field\":", "  naming the input");
        free(b);
    }
    tap_is_int(call(s, OP, "POST", "/v1/tenants", "{\"name\":", &b), 400,
               "malformed JSON gets 400");
    tap_contains(b, "not valid JSON", "  and says so");
    free(b);
    tap_is_int(call(s, OP, "POST", "/v1/tenants", "[1]", NULL), 400, "a non-object body gets 400");
    tap_is_int(call(s, OP, "POST", "/v1/tenants", "", NULL), 400, "an empty body gets 400");

    /* Listing, paging. */
    for (int i = 0; i < 5; i++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"name\":\"t%d\"}", i);
        call(s, OP, "POST", "/v1/tenants", body, NULL);
    }
    tap_is_int(call(s, OP, "GET", "/v1/tenants?limit=3", NULL, &b), 200,
               "the operator lists tenants");
    tap_contains(b, "\"name\": \"acme\"", "the first page starts with the oldest");
    char *cursor = h_json_str(b, "next_cursor");
    tap_ok(cursor != NULL, "a full page has a next cursor");
    free(b);
    snprintf(path, sizeof(path), "/v1/tenants?limit=3&cursor=%s", cursor ? cursor : "");
    tap_is_int(call(s, OP, "GET", path, NULL, &b), 200, "the next page");
    tap_contains(b, "\"name\": \"t1\"", "continues after the first page");
    tap_ok(strstr(b, "\"acme\"") == NULL, "without repeating it");
    free(b);
    free(cursor);
    snprintf(path, sizeof(path), "/v1/tenants?limit=5&cursor=");
    tap_is_int(call(s, OP, "GET", path, NULL, NULL), 400, "an empty cursor gets 400");
    tap_is_int(call(s, OP, "GET", "/v1/tenants?limit=1001", NULL, NULL), 400,
               "limit over 1000 gets 400");
    tap_is_int(call(s, OP, "GET", "/v1/tenants?limt=5", NULL, &b), 400,
               "a misspelt list parameter gets 400");
    tap_contains(b, "unknown query parameter \\\"limt\\\"", "  naming it");
    free(b);
    tap_is_int(call(s, OP, "GET", "/v1/apps?tenant=1", NULL, NULL), 400,
               "  on the apps list too (the filter is tenant_id)");
    tap_is_int(call(s, OP, "GET", "/v1/accounts?app=1", NULL, NULL), 400,
               "  and on the accounts list (the filter is app_id)");
    tap_is_int(call(s, OP, "GET", "/v1/tenants?limit=2&limit=3", NULL, NULL), 400,
               "  and so does a parameter given twice");
    tap_is_int(call(s, OP, "GET", "/v1/tenants?limit=1000", NULL, &b), 200, "limit 1000 is fine");
    tap_contains(b, "\"next_cursor\":null", "and the last page says there is no more");
    free(b);

    snprintf(path, sizeof(path), "/v1/tenants/%lld", acme);
    tap_is_int(call(s, OP, "GET", path, NULL, &b), 200, "the operator reads a tenant");
    tap_contains(b, "\"acme\"", "  by id");
    free(b);
    tap_is_int(call(s, OP, "PATCH", path, "{\"name\":\"acme-corp\"}", &b), 200, "renames it");
    tap_contains(b, "\"acme-corp\"", "  and answers with the new name");
    free(b);
    tap_is_int(call(s, OP, "PATCH", path, "{\"name\":\"globex\"}", NULL), 409,
               "renaming onto a taken name gets 409");
    tap_is_int(call(s, OP, "GET", "/v1/tenants/999999", NULL, &b), 404,
               "an unknown tenant gets 404");
    tap_contains(b, "\"code\":\"not_found\"", "  as a JSON error");
    free(b);
    tap_is_int(call(s, OP, "PATCH", "/v1/tenants/999999", "{\"name\":\"zz\"}", NULL), 404,
               "renaming an unknown tenant gets 404");
    tap_is_int(call(s, OP, "DELETE", "/v1/tenants/999999", NULL, NULL), 404,
               "deleting an unknown tenant gets 404");
}

static void test_keys(const struct h_server *s, struct h_db *db)
{
    char *b = NULL, path[160];
    long long tid = h_db_int(db, "SELECT id FROM tenants WHERE name = 'globex'");
    snprintf(path, sizeof(path), "/v1/tenants/%lld/keys", tid);
    tap_is_int(call(s, OP, "POST", path, "{\"name\":\"ci\"}", &b), 201, "the operator makes a key");
    char *key = h_json_str(b, "key");
    char *prefix = h_json_str(b, "prefix");
    long long key_id = h_json_num(b, "id");
    tap_ok(key != NULL && strncmp(key, "hb_", 3) == 0 && strlen(key) == 46,
           "the key is hb_ and 43 base64url characters");
    tap_ok(prefix != NULL && key != NULL && strlen(prefix) == 12 && strncmp(prefix, key, 12) == 0,
           "its prefix is its first 12 characters");
    free(b);

    tap_is_int(
        h_db_int(db, "SELECT count(*) FROM api_keys WHERE key_hash = sha256('%s'::bytea)", key), 1,
        "the database holds the key's SHA-256");
    tap_is_int(h_db_int(db,
                        "SELECT count(*) FROM api_keys k WHERE k::text LIKE '%%%s%%'"
                        " OR k::text LIKE '%%%s%%'",
                        key, key + 12),
               0, "and not the key, nor its secret part, anywhere in the row");

    tap_is_int(call(s, OP, "GET", path, NULL, &b), 200, "the operator lists the tenant's keys");
    tap_contains(b, prefix, "the listing shows the prefix");
    tap_ok(strstr(b, key) == NULL && strstr(b, "\"key\"") == NULL, "but never the key");
    tap_contains(b, "\"revoked_at\": null", "live keys have no revocation time");
    free(b);

    /* The key works for tenant routes and nothing of the operator's. */
    tap_is_int(call(s, key, "GET", "/v1/apps", NULL, NULL), 200, "the key reaches tenant routes");
    tap_is_int(call(s, key, "GET", "/v1/tenants", NULL, &b), 404,
               "a tenant key gets 404 on operator routes, not 403");
    tap_contains(b, "\"not_found\"", "  as not_found");
    free(b);
    tap_is_int(call(s, key, "POST", "/v1/tenants", "{\"name\":\"sneaky\"}", NULL), 404,
               "nor can it create tenants");
    char other[160];
    snprintf(other, sizeof(other), "/v1/tenants/%lld/keys", tid);
    tap_is_int(call(s, key, "POST", other, "{}", NULL), 404, "nor make keys, even for itself");
    tap_is_int(call(s, key, "GET", "/v1/deliveries", NULL, NULL), 404, "nor read raw deliveries");

    /* Revocation takes effect at once. */
    char del[200];
    snprintf(del, sizeof(del), "%s/%lld", path, key_id);
    tap_is_int(call(s, OP, "GET", del, NULL, &b), 200, "the operator reads one key");
    tap_ok(strstr(b, prefix) != NULL && strstr(b, key) == NULL, "  by its prefix, never the key");
    free(b);
    tap_is_int(call(s, OP, "DELETE", del, NULL, &b), 204, "the operator revokes the key");
    tap_is_str(b, "", "  with an empty 204");
    free(b);
    tap_is_int(call(s, key, "GET", "/v1/apps", NULL, &b), 401, "a revoked key gets 401 at once");
    tap_contains(b, "\"unauthorized\"", "  as unauthorized");
    free(b);
    tap_is_int(call(s, OP, "DELETE", del, NULL, NULL), 204, "revoking twice is harmless");
    tap_is_int(call(s, OP, "GET", path, NULL, &b), 200, "the revoked key stays listed");
    tap_ok(strstr(b, "\"revoked_at\": null") == NULL, "  with its revocation time");
    free(b);
    snprintf(del, sizeof(del), "/v1/tenants/%lld/keys/%lld", tid + 1000, key_id);
    tap_is_int(call(s, OP, "DELETE", del, NULL, NULL), 404,
               "a key id under another tenant's path gets 404");
    tap_is_int(call(s, OP, "POST", "/v1/tenants/999999/keys", "{}", NULL), 404,
               "keys for an unknown tenant get 404");
    tap_is_int(call(s, OP, "GET", "/v1/tenants/999999/keys", NULL, NULL), 404,
               "listing keys of an unknown tenant gets 404");
    tap_is_int(call(s, OP, "POST", path, "{\"name\":5}", NULL), 422,
               "a non-string key name gets 422");

    char *log = h_server_log(s);
    tap_ok(strstr(log, key) == NULL && strstr(log, key + 12) == NULL,
           "the server's log never holds the key");
    tap_ok(strstr(log, OP) == NULL, "nor the operator's token");
    tap_contains(log, "admin request", "while it does log each request");
    free(log);
    free(key);
    free(prefix);

    /* Deleting a tenant takes its keys with it. */
    char fresh[64];
    long long gone = h_api_tenant(s, "short-lived", fresh);
    snprintf(del, sizeof(del), "/v1/tenants/%lld", gone);
    tap_is_int(call(s, fresh, "GET", "/v1/apps", NULL, NULL), 200, "a new tenant's key works");
    tap_is_int(call(s, OP, "DELETE", del, NULL, NULL), 204, "the operator deletes the tenant");
    tap_is_int(call(s, fresh, "GET", "/v1/apps", NULL, NULL), 401, "and its key stops working");
    tap_is_int(call(s, OP, "GET", del, NULL, NULL), 404, "the tenant is gone");
    tap_is_int(h_db_int(db, "SELECT count(*) FROM api_keys WHERE tenant_id = %lld", gone), 0,
               "with its keys");
}

static void test_front_door(const struct h_server *s)
{
    char *b = NULL;
    struct h_resp r;
    h_api(&r, s, NULL, "GET", "/v1/tenants", NULL);
    tap_is_int(r.status, 401, "no Authorization gets 401");
    tap_contains(r.headers, "www-authenticate: Bearer", "  with a Bearer challenge");
    tap_contains(r.body, "\"unauthorized\"", "  and a JSON error");
    h_resp_free(&r);

    char url[256];
    snprintf(url, sizeof(url), "%s/v1/tenants", s->base);
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    h_http(&r, "GET", url, basic, NULL, 0);
    tap_is_int(r.status, 401, "another auth scheme gets 401");
    h_resp_free(&r);
    tap_is_int(
        call(s, "hb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/v1/apps", NULL, NULL),
        401, "an unknown key of the right shape gets 401");
    tap_is_int(call(s, "not-a-key", "GET", "/v1/apps", NULL, NULL), 401,
               "a malformed key gets 401");
    tap_is_int(
        call(s, "operator-token-for-tests-0123456789abcdeX", "GET", "/v1/tenants", NULL, NULL), 401,
        "a near-miss of the operator's token gets 401");

    tap_is_int(call(s, OP, "GET", "/v1/nothing", NULL, &b), 404, "an unknown API path gets 404");
    tap_contains(b, "\"not_found\"", "  as JSON");
    free(b);
    h_api(&r, s, OP, "PUT", "/v1/tenants", "{}");
    tap_is_int(r.status, 405, "a known path with the wrong method gets 405");
    tap_contains(r.headers, "allow: GET, POST", "  with Allow");
    tap_contains(r.body, "\"method_not_allowed\"", "  and a JSON error");
    h_resp_free(&r);

    snprintf(url, sizeof(url), "%s/v1/tenants", s->base);
    const char *form[] = {"Authorization: Bearer " OP,
                          "Content-Type: application/x-www-form-urlencoded", NULL};
    h_http(&r, "POST", url, form, "name=x", 6);
    tap_is_int(r.status, 415, "a body that is not JSON by type gets 415");
    tap_contains(r.body, "\"unsupported_media_type\"", "  as JSON");
    h_resp_free(&r);
    const char *charset[] = {"Authorization: Bearer " OP,
                             "Content-Type: application/json; charset=utf-8", NULL};
    h_http(&r, "POST", url, charset, "{\"name\":\"with-charset\"}", 23);
    tap_is_int(r.status, 201, "application/json with a charset is fine");
    h_resp_free(&r);

    size_t big = 64 * 1024 + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    tap_is_int(call(s, OP, "POST", "/v1/tenants", huge, &b), 413, "a body over 64 KiB gets 413");
    tap_contains(b, "\"payload_too_large\"", "  as JSON");
    free(b);
    free(huge);

    tap_is_int(call(s, OP, "GET", "/v1/tenants?limit=%zz", NULL, NULL), 400,
               "a malformed query string gets 400");

    snprintf(url, sizeof(url), "%s/openapi.yaml", s->base);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 200, "/openapi.yaml is served without a key");
    tap_ok(strncmp(r.body, "openapi: 3.1", 12) == 0, "  and is the OpenAPI 3.1 document");
    tap_contains(r.body, "/v1/tenants/{id}/keys/{key_id}:", "  describing the routes");
    h_resp_free(&r);
}

static void test_rate_limit(struct h_db *db)
{
    const char *env[] = {"HUBBUB_API_RATE=2", "HUBBUB_API_BURST=3", NULL};
    struct h_server s;
    h_server_start(&s, db, env);
    char key[64];
    h_api_tenant(&s, "limited", key); /* two operator requests */
    int ok = 0, limited = 0;
    struct h_resp r;
    for (int i = 0; i < 6; i++) {
        h_api(&r, &s, key, "GET", "/v1/apps", NULL);
        if (r.status != 429)
            ok++;
        if (r.status == 429) {
            limited++;
            if (limited == 1) {
                tap_contains(r.headers, "retry-after: 1", "a 429 says when to retry");
                tap_contains(r.body, "\"rate_limited\"", "  as a JSON error");
            }
        }
        h_resp_free(&r);
    }
    tap_ok(ok >= 3 && ok <= 4 && limited == 6 - ok,
           "a key gets its burst, then 429s (%d ok, %d limited)", ok, limited);
    h_api(&r, &s, H_ADMIN_TOKEN, "GET", "/v1/tenants", NULL);
    tap_ok(r.status == 200 || r.status == 429, "each key has its own bucket");
    h_resp_free(&r);
    h_sleep_ms(600);
    h_api(&r, &s, key, "GET", "/v1/apps", NULL);
    tap_is_int(r.status, 200, "the bucket refills at the configured rate");
    h_resp_free(&r);
    h_server_stop(&s, 15);

    /* Inventing a new key for every request: limited by address. */
    const char *env2[] = {"HUBBUB_API_AUTH_FAILURES=3", NULL};
    h_server_start(&s, db, env2);
    h_api_tenant(&s, "by-address", key);
    int unauthorized = 0;
    for (int i = 0; i < 3; i++) {
        char guess[64];
        snprintf(guess, sizeof(guess), "hb_%043d", i);
        h_api(&r, &s, guess, "GET", "/v1/apps", NULL);
        unauthorized += r.status == 401;
        h_resp_free(&r);
    }
    tap_is_int(unauthorized, 3, "three invented keys get 401");
    h_api(&r, &s, "hb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/v1/apps", NULL);
    tap_is_int(r.status, 429, "the next from the same address gets 429");
    tap_contains(r.body, "failed authentications", "  saying why");
    tap_contains(r.headers, "retry-after: 1", "  and when to retry");
    h_resp_free(&r);
    h_api(&r, &s, key, "GET", "/v1/apps", NULL);
    tap_is_int(r.status, 429, "  even with a good key, while the address waits");
    h_resp_free(&r);
    h_sleep_ms(1100);
    h_api(&r, &s, key, "GET", "/v1/apps", NULL);
    tap_is_int(r.status, 200, "a second later the good key works again");
    h_resp_free(&r);
    h_server_stop(&s, 15);
}

/* ALTER DATABASE ... ALLOW_CONNECTIONS cannot run inside the database it changes. */
static void exec_from_postgres(struct h_db *db, const char *sql)
{
    char *url = h_url_with_dbname(db->url, "postgres");
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        tap_bail("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    free(url);
}

static void test_database_down(struct h_db *db, const struct h_server *s)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", db->name);
    exec_from_postgres(db, sql);
    snprintf(sql, sizeof(sql),
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'",
             db->name);
    exec_from_postgres(db, sql);
    struct h_resp r;
    h_api(&r, s, OP, "GET", "/v1/tenants", NULL);
    tap_is_int(r.status, 503, "the API answers 503 while the database refuses connections");
    tap_contains(r.headers, "retry-after:", "  with Retry-After");
    tap_contains(r.body, "\"unavailable\"", "  and a JSON error");
    h_resp_free(&r);
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", db->name);
    exec_from_postgres(db, sql);
    h_api(&r, s, OP, "GET", "/v1/tenants", NULL);
    tap_is_int(r.status, 200, "and 200 again once it is back");
    h_resp_free(&r);
    /* The test's own connection was terminated too. */
    PQreset(db->conn);
}

int main(void)
{
    struct h_db db;
    struct h_server s;
    h_db_create(&db, "api_tenants");
    migrate(&db);
    h_server_start(&s, &db, NULL);

    test_tenants(&s);
    test_keys(&s, &db);
    test_front_door(&s);
    test_database_down(&db, &s);
    h_server_stop(&s, 15);
    test_rate_limit(&db);

    /* Without an operator token configured, nobody is the operator. */
    const char *env[] = {"HUBBUB_ADMIN_TOKEN=", NULL};
    h_server_start(&s, &db, env);
    tap_is_int(call(&s, OP, "GET", "/v1/tenants", NULL, NULL), 401,
               "with no operator token configured, operator requests get 401");
    h_server_stop(&s, 15);
    const char *weak[] = {"HUBBUB_ADMIN_TOKEN=short", NULL};
    const char *argv[] = {"serve", NULL};
    char *out = NULL;
    tap_ok(h_run(&db, argv, weak, NULL, &out) != 0, "a short operator token is refused at start");
    tap_contains(out, "32 to 126 characters", "  saying why");
    tap_ok(strstr(out, "short") == NULL || strstr(out, "=short") == NULL,
           "  without printing the token");
    free(out);

    h_db_drop(&db);
    return tap_done();
}
