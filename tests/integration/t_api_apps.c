/*
 * t_api_apps.c - /v1/apps: creating, listing, reading, changing and deleting
 * apps as a tenant and as the operator; every validation error; tenant
 * isolation (other tenants' apps answer 404, shared apps are readable but not
 * changeable); secrets that only ever leave the API as hints and only ever
 * reach the database sealed; and the webhook endpoint taking an app, a
 * rotated secret and an added secret from the API (the server runs with
 * HUBBUB_APP_CACHE_TTL=0, so a change shows after one cache refresh).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define SECRET_A "appsecret-alpha-0123456789abcdef"
#define SECRET_A2 "appsecret-rotated-fedcba9876543210"
#define SECRET_ADD "appsecret-extra-aaaa1111"
#define TOKEN_A "verify token alpha 7788"
#define TOKEN_A2 "verify-token-changed-9911"
#define SECRET_B "appsecret-beta-5555666677778888"
#define SECRET_SHARED "appsecret-shared-1212343456567878"
/* Ends in "é€": its last 4 bytes start inside the "é". */
#define SECRET_UTF8 "appsecret-utf8-0123\xc3\xa9\xe2\x82\xac"

static struct h_server srv;
static struct h_db db;
static char key_a[64], key_b[64];
static long long tenant_a, tenant_b;

/* Every secret or token any test sends: none may appear in an answer. */
static const char *const PLAINTEXTS[] = {
    SECRET_A, SECRET_A2,     SECRET_ADD,     TOKEN_A,     TOKEN_A2,
    SECRET_B, SECRET_SHARED, "xtra-secret-", SECRET_UTF8, "shared token 4242"};

/* Calls the API; returns the status and, if body is not NULL, the body. */
static long api(const char *token, const char *method, const char *path, const char *json,
                char **body)
{
    struct h_resp r;
    h_api(&r, &srv, token, method, path, json);
    if (r.status == 0)
        tap_diag("%s %s: %s", method, path, r.error);
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body);
    h_resp_free(&r);
    return st;
}

/* The call must answer 422 naming field. */
static void expect_422(const char *token, const char *method, const char *path, const char *json,
                       const char *field, const char *what)
{
    char *body = NULL;
    char want[128];
    long st = api(token, method, path, json, &body);
    snprintf(want, sizeof(want), "\"field\":\"%s\"", field);
    if (!tap_is_int(st, 422, "%s gets 422", what) ||
        !tap_contains(body, want, "%s names %s", what, field))
        tap_diag("body: %s", body);
    free(body);
}

static bool has_plaintext(const char *text)
{
    for (size_t i = 0; i < sizeof(PLAINTEXTS) / sizeof(PLAINTEXTS[0]); i++)
        if (strstr(text, PLAINTEXTS[i]) != NULL)
            return true;
    return false;
}

/* POSTs /v1/apps; returns the new app's id (-1 and a failed test otherwise). */
static long long create(const char *token, const char *json, const char *what, char **body_out)
{
    char *body = NULL;
    long st = api(token, "POST", "/v1/apps", json, &body);
    if (!tap_is_int(st, 201, "%s: 201", what))
        tap_diag("body: %s", body);
    long long id = st == 201 ? h_json_num(body, "id") : -1;
    if (body_out != NULL)
        *body_out = body;
    else
        free(body);
    return id;
}

static char *app_path(long long id)
{
    static char path[64];
    snprintf(path, sizeof(path), "/v1/apps/%lld", id);
    return path;
}

/* Signed comments delivery number n to meta_app_id with secret; the status. */
static long deliver(const char *meta_app_id, const char *secret, int n)
{
    size_t len;
    char *payload = h_comment_delivery(n, &len);
    struct h_resp r;
    h_post_signed(&r, &srv, meta_app_id, secret, payload, len);
    long st = r.status;
    h_resp_free(&r);
    free(payload);
    return st;
}

/* The webhook side caches apps; with a TTL of 0 the first request after a
 * change may still see the old app while the cache refreshes it. Polls for
 * up to 3 seconds until the delivery gets want. */
static long deliver_until(const char *meta_app_id, const char *secret, int *n, long want)
{
    long st = 0;
    for (int64_t end = h_now_ms() + 3000; h_now_ms() < end; h_sleep_ms(20))
        if ((st = deliver(meta_app_id, secret, (*n)++)) == want)
            break;
    return st;
}

static long handshake(const char *meta_app_id, const char *token_encoded)
{
    char url[512];
    snprintf(url, sizeof(url),
             "%s/webhooks/%s?hub.mode=subscribe&hub.challenge=4711&hub.verify_token=%s", srv.base,
             meta_app_id, token_encoded);
    struct h_resp r;
    long st = 0;
    for (int64_t end = h_now_ms() + 3000; h_now_ms() < end; h_sleep_ms(20)) {
        h_http(&r, "GET", url, NULL, NULL, 0);
        st = r.status == 200 && strcmp(r.body, "4711") != 0 ? -1 : r.status;
        h_resp_free(&r);
        if (st == 200)
            break;
    }
    return st;
}

