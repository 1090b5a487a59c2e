/*
 * t_worker_subscribe.c - onboarding an account through the API leads, with
 * no further action, to a verified subscription at (the fake) Meta, visible
 * on the account; and the subscription follows the account through field
 * changes, a failing field name, drift, a rejected token and deletion.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define META_APP "5550000000001"
#define IG_NODE "17841400000000501"
#define IG_TOKEN "ig-token-0123456789-first"
#define IG_TOKEN2 "ig-token-0123456789-second"
#define PAGE_NODE "1000000000000777"
#define FB_IG "17841400000000502"
#define FB_TOKEN "page-token-0123456789"
#define PAGE_NODE2 "1000000000000778"
#define PAGE_NODE_NEW "1000000000000779"
#define FB_TOKEN_NEW "page-token-0123456789-new"
#define IG_NODE3 "17841400000000504"
#define IG_TOKEN3 "ig-token-0123456789-third"
#define IG_NODE4 "17841400000000505"
#define IG_TOKEN4 "ig-token-0123456789-fourth"
#define META_APP2 "5550000000009"
#define FB_IG2 "17841400000000503"
#define FB_TOKEN2 "page-token-0123456789-two"

static struct h_db db;
static struct h_server srv;
static char key[64];

static long api(const char *method, const char *path, const char *json, char **body)
{
    struct h_resp r;
    h_api(&r, &srv, key, method, path, json);
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return st;
}

static bool wait_state(long long acc, const char *state)
{
    return h_wait_sql(&db, state, H_WAIT_MS, "SELECT sub_state FROM accounts WHERE id = %lld", acc);
}

/* Whether one of the account's subscribe jobs ends in state after attempts
 * (periodic checks add jobs of their own, so "the latest" is not stable;
 * and the account is written just before its job's end is). */
static bool job_ends(long long acc, const char *state, int attempts)
{
    return h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT count(*) > 0 FROM jobs WHERE account_id = %lld AND kind = 'subscribe'"
                      " AND state = '%s' AND attempts = %d",
                      acc, state, attempts);
}

