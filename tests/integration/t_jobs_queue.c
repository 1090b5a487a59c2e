/*
 * t_jobs_queue.c - the job queue's guarantees:
 *   - db/jobs.c against a real PostgreSQL: lease fencing (a worker whose
 *     lease expired and whose job was taken over changes nothing), the
 *     serial key order through a retry, holds for a dead token and a pause;
 *   - a subscribe job rescued after its last attempt marks its account
 *     failed only while its worker still holds the lease;
 *   - a worker killed mid-job: its job is rescued when the lease expires and
 *     run by another process;
 *   - two hubbub processes on one database draining 1 000 replies: each
 *     delivered once, none lost, no conversation with two sends at once,
 *     each conversation in order, both processes taking part.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/jobs.h"
#include "db/pool.h"
#include "server/job.h"
#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define META_APP "5550000000003"
#define NODE "17841400000000701"
#define TOKEN "queue-token-0123456789"
#define RECIPIENTS 100
#define PER_RECIPIENT 10

static struct h_db db;

static void insert_job(const char *serial, long long account)
{
    if (account > 0)
        h_db_exec(&db,
                  "INSERT INTO jobs (kind, app_id, account_id, serial_key)"
                  " SELECT 'subscribe', app_id, id, '%s' FROM accounts WHERE id = %lld",
                  serial, account);
    else
        h_db_exec(&db, "INSERT INTO jobs (kind, app_id, serial_key) VALUES ('subscribe', 0, '%s')",
                  serial);
}

static long long claim(const char *owner, long long lease_ms, struct job *j)
{
    int rc = db_jobs_claim(db.conn, owner, lease_ms, j);
    if (rc < 0)
        tap_bail("claim failed: %d %s", rc, PQerrorMessage(db.conn));
    return rc == 1 ? j->id : 0;
}

static void producers_serialise(long long account);

/* A subscribe job rescued after its last attempt fails its account; a
 * worker whose lease was taken over must not fail the account again after
 * it was subscribed anew. */
static void rescued_last_attempt(void)
{
    h_db_exec(&db, "INSERT INTO tenants (name) VALUES ('r')");
    h_db_exec(&db, "INSERT INTO apps (tenant_id, meta_app_id, verify_token_sealed)"
                   " SELECT id, '4440000000002', 'x' FROM tenants WHERE name = 'r'");
    long long acc =
        h_db_int(&db, "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type,"
                      " access_token_sealed, access_token_hint, sub_state)"
                      " SELECT tenant_id, id, '2', 'instagram_login', 'x', 'x', 'pending'"
                      " FROM apps WHERE meta_app_id = '4440000000002' RETURNING id");
    char serial[32];
    snprintf(serial, sizeof(serial), "sub:%lld", acc);
    insert_job(serial, acc);
    h_db_exec(&db, "UPDATE jobs SET attempts = 3 WHERE serial_key = '%s'", serial);

    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.job_max_attempts = 3;
    struct job_env env = {.conn = db.conn, .cfg = &cfg, .rng = 1};
    struct job x, y;
    long long id = claim("owner-x", 1, &x);
    tap_ok(id > 0 && x.attempts == 4, "a subscribe job is claimed after its last attempt");
    h_sleep_ms(20);
    int rescued = 0;
    db_jobs_rescue(db.conn, &rescued);
    tap_is_int(claim("owner-y", 60000, &y), id, "its lease expires and another worker takes it");
    job_run(&env, &y);
    char *st = h_db_text(&db,
                         "SELECT state || ' ' || sub_state FROM jobs j JOIN accounts a"
                         " ON a.id = j.account_id WHERE j.id = %lld",
                         id);
    tap_is_str(st, "failed failed", "the job fails, and so does its account's subscription");
    free(st);
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'pending', sub_error = NULL WHERE id = %lld",
              acc);
    job_run(&env, &x);
    st = h_db_text(&db, "SELECT sub_state FROM accounts WHERE id = %lld", acc);
    tap_is_str(st, "pending",
               "the first worker, whose lease was lost, leaves the new subscription alone");
    free(st);
    db_job_dispose(&x);
    db_job_dispose(&y);
}

