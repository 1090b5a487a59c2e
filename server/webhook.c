/*
 * webhook.c - verification handshake and signed deliveries; see webhook.h.
 *
 * Order of checks on a POST, cheapest and least revealing first: the app id
 * must be digits; the signature header must be well-formed (403 before any
 * lookup); the app must exist (404); the signature must match one of its
 * secrets (403, nothing stored); only then is the body parsed and stored.
 */
#include "server/webhook.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "server/payload.h"
#include "server/signature.h"

#define CHALLENGE_MAX 1024

/* A request waiting for its app to be looked up. */
struct app_wait {
    struct server *srv;
    struct http_hold hold;
    uint8_t digest[SIGNATURE_LEN];
};

/* A request waiting for its delivery to commit. The request may be gone
 * when the commit ends, so what its log line and counters need is copied. */
struct commit_wait {
    struct http_hold hold;
    struct stats_app *stats;
    char req_id[HTTP_REQUEST_ID_MAX + 1];
    char meta_app_id[APP_ID_MAX + 1];
};

static bool valid_app_id(h2o_iovec_t id)
{
    if (id.len == 0 || id.len > APP_ID_MAX)
        return false;
    for (size_t i = 0; i < id.len; i++)
        if (id.base[i] < '0' || id.base[i] > '9')
            return false;
    return true;
}

static void send_lookup_error(struct server *srv, h2o_req_t *req, int rc, bool is_get)
{
    int status = http_status_of(rc);
    if (is_get)
        stats_verification(srv->stats, status == 404   ? STATS_VERIFY_UNKNOWN_APP
                                       : status == 503 ? STATS_VERIFY_UNAVAILABLE
                                                       : STATS_VERIFY_BAD_REQUEST);
    else
        stats_delivery(stats_app(srv->stats, NULL), status == 404   ? STATS_UNKNOWN_APP
                                                    : status == 503 ? STATS_DB_UNAVAILABLE
                                                                    : STATS_FAILED);
    if (status == 404)
        http_send_error(req, status, "not_found", "no app with this id");
    else if (status == 503)
        http_send_error(req, status, "unavailable", "the database is unavailable; retry later");
    else
        http_send_error(req, status, "internal", "the app could not be loaded");
}

/* ---- GET: verification ---- */

static bool token_matches(const struct buf *expected, h2o_iovec_t given)
{
    /* Hash both so that the comparison time does not depend on where they differ
     * or on the expected length. */
    uint8_t a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)expected->data, expected->len, a);
    SHA256((const uint8_t *)given.base, given.len, b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0 && expected->len > 0;
}

#define REFUSAL_LOG_INTERVAL_MS 1000

/* Logs a refused request, at most once a second: a flood of forged requests
 * must not turn into a flood of log lines. */
static void log_refusal(struct server *srv, h2o_req_t *req, const char *msg, const struct app *app,
                        size_t bytes)
{
    uint64_t held;
    if (log_throttle_pass(&srv->refusal_log, uv_now(srv->loop), REFUSAL_LOG_INTERVAL_MS, &held))
        log_warn(msg, "req=%s app=%s bytes=%zu similar_held_back=%" PRIu64, http_request_id(req),
                 app->meta_app_id, bytes, held);
}

