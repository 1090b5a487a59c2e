/*
 * t_retention.c - hubbub retention --older-than 90d: whole months older than
 * the default go (partitions of events and deliveries, and the events' dedup
 * keys) unless a tenant with a longer retention still keeps events there; a
 * tenant with a shorter retention loses its older events row by row; newer
 * events stay; --dry-run changes nothing; a server ingesting meanwhile loses
 * nothing. The tenant API sets and shows retention_days (operator only).
 * A run stopped between detaching a month and dropping it is finished by the
 * next run, leaving no event without its key and no key without its event;
 * waiting for the tables' lock never holds a delivery long.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hb.h"
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

static long long keyless_events(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM event_keys k"
                        " WHERE k.app_id = e.app_id AND k.dedup_key = e.dedup_key)");
}

static long long eventless_keys(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM event_keys k WHERE NOT EXISTS (SELECT 1 FROM events e"
                        " WHERE e.app_id = k.app_id AND e.dedup_key = k.dedup_key)");
}

static char *old_body(const char *id, size_t *len)
{
    char *body = malloc(512);
    snprintf(body, 512,
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000051\",\"time\":"
             "1700000001,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"%s\"}}]}]}",
             id);
    *len = strlen(body);
    return body;
}

struct bg_run {
    struct h_db *db;
    int rc;
    char *out;
    int64_t ms;
};

static void *retention_bg(void *arg)
{
    struct bg_run *b = arg;
    const char *argv[] = {"retention", "--older-than", "90d", NULL};
    int64_t t0 = h_now_ms();
    b->rc = h_run(b->db, argv, NULL, NULL, &b->out);
    b->ms = h_now_ms() - t0;
    return NULL;
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
    /* What it would do is what the real run below does: the rows of a month
     * it would drop are not counted again as rows a tenant's retention
     * deletes. */
    const char *sum = strstr(out, "dry run, nothing changed: ");
    char *dry_sum = xstrdup(sum != NULL ? sum + strlen("dry run, nothing changed: ") : "");
    free(out);
    tap_ok(h_db_int(&db, "SELECT count(*) FROM events") == events0 &&
               h_db_int(&db, "SELECT count(*) FROM event_keys") == keys0 &&
               h_db_int(&db, "SELECT count(*) FROM deliveries") == deliveries0 &&
               exists(&db, month_a),
           "a dry run changes nothing");

    /* One run at a time: a run finding another's lock changes nothing. */
    h_db_exec(&db, "SELECT pg_advisory_lock(1751343730)");
    tap_ok(retention(&db, NULL, &out) != 0, "a run while another runs exits non-zero");
    tap_contains(out, "another retention run is in progress", "and says why");
    free(out);
    h_db_exec(&db, "SELECT pg_advisory_unlock(1751343730)");
    tap_ok(exists(&db, month_a) && h_db_int(&db, "SELECT count(*) FROM events") == events0,
           "and changed nothing");

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
    sum = strstr(out, "done: ");
    tap_is_str(sum != NULL ? sum + strlen("done: ") : "", dry_sum,
               "the dry run's counts were the real run's");
    free(dry_sum);
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

    /* 6. A run stopped after detaching a month: the month's partitions are
     * out of the parents, their events still with their keys. One event came
     * in through the webhook (its key is the real one); then, before the run
     * resumes, a late row of that month (a replay that read its delivery
     * before the detach) lands in DEFAULT. */
    size_t blen;
    char *body = old_body("old-1", &blen);
    h_post_signed(&r, &s, APP, SECRET, body, blen);
    tap_is_int(r.status, 200, "an item is stored");
    h_resp_free(&r);
    h_db_exec(&db, "UPDATE deliveries SET received_at = now() - interval '200 days' WHERE id ="
                   " (SELECT delivery_id FROM events WHERE payload::text LIKE '%%old-1%%')");
    h_db_exec(&db, "UPDATE events SET received_at = now() - interval '200 days'"
                   " WHERE payload::text LIKE '%%old-1%%'");
    put(&db, "acme", "c-200", 200);
    h_db_exec(&db, "SELECT hubbub_partitions_ensure(3)");
    tap_ok(exists(&db, month_a) && has_key(&db, "c-200") &&
               h_db_int(&db, "SELECT count(*) FROM %s WHERE payload::text LIKE '%%old-1%%'",
                        month_a) == 1,
           "month A is back, with the item, 200 days old");
    h_db_exec(&db, "ALTER TABLE events DETACH PARTITION %s", month_a);
    h_db_exec(&db, "ALTER TABLE deliveries DETACH PARTITION %s", deliv_a);
    put(&db, "acme", "late-200", 200);
    tap_is_int(retention(&db, "--dry-run", &out), 0, "a dry run with a detached month succeeds");
    tap_contains(out, "would finish dropping month", "and says it would finish the drop");
    free(out);
    tap_ok(exists(&db, month_a) && exists(&db, deliv_a), "and leaves it");
    tap_is_int(retention(&db, NULL, &out), 0, "the next run succeeds");
    tap_contains(out, "finished dropping month", "and says it finished the drop");
    free(out);
    tap_ok(!exists(&db, month_a) && !exists(&db, deliv_a), "the detached partitions are gone");
    tap_ok(!has_key(&db, "c-200") && !has_event(&db, "late-200") && !has_key(&db, "late-200"),
           "with their events' keys, and the late row went with its key");
    tap_is_int(keyless_events(&db), 0, "no event is left without its key");
    tap_is_int(eventless_keys(&db), 0, "no key is left without its event");
    h_post_signed(&r, &s, APP, SECRET, body, blen);
    tap_is_int(r.status, 200, "Meta sends the dropped item again");
    h_resp_free(&r);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload::text LIKE '%%old-1%%'"
                             " AND received_at > now() - interval '1 hour'"),
               1, "and it is stored again, not taken for a duplicate");
    tap_ok(keyless_events(&db) == 0 && eventless_keys(&db) == 0, "with its key");
    free(body);

    /* 7. A reader holds the tables: the run waits for their lock in short
     * tries, and a delivery meanwhile is never held long behind it. */
    put(&db, "acme", "w-300", 300);
    h_db_exec(&db, "SELECT hubbub_partitions_ensure(3)");
    char *month_w = month_of(&db, 300);
    tap_ok(exists(&db, month_w), "a month to drop, 300 days old");
    PGconn *reader = PQconnectdb(db.url);
    PGresult *pr = PQexec(reader, "BEGIN; SELECT count(*) FROM events");
    if (PQresultStatus(pr) != PGRES_TUPLES_OK)
        tap_bail("reader: %s", PQerrorMessage(reader));
    PQclear(pr);
    struct bg_run bg = {.db = &db};
    pthread_create(&t, NULL, retention_bg, &bg);
    h_sleep_ms(300);
    int64_t worst = 0, until = h_now_ms() + 2500;
    int sent = 0, ok = 0;
    while (h_now_ms() < until) {
        char id[32];
        snprintf(id, sizeof(id), "wait-%d", sent);
        body = old_body(id, &blen);
        int64_t t0 = h_now_ms();
        h_post_signed(&r, &s, APP, SECRET, body, blen);
        int64_t ms = h_now_ms() - t0;
        worst = ms > worst ? ms : worst;
        sent++;
        ok += r.status == 200;
        h_resp_free(&r);
        free(body);
    }
    PQclear(PQexec(reader, "COMMIT"));
    PQfinish(reader);
    pthread_join(t, NULL);
    tap_ok(sent > 0 && ok == sent, "deliveries while the run waits get 200 (%d of %d)", ok, sent);
    tap_ok(worst < 2000, "none waits long behind the run (slowest %lld ms)", (long long)worst);
    tap_ok(bg.ms > 2500, "the run did wait for the reader (%lld ms)", (long long)bg.ms);
    tap_is_int(bg.rc, 0, "and then succeeds");
    tap_contains(bg.out, "dropped month", "and drops the month");
    free(bg.out);
    tap_ok(!exists(&db, month_w) && !has_key(&db, "w-300"), "with its keys");
    free(month_w);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    free(month_a);
    free(month_b);
    free(month_edge);
    free(deliv_a);
    h_db_drop(&db);
    return tap_done();
}
