/*
 * t_api_messages.c - the replies outbox: POST /v1/accounts/{id}/messages,
 * GET /v1/accounts/{id}/messages, GET /v1/messages/{id}.
 *
 * The server runs with HUBBUB_WORKERS=0, so no job is ever claimed: states
 * are set by hand in SQL where a test needs one. Checked: the 202 with its
 * representation and Location; the exact Send API body stored and the send
 * job queued with it; every validation; Idempotency-Key (replay, conflict,
 * per-tenant keys, 20 concurrent identical posts, bad keys); paging, the
 * state filter and every state of the mapping; tenant isolation.
 *
 * JSON answers are read with PostgreSQL's jsonb operators on the test's own
 * connection, so the checks do not depend on how the server spaces its JSON.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "tests/integration/harness.h"

#define OP H_ADMIN_TOKEN
#define CONCURRENT 20

static struct h_db db;
static struct h_server srv;
static char key_a[64], key_b[64];
static long long ta, tb, acc_a, acc_a2, acc_list, acc_b;

struct answer {
    long status;
    char *body;
    char *headers;
};

static void answer_free(struct answer *a)
{
    free(a->body);
    free(a->headers);
    memset(a, 0, sizeof(*a));
}

/* Calls the API with an optional Idempotency-Key (key NULL: none; extra: one
 * more raw header line, may be NULL). */
static void call(struct answer *a, const char *token, const char *method, const char *path,
                 const char *json, const char *key, const char *extra)
{
    char url[8192], auth[128], idem[1024];
    snprintf(url, sizeof(url), "%s%s", srv.base, path);
    const char *headers[5] = {NULL};
    int n = 0;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    headers[n++] = auth;
    if (json != NULL)
        headers[n++] = "Content-Type: application/json";
    if (key != NULL) {
        /* curl sends "Name;" as an empty header. */
        if (key[0] == '\0')
            snprintf(idem, sizeof(idem), "Idempotency-Key;");
        else
            snprintf(idem, sizeof(idem), "Idempotency-Key: %s", key);
        headers[n++] = idem;
    }
    if (extra != NULL)
        headers[n++] = extra;
    struct h_resp r;
    h_http(&r, method, url, headers, json, json != NULL ? strlen(json) : 0);
    if (r.status == 0)
        tap_diag("%s %s: %s", method, path, r.error);
    a->status = r.status;
    a->body = strdup(r.body != NULL ? r.body : "");
    a->headers = strdup(r.headers != NULL ? r.headers : "");
    h_resp_free(&r);
}

static void post(struct answer *a, const char *token, long long account, const char *json,
                 const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages", account);
    call(a, token, "POST", path, json, key, NULL);
}

/* GET path; returns the status, the body in *body (caller frees). */
static long get(const char *token, const char *path, char **body)
{
    struct answer a;
    call(&a, token, "GET", path, NULL, NULL, NULL);
    long st = a.status;
    *body = a.body;
    free(a.headers);
    return st;
}

/* The text at path ("{error,field}") of a JSON answer, or NULL for JSON null
 * or absent; "(not JSON)" when the answer is not JSON. Caller frees. */
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

/* The ids of a list answer, comma-separated ("" for none). Caller frees. */
static char *list_ids(const char *json)
{
    const char *params[] = {json};
    PGresult *r = PQexecParams(db.conn,
                               "SELECT coalesce(string_agg(e->>'id', ',' ORDER BY o), '')"
                               " FROM jsonb_array_elements($1::jsonb->'data') WITH ORDINALITY"
                               " AS x(e, o)",
                               1, NULL, params, NULL, NULL, 0);
    char *out = strdup(PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "(error)");
    PQclear(r);
    return out;
}

/* Whether the stored request of message id equals the JSON want. */
static bool request_is(long long id, const char *want, const char *what)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT request = $1::jsonb, request::text FROM messages WHERE id = %lld", id);
    const char *params[] = {want};
    PGresult *r = PQexecParams(db.conn, sql, 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    if (!ok && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        tap_diag("stored: %s", PQgetvalue(r, 0, 1));
    PQclear(r);
    return tap_ok(ok, "%s", what);
}

static long long create(const char *token, const char *path, const char *json)
{
    struct answer a;
    call(&a, token, "POST", path, json, NULL, NULL);
    if (a.status != 201)
        tap_bail("POST %s: %ld %s", path, a.status, a.body);
    long long id = h_json_num(a.body, "id");
    answer_free(&a);
    return id;
}

static long long account(const char *token, long long app, const char *ig_id)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"%s\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"IGAA-token-0123456789abcdef\",\"subscribed_fields\":[]}",
             app, ig_id);
    return create(token, "/v1/accounts", json);
}

