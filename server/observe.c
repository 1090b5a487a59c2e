/*
 * observe.c - GET /metrics and GET /readyz; see observe.h.
 */
#include "server/observe.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/metrics.h"
#include "server/admin.h"
#include "server/webhook.h"
#include "server/worker.h"

static const char *const JOB_KINDS[] = {"subscribe", "unsubscribe", "send"};
static const char *const JOB_STATES[] = {"queued", "running", "succeeded", "failed", "dead"};

void observe_request_done(void *ctx, const char *route, uint64_t us)
{
    struct server *srv = ctx;
    enum stats_route r = STATS_ROUTE_OTHER;
    if (route != NULL && strcmp(route, WEBHOOK_PREFIX) == 0)
        r = STATS_ROUTE_WEBHOOK;
    else if (route != NULL && strcmp(route, ADMIN_PREFIX) == 0)
        r = STATS_ROUTE_API;
    stats_request(srv->stats, r, us);
}

static bool is_get(h2o_req_t *req)
{
    if (http_method_is(req, "GET") || http_method_is(req, "HEAD"))
        return true;
    http_add_header(req, "allow", "GET, HEAD");
    http_send_error(req, 405, "method_not_allowed", "use GET");
    return false;
}

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static void gauge(struct buf *b, const char *name, const char *help, double v)
{
    metrics_write_family(b, name, "gauge", help);
    metrics_write_double(b, name, NULL, 0, v);
}

static void render_jobs(struct buf *b, const struct probe_snapshot *snap)
{
    metrics_write_family(b, "hubbub_jobs", "gauge",
                         "Jobs in the queue by kind and state, as of the last probe (all "
                         "processes sharing the database)");
    bool shown[PROBE_JOB_ROWS] = {false};
    for (size_t k = 0; k < HB_ARRAY_SIZE(JOB_KINDS); k++) {
        for (size_t s = 0; s < HB_ARRAY_SIZE(JOB_STATES); s++) {
            int64_t n = 0;
            for (size_t i = 0; i < snap->njobs; i++) {
                if (strcmp(snap->jobs[i].kind, JOB_KINDS[k]) == 0 &&
                    strcmp(snap->jobs[i].state, JOB_STATES[s]) == 0) {
                    n = snap->jobs[i].count;
                    shown[i] = true;
                }
            }
            struct metrics_label l[] = {{"kind", JOB_KINDS[k]}, {"state", JOB_STATES[s]}};
            metrics_write_uint(b, "hubbub_jobs", l, 2, (uint64_t)n);
        }
    }
    for (size_t i = 0; i < snap->njobs; i++) {
        if (shown[i])
            continue;
        struct metrics_label l[] = {{"kind", snap->jobs[i].kind}, {"state", snap->jobs[i].state}};
        metrics_write_uint(b, "hubbub_jobs", l, 2, (uint64_t)snap->jobs[i].count);
    }
}

static void render_pools(struct buf *b, struct server *srv, const struct db_ingest_stats *is)
{
    struct db_pool_stats ps;
    db_pool_stats(srv->pool, &ps);
    metrics_write_family(b, "hubbub_db_connections", "gauge",
                         "Database connections of this process: the API and lookup pool (in_use, "
                         "idle), the ingest writers and the job workers (open)");
    struct metrics_label l[2] = {{"pool", "api"}, {"state", "in_use"}};
    metrics_write_uint(b, "hubbub_db_connections", l, 2, (uint64_t)ps.in_use);
    l[1].value = "idle";
    metrics_write_uint(b, "hubbub_db_connections", l, 2, (uint64_t)ps.idle);
    l[0].value = "ingest";
    l[1].value = "open";
    metrics_write_uint(b, "hubbub_db_connections", l, 2, (uint64_t)is->connected);
    l[0].value = "worker";
    metrics_write_uint(b, "hubbub_db_connections", l, 2,
                       srv->workers != NULL ? (uint64_t)worker_pool_connections(srv->workers) : 0);
    metrics_write_family(b, "hubbub_db_pool_size", "gauge",
                         "Most connections the pool opens (HUBBUB_DB_POOL_SIZE)");
    struct metrics_label api[] = {{"pool", "api"}};
    metrics_write_uint(b, "hubbub_db_pool_size", api, 1, (uint64_t)ps.size);
    metrics_write_family(b, "hubbub_db_pool_waits_total", "counter",
                         "Times a request found every pool connection in use and waited");
    metrics_write_uint(b, "hubbub_db_pool_waits_total", api, 1, ps.waits);
}

