/*
 * apps.c - /v1/apps; see apps.h.
 *
 * An app's secrets and verify token are sealed here, with the contexts the
 * webhook side opens them with ("app_secret:<meta app id>" and
 * "verify_token:<meta app id>", server/appcache.c), and the plaintext is
 * wiped as soon as it is sealed: what reaches PostgreSQL and what leaves it
 * are the sealed text and a hint of the last characters, never the secret.
 *
 * Every statement carries the caller's scope as parameter $2 (NULL for the
 * operator): a tenant reads its own apps and the shared ones (tenant_id IS
 * NULL) but changes only its own; anything else answers 404.
 *
 * The webhook side caches apps (HUBBUB_APP_CACHE_TTL), so a change made here
 * reaches signature checks once that cache has refreshed the app.
 */
#include "api/apps.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/pool.h"
#include "lib/hb.h"

#define META_APP_ID_MAX 32
#define SECRET_MAX 256
#define APP_NAME_MAX 200
#define APP_SECRETS_MAX 5
#define APP_DEFAULT_VERSION "v25.0"

/* The app as JSON, from apps row "a"; hints is the SQL of the array of the
 * live secrets' hints, oldest first. */
#define APP_JSON_WITH(hints)                                                                       \
    "jsonb_build_object('id', a.id, 'tenant_id', a.tenant_id, 'shared', a.tenant_id IS NULL,"      \
    " 'meta_app_id', a.meta_app_id, 'name', a.name, 'graph_api_version', a.graph_api_version,"     \
    " 'callback_path', '/webhooks/' || a.meta_app_id, 'verify_token_hint', a.verify_token_hint,"   \
    " 'app_secret_hints', " hints                                                                  \
    ", 'created_at', a.created_at, 'updated_at', a.updated_at)::text"
#define APP_JSON                                                                                   \
    APP_JSON_WITH("coalesce((SELECT jsonb_agg(s.hint ORDER BY s.id) FROM app_secrets s"            \
                  " WHERE s.app_id = a.id), '[]'::jsonb)")

/* $2 is the caller's tenant, NULL for the operator. */
#define VISIBLE "($2::bigint IS NULL OR a.tenant_id = $2 OR a.tenant_id IS NULL)"
#define OWNED "($2::bigint IS NULL OR a.tenant_id = $2)"

static const char SQL_LIST[] =
    "SELECT " APP_JSON ", a.id FROM apps a WHERE " VISIBLE
    " AND ($3::bigint IS NULL OR a.tenant_id = $3) AND (NOT $4::boolean OR a.tenant_id IS NULL)"
    " AND a.id > $1 ORDER BY a.id LIMIT $5";

static const char SQL_GET[] = "SELECT " APP_JSON " FROM apps a WHERE a.id = $1 AND " VISIBLE;

/* One statement, so an app never exists without its secret. $1 NULL makes a
 * shared app; a tenant that does not exist makes no row. */
static const char SQL_CREATE[] =
    "WITH t AS (SELECT $1::bigint AS tenant_id"
    "           WHERE $1::bigint IS NULL OR EXISTS (SELECT 1 FROM tenants WHERE id = $1)),"
    " a AS (INSERT INTO apps (tenant_id, meta_app_id, verify_token_sealed, verify_token_hint,"
    "                         name, graph_api_version)"
    "       SELECT tenant_id, $2, $3, $4, $5, $6 FROM t RETURNING *),"
    " s AS (INSERT INTO app_secrets (app_id, secret_sealed, hint)"
    "       SELECT id, $7, $8 FROM a RETURNING hint)"
    " SELECT " APP_JSON_WITH("jsonb_build_array(s.hint)") ", a.id FROM a, s";

/* PATCH runs these in one transaction: the lock also serialises concurrent
 * add_app_secret calls, so the limit on live secrets holds. */
static const char SQL_LOCK[] =
    "SELECT a.meta_app_id, (SELECT count(*) FROM app_secrets s WHERE s.app_id = a.id)"
    " FROM apps a WHERE a.id = $1 AND " OWNED " FOR UPDATE OF a";