static void queue_semantics(void)
{
    struct job x, y, other;
    insert_job("fence:1", 0);
    long long id = claim("owner-x", 1, &x);
    tap_ok(id > 0, "a job is claimed");
    tap_is_int(x.attempts, 1, "attempt 1");
    h_sleep_ms(20);
    int rescued = 0;
    tap_is_int(db_jobs_rescue(db.conn, &rescued), 0, "rescue runs");
    tap_is_int(rescued, 1, "the job whose lease expired is queued again");
    tap_is_int(claim("owner-y", 60000, &y), id, "another worker takes it over");
    tap_is_int(y.attempts, 2, "as attempt 2");
    tap_ok(y.lease_token != x.lease_token, "with a new lease token");
    tap_is_int(db_jobs_succeed(db.conn, &x), 0, "the first worker's success is fenced off");
    tap_is_int(db_jobs_retry(db.conn, &x, 0, true, "{}"), 0, "so is its retry");
    tap_is_int(db_jobs_finish(db.conn, &x, "failed", "{}"), 0, "and its failure");
    char *st = h_db_text(&db, "SELECT state || ' ' || lease_owner FROM jobs WHERE id = %lld", id);
    tap_is_str(st, "running owner-y", "the job is still the second worker's");
    free(st);
    tap_is_int(db_jobs_succeed(db.conn, &y), 1, "the second worker's success counts");
    db_job_dispose(&x);
    db_job_dispose(&y);

    /* Serial keys: the second job waits for the first, also through a retry. */
    insert_job("order:1", 0);
    insert_job("order:1", 0);
    long long first = claim("w", 60000, &x);
    tap_ok(first > 0, "the first job of a key is claimed");
    tap_is_int(claim("w", 60000, &other), 0, "the second waits while the first runs");
    tap_is_int(db_jobs_retry(db.conn, &x, 0, true, "{\"class\":\"temporary\"}"), 1,
               "the first is retried at once");
    db_job_dispose(&x);
    tap_is_int(claim("w", 60000, &x), first, "the retried first job comes before the second");
    tap_is_int(db_jobs_succeed(db.conn, &x), 1, "the first succeeds");
    db_job_dispose(&x);
    long long second = claim("w", 60000, &x);
    tap_ok(second > first, "then the second is claimed");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);

    /* A running job of a key blocks every other job of it, even one with a
     * smaller id (as a transaction that committed late would have). */
    insert_job("late:1", 0);
    long long running = claim("w", 60000, &x);
    h_db_exec(&db,
              "INSERT INTO jobs (id, kind, app_id, serial_key) OVERRIDING SYSTEM VALUE"
              " VALUES (%lld, 'subscribe', 0, 'late:1')",
              running - 1000000);
    tap_is_int(claim("w", 60000, &other), 0, "a running job blocks a smaller id of its key");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);
    tap_is_int(claim("w", 60000, &x), running - 1000000, "which runs once it is done");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);

    /* Holds: a dead token, a paused account, a paused app, a future run_at. */
    h_db_exec(&db, "INSERT INTO tenants (name) VALUES ('q')");
    h_db_exec(&db, "INSERT INTO apps (tenant_id, meta_app_id, verify_token_sealed)"
                   " SELECT id, '4440000000001', 'x' FROM tenants WHERE name = 'q'");
    h_db_exec(&db, "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type,"
                   " access_token_sealed, access_token_hint, sub_state)"
                   " SELECT tenant_id, id, '1', 'instagram_login', 'x', 'x', 'token_invalid'"
                   " FROM apps WHERE meta_app_id = '4440000000001'");
    long long hacc = h_db_int(&db, "SELECT id FROM accounts WHERE ig_id = '1'");
    insert_job("hold:1", hacc);
    tap_is_int(claim("w", 60000, &x), 0, "an account with a dead token has its jobs held");
    h_db_exec(&db,
              "UPDATE accounts SET sub_state = 'pending', paused_until = now() + interval '1 h'");
    tap_is_int(claim("w", 60000, &x), 0, "a paused account has its jobs held");
    h_db_exec(&db, "UPDATE accounts SET paused_until = NULL");
    h_db_exec(&db, "UPDATE apps SET paused_until = now() + interval '1 h'");
    tap_is_int(db_jobs_hold(db.conn, true, h_db_int(&db, "SELECT app_id FROM accounts"), 3600000),
               0, "the app's queued jobs are moved to the pause's end");
    tap_is_int(claim("w", 60000, &x), 0, "a paused app has its jobs held");
    int64_t due = 0;
    tap_is_int(db_jobs_next_due_ms(db.conn, &due), 0, "next due");
    tap_ok(due > 3500 * 1000 && due <= 3600 * 1000, "the next due time counts the pause (%lld)",
           (long long)due);
    h_db_exec(&db, "UPDATE apps SET paused_until = NULL");
    h_db_exec(&db, "UPDATE jobs SET run_at = now() WHERE state = 'queued'");
    tap_ok(claim("w", 60000, &x) > 0, "released, the job is claimed");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);
    /* A 190: the account is held only for the token refused, and only by a
     * job that still holds its lease; the dispatcher's backstop releases
     * jobs held for an account that has left token_invalid. */
    h_db_exec(&db, "UPDATE apps SET paused_until = NULL");
    h_db_exec(&db, "UPDATE accounts SET paused_until = NULL, sub_state = 'pending'");
    insert_job("tok:1", hacc);
    insert_job("tok:2", hacc);
    tap_ok(claim("w", 60000, &x) > 0, "a job of the account runs");
    tap_is_int(db_jobs_hold_for_token(db.conn, &x, "another-token", "{}"), 0,
               "a 190 for a token the account no longer has holds nothing");
    tap_is_int(db_jobs_hold_for_token(db.conn, &x, "x", "{\"code\":190}"), 1,
               "a 190 for its token marks the account");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs WHERE serial_key = 'tok:2'"
                             " AND run_at = 'infinity'"),
               1, "and moves its queued jobs out of the claim's way");
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'pending'");
    int released = 0;
    tap_is_int(db_jobs_release_held(db.conn, &released), 0, "the backstop runs");
    tap_is_int(released, 1, "and releases the job of an account that left token_invalid");
    struct job stale = x;
    stale.lease_token = -1;
    tap_is_int(db_jobs_hold_for_token(db.conn, &stale, "x", "{}"), 0,
               "a worker that lost its lease holds nothing");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);
    h_db_exec(&db, "DELETE FROM jobs WHERE serial_key LIKE 'tok:%%'");

    /* Replies behind an unfinished one of their conversation are parked,
     * and each one's end promotes the next. */
    long long pm[3], pj[3];
    for (int i = 0; i < 3; i++) {
        pm[i] = h_db_int(&db,
                         "INSERT INTO messages (tenant_id, account_id, recipient_id, request)"
                         " SELECT tenant_id, id, '77', '{}' FROM accounts WHERE id = %lld"
                         " RETURNING id",
                         hacc);
        int64_t jid = 0;
        h_db_exec(&db, "BEGIN");
        db_jobs_enqueue_send(db.conn, hacc, pm[i], "77", &jid);
        h_db_exec(&db, "COMMIT");
        pj[i] = jid;
    }
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM jobs WHERE id IN (%lld, %lld)"
                        " AND run_at = 'infinity'",
                        pj[1], pj[2]),
               2, "the second and third reply to one person are parked");
    tap_is_int(claim("w", 60000, &x), pj[0], "the first is claimed");
    tap_is_int(claim("w", 60000, &other), 0, "the parked ones are not");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);
    tap_is_int(
        h_db_int(&db, "SELECT count(*) FROM jobs WHERE id = %lld AND run_at < 'infinity'", pj[1]),
        1, "the first one's end promotes the second");
    tap_is_int(
        h_db_int(&db, "SELECT count(*) FROM jobs WHERE id = %lld AND run_at = 'infinity'", pj[2]),
        1, "and only the second");
    tap_is_int(claim("w", 60000, &x), pj[1], "which is claimed next");
    db_jobs_finish(db.conn, &x, "failed", "{}");
    db_job_dispose(&x);
    tap_is_int(claim("w", 60000, &x), pj[2], "a failed one promotes the next too");
    db_jobs_succeed(db.conn, &x);
    db_job_dispose(&x);
    h_db_exec(&db, "INSERT INTO jobs (kind, app_id, serial_key, run_at)"
                   " VALUES ('subscribe', 0, 'orphan:1', 'infinity')");
    tap_is_int(db_jobs_release_held(db.conn, &released), 0, "the backstop runs again");
    tap_is_int(released, 1, "and releases a parked job whose predecessor is gone");
    h_db_exec(&db, "DELETE FROM jobs WHERE serial_key = 'orphan:1'");

    producers_serialise(hacc);
    h_db_exec(&db, "DELETE FROM messages");
    h_db_exec(&db, "DELETE FROM accounts");
    h_db_exec(&db, "DELETE FROM apps");
    h_db_exec(&db, "DELETE FROM tenants");
    h_db_exec(&db, "DELETE FROM jobs");
}

