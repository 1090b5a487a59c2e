/*
 * t_metrics.c - /metrics and /readyz against a real hubbub: each webhook
 * outcome moves its own counter by exactly one and no other; new events are
 * counted by field and duplicates are not; histograms are consistent
 * (cumulative buckets, +Inf equal to _count, batch sizes summing to the
 * deliveries stored); the jobs gauge follows the jobs table; Graph API calls
 * are counted by outcome, on the subscribe path and on the send path (a
 * Meta error 2, 613 or 190 moves its own outcome by one); /metrics wants the operator's token;
 * /readyz turns 503 while the database refuses connections, or while the
 * applied migrations are not the embedded ones, and 200 again after.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "7770001"
#define SECRET "metrics-secret-0123456789"
#define VERIFY "metrics-verify-token"
#define BODY_LIMIT 4096
#define GRAPH_APP "7770002"
#define IG_NODE "17841400000000901"
#define IG_TOKEN "metrics-ig-token-0123456789"

static struct h_db db;
static struct h_server srv;

static char *scrape(void)
{
    struct h_resp r;
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", "/metrics", NULL);
    if (r.status != 200)
        tap_bail("GET /metrics: %ld %s", r.status, r.body);
    char *body = strdup(r.body);
    h_resp_free(&r);
    return body;
}

/* The value of the sample whose name and labels are exactly series, or NAN. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return NAN;
}

static double metric(const char *series)
{
    char *t = scrape();
    double v = value_of(t, series);
    free(t);
    return v;
}

static const char *const GRAPH_OUTCOMES[] = {"ok",           "temporary",      "app_rate_limited",
                                             "rate_limited", "policy_blocked", "token_invalid",
                                             "permanent",    "timeout",        "transport_error"};
#define NGRAPH (sizeof(GRAPH_OUTCOMES) / sizeof(GRAPH_OUTCOMES[0]))

static void read_graph(double *v)
{
    char *t = scrape();
    for (size_t i = 0; i < NGRAPH; i++) {
        char series[96];
        snprintf(series, sizeof(series), "hubbub_graph_requests_total{outcome=\"%s\"}",
                 GRAPH_OUTCOMES[i]);
        v[i] = value_of(t, series);
    }
    free(t);
}

/* Each Graph API outcome moved by want[outcome] (0 when not named). */
static void expect_graph(const double *before, const char *o1, int n1, const char *o2, int n2,
                         const char *what)
{
    double after[NGRAPH];
    read_graph(after);
    int bad = 0;
    for (size_t i = 0; i < NGRAPH; i++) {
        double want = 0;
        if (o1 != NULL && strcmp(GRAPH_OUTCOMES[i], o1) == 0)
            want += n1;
        if (o2 != NULL && strcmp(GRAPH_OUTCOMES[i], o2) == 0)
            want += n2;
        if (after[i] - before[i] != want)
            bad++, tap_diag("outcome=%s moved %g -> %g, not by %g", GRAPH_OUTCOMES[i], before[i],
                            after[i], want);
    }
    tap_ok(bad == 0, "%s", what);
}

/* Polls /readyz until it answers want; *body gets its last answer. */
static bool wait_readyz(long want, char **body)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    long st = 0;
    *body = NULL;
    while (h_now_ms() < deadline && st != want) {
        char url[128];
        struct h_resp r;
        snprintf(url, sizeof(url), "%s/readyz", srv.base);
        h_http(&r, "GET", url, NULL, NULL, 0);
        st = r.status;
        free(*body);
        *body = strdup(r.body != NULL ? r.body : "");
        h_resp_free(&r);
        if (st != want)
            h_sleep_ms(20);
    }
    return st == want;
}

static bool wait_metric(const char *series, double want, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    double v = NAN;
    while (h_now_ms() < deadline) {
        v = metric(series);
        if (v == want)
            return true;
        h_sleep_ms(20);
    }
    tap_diag("%s is %g, not %g", series, v, want);
    return false;
}

static const char *const OUTCOMES[] = {"accepted",       "duplicate",     "bad_signature",
                                       "bad_json",       "too_large",     "db_unavailable",
                                       "overloaded",     "unknown_app",   "method_not_allowed",
                                       "client_refused", "shutting_down", "failed"};
