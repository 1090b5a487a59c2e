/*
 * t_api_isolation.c - the isolation matrix: tenant B's key against every
 * route of the admin API, aimed at tenant A's objects. Each route gets 404
 * (or 422 where B names A's object inside a body), B's lists never show A's
 * objects, and A's objects are unchanged afterwards. The table must cover
 * every entry of api_routes(): a new route without a row fails this test.
 *
 * It also checks event routing: an owned app's events go to its owner, a
 * shared app's to the tenant whose account is the entry, others unrouted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
/* The matrix holds its paths as printf formats. */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#include "tests/integration/harness.h"

#define OP H_ADMIN_TOKEN
#define APP_A "9100000000001"
#define APP_SHARED "9100000000009"
#define SECRET_A "secret-of-tenant-a-0123456789"
#define SECRET_SHARED "secret-of-the-shared-app-98765"
#define IG_A "17841400000000001"
#define IG_A_SHARED "17841400000000002"
#define IG_B_SHARED "17841400000000003"

static struct h_server srv;

static long call(const char *token, const char *method, const char *path, const char *json,
                 char **body)
{
    struct h_resp r;
    h_api(&r, &srv, token, method, path, json);
    if (body != NULL)
        *body = strdup(r.body);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

static long long create(const char *token, const char *path, const char *json)
{
    char *b = NULL;
    long st = call(token, "POST", path, json, &b);
    if (st != 201)
        tap_bail("POST %s %s: %ld %s", path, json, st, b);
    long long id = h_json_num(b, "id");
    free(b);
    return id;
}

/* One comment delivery for entry, whose comment id is marker. */
static void deliver(const char *app, const char *secret, const char *entry, const char *marker)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"object\":\"instagram\",\"entry\":[{\"id\":\"%s\",\"time\":1700000000,"
                     "\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"%s\","
                     "\"text\":\"hi\",\"from\":{\"id\":\"42\"},\"media\":{\"id\":\"7\"}}}]}]}",
                     entry, marker);
    struct h_resp r;
    h_post_signed(&r, &srv, app, secret, body, (size_t)n);
    if (r.status != 200)
        tap_bail("delivery %s: %ld %s", marker, r.status, r.body);
    h_resp_free(&r);
}

struct row {
    const char *method;
    const char *pattern;
    const char *path; /* printf format; %lld is the object of A named by arg */
    char arg; /* 't' tenant, 'k' key (+tenant), 'p' app, 'a' account, 'e' event, 'm' message */
    const char *body;
    long want; /* what B gets */
    /* for lists: none of these may appear in B's answer */
    const char *const *absent;
};

static const char *const A_MARKERS[] = {APP_A,    IG_A,       IG_A_SHARED, "A-OWNED", "A-SHARED",
                                        "NOBODY", "tenant-a", "A-MESSAGE", NULL};