/* The whole apps and app_secrets tables as text. */
static char *db_dump(void)
{
    return h_db_text(&db, "SELECT coalesce((SELECT string_agg(a::text, ' ') FROM apps a), '')"
                          " || coalesce((SELECT string_agg(s::text, ' ') FROM app_secrets s), '')");
}

static int count(const char *body, const char *needle)
{
    int n = 0;
    for (const char *p = body; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static void test_transport(void)
{
    tap_is_int(api(NULL, "GET", "/v1/apps", NULL, NULL), 401, "GET /v1/apps without a key: 401");
    tap_is_int(api(NULL, "POST", "/v1/apps", "{}", NULL), 401, "POST /v1/apps without a key: 401");
    tap_is_int(api(NULL, "GET", "/v1/apps/1", NULL, NULL), 401,
               "GET /v1/apps/1 without a key: 401");
    tap_is_int(api(NULL, "PATCH", "/v1/apps/1", "{}", NULL), 401,
               "PATCH /v1/apps/1 without a key: 401");
    tap_is_int(api(NULL, "DELETE", "/v1/apps/1", NULL, NULL), 401,
               "DELETE /v1/apps/1 without a key: 401");
    tap_is_int(api("hb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/v1/apps", NULL, NULL),
               401, "an unknown tenant key: 401");

    char url[128], auth[128];
    snprintf(url, sizeof(url), "%s/v1/apps", srv.base);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key_a);
    const char *headers[] = {auth, "Content-Type: text/plain", NULL};
    const char *json = "{\"meta_app_id\":\"1999\",\"app_secret\":\"" SECRET_A
                       "\",\"verify_token\":\"" TOKEN_A "\"}";
    struct h_resp r;
    h_http(&r, "POST", url, headers, json, strlen(json));
    tap_is_int(r.status, 415, "POST with Content-Type: text/plain: 415");
    tap_contains(r.body, "unsupported_media_type", "the 415 says unsupported_media_type");
    h_resp_free(&r);
    snprintf(url, sizeof(url), "%s/v1/apps/1", srv.base);
    h_http(&r, "PATCH", url, headers, "{}", 2);
    tap_is_int(r.status, 415, "PATCH with Content-Type: text/plain: 415");
    h_resp_free(&r);

    char *body = NULL;
    tap_is_int(api(key_a, "POST", "/v1/apps", "{\"meta_app_id\":\"1999\",", &body), 400,
               "malformed JSON: 400");
    tap_contains(body, "bad_request", "the 400 says bad_request");
    free(body);
    tap_is_int(api(key_a, "POST", "/v1/apps", "[1,2]", NULL), 400, "a JSON array body: 400");
    tap_is_int(api(key_a, "PATCH", "/v1/apps/1", "{\"name\":}", NULL), 400,
               "PATCH with malformed JSON: 400");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM apps"), 0, "no refused request made an app");
}

static long long app_a, app_a2, app_b, app_shared, app_utf8;
static int n_delivery = 1;

static void test_create(void)
{
    char *body = NULL;
    app_a = create(key_a,
                   "{\"meta_app_id\":\"1001\",\"app_secret\":\"" SECRET_A
                   "\",\"verify_token\":\"" TOKEN_A "\",\"name\":\"acme app\"}",
                   "a tenant creates an app", &body);
    char want[64];
    snprintf(want, sizeof(want), "\"tenant_id\": %lld", tenant_a);
    tap_contains(body, want, "the app belongs to the creating tenant");
    tap_contains(body, "\"shared\": false", "a tenant's app is not shared");
    tap_contains(body, "\"meta_app_id\": \"1001\"", "meta_app_id is echoed as a string");
    tap_contains(body, "\"name\": \"acme app\"", "name is echoed");
    tap_contains(body, "\"graph_api_version\": \"v25.0\"", "graph_api_version defaults to v25.0");
    tap_contains(body, "\"callback_path\": \"/webhooks/1001\"", "callback_path is /webhooks/<id>");
    tap_contains(body,
                 "\"verify_token_hint\": \"\xe2\x80\xa6"
                 "7788\"",
                 "verify_token_hint is the token's last 4 characters");
    tap_contains(body,
                 "\"app_secret_hints\": [\"\xe2\x80\xa6"
                 "cdef\"]",
                 "app_secret_hints lists the one secret's hint");
    tap_contains(body, "\"created_at\": \"", "created_at is given");
    tap_contains(body, "\"updated_at\": \"", "updated_at is given");
    tap_ok(!has_plaintext(body), "the creation answer holds no secret or token");
    free(body);

    struct h_resp r;
    h_api(&r, &srv, key_a, "POST", "/v1/apps",
          "{\"meta_app_id\":\"1002\",\"app_secret\":\"short\",\"verify_token\":\"tok\","
          "\"graph_api_version\":\"v9.1\",\"tenant_id\":\"0\"}");
    tap_is_int(r.status, 422, "a tenant key sending tenant_id \"0\" (not its own): 422");
    h_resp_free(&r);
    char json[512];
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1002\",\"app_secret\":\"short\",\"verify_token\":\"tok\","
             "\"graph_api_version\":\"v9.1\",\"tenant_id\":%lld}",
             tenant_a);
    h_api(&r, &srv, key_a, "POST", "/v1/apps", json);
    tap_is_int(r.status, 201, "a tenant key may send its own tenant_id");
    app_a2 = h_json_num(r.body, "id");
    snprintf(want, sizeof(want), "location: /v1/apps/%lld\r\n", app_a2);
    tap_contains(r.headers, want, "the 201 has Location /v1/apps/{id}");
    tap_contains(r.body, "\"graph_api_version\": \"v9.1\"", "a one-digit major version is taken");
    tap_contains(r.body, "\"app_secret_hints\": [\"\"]", "secrets under 12 characters get no hint");
    tap_contains(r.body, "\"verify_token_hint\": \"\"", "short verify tokens get no hint");
    tap_contains(r.body, "\"name\": \"\"", "name defaults to empty");
    h_resp_free(&r);

    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"2001\",\"app_secret\":\"" SECRET_B
             "\",\"verify_token\":\"tok-b\",\"tenant_id\":%lld}",
             tenant_b);
    app_b = create(H_ADMIN_TOKEN, json, "the operator creates an app for tenant B", &body);
    snprintf(want, sizeof(want), "\"tenant_id\": %lld", tenant_b);
    tap_contains(body, want, "the operator's app belongs to the tenant_id given");
    tap_contains(body, "\"shared\": false", "an app with an owner is not shared");
    free(body);

    app_shared = create(H_ADMIN_TOKEN,
                        "{\"meta_app_id\":\"3001\",\"app_secret\":\"" SECRET_SHARED
                        "\",\"verify_token\":\"shared token 4242\",\"name\":\"shared\","
                        "\"tenant_id\":null}",
                        "the operator creates a shared app", &body);
    tap_contains(body, "\"tenant_id\": null", "a shared app has tenant_id null");
    tap_contains(body, "\"shared\": true", "a shared app says shared: true");
    free(body);

    app_utf8 = create(key_a,
                      "{\"meta_app_id\":\"1003\",\"app_secret\":\"" SECRET_UTF8
                      "\",\"verify_token\":\"tok-utf8\"}",
                      "an app secret ending in multi-byte characters", &body);
    tap_contains(body, "\"app_secret_hints\": [\"\xe2\x80\xa6\xe2\x82\xac\"]",
                 "its hint holds whole characters only");
    free(body);

    /* A 256-byte secret is the longest taken. */
    char longsecret[257];
    memset(longsecret, 's', 256);
    longsecret[256] = '\0';
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1004\",\"app_secret\":\"%s\",\"verify_token\":\"t\"}", longsecret);
    long long id = create(key_a, json, "a 256-byte app secret", NULL);
    snprintf(json, sizeof(json), "/v1/apps/%lld", id);
    tap_is_int(api(key_a, "DELETE", json, NULL, NULL), 204, "deleting it: 204");

    tap_is_int(api(key_b, "POST", "/v1/apps",
                   "{\"meta_app_id\":\"1001\",\"app_secret\":\"x\",\"verify_token\":\"y\"}", &body),
               409, "a meta_app_id already taken (by another tenant): 409");
    tap_contains(body, "\"conflict\"", "the 409 says conflict");
    free(body);
    tap_is_int(api(H_ADMIN_TOKEN, "POST", "/v1/apps",
                   "{\"meta_app_id\":\"3001\",\"app_secret\":\"x\",\"verify_token\":\"y\"}", NULL),
               409, "a meta_app_id already taken (operator): 409");
}