#define NOUT (sizeof(OUTCOMES) / sizeof(OUTCOMES[0]))

struct counts {
    double app[NOUT], unknown[NOUT];
};

static void read_counts(struct counts *c)
{
    char *t = scrape();
    for (size_t i = 0; i < NOUT; i++) {
        char s[160];
        snprintf(s, sizeof(s), "hubbub_webhook_deliveries_total{app=\"%s\",outcome=\"%s\"}", APP,
                 OUTCOMES[i]);
        c->app[i] = value_of(t, s);
        if (isnan(c->app[i]))
            c->app[i] = 0; /* an app's row appears with its first request */
        snprintf(s, sizeof(s), "hubbub_webhook_deliveries_total{app=\"unknown\",outcome=\"%s\"}",
                 OUTCOMES[i]);
        c->unknown[i] = value_of(t, s);
    }
    free(t);
}

/* Runs step, then checks that exactly one series moved, by one. */
static void expect_one(const char *what, const char *app, const char *outcome, void (*step)(void))
{
    struct counts before, after;
    read_counts(&before);
    step();
    int64_t deadline = h_now_ms() + 2000;
    bool moved = false;
    size_t k = 0;
    while (!moved && h_now_ms() < deadline) {
        read_counts(&after);
        for (k = 0; k < NOUT; k++)
            if (strcmp(OUTCOMES[k], outcome) == 0)
                break;
        double *a = strcmp(app, "unknown") == 0 ? after.unknown : after.app;
        double *b = strcmp(app, "unknown") == 0 ? before.unknown : before.app;
        moved = k < NOUT && a[k] == b[k] + 1;
        if (!moved)
            h_sleep_ms(10);
    }
    int others = 0;
    for (size_t i = 0; i < NOUT; i++) {
        bool is_it = i == k;
        if (after.app[i] != before.app[i] + (is_it && strcmp(app, "unknown") != 0))
            others++, tap_diag("app %s moved %g -> %g", OUTCOMES[i], before.app[i], after.app[i]);
        if (after.unknown[i] != before.unknown[i] + (is_it && strcmp(app, "unknown") == 0))
            others++, tap_diag("unknown %s moved %g -> %g", OUTCOMES[i], before.unknown[i],
                               after.unknown[i]);
    }
    tap_ok(moved && others == 0, "%s counts once as app=%s outcome=%s, and nothing else", what, app,
           outcome);
}

static long post_signed(const char *app, const char *secret, const char *body)
{
    struct h_resp r;
    h_post_signed(&r, &srv, app, secret, body, strlen(body));
    long st = r.status;
    h_resp_free(&r);
    return st;
}

static char *delivery1;

static void do_accepted(void)
{
    tap_is_int(post_signed(APP, SECRET, delivery1), 200, "a new delivery gets 200");
}

static void do_duplicate(void)
{
    tap_is_int(post_signed(APP, SECRET, delivery1), 200, "the same delivery again gets 200");
}

static void do_bad_signature(void)
{
    tap_is_int(post_signed(APP, "not-the-secret", delivery1), 403, "a wrong signature gets 403");
}

static void do_missing_signature(void)
{
    struct h_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/webhooks/%s", srv.base, APP);
    const char *h[] = {"Content-Type: application/json", NULL};
    h_http(&r, "POST", url, h, delivery1, strlen(delivery1));
    tap_is_int(r.status, 403, "no signature gets 403");
    h_resp_free(&r);
}

static void do_bad_json(void)
{
    tap_is_int(post_signed(APP, SECRET, "{\"not\":\"a webhook\"}"), 400,
               "a signed non-envelope gets 400");
}

static void do_too_large(void)
{
    char *big = malloc(BODY_LIMIT + 2);
    memset(big, 'x', BODY_LIMIT + 1);
    big[BODY_LIMIT + 1] = '\0';
    tap_is_int(post_signed(APP, SECRET, big), 413, "a body over the limit gets 413");
    free(big);
}

static void do_unknown_app(void)
{
    tap_is_int(post_signed("999999", SECRET, delivery1), 404, "an unknown app gets 404");
}