struct producer {
    struct h_db *db;
    long long account, message;
    atomic_int done;
};

static void *second_producer(void *arg)
{
    struct producer *p = arg;
    char err[256];
    PGconn *c = db_connect(p->db->url, err, sizeof(err));
    if (c == NULL)
        tap_bail("connect: %s", err);
    int64_t id;
    PQclear(PQexec(c, "BEGIN"));
    int rc = db_jobs_enqueue_send(c, p->account, p->message, "42", &id);
    PQclear(PQexec(c, "COMMIT"));
    PQfinish(c);
    atomic_store(&p->done, rc == 0 ? 1 : -1);
    return NULL;
}

/* Two replies to one person queued by two transactions at once: the second
 * waits for the first to commit, so the ids of a key are in commit order. */
static void producers_serialise(long long account)
{
    h_db_exec(&db, "UPDATE accounts SET sub_state = 'pending'");
    long long m1 = h_db_int(&db,
                            "INSERT INTO messages (tenant_id, account_id, recipient_id, request)"
                            " SELECT tenant_id, id, '42', '{}' FROM accounts WHERE id = %lld"
                            " RETURNING id",
                            account);
    long long m2 = h_db_int(&db,
                            "INSERT INTO messages (tenant_id, account_id, recipient_id, request)"
                            " SELECT tenant_id, id, '42', '{}' FROM accounts WHERE id = %lld"
                            " RETURNING id",
                            account);
    h_db_exec(&db, "BEGIN");
    int64_t first;
    tap_is_int(db_jobs_enqueue_send(db.conn, account, m1, "42", &first), 0,
               "a reply is queued in an open transaction");
    struct producer p = {.db = &db, .account = account, .message = m2};
    atomic_init(&p.done, 0);
    pthread_t t;
    pthread_create(&t, NULL, second_producer, &p);
    h_sleep_ms(200);
    tap_is_int(atomic_load(&p.done), 0, "a second reply to the same person waits for it");
    h_db_exec(&db, "COMMIT");
    pthread_join(t, NULL);
    tap_is_int(atomic_load(&p.done), 1, "and is queued once it committed");
    tap_ok(h_db_int(&db, "SELECT id FROM jobs WHERE message_id = %lld", m2) > first,
           "with the later id");
}

