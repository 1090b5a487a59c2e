/*
 * t_partition_attach.c - partition upkeep while deliveries keep arriving for
 * the month it creates: hubbub_partitions_ensure() moves the month's rows out
 * of the DEFAULT partitions and attaches the new partitions; a delivery that
 * arrives meanwhile is answered 200 and stored once, in the new partition,
 * and the upkeep round succeeds (a row slipping into DEFAULT between the
 * move and the attach used to fail the round, and an insert routed to
 * DEFAULT just before the attach used to be stored as rejected, 400).
 *
 * The window is held open deterministically: a session holding SHARE UPDATE
 * EXCLUSIVE on events (what ANALYZE or VACUUM of the table holds) makes the
 * attach wait.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "5550071"
#define SECRET "attach-secret-0123456789"

static char *comment(const char *id)
{
    char *b = malloc(512);
    snprintf(b, 512,
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000071\",\"time\":"
             "1700000001,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"%s\"}}]}]}",
             id);
    return b;
}

struct post {
    const struct h_server *s;
    char *body;
    long status;
};

static void *post_main(void *arg)
{
    struct post *p = arg;
    struct h_resp r;
    h_post_signed(&r, p->s, APP, SECRET, p->body, strlen(p->body));
    p->status = r.status;
    if (r.status != 200)
        tap_diag("POST: %ld %s", r.status, r.body != NULL ? r.body : r.error);
    h_resp_free(&r);
    return NULL;
}

static PGconn *connect_or_bail(struct h_db *db)
{
    PGconn *c = PQconnectdb(db->url);
    if (PQstatus(c) != CONNECTION_OK)
        tap_bail("cannot connect: %s", PQerrorMessage(c));
    return c;
}

static void exec_or_bail(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        tap_bail("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static long long events_like(struct h_db *db, const char *id)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = '%s'", id);
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "partition_attach");
    h_setup_app(&db, "acme", APP, "token", SECRET);
    struct h_server s;
    const char *env[] = {"HUBBUB_WORKERS=0", NULL};
    h_server_start(&s, &db, env);

    /* This month's partitions go missing: deliveries land in DEFAULT. */
    char *cur_e = h_db_text(&db, "SELECT 'events_p' || to_char(now() AT TIME ZONE 'UTC',"
                                 " 'YYYY_MM')");
    char *cur_d = h_db_text(&db, "SELECT 'deliveries_p' || to_char(now() AT TIME ZONE 'UTC',"
                                 " 'YYYY_MM')");
    /* The server's first upkeep round is over: its connection (in this
     * database: other tests' servers have theirs) waits idle after the
     * call, not merely after naming itself just before it. */
    if (!h_wait_sql(&db, "1", H_WAIT_MS,
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = 'hubbub partition upkeep' AND state = 'idle'"
                    " AND datname = current_database()"
                    " AND query LIKE '%%hubbub_partitions_ensure%%'"))
        tap_bail("the server's first upkeep round did not end");
    h_db_exec(&db, "DROP TABLE %s", cur_e);
    h_db_exec(&db, "DROP TABLE %s", cur_d);
    struct post before = {.s = &s, .body = comment("att-before")};
    post_main(&before);
    if (!tap_is_int(before.status, 200, "a delivery while this month has no partition gets 200")) {
        char *log = h_server_log(&s);
        tap_diag("%s", log);
        free(log);
    }
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events_default"), 1,
               "its event waits in the DEFAULT partition");

    /* Upkeep starts, moves the month's rows and must wait to attach. */
    PGconn *holder = connect_or_bail(&db), *upkeep = connect_or_bail(&db);
    exec_or_bail(holder, "BEGIN; LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE");
    if (!PQsendQuery(upkeep, "SELECT hubbub_partitions_ensure(1)"))
        tap_bail("sending the upkeep call: %s", PQerrorMessage(upkeep));
    tap_ok(h_wait_sql(&db, "1", H_WAIT_MS,
                      "SELECT count(*) FROM pg_stat_activity WHERE pid = %d"
                      " AND wait_event_type = 'Lock'",
                      PQbackendPID(upkeep)),
           "upkeep waits for its lock");

    /* A delivery now: it either gets into DEFAULT (and must not break the
     * attach) or waits for the attach (and must then land in the new
     * partition). */
    struct post during = {.s = &s, .body = comment("att-during")};
    pthread_t t;
    pthread_create(&t, NULL, post_main, &during);
    tap_ok(h_wait_sql(&db, "1", H_WAIT_MS,
                      "SELECT ((SELECT count(*) FROM events_default) > 1 OR EXISTS (SELECT 1"
                      " FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %d"
                      " AND datname = current_database()))::int",
                      PQbackendPID(upkeep)),
           "the delivery reached the database meanwhile");
    exec_or_bail(holder, "COMMIT");

    PGresult *r = PQgetResult(upkeep);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        tap_diag("upkeep: %s", PQresultErrorMessage(r));
    tap_ok(ok, "the upkeep round succeeds");
    PQclear(r);
    while ((r = PQgetResult(upkeep)) != NULL)
        PQclear(r);
    pthread_join(t, NULL);
    tap_is_int(during.status, 200, "the delivery sent during upkeep gets 200");

    /* Upkeep again, in case the round above failed: nothing may be lost. */
    exec_or_bail(upkeep, "SELECT hubbub_partitions_ensure(1)");
    tap_ok(events_like(&db, "att-before") == 1 && events_like(&db, "att-during") == 1,
           "both events are stored, once each");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries WHERE status = 'accepted'"), 2,
               "both deliveries are stored as accepted");
    char *where =
        h_db_text(&db, "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM events");
    tap_is_str(where, cur_e, "both events are in this month's new partition");
    free(where);
    tap_is_int(h_db_int(&db, "SELECT (SELECT count(*) FROM events_default) +"
                             " (SELECT count(*) FROM deliveries_default)"),
               0, "the DEFAULT partitions are empty");

    PQfinish(holder);
    PQfinish(upkeep);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    free(before.body);
    free(during.body);
    free(cur_e);
    free(cur_d);
    h_db_drop(&db);
    return tap_done();
}
