/*
 * stats.h - what hubbub counts for /metrics: webhook deliveries by app and
 * outcome, verification handshakes, new events by field, ingest commits,
 * request latency by route class and Graph API calls by outcome.
 *
 * Two kinds of value live here. Delivery and handshake counts are decided
 * on the loop thread (the webhook handler and its commit callback) and read
 * there by the scrape, so they are plain integers in a table keyed by Meta
 * app id. Everything bumped elsewhere (ingest writers, workers) is a
 * lib/metrics atomic.
 *
 * Label values stay bounded whatever clients send: an app gets its own row
 * only once it was found in the apps table (STATS_APPS_MAX at most, then
 * "other"); anything refused before that counts under app="unknown". Fields
 * are Meta's known ones (api/fields.h) or "other".
 */
#ifndef HB_STATS_H
#define HB_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/metrics.h"
#include "server/graph.h"
#include "server/graph_error.h"

enum stats_delivery {
    STATS_ACCEPTED,       /* 200, at least one new event or none at all */
    STATS_DUPLICATE,      /* 200, every event was already stored */
    STATS_BAD_SIGNATURE,  /* 403: missing, malformed or wrong X-Hub-Signature-256 */
    STATS_BAD_JSON,       /* 400: signed but not a Meta envelope; stored rejected */
    STATS_TOO_LARGE,      /* 413: over HUBBUB_BODY_LIMIT (refused by h2o) */
    STATS_DB_UNAVAILABLE, /* 503: the database is down or a commit timed out */
    STATS_OVERLOADED,     /* 503: HUBBUB_INGEST_QUEUE_LIMIT reached */
    STATS_UNKNOWN_APP,    /* 404: no such app */
    STATS_BAD_METHOD,     /* 405 */
    STATS_CLIENT_REFUSED, /* 403: without Meta's client certificate (mTLS policy) */
    STATS_SHUTTING_DOWN,  /* 503 while draining */
    STATS_FAILED,         /* 500: the delivery could not be stored */
    STATS_DELIVERY_N
};

enum stats_verification {
    STATS_VERIFY_OK,
    STATS_VERIFY_BAD_TOKEN,
    STATS_VERIFY_BAD_REQUEST,
    STATS_VERIFY_UNKNOWN_APP,
    STATS_VERIFY_UNAVAILABLE,
    STATS_VERIFY_N
};

enum stats_route { STATS_ROUTE_WEBHOOK, STATS_ROUTE_API, STATS_ROUTE_OTHER, STATS_ROUTE_N };

#define STATS_APPS_MAX 10000

struct stats_app; /* one app's delivery counts; loop thread */

struct stats;

struct stats *stats_new(void);
void stats_free(struct stats *s);

/* Loop thread. The row of a Meta app id found in the apps table (created on
 * first use), or of "unknown" when meta_app_id is NULL. Rows live as long as
 * s, so a request may keep the pointer across a commit. */
struct stats_app *stats_app(struct stats *s, const char *meta_app_id);
void stats_delivery(struct stats_app *a, enum stats_delivery outcome);
void stats_verification(struct stats *s, enum stats_verification outcome);

/* Any thread. */
void stats_events_stored(void *s, const char *field, uint64_t n); /* db_ingest on_stored */
void stats_request(struct stats *s, enum stats_route route, uint64_t us);
void stats_graph_call(struct stats *s, const struct graph_response *resp, enum graph_class cls);
struct metrics_histogram *stats_batch_size(struct stats *s);
struct metrics_histogram *stats_commit_us(struct stats *s);

/* Loop thread: appends every family above to b. too_large is h2o's count of
 * bodies it refused as over the limit (they never reach a handler, so they
 * count under app="unknown"). */
void stats_render(struct stats *s, struct buf *b, uint64_t too_large);

#endif