static void test_create_validation(void)
{
    const char *P = "/v1/apps";
#define OK_REST "\"app_secret\":\"s\",\"verify_token\":\"t\""
    expect_422(key_a, "POST", P, "{" OK_REST "}", "meta_app_id", "a missing meta_app_id");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":null," OK_REST "}", "meta_app_id",
               "a null meta_app_id");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"\"," OK_REST "}", "meta_app_id",
               "an empty meta_app_id");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"12a4\"," OK_REST "}", "meta_app_id",
               "a meta_app_id with a letter");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"-12\"," OK_REST "}", "meta_app_id",
               "a negative meta_app_id");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"123456789012345678901234567890123\"," OK_REST "}", "meta_app_id",
               "a 33-digit meta_app_id");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":1234," OK_REST "}", "meta_app_id",
               "a meta_app_id given as a number");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"1100\",\"verify_token\":\"t\"}", "app_secret",
               "a missing app_secret");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"1100\",\"app_secret\":\"\",\"verify_token\":\"t\"}",
               "app_secret", "an empty app_secret");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"1100\",\"app_secret\":42,\"verify_token\":\"t\"}", "app_secret",
               "an app_secret given as a number");
    char json[1024], big[300];
    memset(big, 'x', 257);
    big[257] = '\0';
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1100\",\"app_secret\":\"%s\",\"verify_token\":\"t\"}", big);
    expect_422(key_a, "POST", P, json, "app_secret", "a 257-byte app_secret");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"1100\",\"app_secret\":\"s\"}", "verify_token",
               "a missing verify_token");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"1100\",\"app_secret\":\"s\",\"verify_token\":\"\"}",
               "verify_token", "an empty verify_token");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"1100\",\"app_secret\":\"s\",\"verify_token\":\"a\\nb\"}",
               "verify_token", "a verify_token with a newline");
    expect_422(key_a, "POST", P,
               "{\"meta_app_id\":\"1100\",\"app_secret\":\"s\",\"verify_token\":\"a\\u007fb\"}",
               "verify_token", "a verify_token with DEL");
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1100\",\"app_secret\":\"s\",\"verify_token\":\"%s\"}", big);
    expect_422(key_a, "POST", P, json, "verify_token", "a 257-byte verify_token");
    const char *versions[] = {"v25",   "25.0", "v100.0", "v25.10", "v25.0 ",
                              "V25.0", "v.0",  "",       "v2a.0"};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        char what[64];
        snprintf(json, sizeof(json),
                 "{\"meta_app_id\":\"1100\"," OK_REST ",\"graph_api_version\":\"%s\"}",
                 versions[i]);
        snprintf(what, sizeof(what), "graph_api_version \"%s\"", versions[i]);
        expect_422(key_a, "POST", P, json, "graph_api_version", what);
    }
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"1100\"," OK_REST ",\"graph_api_version\":25}",
               "graph_api_version", "a graph_api_version given as a number");
    memset(big, 'n', 201);
    big[201] = '\0';
    snprintf(json, sizeof(json), "{\"meta_app_id\":\"1100\"," OK_REST ",\"name\":\"%s\"}", big);
    expect_422(key_a, "POST", P, json, "name", "a 201-byte name");
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"1100\"," OK_REST ",\"name\":7}", "name",
               "a name given as a number");

    char *body = NULL;
    tap_is_int(
        api(key_a, "POST", P, "{\"meta_app_id\":\"1100\"," OK_REST ",\"secret\":\"z\"}", &body),
        422, "an unknown member: 422");
    tap_contains(body, "\"field\":\"secret\"", "the 422 names the unknown member");
    tap_contains(body, "secret", "the message names it too");
    free(body);
    expect_422(key_a, "POST", P, "{\"meta_app_id\":\"1100\"," OK_REST ",\"add_app_secret\":\"z\"}",
               "add_app_secret", "add_app_secret on creation");

    snprintf(json, sizeof(json), "{\"meta_app_id\":\"1100\"," OK_REST ",\"tenant_id\":%lld}",
             tenant_b);
    expect_422(key_a, "POST", P, json, "tenant_id", "a tenant key sending another tenant's id");
    expect_422(H_ADMIN_TOKEN, "POST", P,
               "{\"meta_app_id\":\"1100\"," OK_REST ",\"tenant_id\":999999}", "tenant_id",
               "the operator naming a tenant that does not exist");
    expect_422(H_ADMIN_TOKEN, "POST", P,
               "{\"meta_app_id\":\"1100\"," OK_REST ",\"tenant_id\":\"abc\"}", "tenant_id",
               "the operator giving a non-numeric tenant_id");
    expect_422(H_ADMIN_TOKEN, "POST", P, "{\"meta_app_id\":\"1100\"," OK_REST ",\"tenant_id\":1.5}",
               "tenant_id", "the operator giving a fractional tenant_id");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM apps WHERE meta_app_id = '1100'"), 0,
               "no invalid request made an app");
