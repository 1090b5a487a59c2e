/*
 * partitions.c - partition upkeep; see partitions.h.
 *
 * The work is the SQL function hubbub_partitions_ensure() of migration 0004,
 * so that `hubbub migrate`, the server's upkeep thread and an operator at
 * psql all do the same thing. A partition is created only when missing, so
 * the periodic call normally takes no lock stronger than a catalog lookup.
 */
#include "db/partitions.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "db/pool.h"
#include "lib/hb.h"

int db_partitions_ensure(PGconn *c, int months_ahead, int64_t lock_timeout_ms, int *created)
{
    char months[16], timeout[32];
    snprintf(months, sizeof(months), "%d", months_ahead);
    snprintf(timeout, sizeof(timeout), "%" PRId64, lock_timeout_ms > 0 ? lock_timeout_ms : 0);
    const char *params[] = {months, timeout};
    /* set_config(..., true) is local to the statement's transaction. */
    PGresult *r = PQexecParams(c,
                               "SELECT set_config('lock_timeout', $2, true),"
                               " hubbub_partitions_ensure($1::int)",
                               2, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = db_result_rc(c, r);
    else
        *created = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    return rc;
}
