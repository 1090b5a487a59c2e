/*
 * t_partitions.c - events and deliveries in monthly partitions: a database
 * holding data of the 0003 schema is converted without losing a row or an
 * id; partitions exist from this month to HUBBUB_PARTITION_MONTHS_AHEAD on;
 * dedup holds across partitions; the API reads across months; the DEFAULT
 * partitions stay empty, and the server's upkeep (also with HUBBUB_WORKERS=0)
 * recreates a missing partition and empties a DEFAULT partition.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/migrate.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "5550041"
#define SECRET "partitions-secret-0123456789"

static long post(const struct h_server *s, const char *body, char **resp)
{
    struct h_resp r;
    h_post_signed(&r, s, APP, SECRET, body, strlen(body));
    long st = r.status;
    if (resp != NULL)
        *resp = r.body != NULL ? strdup(r.body) : NULL;
    h_resp_free(&r);
    return st;
}

static char *comment(const char *id)
{
    char *b = malloc(512);
    snprintf(b, 512,
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000041\",\"time\":"
             "1700000001,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"%s\"}}]}]}",
             id);
    return b;
}

/* The partition of table for the UTC month offset months from this one. */
static char *partition(struct h_db *db, const char *table, int offset)
{
    return h_db_text(db,
                     "SELECT '%s_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC')"
                     " + make_interval(months => %d), 'YYYY_MM')",
                     table, offset);
}

