/*
 * job_subscribe.c - "subscribe" and "unsubscribe" jobs: an account's
 * subscribed_apps edge at Meta (PROTOCOL.md section 3).
 *
 * Read before write: the job GETs the edge and POSTs only when what Meta
 * holds differs from what the tenant wants; then it GETs again and the
 * account becomes active only if Meta now holds exactly the wanted fields.
 * The same job repairs drift when the periodic check queues it. Instagram-
 * Login accounts use the Instagram user's edge with our field names; the
 * others the Page's edge with Messenger names (api/fields.h), where the
 * Instagram-only fields do not exist (they come from the app-level
 * subscription).
 *
 * The account's subscription columns are written only if its fields and
 * token are still those the job used: a change made meanwhile queued another
 * job, which runs after this one and writes its own result.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/fields.h"
#include "api/json.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "server/job.h"

#define FIELDS_MAX 64

enum { C_IG, C_PAGE, C_LOGIN, C_TOKEN, C_APP, C_FIELDS, C_VERSION, C_META_APP };

/* A sorted set of field names (edge names), owned strings. */
struct field_set {
    char *names[FIELDS_MAX];
    int n;
};

static void set_add(struct field_set *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->names[i]) == len && memcmp(s->names[i], name, len) == 0)
            return;
    if (s->n == FIELDS_MAX)
        return;
    int at = s->n;
    char *copy = xstrndup(name, len);
    while (at > 0 && strcmp(s->names[at - 1], copy) > 0) {
        s->names[at] = s->names[at - 1];
        at--;
    }
    s->names[at] = copy;
    s->n++;
}

static void set_dispose(struct field_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->names[i]);
    s->n = 0;
}

static bool set_equal(const struct field_set *a, const struct field_set *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->names[i], b->names[i]) != 0)
            return false;
    return true;
}

static void set_join(const struct field_set *s, struct buf *out)
{
    for (int i = 0; i < s->n; i++) {
        if (i > 0)
            buf_putc(out, ',');
        buf_puts(out, s->names[i]);
    }
}

/* The fields Meta holds for meta_app_id, from a GET of the edge:
 * {"data":[{"id":"<app>","subscribed_fields":[...]}, ...]}. false when the
 * answer is not of that shape. */
static bool parse_edge(const struct graph_response *resp, const char *meta_app_id, bool is_ig,
                       struct field_set *out)
{
    struct json_doc doc;
    const char *why;
    if (json_parse(&doc, resp->body.data, resp->body.len, 16, &why) != 0)
        return false;
    bool ok = false;
    int data = json_get(&doc, 0, "data");
    if (data < 0 || !json_is_array(&doc, data))
        goto out;
    int mine = -1, count = 0;
    struct buf id;
    buf_init(&id);
    for (int i; (i = json_child(&doc, data, count)) >= 0; count++) {
        int k = json_get(&doc, i, "id");
        buf_reset(&id);
        if (k >= 0 && json_is_string(&doc, k))
            json_string_decode(&doc, k, &id);
        if (id.len > 0 && strcmp(id.data, meta_app_id) == 0)
            mine = i;
    }
    buf_dispose(&id);
    /* An Instagram user's edge may name the Instagram app id, which differs
     * from the Meta app id; there, the one app listed is ours. */
    if (mine < 0 && is_ig && count == 1)
        mine = json_child(&doc, data, 0);
    ok = true;
    if (mine < 0)
        goto out; /* not subscribed: no fields */
    int fields = json_get(&doc, mine, "subscribed_fields");
    if (fields < 0 || !json_is_array(&doc, fields))
        goto out;
    struct buf name;
    buf_init(&name);
    for (int k = 0, i; (i = json_child(&doc, fields, k)) >= 0; k++) {
        if (!json_is_string(&doc, i))
            continue;
        buf_reset(&name);
        json_string_decode(&doc, i, &name);
        set_add(out, name.data, name.len);
    }
    buf_dispose(&name);
out:
    json_doc_dispose(&doc);
    return ok;
}

struct sub_ctx {
    struct job_env *env;
    struct job *j;
    PGresult *row;
    enum login_type lt;
    struct buf token, url, err;
    struct graph_response resp;
    int request_rc;       /* of the last graph_request(): HB_EINVAL when nothing was sent */
    enum graph_class cls; /* of the last answer; err holds its last_error JSON */
};

