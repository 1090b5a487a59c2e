/*
 * messages.c - the outbox's worker side; see messages.h.
 */
#include "db/messages.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "db/jobs.h"
#include "db/pool.h"

/* The echo of reply m: its tenant's message_echoes event with the mid,
 * found through the payload's GIN index. */
#define ECHO_OF(m, mid)                                                                            \
    "(SELECT e.id FROM events e WHERE e.tenant_id = " m ".tenant_id"                               \
    "  AND e.field = 'message_echoes'"                                                             \
    "  AND e.payload @> jsonb_build_object('message', jsonb_build_object('mid', " mid "))"         \
    "  ORDER BY e.id LIMIT 1)"

#define STORE_STMT "hb_messages_store_sent"
#define STORE_SQL                                                                                  \
    "UPDATE messages m SET meta_message_id = $2, sent_at = now(),"                                 \
    " echo_event_id = coalesce(m.echo_event_id, " ECHO_OF(                                         \
        "m", "$2::text") ") WHERE m.id = $1::bigint AND m.meta_message_id IS NULL"
#define LOAD_STMT "hb_messages_load"
#define LOAD_SQL                                                                                   \
    "SELECT m.request::text, m.meta_message_id, a.ig_id, a.page_id, a.login_type,"                 \
    " a.access_token_sealed, a.app_id, p.graph_api_version"                                        \
    " FROM messages m JOIN accounts a ON a.id = m.account_id"                                      \
    " JOIN apps p ON p.id = a.app_id WHERE m.id = $1::bigint"

int db_messages_prepare(PGconn *c)
{
    PGresult *r = PQprepare(c, STORE_STMT, STORE_SQL, 0, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(c, r);
    PQclear(r);
    if (rc != 0)
        return rc;
    r = PQprepare(c, LOAD_STMT, LOAD_SQL, 0, NULL);
    rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(c, r);
    PQclear(r);
    return rc;
}

PGresult *db_messages_load(PGconn *c, int64_t id)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, id);
    const char *params[] = {v};
    return PQexecPrepared(c, LOAD_STMT, 1, params, NULL, NULL, 0);
}

int db_messages_store_sent(PGconn *c, int64_t id, const char *meta_message_id)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, id);
    const char *params[] = {v, meta_message_id};
    PGresult *r = PQexecPrepared(c, STORE_STMT, 2, params, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(c, r);
    PQclear(r);
    return rc;
}

/* A statement without parameters or rows: 0 or an HB_E* code. */
static int exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(c, r);
    PQclear(r);
    return rc;
}

int db_messages_sent(PGconn *c, const struct job *j, const char *meta_message_id)
{
    /* One transaction, one commit to wait for. The id is stored even when
     * the lease turns out lost (the job's update then changes nothing); both
     * are lost together only if the commit fails. */
    int lease = 0;
    int rc = exec_ok(c, "BEGIN");
    if (rc == 0)
        rc = db_messages_store_sent(c, j->message_id, meta_message_id);
    if (rc == 0)
        rc = (lease = db_jobs_succeed(c, j)) < 0 ? lease : 0;
    if (rc == 0)
        rc = exec_ok(c, "COMMIT");
    if (rc != 0) {
        PQclear(PQexec(c, "ROLLBACK"));
        return rc;
    }
    return lease;
}

int db_messages_link_echoes(PGconn *c, int *linked)
{
    PGresult *r = PQexec(
        c, "WITH s AS ("
           " SELECT m.id, " ECHO_OF(
               "m", "m.meta_message_id") " AS echo"
                                         " FROM messages m WHERE m.meta_message_id IS NOT NULL"
                                         "  AND m.echo_event_id IS NULL"
                                         "  AND m.sent_at > now() - interval '10 minutes'"
                                         " ORDER BY m.sent_at LIMIT 1000"
                                         ")"
                                         " UPDATE messages SET echo_event_id = s.echo FROM s"
                                         " WHERE messages.id = s.id AND s.echo IS NOT NULL"
                                         "  AND messages.echo_event_id IS NULL");
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(c, r);
    if (rc == 0 && linked != NULL)
        *linked = (int)strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}
