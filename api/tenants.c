/*
 * tenants.c - /v1/tenants and /v1/tenants/{id}/keys; see tenants.h.
 *
 * An API key is "hb_" and 32 random bytes in base64url. Only its SHA-256 is
 * stored; the key itself is in the answer to its creation and nowhere else.
 */
#include "api/tenants.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "db/jobs.h"
#include "lib/base64url.h"
#include "lib/hb.h"
#include "lib/hex.h"

#define TENANT_JSON                                                                                \
    "jsonb_build_object('id', id, 'name', name, 'created_at', created_at, 'retention_days',"       \
    " retention_days)::text"
#define RETENTION_DAYS_MAX 36500
#define KEY_JSON                                                                                   \
    "jsonb_build_object('id', id, 'tenant_id', tenant_id, 'name', name, 'prefix', prefix,"         \
    " 'created_at', created_at, 'revoked_at', revoked_at)"
#define KEY_NAME_MAX 200

static bool valid_tenant_name(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* Reads {"name": ...} for create and update. */
static bool read_name(struct api_call *call, struct buf *name)
{
    struct json_doc doc;
    if (!api_body_object(call, &doc))
        return false;
    static const char *const allowed[] = {"name", NULL};
    bool ok = api_body_only(call, &doc, allowed);
    if (ok) {
        int rc = api_body_string(call, &doc, "name", 63, name);
        if (rc == 0)
            api_invalid(call, "name", "name is required");
        else if (rc > 0 && !valid_tenant_name(name->data, name->len))
            api_invalid(call, "name",
                        "name must be 1-63 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit");
        ok = rc > 0 && valid_tenant_name(name->data, name->len);
    }
    json_doc_dispose(&doc);
    return ok;
}

void tenants_list(struct api_call *call, PGconn *c)
{
    static const char *const known[] = {"limit", "cursor", NULL};
    int limit;
    int64_t after = 0, unused;
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        api_cursor_decode(call, &after, &unused) < 0)
        return;
    char a[24], l[16];
    snprintf(a, sizeof(a), "%" PRId64, after);
    snprintf(l, sizeof(l), "%d", limit + 1);
    const char *params[] = {a, l};
    PGresult *r = api_exec(c,
                           "SELECT " TENANT_JSON ", id FROM tenants WHERE id > $1"
                           " ORDER BY id LIMIT $2",
                           2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}

void tenants_create(struct api_call *call, PGconn *c)
{
    struct buf name;
    buf_init(&name);
    if (read_name(call, &name)) {
        const char *params[] = {name.data};
        PGresult *r = api_exec(c,
                               "INSERT INTO tenants (name) VALUES ($1)"
                               " RETURNING " TENANT_JSON ", id",
                               1, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            api_db_error(call, c, r, "a tenant with this name exists");
        } else {
            api_reply_row(call, 201, r);
            snprintf(call->location, sizeof(call->location), "/v1/tenants/%s", PQgetvalue(r, 0, 1));
        }
        PQclear(r);
    }
    buf_dispose(&name);
}

/* GET for the operator, and for a tenant's key its own tenant (any other id
 * is 404, as everywhere in the API). */
void tenants_get(struct api_call *call, PGconn *c)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id};
    PGresult *r = NULL;
    if (call->caller.is_operator || call->caller.tenant_id == call->ids[0])
        r = api_exec(c, "SELECT " TENANT_JSON " FROM tenants WHERE id = $1", 1, params);
    if (r != NULL && PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (r == NULL || PQntuples(r) == 0)
        api_not_found(call, "no tenant with this id");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

/* PATCH {"name"?, "retention_days"?}: retention_days null follows the
 * operator's default (hubbub retention --older-than). */
void tenants_update(struct api_call *call, PGconn *c)
{
    struct json_doc doc;
    if (!api_body_object(call, &doc))
        return;
    static const char *const allowed[] = {"name", "retention_days", NULL};
    struct buf name;
    buf_init(&name);
    bool ok = api_body_only(call, &doc, allowed);
    int has_name = ok ? api_body_string(call, &doc, "name", 63, &name) : 0;
    if (has_name < 0)
        ok = false;
    else if (has_name > 0 && !valid_tenant_name(name.data, name.len)) {
        api_invalid(call, "name",
                    "name must be 1-63 letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit");
        ok = false;
    }
    int t = ok ? json_get(&doc, 0, "retention_days") : -1;
    char days[24] = "";
    if (t >= 0) {
        const char *raw;
        size_t n;
        json_raw(&doc, t, &raw, &n);
        int64_t v;
        if (n == 4 && memcmp(raw, "null", 4) == 0) {
            days[0] = '\0';
        } else if (!json_is_string(&doc, t) && json_int64(&doc, t, &v) && v >= 1 &&
                   v <= RETENTION_DAYS_MAX) {
            snprintf(days, sizeof(days), "%" PRId64, v);
        } else {
            api_invalid(call, "retention_days",
                        "retention_days must be a whole number of days from 1 to %d, or null",
                        RETENTION_DAYS_MAX);
            ok = false;
        }
    }
    if (ok && has_name == 0 && t < 0) {
        api_invalid(call, "name", "give name, retention_days or both");
        ok = false;
    }
    json_doc_dispose(&doc);
    if (ok) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
        const char *params[] = {id, has_name > 0 ? name.data : NULL, t >= 0 ? "t" : "f",
                                days[0] != '\0' ? days : NULL};
        PGresult *r = api_exec(c,
                               "UPDATE tenants SET name = coalesce($2, name),"
                               " retention_days = CASE WHEN $3::bool THEN $4::int"
                               "  ELSE retention_days END"
                               " WHERE id = $1 RETURNING " TENANT_JSON,
                               4, params);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            api_db_error(call, c, r, "a tenant with this name exists");
        else if (PQntuples(r) == 0)
            api_not_found(call, "no tenant with this id");
        else
            api_reply_row(call, 200, r);
        PQclear(r);
    }
    buf_dispose(&name);
}

