/*
 * t_replica.c - HUBBUB_READ_DATABASE_URL: the admin API's event and delivery
 * listings read from a streaming replica, everything else from the primary.
 *
 * A replica of the test cluster is built with pg_basebackup -R (ops/pg-local
 * replica). With replay paused on it, a delivery is answered 200 (committed
 * on the primary) but GET /v1/events and GET /v1/deliveries do not show it,
 * while GET /v1/events/{id} (primary) does, a key created meanwhile is
 * accepted (keys are checked on the primary) and a listing by an account
 * created meanwhile is not a 404 (the primary is asked again); once replay
 * resumes the listing shows it. A listing that WAL replay cancels on the
 * replica (a recovery conflict) is answered by the primary. With the replica
 * stopped, the listings are answered by the primary, and the fallback is
 * logged.
 *
 * Needs the test database to be an ops/pg-local cluster (its socket
 * directory holds data/); otherwise it skips.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "1000000001"
#define SECRET "replica-app-secret-0123456789"

static char replica_dir[64];
static bool is_replica_made;

static int pg_local(const char *const *argv, char **out)
{
    return h_spawn(NULL, HB_SOURCE_DIR "/ops/pg-local", argv, NULL, NULL, out);
}

static void remove_replica(void)
{
    if (replica_dir[0] == '\0')
        return;
    if (is_replica_made) {
        const char *stop[] = {"stop", replica_dir, NULL};
        pg_local(stop, NULL);
    }
    const char *rm[] = {"-rf", replica_dir, NULL};
    h_spawn(NULL, "/bin/rm", rm, NULL, NULL, NULL);
    replica_dir[0] = '\0';
}

/* The number of items of a list answer, read with jsonb on conn. */
static long long listed(PGconn *conn, const struct h_resp *r)
{
    if (r->status != 200 || r->body == NULL)
        return -1;
    const char *params[] = {r->body};
    PGresult *res = PQexecParams(conn, "SELECT jsonb_array_length($1::jsonb->'data')", 1, NULL,
                                 params, NULL, NULL, 0);
    long long n = PQresultStatus(res) == PGRES_TUPLES_OK && !PQgetisnull(res, 0, 0)
                      ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                      : -1;
    PQclear(res);
    return n;
}

static long long list_count(const struct h_server *s, PGconn *conn, const char *token,
                            const char *path)
{
    struct h_resp r;
    h_api(&r, s, token, "GET", path, NULL);
    long long n = listed(conn, &r);
    if (n < 0)
        tap_diag("GET %s: %ld %s", path, r.status, r.body ? r.body : r.error);
    h_resp_free(&r);
    return n;
}

static void deliver(const struct h_server *s, int n)
{
    size_t len;
    char *body = h_comment_delivery(n, &len);
    struct h_resp r;
    h_post_signed(&r, s, APP, SECRET, body, len);
    if (r.status != 200)
        tap_bail("delivery %d: %ld %s", n, r.status, r.body);
    h_resp_free(&r);
    free(body);
}

/* Waits until the listing at path holds want items. */
static bool wait_listed(const struct h_server *s, PGconn *conn, const char *path, long long want)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    long long n = -1;
    while (h_now_ms() < deadline) {
        n = list_count(s, conn, H_ADMIN_TOKEN, path);
        if (n == want)
            return true;
        h_sleep_ms(20);
    }
    tap_diag("%s still lists %lld, not %lld", path, n, want);
    return false;
}

static char *replica_text(PGconn *rc, const char *sql)
{
    PGresult *r = PQexec(rc, sql);
    char *v =
        strdup(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0)
                                                                        : PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static bool wait_replica(PGconn *rc, const char *sql, const char *want)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    char *v = NULL;
    while (h_now_ms() < deadline) {
        free(v);
        v = replica_text(rc, sql);
        if (strcmp(v, want) == 0) {
            free(v);
            return true;
        }
        h_sleep_ms(10);
    }
    tap_diag("replica: %s gave %s, not %s", sql, v, want);
    free(v);
    return false;
}

struct bg_list {
    const struct h_server *s;
    long status;
    char *body;
};

