/*
 * tenants.c - the tenants table; see tenants.h.
 */
#include "db/tenants.h"

#include <stdlib.h>

#include "db/pool.h"
#include "lib/hb.h"

int db_tenant_add(PGconn *c, const char *name, int64_t *id)
{
    const char *params[] = {name};
    PGresult *r = PQexecParams(c, "INSERT INTO tenants (name) VALUES ($1) RETURNING id", 1, NULL,
                               params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = db_result_rc(c, r);
    else
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}

int db_tenant_find(PGconn *c, const char *name, int64_t *id)
{
    const char *params[] = {name};
    PGresult *r =
        PQexecParams(c, "SELECT id FROM tenants WHERE name = $1", 1, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = db_result_rc(c, r);
    else if (PQntuples(r) == 0)
        rc = HB_ENOTFOUND;
    else
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}