static void do_bad_method(void)
{
    struct h_resp r;
    char url[128];
    snprintf(url, sizeof(url), "%s/webhooks/%s", srv.base, APP);
    h_http(&r, "PUT", url, NULL, "x", 1);
    tap_is_int(r.status, 405, "PUT gets 405");
    h_resp_free(&r);
}

static void do_db_unavailable(void)
{
    char *d = h_comment_delivery(900, &(size_t){0});
    tap_is_int(post_signed(APP, SECRET, d), 503, "a delivery while the database is away gets 503");
    free(d);
}

static void allow_connections(PGconn *c, const char *dbname, bool allow)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS %s", dbname,
             allow ? "true" : "false");
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        tap_bail("%s: %s", sql, PQerrorMessage(c));
    PQclear(res);
}

/* Every histogram in text: buckets cumulative, +Inf == _count. */
static int check_histograms(const char *text, const char *name, int *series)
{
    int bad = 0;
    *series = 0;
    char bucket[128];
    snprintf(bucket, sizeof(bucket), "%s_bucket{", name);
    double last = -1;
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, bucket, strlen(bucket)) == 0) {
            const char *sp = strchr(p, ' ');
            double v = strtod(sp + 1, NULL);
            if (v < last)
                bad++;
            last = v;
            if (strstr(p, "le=\"+Inf\"") != NULL && strstr(p, "le=\"+Inf\"") < sp) {
                /* the _sum and _count lines follow */
                const char *sum = strchr(p, '\n') + 1;
                const char *count = strchr(sum, '\n') + 1;
                double s = strtod(strchr(sum, ' ') + 1, NULL);
                double c = strtod(strchr(count, ' ') + 1, NULL);
                if (strncmp(count, name, strlen(name)) != 0 || c != v || s < 0 ||
                    (c == 0 && s != 0))
                    bad++;
                (*series)++;
                last = -1;
            }
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return bad;
}