static void *list_bg(void *arg)
{
    struct bg_list *b = arg;
    struct h_resp r;
    h_api(&r, b->s, H_ADMIN_TOKEN, "GET", "/v1/events", NULL);
    b->status = r.status;
    b->body = r.body != NULL ? strdup(r.body) : NULL;
    h_resp_free(&r);
    return NULL;
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "replica");
    const char *host = PQhost(db.conn);
    char pgversion[512];
    snprintf(pgversion, sizeof(pgversion), "%s/data/PG_VERSION", host ? host : "");
    if (host == NULL || host[0] != '/' || access(pgversion, R_OK) != 0) {
        printf("1..0 # SKIP the test database is not an ops/pg-local cluster\n");
        h_db_drop(&db);
        return 0;
    }
    h_setup_app(&db, "acme", APP, "verify-0123456789", SECRET);

    /* ---- a streaming replica of the test cluster ---- */
    snprintf(replica_dir, sizeof(replica_dir), "/tmp/hubbub-replica-%d", (int)getpid());
    atexit(remove_replica);
    char *out = NULL;
    const char *make[] = {"replica", replica_dir, host, "--fsync=off", NULL};
    is_replica_made = true;
    if (pg_local(make, &out) != 0)
        tap_bail("ops/pg-local replica failed: %s", out);
    free(out);
    char rurl[512];
    snprintf(rurl, sizeof(rurl), "host='%s' user='%s' dbname='%s'", replica_dir, PQuser(db.conn),
             db.name);
    PGconn *rc = PQconnectdb(rurl);
    if (PQstatus(rc) != CONNECTION_OK)
        tap_bail("cannot connect to the replica: %s", PQerrorMessage(rc));
    tap_ok(wait_replica(rc, "SELECT pg_is_in_recovery()", "t"),
           "pg_basebackup -R made a hot standby of the test cluster");

    char env_read[600];
    snprintf(env_read, sizeof(env_read), "HUBBUB_READ_DATABASE_URL=%s", rurl);
    const char *env[] = {env_read, "HUBBUB_API_RATE=100000", "HUBBUB_API_BURST=100000", NULL};
    struct h_server srv;
    h_server_start(&srv, &db, env);

    deliver(&srv, 1);
    tap_ok(wait_replica(rc, "SELECT count(*) FROM events", "1"),
           "the first delivery's event reached the replica");
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/events"), 1,
               "GET /v1/events lists it");

    /* ---- replay paused: the listings stop at what the replica has ---- */
    char *v = replica_text(rc, "SELECT pg_wal_replay_pause()");
    free(v);
    deliver(&srv, 2);
    tap_ok(wait_replica(rc, "SELECT pg_get_wal_replay_pause_state()", "paused"),
           "replay is paused on the replica, before the second delivery");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events"), 2,
               "the second delivery was answered 200 and is on the primary");
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/events"), 1,
               "GET /v1/events does not list it: it reads the replica");
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/events?order=asc&limit=10"), 1,
               "nor in ascending order");
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/deliveries"), 1,
               "GET /v1/deliveries reads the replica too");
    long long id2 = h_db_int(&db, "SELECT id FROM events WHERE payload->'value'->>'id' = 'C2'");
    char path[128];
    snprintf(path, sizeof(path), "/v1/events/%lld", id2);
    struct h_resp r;
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", path, NULL);
    tap_is_int(r.status, 200, "GET /v1/events/{id} of the new event: 200 (it reads the primary)");
    h_resp_free(&r);
    char key[64], json[512];
    long long late = h_api_tenant(&srv, "late", key);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM api_keys"), 1, "a key was created meanwhile");
    h_api(&r, &srv, key, "GET", "/v1/events", NULL);
    tap_is_int(r.status, 200,
               "and GET /v1/events accepts it at once: keys are checked on the primary");
    tap_is_int(listed(db.conn, &r), 0, "listing none of the other tenant's events");
    h_resp_free(&r);
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"1000000002\",\"app_secret\":\"late-app-secret-0123456789\","
             "\"verify_token\":\"verify-late-0123456789\",\"tenant_id\":%lld}",
             late);
    h_api(&r, &srv, H_ADMIN_TOKEN, "POST", "/v1/apps", json);
    long long app = h_json_num(r.body, "id");
    h_resp_free(&r);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000777\",\"username\":\"late_ig\","
             "\"login_type\":\"instagram_login\",\"access_token\":\"EAAGlateTOKEN1234\","
             "\"subscribed_fields\":[\"comments\"]}",
             app);
    h_api(&r, &srv, key, "POST", "/v1/accounts", json);
    long long account = h_json_num(r.body, "id");
    tap_is_int(r.status, 201, "an account was created meanwhile");
    h_resp_free(&r);
    v = replica_text(rc, "SELECT count(*) FROM accounts");
    tap_is_str(v, "0", "the paused replica has no account yet");
    free(v);
    snprintf(path, sizeof(path), "/v1/events?account=%lld", account);
    h_api(&r, &srv, key, "GET", path, NULL);
    tap_is_int(r.status, 200,
               "GET /v1/events?account= of it: 200, not the replica's 404 (the primary is asked)");
    h_resp_free(&r);

    /* ---- replay resumed ---- */
    v = replica_text(rc, "SELECT pg_wal_replay_resume()");
    free(v);
    tap_ok(wait_listed(&srv, db.conn, "/v1/events", 2),
           "after pg_wal_replay_resume() GET /v1/events lists the second event");

    /* ---- WAL replay cancels a listing on the replica ---- */
    /* The replica cancels at once what holds up replay, and a second server
     * reads it as a role for which every event row takes a second to read
     * (a row security policy; the primary's superuser is not subject to it),
     * so a listing is still running there when the primary takes the lock
     * of events that replay must take too. */
    char role[32];
    snprintf(role, sizeof(role), "hb_slow_%d", (int)getpid());
    h_db_exec(&db, "CREATE ROLE %s LOGIN", role);
    h_db_exec(&db, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", role);
    h_db_exec(&db, "ALTER TABLE events ENABLE ROW LEVEL SECURITY");
    h_db_exec(&db, "CREATE POLICY slow ON events FOR SELECT TO %s USING (pg_sleep(1) IS NOT NULL)",
              role);
    v = replica_text(rc, "ALTER SYSTEM SET max_standby_streaming_delay = 0");
    free(v);
    v = replica_text(rc, "SELECT pg_reload_conf()");
    free(v);
    tap_ok(wait_replica(rc, "SHOW max_standby_streaming_delay", "0") &&
               wait_replica(rc, "SELECT count(*) FROM pg_policies WHERE policyname = 'slow'", "1"),
           "the replica cancels conflicting queries at once and has the slow policy");
    char slow_url[512], env_slow[600];
    snprintf(slow_url, sizeof(slow_url), "host='%s' user='%s' dbname='%s'", replica_dir, role,
             db.name);
    snprintf(env_slow, sizeof(env_slow), "HUBBUB_READ_DATABASE_URL=%s", slow_url);
    const char *env2[] = {env_slow, NULL};
    struct h_server slow;
    h_server_start(&slow, &db, env2);
    struct bg_list bl = {.s = &slow};
    pthread_t t;
    int64_t t0 = h_now_ms();
    pthread_create(&t, NULL, list_bg, &bl);
    h_sleep_ms(600);
    h_db_exec(&db, "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; COMMIT");
    pthread_join(t, NULL);
    int64_t took = h_now_ms() - t0;
    struct h_resp br = {.status = bl.status, .body = bl.body};
    tap_is_int(bl.status, 200, "a listing cancelled on the replica is answered 200");
    tap_is_int(listed(db.conn, &br), 2, "with both events, by the primary (in %lld ms)",
               (long long)took);
    free(bl.body);
    h_server_stop(&slow, SIGTERM);
    char *log = h_server_log(&slow);
    tap_contains(log, "read replica cancelled a query (conflict with recovery)",
                 "the replica did cancel it, and that is logged");
    tap_ok(strstr(log, "level=error msg=\"admin API statement failed\"") == NULL,
           "as a warning: a cancelled replica query the primary answered is no error");
    free(log);
    h_db_exec(&db, "DROP POLICY slow ON events");
    h_db_exec(&db, "ALTER TABLE events DISABLE ROW LEVEL SECURITY");
    h_db_exec(&db, "DROP OWNED BY %s", role);
    h_db_exec(&db, "DROP ROLE %s", role);
    PQfinish(rc);

    /* ---- the replica stopped: the primary answers ---- */
    const char *stop[] = {"stop", replica_dir, NULL};
    tap_is_int(pg_local(stop, NULL), 0, "the replica is stopped");
    deliver(&srv, 3);
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/events"), 3,
               "GET /v1/events still answers, from the primary, with all 3 events");
    tap_is_int(list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/deliveries"), 3,
               "so does GET /v1/deliveries");
    for (int i = 0; i < 20; i++)
        list_count(&srv, db.conn, H_ADMIN_TOKEN, "/v1/events?limit=1");
    h_server_stop(&srv, SIGTERM);
    log = h_server_log(&srv);
    tap_contains(log, "read replica unavailable", "the fallback is logged");
    const char *first = strstr(log, "read replica unavailable");
    tap_ok(first == NULL || strstr(first + 1, "read replica unavailable") == NULL,
           "once, though 22 requests fell back");
    tap_ok(strstr(log, replica_dir) == NULL, "the log does not show the replica's URL");
    free(log);

    remove_replica();
    h_db_drop(&db);
    return tap_done();
}