/* Writes the account's subscription columns if the job still speaks for
 * it: the account's fields and token are those the job used, and the job is
 * still ours (a worker that lost its lease to another must not overwrite
 * what that one finds). fields_csv: our field names, or NULL to keep. */
static void record(struct sub_ctx *s, const char *state, const char *fields_csv,
                   const char *error_json)
{
    char id[24], job[24], token[24];
    snprintf(id, sizeof(id), "%" PRId64, s->j->account_id);
    snprintf(job, sizeof(job), "%" PRId64, s->j->id);
    snprintf(token, sizeof(token), "%" PRId64, s->j->lease_token);
    const char *params[] = {id,
                            state,
                            fields_csv,
                            error_json,
                            PQgetvalue(s->row, 0, C_FIELDS),
                            PQgetvalue(s->row, 0, C_TOKEN),
                            job,
                            token};
    PGresult *r = PQexecParams(
        s->env->conn,
        "UPDATE accounts SET sub_state = coalesce($2::text, sub_state),"
        " sub_fields = CASE WHEN $3::text IS NULL THEN sub_fields"
        "  ELSE string_to_array(nullif($3::text, ''), ',')::text[] END,"
        " sub_error = $4::jsonb, sub_checked_at = now()"
        " WHERE id = $1::bigint AND array_to_string(subscribed_fields, ',') = $5"
        "  AND access_token_sealed = $6"
        /* once Meta refused the token, only a new one (the API) clears it */
        "  AND sub_state <> 'token_invalid'"
        "  AND EXISTS (SELECT 1 FROM jobs WHERE id = $7::bigint AND lease_token = $8::bigint"
        "   AND state = 'running')",
        8, NULL, params, NULL, NULL, 0);
    char f[JOB_LOG_FIELDS_MAX];
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        log_warn("could not record an account's subscription", "%s account=%" PRId64 " sqlstate=%s",
                 job_log_fields(s->j, f, sizeof(f)), s->j->account_id, db_sqlstate(r));
    PQclear(r);
}

/* A failure that is not Meta's answer: recorded on the account too once it
 * ends the job, so that no account stays pending without a word. */
static void local_failure(struct sub_ctx *s, bool is_permanent, const char *message)
{
    bool is_final = is_permanent || !job_may_retry(s->env, s->j);
    if (s->row != NULL && PQresultStatus(s->row) == PGRES_TUPLES_OK && PQntuples(s->row) == 1) {
        job_local_error(&s->err, is_permanent, message);
        record(s, is_final ? "failed" : NULL, NULL, s->err.data);
    }
    job_fail_local(s->env, s->j, is_permanent, message);
}

/* A failed call: the account's subscription columns, then the job's next
 * state by class (in this order, while the job is still ours). */
static void failed(struct sub_ctx *s)
{
    if (s->request_rc == HB_EINVAL) {
        /* Nothing was sent: the token or URL cannot make a request. */
        local_failure(s, true, "the Graph API request could not be built");
        return;
    }
    enum graph_class cls = s->cls;
    if (cls != GRAPH_TOKEN_INVALID) /* job_apply() records that one */
        record(s, job_is_final(s->env, s->j, cls) ? "failed" : NULL, NULL, s->err.data);
    job_apply(s->env, s->j, cls, &s->resp, s->err.data,
              s->row != NULL ? PQgetvalue(s->row, 0, C_TOKEN) : NULL);
}

/* One call on the edge; true when it succeeded (resp holds the answer). */
static bool call(struct sub_ctx *s, const char *method, const char *query)
{
    graph_response_dispose(&s->resp);
    memset(&s->resp, 0, sizeof(s->resp));
    size_t base_len = s->url.len;
    if (query != NULL)
        buf_puts(&s->url, query);
    s->request_rc =
        graph_request(s->env->graph, method, s->url.data, s->token.data, NULL, NULL, 0, &s->resp);
    s->url.len = base_len;
    s->url.data[base_len] = '\0';
    s->cls = job_classify(&s->resp, &s->err);
    stats_graph_call(s->env->stats, &s->resp, s->cls);
    return s->cls == GRAPH_OK;
}

