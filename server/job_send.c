/*
 * job_send.c - a "send" job: one reply of the outbox (messages) through the
 * Send API, PROTOCOL.md section 4.
 *
 * The Send API has no idempotency key. A send whose answer we never saw (a
 * timeout after the request left) may have been delivered, and retrying it
 * may deliver it twice; not retrying would lose it. We retry: the README
 * says so. What we never do is send again once Meta's message_id is stored:
 * it is written before the job is marked done, unfenced, so even a worker
 * that lost its lease keeps it, and every attempt checks it first.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "db/messages.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "server/job.h"

enum { C_REQUEST, C_MID, C_IG, C_PAGE, C_LOGIN, C_TOKEN, C_APP, C_VERSION };

/* Meta's message_id from a successful answer, into out. */
static bool message_id_of(const struct graph_response *resp, struct buf *out)
{
    struct json_doc doc;
    const char *why;
    if (json_parse(&doc, resp->body.data, resp->body.len, 8, &why) != 0)
        return false;
    int i = json_get(&doc, 0, "message_id");
    bool ok = i >= 0 && json_is_string(&doc, i);
    if (ok)
        json_string_decode(&doc, i, out);
    json_doc_dispose(&doc);
    return ok && out->len > 0;
}

void job_send_run(struct job_env *env, struct job *j)
{
    struct buf token, url, mid, err;
    buf_init(&token);
    buf_init(&url);
    buf_init(&mid);
    buf_init(&err);
    struct graph_response resp;
    memset(&resp, 0, sizeof(resp));
    char f[JOB_LOG_FIELDS_MAX];
    PGresult *r = db_messages_load(env->conn, j->message_id);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        job_fail_local(env, j, false, "the message could not be read");
        goto out;
    }
    if (PQntuples(r) == 0) {
        job_fail_local(env, j, true, "the message or its account was deleted");
        goto out;
    }
    if (!PQgetisnull(r, 0, C_MID)) {
        /* Sent by an earlier attempt whose worker lost its lease. */
        if (db_jobs_succeed(env->conn, j) == 0)
            log_info("send job already finished elsewhere", "%s", job_log_fields(j, f, sizeof(f)));
        goto out;
    }
    const char *login = PQgetvalue(r, 0, C_LOGIN);
    bool is_ig = strcmp(login, "instagram_login") == 0;
    const char *node = PQgetvalue(r, 0, is_ig ? C_IG : C_PAGE);
    char context[96];
    snprintf(context, sizeof(context), "access_token:%s:%s", PQgetvalue(r, 0, C_APP),
             PQgetvalue(r, 0, C_IG));
    int rc = keyring_open(env->keys, context, PQgetvalue(r, 0, C_TOKEN), &token);
    if (rc != 0) {
        /* A missing key may be loaded again by the operator; a tampered
         * value will not heal. */
        job_fail_local(env, j, rc != HB_ENOTFOUND,
                       "the account's access token cannot be decrypted with the loaded keys");
        goto out;
    }
    buf_printf(&url, "%s/%s/%s/messages", job_graph_base(env, login), PQgetvalue(r, 0, C_VERSION),
               node);
    const char *body = PQgetvalue(r, 0, C_REQUEST);
    rc = graph_request(env->graph, "POST", url.data, token.data, "application/json", body,
                       strlen(body), &resp);
    explicit_bzero(token.data, token.len);
    if (rc == HB_EINVAL) {
        job_fail_local(env, j, true, "the Send API request could not be built from the account");
        goto out;
    }
    enum graph_class cls = job_classify(&resp, &err);
    stats_graph_call(env->stats, &resp, cls);
    if (cls == GRAPH_OK) {
        if (!message_id_of(&resp, &mid)) {
            /* Accepted, but we cannot tell by what id: sending again would
             * surely duplicate it. */
            job_fail_local(env, j, true, "the Send API accepted the message without a message_id");
            goto out;
        }
        int lease = db_messages_sent(env->conn, j, mid.data);
        if (lease < 0) {
            /* The lease runs out and the next attempt sends again: the
             * one case where a database outage can duplicate a reply. */
            log_warn("could not store a sent message's id", "%s", job_log_fields(j, f, sizeof(f)));
            goto out;
        }
        if (lease == 0)
            log_info("send job lease lost after sending; its message_id is kept", "%s",
                     job_log_fields(j, f, sizeof(f)));
        log_debug("reply sent", "%s message=%" PRId64, job_log_fields(j, f, sizeof(f)),
                  j->message_id);
        goto out;
    }
    job_apply(env, j, cls, &resp, err.data, PQgetvalue(r, 0, C_TOKEN));
out:
    PQclear(r);
    graph_response_dispose(&resp);
    buf_dispose(&token);
    buf_dispose(&url);
    buf_dispose(&mid);
    buf_dispose(&err);
}