/* Everything of a tenant goes in one transaction: its events (also those
 * routed to it from shared apps), its accounts, its own apps with their
 * deliveries, then the tenant and, by cascade, its keys. */
static const char *const DELETE_STEPS[] = {
    "WITH e AS (DELETE FROM events WHERE tenant_id = $1 RETURNING app_id, dedup_key)"
    " DELETE FROM event_keys k USING e WHERE k.app_id = e.app_id AND k.dedup_key = e.dedup_key",
    "DELETE FROM accounts WHERE tenant_id = $1",
    "DELETE FROM deliveries WHERE app_id IN (SELECT id FROM apps WHERE tenant_id = $1)",
    "WITH e AS (DELETE FROM events WHERE app_id IN (SELECT id FROM apps WHERE tenant_id = $1)"
    "  RETURNING app_id, dedup_key)"
    " DELETE FROM event_keys k USING e WHERE k.app_id = e.app_id AND k.dedup_key = e.dedup_key",
    "DELETE FROM apps WHERE tenant_id = $1",
    "DELETE FROM tenants WHERE id = $1",
};

void tenants_delete(struct api_call *call, PGconn *c)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id};
    if (!api_begin(call, c))
        return;
    /* Meta keeps sending for the tenant's accounts until they are
     * unsubscribed: queue that before they go (db/jobs.h), with their rows
     * locked first, in the order every other writer takes them. */
    PGresult *l = api_exec(c, "SELECT id FROM accounts WHERE tenant_id = $1 ORDER BY id FOR UPDATE",
                           1, params);
    bool locked = PQresultStatus(l) == PGRES_TUPLES_OK;
    if (!locked)
        api_db_error(call, c, l, NULL);
    PQclear(l);
    if (!locked) {
        api_rollback(c);
        return;
    }
    int rc = db_jobs_enqueue_unsubscribe_tenant(c, call->ids[0]);
    if (rc != 0) {
        api_rollback(c);
        if (rc == HB_EUNAVAILABLE)
            api_error(call, 503, "unavailable", "the database is unavailable; try again");
        else
            api_error(call, 500, "internal", "the unsubscribe jobs could not be queued");
        return;
    }
    for (size_t i = 0; i < HB_ARRAY_SIZE(DELETE_STEPS); i++) {
        PGresult *r = api_exec(c, DELETE_STEPS[i], 1, params);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            api_db_error(call, c, r, NULL);
            PQclear(r);
            api_rollback(c);
            return;
        }
        bool none = i == HB_ARRAY_SIZE(DELETE_STEPS) - 1 && strcmp(PQcmdTuples(r), "0") == 0;
        PQclear(r);
        if (none) {
            api_rollback(c);
            api_not_found(call, "no tenant with this id");
            return;
        }
    }
    if (api_commit(call, c))
        call->status = 204;
}

/* ---- keys ---- */

