/*
 * t_overload.c - HUBBUB_INGEST_QUEUE_LIMIT: while commits cannot finish
 * (another session holds a lock the commit needs), deliveries queue up to the
 * limit, counted in bytes; the next one gets 503 "overloaded" with
 * Retry-After at once (not after the statement timeout), is counted under
 * outcome="overloaded" and is not stored; a small one still fits; and every
 * delivery that got 200 is stored once the lock goes.
 */
#include <curl/curl.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "8880001"
#define SECRET "overload-secret-0123456789"
#define TEXT_LEN 250000 /* two such deliveries fit under 1 MiB, three do not */

static struct h_db db;
static struct h_server srv;

struct post {
    pthread_t thread;
    char *body;
    size_t len;
    struct h_resp resp;
};

static char *delivery(int n, size_t text_len, size_t *len)
{
    char *text = malloc(text_len + 1);
    memset(text, 'a' + n % 26, text_len);
    text[text_len] = '\0';
    size_t cap = text_len + 512;
    char *body = malloc(cap);
    int k = snprintf(body, cap,
                     "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\","
                     "\"time\":1700000000,\"changes\":[{\"field\":\"comments\",\"value\":"
                     "{\"id\":\"OV%d\",\"text\":\"%s\",\"from\":{\"id\":\"U%d\"},"
                     "\"media\":{\"id\":\"M1\"}}}]}]}",
                     n, text, n);
    free(text);
    *len = (size_t)k;
    return body;
}

static void *post_main(void *arg)
{
    struct post *p = arg;
    h_post_signed(&p->resp, &srv, APP, SECRET, p->body, p->len);
    return NULL;
}

static void post_start(struct post *p, int n, size_t text_len)
{
    p->body = delivery(n, text_len, &p->len);
    if (pthread_create(&p->thread, NULL, post_main, p) != 0)
        tap_bail("pthread_create failed");
}

static double metric(const char *series)
{
    struct h_resp r;
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", "/metrics", NULL);
    if (r.status != 200)
        tap_bail("GET /metrics: %ld", r.status);
    double v = NAN;
    size_t n = strlen(series);
    for (const char *p = r.body; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    h_resp_free(&r);
    return v;
}

static bool wait_metric(const char *series, double want)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    double v = NAN;
    while (h_now_ms() < deadline) {
        v = metric(series);
        if (v == want)
            return true;
        h_sleep_ms(10);
    }
    tap_diag("%s is %g, not %g", series, v, want);
    return false;
}

/* Polls /readyz until it answers want; *body gets its last answer. */
static bool wait_readyz(long want, char **body)
{
    char url[128];
    snprintf(url, sizeof(url), "%s/readyz", srv.base);
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    for (;;) {
        struct h_resp r;
        h_http(&r, "GET", url, NULL, NULL, 0);
        long st = r.status;
        free(*body);
        *body = r.body != NULL ? strdup(r.body) : strdup("");
        h_resp_free(&r);
        if (st == want)
            return true;
        if (h_now_ms() > deadline) {
            tap_diag("/readyz: %ld %s", st, *body);
            return false;
        }
        h_sleep_ms(50);
    }
}