static void verify(struct server *srv, h2o_req_t *req, const struct app *app)
{
    h2o_iovec_t mode = {NULL, 0}, token = {NULL, 0}, challenge = {NULL, 0};
    if (http_query(req, "hub.mode", &mode) < 0 || http_query(req, "hub.verify_token", &token) < 0 ||
        http_query(req, "hub.challenge", &challenge) < 0) {
        stats_verification(srv->stats, STATS_VERIFY_BAD_REQUEST);
        http_send_error(req, 400, "bad_request", "the query string is not valid percent-encoding");
        return;
    }
    if (!h2o_memis(mode.base, mode.len, H2O_STRLIT("subscribe"))) {
        stats_verification(srv->stats, STATS_VERIFY_BAD_REQUEST);
        http_send_error(req, 403, "verification_failed", "hub.mode must be \"subscribe\"");
        return;
    }
    if (!token_matches(&app->verify_token, token)) {
        stats_verification(srv->stats, STATS_VERIFY_BAD_TOKEN);
        log_refusal(srv, req, "verification with a wrong verify token", app, 0);
        http_send_error(req, 403, "verification_failed",
                        "hub.verify_token does not match the app's verify token");
        return;
    }
    if (challenge.len == 0 || challenge.len > CHALLENGE_MAX) {
        stats_verification(srv->stats, STATS_VERIFY_BAD_REQUEST);
        http_send_error(req, 400, "bad_request", "hub.challenge is missing or too long");
        return;
    }
    stats_verification(srv->stats, STATS_VERIFY_OK);
    log_info("verification handshake answered", "req=%s app=%s", http_request_id(req),
             app->meta_app_id);
    http_add_header(req, "x-content-type-options", "nosniff");
    http_send(req, 200, "OK", "text/plain; charset=utf-8", challenge.base, challenge.len);
}

/* ---- POST: deliveries ---- */

static bool signature_ok(const struct app *app, const uint8_t digest[SIGNATURE_LEN],
                         h2o_iovec_t body)
{
    bool ok = false;
    /* Check every secret, so timing does not tell which one matched. */
    for (size_t i = 0; i < app->nsecrets; i++)
        ok |= signature_matches(digest, app->secrets[i].data, app->secrets[i].len, body.base,
                                body.len);
    return ok;
}

static struct ingest_delivery *delivery_from(h2o_req_t *req, const struct app *app,
                                             const uint8_t digest[SIGNATURE_LEN],
                                             const struct config *cfg)
{
    struct ingest_delivery *d = ingest_delivery_new();
    d->app_id = app->id;
    d->has_tenant = app->has_tenant;
    d->tenant_id = app->tenant_id;
    d->received_at_us =
        (int64_t)req->processed_at.at.tv_sec * 1000000 + req->processed_at.at.tv_usec;
    signature_format(digest, d->signature);
    d->body = xmalloc(req->entity.len + 1);
    if (req->entity.len != 0)
        memcpy(d->body, req->entity.base, req->entity.len);
    d->body_len = req->entity.len;

    webhook_split(d, req->entity.base != NULL ? req->entity.base : "", req->entity.len, cfg);
    return d;
}

void webhook_split(struct ingest_delivery *d, const char *body, size_t len,
                   const struct config *cfg)
{
    struct payload p;
    const char *why = NULL;
    struct payload_limits lim = {JSON_DEFAULT_MAX_DEPTH, (size_t)cfg->max_items};
    if (payload_split(body, len, &lim, &p, &why) != 0) {
        d->reject_reason = xstrdup(why != NULL ? why : "not a Meta webhook payload");
        return;
    }
    /* The payload's strings move into the delivery; no copies. */
    d->object = p.object;
    d->events = xcalloc(p.nevents ? p.nevents : 1, sizeof(*d->events));
    d->nevents = p.nevents;
    for (size_t i = 0; i < p.nevents; i++) {
        struct payload_event *pe = &p.events[i];
        struct ingest_event *e = &d->events[i];
        e->field = pe->field;
        e->entry_id = pe->entry_id;
        e->has_entry_time = pe->has_entry_time;
        e->entry_time_ms = pe->entry_time_ms;
        e->json = pe->json;
        e->json_len = pe->json_len;
        memcpy(e->dedup_key, pe->dedup_key, INGEST_KEY_LEN);
    }
    free(p.events);
}

