/*
 * t_pg_outage.c - PostgreSQL going away under a running hubbub.
 *
 * The test runs its own cluster (ops/pg-local under /tmp), so stopping it
 * harms no other test. Three clients post distinct signed deliveries without
 * pause while the cluster is stopped twice: a fast shutdown, then an
 * immediate one (as after a crash), each for about a second. Every answer
 * must be 200 or 503; nothing sent and answered while the database is down
 * may get 200; deliveries get 200 again within seconds of PostgreSQL coming
 * back, without restarting hubbub; and every delivery that ever got 200 is
 * in the database at the end. While the database is down, the handshake of
 * an app already in the cache keeps working and an unknown app gets 503 (we
 * cannot know that it does not exist), not 404.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#ifndef HB_SOURCE_DIR
#define HB_SOURCE_DIR "."
#endif

#define APP_ID "17841400000000777"
#define UNKNOWN_APP_ID "990000000000000001"
#define SECRET "outage-secret-0123456789abcdef"
#define VERIFY_TOKEN "outage-verify-token"
#define NSENDERS 3
#define MAX_RECS 300000
#define DOWN_MS 1000
#define IDLE_DOWN_MS 1000 /* the quiet outage, measured for hubbub's CPU */
#define RECOVERY_LIMIT_MS 5000
#define STABLE_AFTER_MS 300 /* after the first 200, every delivery gets 200 */
#define STABLE_CHECK_MS 500
#define NROUNDS 3

/* ---- the private cluster ---- */

static struct h_cluster cluster;
static pid_t server_pid;

static int pg_local(const char *cmd, const char *extra)
{
    return h_cluster_run(&cluster, cmd, extra);
}

static void cleanup(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
    }
    h_cluster_remove(&cluster);
}

static void on_fatal_signal(int sig)
{
    (void)sig;
    exit(1); /* runs cleanup() */
}

/* ---- the clients ---- */

struct rec {
    int64_t t_send, t_done;
    long status; /* 0: failed at the transport level */
    char error[96];
};

static struct rec *recs;
static atomic_int next_n;
static atomic_bool senders_stop;
static double idle_down_cpu;

/* User and system CPU time process pid has used, in seconds. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                            &stime) != 2)
        tap_bail("cannot read %s", path);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}
static atomic_bool senders_paused;
static atomic_int senders_busy;   /* clients inside a request */
static atomic_llong last_ok_sent; /* t_send of the newest delivery that got 200 */
static atomic_int count_ok;
static char post_url[128];

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* One client: a keep-alive connection, one delivery after another. After a
 * refusal it pauses 2 ms, as a real sender backs off, so that the outage
 * does not produce hundreds of thousands of records. */
static void *sender_main(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    char errbuf[CURL_ERROR_SIZE];
    curl_easy_setopt(c, CURLOPT_URL, post_url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    while (!atomic_load(&senders_stop)) {
        atomic_fetch_add(&senders_busy, 1);
        if (atomic_load(&senders_paused)) {
            atomic_fetch_sub(&senders_busy, 1);
            h_sleep_ms(1);
            continue;
        }
        int n = atomic_fetch_add(&next_n, 1);
        if (n >= MAX_RECS) {
            atomic_fetch_sub(&senders_busy, 1);
            break;
        }
        struct rec *r = &recs[n];
        size_t len;
        char *body = h_comment_delivery(n, &len);
        char sig[72], header[100];
        h_sign(SECRET, body, len, sig);
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
        struct curl_slist *h = curl_slist_append(NULL, "Expect:");
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, header);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        errbuf[0] = '\0';
        r->t_send = h_now_ms();
        CURLcode rc = curl_easy_perform(c);
        r->t_done = h_now_ms();
        if (rc == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        } else {
            r->status = 0;
            snprintf(r->error, sizeof(r->error), "%.90s",
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
        }
        curl_slist_free_all(h);
        free(body);
        atomic_fetch_sub(&senders_busy, 1);
        if (r->status == 200) {
            atomic_fetch_add(&count_ok, 1);
            long long prev = atomic_load(&last_ok_sent);
            while (prev < r->t_send &&
                   !atomic_compare_exchange_weak(&last_ok_sent, &prev, (long long)r->t_send))
                ;
        } else {
            h_sleep_ms(2);
        }
    }
    curl_easy_cleanup(c);
    return NULL;
}

/* ---- checks made while the database is down ---- */

static long handshake(const struct h_server *s, const char *app_id, const char *token,
                      const char *challenge, char **body, char **headers)
{
    char url[512];
    snprintf(url, sizeof(url),
             "%s/webhooks/%s?hub.mode=subscribe&hub.challenge=%s"
             "&hub.verify_token=%s",
             s->base, app_id, challenge, token);
    struct h_resp r;
    h_http(&r, "GET", url, NULL, NULL, 0);
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body);
    if (headers != NULL)
        *headers = strdup(r.headers);
    h_resp_free(&r);
    return st;
}