static bool read_edge(struct sub_ctx *s, struct field_set *held)
{
    set_dispose(held);
    if (!call(s, "GET", NULL)) {
        failed(s);
        return false;
    }
    if (!parse_edge(&s->resp, PQgetvalue(s->row, 0, C_META_APP), s->lt == LOGIN_INSTAGRAM, held)) {
        local_failure(s, false, "the subscribed_apps edge answered an unknown shape");
        return false;
    }
    return true;
}

/* Our names of the edge fields in held, comma-separated. */
static void our_names(const struct sub_ctx *s, const struct field_set *held, struct buf *out)
{
    struct field_set ours = {.n = 0};
    for (int i = 0; i < held->n; i++) {
        const char *name = fields_from_edge_name(s->lt, held->names[i]);
        if (name != NULL)
            set_add(&ours, name, strlen(name));
    }
    set_join(&ours, out);
    set_dispose(&ours);
}

static void subscribe(struct sub_ctx *s)
{
    struct field_set wanted = {.n = 0}, held = {.n = 0};
    struct buf csv, query;
    char f[JOB_LOG_FIELDS_MAX];
    buf_init(&csv);
    buf_init(&query);
    const char *fields = PQgetvalue(s->row, 0, C_FIELDS);
    for (const char *p = fields; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)len, p);
        const char *edge = fields_edge_name(s->lt, name);
        if (edge != NULL)
            set_add(&wanted, edge, strlen(edge));
        p += len + (end != NULL);
    }
    if (!read_edge(s, &held))
        goto out;
    /* Nothing wanted on the edge although fields are (a Facebook-Login
     * account's fields all come from the app-level subscription): the edge
     * is left as it is. An empty field list empties it. */
    bool is_off_edge = wanted.n == 0 && *fields != '\0';
    if (!is_off_edge && !set_equal(&wanted, &held)) {
        bool ok;
        if (wanted.n == 0) {
            ok = call(s, "DELETE", NULL);
        } else {
            set_join(&wanted, &csv);
            buf_printf(&query, "?subscribed_fields=%s", csv.data);
            ok = call(s, "POST", query.data);
        }
        if (!ok) {
            failed(s);
            goto out;
        }
        log_info("subscription written", "%s account=%" PRId64 " fields=%s",
                 job_log_fields(s->j, f, sizeof(f)), s->j->account_id,
                 wanted.n > 0 ? csv.data : "none");
        if (!read_edge(s, &held))
            goto out;
    }
    buf_reset(&csv);
    our_names(s, &held, &csv);
    if (is_off_edge || set_equal(&wanted, &held)) {
        record(s, "active", csv.data, NULL);
    } else {
        /* Meta took the call but holds something else: say what. */
        struct buf err;
        buf_init(&err);
        buf_puts(&err, "{\"class\":\"mismatch\",\"message\":");
        struct buf msg;
        buf_init(&msg);
        buf_printf(&msg, "after the update Meta holds [%s]", csv.data);
        json_write_string(&err, msg.data, msg.len);
        buf_putc(&err, '}');
        record(s, "failed", csv.data, err.data);
        buf_dispose(&msg);
        buf_dispose(&err);
    }
    if (db_jobs_succeed(s->env->conn, s->j) == 0)
        log_info("subscribe job lease lost", "%s", job_log_fields(s->j, f, sizeof(f)));
out:
    set_dispose(&wanted);
    set_dispose(&held);
    buf_dispose(&csv);
    buf_dispose(&query);
}

static void ctx_init(struct sub_ctx *s, struct job_env *env, struct job *j)
{
    memset(s, 0, sizeof(*s));
    s->env = env;
    s->j = j;
    buf_init(&s->token);
    buf_init(&s->url);
    buf_init(&s->err);
    memset(&s->resp, 0, sizeof(s->resp));
}

static void ctx_dispose(struct sub_ctx *s)
{
    if (s->token.data != NULL)
        explicit_bzero(s->token.data, s->token.len);
    buf_dispose(&s->token);
    buf_dispose(&s->url);
    buf_dispose(&s->err);
    graph_response_dispose(&s->resp);
    PQclear(s->row);
}

