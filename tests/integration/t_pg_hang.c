/*
 * t_pg_hang.c - PostgreSQL that answers nothing without dropping the
 * connection (here: a lock on events that the commit must wait for). A
 * delivery must get 503 within HUBBUB_INGEST_STATEMENT_TIMEOUT, not hang,
 * nothing may be stored as rejected for it, and once the lock goes the same
 * delivery is stored once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP "4242424242"
#define SECRET "hang-secret-0123456789"

int main(void)
{
    struct h_db db;
    struct h_server s;
    h_db_create(&db, "pg_hang");
    h_setup_app(&db, "acme", APP, "vt", SECRET);
    const char *env[] = {"HUBBUB_INGEST_STATEMENT_TIMEOUT=500ms", "HUBBUB_DB_RETRY_MAX=100ms",
                         NULL};
    h_server_start(&s, &db, env);

    size_t len;
    char *body = h_comment_delivery(1, &len);
    struct h_resp r;
    h_post_signed(&r, &s, APP, SECRET, body, len);
    tap_is_int(r.status, 200, "a delivery is stored while nothing blocks");
    h_resp_free(&r);

    /* Another session holds the table: the commit cannot finish. */
    h_db_exec(&db, "BEGIN");
    h_db_exec(&db, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    free(body);
    body = h_comment_delivery(2, &len);
    int64_t t0 = h_now_ms();
    h_post_signed(&r, &s, APP, SECRET, body, len);
    int64_t took = h_now_ms() - t0;
    tap_is_int(r.status, 503, "with events locked, the delivery gets 503");
    tap_ok(took < 3000, "  after the statement timeout (%lld ms), instead of hanging",
           (long long)took);
    tap_contains(r.headers, "retry-after:", "  with Retry-After");
    h_resp_free(&r);
    h_db_exec(&db, "ROLLBACK");

    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries WHERE status = 'rejected'"), 0,
               "a timed-out commit is not stored as a rejected delivery");

    /* Meta retries: the writer reconnects and the retry is stored once. */
    long status = 0;
    int64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline) {
        h_post_signed(&r, &s, APP, SECRET, body, len);
        status = r.status;
        h_resp_free(&r);
        if (status == 200)
            break;
        h_sleep_ms(50);
    }
    tap_is_int(status, 200, "once the lock is gone the retried delivery gets 200");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'C2'"), 1,
               "  and is stored once");
    free(body);

    tap_is_int(h_server_stop(&s, 15), 0, "the server stops cleanly");
    h_db_drop(&db);
    return tap_done();
}