struct round {
    const char *how;  /* "stop" or "kill" */
    const char *what; /* for the test names */
    bool quiet;       /* no deliveries from the stop until PostgreSQL is back */
    int64_t t_stop0, t_stop1, t_start0, t_start1, t_end;
    int64_t t_recovered; /* t_done of the first 200 sent after t_start1; 0 if none */
};

/* Records whose whole life lies in [from, to). */
static void count_window(int total, int64_t from, int64_t to, int *n200, int *n503, int *nother,
                         int64_t *max_latency)
{
    *n200 = *n503 = *nother = 0;
    *max_latency = 0;
    for (int i = 0; i < total; i++) {
        const struct rec *r = &recs[i];
        if (r->t_send < from || r->t_done >= to)
            continue;
        if (r->status == 200)
            (*n200)++;
        else if (r->status == 503)
            (*n503)++;
        else
            (*nother)++;
        if (r->t_done - r->t_send > *max_latency)
            *max_latency = r->t_done - r->t_send;
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    h_cluster_init(&cluster, HB_SOURCE_DIR, "outage");
    atexit(cleanup);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    tap_plan(26);

    int64_t t_begin = h_now_ms();
    h_cluster_start_or_bail(&cluster);
    struct h_db db;
    memset(&db, 0, sizeof(db));
    snprintf(db.name, sizeof(db.name), "hubbub");
    db.url = h_cluster_url(&cluster);
    db.conn = PQconnectdb(db.url);
    if (PQstatus(db.conn) != CONNECTION_OK)
        tap_bail("cannot connect to %s: %s", db.url, PQerrorMessage(db.conn));
    h_setup_app(&db, "outageco", APP_ID, VERIFY_TOKEN, SECRET);
    tap_diag("private cluster %s ready in %lld ms", cluster.dir, (long long)(h_now_ms() - t_begin));

    /* A short cache TTL, so that while the database is down the cached app is
     * stale and its refresh fails: the stale copy must still serve. */
    const char *env[] = {
                         "HUBBUB_DB_RETRY_MAX=200ms",
                         "HUBBUB_APP_CACHE_TTL=100ms",
                         "HUBBUB_LOG_LEVEL=info",
                         "HUBBUB_SHUTDOWN_TIMEOUT=5s",
                         NULL};
    struct h_server s;
    h_server_start(&s, &db, env);
    server_pid = s.pid;
    snprintf(post_url, sizeof(post_url), "%s/webhooks/%s", s.base, APP_ID);

    char *body = NULL, *headers = NULL;
    tap_is_int(handshake(&s, APP_ID, VERIFY_TOKEN, "111", NULL, NULL), 200,
               "the handshake works while PostgreSQL is up (the app is now cached)");

    recs = calloc(MAX_RECS, sizeof(*recs));
    pthread_t threads[NSENDERS];
    for (int i = 0; i < NSENDERS; i++)
        pthread_create(&threads[i], NULL, sender_main, NULL);
    int64_t deadline = h_now_ms() + 10000;
    while (atomic_load(&count_ok) < 100 && h_now_ms() < deadline)
        h_sleep_ms(5);
    if (atomic_load(&count_ok) < 100)
        tap_bail("deliveries do not get 200 before the outage");

    /* The third round restarts PostgreSQL while hubbub is idle: its writer
     * and lookup connections are then stale without hubbub having noticed. */
    struct round rounds[NROUNDS] = {{"stop", "fast shutdown", false, 0, 0, 0, 0, 0, 0},
                                    {"kill", "immediate shutdown", false, 0, 0, 0, 0, 0, 0},
                                    {"stop", "restart while idle", true, 0, 0, 0, 0, 0, 0}};
    int unknown_503 = 0, unknown_other = 0;
    long unknown_last = 0;
    for (int k = 0; k < NROUNDS; k++) {
        struct round *rd = &rounds[k];
        if (rd->quiet) {
            atomic_store(&senders_paused, true);
            while (atomic_load(&senders_busy) > 0)
                h_sleep_ms(1);
        }
        rd->t_stop0 = h_now_ms();
        if (pg_local(rd->how, NULL) != 0)
            tap_bail("ops/pg-local %s failed", rd->how);
        rd->t_stop1 = h_now_ms();

        if (k == 0) {
            /* Past the cache TTL: the next lookup tries (and fails) to refresh. */
            h_sleep_ms(250);
            long st1 = handshake(&s, APP_ID, VERIFY_TOKEN, "4242", &body, NULL);
            free(body);
            h_sleep_ms(150);
            long st2 = handshake(&s, APP_ID, VERIFY_TOKEN, "4243", &body, NULL);
            tap_ok(st1 == 200 && st2 == 200,
                   "while PostgreSQL is down, the handshake of a cached app still gets 200");
            if (st1 != 200 || st2 != 200)
                tap_diag("statuses %ld, %ld", st1, st2);
            tap_is_str(body, "4243", "... and echoes the challenge");
            free(body);
            long st = handshake(&s, UNKNOWN_APP_ID, "x", "5", &body, &headers);
            tap_is_int(st, 503,
                       "while PostgreSQL is down, an unknown app's handshake gets 503, "
                       "not 404");
            tap_contains(body, "unavailable", "the 503 is the JSON 'unavailable' error");
            tap_contains(headers, "retry-after", "the 503 says when to retry");
            free(body);
            free(headers);

            const char post[] = "{\"object\":\"instagram\",\"entry\":[]}";
            struct h_resp r;
            h_post_signed(&r, &s, UNKNOWN_APP_ID, "whatever-secret", post, sizeof(post) - 1);
            tap_is_int(r.status, 503,
                       "while PostgreSQL is down, a POST to an unknown app gets 503");
            h_resp_free(&r);
        }

        while (!rd->quiet && h_now_ms() < rd->t_stop1 + DOWN_MS)
            h_sleep_ms(10);
        if (rd->quiet) {
            /* Idle and without its database, hubbub should be idle too:
             * its job workers retry with backoff, not in a loop. */
            double cpu0 = cpu_seconds(s.pid);
            h_sleep_ms(IDLE_DOWN_MS);
            idle_down_cpu = cpu_seconds(s.pid) - cpu0;
        }
        rd->t_start0 = h_now_ms();
        h_cluster_start_or_bail(&cluster);
        rd->t_start1 = h_now_ms();
        if (rd->quiet) {
            atomic_store(&senders_paused, false);
            /* The lookup pool's connections are stale too: an unknown app
             * may get 503 at first, but soon 404 again. */
            int64_t until = h_now_ms() + RECOVERY_LIMIT_MS;
            while (h_now_ms() < until) {
                unknown_last = handshake(&s, UNKNOWN_APP_ID, "x", "5", NULL, NULL);
                if (unknown_last == 404)
                    break;
                if (unknown_last == 503)
                    unknown_503++;
                else
                    unknown_other++;
                h_sleep_ms(10);
            }
        }
        deadline = rd->t_start1 + RECOVERY_LIMIT_MS + 5000;
        while (atomic_load(&last_ok_sent) < rd->t_start1 && h_now_ms() < deadline)
            h_sleep_ms(5);
        /* Let the clients run on for the stability check. */
        int64_t until = h_now_ms() + STABLE_AFTER_MS + STABLE_CHECK_MS;
        while (h_now_ms() < until)
            h_sleep_ms(10);
        rd->t_end = h_now_ms();
    }

    atomic_store(&senders_stop, true);
    for (int i = 0; i < NSENDERS; i++)
        pthread_join(threads[i], NULL);
    int total = atomic_load(&next_n);
    if (total > MAX_RECS)
        total = MAX_RECS;

    /* ---- what the clients saw ---- */
    int n200 = 0, n503 = 0, nother = 0;
    for (int i = 0; i < total; i++) {
        if (recs[i].status == 200) {
            n200++;
        } else if (recs[i].status == 503) {
            n503++;
        } else if (nother++ < 5) {
            tap_diag("delivery %d got %ld %s (sent at +%lld ms, answered after %lld ms)", i,
                     recs[i].status, recs[i].error, (long long)(recs[i].t_send - t_begin),
                     (long long)(recs[i].t_done - recs[i].t_send));
        }
    }
    tap_diag("%d deliveries sent: %d got 200, %d got 503, %d something else", total, n200, n503,
             nother);
    tap_is_int(nother, 0, "every answer, through all three outages, was 200 or 503");

    for (int k = 0; k < NROUNDS; k++) {
        struct round *rd = &rounds[k];
        int w200, w503, wother;
        int64_t maxlat;
        count_window(total, rd->t_stop1, rd->t_start0, &w200, &w503, &wother, &maxlat);
        if (!rd->quiet) {
            tap_diag(
                "%s: stop took %lld ms, down %lld ms, start took %lld ms; while down: %d x 200, "
                "%d x 503, %d other, slowest answer %lld ms",
                rd->what, (long long)(rd->t_stop1 - rd->t_stop0),
                (long long)(rd->t_start0 - rd->t_stop1), (long long)(rd->t_start1 - rd->t_start0),
                w200, w503, wother, (long long)maxlat);
            tap_ok(w503 > 0, "%s: hubbub answers 503 while PostgreSQL is down", rd->what);
            /* A failure here: hubbub acknowledged deliveries it cannot have committed. */
            tap_is_int(w200, 0,
                       "%s: no delivery sent and answered while PostgreSQL is down got 200",
                       rd->what);
            tap_ok(maxlat < 2000, "%s: the 503s come at once (slowest %lld ms)", rd->what,
                   (long long)maxlat);
        }

        rd->t_recovered = 0;
        for (int i = 0; i < total; i++)
            if (recs[i].status == 200 && recs[i].t_send >= rd->t_start1 &&
                (rd->t_recovered == 0 || recs[i].t_done < rd->t_recovered))
                rd->t_recovered = recs[i].t_done;
        int64_t recovery = rd->t_recovered ? rd->t_recovered - rd->t_start1 : -1;
        tap_diag("%s: first 200 %lld ms after PostgreSQL was back", rd->what, (long long)recovery);
        tap_ok(rd->t_recovered != 0 && recovery <= RECOVERY_LIMIT_MS,
               "%s: deliveries get 200 again within %d ms of PostgreSQL coming back, without "
               "restarting hubbub",
               rd->what, RECOVERY_LIMIT_MS);

        int s200, s503, sother;
        int64_t slat;
        int64_t from = rd->t_recovered + STABLE_AFTER_MS;
        count_window(total, from, rd->t_end, &s200, &s503, &sother, &slat);
        tap_ok(rd->t_recovered != 0 && s200 > 0 && s503 + sother == 0,
               "%s: from %d ms after the first 200 on, every delivery gets 200", rd->what,
               STABLE_AFTER_MS);
        if (s503 + sother != 0 || s200 == 0)
            tap_diag("in that window: %d x 200, %d x 503, %d other", s200, s503, sother);
        if (rd->quiet) {
            int q200, q503, qother;
            int64_t qlat;
            count_window(total, rd->t_start1, rd->t_recovered + 1, &q200, &q503, &qother, &qlat);
            tap_diag("%s: %d x 503 before the first 200 (stale writer connections)", rd->what,
                     q503);
            tap_diag("%s: an unknown app got 503 %d times before 404 again", rd->what, unknown_503);
            tap_ok(unknown_last == 404 && unknown_other == 0,
                   "%s: an unknown app gets 404 again within %d ms (after %d x 503, last %ld)",
                   rd->what, RECOVERY_LIMIT_MS, unknown_503, unknown_last);
        }
    }

    /* ---- what the database holds ---- */
    PQreset(db.conn);
    bool *seen = calloc((size_t)total, sizeof(*seen));
    int dups = 0;
    PGresult *res = PQexec(db.conn, "SELECT payload->'value'->>'id' FROM events");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        tap_bail("cannot read events: %s", PQresultErrorMessage(res));
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        long n = id[0] == 'C' ? strtol(id + 1, NULL, 10) : -1;
        if (n >= 0 && n < total) {
            if (seen[n])
                dups++;
            seen[n] = true;
        }
    }
    int stored = PQntuples(res);
    PQclear(res);
    int lost = 0, stored_503 = 0;
    for (int i = 0; i < total; i++) {
        if (recs[i].status == 200 && !seen[i] && lost++ < 10)
            tap_diag("delivery %d got 200 (sent at +%lld ms) but is not stored", i,
                     (long long)(recs[i].t_send - t_begin));
        if (recs[i].status != 200 && seen[i])
            stored_503++;
    }
    tap_diag("%d events stored; %d of them had been answered 503 (committed, then the "
             "connection died)",
             stored, stored_503);
    /* A failure here: an acknowledged delivery is missing. */
    tap_is_int(lost, 0, "every delivery that ever got 200 is in the database");
    tap_is_int(dups, 0, "no delivery is stored twice");

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "hubbub, never restarted, stops cleanly on SIGTERM");
    server_pid = 0;
    char *log = h_server_log(&s);
    if (strstr(log, "database unreachable") == NULL)
        tap_diag("the server log does not mention the outage");
    /* The job workers retry with backoff and say so once in a while: a
     * worker that retried in a tight loop wrote gigabytes of log. */
    tap_ok(idle_down_cpu < 0.3 * IDLE_DOWN_MS / 1000.0,
           "idle while PostgreSQL is down: %.2f s of CPU in %d ms", idle_down_cpu, IDLE_DOWN_MS);
    int job_lines = 0;
    long held = 0;
    for (const char *q = log; (q = strstr(q, "msg=\"job queue:")) != NULL; q++) {
        job_lines++;
        const char *h = strstr(q, "similar_held_back=");
        const char *eol = strchr(q, '\n');
        if (h != NULL && (eol == NULL || h < eol))
            held += strtol(h + strlen("similar_held_back="), NULL, 10);
    }
    tap_ok(job_lines <= 40 && held <= 400,
           "the job workers retry with backoff and log it now and then (%d lines, %ld attempts "
           "held back)",
           job_lines, held);
    free(log);

    free(seen);
    free(recs);
    PQfinish(db.conn);
    free(db.url);
    cleanup();
    curl_global_cleanup();
    tap_diag("total %lld ms", (long long)(h_now_ms() - t_begin));
    return tap_done();
}