static long long messages_count(void)
{
    return h_db_int(&db, "SELECT count(*) FROM messages");
}

/* A string of n copies of the UTF-8 character ch, as a JSON body with a text. */
static char *text_body(const char *ch, int n)
{
    struct buf b;
    buf_init(&b);
    buf_puts(&b, "{\"recipient_id\":\"42\",\"text\":\"");
    for (int i = 0; i < n; i++)
        buf_puts(&b, ch);
    buf_puts(&b, "\"}");
    return b.data;
}

/* ---- tests ---- */

static long long test_create(void)
{
    long long before = messages_count();
    struct answer a;
    post(&a, key_a, acc_a,
         "{\"recipient_id\":\"1254459154682919\",\"text\":\"hello there\","
         "\"reply_to\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE\"}",
         NULL);
    tap_is_int(a.status, 202, "POST a text reply answers 202");
    long long id = jnum(a.body, "{id}");
    tap_ok(id > 0, "  with the message's id");
    char want[128];
    snprintf(want, sizeof(want), "location: /v1/messages/%lld\r", id);
    tap_ok(strcasestr(a.headers, want) != NULL, "  and Location /v1/messages/%lld", id);
    char n[32];
    snprintf(n, sizeof(n), "%lld", acc_a);
    jis(a.body, "{account_id}", n, "  account_id");
    snprintf(n, sizeof(n), "%lld", ta);
    jis(a.body, "{tenant_id}", n, "  tenant_id");
    jis(a.body, "{recipient_id}", "1254459154682919", "  recipient_id");
    jis(a.body, "{text}", "hello there", "  text");
    jis(a.body, "{attachment}", NULL, "  attachment is null");
    jis(a.body, "{reply_to}", "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE", "  reply_to");
    jis(a.body, "{tag}", NULL, "  tag is null");
    jis(a.body, "{state}", "queued", "  state queued");
    jis(a.body, "{attempts}", "0", "  attempts 0");
    jis(a.body, "{last_error}", NULL, "  last_error null");
    char *next = jget(a.body, "{next_attempt_at}");
    tap_ok(next != NULL, "  next_attempt_at set while queued");
    free(next);
    jis(a.body, "{message_id}", NULL, "  message_id null");
    jis(a.body, "{sent_at}", NULL, "  sent_at null");
    jis(a.body, "{echo_event_id}", NULL, "  echo_event_id null");
    jis(a.body, "{idempotency_key}", NULL, "  idempotency_key null");
    char *created = jget(a.body, "{created_at}");
    tap_ok(created != NULL && strlen(created) > 19, "  created_at");
    free(created);
    tap_is_int(messages_count(), before + 1, "one message row");
    request_is(id,
               "{\"recipient\":{\"id\":\"1254459154682919\"},\"messaging_type\":\"RESPONSE\","
               "\"message\":{\"text\":\"hello there\","
               "\"reply_to\":{\"mid\":\"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE\"}}}",
               "  request is the exact Send API body");

    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs WHERE message_id = %lld", id), 1,
               "one job for it");
    char *job =
        h_db_text(&db,
                  "SELECT kind || ' ' || serial_key || ' ' || state || ' ' || tenant_id"
                  " || ' ' || account_id || ' ' || attempts FROM jobs WHERE message_id = %lld",
                  id);
    char wjob[160];
    snprintf(wjob, sizeof(wjob), "send msg:%lld:1254459154682919 queued %lld %lld 0", acc_a, ta,
             acc_a);
    tap_is_str(job, wjob, "  kind send, serial_key msg:<account>:<recipient>, queued");
    free(job);

    /* GET /v1/messages/{id} gives the same representation. */
    char path[64], *b;
    snprintf(path, sizeof(path), "/v1/messages/%lld", id);
    tap_is_int(get(key_a, path, &b), 200, "GET /v1/messages/{id}");
    tap_is_str(b, a.body, "  the same representation as the 202");
    free(b);
    tap_is_int(get(OP, path, &b), 200, "the operator reads it too");
    free(b);
    answer_free(&a);

    /* An attachment with HUMAN_AGENT. */
    post(&a, key_a, acc_a,
         "{\"recipient_id\":\"77\",\"attachment\":{\"type\":\"image\","
         "\"url\":\"https://cdn.example.com/a%20b.png?x=1&y=2\"},\"tag\":\"HUMAN_AGENT\","
         "\"text\":null}",
         NULL);
    tap_is_int(a.status, 202, "POST an attachment with tag HUMAN_AGENT");
    long long id2 = jnum(a.body, "{id}");
    jis(a.body, "{attachment,type}", "image", "  attachment.type");
    jis(a.body, "{attachment,url}", "https://cdn.example.com/a%20b.png?x=1&y=2",
        "  attachment.url");
    jis(a.body, "{text}", NULL, "  text null");
    jis(a.body, "{tag}", "HUMAN_AGENT", "  tag");
    request_is(id2,
               "{\"recipient\":{\"id\":\"77\"},\"messaging_type\":\"MESSAGE_TAG\","
               "\"tag\":\"HUMAN_AGENT\",\"message\":{\"attachment\":{\"type\":\"image\","
               "\"payload\":{\"url\":\"https://cdn.example.com/a%20b.png?x=1&y=2\"}}}}",
               "  request: MESSAGE_TAG, tag, attachment payload url");
    answer_free(&a);

    /* Text that needs escaping is stored exactly as decoded. */
    post(&a, key_a, acc_a,
         "{\"recipient_id\":\"77\",\"text\":\"q\\\" b\\\\ n\\n \\u00e9 \\ud83d\\ude00 '); --\"}",
         NULL);
    tap_is_int(a.status, 202, "POST text with quotes, backslashes, escapes");
    char *t = h_db_text(&db, "SELECT request->'message'->>'text' FROM messages WHERE id = %lld",
                        jnum(a.body, "{id}"));
    tap_is_str(t, "q\" b\\ n\n \xc3\xa9 \xf0\x9f\x98\x80 '); --", "  stored as the text decoded");
    free(t);
    answer_free(&a);

    /* The operator may post to any tenant's account. */
    post(&a, OP, acc_a, "{\"recipient_id\":\"78\",\"text\":\"from the operator\"}", NULL);
    tap_is_int(a.status, 202, "the operator posts to tenant A's account");
    snprintf(n, sizeof(n), "%lld", ta);
    jis(a.body, "{tenant_id}", n, "  and the message is tenant A's");
    answer_free(&a);
    return id;
}

