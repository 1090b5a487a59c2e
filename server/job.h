/*
 * job.h - running one claimed job, and what all kinds share: turning a Graph
 * API answer into the job's next state (PROTOCOL.md section 5).
 *
 * | answer                          | job                        | also                       |
 * |---------------------------------|----------------------------|----------------------------|
 * | success                         | succeeded                  |                            |
 * | temporary (1, 2, 1200, 5xx,     | retried after a growing    | dead after                 |
 * | timeouts)                       | delay with jitter          | HUBBUB_JOB_MAX_ATTEMPTS/AGE|
 * | code 4                          | retried when the pause ends| the app is paused          |
 * | 17, 32, 613, 80001-80014        | retried when the pause ends| the account is paused      |
 * | 368                             | retried after the longest  | the account is paused      |
 * |                                 | pause                      |                            |
 * | 190                             | held until a new token     | account token_invalid      |
 * | anything else                   | failed                     |                            |
 *
 * Pauses last what Meta's X-Business-Use-Case-Usage header says, or
 * HUBBUB_GRAPH_RATE_PAUSE, at most HUBBUB_GRAPH_MAX_PAUSE, and do not count
 * as attempts. A paused account's or app's other jobs wait too (db/jobs.c).
 *
 * Called on worker threads only; a job_env belongs to one thread.
 */
#ifndef HB_SERVER_JOB_H
#define HB_SERVER_JOB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "db/jobs.h"
#include "lib/keyring.h"
#include "server/config.h"
#include "server/graph.h"
#include "server/graph_error.h"
#include "server/stats.h"

struct job_env {
    PGconn *conn;
    struct graph_client *graph;
    const struct config *cfg;
    struct keyring *keys;
    struct stats *stats; /* Graph API calls are counted here; may be NULL */
    uint64_t rng;        /* xorshift state for jitter */
};

/* What opens every log line about j, so that a job's lines can be found by
 * tenant and app as request lines are: job= kind= tenant= (none for a job
 * without one) app= (the Meta app id, as on webhook lines; none when the app
 * is gone). Written to out, which it returns. */
#define JOB_LOG_FIELDS_MAX 128
const char *job_log_fields(const struct job *j, char *out, size_t outsz);

/* Runs j and records its outcome (fenced by its lease). A failure to record
 * it (the database went away) leaves the job running until its lease
 * expires, when it is rescued and runs again. */
void job_run(struct job_env *env, struct job *j);

/* What job kinds call. */
void job_send_run(struct job_env *env, struct job *j);
void job_subscribe_run(struct job_env *env, struct job *j);
void job_unsubscribe_run(struct job_env *env, struct job *j);

/* The class of a failed Graph API answer (PROTOCOL.md section 5), with the
 * JSON object job.last_error shows written to error_json. Pure. */
enum graph_class job_classify(const struct graph_response *resp, struct buf *error_json);

/* Whether recording cls for j ends the job (failed or dead) rather than
 * queueing it again. */
bool job_is_final(const struct job_env *env, const struct job *j, enum graph_class cls);

/* Records a failed call of class cls for j (the table above); for 190,
 * marks the account token_invalid only if token_sealed is still its token
 * (a token replaced meanwhile is not the one Meta refused). */
void job_apply(struct job_env *env, struct job *j, enum graph_class cls,
               const struct graph_response *resp, const char *error_json, const char *token_sealed);

/* The last_error JSON of an outcome that is not a Graph API answer:
 * {"class":"permanent"|"temporary","message":...}, into out. */
void job_local_error(struct buf *out, bool is_permanent, const char *message);

/* Records such an outcome: retried like a temporary failure, or failed at
 * once when permanent. Returns whether the job ended. */
bool job_fail_local(struct job_env *env, struct job *j, bool is_permanent, const char *message);

/* Whether a temporary failure of j may be retried once more: attempts and
 * age below HUBBUB_JOB_MAX_ATTEMPTS and HUBBUB_JOB_MAX_AGE. */
bool job_may_retry(const struct job_env *env, const struct job *j);

/* The Graph API base URL for an account's login type. */
const char *job_graph_base(const struct job_env *env, const char *login_type);

#endif
