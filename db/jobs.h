/*
 * jobs.h - the durable job queue in PostgreSQL (migrations/0003_jobs.sql).
 *
 * Producers (the admin API) queue jobs inside their own transaction, so a job
 * exists exactly when the change that asked for it committed; the insert also
 * NOTIFYs channel "hubbub_jobs", which PostgreSQL delivers at commit.
 *
 * Workers claim due jobs with FOR UPDATE SKIP LOCKED, which gives each job a
 * lease: an owner, an expiry and a fresh lease_token. Every later update of
 * the job is fenced by that token, so a worker that lost its lease (it hung
 * past the expiry and another process rescued the job) cannot overwrite the
 * outcome. A job is not claimed while an earlier job with the same serial key
 * is unfinished (or any one of its key runs), while its account waits for a
 * new token (sub_state token_invalid), or while its account or app is paused
 * by a rate limit.
 *
 * The claim walks due jobs oldest first, so jobs that cannot run are kept
 * out of its way: a paused account's or app's get run_at at the pause's end;
 * those of an account waiting for a token, and replies queued behind an
 * unfinished one of their conversation, are parked at run_at 'infinity'.
 * The end of a job promotes the next of its key; a new token releases the
 * account's; the dispatcher's db_jobs_release_held() is the backstop.
 *
 * Producers take an advisory lock on the serial key until they commit, so
 * that the ids of a key (its order) are also its commit order.
 *
 * All functions block on libpq: call them from worker threads (or, for the
 * producers, API handlers on the thread pool), never the event loop.
 */
#ifndef HB_DB_JOBS_H
#define HB_DB_JOBS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define DB_JOBS_CHANNEL "hubbub_jobs"

/* ---- producers (inside the caller's transaction) ---- */

/* Queues the send of message message_id of account_id to recipient_id;
 * parked behind an unfinished reply to the same recipient. */
int db_jobs_enqueue_send(PGconn *c, int64_t account_id, int64_t message_id,
                         const char *recipient_id, int64_t *job_id);
/* Queues the send of a failed or dead reply again, from attempt 1. 1 when
 * it was, 0 when the reply is not failed or dead (or was sent). */
int db_jobs_requeue_send(PGconn *c, int64_t message_id);
/* Queues a subscribe job for the account: it reads the edge, writes what is
 * missing and confirms. When one is already queued it is made due now and
 * its attempts reset instead: the job reads the account when it runs. */
int db_jobs_enqueue_subscribe(PGconn *c, int64_t account_id);
/* Queues the DELETE of the account's subscription; call before deleting the
 * account row. The job carries the ids, version and sealed token it needs. */
int db_jobs_enqueue_unsubscribe(PGconn *c, int64_t account_id);
/* For an account moving to another Page (new_page_id, NULL for none): the
 * old Page's subscription, when the account's edge is its Page's. Call
 * before the update; a subscribe job for the new Page follows it. */
int db_jobs_enqueue_unsubscribe_page(PGconn *c, int64_t account_id, const char *new_page_id);
/* The same for every account of a tenant, before the tenant is deleted. */
int db_jobs_enqueue_unsubscribe_tenant(PGconn *c, int64_t tenant_id);
/* Queues subscribe jobs for active accounts last checked before
 * older_than_ms ago that have none queued or running (drift check). Several
 * processes may call it at once: an advisory lock makes one of them do it.
 * *queued gets the number of jobs queued. */
int db_jobs_enqueue_checks(PGconn *c, int64_t older_than_ms, int *queued);

/* ---- workers ---- */

struct job {
    int64_t id;
    char kind[16];     /* "subscribe", "unsubscribe", "send" */
    int64_t tenant_id; /* -1 for none */
    int64_t app_id;
    char meta_app_id[33]; /* its app's Meta app id, "" when the app is gone */
    int64_t account_id;   /* -1 for none */
    int64_t message_id;   /* -1 for none */
    int64_t lease_token;
    int attempts;          /* including this one */
    int64_t created_at_us; /* Unix microseconds */
    char *payload;         /* JSON text; owned */
};

void db_job_dispose(struct job *j);

/* Prepares the claim and the outcomes on a worker's connection, once after
 * connecting (planning them costs more than running them). Every function
 * below needs it. */
int db_jobs_prepare(PGconn *c);

/* Claims at most one due job (db_jobs_prepare() first) for owner with a lease of lease_ms. 1 and
 * *out filled, 0 when nothing is due, or a negative HB_E*. */
int db_jobs_claim(PGconn *c, const char *owner, int64_t lease_ms, struct job *out);

/* Puts running jobs whose lease expired back in the queue. *rescued gets
 * their number. */
int db_jobs_rescue(PGconn *c, int *rescued);

/* Puts running job id back in the queue, due at once, if lease_token still
 * holds its lease: its process is shutting down before the job could
 * finish. The attempt is given back (the job did not fail) and every
 * process's workers are woken. 1 when released, 0 when the lease was
 * already gone. */
int db_jobs_release(PGconn *c, int64_t id, int64_t lease_token);

/* Outcomes, fenced by the lease token. error_json is a JSON object or NULL.
 * Each returns 1 when the job was updated, 0 when the lease was lost. */
int db_jobs_succeed(PGconn *c, const struct job *j);
/* Queued again after delay_ms; when count_attempt is false the attempt is
 * given back (a rate-limit pause is not the job's failure). */
int db_jobs_retry(PGconn *c, const struct job *j, int64_t delay_ms, bool count_attempt,
                  const char *error_json);
/* final_state: "failed" (a permanent error) or "dead" (out of attempts). */
int db_jobs_finish(PGconn *c, const struct job *j, const char *final_state, const char *error_json);

/* *ms gets the milliseconds until the next queued job becomes due, or -1
 * when none will by time alone; lets an idle worker sleep just long enough. */
int db_jobs_next_due_ms(PGconn *c, int64_t *ms);

/* Moves the queued jobs of an account (or, with is_app, an app) to until_ms
 * from now, the end of a pause. The claim checks pauses anyway; this keeps
 * it from walking past those jobs. */
int db_jobs_hold(PGconn *c, bool is_app, int64_t id, int64_t until_ms);

/* Meta refused token_sealed for running job j: marks j's account
 * token_invalid if that is still its token and j still holds its lease, and
 * moves the account's queued jobs to 'infinity' until
 * db_jobs_enqueue_subscribe() releases them with a new token. 1 when the
 * account was marked, 0 when not, or a negative HB_E*. */
int db_jobs_hold_for_token(PGconn *c, const struct job *j, const char *token_sealed,
                           const char *error_json);

/* Releases jobs at 'infinity' that nothing holds any more: their account
 * does not wait for a token and no earlier job of their key is unfinished
 * (a backstop run by the dispatcher). *released gets their number. */
int db_jobs_release_held(PGconn *c, int *released);

#endif