static long long setup_account(struct h_server *s, const char *key)
{
    struct h_resp r;
    h_api(&r, s, key, "POST", "/v1/apps",
          "{\"meta_app_id\":\"" META_APP "\",\"app_secret\":\"queue-secret-0123456789\","
          "\"verify_token\":\"verify-0123456789\"}");
    long long app = h_json_num(r.body, "id");
    h_resp_free(&r);
    char json[512];
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"" NODE "\",\"login_type\":\"instagram_login\","
             "\"access_token\":\"" TOKEN "\",\"subscribed_fields\":[\"messages\"]}",
             app);
    h_api(&r, s, key, "POST", "/v1/accounts", json);
    if (r.status != 201)
        tap_bail("creating the account: %ld %s", r.status, r.body);
    long long acc = h_json_num(r.body, "id");
    h_resp_free(&r);
    return acc;
}

/* Queues count replies straight into the outbox, as the API would, and
 * wakes the workers. */
static void queue_replies(long long acc, int recipients, int per, const char *tag)
{
    h_db_exec(&db,
              "WITH m AS ("
              " INSERT INTO messages (tenant_id, account_id, recipient_id, request)"
              " SELECT a.tenant_id, a.id, (9000 + r)::text,"
              "  jsonb_build_object('recipient', jsonb_build_object('id', (9000 + r)::text),"
              "   'messaging_type', 'RESPONSE',"
              "   'message', jsonb_build_object('text', '%s' || r || '-' || lpad(k::text, 3, '0')))"
              " FROM accounts a, generate_series(1, %d) k, generate_series(1, %d) r"
              " WHERE a.id = %lld ORDER BY k, r RETURNING id, tenant_id, account_id, recipient_id"
              ")"
              " INSERT INTO jobs (kind, tenant_id, app_id, account_id, message_id, serial_key,"
              "  run_at)"
              " SELECT 'send', m.tenant_id, a.app_id, m.account_id, m.id,"
              "  'msg:' || m.account_id || ':' || m.recipient_id,"
              /* parked behind the first of their conversation, as
               * db_jobs_enqueue_send() queues them */
              "  CASE WHEN row_number() OVER (PARTITION BY m.recipient_id ORDER BY m.id) > 1"
              "  THEN 'infinity'::timestamptz ELSE now() END"
              " FROM m JOIN accounts a ON a.id = m.account_id ORDER BY m.id",
              tag, per, recipients, acc);
    h_db_exec(&db, "NOTIFY " DB_JOBS_CHANNEL);
}