int observe_metrics(void *ctx, h2o_req_t *req)
{
    struct server *srv = ctx;
    if (!is_get(req) || !admin_require_operator(srv, req))
        return 0;
    struct db_ingest_stats is;
    db_ingest_stats(srv->ingest, &is);
    struct probe_snapshot snap;
    probe_read(srv->probe, &snap);

    struct buf b;
    buf_init(&b);
    stats_render(srv->stats, &b, http_too_large_count(srv->http));
    gauge(&b, "hubbub_ingest_queue_deliveries", "Deliveries waiting for a commit",
          (double)is.queued);
    gauge(&b, "hubbub_ingest_queue_bytes",
          "Bytes of deliveries waiting for a commit (counted against HUBBUB_INGEST_QUEUE_LIMIT)",
          (double)is.queued_bytes);
    int64_t age = is.oldest_received_us > 0 ? now_us() - is.oldest_received_us : 0;
    gauge(&b, "hubbub_ingest_queue_oldest_seconds",
          "How long the oldest delivery waiting for a commit has waited",
          age > 0 ? (double)age / 1e6 : 0);
    gauge(&b, "hubbub_http_requests_waiting",
          "Requests waiting on a lookup, a commit or an admin API query", (double)srv->inflight);
    render_pools(&b, srv, &is);
    gauge(&b, "hubbub_database_up", "1 when the last probe reached PostgreSQL",
          snap.is_db_ok ? 1 : 0);
    gauge(&b, "hubbub_schema_current",
          "1 when the applied migrations are the ones this binary embeds (last probe)",
          snap.is_schema_current ? 1 : 0);
    render_jobs(&b, &snap);

    http_add_header(req, "cache-control", "no-store");
    http_send(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_dispose(&b);
    return 0;
}

int observe_readyz(void *ctx, h2o_req_t *req)
{
    struct server *srv = ctx;
    if (!is_get(req))
        return 0;
    struct probe_snapshot snap;
    probe_read(srv->probe, &snap);
    struct db_ingest_stats is;
    db_ingest_stats(srv->ingest, &is);
    uint64_t now = probe_now_ms();
    uint64_t stale_ms = (uint64_t)srv->cfg->probe_interval_ms + PROBE_TIMEOUT_MS + 1000;

    struct buf fail;
    buf_init(&fail);
    buf_puts(&fail, "");
    char why[160];
    if (!snap.has_run)
        buf_puts(&fail, ",\"database\":\"not checked yet\"");
    else if (!snap.is_db_ok || snap.ok_at_ms == 0)
        buf_puts(&fail, ",\"database\":\"unreachable\"");
    else if (now - snap.ok_at_ms > stale_ms)
        buf_printf(&fail, ",\"database\":\"no answer for %" PRIu64 " ms\"", now - snap.ok_at_ms);
    else if (is.is_down)
        buf_puts(&fail, ",\"database\":\"the ingest writers cannot reach it\"");
    if (snap.ok_at_ms == 0)
        buf_puts(&fail, ",\"schema\":\"not checked yet\"");
    else if (!snap.is_schema_current)
        buf_puts(&fail, ",\"schema\":\"the applied migrations are not the ones this binary "
                        "embeds; run hubbub migrate\"");
    int64_t age_ms = is.oldest_received_us > 0 ? (now_us() - is.oldest_received_us) / 1000 : 0;
    if (is.queued_bytes * 2 >= srv->cfg->ingest_queue_limit) {
        buf_puts(&fail, ",\"ingest\":\"the commit queue is over half of "
                        "HUBBUB_INGEST_QUEUE_LIMIT\"");
    } else if (age_ms > OBSERVE_QUEUE_AGE_MAX_MS) {
        snprintf(why, sizeof(why), "a delivery has waited %" PRId64 " ms for its commit", age_ms);
        buf_puts(&fail, ",\"ingest\":");
        json_write_cstr(&fail, why);
    }
    if (srv->stopping)
        buf_puts(&fail, ",\"shutdown\":\"draining\"");

    http_add_header(req, "cache-control", "no-store");
    if (fail.len == 0) {
        static const char ready[] = "{\"status\":\"ready\"}";
        http_send_json(req, 200, ready, sizeof(ready) - 1);
    } else {
        struct buf body;
        buf_init(&body);
        buf_printf(&body, "{\"status\":\"not_ready\",\"failing\":{%s}}", fail.data + 1);
        http_add_header(req, "retry-after", "1");
        http_send_json(req, 503, body.data, body.len);
        buf_dispose(&body);
    }
    buf_dispose(&fail);
    return 0;
}
