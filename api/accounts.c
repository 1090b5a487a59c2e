/*
 * accounts.c - /v1/accounts; see accounts.h.
 *
 * An account belongs to one tenant and hangs off one app: the tenant's own or
 * a shared one (apps.tenant_id IS NULL). Events are routed to it by entry.id,
 * which is the Instagram account id or, with a Page-based setup, the Page id.
 * Events of a shared app that arrived before the account existed have no
 * tenant; creating the account routes them, in the same transaction.
 *
 * The access token is sealed (lib/secretbox.h) for the context
 * "access_token:<app id>:<ig id>", both immutable, so a sealed token moved to
 * another row does not open; only its hint is ever shown.
 *
 * Scope: every statement carries "($n::bigint IS NULL OR tenant_id = $n)",
 * where $n is the caller's tenant for a tenant key and NULL only for the
 * operator (api_scope() is the one place that decides). Accounts of other
 * tenants answer 404, as missing ones do.
 */
#include "api/accounts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/fields.h"
#include "db/jobs.h"
#include "lib/hb.h"

#define ACCOUNT_JSON                                                                               \
    "jsonb_build_object('id', id, 'tenant_id', tenant_id, 'app_id', app_id, 'ig_id', ig_id,"       \
    " 'page_id', page_id, 'username', username, 'login_type', login_type,"                         \
    " 'access_token_hint', access_token_hint, 'subscribed_fields', subscribed_fields,"             \
    " 'subscription', jsonb_build_object('state', sub_state, 'fields', sub_fields,"                \
    " 'last_error', sub_error, 'last_checked_at', sub_checked_at),"                                \
    " 'created_at', created_at, 'updated_at', updated_at)::text"
#define SCOPE(n) "($" #n "::bigint IS NULL OR tenant_id = $" #n ")"

#define ID_DIGITS_MAX 32
#define USERNAME_MAX 200
#define TOKEN_MAX 2048
#define LOGIN_TYPE_MAX 32
#define ACCOUNT_LOCK_CLASS "1751343727" /* pg_advisory_xact_lock(class, app id) */

static const char *const IMMUTABLE[] = {"app_id", "ig_id", "login_type", "tenant_id", NULL};

/* What a create or update body holds, validated. Strings are NUL-terminated;
 * has_* says whether the member was sent (a null clears it). */
struct account_in {
    int64_t tenant_id;
    int64_t app_id;
    struct buf ig_id;
    bool has_page_id, has_username;
    struct buf page_id, username; /* empty data (NULL) for null */
    enum login_type login_type;
    bool has_token;
    struct buf token;
    bool has_fields;
    struct buf fields; /* a PostgreSQL text[] literal */
};

static void account_in_init(struct account_in *in)
{
    memset(in, 0, sizeof(*in));
    buf_init(&in->ig_id);
    buf_init(&in->page_id);
    buf_init(&in->username);
    buf_init(&in->token);
    buf_init(&in->fields);
}

static void account_in_dispose(struct account_in *in)
{
    if (in->token.data != NULL)
        explicit_bzero(in->token.data, in->token.cap);
    buf_dispose(&in->ig_id);
    buf_dispose(&in->page_id);
    buf_dispose(&in->username);
    buf_dispose(&in->token);
    buf_dispose(&in->fields);
}