static void rescue_after_kill(struct fg *ig, long long acc, const char *const *env_a,
                              const char *const *env_b)
{
    (void)acc;
    struct h_server a, b;
    h_server_start(&a, &db, env_a);
    fg_set_slow_ms(ig, 20000);
    fg_fail(ig, (struct fg_match){FG_SEND, NODE, NULL}, FG_SLOW, 1);
    queue_replies(acc, 1, 1, "rescued");
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    while (fg_count(ig, (struct fg_match){FG_SEND, NODE, NULL}) < 1 && h_now_ms() < deadline)
        h_sleep_ms(10);
    tap_is_int(fg_count(ig, (struct fg_match){FG_SEND, NODE, NULL}), 1,
               "process A's worker is inside the send");
    tap_is_int(h_server_stop(&a, SIGKILL), 128 + SIGKILL, "process A is killed mid-job");
    char *owner = h_db_text(&db, "SELECT lease_owner FROM jobs WHERE kind = 'send'");
    tap_ok(strstr(owner, ":") != NULL, "the job's lease was A's (%s)", owner);
    h_server_start(&b, &db, env_b);
    tap_ok(h_wait_sql(&db, "succeeded 2", H_WAIT_MS,
                      "SELECT state || ' ' || attempts FROM jobs WHERE kind = 'send'"),
           "after the lease expired, process B ran the job: attempt 2 succeeded");
    char *owner_b = h_db_text(&db, "SELECT lease_owner FROM jobs WHERE kind = 'send'");
    tap_ok(strcmp(owner, owner_b) != 0, "B (%s) is not A", owner_b);
    tap_is_int(fg_sends(ig, NODE, NULL), 1, "the reply was delivered once");
    free(owner);
    free(owner_b);
    tap_is_int(h_server_stop(&b, SIGTERM), 0, "B exits 0");
    h_db_exec(&db, "DELETE FROM messages");
    fg_reset_records(ig);
}

/* The dispatcher's connection dies in the middle of its periodic work: it
 * must notice, reconnect and go on rescuing leases. */
