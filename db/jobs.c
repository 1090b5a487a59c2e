/*
 * jobs.c - the durable job queue; see jobs.h.
 *
 * The claim is one statement: a CTE picks the oldest due job that no other
 * transaction has locked (SKIP LOCKED), that has no unfinished predecessor
 * with its serial key and whose account and app are not held, and the UPDATE
 * around it marks it running under a new lease token. Because a retried job
 * goes back to 'queued' rather than to the end of the queue, a later job of
 * the same key stays behind it: a conversation's replies keep their order
 * through failures.
 */
#include "db/jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/pool.h"
#include "lib/buf.h"
#include "lib/hb.h"

/* What keeps a due job waiting, besides its lease: an account waiting for a
 * new token or paused, or an app paused by a rate limit. db_jobs_hold() also
 * moves such jobs' run_at out of the way; this is the check that counts. */
#define NOT_HELD(j)                                                                                \
    " NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = " j ".account_id"                          \
    "  AND (a.sub_state = 'token_invalid' OR a.paused_until > now()))"                             \
    " AND NOT EXISTS (SELECT 1 FROM apps p WHERE p.id = " j ".app_id AND p.paused_until > now())"

/* A job waits while an earlier job of its key is unfinished, or while any
 * job of its key runs. */
#define NO_PREDECESSOR(j)                                                                          \
    " NOT EXISTS (SELECT 1 FROM jobs e WHERE e.serial_key = " j ".serial_key"                      \
    "  AND e.state IN ('queued', 'running') AND e.id <> " j ".id"                                  \
    "  AND (e.id < " j ".id OR e.state = 'running'))"

static const char CLAIM_SQL[] =
    "WITH c AS ("
    " SELECT j.id FROM jobs j"
    " WHERE j.state = 'queued' AND j.run_at <= now() AND" NO_PREDECESSOR("j") " AND" NOT_HELD(
        "j") " ORDER BY j.run_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED"
             ")"
             " UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1,"
             "  lease_token = nextval('jobs_lease_token'),"
             "  lease_expires_at = now() + $2::bigint * interval '1 millisecond'"
             " FROM c WHERE jobs.id = c.id"
             " RETURNING jobs.id, jobs.kind, coalesce(jobs.tenant_id, -1), jobs.app_id,"
             "  coalesce(jobs.account_id, -1), coalesce(jobs.message_id, -1), jobs.lease_token,"
             "  jobs.attempts, (extract(epoch FROM jobs.created_at) * 1000000)::bigint,"
             "  jobs.payload::text,"
             "  coalesce((SELECT p.meta_app_id FROM apps p WHERE p.id = jobs.app_id), '')";
#define CLAIM_STMT "hb_jobs_claim"

/* Producers lock the serial key of what they queue until they commit, so
 * that the ids of one key, which order its jobs, are also in commit order:
 * otherwise a later id could commit first and run before the earlier one. */
#define SERIAL_LOCK(key) "pg_advisory_xact_lock(1751343729, hashtext(" key "))"

/* Where a send job starts: parked at 'infinity' while its account waits
 * for a token or an unfinished job of its key (other than itself: the
 * filter "others") stands before it, else due now or when its account's or
 * app's pause ends, like the queued ones (db_jobs_hold()). Parked jobs stay
 * out of the claim's way; the end of a job promotes the next of its key. */
#define SEND_RUN_AT(a, p, key, others)                                                             \
    "CASE WHEN " a ".sub_state = 'token_invalid' THEN 'infinity'::timestamptz"                     \
    " WHEN EXISTS (SELECT 1 FROM jobs e WHERE e.serial_key = " key                                 \
    "  AND e.state IN ('queued', 'running')" others ") THEN 'infinity'::timestamptz"               \
    " ELSE greatest(now(), " a ".paused_until, " p ".paused_until) END"

