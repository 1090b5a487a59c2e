/*
 * t_replay.c - hubbub replay splits stored deliveries again: a rejected
 * delivery whose body splits now becomes accepted with its events (routed,
 * linked to it, at its received_at); items already stored are not stored
 * again, so a second run stores nothing; --app, --since, --until, --status,
 * --delivery and --dry-run select and change what they say. A batch stays
 * within the writers' byte cap (a bigger delivery is a batch of its own), and
 * a delivery the database refuses is reported and skipped while the rest are
 * stored.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP "5550061"
#define SECRET "replay-secret-0123456789"
#define OTHER_APP "5550062"
#define BULKY_APP "5550063"
#define POISON_APP "5550064"

static char *body_of(const char *entry, const char *id)
{
    char *b = malloc(512);
    snprintf(b, 512,
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"%s\",\"time\":1700000001,"
             "\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"%s-a\"}},"
             "{\"field\":\"comments\",\"value\":{\"id\":\"%s-b\"}}]}]}",
             entry, id, id);
    return b;
}

/* A delivery stored rejected (as an older hubbub would have), days old. */
static long long put_rejected(struct h_db *db, const char *app, const char *body, int days)
{
    return h_db_int(db,
                    "INSERT INTO deliveries (app_id, received_at, status, reject_reason,"
                    " signature, item_count, body) SELECT id, now() - make_interval(days => %d),"
                    " 'rejected', 'not a Meta webhook payload', 'sha256=x', 0,"
                    " convert_to('%s', 'UTF8') FROM apps WHERE meta_app_id = '%s' RETURNING id",
                    days, body, app);
}

static int replay(struct h_db *db, const char *const *args, char **out)
{
    const char *argv[16] = {"replay"};
    int n = 1;
    for (; args[n - 1] != NULL && n < 15; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    return h_run(db, argv, NULL, NULL, out);
}

static long long events_like(struct h_db *db, const char *id)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload::text LIKE '%%\"%s-_\"%%'", id);
}