#undef OK_REST
}

/* Lists path with token, following cursors; returns the ids seen in order
 * (space-separated, caller frees) and sets *pages. */
static char *list_all(const char *token, const char *path, int *pages, bool *ordered)
{
    char *ids = calloc(1, 4096), *body = NULL, url[512];
    char *cursor = NULL;
    long long last = 0;
    *pages = 0;
    *ordered = true;
    do {
        snprintf(url, sizeof(url), "%s%slimit=2%s%s", path, strchr(path, '?') ? "&" : "?",
                 cursor ? "&cursor=" : "", cursor ? cursor : "");
        free(cursor);
        cursor = NULL;
        if (api(token, "GET", url, NULL, &body) != 200) {
            tap_diag("GET %s: %s", url, body);
            free(body);
            break;
        }
        (*pages)++;
        tap_ok(!has_plaintext(body), "list page %d of %s holds no secret", *pages, path);
        for (const char *p = body; (p = strstr(p, "{\"id\": ")) != NULL; p++) {
            long long id = strtoll(p + 7, NULL, 10);
            if (id <= last)
                *ordered = false;
            last = id;
            snprintf(ids + strlen(ids), 4096 - strlen(ids), " %lld", id);
        }
        cursor = h_json_str(body, "next_cursor");
        free(body);
    } while (cursor != NULL && *pages < 20);
    strcat(ids, " ");
    return ids;
}