static const char *str_or_null(const struct buf *b)
{
    return b->data;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* ---- reading bodies ---- */

/* A positive integer member: 1 and *out, 0 when absent or null, -1 with a 422
 * set otherwise. Strings of digits are refused: ids are numbers in our JSON. */
static int body_id(struct api_call *call, const struct json_doc *doc, const char *key, int64_t *out)
{
    int v = json_get(doc, 0, key);
    if (v < 0)
        return 0;
    const struct json_tok *t = &doc->toks[v];
    if (t->type == JSON_PRIMITIVE && doc->text[t->start] == 'n')
        return 0;
    int64_t id;
    if (t->type != JSON_PRIMITIVE || !json_int64(doc, v, &id) || id <= 0) {
        api_invalid(call, key, "%s must be a positive integer", key);
        return -1;
    }
    *out = id;
    return 1;
}

/* A Meta object id member (a string of 1-32 digits): as api_body_string(). */
static int body_meta_id(struct api_call *call, const struct json_doc *doc, const char *key,
                        struct buf *out)
{
    int rc = api_body_string(call, doc, key, ID_DIGITS_MAX, out);
    if (rc > 0 && !all_digits(out->data, out->len)) {
        api_invalid(call, key, "%s must be a string of 1-%d digits", key, ID_DIGITS_MAX);
        return -1;
    }
    return rc;
}

/* username: absent, null, or 1-200 bytes. false with a 422 set. */
static bool read_username(struct api_call *call, const struct json_doc *doc, struct account_in *in)
{
    in->has_username = json_get(doc, 0, "username") >= 0;
    int rc = api_body_string(call, doc, "username", USERNAME_MAX, &in->username);
    if (rc > 0 && in->username.len == 0) {
        api_invalid(call, "username", "username must be 1-%d bytes, or null", USERNAME_MAX);
        return false;
    }
    if (rc == 0)
        buf_dispose(&in->username);
    return rc >= 0;
}

/* page_id: absent, null, or 1-32 digits. false with a 422 set. */
static bool read_page_id(struct api_call *call, const struct json_doc *doc, struct account_in *in)
{
    in->has_page_id = json_get(doc, 0, "page_id") >= 0;
    int rc = body_meta_id(call, doc, "page_id", &in->page_id);
    if (rc == 0)
        buf_dispose(&in->page_id);
    return rc >= 0;
}

/* access_token: 1-2048 printable ASCII characters without spaces (a Graph
 * API token is base64-ish; a space or control character is a paste error).
 * null is a 422; so is absence when required. The message never quotes it. */
static bool read_token(struct api_call *call, const struct json_doc *doc, struct account_in *in,
                       bool required)
{
    int rc = api_body_string(call, doc, "access_token", TOKEN_MAX, &in->token);
    if (rc < 0)
        return false;
    if (rc == 0 && json_get(doc, 0, "access_token") >= 0) {
        /* An account always has a token: null would clear it. */
        api_invalid(call, "access_token", "access_token must be a string, not null");
        return false;
    }
    if (rc == 0) {
        if (required)
            api_invalid(call, "access_token", "access_token is required");
        return !required;
    }
    bool ok = in->token.len > 0;
    for (size_t i = 0; ok && i < in->token.len; i++)
        ok = in->token.data[i] > ' ' && in->token.data[i] <= '~';
    if (!ok) {
        api_invalid(call, "access_token",
                    "access_token must be 1-%d printable ASCII characters without spaces",
                    TOKEN_MAX);
        return false;
    }
    in->has_token = true;
    return true;
}

/* subscribed_fields: an array of distinct field names, each available with
 * lt. Fills in->fields with a text[] literal of the names from fields_all(),
 * so nothing the client sent is pasted into it. false with a 422 set. */
static bool read_fields(struct api_call *call, const struct json_doc *doc, enum login_type lt,
                        struct account_in *in)
{
    int v = json_get(doc, 0, "subscribed_fields");
    if (v < 0 || (doc->toks[v].type == JSON_PRIMITIVE && doc->text[doc->toks[v].start] == 'n')) {
        api_invalid(call, "subscribed_fields",
                    "subscribed_fields is required: an array of webhook field names (may be "
                    "empty)");
        return false;
    }
    if (!json_is_array(doc, v)) {
        api_invalid(call, "subscribed_fields", "subscribed_fields must be an array of strings");
        return false;
    }
    size_t nall;
    const char *const *all = fields_all(&nall);
    bool seen[64] = {false};
    struct buf name;
    buf_init(&name);
    buf_reset(&in->fields);
    buf_putc(&in->fields, '{');
    bool ok = true;
    int n = doc->toks[v].size;
    for (int i = 0, e = v + 1; ok && i < n; i++, e = json_next(doc, e)) {
        if (!json_is_string(doc, e)) {
            api_invalid(call, "subscribed_fields", "subscribed_fields must be an array of strings");
            ok = false;
            break;
        }
        buf_reset(&name);
        json_string_decode(doc, e, &name);
        const char *s = name.data != NULL ? name.data : "";
        const char *why = NULL;
        int rc = fields_check(lt, s, &why);
        if (rc == HB_ENOTFOUND) {
            api_invalid(call, "subscribed_fields",
                        "subscribed_fields: \"%.64s\" is not a known Instagram webhook field", s);
            ok = false;
        } else if (rc != 0) {
            api_invalid(call, "subscribed_fields", "%s", why);
            ok = false;
        }
        for (size_t k = 0; ok && k < nall && k < HB_ARRAY_SIZE(seen); k++) {
            if (strcmp(all[k], s) != 0)
                continue;
            if (seen[k]) {
                api_invalid(call, "subscribed_fields",
                            "subscribed_fields: \"%s\" is listed more than once", all[k]);
                ok = false;
                break;
            }
            seen[k] = true;
            buf_printf(&in->fields, "%s\"%s\"", in->fields.len > 1 ? "," : "", all[k]);
            break;
        }
    }
    buf_putc(&in->fields, '}');
    buf_dispose(&name);
    in->has_fields = ok;
    return ok;
}

static const char *const CREATE_MEMBERS[] = {
    "tenant_id",         "app_id", "ig_id", "page_id", "username", "login_type", "access_token",
    "subscribed_fields", NULL,
};

static bool read_create(struct api_call *call, const struct json_doc *doc, struct account_in *in)
{
    if (!api_body_only(call, doc, CREATE_MEMBERS))
        return false;

    int64_t tenant = 0;
    int rc = body_id(call, doc, "tenant_id", &tenant);
    if (rc < 0)
        return false;
    if (call->caller.is_operator) {
        if (rc == 0) {
            api_invalid(call, "tenant_id", "tenant_id is required: the tenant the account is for");
            return false;
        }
        in->tenant_id = tenant;
    } else {
        if (rc > 0 && tenant != call->caller.tenant_id) {
            api_invalid(call, "tenant_id", "tenant_id must be your own tenant's id, or left out");
            return false;
        }
        in->tenant_id = call->caller.tenant_id;
    }

    rc = body_id(call, doc, "app_id", &in->app_id);
    if (rc == 0)
        api_invalid(call, "app_id", "app_id is required");
    if (rc <= 0)
        return false;
    rc = body_meta_id(call, doc, "ig_id", &in->ig_id);
    if (rc == 0)
        api_invalid(call, "ig_id", "ig_id is required");
    if (rc <= 0 || !read_page_id(call, doc, in) || !read_username(call, doc, in))
        return false;

    struct buf lt;
    buf_init(&lt);
    rc = api_body_string(call, doc, "login_type", LOGIN_TYPE_MAX, &lt);
    if (rc == 0)
        api_invalid(call, "login_type", "login_type is required");
    else if (rc > 0 && fields_parse_login_type(lt.data, &in->login_type) != 0)
        api_invalid(call, "login_type",
                    "login_type must be instagram_login, facebook_login or messenger_platform");
    bool ok = rc > 0 && fields_parse_login_type(lt.data, &in->login_type) == 0;
    buf_dispose(&lt);
    if (!ok || !read_token(call, doc, in, true) || !read_fields(call, doc, in->login_type, in))
        return false;

    if (fields_needs_page(in->login_type) && in->page_id.data == NULL) {
        api_invalid(call, "page_id", "page_id is required for %s",
                    fields_login_type_name(in->login_type));
        return false;
    }
    return true;
}

/* ---- writing ---- */

/* The 409 for a unique violation, named after the index that refused. */
static void db_error(struct api_call *call, PGconn *c, const PGresult *r)
{
    const char *index = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    const char *msg = "this app already has an account with this ig_id or page_id";
    if (index != NULL && strcmp(index, "accounts_app_ig") == 0)
        msg = "this app already has an account with this ig_id";
    else if (index != NULL && strcmp(index, "accounts_app_page") == 0)
        msg = "this app already has an account with this page_id";
    api_db_error(call, c, r, msg);
}

/* Seals the token for the account's (app, ig_id); caller frees. */
/* Queues the job that brings Meta's subscription in line with the account
 * (db/jobs.h), in the caller's transaction. false with the answer set. */
static bool queue_subscribe(struct api_call *call, PGconn *c, const char *account_id)
{
    int rc = db_jobs_enqueue_subscribe(c, strtoll(account_id, NULL, 10));
    if (rc == 0)
        return true;
    if (rc == HB_EUNAVAILABLE)
        api_error(call, 503, "unavailable", "the database is unavailable; try again");
    else
        api_error(call, 500, "internal", "the subscription job could not be queued");
    return false;
}

static char *seal_token(const struct api_call *call, int64_t app_id, const char *ig_id,
                        const struct buf *token, char hint[16])
{
    char context[96];
    snprintf(context, sizeof(context), "access_token:%" PRId64 ":%s", app_id, ig_id);
    api_secret_hint(token->data, token->len, hint);
    return keyring_seal(call->keys, context, token->data, token->len);
}

/* The body may hold an access token: nothing of it outlives the parse. */
/* Routes the unrouted events of the account's app whose entry is one of its
 * ids (events of a shared app that arrived before the account). */
static PGresult *backfill(PGconn *c, const char *tenant, const char *app, const char *ig_id,
                          const char *page_id)
{
    const char *params[] = {tenant, app, ig_id, page_id};
    return api_exec(c,
                    "UPDATE events SET tenant_id = $1 WHERE app_id = $2 AND tenant_id IS NULL"
                    " AND entry_id IN ($3, $4)",
                    4, params);
}

/* Routing matches entry.id against an account's ig_id or its page_id, oldest
 * account first, so an id must be no other account's of the app under either
 * name: the unique indexes hold each column, this holds one against the
 * other. Runs in the writing transaction after the row is written, under a
 * per-app advisory lock so two concurrent writers cannot both pass. false
 * with the answer set. */
static bool ids_free(struct api_call *call, PGconn *c, const char *app, const char *account,
                     const char *ig_id, const char *page_id)
{
    const char *lp[] = {app};
    PGresult *r = api_exec(
        c, "SELECT pg_advisory_xact_lock(" ACCOUNT_LOCK_CLASS ", ($1::int8 & 2147483647)::int4)", 1,
        lp);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok) {
        PQclear(r);
        const char *params[] = {app, account, ig_id, page_id};
        r = api_exec(c,
                     "SELECT EXISTS (SELECT 1 FROM accounts WHERE app_id = $1 AND id <> $2"
                     " AND (page_id = $3 OR ig_id = $4))",
                     4, params);
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    }
    if (!ok)
        api_db_error(call, c, r, NULL);
    else if (strcmp(PQgetvalue(r, 0, 0), "t") == 0)
        api_error(call, 409, "conflict",
                  "another account of this app has this id as its ig_id or page_id");
    ok = ok && strcmp(PQgetvalue(r, 0, 0), "f") == 0;
    PQclear(r);
    return ok;
}

