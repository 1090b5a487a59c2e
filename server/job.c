/*
 * job.c - running a claimed job and classifying its failures; see job.h.
 */
#include "server/job.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "api/json.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static uint64_t next_random(struct job_env *env)
{
    uint64_t x = env->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    env->rng = x;
    return x;
}

const char *job_graph_base(const struct job_env *env, const char *login_type)
{
    return strcmp(login_type, "instagram_login") == 0 ? env->cfg->graph_instagram_url
                                                      : env->cfg->graph_facebook_url;
}

static bool is_too_old(const struct job_env *env, const struct job *j)
{
    return now_us() - j->created_at_us >= env->cfg->job_max_age_ms * 1000;
}

const char *job_log_fields(const struct job *j, char *out, size_t outsz)
{
    char tenant[24] = "none";
    if (j->tenant_id >= 0)
        snprintf(tenant, sizeof(tenant), "%" PRId64, j->tenant_id);
    snprintf(out, outsz, "job=%" PRId64 " kind=%s tenant=%s app=%s", j->id, j->kind, tenant,
             j->meta_app_id[0] != '\0' ? j->meta_app_id : "none");
    return out;
}

static void log_lost(const struct job *j)
{
    char f[JOB_LOG_FIELDS_MAX];
    log_warn("job lease lost; its outcome is dropped", "%s", job_log_fields(j, f, sizeof(f)));
}

bool job_may_retry(const struct job_env *env, const struct job *j)
{
    if (j->attempts >= env->cfg->job_max_attempts)
        return false;
    return !is_too_old(env, j);
}

static void retry_or_die(struct job_env *env, struct job *j, const char *error_json)
{
    int rc;
    char f[JOB_LOG_FIELDS_MAX];
    job_log_fields(j, f, sizeof(f));
    if (job_may_retry(env, j)) {
        int64_t delay = graph_backoff_ms(j->attempts, env->cfg->job_backoff_ms,
                                         env->cfg->job_backoff_max_ms, next_random(env));
        rc = db_jobs_retry(env->conn, j, delay, true, error_json);
        log_info("job will be retried", "%s attempt=%d delay_ms=%" PRId64, f, j->attempts, delay);
    } else {
        rc = db_jobs_finish(env->conn, j, "dead", error_json);
        log_warn("job given up after its last attempt", "%s attempts=%d", f, j->attempts);
    }
    if (rc == 0)
        log_lost(j);
}

/* The statements below change an account or app only while j still holds
 * its lease: a worker that lost it must not pause or hold anything. */
#define LEASED                                                                                     \
    " AND EXISTS (SELECT 1 FROM jobs WHERE id = $3::bigint AND lease_token = $4::bigint"           \
    "  AND state = 'running')"

/* Pauses the account (or the app) of j for ms, and moves its queued jobs
 * out of the claim's way. */
static void pause(struct job_env *env, const struct job *j, bool is_app, int64_t ms)
{
    char id[24], delay[24], job[24], token[24];
    int64_t target = is_app ? j->app_id : j->account_id;
    snprintf(id, sizeof(id), "%" PRId64, target);
    snprintf(delay, sizeof(delay), "%" PRId64, ms);
    snprintf(job, sizeof(job), "%" PRId64, j->id);
    snprintf(token, sizeof(token), "%" PRId64, j->lease_token);
    const char *params[] = {id, delay, job, token};
    const char *sql =
        is_app ? "UPDATE apps SET paused_until = greatest(paused_until,"
                 " now() + $2::bigint * interval '1 millisecond') WHERE id = $1::bigint" LEASED
               : "UPDATE accounts SET paused_until = greatest(paused_until,"
                 " now() + $2::bigint * interval '1 millisecond') WHERE id = $1::bigint" LEASED;
    PGresult *r = PQexecParams(env->conn, sql, 4, NULL, params, NULL, NULL, 0);
    char f[JOB_LOG_FIELDS_MAX];
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        log_warn("could not record a rate-limit pause", "%s sqlstate=%s",
                 job_log_fields(j, f, sizeof(f)), db_sqlstate(r));
    else if (strcmp(PQcmdTuples(r), "1") == 0)
        db_jobs_hold(env->conn, is_app, target, ms);
    PQclear(r);
}

enum graph_class job_classify(const struct graph_response *resp, struct buf *error_json)
{
    struct graph_error e;
    bool has_error = graph_error_parse(resp->body.data, resp->body.len, &e);
    enum graph_class cls =
        graph_classify(resp->http_status, resp->is_timeout, has_error ? &e : NULL);
    buf_reset(error_json);
    graph_error_json(error_json, resp->http_status, cls, has_error ? &e : NULL,
                     resp->http_status == 0 ? resp->error : NULL);
    return cls;
}

bool job_is_final(const struct job_env *env, const struct job *j, enum graph_class cls)
{
    switch (cls) {
    case GRAPH_OK:
    case GRAPH_TEMPORARY:
        return !job_may_retry(env, j);
    case GRAPH_APP_RATE_LIMIT:
    case GRAPH_ACCOUNT_RATE_LIMIT:
    case GRAPH_POLICY_BLOCK:
        return is_too_old(env, j);
    case GRAPH_TOKEN_INVALID:
        return j->account_id <= 0;
    case GRAPH_PERMANENT:
    default:
        return true;
    }
}