struct invalid {
    const char *body;
    const char *field;
    const char *what;
};

static void test_validation(void)
{
    long long before = messages_count();
    static const struct invalid cases[] = {
        {"{\"text\":\"hi\"}", "recipient_id", "missing recipient_id"},
        {"{\"recipient_id\":null,\"text\":\"hi\"}", "recipient_id", "null recipient_id"},
        {"{\"recipient_id\":\"12a\",\"text\":\"hi\"}", "recipient_id", "non-digit recipient_id"},
        {"{\"recipient_id\":\"\",\"text\":\"hi\"}", "recipient_id", "empty recipient_id"},
        {"{\"recipient_id\":42,\"text\":\"hi\"}", "recipient_id", "recipient_id as a number"},
        {"{\"recipient_id\":\"123456789012345678901234567890123\",\"text\":\"hi\"}", "recipient_id",
         "33-digit recipient_id"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"attachment\":{\"type\":\"image\","
         "\"url\":\"https://x.example/a.png\"}}",
         "attachment", "both text and attachment"},
        {"{\"recipient_id\":\"1\"}", "text", "neither text nor attachment"},
        {"{\"recipient_id\":\"1\",\"text\":null,\"attachment\":null}", "text",
         "text and attachment both null"},
        {"{\"recipient_id\":\"1\",\"text\":\"\"}", "text", "empty text"},
        {"{\"recipient_id\":\"1\",\"text\":5}", "text", "text as a number"},
        {"{\"recipient_id\":\"1\",\"text\":\"a\\u0000b\"}", "text", "text with \\u0000"},
        {"{\"recipient_id\":\"1\",\"text\":\"a\\ud800b\"}", "text",
         "text with an unpaired surrogate"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"sticker\","
         "\"url\":\"https://x.example/a.png\"}}",
         "attachment.type", "bad attachment type"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"url\":\"https://x.example/a.png\"}}",
         "attachment.type", "attachment without type"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"image\","
         "\"url\":\"http://x.example/a.png\"}}",
         "attachment.url", "http:// url"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"image\",\"url\":\"https://\"}}",
         "attachment.url", "url without a host"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"image\","
         "\"url\":\"https://x.example/a b.png\"}}",
         "attachment.url", "url with a space"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"image\"}}", "attachment.url",
         "attachment without url"},
        {"{\"recipient_id\":\"1\",\"attachment\":{\"type\":\"image\","
         "\"url\":\"https://x.example/a.png\",\"caption\":\"x\"}}",
         "attachment.caption", "unknown member in attachment"},
        {"{\"recipient_id\":\"1\",\"attachment\":\"https://x.example/a.png\"}", "attachment",
         "attachment not an object"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"foo\":1}", "foo", "unknown member"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"tag\":\"ACCOUNT_UPDATE\"}", "tag",
         "tag other than HUMAN_AGENT"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"tag\":\"human_agent\"}", "tag",
         "tag in lowercase"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"reply_to\":\"\"}", "reply_to",
         "empty reply_to"},
        {"{\"recipient_id\":\"1\",\"text\":\"hi\",\"reply_to\":\"a b\"}", "reply_to",
         "reply_to with a space"},
        {"{\"recipient_id\":\"1\",\"reply_to\":\"m1\",\"attachment\":{\"type\":\"file\","
         "\"url\":\"https://x.example/a.pdf\"}}",
         "reply_to", "reply_to with an attachment"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct answer a;
        post(&a, key_a, acc_a, cases[i].body, NULL);
        char *field = jget(a.body, "{error,field}");
        char *code = jget(a.body, "{error,code}");
        tap_ok(a.status == 422 && field != NULL && strcmp(field, cases[i].field) == 0 &&
                   code != NULL && strcmp(code, "validation_failed") == 0,
               "%s: 422 on %s (got %ld %s)", cases[i].what, cases[i].field, a.status, a.body);
        free(field);
        free(code);
        answer_free(&a);
    }

    /* 999 code points pass, 1000 do not, counted as characters, not bytes. */
    struct {
        const char *ch;
        int n;
        long want;
        const char *what;
    } lengths[] = {
        {"\xc3\xa9", 999, 202, "999 two-byte characters (1998 bytes) are accepted"},
        {"\xf0\x9f\x98\x80", 999, 202, "999 four-byte characters (3996 bytes) are accepted"},
        {"a", 999, 202, "999 ASCII characters are accepted"},
        {"\xc3\xa9", 1000, 422, "1000 two-byte characters are refused"},
        {"a", 1000, 422, "1000 ASCII characters are refused"},
    };
    long long accepted = 0;
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        char *body = text_body(lengths[i].ch, lengths[i].n);
        struct answer a;
        post(&a, key_a, acc_a, body, NULL);
        tap_is_int(a.status, lengths[i].want, "%s", lengths[i].what);
        if (lengths[i].want == 202) {
            accepted++;
            tap_is_int(h_db_int(&db,
                                "SELECT char_length(request->'message'->>'text') FROM messages"
                                " WHERE id = %lld",
                                jnum(a.body, "{id}")),
                       lengths[i].n, "  and stored whole");
        } else {
            jis(a.body, "{error,field}", "text", "  naming text");
        }
        answer_free(&a);
        free(body);
    }

    struct answer a;
    post(&a, key_a, acc_a, "{\"recipient_id\":\"1\",\"text\":\"hi\"", NULL);
    tap_is_int(a.status, 400, "malformed JSON answers 400");
    answer_free(&a);
    post(&a, key_a, acc_a, "{\"recipient_id\":\"1\",\"text\":\"caf\xc3\"}", NULL);
    tap_is_int(a.status, 400, "text that is not UTF-8 answers 400 (the JSON reader refuses it)");
    answer_free(&a);
    post(&a, key_a, acc_a, "[\"recipient_id\"]", NULL);
    tap_is_int(a.status, 400, "a body that is not an object answers 400");
    answer_free(&a);
    tap_is_int(messages_count(), before + accepted, "no refused request stored a message");
}