/* 404 unless tenant ids[0] exists; false when the answer is set. */
static bool tenant_exists(struct api_call *call, PGconn *c, const char *id)
{
    const char *params[] = {id};
    PGresult *r = api_exec(c, "SELECT 1 FROM tenants WHERE id = $1", 1, params);
    bool ok = false;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no tenant with this id");
    else
        ok = true;
    PQclear(r);
    return ok;
}

void keys_list(struct api_call *call, PGconn *c)
{
    static const char *const known[] = {"limit", "cursor", NULL};
    int limit;
    int64_t after = 0, unused;
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        api_cursor_decode(call, &after, &unused) < 0)
        return;
    char id[24], a[24], l[16];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    snprintf(a, sizeof(a), "%" PRId64, after);
    snprintf(l, sizeof(l), "%d", limit + 1);
    if (!tenant_exists(call, c, id))
        return;
    const char *params[] = {id, a, l};
    PGresult *r = api_exec(c,
                           "SELECT " KEY_JSON "::text, id FROM api_keys"
                           " WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                           3, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}

void keys_create(struct api_call *call, PGconn *c)
{
    struct buf name;
    buf_init(&name);
    buf_puts(&name, "");
    if (call->body != NULL && call->body_len > 0) {
        struct json_doc doc;
        if (!api_body_object(call, &doc)) {
            buf_dispose(&name);
            return;
        }
        static const char *const allowed[] = {"name", NULL};
        bool ok = api_body_only(call, &doc, allowed) &&
                  api_body_string(call, &doc, "name", KEY_NAME_MAX, &name) >= 0;
        json_doc_dispose(&doc);
        if (!ok) {
            buf_dispose(&name);
            return;
        }
    }

    uint8_t raw[32], digest[SHA256_DIGEST_LENGTH];
    char key[API_KEY_LEN + 1], prefix[API_KEY_SHOWN_PREFIX + 1], hash[2 * sizeof(digest) + 3];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        api_error(call, 500, "internal", "no randomness available for a key");
        buf_dispose(&name);
        return;
    }
    memcpy(key, API_KEY_PREFIX, strlen(API_KEY_PREFIX));
    base64url_encode(key + strlen(API_KEY_PREFIX), raw, sizeof(raw));
    explicit_bzero(raw, sizeof(raw));
    snprintf(prefix, sizeof(prefix), "%.*s", API_KEY_SHOWN_PREFIX, key);
    SHA256((const uint8_t *)key, strlen(key), digest);
    memcpy(hash, "\\x", 2);
    hex_encode(hash + 2, digest, sizeof(digest));

    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    const char *params[] = {id, name.data, prefix, hash, key};
    /* The key reaches the answer as a parameter of json_build_object; it is
     * never written to the table. */
    PGresult *r = api_exec(c,
                           "INSERT INTO api_keys (tenant_id, name, prefix, key_hash)"
                           " SELECT id, $2, $3, $4::bytea FROM tenants WHERE id = $1"
                           " RETURNING (" KEY_JSON "::jsonb || jsonb_build_object('key', $5::text))"
                           "::text, id",
                           5, params);
    explicit_bzero(key, sizeof(key));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        api_db_error(call, c, r, NULL);
    } else if (PQntuples(r) == 0) {
        api_not_found(call, "no tenant with this id");
    } else {
        api_reply_row(call, 201, r);
        snprintf(call->location, sizeof(call->location), "/v1/tenants/%s/keys/%s", id,
                 PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    buf_dispose(&name);
}

void keys_get(struct api_call *call, PGconn *c)
{
    char id[24], key_id[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    snprintf(key_id, sizeof(key_id), "%" PRId64, call->ids[1]);
    const char *params[] = {id, key_id};
    PGresult *r = api_exec(c,
                           "SELECT " KEY_JSON "::text FROM api_keys"
                           " WHERE tenant_id = $1 AND id = $2",
                           2, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else if (PQntuples(r) == 0)
        api_not_found(call, "no key with this id for this tenant");
    else
        api_reply_row(call, 200, r);
    PQclear(r);
}

void keys_revoke(struct api_call *call, PGconn *c)
{
    char id[24], key_id[24];
    snprintf(id, sizeof(id), "%" PRId64, call->ids[0]);
    snprintf(key_id, sizeof(key_id), "%" PRId64, call->ids[1]);
    const char *params[] = {id, key_id};
    PGresult *r = api_exec(c,
                           "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                           " WHERE tenant_id = $1 AND id = $2",
                           2, params);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        api_db_error(call, c, r, NULL);
    else if (strcmp(PQcmdTuples(r), "0") == 0)
        api_not_found(call, "no key with this id for this tenant");
    else
        call->status = 204;
    PQclear(r);
}
