/*
 * t_routing_race.c - an event of a shared app arriving while an account for
 * its entry is being added. The account's transaction holds the app's lock
 * (as api/accounts.c does); the delivery's commit must wait for it and so see
 * the account: otherwise the event would be stored unrouted after the
 * account's backfill had already run, and stay unrouted.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP "9300000000001"
#define SECRET "race-secret-0123456789"
#define ENTRY "17841400000000099"
#define LOCK_CLASS 1751343727 /* api/accounts.c and db/ingest.c */

static struct h_server srv;
static _Atomic long post_status; /* written by the sending thread */

static void *post_delivery(void *arg)
{
    (void)arg;
    char body[512];
    int n =
        snprintf(body, sizeof(body),
                 "{\"object\":\"instagram\",\"entry\":[{\"id\":\"" ENTRY "\",\"time\":1700000000,"
                 "\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"RACE-1\","
                 "\"text\":\"hi\",\"from\":{\"id\":\"42\"},\"media\":{\"id\":\"7\"}}}]}]}");
    struct h_resp r;
    h_post_signed(&r, &srv, APP, SECRET, body, (size_t)n);
    post_status = r.status;
    h_resp_free(&r);
    return NULL;
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "routing_race");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    h_server_start(&srv, &db, NULL);
    char key[64];
    long long tenant = h_api_tenant(&srv, "racer", key);
    struct h_resp r;
    h_api(&r, &srv, H_ADMIN_TOKEN, "POST", "/v1/apps",
          "{\"meta_app_id\":\"" APP "\",\"app_secret\":\"" SECRET "\",\"verify_token\":\"vt\"}");
    if (r.status != 201)
        tap_bail("creating the shared app: %ld %s", r.status, r.body);
    long long app = h_json_num(r.body, "id");
    h_resp_free(&r);

    /* An account being added: its row written, its transaction still open
     * and holding the app's lock, its backfill (of nothing yet) done. */
    h_db_exec(&db, "BEGIN");
    h_db_exec(&db, "SELECT pg_advisory_xact_lock(%d, %lld)", LOCK_CLASS, app);
    h_db_exec(&db,
              "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type, access_token_sealed,"
              " access_token_hint) VALUES (%lld, %lld, '%s', 'instagram_login', 'x', '')",
              tenant, app, ENTRY);

    pthread_t t;
    pthread_create(&t, NULL, post_delivery, NULL);
    h_sleep_ms(300);
    tap_is_int(post_status, 0, "the delivery waits while the account is being added");
    h_db_exec(&db, "COMMIT");
    pthread_join(t, NULL);
    tap_is_int(post_status, 200, "and is stored once the account is committed");
    tap_is_int(h_db_int(&db, "SELECT coalesce(tenant_id, -1) FROM events"
                             " WHERE payload->'value'->>'id' = 'RACE-1'"),
               tenant, "its event belongs to the new account's tenant, not to nobody");

    h_server_stop(&srv, 15);
    h_db_drop(&db);
    return tap_done();
}
