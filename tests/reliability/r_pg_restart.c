/*
 * r_pg_restart.c - PostgreSQL restarted under load: 503 while it is down,
 * never 200 without a commit, 200 again after, and every 200 stored.
 *
 * The program runs its own cluster (ops/pg-local under /tmp), so stopping it
 * harms no other test. HUBBUB_REL_CLIENTS clients (8; full 32) post without
 * pause while the cluster is stopped (fast shutdown) and started again
 * HUBBUB_REL_PG_RESTARTS times (2; full 5), down for HUBBUB_REL_PG_DOWN_MS
 * (1000; full 3000) each time. t_pg_outage checks the finer points
 * (immediate shutdown, handshakes of cached apps, CPU while down) with
 * three clients.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/reliability/rel.h"

#ifndef HB_SOURCE_DIR
#define HB_SOURCE_DIR "."
#endif

#define APP_ID "17841400000000903"
#define SECRET "pgrestart-secret-0123456789abcdef"
#define MAX_DELIVERIES 3000000
#define RECOVERY_LIMIT_MS 5000

static struct h_cluster cluster;

static int pg_local(const char *cmd, const char *extra)
{
    return h_cluster_run(&cluster, cmd, extra);
}

static void cleanup(void)
{
    h_cluster_remove(&cluster);
}

static void on_fatal_signal(int sig)
{
    (void)sig;
    exit(1); /* runs cleanup() */
}

int main(void)
{
    int clients = (int)rel_bound("HUBBUB_REL_CLIENTS", 8, 32);
    int restarts = (int)rel_bound("HUBBUB_REL_PG_RESTARTS", 2, 5);
    int down_ms = (int)rel_bound("HUBBUB_REL_PG_DOWN_MS", 1000, 3000);
    h_cluster_init(&cluster, HB_SOURCE_DIR, "rel-pg");
    atexit(cleanup);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    h_cluster_start_or_bail(&cluster);
    struct h_db db;
    memset(&db, 0, sizeof(db));
    snprintf(db.name, sizeof(db.name), "hubbub");
    db.url = h_cluster_url(&cluster);
    db.conn = PQconnectdb(db.url);
    if (PQstatus(db.conn) != CONNECTION_OK)
        tap_bail("cannot connect to %s: %s", db.url, PQerrorMessage(db.conn));
    h_setup_app(&db, "pgrestartco", APP_ID, "pg-verify", SECRET);
    const char *env[] = {"HUBBUB_DB_RETRY_MAX=200ms", "HUBBUB_SHUTDOWN_TIMEOUT=5s", NULL};
    struct h_server s;
    h_server_start(&s, &db, env);

    struct rel_load load;
    rel_load_start(&load, s.port, APP_ID, SECRET, clients, 0, MAX_DELIVERIES, 0);
    h_sleep_ms(500);
    int64_t *stopped = calloc((size_t)restarts, sizeof(int64_t));
    int64_t *started = calloc((size_t)restarts, sizeof(int64_t));
    int64_t *starting = calloc((size_t)restarts, sizeof(int64_t));
    for (int i = 0; i < restarts; i++) {
        if (pg_local("stop", NULL) != 0)
            tap_bail("ops/pg-local stop failed");
        stopped[i] = h_now_ms();
        h_sleep_ms(down_ms);
        starting[i] = h_now_ms();
        if (pg_local("start", "--fsync=off") != 0)
            tap_bail("ops/pg-local start failed");
        started[i] = h_now_ms();
        h_sleep_ms(1500);
    }
    rel_load_stop(&load);

    struct rel_tally all;
    rel_tally(&load, 0, INT64_MAX, &all);
    rel_tally_diag("all deliveries", &all);
    int ok_while_down = 0, unavailable_while_down = 0, not_recovered = 0;
    for (int i = 0; i < restarts; i++) {
        struct rel_tally t;
        /* Sent after the stop completed and answered before the start began:
         * PostgreSQL may accept connections well before `pg_ctl start -w`
         * returns on a loaded machine, so the end of the start is no bound. */
        int w200 = 0, w503 = 0;
        int64_t first_ok = 0;
        for (int n = 0; n < rel_load_sent(&load); n++) {
            const struct rel_rec *r = &load.recs[n];
            if (r->fate != REL_ANSWERED)
                continue;
            if (r->t_send >= stopped[i] && r->t_done < starting[i]) {
                if (r->status == 200)
                    w200++;
                else if (r->status == 503)
                    w503++;
            }
            if (r->status == 200 && r->t_send >= started[i] &&
                (first_ok == 0 || r->t_done < first_ok))
                first_ok = r->t_done;
        }
        rel_tally(&load, stopped[i], started[i], &t);
        char what[64];
        snprintf(what, sizeof(what), "restart %d, while down", i + 1);
        rel_tally_diag(what, &t);
        tap_diag("restart %d: %d x 200 and %d x 503 answered while down; first 200 %lld ms after "
                 "the start",
                 i + 1, w200, w503, (long long)(first_ok ? first_ok - started[i] : -1));
        ok_while_down += w200;
        unavailable_while_down += w503;
        if (first_ok == 0 || first_ok - started[i] > RECOVERY_LIMIT_MS)
            not_recovered++;
    }
    int stored, dups;
    int missing = rel_missing(&db, &load, &stored, &dups);
    tap_diag("%d events stored; %d deliveries got 200", stored, all.ok);
    tap_is_int(all.other, 0, "every answer was 200 or 503");
    tap_is_int(all.by_fate[REL_LOST] + all.by_fate[REL_RACE] + all.by_fate[REL_TIMEOUT], 0,
               "every request got an answer");
    tap_ok(unavailable_while_down > 0, "deliveries got 503 while PostgreSQL was down (%d)",
           unavailable_while_down);
    tap_is_int(ok_while_down, 0, "none sent and answered while it was down got 200");
    tap_is_int(not_recovered, 0, "deliveries got 200 again within %d ms of each start",
               RECOVERY_LIMIT_MS);
    tap_is_int(missing, 0, "every delivery that got 200 is in the database");
    tap_is_int(dups, 0, "no delivery is stored twice");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub, never restarted, stops cleanly");
    rel_load_free(&load);
    free(stopped);
    free(started);
    free(starting);
    PQfinish(db.conn);
    free(db.url);
    cleanup();
    return tap_done();
}