static void accept_delivery(struct server *srv, h2o_req_t *req, const struct app *app,
                            const uint8_t digest[SIGNATURE_LEN])
{
    struct stats_app *counts = stats_app(srv->stats, app->meta_app_id);
    if (!signature_ok(app, digest, req->entity)) {
        stats_delivery(counts, STATS_BAD_SIGNATURE);
        log_refusal(srv, req, "delivery with a wrong signature; not stored", app, req->entity.len);
        http_send_error(req, 403, "bad_signature",
                        "X-Hub-Signature-256 does not match the body signed with the app secret");
        return;
    }
    struct ingest_delivery *d = delivery_from(req, app, digest, srv->cfg);
    struct commit_wait *wait = xmalloc(sizeof(*wait));
    http_hold_init(&wait->hold, req);
    wait->stats = counts;
    snprintf(wait->req_id, sizeof(wait->req_id), "%s", http_request_id(req));
    snprintf(wait->meta_app_id, sizeof(wait->meta_app_id), "%s", app->meta_app_id);
    d->data = wait;
    int rc = db_ingest_submit(srv->ingest, d);
    if (rc != 0) {
        http_hold_release(&wait->hold);
        free(wait);
        ingest_delivery_free(d);
        stats_delivery(counts, rc == HB_EBUSY ? STATS_OVERLOADED : STATS_DB_UNAVAILABLE);
        if (rc == HB_EBUSY)
            http_send_error(req, 503, "overloaded", "too many deliveries waiting; retry later");
        else
            http_send_error(req, 503, "unavailable", "the database is unavailable; retry later");
        return;
    }
    srv->inflight++;
}

void webhook_on_completed(struct server *srv, struct ingest_delivery *d)
{
    struct commit_wait *wait = d->data;
    h2o_req_t *req = http_hold_release(&wait->hold);
    srv->inflight--;

    enum stats_delivery outcome = STATS_FAILED;
    if (d->rc == 0 && d->reject_reason != NULL)
        outcome = STATS_BAD_JSON;
    else if (d->rc == 0)
        outcome = d->nevents > 0 && d->nstored == 0 ? STATS_DUPLICATE : STATS_ACCEPTED;
    else if (d->rc == HB_EUNAVAILABLE)
        outcome = STATS_DB_UNAVAILABLE;
    stats_delivery(wait->stats, outcome);

    char tenant[24] = "none";
    if (d->has_tenant)
        snprintf(tenant, sizeof(tenant), "%" PRId64, d->tenant_id);
    char reason[256];
    if (d->rc == 0 && d->reject_reason != NULL)
        log_warn("delivery stored as rejected",
                 "req=%s app=%s tenant=%s delivery_id=%" PRId64 " reason=%s", wait->req_id,
                 wait->meta_app_id, tenant, d->delivery_id,
                 log_quote(reason, sizeof(reason), d->reject_reason, strlen(d->reject_reason)));
    else if (d->rc == 0)
        log_debug("delivery stored",
                  "req=%s app=%s tenant=%s delivery_id=%" PRId64 " events=%zu new=%zu",
                  wait->req_id, wait->meta_app_id, tenant, d->delivery_id, d->nevents, d->nstored);
    else
        log_warn("delivery not stored", "req=%s app=%s tenant=%s error=%s", wait->req_id,
                 wait->meta_app_id, tenant, hb_strerror(d->rc));
    free(wait);

    if (req == NULL) {
        ingest_delivery_free(d);
        return;
    }
    struct buf b;
    buf_init(&b);
    if (d->rc == 0 && d->reject_reason == NULL) {
        buf_printf(&b,
                   "{\"status\":\"stored\",\"delivery_id\":%" PRId64
                   ",\"events\":%zu,\"duplicates\":%zu}",
                   d->delivery_id, d->nevents, d->nevents - d->nstored);
        http_send_json(req, 200, b.data, b.len);
    } else if (d->rc == 0) {
        buf_puts(&b, "{\"error\":{\"code\":\"invalid_payload\",\"message\":");
        json_write_cstr(&b, d->reject_reason);
        buf_printf(&b, ",\"delivery_id\":%" PRId64 "}}", d->delivery_id);
        http_send_json(req, 400, b.data, b.len);
    } else if (d->rc == HB_EUNAVAILABLE) {
        http_send_error(req, 503, "unavailable", "the database is unavailable; retry later");
    } else {
        http_send_error(req, 500, "internal", "the delivery could not be stored");
    }
    buf_dispose(&b);
    ingest_delivery_free(d);
}

