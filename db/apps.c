/*
 * apps.c - the apps and app_secrets tables; see apps.h.
 */
#include "db/apps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/pool.h"
#include "lib/hb.h"

void db_app_free(struct db_app *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nsecrets; i++)
        free(a->secrets_sealed[i]);
    free(a->secrets_sealed);
    free(a->meta_app_id);
    free(a->verify_token_sealed);
    free(a);
}

static int exec_ok(PGconn *c, PGresult *r, ExecStatusType want)
{
    int rc = PQresultStatus(r) == want ? 0 : db_result_rc(c, r);
    PQclear(r);
    return rc;
}

int db_app_add(PGconn *c, int64_t tenant_id, const char *meta_app_id,
               const char *verify_token_sealed, const char *secret_sealed, const char *hint,
               int64_t *id)
{
    char tenant[32];
    snprintf(tenant, sizeof(tenant), "%lld", (long long)tenant_id);
    const char *params[] = {tenant_id >= 0 ? tenant : NULL, meta_app_id, verify_token_sealed,
                            secret_sealed, hint};
    /* One statement, so the app never exists without its secret. */
    PGresult *r =
        PQexecParams(c,
                     "WITH a AS (INSERT INTO apps (tenant_id, meta_app_id, verify_token_sealed)"
                     " VALUES ($1, $2, $3) RETURNING id)"
                     " INSERT INTO app_secrets (app_id, secret_sealed, hint)"
                     " SELECT id, $4, $5 FROM a RETURNING app_id",
                     5, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return 0;
    }
    return exec_ok(c, r, PGRES_TUPLES_OK);
}

int db_app_add_secret(PGconn *c, const char *meta_app_id, const char *secret_sealed,
                      const char *hint)
{
    const char *params[] = {meta_app_id, secret_sealed, hint};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO app_secrets (app_id, secret_sealed, hint)"
                               " SELECT id, $2, $3 FROM apps WHERE meta_app_id = $1",
                               3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "0") == 0) {
        PQclear(r);
        return HB_ENOTFOUND;
    }
    return exec_ok(c, r, PGRES_COMMAND_OK);
}

int db_app_get(PGconn *c, const char *meta_app_id, struct db_app **out)
{
    const char *params[] = {meta_app_id};
    PGresult *r = PQexecParams(c,
                               "SELECT a.id, a.tenant_id, a.verify_token_sealed, s.secret_sealed"
                               " FROM apps a LEFT JOIN app_secrets s ON s.app_id = a.id"
                               " WHERE a.meta_app_id = $1 ORDER BY s.id",
                               1, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = db_result_rc(c, r);
        goto out;
    }
    int n = PQntuples(r);
    if (n == 0) {
        rc = HB_ENOTFOUND;
        goto out;
    }
    struct db_app *a = xcalloc(1, sizeof(*a));
    a->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    a->has_tenant = !PQgetisnull(r, 0, 1);
    a->tenant_id = a->has_tenant ? strtoll(PQgetvalue(r, 0, 1), NULL, 10) : 0;
    a->meta_app_id = xstrdup(meta_app_id);
    a->verify_token_sealed = xstrdup(PQgetvalue(r, 0, 2));
    a->secrets_sealed = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++)
        if (!PQgetisnull(r, i, 3))
            a->secrets_sealed[a->nsecrets++] = xstrdup(PQgetvalue(r, i, 3));
    *out = a;
out:
    PQclear(r);
    return rc;
}
