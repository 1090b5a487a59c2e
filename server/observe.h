/*
 * observe.h - what operators and load balancers ask a running hubbub:
 * GET /metrics (Prometheus text format, operator token required) and GET
 * /readyz (no authentication, nothing sensitive). /healthz stays in main.c:
 * it says only that the process answers.
 *
 * Both answer on the loop from memory: the counters (server/stats.h), the
 * ingest queue and pool figures (a mutex held for a copy), and the latest
 * snapshot of the probe thread (server/probe.h), which is the only thing
 * here that talks to PostgreSQL.
 *
 * /readyz is 200 {"status":"ready"} when all of these hold, else 503 with
 * {"status":"not_ready","failing":{"<check>":"<why>",...}}:
 *   database   the probe reached PostgreSQL within the last
 *              HUBBUB_PROBE_INTERVAL + PROBE_TIMEOUT_MS + 1 s, and the ingest
 *              writers are not waiting for it to come back;
 *   schema     the applied migrations are the ones this binary embeds;
 *   ingest     the commit queue holds less than half of
 *              HUBBUB_INGEST_QUEUE_LIMIT and its oldest delivery has waited
 *              less than OBSERVE_QUEUE_AGE_MAX_MS;
 *   shutdown   the process is not draining.
 */
#ifndef HB_OBSERVE_H
#define HB_OBSERVE_H

#include <h2o.h>

#include "server/server.h"

#define OBSERVE_QUEUE_AGE_MAX_MS 5000

int observe_metrics(void *ctx, h2o_req_t *req); /* http_route handler; ctx: struct server */
int observe_readyz(void *ctx, h2o_req_t *req);

/* http_observer_fn: request latency by route class; ctx: struct server. */
void observe_request_done(void *ctx, const char *route, uint64_t us);

#endif