/* ---- dispatch ---- */

static void on_app(void *arg, const struct app *app, int rc)
{
    struct app_wait *wait = arg;
    struct server *srv = wait->srv;
    h2o_req_t *req = http_hold_release(&wait->hold);
    srv->inflight--;
    if (req != NULL) {
        if (app == NULL)
            send_lookup_error(srv, req, rc, http_method_is(req, "GET"));
        else if (http_method_is(req, "GET"))
            verify(srv, req, app);
        else
            accept_delivery(srv, req, app, wait->digest);
    }
    free(wait);
}

int webhook_handle(void *ctx, h2o_req_t *req)
{
    struct server *srv = ctx;
    const char *why;
    struct stats_app *unknown = stats_app(srv->stats, NULL);
    if (!mtls_allows(&srv->mtls, srv->http, req, &why)) {
        uint64_t held;
        stats_delivery(unknown, STATS_CLIENT_REFUSED);
        if (log_throttle_pass(&srv->refusal_log, uv_now(srv->loop), REFUSAL_LOG_INTERVAL_MS, &held))
            log_warn("webhook request without Meta's client certificate refused",
                     "req=%s why=\"%s\" refused_total=%" PRIu64 " similar_held_back=%" PRIu64,
                     http_request_id(req), why, srv->mtls.refused, held);
        http_send_error(req, 403, "client_certificate_required", why);
        return 0;
    }
    h2o_iovec_t id = h2o_iovec_init(req->path_normalized.base + strlen(WEBHOOK_PREFIX),
                                    req->path_normalized.len - strlen(WEBHOOK_PREFIX));
    bool is_get = http_method_is(req, "GET"), is_post = http_method_is(req, "POST");
    if (!valid_app_id(id)) {
        if (is_get)
            stats_verification(srv->stats, STATS_VERIFY_UNKNOWN_APP);
        else
            stats_delivery(unknown, STATS_UNKNOWN_APP);
        http_send_error(req, 404, "not_found", "no app with this id");
        return 0;
    }
    if (!is_get && !is_post) {
        stats_delivery(unknown, STATS_BAD_METHOD);
        http_add_header(req, "allow", "GET, POST");
        http_send_error(req, 405, "method_not_allowed", "use GET to verify and POST to deliver");
        return 0;
    }
    uint8_t digest[SIGNATURE_LEN];
    if (is_post) {
        const h2o_iovec_t *sig = http_header(req, "x-hub-signature-256");
        if (sig == NULL || signature_parse(sig->base, sig->len, digest) != 0) {
            stats_delivery(unknown, STATS_BAD_SIGNATURE);
            http_send_error(req, 403, "bad_signature",
                            sig == NULL ? "X-Hub-Signature-256 is missing"
                                        : "X-Hub-Signature-256 must be sha256= and 64 hex digits");
            return 0;
        }
    }
    if (srv->stopping) {
        if (is_get)
            stats_verification(srv->stats, STATS_VERIFY_UNAVAILABLE);
        else
            stats_delivery(unknown, STATS_SHUTTING_DOWN);
        http_send_error(req, 503, "unavailable", "shutting down; retry later");
        return 0;
    }

    char meta_app_id[APP_ID_MAX + 1];
    memcpy(meta_app_id, id.base, id.len);
    meta_app_id[id.len] = '\0';
    const struct app *app = appcache_find(srv->apps, meta_app_id);
    if (app != NULL) {
        if (is_get)
            verify(srv, req, app);
        else
            accept_delivery(srv, req, app, digest);
        return 0;
    }
    struct app_wait *wait = xcalloc(1, sizeof(*wait));
    wait->srv = srv;
    http_hold_init(&wait->hold, req);
    if (is_post)
        memcpy(wait->digest, digest, SIGNATURE_LEN);
    srv->inflight++;
    appcache_fetch(srv->apps, meta_app_id, on_app, wait);
    return 0;
}