struct racer {
    pthread_t thread;
    struct answer a;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    post(&r->a, key_a, acc_a, "{\"recipient_id\":\"555\",\"text\":\"only once\"}", "race-key");
    return NULL;
}

static void test_idempotency(void)
{
    const char *body =
        "{\"recipient_id\":\"9001\",\"text\":\"idempotent\",\"tag\":\"HUMAN_AGENT\"}";
    struct answer a, a2;
    post(&a, key_a, acc_a, body, "key-1");
    tap_is_int(a.status, 202, "POST with Idempotency-Key key-1");
    long long id = jnum(a.body, "{id}");
    jis(a.body, "{idempotency_key}", "key-1", "  the key is shown");

    /* Same request, written differently. */
    post(&a2, key_a, acc_a,
         "{ \"tag\" : \"HUMAN_AGENT\", \"text\":\"idempotent\", \"reply_to\":null,"
         "\"recipient_id\":\"9001\" }",
         "key-1");
    tap_is_int(a2.status, 202, "the same key and request again answers 202");
    tap_is_int(jnum(a2.body, "{id}"), id, "  with the same message");
    tap_is_str(a2.body, a.body, "  and the same representation");
    char want[128];
    snprintf(want, sizeof(want), "location: /v1/messages/%lld\r", id);
    tap_ok(strcasestr(a2.headers, want) != NULL, "  and its Location");
    answer_free(&a2);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM messages WHERE idempotency_key = 'key-1'"), 1,
               "  one message row");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs WHERE message_id = %lld", id), 1,
               "  one job");

    post(&a2, OP, acc_a, body, "key-1");
    tap_is_int(jnum(a2.body, "{id}"), id,
               "the operator with the same key on the tenant's account gets the same message");
    answer_free(&a2);

    post(&a2, key_a, acc_a, "{\"recipient_id\":\"9001\",\"text\":\"different\"}", "key-1");
    tap_is_int(a2.status, 409, "the same key with another body answers 409");
    jis(a2.body, "{error,code}", "idempotency_conflict", "  code idempotency_conflict");
    answer_free(&a2);
    post(&a2, key_a, acc_a, "{\"recipient_id\":\"9001\",\"text\":\"idempotent\"}", "key-1");
    tap_is_int(a2.status, 409, "the same key without the tag answers 409");
    answer_free(&a2);
    post(&a2, key_a, acc_a2, body, "key-1");
    tap_is_int(a2.status, 409, "the same key and body for another account answers 409");
    jis(a2.body, "{error,code}", "idempotency_conflict", "  code idempotency_conflict");
    answer_free(&a2);

    post(&a2, key_b, acc_b, body, "key-1");
    tap_is_int(a2.status, 202, "tenant B's key-1 is its own");
    long long idb = jnum(a2.body, "{id}");
    tap_ok(idb > 0 && idb != id, "  a new message (%lld, not %lld)", idb, id);
    answer_free(&a2);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM messages WHERE idempotency_key = 'key-1'"), 2,
               "key-1 holds one message per tenant");
    answer_free(&a);

    /* 20 identical posts at once: one message, one job. The test holds a
     * SHARE lock on messages until all 20 wait at their INSERT, so they
     * really do run it together. */
    struct racer racers[CONCURRENT];
    h_db_exec(&db, "BEGIN");
    h_db_exec(&db, "LOCK TABLE messages IN SHARE MODE");
    for (int i = 0; i < CONCURRENT; i++) {
        memset(&racers[i], 0, sizeof(racers[i]));
        if (pthread_create(&racers[i].thread, NULL, race, &racers[i]) != 0)
            tap_bail("pthread_create");
    }
    long long waiting = 0;
    for (int64_t until = h_now_ms() + 20000; waiting < CONCURRENT && h_now_ms() < until;) {
        h_sleep_ms(10);
        waiting = h_db_int(&db, "SELECT count(*) FROM pg_locks"
                                " WHERE NOT granted AND relation = 'messages'::regclass");
    }
    tap_is_int(waiting, CONCURRENT, "%d POSTs with one key wait at their INSERT at once",
               CONCURRENT);
    h_db_exec(&db, "COMMIT");
    int ok = 0;
    long long first = -1;
    bool same = true;
    for (int i = 0; i < CONCURRENT; i++) {
        pthread_join(racers[i].thread, NULL);
        ok += racers[i].a.status == 202;
        if (racers[i].a.status != 202)
            tap_diag("racer %d: %ld %s", i, racers[i].a.status, racers[i].a.body);
        long long rid = jnum(racers[i].a.body, "{id}");
        if (first < 0)
            first = rid;
        same &= rid == first;
        answer_free(&racers[i].a);
    }
    tap_is_int(ok, CONCURRENT, "%d concurrent identical posts all answer 202", CONCURRENT);
    tap_ok(same && first > 0, "  all with the same message");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM messages WHERE idempotency_key = 'race-key'"), 1,
               "  one message row");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs j JOIN messages m ON m.id = j.message_id"
                             " WHERE m.idempotency_key = 'race-key'"),
               1, "  one job");

    /* Keys that cannot be used. */
    long long before = messages_count();
    char long_key[300];
    memset(long_key, 'k', 256);
    long_key[256] = '\0';
    post(&a, key_a, acc_a, body, long_key);
    tap_is_int(a.status, 400, "a 256-byte Idempotency-Key answers 400");
    answer_free(&a);
    long_key[255] = '\0';
    post(&a, key_a, acc_a, body, long_key);
    tap_is_int(a.status, 202, "a 255-byte one is taken");
    jis(a.body, "{idempotency_key}", long_key, "  and shown whole");
    answer_free(&a);
    post(&a, key_a, acc_a, body, "");
    tap_is_int(a.status, 400, "an empty Idempotency-Key answers 400");
    answer_free(&a);
    post(&a, key_a, acc_a, body, "caf\xc3\xa9");
    tap_is_int(a.status, 400, "a non-ASCII Idempotency-Key answers 400");
    answer_free(&a);
    char path[64];
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages", acc_a);
    call(&a, key_a, "POST", path, body, "twice-1", "Idempotency-Key: twice-2");
    tap_is_int(a.status, 400, "two Idempotency-Key headers answer 400");
    answer_free(&a);
    tap_is_int(messages_count(), before + 1, "  none of the refused ones stored anything");
}