static bool has_id(const char *ids, long long id)
{
    char needle[32];
    snprintf(needle, sizeof(needle), " %lld ", id);
    return strstr(ids, needle) != NULL;
}

static void test_list(void)
{
    int pages;
    bool ordered;
    char *ids = list_all(key_a, "/v1/apps", &pages, &ordered);
    tap_ok(has_id(ids, app_a) && has_id(ids, app_a2) && has_id(ids, app_utf8),
           "tenant A's list holds its own apps (%s)", ids);
    tap_ok(has_id(ids, app_shared), "tenant A's list holds the shared app");
    tap_ok(!has_id(ids, app_b), "tenant A's list never holds tenant B's app");
    tap_ok(ordered, "the list is in ascending id order across pages");
    tap_is_int(pages, 2, "4 apps at limit=2 take 2 pages");
    free(ids);

    ids = list_all(key_b, "/v1/apps", &pages, &ordered);
    tap_ok(has_id(ids, app_b) && has_id(ids, app_shared),
           "tenant B's list: its app and the shared one");
    tap_ok(!has_id(ids, app_a) && !has_id(ids, app_a2) && !has_id(ids, app_utf8),
           "tenant B's list never holds tenant A's apps (%s)", ids);
    free(ids);

    ids = list_all(H_ADMIN_TOKEN, "/v1/apps", &pages, &ordered);
    tap_ok(has_id(ids, app_a) && has_id(ids, app_a2) && has_id(ids, app_b) &&
               has_id(ids, app_shared) && has_id(ids, app_utf8),
           "the operator's list holds every app");
    tap_is_int(pages, 3, "5 apps at limit=2 take 3 pages");
    tap_ok(ordered, "the operator's list is in ascending id order");
    free(ids);

    char path[64];
    snprintf(path, sizeof(path), "/v1/apps?tenant_id=%lld", tenant_b);
    ids = list_all(H_ADMIN_TOKEN, path, &pages, &ordered);
    tap_ok(has_id(ids, app_b) && !has_id(ids, app_a) && !has_id(ids, app_shared),
           "?tenant_id=B lists only B's apps (%s)", ids);
    free(ids);
    ids = list_all(H_ADMIN_TOKEN, "/v1/apps?tenant_id=none", &pages, &ordered);
    tap_ok(has_id(ids, app_shared) && !has_id(ids, app_a) && !has_id(ids, app_b),
           "?tenant_id=none lists only shared apps (%s)", ids);
    free(ids);
    snprintf(path, sizeof(path), "/v1/apps?tenant_id=%lld", tenant_a);
    ids = list_all(key_b, path, &pages, &ordered);
    tap_ok(!has_id(ids, app_a) && !has_id(ids, app_a2),
           "tenant B filtering on A's id sees nothing of A");
    free(ids);

    tap_is_int(api(H_ADMIN_TOKEN, "GET", "/v1/apps?tenant_id=abc", NULL, NULL), 400,
               "?tenant_id=abc: 400");
    tap_is_int(api(key_a, "GET", "/v1/apps?limit=0", NULL, NULL), 400, "?limit=0: 400");
    tap_is_int(api(key_a, "GET", "/v1/apps?cursor=nonsense", NULL, NULL), 400, "a bad cursor: 400");
    char *body = NULL;
    tap_is_int(api(key_a, "GET", "/v1/apps?limit=1000", NULL, &body), 200, "?limit=1000: 200");
    tap_contains(body, "\"next_cursor\":null", "one page holds them all: next_cursor null");
    tap_is_int(count(body, "{\"id\": "), 4, "tenant A sees exactly 4 apps");
    free(body);
}