static int64_t num(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static PGresult *exec(PGconn *c, const char *sql, int n, const char *const *params)
{
    return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

/* 0 for a command or tuples result, the mapped HB_E* otherwise. */
static int check(PGconn *c, const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 0;
    return db_result_rc(c, r);
}

static void fmt_id(char out[24], int64_t v)
{
    snprintf(out, 24, "%" PRId64, v);
}

/* Takes the serial-key lock in a statement of its own: a statement's
 * snapshot is taken when it starts, so only the statements after the wait
 * see what the previous holder committed. */
static int lock_key(PGconn *c, const char *key_sql, int n, const char *const *params)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT " SERIAL_LOCK("%s"), key_sql);
    PGresult *r = exec(c, sql, n, params);
    int rc = check(c, r);
    PQclear(r);
    return rc;
}

int db_jobs_enqueue_send(PGconn *c, int64_t account_id, int64_t message_id,
                         const char *recipient_id, int64_t *job_id)
{
    char acc[24], msg[24];
    fmt_id(acc, account_id);
    fmt_id(msg, message_id);
    const char *params[] = {acc, msg, recipient_id};
    const char *key_params[] = {acc, recipient_id};
    int rc = lock_key(c, "'msg:' || $1 || ':' || $2::text", 2, key_params);
    if (rc != 0)
        return rc;
    PGresult *r =
        exec(c,
             "INSERT INTO jobs (kind, tenant_id, app_id, account_id, message_id,"
             "  serial_key, run_at)"
             " SELECT 'send', a.tenant_id, a.app_id, a.id, $2::bigint,"
             "  'msg:' || a.id || ':' || $3::text, " SEND_RUN_AT(
                 "a", "p", "'msg:' || a.id || ':' || $3::text",
                 "") " FROM accounts a JOIN apps p ON p.id = a.app_id WHERE a.id = $1::bigint"
                     " RETURNING id, pg_notify('" DB_JOBS_CHANNEL "', '')",
             3, params);
    rc = check(c, r);
    if (rc == 0 && PQntuples(r) != 1)
        rc = HB_ENOTFOUND;
    if (rc == 0 && job_id != NULL)
        *job_id = num(r, 0, 0);
    PQclear(r);
    return rc;
}

int db_jobs_requeue_send(PGconn *c, int64_t message_id)
{
    char msg[24];
    fmt_id(msg, message_id);
    const char *params[] = {msg};
    int rc = lock_key(c, "(SELECT serial_key FROM jobs WHERE message_id = $1::bigint)", 1, params);
    if (rc != 0)
        return rc;
    /* A fresh start: attempts and age count again from now (created_at),
     * parked or held as a new reply would be. Never once Meta's id is
     * stored. */
    PGresult *r = exec(
        c,
        "UPDATE jobs j SET state = 'queued', attempts = 0, last_error = NULL,"
        " finished_at = NULL, created_at = now(),"
        " run_at = " SEND_RUN_AT("a", "p", "j.serial_key",
                                 " AND e.id <> j.id") " FROM accounts a, apps p, messages m"
                                                      " WHERE j.message_id = $1::bigint AND "
                                                      "j.state IN ('failed', 'dead')"
                                                      "  AND a.id = j.account_id AND p.id = "
                                                      "j.app_id AND m.id = j.message_id"
                                                      "  AND m.meta_message_id IS NULL"
                                                      " RETURNING j.id, pg_notify('" DB_JOBS_CHANNEL
                                                      "', '')",
        1, params);
    rc = check(c, r);
    if (rc == 0)
        rc = PQntuples(r) == 1 ? 1 : 0;
    PQclear(r);
    return rc;
}

int db_jobs_enqueue_subscribe(PGconn *c, int64_t account_id)
{
    char acc[24];
    fmt_id(acc, account_id);
    const char *params[] = {acc};
    /* A queued job is made due now with its attempts reset; otherwise a new
     * one is queued (a running one finishes with what it read, and the new
     * one runs after it, reading the account afresh). A new token or new
     * fields also release the account's jobs held for a dead token (the API
     * has set its sub_state back to pending in the same transaction). */
    PGresult *r = exec(
        c,
        "WITH l AS (SELECT " SERIAL_LOCK(
            "'sub:' || $1") "), h AS ("
                            " UPDATE jobs SET run_at = now() FROM l"
                            " WHERE account_id = $1::bigint AND state = 'queued'"
                            "  AND run_at = 'infinity' AND kind <> 'subscribe' AND" NO_PREDECESSOR(
                                "jobs") "), q AS ("
                                        " UPDATE jobs SET run_at = now(), attempts = 0 FROM l"
                                        " WHERE account_id = $1::bigint AND kind = 'subscribe' AND "
                                        "state = "
                                        "'queued'"
                                        " RETURNING id"
                                        "), i AS ("
                                        " INSERT INTO jobs (kind, tenant_id, app_id, account_id, "
                                        "serial_key)"
                                        " SELECT 'subscribe', tenant_id, app_id, id, 'sub:' || id"
                                        " FROM l, accounts WHERE id = $1::bigint AND NOT EXISTS "
                                        "(SELECT 1 FROM "
                                        "q)"
                                        " RETURNING id"
                                        ")"
                                        " SELECT pg_notify('" DB_JOBS_CHANNEL "', ''),"
                                        "  (SELECT count(*) FROM q) + (SELECT count(*) FROM i)",
        1, params);
    int rc = check(c, r);
    PQclear(r);
    return rc;
}

/* Queues unsubscribe jobs for the accounts matching where (over accounts
 * a, with parameters params) and drops their queued subscribe jobs (a
 * running one finishes first: the unsubscribe job waits behind it by serial
 * key). */
static int enqueue_unsubscribe(PGconn *c, const char *where, int n, const char *const *params)
{
    char sql[2048];
    /* Everything the DELETE needs, since the account and maybe the app are
     * gone when it runs. The sealed token keeps its context (app id and ig
     * id, both in the payload), so it opens only for this account. */
    snprintf(
        sql, sizeof(sql),
        "WITH a AS ("
        " SELECT a.*, " SERIAL_LOCK(
            "'sub:' || a.id") " FROM accounts a WHERE %s"
                              "), d AS ("
                              " DELETE FROM jobs j USING a WHERE j.account_id = a.id AND j.kind = "
                              "'subscribe'"
                              "  AND j.state = 'queued'"
                              ")"
                              " INSERT INTO jobs (kind, tenant_id, app_id, serial_key, payload)"
                              " SELECT 'unsubscribe', a.tenant_id, a.app_id, 'sub:' || a.id,"
                              "  jsonb_build_object('account_id', a.id, 'ig_id', a.ig_id, "
                              "'page_id', a.page_id,"
                              "   'login_type', a.login_type, 'access_token_sealed', "
                              "a.access_token_sealed,"
                              "   'graph_api_version', p.graph_api_version, 'meta_app_id', "
                              "p.meta_app_id)"
                              " FROM a JOIN apps p ON p.id = a.app_id"
                              " RETURNING pg_notify('" DB_JOBS_CHANNEL "', '')",
        where);
    PGresult *r = exec(c, sql, n, params);
    int rc = check(c, r);
    PQclear(r);
    return rc;
}

int db_jobs_enqueue_unsubscribe(PGconn *c, int64_t account_id)
{
    char v[24];
    fmt_id(v, account_id);
    const char *params[] = {v};
    return enqueue_unsubscribe(c, "a.id = $1::bigint", 1, params);
}

int db_jobs_enqueue_unsubscribe_tenant(PGconn *c, int64_t tenant_id)
{
    char v[24];
    fmt_id(v, tenant_id);
    const char *params[] = {v};
    return enqueue_unsubscribe(c, "a.tenant_id = $1::bigint", 1, params);
}

int db_jobs_enqueue_unsubscribe_page(PGconn *c, int64_t account_id, const char *new_page_id)
{
    char v[24];
    fmt_id(v, account_id);
    const char *params[] = {v, new_page_id};
    return enqueue_unsubscribe(c,
                               "a.id = $1::bigint AND a.login_type <> 'instagram_login'"
                               " AND a.page_id IS NOT NULL AND a.page_id IS DISTINCT FROM $2::text",
                               2, params);
}

int db_jobs_enqueue_checks(PGconn *c, int64_t older_than_ms, int *queued)
{
    char ms[24];
    fmt_id(ms, older_than_ms);
    const char *params[] = {ms};
    /* pg_try_advisory_xact_lock: when another process is doing it, skip; an
     * account being changed right now (its key locked) gets its own job. */
    PGresult *r =
        exec(c,
             "WITH i AS ("
             " INSERT INTO jobs (kind, tenant_id, app_id, account_id, serial_key)"
             " SELECT 'subscribe', a.tenant_id, a.app_id, a.id, 'sub:' || a.id FROM accounts a"
             " WHERE pg_try_advisory_xact_lock(1751343728, 0) AND a.sub_state = 'active'"
             "  AND (a.sub_checked_at IS NULL"
             "   OR a.sub_checked_at < now() - $1::bigint * interval '1 millisecond')"
             "  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.serial_key = 'sub:' || a.id"
             "   AND j.state IN ('queued', 'running'))"
             "  AND pg_try_advisory_xact_lock(1751343729, hashtext('sub:' || a.id))"
             " RETURNING 1"
             ")"
             " SELECT count(*), CASE WHEN count(*) > 0"
             "  THEN pg_notify('" DB_JOBS_CHANNEL "', '') END FROM i",
             1, params);
    int rc = check(c, r);
    if (rc == 0 && queued != NULL)
        *queued = (int)num(r, 0, 0);
    PQclear(r);
    return rc;
}

void db_job_dispose(struct job *j)
{
    free(j->payload);
    j->payload = NULL;
}

int db_jobs_claim(PGconn *c, const char *owner, int64_t lease_ms, struct job *out)
{
    char lease[24];
    fmt_id(lease, lease_ms);
    const char *params[] = {owner, lease};
    PGresult *r = PQexecPrepared(c, CLAIM_STMT, 2, params, NULL, NULL, 0);
    int rc = check(c, r);
    if (rc != 0 || PQntuples(r) == 0)
        goto out;
    memset(out, 0, sizeof(*out));
    out->id = num(r, 0, 0);
    snprintf(out->kind, sizeof(out->kind), "%s", PQgetvalue(r, 0, 1));
    out->tenant_id = num(r, 0, 2);
    out->app_id = num(r, 0, 3);
    out->account_id = num(r, 0, 4);
    out->message_id = num(r, 0, 5);
    out->lease_token = num(r, 0, 6);
    out->attempts = (int)num(r, 0, 7);
    out->created_at_us = num(r, 0, 8);
    out->payload = xstrdup(PQgetvalue(r, 0, 9));
    snprintf(out->meta_app_id, sizeof(out->meta_app_id), "%s", PQgetvalue(r, 0, 10));
    rc = 1;
out:
    PQclear(r);
    return rc;
}

int db_jobs_rescue(PGconn *c, int *rescued)
{
    PGresult *r =
        PQexec(c, "WITH r AS ("
                  " UPDATE jobs SET state = 'queued', run_at = now(), lease_expires_at = NULL,"
                  "  last_error = jsonb_build_object('class', 'lease_expired', 'message',"
                  "   'the worker running this job stopped before finishing it')"
                  " WHERE state = 'running' AND lease_expires_at < now() RETURNING 1"
                  ")"
                  " SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('" DB_JOBS_CHANNEL
                  "', '') END FROM r");
    int rc = check(c, r);
    if (rc == 0 && rescued != NULL)
        *rescued = (int)num(r, 0, 0);
    PQclear(r);
    return rc;
}

int db_jobs_release(PGconn *c, int64_t id, int64_t lease_token)
{
    char ids[24], token[24];
    fmt_id(ids, id);
    fmt_id(token, lease_token);
    const char *params[] = {ids, token};
    PGresult *r = PQexecParams(
        c,
        "WITH r AS ("
        " UPDATE jobs SET state = 'queued', run_at = now(), lease_expires_at = NULL,"
        "  attempts = greatest(attempts - 1, 0),"
        "  last_error = jsonb_build_object('class', 'released', 'message',"
        "   'the process running this job shut down before it finished')"
        " WHERE id = $1::bigint AND lease_token = $2::bigint AND state = 'running' RETURNING 1"
        ")"
        " SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('" DB_JOBS_CHANNEL
        "', '') END FROM r",
        2, NULL, params, NULL, NULL, 0);
    int rc = check(c, r);
    if (rc == 0)
        rc = num(r, 0, 0) > 0 ? 1 : 0;
    PQclear(r);
    return rc;
}

#define FENCE " WHERE id = $1::bigint AND lease_token = $2::bigint AND state = 'running'"
/* lease_owner stays: it tells who ran the job last. */
#define RELEASE " lease_expires_at = NULL"

/* The outcomes of a job: fenced updates by $1 id and $2 lease token, then
 * their own parameters. An end (success or failure) also promotes the next
 * job of the key (parked at 'infinity' by db_jobs_enqueue_send()) unless
 * its account waits for a token, and NOTIFYs every process's workers. */
struct outcome {
    const char *name;
    const char *update;
    bool is_end;
    int nparams;
};

static const struct outcome SUCCEED = {
    "hb_jobs_succeed",
    "UPDATE jobs SET state = 'succeeded', finished_at = now(), last_error = NULL," RELEASE FENCE,
    true, 2};
static const struct outcome RETRY = {
    "hb_jobs_retry",
    "UPDATE jobs SET state = 'queued',"
    " run_at = now() + $3::bigint * interval '1 millisecond',"
    " attempts = attempts - CASE WHEN $4::boolean THEN 0 ELSE 1 END,"
    " last_error = $5::jsonb," RELEASE FENCE,
    false, 5};
static const struct outcome FINISH = {
    "hb_jobs_finish",
    "UPDATE jobs SET state = $3::text, finished_at = now(), last_error = $4::jsonb," RELEASE FENCE,
    true, 4};
#define LOCK_STMT "hb_jobs_lock"

static void outcome_sql(const struct outcome *o, struct buf *sql)
{
    buf_printf(sql, "WITH u AS (%s RETURNING serial_key)%s SELECT (SELECT count(*) FROM u)%s",
               o->update,
               o->is_end ? ", n AS (UPDATE jobs SET run_at = now() FROM u"
                           " WHERE jobs.id = (SELECT min(q.id) FROM jobs q"
                           "  WHERE q.serial_key = u.serial_key AND q.state = 'queued')"
                           "  AND jobs.run_at = 'infinity'"
                           "  AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = jobs.account_id"
                           "   AND a.sub_state = 'token_invalid'))"
                         : "",
               o->is_end ? ", (SELECT pg_notify('" DB_JOBS_CHANNEL "', '') FROM u WHERE EXISTS"
                           " (SELECT 1 FROM jobs n WHERE n.serial_key = u.serial_key"
                           "  AND n.state = 'queued'))"
                         : "");
}

static int prepare(PGconn *c, const char *name, const char *sql)
{
    PGresult *r = PQprepare(c, name, sql, 0, NULL);
    int rc = check(c, r);
    PQclear(r);
    return rc;
}

int db_jobs_prepare(PGconn *c)
{
    const struct outcome *all[] = {&SUCCEED, &RETRY, &FINISH};
    int rc = prepare(c, CLAIM_STMT, CLAIM_SQL);
    if (rc == 0)
        rc = prepare(c, LOCK_STMT,
                     "SELECT " SERIAL_LOCK("serial_key") " FROM jobs WHERE id = $1::bigint");
    for (size_t i = 0; rc == 0 && i < HB_ARRAY_SIZE(all); i++) {
        struct buf sql;
        buf_init(&sql);
        outcome_sql(all[i], &sql);
        rc = prepare(c, all[i]->name, sql.data);
        buf_dispose(&sql);
    }
    return rc;
}

/* Records outcome o of job j; an end runs under the key's lock, taken in a
 * statement of its own (a statement's snapshot is taken when it starts), so
 * a job being queued behind this one right now is either seen and
 * promoted, or sees this one ended and is not parked. 1 when the job was
 * updated, 0 when its lease was lost. */
static int fenced(PGconn *c, const struct job *j, const struct outcome *o, const char *const *extra)
{
    char id[24], token[24];
    fmt_id(id, j->id);
    fmt_id(token, j->lease_token);
    const char *params[6] = {id, token};
    for (int i = 2; i < o->nparams; i++)
        params[i] = extra[i - 2];
    bool is_own_tx = o->is_end && PQtransactionStatus(c) == PQTRANS_IDLE;
    int rc = 0;
    PGresult *r;
    if (is_own_tx) {
        r = PQexec(c, "BEGIN");
        rc = check(c, r);
        PQclear(r);
    }
    if (rc == 0 && o->is_end) {
        r = PQexecPrepared(c, LOCK_STMT, 1, params, NULL, NULL, 0);
        rc = check(c, r);
        PQclear(r);
    }
    if (rc == 0) {
        r = PQexecPrepared(c, o->name, o->nparams, params, NULL, NULL, 0);
        rc = check(c, r);
        if (rc == 0)
            rc = num(r, 0, 0) == 1 ? 1 : 0;
        PQclear(r);
    }
    if (is_own_tx) {
        r = PQexec(c, rc >= 0 ? "COMMIT" : "ROLLBACK");
        int crc = check(c, r);
        PQclear(r);
        if (crc != 0 && rc >= 0)
            rc = crc;
    }
    return rc;
}

int db_jobs_succeed(PGconn *c, const struct job *j)
{
    return fenced(c, j, &SUCCEED, NULL);
}

int db_jobs_retry(PGconn *c, const struct job *j, int64_t delay_ms, bool count_attempt,
                  const char *error_json)
{
    char delay[24];
    fmt_id(delay, delay_ms);
    const char *extra[] = {delay, count_attempt ? "t" : "f", error_json};
    return fenced(c, j, &RETRY, extra);
}

int db_jobs_finish(PGconn *c, const struct job *j, const char *final_state, const char *error_json)
{
    const char *extra[] = {final_state, error_json};
    return fenced(c, j, &FINISH, extra);
}

int db_jobs_next_due_ms(PGconn *c, int64_t *ms)
{
    /* The earliest future run_at: pauses have moved their jobs' run_at, and
     * jobs held for a new token sit at 'infinity'. Jobs due now but not
     * claimable wait for what blocks them: an earlier job of their key (its
     * end NOTIFYs) or a new token (NOTIFYs). */
    PGresult *r = PQexec(c, "SELECT (extract(epoch FROM min(run_at) - now()) * 1000)::bigint"
                            " FROM jobs WHERE state = 'queued' AND run_at > now()"
                            "  AND run_at < 'infinity'");
    int rc = check(c, r);
    if (rc == 0) {
        if (PQgetisnull(r, 0, 0)) {
            *ms = -1;
        } else {
            int64_t v = num(r, 0, 0);
            *ms = v < 0 ? 0 : v;
        }
    }
    PQclear(r);
    return rc;
}

int db_jobs_hold(PGconn *c, bool is_app, int64_t id, int64_t until_ms)
{
    char v[24], ms[24];
    fmt_id(v, id);
    fmt_id(ms, until_ms);
    const char *params[] = {v, ms};
    PGresult *r = exec(c,
                       is_app ? "UPDATE jobs SET run_at = greatest(run_at,"
                                " now() + $2::bigint * interval '1 millisecond')"
                                " WHERE app_id = $1::bigint AND state = 'queued'"
                              : "UPDATE jobs SET run_at = greatest(run_at,"
                                " now() + $2::bigint * interval '1 millisecond')"
                                " WHERE account_id = $1::bigint AND state = 'queued'",
                       2, params);
    int rc = check(c, r);
    PQclear(r);
    return rc;
}

int db_jobs_hold_for_token(PGconn *c, const struct job *j, const char *token_sealed,
                           const char *error_json)
{
    char acc[24], id[24], token[24];
    fmt_id(acc, j->account_id);
    fmt_id(id, j->id);
    fmt_id(token, j->lease_token);
    const char *params[] = {acc, error_json, id, token, token_sealed};
    /* One statement: the account's row lock orders it against an API call
     * replacing the token, whose release (db_jobs_enqueue_subscribe) then
     * runs after it and sees every job it held. */
    PGresult *r = exec(c,
                       "WITH a AS ("
                       " UPDATE accounts SET sub_state = 'token_invalid', sub_error = $2::jsonb"
                       " WHERE id = $1::bigint AND access_token_sealed = $5"
                       "  AND EXISTS (SELECT 1 FROM jobs WHERE id = $3::bigint"
                       "   AND lease_token = $4::bigint AND state = 'running')"
                       " RETURNING id"
                       "), h AS ("
                       " UPDATE jobs SET run_at = 'infinity' FROM a"
                       " WHERE jobs.account_id = a.id AND jobs.state = 'queued'"
                       ")"
                       " SELECT count(*) FROM a",
                       5, params);
    int rc = check(c, r);
    if (rc == 0)
        rc = num(r, 0, 0) > 0 ? 1 : 0;
    PQclear(r);
    return rc;
}

int db_jobs_release_held(PGconn *c, int *released)
{
    /* Jobs at 'infinity' that nothing holds any more: their account does
     * not wait for a token and no earlier job of their key is unfinished.
     * A backstop for any way a hold or a parking outlived its reason. The
     * 'infinity' rows are the tail of jobs_due. */
    PGresult *r = PQexec(c, "UPDATE jobs j SET run_at = now()"
                            " WHERE j.state = 'queued' AND j.run_at = 'infinity'"
                            "  AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = j.account_id"
                            "   AND a.sub_state = 'token_invalid')"
                            "  AND" NO_PREDECESSOR("j"));
    int rc = check(c, r);
    if (rc == 0 && released != NULL)
        *released = (int)strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}