void job_apply(struct job_env *env, struct job *j, enum graph_class cls,
               const struct graph_response *resp, const char *err, const char *token_sealed)
{
    int64_t pause_ms =
        graph_usage_pause_ms(resp->buc_usage, resp->app_usage, env->cfg->graph_rate_pause_ms,
                             env->cfg->graph_max_pause_ms);
    bool is_rate =
        cls == GRAPH_APP_RATE_LIMIT || cls == GRAPH_ACCOUNT_RATE_LIMIT || cls == GRAPH_POLICY_BLOCK;
    int rc = 1;
    char f[JOB_LOG_FIELDS_MAX];
    job_log_fields(j, f, sizeof(f));
    if (is_rate && is_too_old(env, j)) {
        /* Paused past HUBBUB_JOB_MAX_AGE: a reply that late is no reply. */
        rc = db_jobs_finish(env->conn, j, "dead", err);
        log_warn("job given up: rate-limited past its maximum age", "%s", f);
    } else if (cls == GRAPH_OK || cls == GRAPH_TEMPORARY) {
        retry_or_die(env, j, err);
        return;
    } else if (cls == GRAPH_APP_RATE_LIMIT) {
        pause(env, j, true, pause_ms);
        rc = db_jobs_retry(env->conn, j, pause_ms, false, err);
        log_warn("Graph API app rate limit; pausing the app's calls", "%s pause_ms=%" PRId64, f,
                 pause_ms);
    } else if (cls == GRAPH_ACCOUNT_RATE_LIMIT || cls == GRAPH_POLICY_BLOCK) {
        if (cls == GRAPH_POLICY_BLOCK)
            pause_ms = env->cfg->graph_max_pause_ms;
        if (j->account_id > 0)
            pause(env, j, false, pause_ms);
        rc = db_jobs_retry(env->conn, j, pause_ms, false, err);
        log_warn(cls == GRAPH_POLICY_BLOCK ? "account temporarily blocked by Meta for policy"
                                           : "Graph API account rate limit; pausing the account",
                 "%s account=%" PRId64 " pause_ms=%" PRId64, f, j->account_id, pause_ms);
    } else if (cls == GRAPH_TOKEN_INVALID && j->account_id > 0 && token_sealed != NULL) {
        int held = db_jobs_hold_for_token(env->conn, j, token_sealed, err);
        if (held < 0)
            log_warn("could not mark an account's token invalid", "%s account=%" PRId64 " error=%s",
                     f, j->account_id, hb_strerror(held));
        rc = db_jobs_retry(env->conn, j, 0, false, err);
        log_warn("access token rejected by Meta; the account's jobs wait for a new one",
                 "%s account=%" PRId64, f, j->account_id);
    } else {
        rc = db_jobs_finish(env->conn, j, "failed", err);
        log_info("job failed", "%s http_status=%d class=%s", f, resp->http_status,
                 graph_class_name(cls));
    }
    if (rc == 0)
        log_lost(j);
}

void job_local_error(struct buf *out, bool is_permanent, const char *message)
{
    buf_reset(out);
    buf_puts(out, is_permanent ? "{\"class\":\"permanent\",\"message\":"
                               : "{\"class\":\"temporary\",\"message\":");
    json_write_string(out, message, strlen(message));
    buf_putc(out, '}');
}

bool job_fail_local(struct job_env *env, struct job *j, bool is_permanent, const char *message)
{
    struct buf err;
    buf_init(&err);
    job_local_error(&err, is_permanent, message);
    bool is_final = is_permanent || !job_may_retry(env, j);
    if (is_permanent) {
        if (db_jobs_finish(env->conn, j, "failed", err.data) == 0)
            log_lost(j);
    } else {
        retry_or_die(env, j, err.data);
    }
    buf_dispose(&err);
    return is_final;
}

/* Fails j, rescued after its last attempt, and with it a subscription that
 * waits for it: both in one transaction, and the account only when j still
 * held its lease (a worker that lost it must not fail a subscription asked
 * for again since). */
static void fail_interrupted(struct job_env *env, struct job *j)
{
    static const char message[] = "the job's last attempt was interrupted";
    bool is_sub = strcmp(j->kind, "subscribe") == 0 && j->account_id > 0;
    if (!is_sub) {
        job_fail_local(env, j, true, message);
        return;
    }
    struct buf err;
    buf_init(&err);
    job_local_error(&err, true, message);
    PGresult *r = PQexec(env->conn, "BEGIN");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    int rc = ok ? db_jobs_finish(env->conn, j, "failed", err.data) : HB_EUNAVAILABLE;
    if (rc == 1) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRId64, j->account_id);
        const char *params[] = {id};
        r = PQexecParams(env->conn,
                         "UPDATE accounts SET sub_state = 'failed', sub_checked_at = now(),"
                         " sub_error = '{\"class\":\"permanent\",\"message\":"
                         "\"the subscription job was interrupted at its last attempt\"}'"
                         " WHERE id = $1::bigint AND sub_state = 'pending'",
                         1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = HB_EUNAVAILABLE;
        PQclear(r);
    }
    if (ok) {
        r = PQexec(env->conn, rc == 1 ? "COMMIT" : "ROLLBACK");
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 1)
            rc = HB_EUNAVAILABLE;
        PQclear(r);
    }
    char f[JOB_LOG_FIELDS_MAX];
    if (rc == 0)
        log_lost(j);
    else if (rc < 0)
        log_warn("could not record an interrupted subscription; its lease will expire again", "%s",
                 job_log_fields(j, f, sizeof(f)));
    buf_dispose(&err);
}

void job_run(struct job_env *env, struct job *j)
{
    if (j->attempts > env->cfg->job_max_attempts) {
        /* Rescued after its last attempt: the worker died running it. */
        fail_interrupted(env, j);
        return;
    }
    if (strcmp(j->kind, "send") == 0)
        job_send_run(env, j);
    else if (strcmp(j->kind, "subscribe") == 0)
        job_subscribe_run(env, j);
    else if (strcmp(j->kind, "unsubscribe") == 0)
        job_unsubscribe_run(env, j);
    else
        job_fail_local(env, j, true, "unknown job kind");
}
