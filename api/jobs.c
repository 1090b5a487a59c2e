/*
 * jobs.c - /v1/jobs; see jobs.h.
 *
 * Operator only: jobs cross tenants, and a tenant sees its own work where
 * it belongs (an account's subscription, a reply's state). The payload is
 * never shown: an unsubscribe job's holds a sealed token.
 */
#include "api/jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/hb.h"

/* run_at is null while a job waits for something other than time: a new
 * token, or an earlier job of its key ('infinity'); waiting_for says which. */
#define JOB_JSON                                                                                   \
    "jsonb_build_object('id', j.id, 'kind', j.kind, 'state', j.state,"                             \
    " 'tenant_id', j.tenant_id, 'app_id', j.app_id, 'account_id', j.account_id,"                   \
    " 'message_id', j.message_id, 'attempts', j.attempts,"                                         \
    " 'run_at', CASE WHEN j.run_at < 'infinity' THEN j.run_at END,"                                \
    " 'waiting_for', CASE WHEN j.state <> 'queued' THEN NULL"                                      \
    "  WHEN a.sub_state = 'token_invalid' THEN 'token'"                                            \
    "  WHEN j.run_at = 'infinity' THEN 'earlier_job'"                                              \
    "  WHEN greatest(a.paused_until, p.paused_until) > now() THEN 'rate_limit'"                    \
    "  WHEN j.run_at > now() THEN 'retry' END,"                                                    \
    " 'last_error', j.last_error, 'lease_owner', j.lease_owner,"                                   \
    " 'lease_expires_at', j.lease_expires_at, 'created_at', j.created_at,"                         \
    " 'finished_at', j.finished_at)::text"

static const char *const STATES[] = {"queued", "running", "succeeded", "failed", "dead", NULL};
static const char *const KINDS[] = {"subscribe", "unsubscribe", "send", NULL};

/* A query parameter that must be one of allowed: 0 absent, 1 present, -1
 * with a 400 set. */
static int enum_param(struct api_call *call, const char *name, const char *const *allowed,
                      const char **out)
{
    const char *v = api_param(call, name);
    *out = v;
    if (v == NULL)
        return 0;
    for (const char *const *a = allowed; *a != NULL; a++)
        if (strcmp(v, *a) == 0)
            return 1;
    api_error(call, 400, "bad_request", "%s must be one of the documented values", name);
    return -1;
}

void jobs_list(struct api_call *call, PGconn *c)
{
    static const char *const known[] = {"state", "kind",   "tenant", "account",
                                        "limit", "cursor", NULL};
    int limit;
    int64_t before = 0, unused;
    int has_cursor;
    const char *state, *kind;
    char tenant[24], account[24], b[24], l[16];
    int has_tenant, has_account;
    if (!api_params_only(call, known, NULL) || !api_limit(call, &limit) ||
        (has_cursor = api_cursor_decode(call, &before, &unused)) < 0 ||
        enum_param(call, "state", STATES, &state) < 0 ||
        enum_param(call, "kind", KINDS, &kind) < 0 ||
        (has_tenant = api_query_id(call, "tenant", tenant)) < 0 ||
        (has_account = api_query_id(call, "account", account)) < 0)
        return;
    snprintf(b, sizeof(b), "%" PRId64, before);
    snprintf(l, sizeof(l), "%d", limit + 1);
    const char *params[] = {state,
                            kind,
                            has_tenant > 0 ? tenant : NULL,
                            has_account > 0 ? account : NULL,
                            has_cursor > 0 ? b : NULL,
                            l};
    PGresult *r = api_exec(c,
                           "SELECT " JOB_JSON ", j.id FROM jobs j"
                           " LEFT JOIN accounts a ON a.id = j.account_id"
                           " LEFT JOIN apps p ON p.id = j.app_id"
                           " WHERE ($1::text IS NULL OR j.state = $1)"
                           " AND ($2::text IS NULL OR j.kind = $2)"
                           " AND ($3::int8 IS NULL OR j.tenant_id = $3)"
                           " AND ($4::int8 IS NULL OR j.account_id = $4)"
                           " AND ($5::int8 IS NULL OR j.id < $5)"
                           " ORDER BY j.id DESC LIMIT $6",
                           6, params);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        api_db_error(call, c, r, NULL);
    else
        api_reply_list(call, r, 0, limit, 1, -1);
    PQclear(r);
}
