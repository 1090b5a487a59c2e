/*
 * t_retention.c - hubbub retention --older-than 90d: whole months older than
 * the default go (partitions of events and deliveries, and the events' dedup
 * keys) unless a tenant with a longer retention still keeps events there; a
 * tenant with a shorter retention loses its older events row by row; newer
 * events stay; --dry-run changes nothing; a server ingesting meanwhile loses
 * nothing. The tenant API sets and shows retention_days (operator only).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP "5550051"
#define SECRET "retention-secret-0123456789"

struct load {
    const struct h_server *s;
    atomic_bool stop;
    int sent, ok;
};

/* Posts distinct deliveries until told to stop. */
static void *ingest(void *arg)
{
    struct load *l = arg;
    while (!atomic_load(&l->stop)) {
        char body[512];
        snprintf(
            body, sizeof(body),
            "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000051\",\"time\":"
            "1700000001,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"live-%d\"}}]}]}",
            l->sent);
        struct h_resp r;
        h_post_signed(&r, l->s, APP, SECRET, body, strlen(body));
        l->sent++;
        l->ok += r.status == 200;
        h_resp_free(&r);
    }
    return NULL;
}

/* A stored event of the tenant, received at the SQL timestamptz `at`, with
 * its delivery and key. */
static void put_at(struct h_db *db, const char *tenant, const char *label, const char *at)
{
    h_db_exec(db,
              "WITH t AS (SELECT t.id AS tid, a.id AS aid FROM tenants t JOIN apps a"
              "  ON a.tenant_id = t.id WHERE t.name = '%s'),"
              " d AS (INSERT INTO deliveries (app_id, received_at, status, signature, item_count,"
              "  body) SELECT aid, %s, 'accepted', 'sha256=x', 1,"
              "  '{}' FROM t RETURNING id, app_id, received_at),"
              " e AS (INSERT INTO events (app_id, tenant_id, delivery_id, object, field,"
              "  received_at, dedup_key, payload) SELECT d.app_id, t.tid, d.id, 'instagram',"
              "  'comments', d.received_at, sha256('%s'::bytea), jsonb_build_object('label', '%s')"
              "  FROM d, t RETURNING app_id, dedup_key)"
              " INSERT INTO event_keys SELECT app_id, dedup_key FROM e",
              tenant, at, label, label);
}

/* The same, days old. */
static void put(struct h_db *db, const char *tenant, const char *label, int days)
{
    char at[64];
    snprintf(at, sizeof(at), "now() - make_interval(days => %d)", days);
    put_at(db, tenant, label, at);
}

static long long has_event(struct h_db *db, const char *label)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload->>'label' = '%s'", label);
}

static long long has_key(struct h_db *db, const char *label)
{
    return h_db_int(db, "SELECT count(*) FROM event_keys WHERE dedup_key = sha256('%s'::bytea)",
                    label);
}

static char *month_of(struct h_db *db, int days)
{
    return h_db_text(db,
                     "SELECT 'events_p' || to_char((now() - make_interval(days => %d))"
                     " AT TIME ZONE 'UTC', 'YYYY_MM')",
                     days);
}

static long long exists(struct h_db *db, const char *rel)
{
    return h_db_int(db, "SELECT (to_regclass('%s') IS NOT NULL)::int", rel);
}