static long long exists(struct h_db *db, const char *rel)
{
    return h_db_int(db, "SELECT (to_regclass('%s') IS NOT NULL)::int", rel);
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "partitions");

    /* 1. A database of the 0003 schema, holding rows of several months. */
    char err[512];
    if (db_migrate_apply(db.conn, db_migrations_embedded, 3, NULL, err, sizeof(err)) != 0)
        tap_bail("migrating to 0003: %s", err);
    h_db_exec(&db, "INSERT INTO deliveries (app_id, received_at, status, signature, item_count,"
                   " body) SELECT 1, now() - make_interval(days => d), 'accepted', 'sha256=x', 1,"
                   " 'old' FROM generate_series(40, 180, 35) d");
    h_db_exec(&db, "INSERT INTO events (app_id, tenant_id, delivery_id, object, field, entry_id,"
                   " received_at, dedup_key, payload)"
                   " SELECT 1, 1, id, 'instagram', 'comments', '17841400000000041', received_at,"
                   " sha256(id::text::bytea), jsonb_build_object('old', id) FROM deliveries");
    h_db_exec(&db, "SELECT nextval('events_id_seq') FROM generate_series(1, 10)");
    long long old_events = h_db_int(&db, "SELECT count(*) FROM events");
    long long old_max = h_db_int(&db, "SELECT max(id) FROM events");
    long long seq_at = h_db_int(&db, "SELECT last_value FROM events_id_seq");
    char *old_sum = h_db_text(&db, "SELECT md5(string_agg(id || ':' || received_at || ':' ||"
                                   " payload::text, ',' ORDER BY id)) FROM events");
    tap_is_int(old_events, 5, "the 0003 schema holds five events over five months");

    h_setup_app(&db, "acme", APP, "token", SECRET); /* runs hubbub migrate: 0004 */
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM schema_migrations WHERE version = 4"), 1,
               "migrate applied 0004");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events"), old_events,
               "no event was lost in the conversion");
    char *new_sum = h_db_text(&db, "SELECT md5(string_agg(id || ':' || received_at || ':' ||"
                                   " payload::text, ',' ORDER BY id)) FROM events");
    tap_is_str(new_sum, old_sum, "ids, times and payloads are unchanged");
    free(new_sum);
    free(old_sum);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries"), old_events,
               "no delivery was lost");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM event_keys"), old_events,
               "every converted event has its dedup key");
    tap_is_int(h_db_int(&db, "SELECT count(DISTINCT tableoid) FROM events"), 5,
               "the converted events sit in five month partitions");
    tap_is_int(h_db_int(&db, "SELECT last_value FROM events_id_seq"), seq_at,
               "the id sequence kept its place");
    tap_is_int(h_db_int(&db, "SELECT (relkind = 'p')::int FROM pg_class WHERE relname = 'events'"
                             " AND relnamespace = 'public'::regnamespace") +
                   h_db_int(&db,
                            "SELECT (relkind = 'p')::int FROM pg_class WHERE relname = 'deliveries'"
                            " AND relnamespace = 'public'::regnamespace"),
               2, "events and deliveries are partitioned tables");
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM pg_indexes WHERE tablename = 'events' AND"
                        " indexname IN ('events_tenant_received', 'events_tenant_field_received',"
                        " 'events_tenant_entry_received', 'events_payload', 'events_received')"),
               5, "the event indexes of 0001 and 0002 are there");

    /* 2. Partitions from this month to three ahead (the default). */
    int have = 0;
    for (int m = 0; m <= 3; m++) {
        char *e = partition(&db, "events", m), *d = partition(&db, "deliveries", m);
        have += (int)(exists(&db, e) + exists(&db, d));
        free(e);
        free(d);
    }
    tap_is_int(have, 8, "events and deliveries have partitions for this month and three ahead");

    struct h_server s;
    const char *env[] = {"HUBBUB_WORKERS=0", "HUBBUB_PARTITION_UPKEEP_INTERVAL=200ms", NULL};
    h_server_start(&s, &db, env);

    /* 3. Dedup across partitions. */
    char *x = comment("part-X"), *y = comment("part-Y"), *resp = NULL;
    tap_is_int(post(&s, x, NULL), 200, "X is accepted");
    char *last = partition(&db, "events", -1);
    h_db_exec(&db, "UPDATE events SET received_at = received_at - interval '1 month'"
                   " WHERE payload::text LIKE '%%part-X%%'");
    char *where = h_db_text(&db, "SELECT tableoid::regclass FROM events WHERE payload::text"
                                 " LIKE '%%part-X%%'");
    tap_is_str(where, last, "X's event now sits in last month's partition");
    free(where);
    tap_is_int(post(&s, x, &resp), 200, "X delivered again gets 200");
    tap_contains(resp, "\"duplicates\":1", "and is reported a duplicate");
    free(resp);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload::text LIKE '%%part-X%%'"),
               1, "X is still one event");
    tap_is_int(post(&s, y, NULL), 200, "Y is accepted");

    /* 4. The API across months. */
    long long acme = h_db_int(&db, "SELECT id FROM tenants WHERE name = 'acme'");
    char path[256];
    struct h_resp r;
    snprintf(path, sizeof(path), "/v1/tenants/%lld/keys", acme);
    h_api(&r, &s, H_ADMIN_TOKEN, "POST", path, "{\"name\":\"t\"}");
    char *key = h_json_str(r.body, "key");
    h_resp_free(&r);
    if (key == NULL)
        tap_bail("no key for acme");
    h_api(&r, &s, key, "GET", "/v1/events?limit=2", NULL);
    tap_is_int(r.status, 200, "the tenant lists its events");
    tap_ok(r.body != NULL && strstr(r.body, "part-Y") != NULL && strstr(r.body, "part-X") != NULL,
           "the newest two are Y (this month) and X (last month)");
    char *cursor = h_json_str(r.body, "next_cursor");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events?limit=10&cursor=%s", cursor ? cursor : "");
    free(cursor);
    h_api(&r, &s, key, "GET", path, NULL);
    tap_ok(r.status == 200 && r.body != NULL && strstr(r.body, "\"old\"") != NULL,
           "the next page goes on into older months");
    h_resp_free(&r);
    long long xid = h_db_int(&db, "SELECT id FROM events WHERE payload::text LIKE '%%part-X%%'");
    snprintf(path, sizeof(path), "/v1/events/%lld", xid);
    h_api(&r, &s, key, "GET", path, NULL);
    tap_ok(r.status == 200 && r.body != NULL && strstr(r.body, "part-X") != NULL,
           "an event of last month is found by its id");
    h_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/events/%lld", xid + 1000000);
    h_api(&r, &s, key, "GET", path, NULL);
    tap_is_int(r.status, 404, "an id that does not exist is 404");
    h_resp_free(&r);
    h_api(&r, &s, H_ADMIN_TOKEN, "GET", "/v1/deliveries?limit=100", NULL);
    int n = 0;
    for (const char *p = r.body; p != NULL && (p = strstr(p, "\"received_at\"")) != NULL; p++)
        n++;
    tap_is_int(n, (int)old_events + 3, "the operator's deliveries list spans every month");
    h_resp_free(&r);
    long long new_min =
        h_db_int(&db, "SELECT min(id) FROM events WHERE payload::text LIKE '%%part-%%'");
    tap_ok(new_min > old_max, "new events get ids above the converted ones (%lld > %lld)", new_min,
           old_max);

    /* 5. The DEFAULT partitions stay empty. */
    tap_is_int(h_db_int(&db, "SELECT (SELECT count(*) FROM events_default) +"
                             " (SELECT count(*) FROM deliveries_default)"),
               0, "nothing landed in a DEFAULT partition");

    /* 6. Upkeep, run by the server with no job workers. */
    char *ahead = partition(&db, "events", 2), *ahead_d = partition(&db, "deliveries", 2);
    h_db_exec(&db, "DROP TABLE %s", ahead);
    h_db_exec(&db, "DROP TABLE %s", ahead_d);
    tap_ok(h_wait_sql(&db, "1", 10000,
                      "SELECT ((to_regclass('%s') IS NOT NULL) AND (to_regclass('%s') IS NOT NULL))"
                      "::int",
                      ahead, ahead_d),
           "the server recreates a missing partition (HUBBUB_WORKERS=0)");
    free(ahead);
    free(ahead_d);
    char *far = partition(&db, "events", 9);
    h_db_exec(&db,
              "INSERT INTO events (app_id, tenant_id, delivery_id, object, field, received_at,"
              " dedup_key, payload) VALUES (1, %lld, 0, 'instagram', 'comments',"
              " now() + interval '9 months', '\\x01', '{\"far\":1}')",
              acme);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events_default"), 1,
               "a row of a month without a partition lands in the DEFAULT partition");
    tap_ok(h_wait_sql(&db, "0", 10000, "SELECT count(*) FROM events_default"),
           "upkeep moves it out of the DEFAULT partition");
    where = h_db_text(&db, "SELECT tableoid::regclass FROM events WHERE payload ? 'far'");
    tap_is_str(where, far, "into the partition it created for that month");
    free(where);
    free(far);
    char *log = h_server_log(&s);
    tap_ok(strstr(log, "partitions created") != NULL, "the server logs what upkeep created");
    free(log);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    free(last);
    free(key);
    free(x);
    free(y);
    h_db_drop(&db);
    return tap_done();
}