static const char SQL_UPDATE[] =
    "UPDATE apps a SET name = coalesce($3, a.name),"
    " graph_api_version = coalesce($4, a.graph_api_version),"
    " verify_token_sealed = coalesce($5, a.verify_token_sealed),"
    " verify_token_hint = coalesce($6, a.verify_token_hint), updated_at = now()"
    " WHERE a.id = $1 AND " OWNED;
static const char SQL_DROP_SECRETS[] =
    "DELETE FROM app_secrets s USING apps a WHERE s.app_id = a.id AND a.id = $1 AND " OWNED;
static const char SQL_ADD_SECRET[] = "INSERT INTO app_secrets (app_id, secret_sealed, hint)"
                                     " SELECT a.id, $3, $4 FROM apps a WHERE a.id = $1 AND " OWNED;
static const char SQL_GET_OWNED[] = "SELECT " APP_JSON " FROM apps a WHERE a.id = $1 AND " OWNED;

/* app_secrets go by cascade; events and deliveries stay, they are history.
 * Accounts still pointing at the app make the foreign key refuse. */
static const char SQL_DELETE[] = "DELETE FROM apps a WHERE a.id = $1 AND " OWNED;

struct app_input {
    struct buf meta_app_id, name, version, verify_token, secret, add_secret;
    bool has_name, has_version, has_token, has_secret, has_add;
    bool has_tenant;
    int64_t tenant_id;
};

static void input_init(struct app_input *in)
{
    memset(in, 0, sizeof(*in));
    buf_init(&in->meta_app_id);
    buf_init(&in->name);
    buf_init(&in->version);
    buf_init(&in->verify_token);
    buf_init(&in->secret);
    buf_init(&in->add_secret);
}

/* Zeroes the whole allocation, not just len: nothing of a secret stays behind. */
static void wipe(struct buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    buf_dispose(b);
}

static void input_dispose(struct app_input *in)
{
    buf_dispose(&in->meta_app_id);
    buf_dispose(&in->name);
    buf_dispose(&in->version);
    wipe(&in->verify_token);
    wipe(&in->secret);
    wipe(&in->add_secret);
}

/* The request body holds the secrets in clear too; nothing reads it after
 * the handler, so it is wiped with them. */
