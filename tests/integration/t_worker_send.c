/*
 * t_worker_send.c - replies through the outbox: a reply posted to the API
 * reaches the (fake) Send API exactly once in the normal case, survives
 * temporary failures, stops at permanent ones, waits out rate limits, waits
 * for a new token after a 190, keeps a conversation's order, is linked to
 * the echo webhook of the message it became, and, still in its call when
 * the shutdown timeout ends, is put back in the queue for the next process.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define META_APP "5550000000002"
#define APP_SECRET "send-app-secret-0123456789"
#define NODE "17841400000000601"
#define TOKEN "send-token-0123456789-a"
#define TOKEN2 "send-token-0123456789-b"
#define TOKEN3 "send-token-0123456789-c"

static struct h_db db;
static struct h_server srv;
static struct fg *ig;
static char key[64];
static long long acc;

/* POSTs a reply; returns its id (or -1) and the status in *status. */
static long long post_msg(const char *recipient, const char *text, const char *idem, long *status)
{
    char url[256], auth[128], idh[128], json[512];
    snprintf(url, sizeof(url), "%s/v1/accounts/%lld/messages", srv.base, acc);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    snprintf(idh, sizeof(idh), "Idempotency-Key: %s", idem != NULL ? idem : "");
    snprintf(json, sizeof(json), "{\"recipient_id\":\"%s\",\"text\":\"%s\"}", recipient, text);
    const char *headers[] = {auth, "Content-Type: application/json", idem != NULL ? idh : NULL,
                             NULL};
    struct h_resp r;
    h_http(&r, "POST", url, headers, json, strlen(json));
    if (status != NULL)
        *status = r.status;
    long long id = r.status == 202 ? h_json_num(r.body, "id") : -1;
    if (r.status != 202)
        tap_diag("POST message: %ld %s", r.status, r.body != NULL ? r.body : r.error);
    h_resp_free(&r);
    return id;
}

/* "state attempts" of the message's job once it is in state want. */
static bool wait_job(long long msg, const char *want)
{
    return h_wait_sql(&db, want, H_WAIT_MS,
                      "SELECT state || ' ' || attempts FROM jobs WHERE message_id = %lld", msg);
}

/* The query's first value is want. */
static void is_sql(const char *want, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void is_sql(const char *want, const char *what, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    char *got = h_db_text(&db, "%s", sql);
    tap_is_str(got, want, "%s", what);
    free(got);
}

static void post_echo(const char *recipient, const char *mid)
{
    char body[1024];
    int n =
        snprintf(body, sizeof(body),
                 "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" NODE "\",\"time\":1700000000,"
                 "\"messaging\":[{\"sender\":{\"id\":\"" NODE "\"},\"recipient\":{\"id\":\"%s\"},"
                 "\"timestamp\":1700000000123,\"message\":{\"mid\":\"%s\",\"text\":\"echo\","
                 "\"is_echo\":true}}]}]}",
                 recipient, mid);
    struct h_resp r;
    h_post_signed(&r, &srv, META_APP, APP_SECRET, body, (size_t)n);
    tap_is_int(r.status, 200, "the echo webhook is stored");
    h_resp_free(&r);
}

/* Meta's mid of the only accepted send with text, or "". Caller frees. */
static char *mid_of(const char *text)
{
    size_t n;
    struct fg_send *s = fg_sent(ig, NODE, NULL, &n);
    char *mid = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].text, text) == 0)
            mid = strdup(s[i].message_id);
    fg_sent_free(s, n);
    return mid != NULL ? mid : strdup("");
}

static long sends_of(const char *text)
{
    size_t n;
    struct fg_send *s = fg_sent(ig, NODE, NULL, &n);
    long count = 0;
    for (size_t i = 0; i < n; i++)
        count += strcmp(s[i].text, text) == 0;
    fg_sent_free(s, n);
    return count;
}

static void permanent(enum fg_mode mode, const char *text, const char *code, const char *what)
{
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "900"}, mode, 1);
    long long m = post_msg("900", text, NULL, NULL);
    tap_ok(wait_job(m, "failed 1"), "%s: failed at once, after one attempt", what);
    is_sql(code, "the last error has Meta's code",
           "SELECT last_error->>'code' FROM jobs WHERE message_id = %lld", m);
}