/* Opens the token and builds the edge URL; false with the job recorded. */
static bool prepare(struct sub_ctx *s, const char *app_id, const char *ig_id, const char *page_id,
                    const char *login, const char *sealed, const char *version)
{
    if (fields_parse_login_type(login, &s->lt) != 0) {
        local_failure(s, true, "unknown login type");
        return false;
    }
    char context[96];
    snprintf(context, sizeof(context), "access_token:%s:%s", app_id, ig_id);
    int rc = keyring_open(s->env->keys, context, sealed, &s->token);
    if (rc != 0) {
        local_failure(s, rc != HB_ENOTFOUND,
                      "the account's access token cannot be decrypted with the loaded keys");
        return false;
    }
    const char *node = s->lt == LOGIN_INSTAGRAM ? ig_id : page_id;
    if (node == NULL || *node == '\0') {
        local_failure(s, true, "the account has no Page id for its login type");
        return false;
    }
    buf_printf(&s->url, "%s/%s/%s/subscribed_apps", job_graph_base(s->env, login), version, node);
    return true;
}

void job_subscribe_run(struct job_env *env, struct job *j)
{
    struct sub_ctx s;
    ctx_init(&s, env, j);
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, j->account_id);
    const char *params[] = {id};
    s.row = PQexecParams(env->conn,
                         "SELECT a.ig_id, a.page_id, a.login_type, a.access_token_sealed,"
                         " a.app_id, array_to_string(a.subscribed_fields, ','),"
                         " p.graph_api_version, p.meta_app_id"
                         " FROM accounts a JOIN apps p ON p.id = a.app_id WHERE a.id = $1::bigint",
                         1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(s.row) != PGRES_TUPLES_OK) {
        job_fail_local(env, j, false, "the account could not be read");
    } else if (PQntuples(s.row) == 0) {
        db_jobs_succeed(env->conn, j); /* deleted meanwhile: its unsubscribe job follows */
    } else if (prepare(&s, PQgetvalue(s.row, 0, C_APP), PQgetvalue(s.row, 0, C_IG),
                       PQgetvalue(s.row, 0, C_PAGE), PQgetvalue(s.row, 0, C_LOGIN),
                       PQgetvalue(s.row, 0, C_TOKEN), PQgetvalue(s.row, 0, C_VERSION))) {
        subscribe(&s);
    }
    ctx_dispose(&s);
}

/* A string member of the payload into out; false when missing. */
static bool payload_str(const struct json_doc *doc, const char *key, struct buf *out)
{
    int i = json_get(doc, 0, key);
    if (i < 0 || !json_is_string(doc, i))
        return false;
    json_string_decode(doc, i, out);
    return true;
}

void job_unsubscribe_run(struct job_env *env, struct job *j)
{
    struct sub_ctx s;
    ctx_init(&s, env, j);
    struct json_doc doc;
    const char *why;
    struct buf ig, page, login, sealed, version;
    buf_init(&ig);
    buf_init(&page);
    buf_init(&login);
    buf_init(&sealed);
    buf_init(&version);
    if (json_parse(&doc, j->payload, strlen(j->payload), 4, &why) != 0) {
        job_fail_local(env, j, true, "the job's payload is not JSON");
        goto out;
    }
    bool ok = payload_str(&doc, "ig_id", &ig) && payload_str(&doc, "login_type", &login) &&
              payload_str(&doc, "access_token_sealed", &sealed) &&
              payload_str(&doc, "graph_api_version", &version);
    payload_str(&doc, "page_id", &page);
    json_doc_dispose(&doc);
    if (!ok) {
        job_fail_local(env, j, true, "the job's payload lacks the account's ids");
        goto out;
    }
    char app[24];
    snprintf(app, sizeof(app), "%" PRId64, j->app_id);
    if (!prepare(&s, app, ig.data, page.data, login.data, sealed.data, version.data))
        goto out;
    if (!call(&s, "DELETE", NULL)) {
        if (s.request_rc == HB_EINVAL) {
            job_fail_local(env, j, true, "the Graph API request could not be built");
        } else {
            job_apply(env, j, s.cls, &s.resp, s.err.data, NULL);
        }
        goto out;
    }
    char f[JOB_LOG_FIELDS_MAX];
    job_log_fields(j, f, sizeof(f));
    if (db_jobs_succeed(env->conn, j) == 0)
        log_info("unsubscribe job lease lost", "%s", f);
    else
        log_info("subscription removed", "%s", f);
out:
    buf_dispose(&ig);
    buf_dispose(&page);
    buf_dispose(&login);
    buf_dispose(&sealed);
    buf_dispose(&version);
    ctx_dispose(&s);
}