static bool valid_meta_app_id(const char *s, size_t n)
{
    if (n == 0 || n > META_APP_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* ^v[0-9]{1,2}\.[0-9]$ */
static bool valid_version(const char *s, size_t n)
{
    size_t d = 0;
    if (n < 4 || s[0] != 'v')
        return false;
    while (1 + d < n && isdigit((unsigned char)s[1 + d]))
        d++;
    return (d == 1 || d == 2) && n == d + 3 && s[1 + d] == '.' && isdigit((unsigned char)s[2 + d]);
}

static bool is_printable_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* A secret member: 1..SECRET_MAX bytes. 1 when present, 0 when absent or
 * null, -1 with a 422 set. The buffer is sized for the whole body first, so
 * decoding never reallocates and leaves no copy in freed memory. */
static int read_secret(struct api_call *call, const struct json_doc *doc, const char *key,
                       bool printable, struct buf *out)
{
    buf_reserve(out, call->body_len);
    int rc = api_body_string(call, doc, key, SECRET_MAX, out);
    if (rc <= 0)
        return rc;
    if (out->len == 0) {
        api_invalid(call, key, "%s must not be empty", key);
        return -1;
    }
    if (printable && !is_printable_ascii(out->data, out->len)) {
        api_invalid(call, key, "%s must be printable ASCII characters", key);
        return -1;
    }
    return 1;
}

/* Members shared by create and update. false with a 422 set. */
static bool read_common(struct api_call *call, const struct json_doc *doc, struct app_input *in)
{
    int rc = api_body_string(call, doc, "graph_api_version", 64, &in->version);
    if (rc < 0)
        return false;
    if (rc > 0 && !valid_version(in->version.data, in->version.len)) {
        api_invalid(call, "graph_api_version",
                    "graph_api_version must look like \"v25.0\" (v, 1-2 digits, '.', a digit)");
        return false;
    }
    in->has_version = rc > 0;
    if ((rc = api_body_string(call, doc, "name", APP_NAME_MAX, &in->name)) < 0)
        return false;
    in->has_name = rc > 0;
    if ((rc = read_secret(call, doc, "verify_token", true, &in->verify_token)) < 0)
        return false;
    in->has_token = rc > 0;
    if ((rc = read_secret(call, doc, "app_secret", false, &in->secret)) < 0)
        return false;
    in->has_secret = rc > 0;
    return true;
}

static bool read_create(struct api_call *call, const struct json_doc *doc, struct app_input *in)
{
    static const char *const allowed[] = {"meta_app_id", "app_secret",        "verify_token",
                                          "name",        "graph_api_version", "tenant_id",
                                          NULL};
    if (!api_body_only(call, doc, allowed))
        return false;
    int rc = api_body_string(call, doc, "meta_app_id", 64, &in->meta_app_id);
    if (rc < 0)
        return false;
    if (rc == 0) {
        api_invalid(call, "meta_app_id", "meta_app_id is required");
        return false;
    }
    if (!valid_meta_app_id(in->meta_app_id.data, in->meta_app_id.len)) {
        api_invalid(call, "meta_app_id", "meta_app_id must be the app's numeric id (1-%d digits)",
                    META_APP_ID_MAX);
        return false;
    }
    if (!read_common(call, doc, in))
        return false;
    if (!in->has_secret) {
        api_invalid(call, "app_secret", "app_secret is required");
        return false;
    }
    if (!in->has_token) {
        api_invalid(call, "verify_token", "verify_token is required");
        return false;
    }

    int t = json_get(doc, 0, "tenant_id");
    bool is_null =
        t >= 0 && doc->toks[t].type == JSON_PRIMITIVE && doc->text[doc->toks[t].start] == 'n';
    if (t >= 0 && !is_null) {
        if (!json_int64(doc, t, &in->tenant_id)) {
            api_invalid(call, "tenant_id", "tenant_id must be a tenant's id");
            return false;
        }
        if (!call->caller.is_operator && in->tenant_id != call->caller.tenant_id) {
            api_invalid(call, "tenant_id", "a tenant key creates apps of its own tenant only");
            return false;
        }
        in->has_tenant = true;
    }
    if (!call->caller.is_operator) {
        in->has_tenant = true;
        in->tenant_id = call->caller.tenant_id;
    }
    return true;
}

static bool read_update(struct api_call *call, const struct json_doc *doc, struct app_input *in)
{
    if (json_get(doc, 0, "meta_app_id") >= 0) {
        api_invalid(call, "meta_app_id", "meta_app_id cannot be changed; create another app");
        return false;
    }
    if (json_get(doc, 0, "tenant_id") >= 0) {
        api_invalid(call, "tenant_id", "an app's tenant cannot be changed");
        return false;
    }
    static const char *const allowed[] = {"name",       "graph_api_version", "verify_token",
                                          "app_secret", "add_app_secret",    NULL};
    if (!api_body_only(call, doc, allowed) || !read_common(call, doc, in))
        return false;
    int rc = read_secret(call, doc, "add_app_secret", false, &in->add_secret);
    if (rc < 0)
        return false;
    in->has_add = rc > 0;
    if (in->has_add && in->has_secret) {
        api_invalid(call, "add_app_secret",
                    "give app_secret (replaces every secret) or add_app_secret (adds one), not "
                    "both");
        return false;
    }
    return true;
}

static void id_text(int64_t v, char out[24])
{
    snprintf(out, 24, "%" PRId64, v);
}

/* The caller's tenant as a statement parameter: NULL for the operator. */
static const char *scope_of(const struct api_call *call, char out[24])
{
    if (call->caller.is_operator)
        return NULL;
    id_text(call->caller.tenant_id, out);
    return out;
}

void apps_list(struct api_call *call, PGconn *c)
{
    static const char *const known[] = {"limit", "cursor", "tenant_id", NULL};
    int limit;
    int64_t after = 0, unused;
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        api_cursor_decode(call, &after, &unused) < 0)
        return;
    /* ?tenant_id=<id> keeps the apps that tenant owns, ?tenant_id=none the shared ones. */
    const char *filter = api_param(call, "tenant_id");
    const char *owner = NULL, *shared_only = "false";
    if (filter != NULL && strcmp(filter, "none") == 0) {
        shared_only = "true";
    } else if (filter != NULL) {
        size_t n = strlen(filter);
        bool ok = n > 0 && n <= 18;
        for (size_t i = 0; i < n && ok; i++)
            ok = isdigit((unsigned char)filter[i]);
        if (!ok) {
            api_error(call, 400, "bad_request", "tenant_id must be a tenant's id or \"none\"");
            return;
        }
        owner = filter;
    }
    char a[24], l[16], scope[24];
    id_text(after, a);
    snprintf(l, sizeof(l), "%d", limit + 1);
    const char *params[] = {a, scope_of(call, scope), owner, shared_only, l};
    PGresult *r = api_exec(c, SQL_LIST, 5, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}

void apps_create(struct api_call *call, PGconn *c)
{
    struct app_input in;
    input_init(&in);
    struct json_doc doc;
    if (!api_body_object(call, &doc)) {
        api_wipe_body(call);
        return;
    }
    bool ok = read_create(call, &doc, &in);
    json_doc_dispose(&doc);
    api_wipe_body(call);
    if (!ok) {
        input_dispose(&in);
        return;
    }

    char context[64], secret_hint[16], token_hint[16], tenant[24];
    snprintf(context, sizeof(context), "app_secret:%s", in.meta_app_id.data);
    char *secret_sealed = keyring_seal(call->keys, context, in.secret.data, in.secret.len);
    api_secret_hint(in.secret.data, in.secret.len, secret_hint);
    snprintf(context, sizeof(context), "verify_token:%s", in.meta_app_id.data);
    char *token_sealed =
        keyring_seal(call->keys, context, in.verify_token.data, in.verify_token.len);
    api_secret_hint(in.verify_token.data, in.verify_token.len, token_hint);
    wipe(&in.secret);
    wipe(&in.verify_token);

    id_text(in.tenant_id, tenant);
    const char *params[] = {in.has_tenant ? tenant : NULL,
                            in.meta_app_id.data,
                            token_sealed,
                            token_hint,
                            in.has_name ? in.name.data : "",
                            in.has_version ? in.version.data : APP_DEFAULT_VERSION,
                            secret_sealed,
                            secret_hint};
    PGresult *r = api_exec(c, SQL_CREATE, 8, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* A tenant deleted between the check and the insert. */
        if (strcmp(db_sqlstate(r), "23503") == 0)
            api_invalid(call, "tenant_id", "no tenant with this id");
        else
            api_db_error(call, c, r, "an app with this meta_app_id exists");
    } else if (PQntuples(r) == 0) {
        api_invalid(call, "tenant_id", "no tenant with this id");
    } else {
        api_reply_row(call, 201, r);
        snprintf(call->location, sizeof(call->location), "/v1/apps/%s", PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    free(secret_sealed);
    free(token_sealed);
    input_dispose(&in);
}

void apps_get(struct api_call *call, PGconn *c)
{
    char id[24], scope[24];
    id_text(call->ids[0], id);
    const char *params[] = {id, scope_of(call, scope)};
    PGresult *r = api_exec(c, SQL_GET, 2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no app with this id");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

/* Runs one statement of the PATCH transaction; false with the error set. */
static bool step(struct api_call *call, PGconn *c, const char *sql, int n,
                 const char *const *params, ExecStatusType want, PGresult **out)
{
    PGresult *r = api_exec(c, sql, n, params);
    if (PQresultStatus(r) != want) {
        api_db_error(call, c, r, NULL);
        PQclear(r);
        return false;
    }
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return true;
}

void apps_update(struct api_call *call, PGconn *c)
{
    struct app_input in;
    input_init(&in);
    struct json_doc doc;
    if (!api_body_object(call, &doc)) {
        api_wipe_body(call);
        return;
    }
    bool ok = read_update(call, &doc, &in);
    json_doc_dispose(&doc);
    api_wipe_body(call);
    if (!ok) {
        input_dispose(&in);
        return;
    }

    char id[24], scope[24], meta_app_id[META_APP_ID_MAX + 1], context[64];
    char token_hint[16], secret_hint[16];
    char *token_sealed = NULL, *secret_sealed = NULL;
    struct buf *secret = in.has_secret ? &in.secret : in.has_add ? &in.add_secret : NULL;
    id_text(call->ids[0], id);
    const char *p2[] = {id, scope_of(call, scope)};
    PGresult *r;
    if (!api_begin(call, c))
        goto out;

    if (!step(call, c, SQL_LOCK, 2, p2, PGRES_TUPLES_OK, &r))
        goto out;
    if (PQntuples(r) == 0) {
        PQclear(r);
        api_not_found(call, "no app with this id");
        goto out;
    }
    snprintf(meta_app_id, sizeof(meta_app_id), "%s", PQgetvalue(r, 0, 0));
    bool is_full = strtol(PQgetvalue(r, 0, 1), NULL, 10) >= APP_SECRETS_MAX;
    PQclear(r);
    if (in.has_add && is_full) {
        api_invalid(call, "add_app_secret",
                    "an app has at most %d live secrets; replace them with app_secret",
                    APP_SECRETS_MAX);
        goto out;
    }

    if (in.has_token) {
        snprintf(context, sizeof(context), "verify_token:%s", meta_app_id);
        token_sealed = keyring_seal(call->keys, context, in.verify_token.data, in.verify_token.len);
        api_secret_hint(in.verify_token.data, in.verify_token.len, token_hint);
        wipe(&in.verify_token);
    }
    if (secret != NULL) {
        snprintf(context, sizeof(context), "app_secret:%s", meta_app_id);
        secret_sealed = keyring_seal(call->keys, context, secret->data, secret->len);
        api_secret_hint(secret->data, secret->len, secret_hint);
        wipe(secret);
    }

    if (in.has_name || in.has_version || in.has_token || secret != NULL) {
        const char *pu[] = {id,
                            p2[1],
                            in.has_name ? in.name.data : NULL,
                            in.has_version ? in.version.data : NULL,
                            token_sealed,
                            in.has_token ? token_hint : NULL};
        if (!step(call, c, SQL_UPDATE, 6, pu, PGRES_COMMAND_OK, NULL))
            goto out;
    }
    if (in.has_secret && !step(call, c, SQL_DROP_SECRETS, 2, p2, PGRES_COMMAND_OK, NULL))
        goto out;
    if (secret != NULL) {
        const char *ps[] = {id, p2[1], secret_sealed, secret_hint};
        if (!step(call, c, SQL_ADD_SECRET, 4, ps, PGRES_COMMAND_OK, NULL))
            goto out;
    }
    if (!step(call, c, SQL_GET_OWNED, 2, p2, PGRES_TUPLES_OK, &r))
        goto out;
    api_reply_row(call, 200, r);
    PQclear(r);
    api_commit(call, c); /* on failure its error replaces the answer */
out:
    api_rollback(c);
    free(token_sealed);
    free(secret_sealed);
    input_dispose(&in);
}

void apps_delete(struct api_call *call, PGconn *c)
{
    char id[24], scope[24];
    id_text(call->ids[0], id);
    const char *params[] = {id, scope_of(call, scope)};
    PGresult *r = api_exec(c, SQL_DELETE, 2, params);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (strcmp(db_sqlstate(r), "23503") == 0)
            api_error(call, 409, "conflict",
                      "accounts still use this app; delete those accounts first");
        else
            api_db_error(call, c, r, NULL);
    } else if (strcmp(PQcmdTuples(r), "0") == 0) {
        api_not_found(call, "no app with this id");
    } else {
        call->status = 204;
    }
    PQclear(r);
}