/* Why an INSERT found no app: 422 on app_id (or tenant_id). For a tenant, an
 * app of another tenant reads as missing; the operator is told which. */
static void explain_no_app(struct api_call *call, PGconn *c, const char *tenant, const char *app)
{
    if (!call->caller.is_operator) {
        api_invalid(call, "app_id", "no app with this id");
        return;
    }
    const char *params[] = {tenant, app};
    PGresult *r = api_exec(c,
                           "SELECT (SELECT count(*) FROM tenants WHERE id = $1),"
                           " (SELECT count(*) FROM apps WHERE id = $2)",
                           2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0)
        api_invalid(call, "tenant_id", "no tenant with this id");
    else if (strcmp(PQgetvalue(r, 0, 1), "0") == 0)
        api_invalid(call, "app_id", "no app with this id");
    else
        api_invalid(call, "app_id",
                    "the app belongs to another tenant: an account needs its tenant's own app "
                    "or a shared app");
    PQclear(r);
}

static void create(struct api_call *call, PGconn *c, const struct account_in *in)
{
    char tenant[24], app[24], hint[16];
    snprintf(tenant, sizeof(tenant), "%" PRId64, in->tenant_id);
    snprintf(app, sizeof(app), "%" PRId64, in->app_id);
    char *sealed = seal_token(call, in->app_id, in->ig_id.data, &in->token, hint);
    const char *params[] = {tenant,
                            app,
                            in->ig_id.data,
                            str_or_null(&in->page_id),
                            str_or_null(&in->username),
                            fields_login_type_name(in->login_type),
                            sealed,
                            hint,
                            in->fields.data};
    PGresult *b = NULL, *r = NULL;
    if (!api_begin(call, c))
        goto out;
    /* The tenant and the app's scope are checked by the statement that
     * inserts, so that neither can change in between. */
    r = api_exec(c,
                 "INSERT INTO accounts (tenant_id, app_id, ig_id, page_id, username, login_type,"
                 " access_token_sealed, access_token_hint, subscribed_fields)"
                 " SELECT t.id, a.id, $3, $4, $5, $6, $7, $8, $9::text[]"
                 " FROM apps a, tenants t WHERE a.id = $2 AND t.id = $1"
                 " AND (a.tenant_id IS NULL OR a.tenant_id = t.id)"
                 " RETURNING " ACCOUNT_JSON ", id",
                 9, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        api_rollback(c);
        explain_no_app(call, c, tenant, app);
        goto out;
    }
    if (!ids_free(call, c, app, PQgetvalue(r, 0, 1), in->ig_id.data, str_or_null(&in->page_id))) {
        PQclear(r);
        api_rollback(c);
        goto out;
    }
    b = backfill(c, tenant, app, in->ig_id.data, str_or_null(&in->page_id));
    if (PQresultStatus(b) != PGRES_COMMAND_OK) {
        PQclear(r);
        r = b;
        goto fail;
    }
    PQclear(b);
    if (!queue_subscribe(call, c, PQgetvalue(r, 0, 1))) {
        PQclear(r);
        api_rollback(c);
        goto out;
    }
    if (!api_commit(call, c)) {
        PQclear(r);
        goto out;
    }
    api_reply_row(call, 201, r);
    snprintf(call->location, sizeof(call->location), "/v1/accounts/%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    goto out;
fail:
    db_error(call, c, r);
    PQclear(r);
    api_rollback(c);
out:
    free(sealed);
}

void accounts_create(struct api_call *call, PGconn *c)
{
    struct json_doc doc;
    if (!api_body_object(call, &doc)) {
        api_wipe_body(call);
        return;
    }
    struct account_in in;
    account_in_init(&in);
    bool ok = read_create(call, &doc, &in);
    json_doc_dispose(&doc);
    api_wipe_body(call);
    if (ok)
        create(call, c, &in);
    account_in_dispose(&in);
}

/* ---- reading ---- */

void accounts_list(struct api_call *call, PGconn *c)
{
    int limit;
    int64_t after = 0, unused;
    char sc[24], tenant[24], app[24], a[24], l[16];
    int has_tenant = 0, has_app = 0;
    static const char *const known[] = {"limit", "cursor", "tenant_id", "app_id", NULL};
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        api_cursor_decode(call, &after, &unused) < 0 ||
        (has_tenant = api_query_id(call, "tenant_id", tenant)) < 0 ||
        (has_app = api_query_id(call, "app_id", app)) < 0)
        return;
    snprintf(a, sizeof(a), "%" PRId64, after);
    snprintf(l, sizeof(l), "%d", limit + 1);
    /* A tenant may filter by its own id too; any other gives an empty list. */
    const char *params[] = {api_scope(call, sc), has_tenant ? tenant : NULL, has_app ? app : NULL,
                            a, l};
    PGresult *r = api_exec(
        c,
        "SELECT " ACCOUNT_JSON ", id FROM accounts"
        " WHERE " SCOPE(1) " AND " SCOPE(2) " AND ($3::bigint IS NULL OR"
                                            " app_id = $3) AND id > $4 ORDER BY id LIMIT $5",
        5, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}

void accounts_get(struct api_call *call, PGconn *c)
{
    char id[24], sc[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, api_scope(call, sc)};
    PGresult *r =
        api_exec(c, "SELECT " ACCOUNT_JSON " FROM accounts WHERE id = $1 AND " SCOPE(2), 2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no account with this id");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

void accounts_delete(struct api_call *call, PGconn *c)
{
    char id[24], sc[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, api_scope(call, sc)};
    if (!api_begin(call, c))
        return;
    /* Locks the row, so the unsubscribe job reads what is deleted. */
    PGresult *r =
        api_exec(c, "SELECT id FROM accounts WHERE id = $1 AND " SCOPE(2) " FOR UPDATE", 2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        api_rollback(c);
        api_not_found(call, "no account with this id");
        return;
    }
    PQclear(r);
    int rc = db_jobs_enqueue_unsubscribe(c, call->ids[0]);
    if (rc != 0) {
        api_rollback(c);
        if (rc == HB_EUNAVAILABLE)
            api_error(call, 503, "unavailable", "the database is unavailable; try again");
        else
            api_error(call, 500, "internal", "the unsubscribe job could not be queued");
        return;
    }
    /* The account's events stay: they are the tenant's history. Its queued
     * jobs and replies go with it (ON DELETE CASCADE). */
    r = api_exec(c, "DELETE FROM accounts WHERE id = $1 AND " SCOPE(2), 2, params);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    if (api_commit(call, c))
        call->status = 204;
    return;
fail:
    api_db_error(call, c, r, NULL);
    PQclear(r);
    api_rollback(c);
}

/* ---- changing ---- */

/* What an update needs of the stored account: the immutable parts. */
struct account_row {
    enum login_type login_type;
    int64_t app_id;
    char ig_id[ID_DIGITS_MAX + 1];
};

/* false with the answer set (404, or a database error). */
static bool load_row(struct api_call *call, PGconn *c, struct account_row *row)
{
    char id[24], sc[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, api_scope(call, sc)};
    PGresult *r = api_exec(c,
                           "SELECT login_type, app_id, ig_id FROM accounts"
                           " WHERE id = $1 AND " SCOPE(2),
                           2, params);
    bool ok = false;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no account with this id");
    else if (fields_parse_login_type(PQgetvalue(r, 0, 0), &row->login_type) != 0)
        api_error(call, 500, "internal", "the account has an unknown login type");
    else
        ok = true;
    if (ok) {
        row->app_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        snprintf(row->ig_id, sizeof(row->ig_id), "%s", PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return ok;
}

static const char *const UPDATE_MEMBERS[] = {
    "username",   "page_id",   "access_token", "subscribed_fields", "app_id", "ig_id",
    "login_type", "tenant_id", NULL,
};

/* Updates the account with in (the members sent) and, when a Page id was set,
 * routes that Page's unrouted events. */
static void update(struct api_call *call, PGconn *c, const struct account_in *in,
                   const struct account_row *row)
{
    char id[24], sc[24], hint[16];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    char *sealed =
        in->has_token ? seal_token(call, row->app_id, row->ig_id, &in->token, hint) : NULL;
    const char *params[] = {id,
                            api_scope(call, sc),
                            in->has_username ? "t" : "f",
                            str_or_null(&in->username),
                            in->has_page_id ? "t" : "f",
                            str_or_null(&in->page_id),
                            sealed,
                            sealed != NULL ? hint : NULL,
                            in->has_fields ? in->fields.data : NULL};
    PGresult *b = NULL, *r = NULL;
    if (!api_begin(call, c))
        goto out;
    /* Another Page: the old one's subscription goes first (db/jobs.h). The
     * scope is checked by load_row() and again by the UPDATE below. The
     * account's row is locked before the job's serial key, in the order
     * every other writer of both takes them. */
    if (in->has_page_id && fields_needs_page(row->login_type)) {
        b = api_exec(c, "SELECT 1 FROM accounts WHERE id = $1 AND " SCOPE(2) " FOR UPDATE", 2,
                     params);
        if (PQresultStatus(b) != PGRES_TUPLES_OK) {
            r = b;
            goto fail;
        }
        PQclear(b);
        int rc = db_jobs_enqueue_unsubscribe_page(c, call->ids[0], str_or_null(&in->page_id));
        if (rc != 0) {
            api_rollback(c);
            api_error(call, rc == HB_EUNAVAILABLE ? 503 : 500,
                      rc == HB_EUNAVAILABLE ? "unavailable" : "internal",
                      "the old Page's unsubscribe job could not be queued");
            goto out;
        }
    }
    r = api_exec(c,
                 "UPDATE accounts SET"
                 " username = CASE WHEN $3::bool THEN $4::text ELSE username END,"
                 " page_id = CASE WHEN $5::bool THEN $6::text ELSE page_id END,"
                 " access_token_sealed = coalesce($7::text, access_token_sealed),"
                 " access_token_hint = coalesce($8::text, access_token_hint),"
                 " subscribed_fields = coalesce($9::text[], subscribed_fields),"
                 " sub_state = CASE WHEN $7::text IS NOT NULL OR $9::text[] IS NOT NULL"
                 "  OR ($5::bool AND page_id IS DISTINCT FROM $6::text"
                 "   AND login_type <> 'instagram_login')"
                 "  THEN 'pending' ELSE sub_state END,"
                 " updated_at = now()"
                 " WHERE id = $1 AND " SCOPE(2) " RETURNING " ACCOUNT_JSON ", tenant_id, app_id",
                 9, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto fail;
    if (PQntuples(r) == 0) {
        PQclear(r);
        api_rollback(c);
        api_not_found(call, "no account with this id");
        goto out;
    }
    if (in->has_page_id && in->page_id.data != NULL) {
        if (!ids_free(call, c, PQgetvalue(r, 0, 2), id, row->ig_id, in->page_id.data)) {
            PQclear(r);
            api_rollback(c);
            goto out;
        }
        b = backfill(c, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), in->page_id.data, NULL);
        if (PQresultStatus(b) != PGRES_COMMAND_OK) {
            PQclear(r);
            r = b;
            goto fail;
        }
        PQclear(b);
    }
    /* A new token, other fields or another Page: Meta's side must follow. */
    bool is_page_edge = in->has_page_id && fields_needs_page(row->login_type);
    if ((in->has_token || in->has_fields || is_page_edge) && !queue_subscribe(call, c, id)) {
        PQclear(r);
        api_rollback(c);
        goto out;
    }
    if (!api_commit(call, c)) {
        PQclear(r);
        goto out;
    }
    api_reply_row(call, 200, r);
    PQclear(r);
    goto out;
fail:
    db_error(call, c, r);
    PQclear(r);
    api_rollback(c);
out:
    free(sealed);
}

void accounts_update(struct api_call *call, PGconn *c)
{
    struct json_doc doc;
    if (!api_body_object(call, &doc)) {
        api_wipe_body(call);
        return;
    }
    struct account_in in;
    account_in_init(&in);
    struct account_row row;
    bool ok = api_body_only(call, &doc, UPDATE_MEMBERS);
    for (const char *const *k = IMMUTABLE; ok && *k != NULL; k++) {
        if (json_get(&doc, 0, *k) >= 0) {
            api_invalid(call, *k, "%s cannot be changed", *k);
            ok = false;
        }
    }
    /* The fields and the Page id are checked against the login type. */
    ok = ok && load_row(call, c, &row) && read_username(call, &doc, &in) &&
         read_page_id(call, &doc, &in) && read_token(call, &doc, &in, false) &&
         (json_get(&doc, 0, "subscribed_fields") < 0 ||
          read_fields(call, &doc, row.login_type, &in));
    if (ok && in.has_page_id && in.page_id.data == NULL && fields_needs_page(row.login_type)) {
        api_invalid(call, "page_id", "page_id is required for %s",
                    fields_login_type_name(row.login_type));
        ok = false;
    }
    json_doc_dispose(&doc);
    api_wipe_body(call);
    if (ok)
        update(call, c, &in, &row);
    account_in_dispose(&in);
}

void accounts_put_fields(struct api_call *call, PGconn *c)
{
    struct json_doc doc;
    if (!api_body_object(call, &doc))
        return;
    static const char *const allowed[] = {"subscribed_fields", NULL};
    struct account_in in;
    account_in_init(&in);
    struct account_row row;
    bool ok = api_body_only(call, &doc, allowed) && load_row(call, c, &row) &&
              read_fields(call, &doc, row.login_type, &in);
    json_doc_dispose(&doc);
    if (ok) {
        char id[24], sc[24];
        snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
        const char *params[] = {id, api_scope(call, sc), in.fields.data};
        PGresult *r = NULL;
        if (!api_begin(call, c))
            goto done;
        r = api_exec(c,
                     "UPDATE accounts SET subscribed_fields = $3::text[],"
                     " sub_state = 'pending', updated_at = now()"
                     " WHERE id = $1 AND " SCOPE(2) " RETURNING " ACCOUNT_JSON,
                     3, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            api_db_error(call, c, r, NULL);
            api_rollback(c);
        } else if (PQntuples(r) == 0) {
            api_rollback(c);
            api_not_found(call, "no account with this id");
        } else if (!queue_subscribe(call, c, id)) {
            api_rollback(c);
        } else if (api_commit(call, c)) {
            api_reply_row(call, 200, r);
        }
        PQclear(r);
    }
done:
    account_in_dispose(&in);
}