int main(void)
{
    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, IG_NODE, IG_TOKEN, GRAPH_APP);

    h_db_create(&db, "metrics");
    h_setup_app(&db, "metricsco", APP, VERIFY, SECRET);
    char limit[64];
    snprintf(limit, sizeof(limit), "HUBBUB_BODY_LIMIT=%d", BODY_LIMIT);
    const char *env[] = {limit,
                         fg_env(ig),
                         "HUBBUB_PROBE_INTERVAL=100ms",
                         "HUBBUB_APP_CACHE_TTL=1h",
                         "HUBBUB_WORKERS=1",
                         "HUBBUB_JOB_POLL_INTERVAL=100ms",
                         "HUBBUB_DB_RETRY_MAX=100ms",
                         "HUBBUB_JOB_BACKOFF=50ms",
                         "HUBBUB_JOB_BACKOFF_MAX=100ms",
                         "HUBBUB_GRAPH_MAX_PAUSE=100ms",
                         NULL};
    h_server_start(&srv, &db, env);
    size_t len;
    delivery1 = h_comment_delivery(1, &len);

    /* ---- access ---- */
    struct h_resp r;
    h_api(&r, &srv, NULL, "GET", "/metrics", NULL);
    tap_is_int(r.status, 401, "/metrics without a token gets 401");
    tap_ok(strstr(r.body, "hubbub_") == NULL, "and shows no metric");
    h_resp_free(&r);
    h_api(&r, &srv, "operator-token-for-tests-0123456789abcdeX", "GET", "/metrics", NULL);
    tap_is_int(r.status, 401, "/metrics with a wrong token gets 401");
    h_resp_free(&r);
    char key[64];
    h_api_tenant(&srv, "tenantco", key);
    h_api(&r, &srv, key, "GET", "/metrics", NULL);
    tap_is_int(r.status, 401, "/metrics with a tenant's API key gets 401");
    h_resp_free(&r);
    h_api(&r, &srv, H_ADMIN_TOKEN, "GET", "/metrics", NULL);
    tap_is_int(r.status, 200, "/metrics with the operator token gets 200");
    tap_contains(r.headers, "text/plain; version=0.0.4", "in the Prometheus text format");
    tap_contains(r.body, "# TYPE hubbub_webhook_deliveries_total counter",
                 "with HELP and TYPE lines");
    h_resp_free(&r);

    /* ---- readiness, up ---- */
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    long st = 0;
    char *body = NULL;
    while (h_now_ms() < deadline && st != 200) {
        char url[128];
        snprintf(url, sizeof(url), "%s/readyz", srv.base);
        h_http(&r, "GET", url, NULL, NULL, 0);
        st = r.status;
        free(body);
        body = strdup(r.body);
        h_resp_free(&r);
        if (st != 200)
            h_sleep_ms(20);
    }
    tap_is_int(st, 200, "/readyz gets 200 once the probe has run, without a token");
    tap_is_str(body, "{\"status\":\"ready\"}", "saying ready");
    free(body);

    /* ---- each outcome, once ---- */
    double events0 = metric("hubbub_events_total{field=\"comments\"}");
    expect_one("a new delivery", APP, "accepted", do_accepted);
    expect_one("a repeated delivery", APP, "duplicate", do_duplicate);
    expect_one("a wrong signature", APP, "bad_signature", do_bad_signature);
    expect_one("a missing signature", "unknown", "bad_signature", do_missing_signature);
    expect_one("a signed non-envelope", APP, "bad_json", do_bad_json);
    expect_one("a body over the limit", "unknown", "too_large", do_too_large);
    expect_one("an unknown app", "unknown", "unknown_app", do_unknown_app);
    expect_one("a PUT", "unknown", "method_not_allowed", do_bad_method);
    tap_is_int((long long)(metric("hubbub_events_total{field=\"comments\"}") - events0), 1,
               "one new comment event counted; its duplicate not");

    /* ---- events by field ---- */
    const char *mixed =
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":1700000001,"
        "\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"CM1\",\"text\":\"a\"}},"
        "{\"field\":\"comments\",\"value\":{\"id\":\"CM2\",\"text\":\"b\"}},"
        "{\"field\":\"mentions\",\"value\":{\"media_id\":\"MM1\",\"comment_id\":\"MC1\"}},"
        "{\"field\":\"no_such_field\",\"value\":{\"id\":\"X1\"}}]}]}";
    char *before = scrape();
    tap_is_int(post_signed(APP, SECRET, mixed), 200, "a delivery of three fields gets 200");
    tap_is_int(post_signed(APP, SECRET, mixed), 200, "and again");
    /* message_edit is no field one subscribes to, but the splitter names it. */
    const char *edit =
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":1700000002,"
        "\"messaging\":[{\"sender\":{\"id\":\"2345\"},\"recipient\":{\"id\":\"17841400000000001\"},"
        "\"timestamp\":1700000002000,\"message_edit\":{\"mid\":\"ME1\",\"text\":\"c\","
        "\"num_edit\":1}}]}]}";
    tap_is_int(post_signed(APP, SECRET, edit), 200, "a message_edit delivery gets 200");
    char *after = scrape();
    static const struct {
        const char *field;
        int want;
    } fields[] = {
        {"comments", 2}, {"mentions", 1}, {"other", 1}, {"messages", 0}, {"message_edit", 1}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char s[96];
        snprintf(s, sizeof(s), "hubbub_events_total{field=\"%s\"}", fields[i].field);
        tap_is_int((long long)(value_of(after, s) - value_of(before, s)), fields[i].want,
                   "events_total{field=%s} moved by %d", fields[i].field, fields[i].want);
    }
    free(before);
    free(after);

    /* ---- histograms ---- */
    char *t = scrape();
    static const char *const hists[] = {"hubbub_ingest_commit_batch_size",
                                        "hubbub_ingest_commit_duration_seconds",
                                        "hubbub_http_request_duration_seconds"};
    for (size_t i = 0; i < 3; i++) {
        int series;
        int bad = check_histograms(t, hists[i], &series);
        tap_ok(series > 0 && bad == 0, "%s: %d series, cumulative, +Inf == _count", hists[i],
               series);
    }
    tap_is_int((long long)value_of(t, "hubbub_ingest_commit_batch_size_sum"),
               h_db_int(&db, "SELECT count(*) FROM deliveries"),
               "the batch sizes add up to the deliveries stored");
    tap_is_int((long long)value_of(t, "hubbub_ingest_commit_duration_seconds_count"),
               (long long)value_of(t, "hubbub_ingest_commit_batch_size_count"),
               "one commit duration per batch");
    /* Nine reached the webhook route; the 413 was refused before routing. */
    double timed = value_of(t, "hubbub_http_request_duration_seconds_count{route=\"webhook\"}");
    tap_ok(timed >= 9, "webhook requests are timed under route=webhook (%g)", timed);
    tap_ok(value_of(t, "hubbub_http_request_duration_seconds_count{route=\"api\"}") >= 1,
           "admin API requests under route=api");
    tap_ok(value_of(t, "hubbub_db_connections{pool=\"ingest\",state=\"open\"}") >= 1,
           "the ingest writers' connections are shown");
    tap_ok(value_of(t, "hubbub_db_pool_size{pool=\"api\"}") == 4, "and the pool's size");
    tap_ok(value_of(t, "hubbub_ingest_queue_deliveries") == 0, "the commit queue is empty");
    tap_ok(value_of(t, "hubbub_database_up") == 1, "the database is up");
    free(t);

    /* ---- jobs and Graph API calls ---- */
    tap_ok(wait_metric("hubbub_jobs{kind=\"send\",state=\"queued\"}", 0, H_WAIT_MS),
           "no send job queued yet");
    /* Due in an hour: the worker leaves them queued. */
    for (int i = 0; i < 3; i++)
        h_db_exec(&db,
                  "INSERT INTO jobs (kind, app_id, serial_key, run_at)"
                  " VALUES ('send', 0, 'msg:t:%d', now() + interval '1 hour')",
                  i);
    tap_ok(wait_metric("hubbub_jobs{kind=\"send\",state=\"queued\"}", 3, H_WAIT_MS),
           "the jobs gauge shows 3 queued send jobs");
    h_db_exec(&db, "UPDATE jobs SET state = 'dead' WHERE id IN (SELECT min(id) FROM jobs)");
    tap_ok(wait_metric("hubbub_jobs{kind=\"send\",state=\"dead\"}", 1, H_WAIT_MS) &&
               wait_metric("hubbub_jobs{kind=\"send\",state=\"queued\"}", 2, H_WAIT_MS),
           "and follows a job to dead");

    char *b = NULL;
    char json[512];
    long status;
    long long acc = h_api_ig_account(&srv, key, GRAPH_APP, "app-secret-0123456789",
                                     "verify-0123456789", IG_NODE, IG_TOKEN, "comments", &status);
    tap_is_int(status, 201, "an account is created (a subscribe job)");
    tap_ok(h_wait_sql(&db, "succeeded", H_WAIT_MS,
                      "SELECT state FROM jobs WHERE account_id = %lld AND kind = 'subscribe'", acc),
           "its subscribe job succeeds against the fake Graph API");
    size_t ncalls;
    struct fg_request *rq = fg_requests(ig, &ncalls);
    fg_requests_free(rq, ncalls);
    tap_is_int((long long)metric("hubbub_graph_requests_total{outcome=\"ok\"}"), (long long)ncalls,
               "graph_requests_total{outcome=ok} equals the calls Meta got");
    tap_ok(metric("hubbub_db_connections{pool=\"worker\",state=\"open\"}") == 1,
           "the worker's connection is shown");

    /* The send path: one reply per Meta error, each failing once. */
    static const struct {
        enum fg_mode mode;
        const char *outcome;
        const char *then; /* the job once the error is handled */
        int oks;          /* successful sends after it */
    } sends[] = {{FG_ERR_2, "temporary", "succeeded 2", 1},
                 {FG_ERR_613, "rate_limited", "succeeded 1", 1},
                 {FG_ERR_190, "token_invalid", "queued 0", 0}};
    for (size_t i = 0; i < sizeof(sends) / sizeof(sends[0]); i++) {
        double g0[NGRAPH];
        read_graph(g0);
        long sends_before = fg_sends(ig, IG_NODE, NULL);
        fg_fail(ig, (struct fg_match){FG_SEND, NULL, NULL}, sends[i].mode, 1);
        char path[96];
        snprintf(path, sizeof(path), "/v1/accounts/%lld/messages", acc);
        snprintf(json, sizeof(json), "{\"recipient_id\":\"178%zu\",\"text\":\"hi %zu\"}", i, i);
        h_api(&r, &srv, key, "POST", path, json);
        long long msg = h_json_num(r.body, "id");
        if (r.status != 202)
            tap_bail("queueing a reply: %ld %s", r.status, r.body);
        h_resp_free(&r);
        bool done =
            h_wait_sql(&db, sends[i].then, H_WAIT_MS,
                       "SELECT state || ' ' || attempts FROM jobs"
                       " WHERE message_id = %lld AND (state <> 'queued' OR last_error IS NOT NULL)",
                       msg);
        tap_ok(done && fg_faults_left(ig) == 0, "a reply whose send fails with %s: job %s",
               sends[i].outcome, sends[i].then);
        tap_is_int(fg_sends(ig, IG_NODE, NULL) - sends_before, sends[i].oks,
                   "and Meta took %d send", sends[i].oks);
        char what[128];
        snprintf(what, sizeof(what), "graph_requests_total: %s +1, ok +%d, nothing else",
                 sends[i].outcome, sends[i].oks);
        expect_graph(g0, sends[i].outcome, 1, "ok", sends[i].oks, what);
    }
    free(b);

    /* ---- a schema that is not the one the binary embeds ---- */
    char *sum = h_db_text(&db, "SELECT checksum FROM schema_migrations WHERE version = 1");
    h_db_exec(&db, "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1");
    tap_ok(wait_readyz(503, &b),
           "/readyz gets 503 when an applied migration is not the embedded one");
    tap_contains(b, "\"schema\":", "naming the schema check");
    tap_ok(strstr(b, "\"database\":") == NULL, "and not the database");
    free(b);
    h_db_exec(&db, "UPDATE schema_migrations SET checksum = '%s' WHERE version = 1", sum);
    free(sum);
    tap_ok(wait_readyz(200, &b), "and 200 again once it is");
    free(b);

    /* ---- the database goes away ---- */
    char *admin_url = h_url_with_dbname(db.url, "postgres");
    PGconn *admin = PQconnectdb(admin_url);
    free(admin_url);
    if (PQstatus(admin) != CONNECTION_OK)
        tap_bail("connecting to the postgres database: %s", PQerrorMessage(admin));
    allow_connections(admin, db.name, false);
    h_db_exec(&db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                   " WHERE datname = current_database() AND pid <> pg_backend_pid()");
    deadline = h_now_ms() + H_WAIT_MS;
    st = 0;
    body = NULL;
    while (h_now_ms() < deadline && st != 503) {
        char url[128];
        snprintf(url, sizeof(url), "%s/readyz", srv.base);
        h_http(&r, "GET", url, NULL, NULL, 0);
        st = r.status;
        free(body);
        body = strdup(r.body);
        h_resp_free(&r);
        if (st != 503)
            h_sleep_ms(20);
    }
    tap_is_int(st, 503, "/readyz gets 503 while the database refuses connections");
    tap_contains(body, "\"database\":", "naming the database check");
    tap_contains(body, "\"status\":\"not_ready\"", "and saying not ready");
    tap_ok(strstr(body, "postgres") == NULL && strstr(body, db.name) == NULL,
           "without the database's name or user");
    free(body);
    tap_ok(wait_metric("hubbub_database_up", 0, H_WAIT_MS), "hubbub_database_up is 0");
    expect_one("a delivery while the database is away", APP, "db_unavailable", do_db_unavailable);

    allow_connections(admin, db.name, true);
    PQfinish(admin);
    deadline = h_now_ms() + H_WAIT_MS;
    st = 0;
    while (h_now_ms() < deadline && st != 200) {
        char url[128];
        snprintf(url, sizeof(url), "%s/readyz", srv.base);
        h_http(&r, "GET", url, NULL, NULL, 0);
        st = r.status;
        h_resp_free(&r);
        if (st != 200)
            h_sleep_ms(20);
    }
    tap_is_int(st, 200, "/readyz is 200 again once the database is back");

    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "hubbub exits cleanly");
    free(delivery1);
    h_db_drop(&db);
    fg_stop(ig);
    return tap_done();
}