static void test_get(void)
{
    char *body = NULL;
    tap_is_int(api(key_a, "GET", app_path(app_a), NULL, &body), 200, "tenant A reads its app");
    tap_contains(body, "\"meta_app_id\": \"1001\"", "it is the right app");
    tap_ok(!has_plaintext(body), "GET holds no secret or token");
    free(body);
    tap_is_int(api(key_a, "GET", app_path(app_shared), NULL, &body), 200,
               "tenant A reads the shared app");
    tap_contains(body, "\"shared\": true", "and sees it is shared");
    tap_ok(!has_plaintext(body), "the shared app's GET holds no secret or token");
    free(body);
    tap_is_int(api(key_b, "GET", app_path(app_a), NULL, &body), 404,
               "tenant B reading A's app: 404");
    tap_contains(body, "\"not_found\"", "the 404 says not_found");
    tap_ok(strstr(body, "1001") == NULL, "the 404 says nothing of the app");
    free(body);
    tap_is_int(api(key_a, "GET", app_path(app_b), NULL, NULL), 404,
               "tenant A reading B's app: 404");
    tap_is_int(api(H_ADMIN_TOKEN, "GET", app_path(app_b), NULL, NULL), 200,
               "the operator reads any app");
    tap_is_int(api(H_ADMIN_TOKEN, "GET", "/v1/apps/999999", NULL, NULL), 404,
               "an app that does not exist: 404");
}

static void test_webhook(void)
{
    tap_is_int(deliver("1001", SECRET_A, n_delivery++), 200,
               "a delivery signed with the secret given to the API: 200");
    tap_is_int(deliver("1001", "not-the-secret-at-all", n_delivery++), 403,
               "a delivery signed with another secret: 403");
    tap_is_int(handshake("1001", "verify+token+alpha+7788"), 200,
               "the verify token given to the API passes Meta's handshake");
    tap_is_int(deliver("1003", SECRET_UTF8, n_delivery++), 200,
               "a multi-byte app secret signs deliveries too");
    tap_is_int(deliver("3001", SECRET_SHARED, n_delivery++), 200,
               "the shared app takes deliveries");
}