static void dispatcher_reconnects(const char *const *env)
{
    struct h_server a;
    h_server_start(&a, &db, env);
    h_db_exec(&db, "BEGIN");
    h_db_exec(&db, "LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE");
    /* A second connection watches for the rescue statement waiting on it. */
    char err[256];
    PGconn *watch = db_connect(db.url, err, sizeof(err));
    if (watch == NULL)
        tap_bail("connect: %s", err);
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    bool killed = false;
    while (!killed && h_now_ms() < deadline) {
        PGresult *r = PQexec(watch, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE wait_event_type = 'Lock'"
                                    "  AND application_name = 'hubbub dispatcher'"
                                    "  AND datname = current_database()");
        killed = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
        PQclear(r);
        if (!killed)
            h_sleep_ms(10);
    }
    if (!killed) {
        PGresult *r = PQexec(watch, "SELECT string_agg(coalesce(wait_event_type, '-') || ' '"
                                    " || left(query, 60), ' | ') FROM pg_stat_activity"
                                    " WHERE backend_type = 'client backend'");
        tap_diag("activity: %s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(watch);
    h_db_exec(&db, "COMMIT");
    tap_ok(killed, "the dispatcher's connection is killed inside its periodic work");
    h_db_exec(&db, "INSERT INTO jobs (kind, app_id, serial_key, state, lease_owner, lease_token,"
                   " lease_expires_at, attempts)"
                   " VALUES ('unsubscribe', 0, 'orphan', 'running', 'gone', 1,"
                   "  now() - interval '1 s', 1)");
    tap_ok(h_wait_sql(&db, "f", H_WAIT_MS,
                      "SELECT state = 'running' FROM jobs WHERE serial_key = 'orphan'"),
           "a reconnected dispatcher still rescues expired leases");
    tap_is_int(h_server_stop(&a, SIGTERM), 0, "server exits 0");
    h_db_exec(&db, "DELETE FROM jobs WHERE serial_key = 'orphan'");
}

int main(void)
{
    h_db_create(&db, "jobs_queue");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    if (db_jobs_prepare(db.conn) != 0)
        tap_bail("preparing the claim: %s", PQerrorMessage(db.conn));
    queue_semantics();
    rescued_last_attempt();

    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, NODE, TOKEN, META_APP);
    const char *env_one[] = {fg_env(ig),
                             "HUBBUB_WORKERS=1",
                             "HUBBUB_JOB_LEASE=1s",
                             "HUBBUB_JOB_POLL_INTERVAL=100ms",
                             "HUBBUB_GRAPH_TIMEOUT=30s",
                             "HUBBUB_SHUTDOWN_TIMEOUT=2s",
                             NULL};
    const char *env_four[] = {fg_env(ig), "HUBBUB_WORKERS=4", "HUBBUB_JOB_POLL_INTERVAL=200ms",
                              NULL};

    struct h_server a, b;
    h_server_start(&a, &db, env_four);
    char key[64];
    h_api_tenant(&a, "queue", key);
    long long acc = setup_account(&a, key);
    tap_ok(
        h_wait_sql(&db, "active", H_WAIT_MS, "SELECT sub_state FROM accounts WHERE id = %lld", acc),
        "the account is subscribed");
    tap_is_int(h_server_stop(&a, SIGTERM), 0, "set-up server exits 0");

    rescue_after_kill(ig, acc, env_one, env_one);
    dispatcher_reconnects(env_one);

    /* ---- two processes, 1 000 replies ---- */
    fg_set_latency_ms(ig, 1);
    h_server_start(&a, &db, env_four);
    h_server_start(&b, &db, env_four);
    queue_replies(acc, RECIPIENTS, PER_RECIPIENT, "r");
    int total = RECIPIENTS * PER_RECIPIENT;
    tap_ok(fg_wait_sends(ig, total, 60000), "%d replies reached the Send API", total);
    tap_ok(h_wait_sql(&db, "1000", H_WAIT_MS,
                      "SELECT count(*) FROM jobs WHERE kind = 'send' AND state = 'succeeded'"),
           "all 1000 jobs succeeded");
    h_sleep_ms(300);
    tap_is_int(fg_sends(ig, NODE, NULL), total, "no reply was sent twice");
    tap_is_int(h_db_int(&db, "SELECT count(DISTINCT meta_message_id) FROM messages"), total,
               "every message has its own message_id");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM jobs WHERE kind = 'send' AND attempts <> 1"), 0,
               "each job ran once");
    tap_is_int(fg_max_in_flight(ig, NULL, NULL), 1, "no conversation ever had two sends at once");
    int in_order = 0;
    for (int r = 1; r <= RECIPIENTS; r++) {
        char rec[16], want[256] = "";
        snprintf(rec, sizeof(rec), "%d", 9000 + r);
        for (int k = 1; k <= PER_RECIPIENT; k++) {
            char t[32];
            snprintf(t, sizeof(t), "%sr%d-%03d", k > 1 ? "\n" : "", r, k);
            strcat(want, t);
        }
        char *got = fg_sent_texts(ig, NODE, rec);
        in_order += strcmp(got, want) == 0;
        free(got);
    }
    tap_is_int(in_order, RECIPIENTS, "every conversation arrived in order");
    long long owners = h_db_int(&db, "SELECT count(DISTINCT split_part(lease_owner, ':', 2))"
                                     " FROM jobs WHERE kind = 'send'");
    tap_is_int(owners, 2, "both processes ran jobs");
    char *split = h_db_text(&db, "SELECT string_agg(n::text, ' ') FROM (SELECT count(*) n"
                                 " FROM jobs WHERE kind = 'send'"
                                 " GROUP BY split_part(lease_owner, ':', 2)) x");
    tap_diag("jobs per process: %s", split);
    free(split);
    tap_is_int(h_server_stop(&a, SIGTERM), 0, "A exits 0");
    tap_is_int(h_server_stop(&b, SIGTERM), 0, "B exits 0");
    fg_stop(ig);
    h_db_drop(&db);
    return tap_done();
}