int main(void)
{
    struct h_db db;
    h_db_create(&db, "api_isolation");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    h_server_start(&srv, &db, NULL);

    char key_a[64], key_b[64], json[1024];
    long long tenant_a = h_api_tenant(&srv, "tenant-a", key_a);
    long long tenant_b = h_api_tenant(&srv, "tenant-b", key_b);
    long long key_id_a = h_db_int(&db, "SELECT id FROM api_keys WHERE tenant_id = %lld", tenant_a);

    long long app_a = create(key_a, "/v1/apps",
                             "{\"meta_app_id\":\"" APP_A "\",\"app_secret\":\"" SECRET_A
                             "\",\"verify_token\":\"vt-a\",\"name\":\"a-app\"}");
    long long app_s = create(OP, "/v1/apps",
                             "{\"meta_app_id\":\"" APP_SHARED "\",\"app_secret\":\"" SECRET_SHARED
                             "\",\"verify_token\":\"vt-s\"}");
    snprintf(
        json, sizeof(json),
        "{\"app_id\":%lld,\"ig_id\":\"" IG_A "\",\"login_type\":\"instagram_login\","
        "\"access_token\":\"IGAA-token-of-a-0123456789\",\"subscribed_fields\":[\"comments\"]}",
        app_a);
    long long acc_a = create(key_a, "/v1/accounts", json);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" IG_A_SHARED "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"IGAA-token-of-a-shared-01234\",\"subscribed_fields\":[]}",
             app_s);
    create(key_a, "/v1/accounts", json);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" IG_B_SHARED "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"IGAA-token-of-b-shared-01234\",\"subscribed_fields\":[]}",
             app_s);
    long long acc_b = create(key_b, "/v1/accounts", json);

    deliver(APP_A, SECRET_A, IG_A, "A-OWNED");
    deliver(APP_A, SECRET_A, "555", "A-OWNED-OTHER-ENTRY");
    deliver(APP_SHARED, SECRET_SHARED, IG_A_SHARED, "A-SHARED");
    deliver(APP_SHARED, SECRET_SHARED, IG_B_SHARED, "B-SHARED");
    deliver(APP_SHARED, SECRET_SHARED, "999", "NOBODY");

    /* ---- routing ---- */
    const char *q = "SELECT coalesce(tenant_id::text, 'none') FROM events"
                    " WHERE payload->'value'->>'id' = '%s'";
    char want[32];
    snprintf(want, sizeof(want), "%lld", tenant_a);
    const char *markers[] = {"A-OWNED", "A-OWNED-OTHER-ENTRY", "A-SHARED", "B-SHARED", "NOBODY"};
    char tb[32];
    snprintf(tb, sizeof(tb), "%lld", tenant_b);
    const char *owners[] = {want, want, want, tb, "none"};
    for (size_t i = 0; i < 5; i++) {
        char *got = h_db_text(&db, q, markers[i]);
        tap_is_str(got, owners[i], "event %s is routed to %s", markers[i], owners[i]);
        free(got);
    }
    long long ev_a =
        h_db_int(&db, "SELECT id FROM events WHERE payload->'value'->>'id' = 'A-OWNED'");

    /* A reply of A's, queued (its send is not what this test is about). */
    long long msg_a = 0;
    {
        char mpath[64], *mb = NULL;
        snprintf(mpath, sizeof(mpath), "/v1/accounts/%lld/messages", acc_a);
        long st =
            call(key_a, "POST", mpath, "{\"recipient_id\":\"1\",\"text\":\"A-MESSAGE\"}", &mb);
        if (st != 202)
            tap_bail("POST %s: %ld %s", mpath, st, mb);
        msg_a = h_json_num(mb, "id");
        free(mb);
    }

    /* ---- the matrix ---- */
    char acc_body[512];
    snprintf(acc_body, sizeof(acc_body),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000077\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"IGAA-token-of-b-0123456789\",\"subscribed_fields\":[]}",
             app_a);
    char app_body[256];
    snprintf(app_body, sizeof(app_body),
             "{\"meta_app_id\":\"9100000000077\",\"app_secret\":\"s3cret-s3cret-s3cret\","
             "\"verify_token\":\"vt\",\"tenant_id\":%lld}",
             tenant_a);
    const struct row rows[] = {
        {"GET", "/v1/tenants", "/v1/tenants", 0, NULL, 404, NULL},
        {"POST", "/v1/tenants", "/v1/tenants", 0, "{\"name\":\"b-made\"}", 404, NULL},
        {"GET", "/v1/tenants/{id}", "/v1/tenants/%lld", 't', NULL, 404, NULL},
        {"PATCH", "/v1/tenants/{id}", "/v1/tenants/%lld", 't', "{\"name\":\"pwned\"}", 404, NULL},
        {"DELETE", "/v1/tenants/{id}", "/v1/tenants/%lld", 't', NULL, 404, NULL},
        {"GET", "/v1/tenants/{id}/keys", "/v1/tenants/%lld/keys", 't', NULL, 404, NULL},
        {"POST", "/v1/tenants/{id}/keys", "/v1/tenants/%lld/keys", 't', "{}", 404, NULL},
        {"GET", "/v1/tenants/{id}/keys/{key_id}", "/v1/tenants/%lld/keys/%lld", 'k', NULL, 404,
         NULL},
        {"DELETE", "/v1/tenants/{id}/keys/{key_id}", "/v1/tenants/%lld/keys/%lld", 'k', NULL, 404,
         NULL},
        {"GET", "/v1/apps", "/v1/apps?limit=1000", 0, NULL, 200, A_MARKERS},
        {"POST", "/v1/apps", "/v1/apps", 0, app_body, 422, NULL},
        {"GET", "/v1/apps/{id}", "/v1/apps/%lld", 'p', NULL, 404, NULL},
        {"PATCH", "/v1/apps/{id}", "/v1/apps/%lld", 'p', "{\"name\":\"pwned\"}", 404, NULL},
        {"DELETE", "/v1/apps/{id}", "/v1/apps/%lld", 'p', NULL, 404, NULL},
        {"GET", "/v1/accounts", "/v1/accounts?limit=1000", 0, NULL, 200, A_MARKERS},
        {"POST", "/v1/accounts", "/v1/accounts", 0, acc_body, 422, NULL},
        {"GET", "/v1/accounts/{id}", "/v1/accounts/%lld", 'a', NULL, 404, NULL},
        {"PATCH", "/v1/accounts/{id}", "/v1/accounts/%lld", 'a', "{\"username\":\"pwned\"}", 404,
         NULL},
        {"DELETE", "/v1/accounts/{id}", "/v1/accounts/%lld", 'a', NULL, 404, NULL},
        {"PUT", "/v1/accounts/{id}/subscribed_fields", "/v1/accounts/%lld/subscribed_fields", 'a',
         "{\"subscribed_fields\":[]}", 404, NULL},
        {"GET", "/v1/accounts/{id}/messages", "/v1/accounts/%lld/messages", 'a', NULL, 404, NULL},
        {"POST", "/v1/accounts/{id}/messages", "/v1/accounts/%lld/messages", 'a',
         "{\"recipient_id\":\"1\",\"text\":\"pwned\"}", 404, NULL},
        {"GET", "/v1/messages/{id}", "/v1/messages/%lld", 'm', NULL, 404, NULL},
        {"POST", "/v1/messages/{id}/retry", "/v1/messages/%lld/retry", 'm', "{}", 404, NULL},
        {"GET", "/v1/events", "/v1/events?limit=1000", 0, NULL, 200, A_MARKERS},
        {"GET", "/v1/events/{id}", "/v1/events/%lld", 'e', NULL, 404, NULL},
        {"GET", "/v1/deliveries", "/v1/deliveries", 0, NULL, 404, NULL},
        {"GET", "/v1/jobs", "/v1/jobs", 0, NULL, 404, NULL},
    };

    size_t nroutes;
    const struct api_route *routes = api_routes(&nroutes);
    for (size_t i = 0; i < nroutes; i++) {
        bool covered = false;
        for (size_t j = 0; j < sizeof(rows) / sizeof(rows[0]) && !covered; j++)
            covered = strcmp(rows[j].method, routes[i].method) == 0 &&
                      strcmp(rows[j].pattern, routes[i].pattern) == 0;
        tap_ok(covered, "the matrix covers %s %s", routes[i].method, routes[i].pattern);
    }

    for (size_t j = 0; j < sizeof(rows) / sizeof(rows[0]); j++) {
        const struct row *r = &rows[j];
        char path[256];
        long long id = r->arg == 't'   ? tenant_a
                       : r->arg == 'k' ? tenant_a
                       : r->arg == 'p' ? app_a
                       : r->arg == 'a' ? acc_a
                       : r->arg == 'e' ? ev_a
                       : r->arg == 'm' ? msg_a
                                       : 0;
        if (r->arg == 'k')
            snprintf(path, sizeof(path), r->path, id, key_id_a);
        else if (r->arg != 0)
            snprintf(path, sizeof(path), r->path, id);
        else
            snprintf(path, sizeof(path), "%s", r->path);
        char *b = NULL;
        long st = call(key_b, r->method, path, r->body, &b);
        tap_is_int(st, r->want, "tenant B: %s %s gets %ld", r->method, path, r->want);
        for (const char *const *m = r->absent; m != NULL && *m != NULL; m++)
            tap_ok(strstr(b, *m) == NULL, "  and its answer never mentions %s", *m);
        free(b);
    }

    /* Filters cannot reach across either. */
    const char *probes[] = {
        "/v1/events?entry_id=" IG_A,
        "/v1/events?contains=%%7B%%22value%%22%%3A%%7B%%22id%%22%%3A%%22A-OWNED%%22%%7D%%7D",
        "/v1/events?field=comments&limit=1000",
        "/v1/accounts?app_id=%lld",
        "/v1/apps?tenant_id=%lld",
        "/v1/accounts?tenant_id=%lld",
    };
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), probes[i], i == 3 ? app_a : tenant_a);
        char *b = NULL;
        long st = call(key_b, "GET", path, NULL, &b);
        bool leak = false;
        for (const char *const *m = A_MARKERS; *m != NULL; m++)
            leak |= strstr(b, *m) != NULL;
        tap_ok((st == 200 || st == 400) && !leak, "tenant B: GET %s shows nothing of A (%ld)", path,
               st);
        free(b);
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/events?account=%lld", acc_a);
    tap_is_int(call(key_b, "GET", path, NULL, NULL), 404,
               "tenant B cannot filter events by A's account");

    /* B sees its own, A's objects are untouched. */
    char *b = NULL;
    tap_is_int(call(key_b, "GET", "/v1/events", NULL, &b), 200, "tenant B lists its events");
    tap_contains(b, "B-SHARED", "  and sees the event routed to it from the shared app");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc_b);
    tap_is_int(call(key_b, "GET", path, NULL, NULL), 200, "tenant B reads its own account");
    tap_is_int(call(key_a, "GET", "/v1/events?limit=1000", NULL, &b), 200,
               "tenant A lists its events");
    tap_ok(strstr(b, "A-OWNED") && strstr(b, "A-SHARED") && !strstr(b, "B-SHARED") &&
               !strstr(b, "NOBODY"),
           "  its own and its shared-app events, nobody else's");
    free(b);
    snprintf(path, sizeof(path), "/v1/apps/%lld", app_a);
    tap_is_int(call(key_a, "GET", path, NULL, &b), 200, "A's app is still there");
    tap_ok(strstr(b, "pwned") == NULL, "  unchanged");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc_a);
    tap_is_int(call(key_a, "GET", path, NULL, &b), 200, "A's account is still there");
    tap_ok(strstr(b, "pwned") == NULL, "  unchanged");
    free(b);
    snprintf(path, sizeof(path), "/v1/events/%lld", ev_a);
    tap_is_int(call(key_a, "GET", path, NULL, NULL), 200, "A's event is still there");
    snprintf(path, sizeof(path), "/v1/messages/%lld", msg_a);
    tap_is_int(call(key_a, "GET", path, NULL, &b), 200, "A's message is still there");
    tap_contains(b, "A-MESSAGE", "  unchanged");
    free(b);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM messages WHERE request::text LIKE '%%pwned%%'"),
               0, "B queued no message on A's account");
    tap_is_int(call(key_a, "GET", "/v1/apps", NULL, NULL), 200, "A's key still works");
    snprintf(path, sizeof(path), "/v1/tenants/%lld", tenant_a);
    tap_is_int(call(OP, "GET", path, NULL, &b), 200, "tenant A is still there");
    tap_contains(b, "tenant-a", "  with its name");
    free(b);
    tap_is_int(call(OP, "GET", "/v1/events?tenant=none", NULL, &b), 200,
               "the operator lists unrouted events");
    tap_ok(strstr(b, "NOBODY") && !strstr(b, "A-OWNED"), "  and finds exactly those");
    free(b);

    /* No column of any table, and no log line, holds a secret in clear. */
    const char *secrets[] = {SECRET_A,
                             SECRET_SHARED,
                             "IGAA-token-of-a-0123456789",
                             "IGAA-token-of-a-shared-01234",
                             "IGAA-token-of-b-shared-01234",
                             "vt-a",
                             key_a + 3,
                             key_b + 3,
                             NULL};
    char *tables = h_db_text(&db, "SELECT string_agg(quote_ident(table_name), ' ')"
                                  " FROM information_schema.tables"
                                  " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'");
    int ntables = 0;
    for (char *t = strtok(tables, " "); t != NULL; t = strtok(NULL, " "), ntables++) {
        for (const char *const *sec = secrets; *sec != NULL; sec++) {
            long long n = h_db_int(&db,
                                   "SELECT count(*) FROM %s x WHERE x::text LIKE '%%%s%%'"
                                   " OR encode(convert_to(x::text, 'UTF8'), 'escape')"
                                   " LIKE '%%%s%%'",
                                   t, *sec, *sec);
            if (n != 0)
                tap_ok(false, "table %s holds the secret %.6s... in clear", t, *sec);
        }
    }
    free(tables);
    tap_ok(ntables >= 8,
           "no table of %d holds an app secret, verify token, access token or key"
           " in clear",
           ntables);
    char *log = h_server_log(&srv);
    bool logged = false;
    for (const char *const *sec = secrets; *sec != NULL; sec++)
        logged |= strstr(log, *sec) != NULL;
    tap_ok(!logged && strstr(log, "admin request") != NULL,
           "the server's log holds none of them either");
    free(log);

    h_server_stop(&srv, 15);
    h_db_drop(&db);
    return tap_done();
}