static int retention(struct h_db *db, const char *arg, char **out)
{
    const char *argv[] = {"retention", "--older-than", "90d", arg, NULL};
    return h_run(db, argv, NULL, NULL, out);
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "retention");
    h_setup_app(&db, "acme", APP, "token", SECRET);
    h_setup_app(&db, "brief", "5550052", "token", "brief-secret-0123456789");
    h_setup_app(&db, "lasting", "5550053", "token", "lasting-secret-0123456789");

    struct h_server s;
    h_server_start(&s, &db, NULL);

    /* 1. The tenant API. */
    long long brief = h_db_int(&db, "SELECT id FROM tenants WHERE name = 'brief'");
    long long lasting = h_db_int(&db, "SELECT id FROM tenants WHERE name = 'lasting'");
    char path[128], key[64];
    struct h_resp r;
    snprintf(path, sizeof(path), "/v1/tenants/%lld", brief);
    h_api(&r, &s, H_ADMIN_TOKEN, "PATCH", path, "{\"retention_days\":30}");
    tap_is_int(r.status, 200, "the operator sets a tenant's retention");
    tap_contains(r.body, "\"retention_days\": 30", "and reads it back");
    h_resp_free(&r);
    h_api(&r, &s, H_ADMIN_TOKEN, "PATCH", path, "{\"retention_days\":0}");
    tap_is_int(r.status, 422, "a retention of 0 days is refused");
    h_resp_free(&r);
    h_api(&r, &s, H_ADMIN_TOKEN, "PATCH", path, "{\"retention_days\":\"30\"}");
    tap_is_int(r.status, 422, "a retention given as a string is refused");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/%lld", lasting);
    h_api(&r, &s, H_ADMIN_TOKEN, "PATCH", path, "{\"retention_days\":null}");
    tap_contains(r.body, "\"retention_days\": null", "null means the operator's default");
    h_resp_free(&r);
    h_api(&r, &s, H_ADMIN_TOKEN, "PATCH", path, "{\"retention_days\":400}");
    tap_is_int(r.status, 200, "a longer retention for another tenant");
    h_resp_free(&r);
    long long other = h_api_tenant(&s, "outsider", key);
    (void)other;
    snprintf(path, sizeof(path), "/v1/tenants/%lld", lasting);
    h_api(&r, &s, key, "GET", path, NULL);
    tap_is_int(r.status, 404, "a tenant key cannot read another tenant");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tenants/%lld", other);
    h_api(&r, &s, key, "GET", path, NULL);
    tap_ok(r.status == 200 && strstr(r.body, "\"retention_days\": null") != NULL,
           "a tenant key reads its own tenant with its retention");
    h_resp_free(&r);
    h_api(&r, &s, key, "PATCH", path, "{\"retention_days\":5000}");
    tap_is_int(r.status, 404, "but cannot change it");
    h_resp_free(&r);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM tenants WHERE retention_days IS NOT NULL"), 2,
               "only the operator's changes were stored");

    /* 2. Data: month A (200 days) only default and short tenants; month B
     * (150 days) also the long tenant; recent (45 days) all three. */
    put(&db, "acme", "a-200", 200);
    put(&db, "brief", "b-200", 200);
    put(&db, "acme", "a-150", 150);
    put(&db, "lasting", "l-150", 150);
    put(&db, "lasting", "l-500", 500);
    put(&db, "acme", "a-45", 45);
    put(&db, "brief", "b-45", 45);
    put(&db, "brief", "b-10", 10);
    put(&db, "lasting", "l-45", 45);
    /* Just inside the default retention, in the month that holds its cutoff
     * (halfway to that month's end at most): that month must stay. */
    put_at(&db, "acme", "a-edge",
           "now() - interval '90 days' + least(interval '1 hour',"
           " ((date_trunc('month', (now() - interval '90 days') AT TIME ZONE 'UTC')"
           " + interval '1 month') AT TIME ZONE 'UTC' - (now() - interval '90 days')) / 2)");
    h_db_exec(&db, "SELECT hubbub_partitions_ensure(3)"); /* the old months, out of DEFAULT */
    char *month_a = month_of(&db, 200), *month_b = month_of(&db, 150);
    char *month_edge = h_db_text(&db, "SELECT 'events_p' || to_char((SELECT received_at FROM"
                                      " events WHERE payload->>'label' = 'a-edge') AT TIME ZONE"
                                      " 'UTC', 'YYYY_MM')");
    char *deliv_a = h_db_text(&db, "SELECT replace('%s', 'events', 'deliveries')", month_a);
    tap_ok(exists(&db, month_a) && exists(&db, month_b) && exists(&db, deliv_a),
           "the old months have partitions");
    long long events0 = h_db_int(&db, "SELECT count(*) FROM events");
    long long keys0 = h_db_int(&db, "SELECT count(*) FROM event_keys");
    long long deliveries0 = h_db_int(&db, "SELECT count(*) FROM deliveries");

    /* 3. Dry run. */
    char *out = NULL;
    tap_is_int(retention(&db, "--dry-run", &out), 0, "a dry run succeeds");
    tap_contains(out, "would drop month", "and says which months it would drop");
    tap_contains(out, "still keeps events there", "and which it keeps for a longer retention");
    free(out);
    tap_ok(h_db_int(&db, "SELECT count(*) FROM events") == events0 &&
               h_db_int(&db, "SELECT count(*) FROM event_keys") == keys0 &&
               h_db_int(&db, "SELECT count(*) FROM deliveries") == deliveries0 &&
               exists(&db, month_a),
           "a dry run changes nothing");

    /* 4. The real run, while the server ingests. */
    struct load l = {.s = &s};
    atomic_init(&l.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, ingest, &l);
    h_sleep_ms(200);
    int rc = retention(&db, NULL, &out);
    h_sleep_ms(200);
    atomic_store(&l.stop, true);
    pthread_join(t, NULL);
    tap_is_int(rc, 0, "retention succeeds");
    tap_contains(out, "dropped month", "and reports the months it dropped");
    tap_contains(out, "tenant brief (30 days): deleted", "and the rows it deleted");
    for (char *line = out, *nl; line != NULL && *line != '\0'; line = nl != NULL ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        tap_diag("%.*s", nl != NULL ? (int)(nl - line) : (int)strlen(line), line);
    }
    free(out);
    tap_ok(!exists(&db, month_a) && !exists(&db, deliv_a),
           "month A's partitions of events and deliveries are gone");
    tap_ok(exists(&db, month_b), "month B is kept for the longer retention");
    tap_ok(!has_event(&db, "a-200") && !has_key(&db, "a-200") && !has_event(&db, "b-200") &&
               !has_key(&db, "b-200"),
           "month A's events went with their dedup keys");
    tap_ok(has_event(&db, "l-150") && has_key(&db, "l-150"),
           "the long-retention tenant keeps its 150-day-old event and key");
    tap_ok(!has_event(&db, "a-150") && !has_key(&db, "a-150"),
           "a default tenant's event in the kept month is deleted, with its key");
    tap_ok(!has_event(&db, "l-500"), "an event older than even the long retention is deleted");
    tap_ok(!has_event(&db, "b-45") && !has_key(&db, "b-45"),
           "the short-retention tenant loses its 45-day-old event and key");
    tap_ok(has_event(&db, "b-10"), "but keeps its 10-day-old one");
    tap_ok(has_event(&db, "a-45") && has_event(&db, "l-45"),
           "events newer than their tenant's retention stay");
    tap_ok(has_event(&db, "a-edge") && has_key(&db, "a-edge") && exists(&db, month_edge),
           "the month holding the cutoff stays, with an event just inside the retention");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries d JOIN apps a ON a.id = d.app_id"
                             " WHERE a.meta_app_id = '5550052'"
                             "  AND d.received_at < now() - interval '30 days'"),
               0, "the short-retention tenant's old deliveries are deleted too");
    tap_ok(l.sent > 0 && l.ok == l.sent, "every delivery sent meanwhile got 200 (%d of %d)", l.ok,
           l.sent);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload::text LIKE '%%live-%%'"),
               l.ok, "and every one of them is stored");
    char *cur = month_of(&db, 0);
    tap_ok(exists(&db, cur), "the current month is never dropped");
    free(cur);

    /* 5. Again: nothing left to do. */
    tap_is_int(retention(&db, NULL, &out), 0, "a second run succeeds");
    tap_contains(out, "0 events and 0 deliveries deleted", "and deletes nothing more");
    free(out);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    free(month_a);
    free(month_b);
    free(month_edge);
    free(deliv_a);
    h_db_drop(&db);
    return tap_done();
}