/* States are set by hand: no worker runs. */
static void test_list_and_states(void)
{
    long long ids[7];
    for (int i = 0; i < 7; i++) {
        char json[128];
        snprintf(json, sizeof(json), "{\"recipient_id\":\"%d\",\"text\":\"message %d\"}", 100 + i,
                 i);
        struct answer a;
        post(&a, key_a, acc_list, json, NULL);
        if (a.status != 202)
            tap_bail("posting message %d: %ld %s", i, a.status, a.body);
        ids[i] = jnum(a.body, "{id}");
        answer_free(&a);
    }
    char want[256] = "";
    for (int i = 6; i >= 0; i--)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", i < 6 ? "," : "",
                 ids[i]);

    char path[256], got[256] = "", *b;
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?limit=3", acc_list);
    int pages = 0;
    for (;;) {
        tap_is_int(get(key_a, path, &b), 200, "list page %d", pages + 1);
        char *page = list_ids(b);
        if (page[0] != '\0')
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", got[0] ? "," : "", page);
        free(page);
        pages++;
        char *cursor = jget(b, "{next_cursor}");
        free(b);
        if (cursor == NULL || pages > 5) {
            free(cursor);
            break;
        }
        snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?limit=3&cursor=%s", acc_list,
                 cursor);
        free(cursor);
    }
    tap_is_int(pages, 3, "7 messages at limit 3 come in 3 pages");
    tap_is_str(got, want, "  every message once, newest first");

    struct {
        const char *query;
        long want;
    } bad[] = {
        {"state=bogus", 400},           {"color=red", 400}, {"limit=0", 400}, {"cursor=xyz", 400},
        {"state=sent&state=sent", 400},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?%s", acc_list, bad[i].query);
        tap_is_int(get(key_a, path, &b), bad[i].want, "?%s answers %ld", bad[i].query, bad[i].want);
        free(b);
    }

    /* One message per state of the job. */
    h_db_exec(&db,
              "UPDATE jobs SET attempts = 2, run_at = now() + interval '1 minute',"
              " last_error = '{\"code\":2,\"message\":\"temporary\"}'"
              " WHERE message_id = %lld",
              ids[0]);
    h_db_exec(&db,
              "UPDATE jobs SET state = 'running', attempts = 1, lease_owner = 'test',"
              " lease_token = 1, lease_expires_at = now() + interval '1 minute'"
              " WHERE message_id = %lld",
              ids[1]);
    h_db_exec(&db,
              "UPDATE jobs SET state = 'succeeded', attempts = 1, finished_at = now()"
              " WHERE message_id = %lld",
              ids[2]);
    h_db_exec(&db,
              "UPDATE messages SET meta_message_id = 'm_sent_1', sent_at = now()"
              " WHERE id = %lld",
              ids[2]);
    h_db_exec(&db,
              "UPDATE jobs SET state = 'failed', attempts = 1, finished_at = now(),"
              " last_error = '{\"code\":100,\"message\":\"invalid\"}' WHERE message_id = %lld",
              ids[3]);
    h_db_exec(&db,
              "UPDATE jobs SET state = 'dead', attempts = 12, finished_at = now()"
              " WHERE message_id = %lld",
              ids[4]);
    struct {
        const char *state;
        int index; /* -1: ids[5] and ids[6] */
    } states[] = {{"retrying", 0}, {"sending", 1}, {"sent", 2},
                  {"failed", 3},   {"dead", 4},    {"queued", -1}};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?state=%s", acc_list,
                 states[i].state);
        tap_is_int(get(key_a, path, &b), 200, "?state=%s", states[i].state);
        char *ids_got = list_ids(b);
        char w[64];
        if (states[i].index < 0)
            snprintf(w, sizeof(w), "%lld,%lld", ids[6], ids[5]);
        else
            snprintf(w, sizeof(w), "%lld", ids[states[i].index]);
        tap_is_str(ids_got, w, "  lists exactly the %s ones", states[i].state);
        free(ids_got);
        free(b);
    }

    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[0]);
    get(key_a, path, &b);
    jis(b, "{state}", "retrying", "a queued job with attempts reads retrying");
    jis(b, "{attempts}", "2", "  attempts 2");
    jis(b, "{last_error,message}", "temporary", "  last_error is the job's");
    char *next = jget(b, "{next_attempt_at}");
    tap_ok(next != NULL && h_db_int(&db,
                                    "SELECT count(*) FROM jobs WHERE message_id = %lld"
                                    " AND run_at = '%s'::timestamptz",
                                    ids[0], next) == 1,
           "  next_attempt_at is the job's run_at");
    free(next);
    free(b);
    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[2]);
    get(key_a, path, &b);
    jis(b, "{state}", "sent", "a succeeded job reads sent");
    jis(b, "{message_id}", "m_sent_1", "  message_id is Meta's");
    jis(b, "{next_attempt_at}", NULL, "  next_attempt_at null");
    char *sent = jget(b, "{sent_at}");
    tap_ok(sent != NULL, "  sent_at set");
    free(sent);
    free(b);
    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[1]);
    get(key_a, path, &b);
    jis(b, "{next_attempt_at}", NULL, "a sending message has no next_attempt_at");
    free(b);

    /* A rate-limit pause of the account delays the next attempt. */
    h_db_exec(&db, "UPDATE accounts SET paused_until = '2999-01-01T00:00:00Z' WHERE id = %lld",
              acc_list);
    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[5]);
    get(key_a, path, &b);
    jis(b, "{next_attempt_at}", "2999-01-01T00:00:00+00:00",
        "next_attempt_at waits for the account's rate-limit pause");
    jis(b, "{state}", "queued", "  the message is still queued");
    free(b);
    h_db_exec(&db, "UPDATE accounts SET paused_until = NULL WHERE id = %lld", acc_list);

    /* Held while the account needs a new token. */
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'token_invalid' WHERE id = %lld", acc_list);
    get(key_a, path, &b);
    jis(b, "{state}", "held", "with sub_state token_invalid a queued message reads held");
    jis(b, "{next_attempt_at}", NULL, "  with no next_attempt_at");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?state=held", acc_list);
    get(key_a, path, &b);
    char *held = list_ids(b);
    char w[128];
    snprintf(w, sizeof(w), "%lld,%lld,%lld", ids[6], ids[5], ids[0]);
    tap_is_str(held, w, "  ?state=held lists the queued and retrying ones");
    free(held);
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?state=queued", acc_list);
    get(key_a, path, &b);
    held = list_ids(b);
    tap_is_str(held, "", "  and ?state=queued none");
    free(held);
    free(b);
    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[1]);
    get(key_a, path, &b);
    jis(b, "{state}", "sending", "  a running one still reads sending");
    free(b);
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'active' WHERE id = %lld", acc_list);
    snprintf(path, sizeof(path), "/v1/messages/%lld", ids[5]);
    get(key_a, path, &b);
    jis(b, "{state}", "queued", "a new token: queued again");
    free(b);
}