#define OVERLOADED "hubbub_webhook_deliveries_total{app=\"" APP "\",outcome=\"overloaded\"}"
#define QUEUED "hubbub_ingest_queue_deliveries"

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h_db_create(&db, "overload");
    h_setup_app(&db, "acme", APP, "vt", SECRET);
    const char *env[] = {"HUBBUB_INGEST_QUEUE_LIMIT=1MiB", "HUBBUB_INGEST_WRITERS=1",
                         "HUBBUB_INGEST_STATEMENT_TIMEOUT=60s", NULL};
    h_server_start(&srv, &db, env);

    /* The app is looked up once, so that nothing below waits on it. */
    size_t len;
    char *body = delivery(100, 10, &len);
    struct h_resp r;
    h_post_signed(&r, &srv, APP, SECRET, body, len);
    tap_is_int(r.status, 200, "a delivery is stored while nothing blocks");
    h_resp_free(&r);
    free(body);
    tap_is_int((long long)metric(OVERLOADED), 0, "nothing counted as overloaded yet");

    /* Another session holds events: the writer's commit waits for it. */
    PGconn *locker = PQconnectdb(db.url);
    if (PQstatus(locker) != CONNECTION_OK)
        tap_bail("second connection: %s", PQerrorMessage(locker));
    PQclear(PQexec(locker, "BEGIN"));
    PGresult *lr = PQexec(locker, "LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    if (PQresultStatus(lr) != PGRES_COMMAND_OK)
        tap_bail("lock: %s", PQerrorMessage(locker));
    PQclear(lr);

    struct post big[3], small;
    post_start(&big[0], 0, TEXT_LEN);
    tap_ok(h_wait_sql(&db, "1", H_WAIT_MS,
                      "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                      " AND wait_event_type = 'Lock' AND application_name <> 'hubbub probe'",
                      db.name),
           "the first big delivery's commit waits for the lock");
    post_start(&big[1], 1, TEXT_LEN);
    tap_ok(wait_metric(QUEUED, 1), "the second queues behind it");
    post_start(&big[2], 2, TEXT_LEN);
    tap_ok(wait_metric(QUEUED, 2), "so does the third");
    double bytes = metric("hubbub_ingest_queue_bytes");
    tap_ok(bytes > 2 * TEXT_LEN && bytes <= 1024 * 1024, "the queue holds %g bytes, under 1 MiB",
           bytes);

    body = delivery(3, TEXT_LEN, &len);
    int64_t t0 = h_now_ms();
    h_post_signed(&r, &srv, APP, SECRET, body, len);
    int64_t took = h_now_ms() - t0;
    tap_is_int(r.status, 503, "the next big one, over the limit, gets 503");
    tap_ok(took < 5000, "  at once (%lld ms), not after the statement timeout", (long long)took);
    tap_contains(r.headers, "retry-after:", "  with Retry-After");
    tap_contains(r.body, "\"overloaded\"", "  and the code overloaded");
    h_resp_free(&r);
    tap_is_int((long long)metric(OVERLOADED), 1, "counted once under outcome=\"overloaded\"");

    post_start(&small, 4, 100);
    tap_ok(wait_metric(QUEUED, 3), "a small delivery still fits under the limit in bytes");

    /* Meanwhile the load balancer is told this process is not keeping up. */
    char *ready = NULL;
    tap_ok(wait_readyz(503, &ready), "/readyz gets 503 while commits do not keep up");
    tap_contains(ready, "\"ingest\"", "  naming the ingest check");
    free(ready);
    ready = NULL;

    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);
    struct post *all[] = {&big[0], &big[1], &big[2], &small};
    int ok = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        pthread_join(all[i]->thread, NULL);
        long long id = h_json_num(all[i]->resp.body, "delivery_id");
        if (all[i]->resp.status == 200 &&
            h_db_int(&db, "SELECT count(*) FROM deliveries WHERE id = %lld", id) == 1)
            ok++;
        else
            tap_diag("delivery %zu: %ld %s", i, all[i]->resp.status, all[i]->resp.body);
        h_resp_free(&all[i]->resp);
        free(all[i]->body);
    }
    tap_is_int(ok, 4, "once the lock goes, every delivery that waited gets 200 and is stored");
    tap_ok(wait_readyz(200, &ready), "and /readyz is 200 again");
    free(ready);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'OV3'"),
               0, "the refused one was not stored");
    h_post_signed(&r, &srv, APP, SECRET, body, len);
    tap_is_int(r.status, 200, "Meta's retry of it is stored");
    h_resp_free(&r);
    free(body);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE payload->'value'->>'id' = 'OV3'"),
               1, "  once");
    tap_is_int((long long)metric(OVERLOADED), 1, "and the overloaded count did not move");

    tap_is_int(h_server_stop(&srv, 15), 0, "the server stops cleanly");
    h_db_drop(&db);
    curl_global_cleanup();
    return tap_done();
}