static void test_update(void)
{
    char *body = NULL, *before = NULL, pa[64];
    snprintf(pa, sizeof(pa), "%s", app_path(app_a));
    before = h_db_text(&db, "SELECT updated_at FROM apps WHERE id = %lld", app_a);
    tap_is_int(api(key_a, "PATCH", pa, "{}", &body), 200, "an empty PATCH: 200");
    tap_contains(body, "\"meta_app_id\": \"1001\"", "and answers the app");
    free(body);

    h_sleep_ms(5);
    tap_is_int(api(key_a, "PATCH", app_path(app_a),
                   "{\"name\":\"renamed\",\"graph_api_version\":\"v24.0\"}", &body),
               200, "PATCH name and graph_api_version: 200");
    tap_contains(body, "\"name\": \"renamed\"", "the name changed");
    tap_contains(body, "\"graph_api_version\": \"v24.0\"", "the version changed");
    tap_contains(body,
                 "\"app_secret_hints\": [\"\xe2\x80\xa6"
                 "cdef\"]",
                 "the secrets did not change");
    free(body);
    char *after = h_db_text(&db, "SELECT updated_at FROM apps WHERE id = %lld", app_a);
    tap_ok(strcmp(before, after) != 0, "PATCH sets updated_at (%s -> %s)", before, after);
    free(before);
    free(after);

    expect_422(key_a, "PATCH", pa, "{\"graph_api_version\":\"v25\"}", "graph_api_version",
               "PATCH with a bad graph_api_version");
    expect_422(key_a, "PATCH", pa, "{\"bogus\":1}", "bogus", "PATCH with an unknown member");
    expect_422(key_a, "PATCH", pa, "{\"meta_app_id\":\"1\"}", "meta_app_id",
               "PATCH of meta_app_id");
    expect_422(key_a, "PATCH", pa, "{\"tenant_id\":1}", "tenant_id", "PATCH of tenant_id");
    expect_422(key_a, "PATCH", pa, "{\"verify_token\":\"\"}", "verify_token",
               "PATCH with an empty verify_token");
    expect_422(key_a, "PATCH", pa, "{\"app_secret\":\"\"}", "app_secret",
               "PATCH with an empty app_secret");
    expect_422(key_a, "PATCH", pa, "{\"add_app_secret\":\"\"}", "add_app_secret",
               "PATCH with an empty add_app_secret");
    expect_422(key_a, "PATCH", pa,
               "{\"app_secret\":\"" SECRET_A2 "\",\"add_app_secret\":\"" SECRET_ADD "\"}",
               "add_app_secret", "PATCH with app_secret and add_app_secret together");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE app_id = %lld", app_a), 1,
               "refused PATCHes changed no secret");

    tap_is_int(api(key_b, "PATCH", pa, "{\"name\":\"mine\"}", NULL), 404,
               "tenant B patching A's app: 404");
    tap_is_int(api(key_a, "PATCH", app_path(app_b), "{\"name\":\"mine\"}", NULL), 404,
               "tenant A patching B's app: 404");
    tap_is_int(api(key_a, "PATCH", app_path(app_shared), "{\"name\":\"mine\"}", NULL), 404,
               "a tenant patching the shared app: 404");
    tap_is_int(api(key_a, "PATCH", app_path(app_shared), "{}", NULL), 404,
               "even an empty PATCH of the shared app: 404");
    tap_is_int(api(key_a, "PATCH", "/v1/apps/999999", "{}", NULL), 404, "PATCH of no app: 404");
    tap_ok(h_db_int(&db, "SELECT count(*) FROM apps WHERE name = 'mine'") == 0,
           "no refused PATCH renamed anything");
    tap_is_int(api(H_ADMIN_TOKEN, "PATCH", app_path(app_shared), "{\"name\":\"shared-2\"}", &body),
               200, "the operator patches the shared app");
    tap_contains(body, "\"name\": \"shared-2\"", "and the name changed");
    free(body);
    tap_is_int(api(H_ADMIN_TOKEN, "PATCH", app_path(app_b), "{\"name\":\"by-operator\"}", NULL),
               200, "the operator patches tenant B's app");

    /* Replacing the secret. */
    tap_is_int(api(key_a, "PATCH", pa, "{\"app_secret\":\"" SECRET_A2 "\"}", &body), 200,
               "PATCH app_secret: 200");
    tap_contains(body,
                 "\"app_secret_hints\": [\"\xe2\x80\xa6"
                 "3210\"]",
                 "app_secret replaces every secret: one hint, the new one");
    tap_ok(!has_plaintext(body), "the PATCH answer holds no secret");
    free(body);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE app_id = %lld", app_a), 1,
               "one secret row is left");
    tap_is_int(deliver_until("1001", SECRET_A2, &n_delivery, 200), 200,
               "the new secret signs deliveries (after the cache refresh)");
    tap_is_int(deliver_until("1001", SECRET_A, &n_delivery, 403), 403,
               "the old secret no longer does");

    /* Adding secrets. */
    tap_is_int(api(key_a, "PATCH", pa, "{\"add_app_secret\":\"" SECRET_ADD "\"}", &body), 200,
               "PATCH add_app_secret: 200");
    tap_contains(body,
                 "\"app_secret_hints\": [\"\xe2\x80\xa6"
                 "3210\", \"\xe2\x80\xa6"
                 "1111\"]",
                 "both hints are listed, oldest first");
    free(body);
    tap_is_int(deliver_until("1001", SECRET_ADD, &n_delivery, 200), 200, "the added secret signs");
    tap_is_int(deliver("1001", SECRET_A2, n_delivery++), 200, "and the earlier one still does");
    for (int i = 3; i <= 5; i++) {
        char json[128];
        snprintf(json, sizeof(json), "{\"add_app_secret\":\"xtra-secret-%d-0000000\"}", i);
        tap_is_int(api(key_a, "PATCH", pa, json, NULL), 200, "adding live secret number %d: 200",
                   i);
    }
    expect_422(key_a, "PATCH", pa, "{\"add_app_secret\":\"xtra-secret-6-0000000\"}",
               "add_app_secret", "a sixth live secret");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE app_id = %lld", app_a), 5,
               "the app keeps 5 secrets");
    tap_is_int(api(key_a, "PATCH", pa, "{\"app_secret\":\"" SECRET_A2 "\"}", &body), 200,
               "app_secret with 5 live secrets replaces them all");
    tap_contains(body,
                 "\"app_secret_hints\": [\"\xe2\x80\xa6"
                 "3210\"]",
                 "leaving one");
    free(body);

    /* Changing the verify token. */
    tap_is_int(api(key_a, "PATCH", pa, "{\"verify_token\":\"" TOKEN_A2 "\"}", &body), 200,
               "PATCH verify_token: 200");
    tap_contains(body,
                 "\"verify_token_hint\": \"\xe2\x80\xa6"
                 "9911\"",
                 "verify_token_hint changed");
    free(body);
    tap_is_int(handshake("1001", TOKEN_A2), 200, "the new verify token passes the handshake");
    tap_is_int(deliver_until("1001", SECRET_A2, &n_delivery, 200), 200,
               "a verify token change keeps the secret");
    tap_is_int(api(key_a, "PATCH", pa, "{\"name\":null,\"graph_api_version\":null}", &body), 200,
               "null members leave the app unchanged");
    tap_contains(body, "\"name\": \"renamed\"", "the name is kept");
    free(body);
}