static void test_isolation(long long msg_a)
{
    long long before = messages_count();
    struct answer a;
    post(&a, key_b, acc_a, "{\"recipient_id\":\"1\",\"text\":\"hi\"}", NULL);
    tap_is_int(a.status, 404, "tenant B posting to A's account gets 404");
    answer_free(&a);
    post(&a, key_b, acc_a, "{\"recipient_id\":\"1\",\"text\":\"hi\"}", "b-key");
    tap_is_int(a.status, 404, "  also with an Idempotency-Key");
    answer_free(&a);
    post(&a, key_a, 999999, "{\"recipient_id\":\"1\",\"text\":\"hi\"}", NULL);
    tap_is_int(a.status, 404, "a missing account gets 404");
    answer_free(&a);
    post(&a, OP, 999999, "{\"recipient_id\":\"1\",\"text\":\"hi\"}", NULL);
    tap_is_int(a.status, 404, "  for the operator too");
    answer_free(&a);
    tap_is_int(messages_count(), before, "  nothing stored");

    char path[64], *b;
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages", acc_a);
    tap_is_int(get(key_b, path, &b), 404, "tenant B listing A's account's messages gets 404");
    free(b);
    snprintf(path, sizeof(path), "/v1/messages/%lld", msg_a);
    tap_is_int(get(key_b, path, &b), 404, "tenant B reading A's message gets 404");
    tap_ok(strstr(b, "hello") == NULL, "  and sees nothing of it");
    free(b);
    tap_is_int(get(key_a, "/v1/messages/999999", &b), 404, "a missing message gets 404");
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages?limit=1000", acc_b);
    tap_is_int(get(key_b, path, &b), 200, "tenant B lists its own account's messages");
    char *ids = list_ids(b);
    char *own = h_db_text(&db,
                          "SELECT coalesce(string_agg(id::text, ',' ORDER BY id DESC), '')"
                          " FROM messages WHERE account_id = %lld",
                          acc_b);
    tap_ok(ids[0] != '\0' && strcmp(ids, own) == 0, "  exactly its own (%s)", ids);
    free(ids);
    free(own);
    free(b);
    snprintf(path, sizeof(path), "/v1/accounts/%lld/messages", acc_a);
    tap_is_int(get(OP, path, &b), 200, "the operator lists A's account's messages");
    tap_contains(b, "hello there", "  and sees them");
    free(b);
}