int main(void)
{
    struct h_db db;
    h_db_create(&db, "replay");
    h_setup_app(&db, "acme", APP, "token", SECRET);
    h_setup_app(&db, "globex", OTHER_APP, "token", "other-secret-0123456789");
    h_setup_app(&db, "bulky", BULKY_APP, "token", "bulky-secret-0123456789");
    h_setup_app(&db, "poison", POISON_APP, "token", "poison-secret-0123456789");
    struct h_server s;
    h_server_start(&s, &db, NULL);

    char *live = body_of("17841400000000061", "live");
    struct h_resp r;
    h_post_signed(&r, &s, APP, SECRET, live, strlen(live));
    tap_is_int(r.status, 200, "a live delivery is stored");
    h_resp_free(&r);

    char *fixed = body_of("17841400000000061", "rp1");
    long long d_fixed = put_rejected(&db, APP, fixed, 1);
    long long d_bad = put_rejected(&db, APP, "not json", 1);
    long long d_live = put_rejected(&db, APP, live, 1);
    char *old = body_of("17841400000000061", "rp4");
    long long d_old = put_rejected(&db, APP, old, 10);
    char *glob = body_of("17841400000000062", "rp3");
    long long d_glob = put_rejected(&db, OTHER_APP, glob, 1);
    (void)d_bad;
    (void)d_old;
    char *since = h_db_text(&db, "SELECT (now() - interval '5 days')::text");
    long long events0 = h_db_int(&db, "SELECT count(*) FROM events");

    /* Dry run. */
    char *out = NULL;
    const char *dry[] = {"--status", "all", "--dry-run", NULL};
    tap_is_int(replay(&db, dry, &out), 0, "a dry run succeeds");
    tap_contains(out, "dry run, nothing changed: 6 deliveries read", "and reads every delivery");
    free(out);
    tap_ok(h_db_int(&db, "SELECT count(*) FROM events") == events0 &&
               h_db_int(&db, "SELECT count(*) FROM deliveries WHERE status = 'rejected'") == 5,
           "a dry run changes nothing");

    /* --app and --since: the recent rejected deliveries of acme. */
    const char *recent[] = {"--app", APP, "--since", since, NULL};
    tap_is_int(replay(&db, recent, &out), 0, "replay of acme's recent rejected deliveries");
    tap_contains(out, "3 deliveries read (2 rejected ones now accepted, 1 still rejected)",
                 "reads three, of which two split now");
    tap_contains(out, "events: 2 new, 2 already stored",
                 "stores the two new items; the live delivery's were stored already");
    free(out);
    tap_is_int(events_like(&db, "rp1"), 2, "the fixed delivery's two items are events");
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM events e JOIN deliveries d ON d.id = e.delivery_id"
                        " JOIN tenants t ON t.id = e.tenant_id WHERE t.name = 'acme'"
                        " AND e.received_at = d.received_at AND d.id = %lld",
                        d_fixed),
               2, "routed to acme, linked to their delivery, at its received_at");
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM deliveries WHERE id = %lld AND status = 'accepted'"
                        " AND reject_reason IS NULL AND item_count = 2",
                        d_fixed),
               1, "the delivery is accepted now, with its item count");
    tap_is_int(events_like(&db, "live"), 2, "the live items are still stored once");
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM deliveries WHERE id = %lld AND status ="
                        " 'accepted'",
                        d_live),
               1, "the rejected copy of the live delivery is accepted too");
    tap_is_int(events_like(&db, "rp4") + events_like(&db, "rp3"), 0,
               "older deliveries and other apps' are left alone");

    tap_is_int(replay(&db, recent, &out), 0, "the same replay again");
    tap_contains(out, "1 deliveries read (0 rejected ones now accepted, 1 still rejected)",
                 "finds only the one that still does not split");
    tap_contains(out, "events: 0 new", "and stores nothing");
    free(out);

    /* --until; --delivery. */
    const char *older[] = {"--app", APP, "--until", since, NULL};
    tap_is_int(replay(&db, older, &out), 0, "replay of acme's older deliveries");
    tap_contains(out, "1 deliveries read", "reads the one older delivery");
    tap_contains(out, "events: 2 new", "and stores its items");
    free(out);
    char id[32];
    snprintf(id, sizeof(id), "%lld", d_glob);
    const char *one[] = {"--delivery", id, NULL};
    tap_is_int(replay(&db, one, &out), 0, "replay of one delivery by id");
    tap_contains(out, "1 deliveries read", "reads that delivery only");
    free(out);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events e JOIN tenants t ON t.id = e.tenant_id"
                             " WHERE t.name = 'globex' AND e.payload::text LIKE '%%rp3%%'"),
               2, "its items go to the other app's tenant");

    /* Everything, twice. */
    const char *all[] = {"--status", "all", NULL};
    long long before = h_db_int(&db, "SELECT count(*) FROM events");
    tap_is_int(replay(&db, all, &out), 0, "replay of every delivery");
    tap_contains(out, "6 deliveries read", "reads all six");
    tap_contains(out, "events: 0 new, 10 already stored", "finds every item stored already");
    free(out);
    tap_is_int(replay(&db, all, &out), 0, "and again");
    tap_contains(out, "events: 0 new", "stores nothing the second time either");
    free(out);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events"), before,
               "the event count is unchanged");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events GROUP BY app_id, dedup_key"
                             " ORDER BY 1 DESC LIMIT 1"),
               1, "no item is stored twice");

    const char *bad[] = {"--status", "maybe", NULL};
    tap_is_int(replay(&db, bad, NULL), 2, "an unknown --status is a usage error");

    /* Big deliveries: 40 MiB, then three of 12 MiB (stored rejected, they
     * stay so). The writers' cap is 32 MiB: batches of 1, 2 and 1. */
    static const int mib[] = {40, 12, 12, 12};
    for (size_t i = 0; i < sizeof(mib) / sizeof(mib[0]); i++)
        h_db_exec(&db,
                  "INSERT INTO deliveries (app_id, received_at, status, reject_reason, signature,"
                  " item_count, body) SELECT id, now() - interval '1 hour', 'rejected', 'big',"
                  " 'sha256=x', 0, convert_to(repeat('x', %d * 1024 * 1024), 'UTF8') FROM apps"
                  " WHERE meta_app_id = '" BULKY_APP "'",
                  mib[i]);
    const char *bulky[] = {"--app", BULKY_APP, NULL};
    tap_is_int(replay(&db, bulky, &out), 0, "replay of 76 MiB of deliveries succeeds");
    tap_contains(out, "4 deliveries read", "reads all four");
    tap_contains(out, "; 3 transactions", "in batches within 32 MiB, the biggest on its own");
    free(out);

    /* A delivery whose events the database refuses (a trigger stands in for
     * any refusal) is skipped, and the others of its batch are stored. */
    h_db_exec(&db, "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
                   " BEGIN IF NEW.payload::text LIKE '%%poison%%' THEN"
                   "  RAISE EXCEPTION 'poisoned item' USING ERRCODE = '22023'; END IF;"
                   " RETURN NEW; END $$");
    h_db_exec(&db, "CREATE TRIGGER refuse_poison BEFORE INSERT ON events"
                   " FOR EACH ROW EXECUTE FUNCTION refuse_poison()");
    char *p1 = body_of("17841400000000064", "pz1");
    char *p2 = body_of("17841400000000064", "poison");
    char *p3 = body_of("17841400000000064", "pz3");
    put_rejected(&db, POISON_APP, p1, 1);
    long long d_poison = put_rejected(&db, POISON_APP, p2, 1);
    put_rejected(&db, POISON_APP, p3, 1);
    const char *poison[] = {"--app", POISON_APP, NULL};
    tap_is_int(replay(&db, poison, &out), 0, "a replay with a refused delivery succeeds");
    char want[128];
    snprintf(want, sizeof(want), "delivery %lld skipped: the database refused its events",
             d_poison);
    tap_contains(out, want, "and names the delivery it skipped");
    tap_contains(out, "SQLSTATE 22023: poisoned item", "with PostgreSQL's reason");
    tap_contains(out, "3 deliveries read (2 rejected ones now accepted",
                 "it read the three deliveries");
    tap_contains(out, "events: 4 new, 0 already stored; 1 deliveries refused",
                 "stored the others' events and counts the refused one");
    free(out);
    tap_is_int(events_like(&db, "pz1") + events_like(&db, "pz3"), 4,
               "the other deliveries' events are stored");
    tap_is_int(h_db_int(&db,
                        "SELECT count(*) FROM deliveries WHERE id = %lld AND status = 'rejected'",
                        d_poison),
               1, "the refused delivery stays as it was");
    free(p1);
    free(p2);
    free(p3);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    free(since);
    free(live);
    free(fixed);
    free(old);
    free(glob);
    h_db_drop(&db);
    return tap_done();
}