static void test_secrets_at_rest(void)
{
    char *dump = db_dump();
    tap_ok(strlen(dump) > 100, "apps and app_secrets dump as text");
    for (size_t i = 0; i < sizeof(PLAINTEXTS) / sizeof(PLAINTEXTS[0]); i++)
        tap_ok(strstr(dump, PLAINTEXTS[i]) == NULL, "no column holds plaintext #%zu in clear", i);
    free(dump);
    tap_is_int(
        h_db_int(&db, "SELECT count(*) FROM apps WHERE verify_token_sealed NOT LIKE 'hb1:%%'"), 0,
        "every verify token is sealed");
    tap_is_int(
        h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE secret_sealed NOT LIKE 'hb1:%%'"), 0,
        "every app secret is sealed");
    char *log = h_server_log(&srv);
    tap_ok(!has_plaintext(log), "the server log holds no secret or token");
    free(log);
}

static void test_delete(void)
{
    char *body = NULL;
    tap_is_int(api(key_b, "DELETE", app_path(app_a), NULL, NULL), 404,
               "tenant B deleting A's app: 404");
    tap_is_int(api(key_a, "DELETE", app_path(app_shared), NULL, NULL), 404,
               "a tenant deleting the shared app: 404");
    tap_is_int(api(key_a, "DELETE", app_path(app_b), NULL, NULL), 404,
               "tenant A deleting B's app: 404");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM apps WHERE id IN (%lld, %lld, %lld)", app_a,
                        app_shared, app_b),
               3, "refused DELETEs removed nothing");

    h_db_exec(&db,
              "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type, access_token_sealed,"
              " access_token_hint) VALUES (%lld, %lld, '17841400000000001', 'instagram_login',"
              " 'hb1:x', '')",
              tenant_a, app_a2);
    tap_is_int(api(key_a, "DELETE", app_path(app_a2), NULL, &body), 409,
               "deleting an app accounts still use: 409");
    tap_contains(body, "delete those accounts first", "the 409 says to delete the accounts first");
    free(body);
    h_db_exec(&db,
              "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type, access_token_sealed,"
              " access_token_hint) VALUES (%lld, %lld, '17841400000000002', 'instagram_login',"
              " 'hb1:x', '')",
              tenant_b, app_shared);
    tap_is_int(api(H_ADMIN_TOKEN, "DELETE", app_path(app_shared), NULL, NULL), 409,
               "the operator deleting a shared app a tenant's account uses: 409");
    h_db_exec(&db, "DELETE FROM accounts");
    tap_is_int(api(key_a, "DELETE", app_path(app_a2), NULL, NULL), 204,
               "once the accounts are gone the DELETE works: 204");

    long long deliveries =
        h_db_int(&db, "SELECT count(*) FROM deliveries WHERE app_id = %lld", app_a);
    long long events = h_db_int(&db, "SELECT count(*) FROM events WHERE app_id = %lld", app_a);
    tap_ok(deliveries > 0 && events > 0, "app 1001 has deliveries (%lld) and events (%lld)",
           deliveries, events);
    tap_is_int(api(key_a, "DELETE", app_path(app_a), NULL, &body), 204,
               "tenant A deletes its app: 204");
    tap_is_str(body, "", "the 204 has no body");
    free(body);
    tap_is_int(api(key_a, "GET", app_path(app_a), NULL, NULL), 404, "the deleted app answers 404");
    tap_is_int(api(key_a, "DELETE", app_path(app_a), NULL, NULL), 404, "deleting it again: 404");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE app_id = %lld", app_a), 0,
               "its secrets went with it");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries WHERE app_id = %lld", app_a),
               deliveries, "its deliveries are kept");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE app_id = %lld", app_a), events,
               "its events are kept");
    tap_is_int(deliver_until("1001", SECRET_A2, &n_delivery, 404), 404,
               "the webhook forgets the deleted app (after the cache refresh)");

    tap_is_int(api(H_ADMIN_TOKEN, "DELETE", app_path(app_b), NULL, NULL), 204,
               "the operator deletes tenant B's app: 204");
    tap_is_int(api(H_ADMIN_TOKEN, "DELETE", app_path(app_shared), NULL, NULL), 204,
               "the operator deletes the shared app: 204");
    tap_is_int(api(H_ADMIN_TOKEN, "DELETE", "/v1/apps/999999", NULL, NULL), 404,
               "DELETE of no app: 404");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM apps"), 1, "only the UTF-8 app is left");
}

int main(void)
{
    h_db_create(&db, "api_apps");
    const char *migrate[] = {"migrate", NULL};
    char *out = NULL;
    if (h_run(&db, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    const char *env[] = {"HUBBUB_APP_CACHE_TTL=0", NULL};
    h_server_start(&srv, &db, env);
    tenant_a = h_api_tenant(&srv, "acme", key_a);
    tenant_b = h_api_tenant(&srv, "beta", key_b);

    test_transport();
    test_create();
    test_create_validation();
    test_list();
    test_get();
    test_webhook();
    test_update();
    test_secrets_at_rest();
    test_delete();

    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "SIGTERM stops the server with status 0");
    h_db_drop(&db);
    return tap_done();
}