/* No request carried the token anywhere but the Authorization header. */
static void check_tokens(struct fg *fg, const char *what)
{
    size_t n;
    struct fg_request *rq = fg_requests(fg, &n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (rq[i].token_where != FG_TOKEN_HEADER || strstr(rq[i].query, "token") != NULL ||
            strstr(rq[i].path, "token") != NULL)
            bad++;
    tap_ok(n > 0 && bad == 0, "%s: all %zu calls sent the token in the header only", what, n);
    fg_requests_free(rq, n);
}

int main(void)
{
    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    struct fg *fb = fg_start(FG_FACEBOOK, "v25.0");
    if (ig == NULL || fb == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, IG_NODE, IG_TOKEN, META_APP);
    fg_add_node(fb, PAGE_NODE, FB_TOKEN, META_APP);

    h_db_create(&db, "worker_sub");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    const char *env[] = {fg_env(ig),
                         fg_env(fb),
                         "HUBBUB_WORKERS=2",
                         "HUBBUB_JOB_BACKOFF=100ms",
                         "HUBBUB_JOB_BACKOFF_MAX=400ms",
                         "HUBBUB_JOB_POLL_INTERVAL=200ms",
                         "HUBBUB_SUBSCRIPTION_CHECK_INTERVAL=300ms",
                         NULL};
    h_server_start(&srv, &db, env);
    h_api_tenant(&srv, "subs", key);
    char *b = NULL;
    if (api("POST", "/v1/apps",
            "{\"meta_app_id\":\"" META_APP "\",\"app_secret\":\"app-secret-0123456789\","
            "\"verify_token\":\"verify-0123456789\"}",
            &b) != 201)
        tap_bail("creating the app: %s", b);
    long long app = h_json_num(b, "id");
    free(b);

    /* ---- onboarding: create, and nothing else ---- */
    char json[1024], path[128];
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" IG_NODE "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"" IG_TOKEN "\",\"subscribed_fields\":[\"messages\",\"comments\"]}",
             app);
    tap_is_int(api("POST", "/v1/accounts", json, &b), 201, "account created");
    long long acc = h_json_num(b, "id");
    tap_contains(b, "\"state\": \"pending\"", "a new account's subscription is pending");
    free(b);
    tap_ok(fg_wait_fields(ig, IG_NODE, "comments,messages", H_WAIT_MS),
           "Meta holds the account's fields without any further call");
    tap_ok(wait_state(acc, "active"), "the subscription becomes active");
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc);
    tap_is_int(api("GET", path, NULL, &b), 200, "GET the account");
    tap_contains(b, "\"fields\": [\"comments\", \"messages\"]",
                 "subscription.fields shows what Meta holds");
    tap_contains(b, "\"last_error\": null", "no last_error");
    tap_ok(strstr(b, "\"last_checked_at\": null") == NULL, "last_checked_at is set");
    free(b);
    struct fg_match sub_post = {FG_SUBSCRIBE, IG_NODE, NULL};
    struct fg_match sub_get = {FG_SUBSCRIBED_GET, IG_NODE, NULL};
    tap_is_int(fg_count(ig, sub_post), 1, "one POST subscribed_apps");
    tap_ok(fg_count(ig, sub_get) >= 2, "the edge was read before and after writing");
    size_t n;
    struct fg_request *rq = fg_requests(ig, &n);
    bool seen_post = false;
    for (size_t i = 0; i < n; i++) {
        if (rq[i].kind != FG_SUBSCRIBE)
            continue;
        seen_post = true;
        tap_is_str(rq[i].path, "/v25.0/" IG_NODE "/subscribed_apps", "the POST's path");
        tap_is_str(rq[i].query, "subscribed_fields=comments,messages", "the POST's fields");
        tap_is_int(rq[i].status, 200, "Meta answered the POST 200");
    }
    fg_requests_free(rq, n);
    tap_ok(seen_post, "the POST was recorded");

    /* ---- changing the fields ---- */
    snprintf(path, sizeof(path), "/v1/accounts/%lld/subscribed_fields", acc);
    tap_is_int(
        api("PUT", path, "{\"subscribed_fields\":[\"messages\",\"message_reactions\"]}", NULL), 200,
        "fields changed");
    tap_ok(fg_wait_fields(ig, IG_NODE, "message_reactions,messages", H_WAIT_MS),
           "Meta follows the new fields");
    tap_ok(wait_state(acc, "active"), "active again");
    tap_ok(h_wait_sql(&db, "{message_reactions,messages}", H_WAIT_MS,
                      "SELECT sub_fields FROM accounts WHERE id = %lld", acc),
           "sub_fields follows");

    /* ---- Messenger Platform: the Page's edge, Messenger names ---- */
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" FB_IG "\",\"page_id\":\"" PAGE_NODE "\","
             "\"login_type\":\"messenger_platform\",\"access_token\":\"" FB_TOKEN "\","
             "\"subscribed_fields\":[\"messages\",\"messaging_seen\"]}",
             app);
    tap_is_int(api("POST", "/v1/accounts", json, &b), 201, "a Messenger-Platform account");
    long long acc_fb = h_json_num(b, "id");
    free(b);
    tap_ok(fg_wait_fields(fb, PAGE_NODE, "message_reads,messages", H_WAIT_MS),
           "the Page edge gets Messenger names (message_reads for messaging_seen)");
    tap_ok(wait_state(acc_fb, "active"), "the Messenger-Platform account becomes active");
    tap_ok(h_wait_sql(&db, "{messages,messaging_seen}", H_WAIT_MS,
                      "SELECT sub_fields FROM accounts WHERE id = %lld", acc_fb),
           "sub_fields shows our names");
    tap_is_int(fg_count(ig, (struct fg_match){FG_ANY, PAGE_NODE, NULL}), 0,
               "nothing about the Page went to graph.instagram.com");

    /* ---- moving to another Page unsubscribes the old one ---- */
    fg_add_node(fb, PAGE_NODE_NEW, FB_TOKEN_NEW, META_APP);
    char fb_path[64];
    snprintf(fb_path, sizeof(fb_path), "/v1/accounts/%lld", acc_fb);
    tap_is_int(api("PATCH", fb_path,
                   "{\"page_id\":\"" PAGE_NODE_NEW "\",\"access_token\":\"" FB_TOKEN_NEW "\"}",
                   NULL),
               200, "the account moves to another Page, with that Page's token");
    tap_ok(fg_wait_fields(fb, PAGE_NODE_NEW, "message_reads,messages", H_WAIT_MS),
           "the new Page is subscribed");
    tap_ok(fg_wait_fields(fb, PAGE_NODE, NULL, H_WAIT_MS), "and the old one unsubscribed");
    tap_ok(wait_state(acc_fb, "active"), "the account is active on its new Page");

    /* ---- Facebook Login: its fields are not on the Page edge ---- */
    fg_add_node(fb, PAGE_NODE2, FB_TOKEN2, META_APP);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" FB_IG2 "\",\"page_id\":\"" PAGE_NODE2 "\","
             "\"login_type\":\"facebook_login\",\"access_token\":\"" FB_TOKEN2 "\","
             "\"subscribed_fields\":[\"comments\",\"story_insights\"]}",
             app);
    tap_is_int(api("POST", "/v1/accounts", json, &b), 201, "a Facebook-Login account");
    long long acc_fl = h_json_num(b, "id");
    free(b);
    tap_ok(wait_state(acc_fl, "active"), "it becomes active once its Page edge is read");
    tap_is_int(fg_count(fb, (struct fg_match){FG_SUBSCRIBE, PAGE_NODE2, NULL}), 0,
               "no Instagram-only field was written to the Page edge");
    tap_ok(fg_count(fb, (struct fg_match){FG_SUBSCRIBED_GET, PAGE_NODE2, NULL}) >= 1,
           "the edge was read with the Page token");

    /* ---- one field name Meta does not take fails the whole call ---- */
    fg_set_valid_fields(ig, "comments,messages");
    fg_set_fields(ig, IG_NODE, "messages"); /* so the job must POST */
    tap_is_int(
        api("PUT", path, "{\"subscribed_fields\":[\"messages\",\"message_reactions\"]}", NULL), 200,
        "fields written again");
    tap_ok(wait_state(acc, "failed"), "a refused field name leaves the subscription failed");
    char *err = h_db_text(&db,
                          "SELECT sub_error->>'code' || ' ' || (sub_error->>'class') ||"
                          " ' ' || (sub_error->>'message') FROM accounts WHERE id = %lld",
                          acc);
    tap_contains(err, "100 permanent (#100) Param subscribed_fields",
                 "last_error holds Meta's code 100 and message");
    tap_diag("last_error: %s", err);
    free(err);
    tap_ok(job_ends(acc, "failed", 1),
           "a permanent error fails the job at once, after one attempt");
    fg_set_valid_fields(ig, NULL);

    /* ---- a temporary failure is retried with backoff ---- */
    fg_reset_records(ig);
    fg_fail(ig, sub_post, FG_HTTP_500, 2);
    tap_is_int(api("PUT", path, "{\"subscribed_fields\":[\"messages\",\"comments\"]}", NULL), 200,
               "fields written again");
    tap_ok(wait_state(acc, "active"), "after two HTTP 500s the subscription becomes active");
    tap_ok(fg_wait_fields(ig, IG_NODE, "comments,messages", H_WAIT_MS), "Meta holds them");
    tap_ok(job_ends(acc, "succeeded", 3), "the job succeeded at its third attempt");
    rq = fg_requests(ig, &n);
    int64_t posts[3];
    int np = 0;
    for (size_t i = 0; i < n && np < 3; i++)
        if (rq[i].kind == FG_SUBSCRIBE)
            posts[np++] = rq[i].arrived_us;
    fg_requests_free(rq, n);
    tap_is_int(np, 3, "three POSTs");
    if (np == 3) {
        /* HUBBUB_JOB_BACKOFF=100ms: the first retry waits 50-100 ms, the
         * second 100-200 ms (equal jitter); only lower bounds are checked. */
        int64_t gap1 = (posts[1] - posts[0]) / 1000, gap2 = (posts[2] - posts[1]) / 1000;
        tap_ok(gap1 >= 45, "the first retry waited (%lld ms)", (long long)gap1);
        tap_ok(gap2 >= 95, "the second retry waited longer (%lld ms)", (long long)gap2);
    }

    /* ---- drift: Meta loses a field; the periodic check repairs it ---- */
    fg_set_fields(ig, IG_NODE, "comments");
    tap_ok(fg_wait_fields(ig, IG_NODE, "comments,messages", H_WAIT_MS),
           "the periodic check writes the missing field back");
    tap_ok(wait_state(acc, "active"), "still active after the repair");

    /* ---- a check that finds no drift only reads ---- */
    long posts_before = fg_count(ig, sub_post);
    char *checked = h_db_text(&db, "SELECT sub_checked_at FROM accounts WHERE id = %lld", acc);
    tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT sub_checked_at > '%s'::timestamptz + interval '300 ms'"
                      " FROM accounts WHERE id = %lld",
                      checked, acc),
           "the periodic check runs again");
    free(checked);
    tap_is_int(fg_count(ig, sub_post), posts_before, "and, finding no drift, writes nothing");

    /* ---- a new token for an active account is checked at once ---- */
    long gets_before = fg_count(ig, sub_get);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc);
    tap_is_int(api("PATCH", path, "{\"access_token\":\"" IG_TOKEN "\"}", NULL), 200,
               "the token is replaced");
    tap_ok(fg_wait_requests(ig, sub_get, gets_before + 1, H_WAIT_MS),
           "the edge is read with the new token");
    tap_ok(wait_state(acc, "active"), "and the account is active again");
    snprintf(path, sizeof(path), "/v1/accounts/%lld/subscribed_fields", acc);

    /* ---- a rejected token holds the account until a new one comes ---- */
    fg_set_token(ig, IG_NODE, NULL);
    tap_is_int(api("PUT", path, "{\"subscribed_fields\":[\"messages\"]}", NULL), 200,
               "fields changed while the token is dead");
    tap_ok(wait_state(acc, "token_invalid"), "code 190 marks the account token_invalid");
    tap_ok(h_wait_sql(&db, "queued", H_WAIT_MS,
                      "SELECT state FROM jobs WHERE account_id = %lld AND kind = 'subscribe'"
                      " ORDER BY id DESC LIMIT 1",
                      acc),
           "its job is held, queued");
    long before = fg_count(ig, (struct fg_match){FG_ANY, IG_NODE, NULL});
    h_sleep_ms(500); /* several poll intervals: the held job must not run */
    tap_is_int(fg_count(ig, (struct fg_match){FG_ANY, IG_NODE, NULL}), before,
               "no call is made while the token is invalid");
    fg_set_token(ig, IG_NODE, IG_TOKEN2);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc);
    tap_is_int(api("PATCH", path, "{\"access_token\":\"" IG_TOKEN2 "\"}", NULL), 200,
               "a new token");
    tap_ok(wait_state(acc, "active"), "the new token releases the job: active");
    tap_ok(fg_wait_fields(ig, IG_NODE, "messages", H_WAIT_MS), "and Meta holds the new fields");
    check_tokens(ig, "instagram");
    check_tokens(fb, "facebook");

    /* ---- deleting the account unsubscribes ---- */
    tap_is_int(api("DELETE", path, NULL, NULL), 204, "account deleted");
    tap_ok(fg_wait_requests(ig, (struct fg_match){FG_UNSUBSCRIBE, IG_NODE, NULL}, 1, H_WAIT_MS),
           "a DELETE reached the edge");
    tap_ok(fg_wait_fields(ig, IG_NODE, NULL, H_WAIT_MS), "Meta holds no fields any more");
    tap_ok(h_wait_sql(&db, "succeeded", H_WAIT_MS,
                      "SELECT state FROM jobs WHERE kind = 'unsubscribe' ORDER BY id DESC LIMIT 1"),
           "the unsubscribe job succeeded");

    /* ---- deleted while its subscribe job is at Meta ---- */
    fg_add_node(ig, IG_NODE3, IG_TOKEN3, META_APP);
    fg_set_latency_ms(ig, 300);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" IG_NODE3 "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"" IG_TOKEN3 "\",\"subscribed_fields\":[\"messages\"]}",
             app);
    tap_is_int(api("POST", "/v1/accounts", json, &b), 201, "another account");
    long long acc3 = h_json_num(b, "id");
    free(b);
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    while (fg_count(ig, (struct fg_match){FG_SUBSCRIBED_GET, IG_NODE3, NULL}) < 1 &&
           h_now_ms() < deadline)
        h_sleep_ms(5);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc3);
    tap_is_int(api("DELETE", path, NULL, NULL), 204, "deleted while its subscription is written");
    tap_ok(fg_wait_requests(ig, (struct fg_match){FG_UNSUBSCRIBE, IG_NODE3, NULL}, 1, H_WAIT_MS),
           "the DELETE reaches the edge");
    fg_set_latency_ms(ig, 0);
    char *held = fg_fields(ig, IG_NODE3);
    tap_ok(held == NULL, "after the running job's POST, not before: Meta holds nothing (%s)",
           held != NULL ? held : "none");
    free(held);

    /* ---- deleting a tenant unsubscribes its accounts ---- */
    char key2[64];
    h_api_tenant(&srv, "leaving", key2);
    fg_add_node(ig, IG_NODE4, IG_TOKEN4, META_APP2);
    struct h_resp r;
    h_api(&r, &srv, key2, "POST", "/v1/apps",
          "{\"meta_app_id\":\"" META_APP2 "\",\"app_secret\":\"app-secret-0123456789\","
          "\"verify_token\":\"verify-0123456789\"}");
    long long app2 = h_json_num(r.body, "id");
    h_resp_free(&r);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" IG_NODE4 "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"" IG_TOKEN4 "\",\"subscribed_fields\":[\"comments\"]}",
             app2);
    h_api(&r, &srv, key2, "POST", "/v1/accounts", json);
    long long acc4 = h_json_num(r.body, "id");
    h_resp_free(&r);
    tap_ok(wait_state(acc4, "active"), "the other tenant's account is subscribed");
    long long tenant2 = h_db_int(&db, "SELECT tenant_id FROM accounts WHERE id = %lld", acc4);
    snprintf(path, sizeof(path), "/v1/tenants/%lld", tenant2);
    h_api(&r, &srv, H_ADMIN_TOKEN, "DELETE", path, NULL);
    tap_is_int(r.status, 204, "the tenant is deleted");
    h_resp_free(&r);
    tap_ok(fg_wait_fields(ig, IG_NODE4, NULL, H_WAIT_MS),
           "its account's subscription is deleted at Meta too");

    /* No token in the server's log, whatever happened. */
    char *log = h_server_log(&srv);
    tap_ok(strstr(log, IG_TOKEN) == NULL && strstr(log, IG_TOKEN2) == NULL &&
               strstr(log, FB_TOKEN) == NULL && strstr(log, FB_TOKEN_NEW) == NULL,
           "no access token in the server log");
    free(log);

    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "server exits 0");
    fg_stop(ig);
    fg_stop(fb);
    h_db_drop(&db);
    return tap_done();
}