int main(void)
{
    ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, NODE, TOKEN, META_APP);
    h_db_create(&db, "worker_send");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    const char *env[] = {fg_env(ig),
                         "HUBBUB_WORKERS=4",
                         "HUBBUB_JOB_BACKOFF=50ms",
                         "HUBBUB_JOB_BACKOFF_MAX=200ms",
                         "HUBBUB_JOB_POLL_INTERVAL=200ms",
                         "HUBBUB_GRAPH_TIMEOUT=1s",
                         "HUBBUB_GRAPH_MAX_PAUSE=300ms",
                         "HUBBUB_JOB_MAX_ATTEMPTS=4",
                         "HUBBUB_API_RATE=10000",
                         "HUBBUB_API_BURST=10000",
                         NULL};
    h_server_start(&srv, &db, env);
    h_api_tenant(&srv, "sender", key);
    struct h_resp r;
    long status;
    acc = h_api_ig_account(&srv, key, META_APP, APP_SECRET, "verify-0123456789", NODE, TOKEN,
                           "messages", &status);
    if (status != 201)
        tap_bail("creating the account: %ld", status);

    /* ---- the normal case: exactly once ---- */
    long st;
    long long m1 = post_msg("111", "hello", "key-1", &st);
    tap_is_int(st, 202, "a reply is accepted: 202");
    tap_ok(fg_wait_sends_to(ig, NODE, "111", 1, H_WAIT_MS), "it reaches the Send API");
    tap_ok(wait_job(m1, "succeeded 1"), "its job succeeded at the first attempt");
    char *mid = mid_of("hello");
    is_sql(mid, "Meta's message_id is stored",
           "SELECT meta_message_id FROM messages WHERE id = %lld", m1);
    char path[128];
    snprintf(path, sizeof(path), "/v1/messages/%lld", m1);
    h_api(&r, &srv, key, "GET", path, NULL);
    tap_is_int(r.status, 200, "GET the message");
    tap_contains(r.body, "\"state\": \"sent\"", "its state is sent");
    tap_contains(r.body, mid, "it shows Meta's message_id");
    h_resp_free(&r);
    size_t n;
    struct fg_request *rq = fg_requests(ig, &n);
    for (size_t i = 0; i < n; i++) {
        if (rq[i].kind != FG_SEND)
            continue;
        tap_is_str(rq[i].path, "/v25.0/" NODE "/messages", "the Send API path");
        tap_ok(rq[i].token_where == FG_TOKEN_HEADER, "the token came in the header");
        tap_contains(rq[i].body, "\"recipient\"", "the body names the recipient");
        tap_contains(rq[i].body, "\"text\"", "the body holds the text");
        break;
    }
    fg_requests_free(rq, n);
    tap_is_int(post_msg("111", "hello", "key-1", NULL), m1, "the same Idempotency-Key: same id");
    h_sleep_ms(300);
    tap_is_int(sends_of("hello"), 1, "and nothing is sent again");

    /* ---- the echo links to the outbox row (the answer came first) ---- */
    post_echo("111", mid);
    tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT echo_event_id IS NOT NULL FROM messages WHERE id = %lld", m1),
           "the echo webhook is linked to the message by mid");
    is_sql("message_echoes", "to the message_echoes event",
           "SELECT e.field FROM messages m JOIN events e ON e.id = m.echo_event_id"
           " WHERE m.id = %lld",
           m1);
    free(mid);

    /* ---- ... and when the echo comes before the Send API's answer ---- */
    fg_set_slow_ms(ig, 700);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "112"}, FG_SLOW_ACCEPTED, 1);
    long long m_early = post_msg("112", "early echo", NULL, NULL);
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    while (fg_sends(ig, NODE, "112") < 1 && h_now_ms() < deadline)
        h_sleep_ms(5); /* accepted, its answer still held back */
    tap_is_int(fg_sends(ig, NODE, "112"), 1, "a slow send is accepted");
    mid = mid_of("early echo");
    post_echo("112", mid);
    is_sql("t", "the echo is stored before the Send API's answer",
           "SELECT meta_message_id IS NULL FROM messages WHERE id = %lld", m_early);
    tap_ok(wait_job(m_early, "succeeded 1"), "the slow send succeeds");
    tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT echo_event_id IS NOT NULL FROM messages WHERE id = %lld", m_early),
           "the earlier echo is linked when the message_id is stored");
    free(mid);

    /* ---- a job whose outcome was lost runs again but does not resend ---- */
    h_db_exec(&db, "UPDATE jobs SET state = 'queued', run_at = now() WHERE message_id = %lld", m1);
    h_db_exec(&db, "NOTIFY hubbub_jobs");
    tap_ok(wait_job(m1, "succeeded 2"), "a sent reply's job run again succeeds");
    tap_is_int(sends_of("hello"), 1, "without sending it again: its message_id is stored");

    /* ---- temporary failures are retried ---- */
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "222"}, FG_ERR_2, 2);
    long long m2 = post_msg("222", "retry me", NULL, NULL);
    tap_ok(wait_job(m2, "succeeded 3"), "after two code-2 errors the third attempt succeeds");
    tap_is_int(sends_of("retry me"), 1, "delivered exactly once");
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "223"}, FG_HTTP_500, 1);
    long long m3 = post_msg("223", "after a 500", NULL, NULL);
    tap_ok(wait_job(m3, "succeeded 2"), "an HTTP 500 without an error object is retried");
    is_sql("t", "success clears last_error",
           "SELECT last_error IS NULL FROM jobs WHERE message_id = %lld", m3);

    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "224"}, FG_ERR_1200, 1);
    long long m_1200 = post_msg("224", "after a 1200", NULL, NULL);
    tap_ok(wait_job(m_1200, "succeeded 2"), "code 1200 is retried");
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "888"}, FG_ERR_2, 5);
    long long m_dead = post_msg("888", "never", NULL, NULL);
    tap_ok(wait_job(m_dead, "dead 4"), "after HUBBUB_JOB_MAX_ATTEMPTS=4 failures the job is dead");
    snprintf(path, sizeof(path), "/v1/messages/%lld", m_dead);
    h_api(&r, &srv, key, "GET", path, NULL);
    tap_contains(r.body, "\"state\": \"dead\"", "the reply shows dead");
    tap_contains(r.body, "\"code\": 2", "with Meta's last error");
    h_resp_free(&r);

    /* ---- the operator sees the dead job; a tenant key does not ---- */
    snprintf(path, sizeof(path), "/v1/jobs?state=dead&kind=send&account=%lld", acc);
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", path, NULL);
    tap_is_int(r.status, 200, "GET /v1/jobs?state=dead as the operator");
    tap_is_int(h_json_num(r.body, "message_id"), m_dead, "lists the dead reply's job");
    tap_contains(r.body, "\"code\": 2", "with its last error");
    tap_ok(strstr(r.body, "payload") == NULL && strstr(r.body, "sealed") == NULL, "and no payload");
    h_resp_free(&r);
    h_api(&r, &srv, key, "GET", "/v1/jobs", NULL);
    tap_is_int(r.status, 404, "a tenant key gets 404");
    h_resp_free(&r);
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", "/v1/jobs?state=stuck", NULL);
    tap_is_int(r.status, 400, "an unknown state is a 400");
    h_resp_free(&r);

    /* ---- a dead reply can be sent again; a sent one cannot ---- */
    snprintf(path, sizeof(path), "/v1/messages/%lld/retry", m_dead);
    h_api(&r, &srv, key, "POST", path, "{}");
    tap_is_int(r.status, 202, "POST /v1/messages/{id}/retry on a dead reply: 202");
    tap_contains(r.body, "\"text\": \"never\"", "answering the reply");
    h_resp_free(&r);
    tap_ok(wait_job(m_dead, "succeeded 2"),
           "it goes out (the fake's fifth code 2 takes the first attempt)");
    tap_is_int(sends_of("never"), 1, "once");
    h_api(&r, &srv, key, "POST", path, "{}");
    tap_is_int(r.status, 409, "a sent reply cannot be retried: 409");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/messages/%lld/retry", m1);
    h_api(&r, &srv, key, "POST", path, "{\"now\":true}");
    tap_is_int(r.status, 422, "a retry takes no members");
    h_resp_free(&r);

    /* ---- permanent errors fail at once ---- */
    permanent(FG_ERR_10_WINDOW, "too late", "10", "code 10 / 2018278 (outside the window)");
    permanent(FG_ERR_100, "bad param", "100", "code 100");
    permanent(FG_ERR_551, "unavailable", "551", "code 551");
    permanent(FG_ERR_200, "no permission", "200", "code 200");
    tap_is_int(sends_of("too late") + sends_of("bad param") + sends_of("unavailable") +
                   sends_of("no permission"),
               0, "none of them was delivered");

    /* ---- rate limits pause the account, or the app, and do not count ---- */
    fg_set_regain_minutes(ig, 1); /* capped by HUBBUB_GRAPH_MAX_PAUSE=300ms */
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "333"}, FG_ERR_613, 1);
    long long m4 = post_msg("333", "throttled", NULL, NULL);
    tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT paused_until IS NOT NULL FROM accounts WHERE id = %lld", acc),
           "code 613 pauses the account");
    tap_ok(wait_job(m4, "succeeded 1"), "the reply goes out after the pause; it did not count");
    is_sql("true", "the pause was capped by HUBBUB_GRAPH_MAX_PAUSE",
           "SELECT (paused_until - now() < interval '1 second')::text FROM accounts"
           " WHERE id = %lld",
           acc);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "334"}, FG_ERR_4, 1);
    long long m5 = post_msg("334", "app throttled", NULL, NULL);
    tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                      "SELECT paused_until IS NOT NULL FROM apps WHERE meta_app_id = '%lld'",
                      5550000000002LL),
           "code 4 pauses the app");
    tap_ok(wait_job(m5, "succeeded 1"), "and the reply goes out after it");

    /* ---- the other rate limits, and a policy block ---- */
    static const struct {
        enum fg_mode mode;
        const char *recipient, *what;
    } limits[] = {{FG_ERR_17, "335", "code 17"},
                  {FG_ERR_32, "336", "code 32"},
                  {FG_ERR_80002, "337", "code 80002"},
                  {FG_ERR_368, "338", "code 368 (policy block)"}};
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        h_db_exec(&db, "UPDATE accounts SET paused_until = NULL");
        fg_fail(ig, (struct fg_match){FG_SEND, NODE, limits[i].recipient}, limits[i].mode, 1);
        long long m = post_msg(limits[i].recipient, limits[i].what, NULL, NULL);
        tap_ok(h_wait_sql(&db, "t", H_WAIT_MS,
                          "SELECT paused_until IS NOT NULL FROM accounts WHERE id = %lld", acc),
               "%s pauses the account", limits[i].what);
        tap_ok(wait_job(m, "succeeded 1"), "%s: sent after the pause, not counted as an attempt",
               limits[i].what);
    }

    /* ---- a 190 for a token replaced meanwhile holds nothing ---- */
    fg_set_latency_ms(ig, 600);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "777"}, FG_ERR_190, 1);
    long long m_old = post_msg("777", "old token", NULL, NULL);
    deadline = h_now_ms() + H_WAIT_MS;
    while (fg_count(ig, (struct fg_match){FG_SEND, NODE, "777"}) < 1 && h_now_ms() < deadline)
        h_sleep_ms(5);
    fg_set_token(ig, NODE, TOKEN3);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc);
    h_api(&r, &srv, key, "PATCH", path, "{\"access_token\":\"" TOKEN3 "\"}");
    tap_is_int(r.status, 200, "the token is replaced while a send with the old one is out");
    h_resp_free(&r);
    /* Watch the account until the send is done: the old token's 190 must
     * never mark it (the subscribe job of the new token would hide that a
     * moment later). */
    bool was_invalid = false;
    deadline = h_now_ms() + H_WAIT_MS;
    char *job_st = NULL;
    for (;;) {
        char *acc_state = h_db_text(&db, "SELECT sub_state FROM accounts WHERE id = %lld", acc);
        was_invalid |= strcmp(acc_state, "token_invalid") == 0;
        free(acc_state);
        free(job_st);
        job_st = h_db_text(&db, "SELECT state || ' ' || attempts FROM jobs WHERE message_id = %lld",
                           m_old);
        if (strcmp(job_st, "succeeded 1") == 0 || h_now_ms() > deadline)
            break;
        h_sleep_ms(5);
    }
    tap_is_str(job_st, "succeeded 1", "the send refused with 190 goes out with the new token");
    free(job_st);
    fg_set_latency_ms(ig, 0);
    tap_ok(!was_invalid, "the new token was never marked invalid by the old one's 190");
    fg_set_token(ig, NODE, TOKEN);
    h_api(&r, &srv, key, "PATCH", path, "{\"access_token\":\"" TOKEN "\"}");
    h_resp_free(&r);

    /* ---- 190 holds the account's replies until a new token ---- */
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "444"}, FG_ERR_190, 1);
    long long m6 = post_msg("444", "first", NULL, NULL);
    tap_ok(h_wait_sql(&db, "token_invalid", H_WAIT_MS,
                      "SELECT sub_state FROM accounts WHERE id = %lld", acc),
           "code 190 marks the account token_invalid");
    long long m7 = post_msg("444", "second", NULL, NULL);
    long long m8 = post_msg("445", "other recipient", NULL, NULL);
    snprintf(path, sizeof(path), "/v1/messages/%lld", m7);
    h_api(&r, &srv, key, "GET", path, NULL);
    tap_contains(r.body, "\"state\": \"held\"", "a reply queued meanwhile shows held");
    h_resp_free(&r);
    long before = fg_count(ig, (struct fg_match){FG_SEND, NODE, NULL});
    h_sleep_ms(500); /* several poll intervals */
    tap_is_int(fg_count(ig, (struct fg_match){FG_SEND, NODE, NULL}), before,
               "nothing is sent while the token is invalid");
    fg_set_token(ig, NODE, TOKEN2);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc);
    h_api(&r, &srv, key, "PATCH", path, "{\"access_token\":\"" TOKEN2 "\"}");
    tap_is_int(r.status, 200, "a new token");
    h_resp_free(&r);
    tap_ok(wait_job(m6, "succeeded 1") && wait_job(m7, "succeeded 1") &&
               wait_job(m8, "succeeded 1"),
           "the held replies go out with the new token");
    char *texts = fg_sent_texts(ig, NODE, "444");
    tap_is_str(texts, "first\nsecond", "in their order");
    free(texts);

    /* ---- a conversation keeps its order, through a retry ---- */
    fg_set_latency_ms(ig, 2);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "555"}, FG_ERR_1, 1);
    char want[1024] = "";
    long long last = 0;
    for (int i = 0; i < 30; i++) {
        char text[16];
        snprintf(text, sizeof(text), "o%02d", i);
        last = post_msg("555", text, NULL, NULL);
        post_msg("556", text, NULL, NULL); /* another conversation, in parallel */
        strcat(want, text);
        if (i < 29)
            strcat(want, "\n");
    }
    tap_ok(wait_job(last, "succeeded 1"), "the last of 30 replies is sent");
    texts = fg_sent_texts(ig, NODE, "555");
    tap_is_str(texts, want, "30 replies arrive in the order they were posted");
    free(texts);
    tap_is_int(fg_max_in_flight(ig, NODE, "555"), 1, "never two sends of one conversation at once");
    fg_set_latency_ms(ig, 0);

    /* ---- a send that timed out after Meta took it is retried ---- */
    fg_set_slow_ms(ig, 1500); /* past HUBBUB_GRAPH_TIMEOUT=1s */
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "666"}, FG_SLOW_ACCEPTED, 1);
    long long m9 = post_msg("666", "maybe twice", NULL, NULL);
    tap_ok(wait_job(m9, "succeeded 2"), "a timed-out send is retried and succeeds");
    tap_is_int(sends_of("maybe twice"), 2,
               "Meta got it twice: the duplicate the README warns of (no idempotency key)");
    is_sql("t", "the message ends sent",
           "SELECT last_error IS NULL FROM jobs WHERE message_id = %lld", m9);

    char *log = h_server_log(&srv);
    tap_ok(strstr(log, TOKEN) == NULL && strstr(log, TOKEN2) == NULL && strstr(log, TOKEN3) == NULL,
           "no access token in the server log");
    free(log);
    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "server exits 0");

    /* ---- a send still in its call when the shutdown timeout ends ---- */
    const char *env_short[] = {fg_env(ig),
                               "HUBBUB_WORKERS=1",
                               "HUBBUB_JOB_POLL_INTERVAL=200ms",
                               "HUBBUB_GRAPH_TIMEOUT=10s",
                               "HUBBUB_SHUTDOWN_TIMEOUT=300ms",
                               NULL};
    h_server_start(&srv, &db, env_short);
    fg_set_slow_ms(ig, 3000);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, "777"}, FG_SLOW, 1);
    long long m10 = post_msg("777", "cut short", NULL, NULL);
    deadline = h_now_ms() + H_WAIT_MS;
    while (fg_faults_left(ig) > 0 && h_now_ms() < deadline)
        h_sleep_ms(10);
    tap_ok(fg_faults_left(ig) == 0 && wait_job(m10, "running 1"), "a send waits on a slow Meta");
    int64_t t0 = h_now_ms();
    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "SIGTERM: hubbub exits 0 without waiting for it");
    int64_t took = h_now_ms() - t0;
    tap_ok(took < 2000, "within the shutdown timeout, not the call's (%lld ms)", (long long)took);
    log = h_server_log(&srv);
    tap_contains(log, "left_behind=threads",
                 "  it ends without the libraries' exit handlers, the call's thread still in them");
    free(log);
    is_sql("queued 0 released", "its job is put back in the queue, its attempt given back",
           "SELECT state || ' ' || attempts || ' ' || (last_error->>'class') FROM jobs"
           " WHERE message_id = %lld",
           m10);
    h_server_start(&srv, &db, env);
    tap_ok(wait_job(m10, "succeeded 1"), "the next process sends it");
    tap_is_int(sends_of("cut short"), 1, "once");
    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "server exits 0");
    fg_stop(ig);
    h_db_drop(&db);
    return tap_done();
}