int main(void)
{
    h_db_create(&db, "api_messages");
    char *out = NULL;
    const char *migrate[] = {"migrate", NULL};
    if (h_run(&db, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    /* A pool as large as the concurrent posts, so that all run at once. */
    const char *env[] = {"HUBBUB_WORKERS=0", "HUBBUB_API_RATE=100000", "HUBBUB_API_BURST=100000",
                         "HUBBUB_DB_POOL_SIZE=24", NULL};
    h_server_start(&srv, &db, env);

    ta = h_api_tenant(&srv, "acme", key_a);
    tb = h_api_tenant(&srv, "globex", key_b);
    long long app_a =
        create(key_a, "/v1/apps",
               "{\"meta_app_id\":\"9300000000001\",\"app_secret\":\"secret-a-0123456789\","
               "\"verify_token\":\"vt-a\"}");
    long long app_b =
        create(key_b, "/v1/apps",
               "{\"meta_app_id\":\"9300000000002\",\"app_secret\":\"secret-b-0123456789\","
               "\"verify_token\":\"vt-b\"}");
    acc_a = account(key_a, app_a, "17841400000000101");
    acc_a2 = account(key_a, app_a, "17841400000000102");
    acc_list = account(key_a, app_a, "17841400000000103");
    acc_b = account(key_b, app_b, "17841400000000201");

    long long msg_a = test_create();
    test_validation();
    test_idempotency();
    test_list_and_states();
    test_isolation(msg_a);

    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM messages m WHERE NOT EXISTS"
                        " (SELECT 1 FROM jobs j WHERE j.message_id = m.id AND j.kind = 'send')"),
               0, "every message has its send job");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs WHERE kind = 'send' AND state = 'running'"
                             " AND lease_owner <> 'test'"),
               0, "with HUBBUB_WORKERS=0 no job was claimed");

    char *log = h_server_log(&srv);
    tap_ok(strstr(log, "hello there") == NULL && strstr(log, "admin request") != NULL,
           "the server's log holds no reply text");
    free(log);
    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "the server stops cleanly");
    h_db_drop(&db);
    return tap_done();
}
