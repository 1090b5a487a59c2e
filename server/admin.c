/*
 * admin.c - the admin API's HTTP side; see admin.h.
 *
 * On the loop: match the route, check the token's shape and rate, check the
 * body's type and size, copy the request into an api_call. On a worker
 * thread: take a connection, authenticate, run the handler. Back on the
 * loop: answer, unless the client has gone.
 */
#include "server/admin.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/openapi.h"
#include "lib/hb.h"
#include "lib/log.h"

#define ADMIN_TOKEN_MIN 32
#define RATELIMIT_KEYS 10000

struct admin_job {
    uv_work_t work;
    uint8_t address[RATELIMIT_KEY_LEN]; /* the client's, for failed authentications */
    struct server *srv;
    struct http_hold hold;
    const struct api_route *route;
    struct api_call call;
    uint64_t started_ms;
};

int admin_load_token(const struct config *cfg, char *out, size_t outsz, const char **why)
{
    out[0] = '\0';
    if (cfg->admin_token != NULL) {
        snprintf(out, outsz, "%s", cfg->admin_token);
    } else if (cfg->admin_token_file != NULL) {
        FILE *f = fopen(cfg->admin_token_file, "r");
        if (f == NULL) {
            *why = "HUBBUB_ADMIN_TOKEN_FILE cannot be read";
            return HB_EIO;
        }
        if (fgets(out, (int)outsz, f) == NULL)
            out[0] = '\0';
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
    } else {
        return 0;
    }
    size_t n = strlen(out);
    if (n < ADMIN_TOKEN_MIN || n >= outsz - 1) {
        explicit_bzero(out, outsz);
        *why = "the admin token must be 32 to 126 characters (try: openssl rand -hex 32)";
        return HB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i] <= ' ' || out[i] > '~') {
            explicit_bzero(out, outsz);
            *why = "the admin token must be printable ASCII without spaces";
            return HB_EINVAL;
        }
    }
    return 0;
}

static bool is_operator_token(const struct server *srv, const char *token, size_t len)
{
    if (srv->admin_token[0] == '\0')
        return false;
    /* Compare hashes: the time taken says nothing about where they differ. */
    uint8_t a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)srv->admin_token, strlen(srv->admin_token), a);
    SHA256((const uint8_t *)token, len, b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

/* The client's address as a rate-limit key (v4-mapped v6 as v4). */
static void address_key(h2o_req_t *req, uint8_t key[RATELIMIT_KEY_LEN])
{
    struct sockaddr_storage ss;
    uint8_t raw[17] = {0};
    size_t n = 1;
    if (req->conn->callbacks->get_peername != NULL &&
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0) {
        if (ss.ss_family == AF_INET) {
            memcpy(raw + 1, &((struct sockaddr_in *)&ss)->sin_addr, 4);
            n = 5;
        } else if (ss.ss_family == AF_INET6) {
            const uint8_t *a = (const uint8_t *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
            static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            bool v4 = memcmp(a, v4mapped, 12) == 0;
            raw[0] = v4 ? 0 : 6;
            memcpy(raw + 1, v4 ? a + 12 : a, v4 ? 4 : 16);
            n = v4 ? 5 : 17;
        }
    }
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(raw, n, digest);
    memcpy(key, digest, RATELIMIT_KEY_LEN);
}

static void send_unauthorized(h2o_req_t *req, const char *message)
{
    http_add_header(req, "www-authenticate", "Bearer realm=\"hubbub\"");
    http_send_error(req, 401, "unauthorized", message);
}

bool admin_require_operator(struct server *srv, h2o_req_t *req)
{
    uint8_t address[RATELIMIT_KEY_LEN];
    address_key(req, address);
    int64_t blocked_ms = ratelimit_peek(srv->auth_failures, address, uv_now(srv->loop));
    if (blocked_ms > 0) {
        char s[24];
        snprintf(s, sizeof(s), "%" PRId64, (blocked_ms + 999) / 1000);
        http_add_header(req, "retry-after", s);
        http_send_error(req, 429, "rate_limited",
                        "too many failed authentications from this address; slow down");
        return false;
    }
    const h2o_iovec_t *auth = http_header(req, "authorization");
    if (auth == NULL || auth->len < 7 || strncasecmp(auth->base, "Bearer ", 7) != 0 ||
        !is_operator_token(srv, auth->base + 7, auth->len - 7)) {
        ratelimit_take(srv->auth_failures, address, uv_now(srv->loop));
        send_unauthorized(req, "send Authorization: Bearer <operator token>");
        return false;
    }
    return true;
}

/* ---- on a worker thread ---- */

/* Forgets a handler's answer, to run it again elsewhere. */
static void reset_answer(struct api_call *call)
{
    call->status = 0;
    buf_reset(&call->out);
    call->location[0] = '\0';
    call->retry_after = 0;
    call->sqlstate[0] = '\0';
}

/* Runs a replica read on the replica; false when it must run on the primary
 * instead: no replica, it is down or went away during the query, WAL replay
 * cancelled the query (a recovery conflict), or it answered 404. A listing
 * names what it lists by (account=) and that account may be too new for the
 * replica: only the primary can say it does not exist. */
static bool run_on_replica(struct admin_job *job)
{
    struct db_replica *replica = job->srv->replica;
    if (replica == NULL || !api_route_is_replica_read(job->route))
        return false;
    PGconn *c = db_replica_acquire(replica);
    if (c == NULL)
        return false;
    job->call.is_on_replica = true;
    job->route->handler(&job->call, c);
    job->call.is_on_replica = false;
    bool is_redo = !db_replica_release(replica, c) || job->call.status == 404;
    if (!is_redo && job->call.status >= 500 && db_replica_is_conflict(job->call.sqlstate)) {
        db_replica_conflicted(replica);
        is_redo = true;
    }
    if (!is_redo)
        return true;
    reset_answer(&job->call);
    return false;
}

static void run_job(uv_work_t *w)
{
    struct admin_job *job = w->data;
    struct api_call *call = &job->call;
    PGconn *c = db_pool_acquire(job->srv->pool);
    if (c == NULL) {
        api_error(call, 503, "unavailable", "the database is unavailable; retry later");
        return;
    }
    /* Keys are checked on the primary even for replica reads: a key created
     * a moment ago may not have reached the replica yet. The primary's
     * connection is held meanwhile, so a fallback never waits for one. */
    if (api_authenticate(call, c)) {
        if (job->route->access == API_OPERATOR && !call->caller.is_operator)
            api_error(call, 404, "not_found", "no such resource");
        else if (!run_on_replica(job))
            job->route->handler(call, c);
    }
    db_pool_release(job->srv->pool, c);
}

/* ---- back on the loop ---- */

static void finish_job(uv_work_t *w, int status)
{
    struct admin_job *job = w->data;
    struct api_call *call = &job->call;
    struct server *srv = job->srv;
    srv->inflight--;
    if (status != 0 || call->status == 0)
        api_error(call, 500, "internal", "the request could not be completed");
    if (call->status == 401)
        ratelimit_take(srv->auth_failures, job->address, uv_now(srv->loop));

    char ctx[128];
    api_log_context(call, ctx, sizeof(ctx));
    log_info("admin request", "%s method=%s route=%s status=%d ms=%" PRIu64, ctx,
             job->route->method, job->route->pattern, call->status,
             uv_now(srv->loop) - job->started_ms);

    /* A changed secret or a deleted app must not be used a moment longer here. */
    bool writes = strcmp(job->route->method, "GET") != 0;
    if (writes && call->status < 300 &&
        (strncmp(job->route->pattern, "/v1/apps", 8) == 0 ||
         strcmp(job->route->pattern, "/v1/tenants/{id}") == 0))
        appcache_expire_all(srv->apps);

    h2o_req_t *req = http_hold_release(&job->hold);
    if (req != NULL) {
        http_add_header(req, "cache-control", "no-store");
        if (call->location[0] != '\0')
            http_add_header(req, "location", call->location);
        if (call->retry_after > 0) {
            char s[16];
            snprintf(s, sizeof(s), "%d", call->retry_after);
            http_add_header(req, "retry-after", s);
        }
        if (call->status == 401)
            http_add_header(req, "www-authenticate", "Bearer realm=\"hubbub\"");
        if (call->status == 204)
            http_send(req, 204, http_reason(204), "application/json", "", 0);
        else
            http_send_json(req, call->status, call->out.data != NULL ? call->out.data : "",
                           call->out.len);
    }
    api_call_dispose(call);
    free(job);
}

/* ---- the handler ---- */

/* Copies the Idempotency-Key header; one that cannot be used as sent (empty,
 * too long, repeated) is left empty for the handler to refuse. */
static void copy_idempotency_key(h2o_req_t *req, struct api_call *call)
{
    static const char name[] = "idempotency-key";
    ssize_t i = h2o_find_header_by_str(&req->headers, name, sizeof(name) - 1, -1);
    if (i < 0)
        return;
    call->has_idempotency_key = true;
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    if (v->len == 0 || v->len >= sizeof(call->idempotency_key) ||
        h2o_find_header_by_str(&req->headers, name, sizeof(name) - 1, i) >= 0)
        return;
    memcpy(call->idempotency_key, v->base, v->len);
    call->idempotency_key[v->len] = '\0';
}

static bool is_json_type(const h2o_iovec_t *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof(want) - 1;
    if (ct == NULL || ct->len < n || strncasecmp(ct->base, want, n) != 0)
        return false;
    return ct->len == n || ct->base[n] == ';' || ct->base[n] == ' ';
}

int admin_handle(void *ctx, h2o_req_t *req)
{
    struct server *srv = ctx;
    char method[8];
    snprintf(method, sizeof(method), "%.*s", (int)(req->method.len < 7 ? req->method.len : 7),
             req->method.base);

    int64_t ids[2];
    size_t nids = 0;
    bool path_known;
    char allow[64];
    const struct api_route *route =
        api_match(method, req->path_normalized.base, req->path_normalized.len, ids, &nids,
                  &path_known, allow, sizeof(allow));
    if (route == NULL && path_known) {
        http_add_header(req, "allow", allow);
        http_send_error(req, 405, "method_not_allowed", "this resource does not take that method");
        return 0;
    }
    if (route == NULL) {
        http_send_error(req, 404, "not_found", "no such resource");
        return 0;
    }

    /* Keys are 256-bit random, but each wrong one still costs a lookup:
     * an address that keeps failing waits. */
    uint8_t address[RATELIMIT_KEY_LEN];
    address_key(req, address);
    int64_t blocked_ms = ratelimit_peek(srv->auth_failures, address, uv_now(srv->loop));
    if (blocked_ms > 0) {
        char s[24];
        snprintf(s, sizeof(s), "%" PRId64, (blocked_ms + 999) / 1000);
        http_add_header(req, "retry-after", s);
        http_send_error(req, 429, "rate_limited",
                        "too many failed authentications from this address; slow down");
        return 0;
    }

    const h2o_iovec_t *auth = http_header(req, "authorization");
    if (auth == NULL || auth->len < 7 || strncasecmp(auth->base, "Bearer ", 7) != 0) {
        ratelimit_take(srv->auth_failures, address, uv_now(srv->loop));
        send_unauthorized(req, "send Authorization: Bearer <API key>");
        return 0;
    }
    const char *token = auth->base + 7;
    size_t token_len = auth->len - 7;
    if (token_len == 0 || token_len >= sizeof(((struct api_call *)0)->token)) {
        ratelimit_take(srv->auth_failures, address, uv_now(srv->loop));
        send_unauthorized(req, "the API key is not valid or was revoked");
        return 0;
    }

    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)token, token_len, digest);
    int64_t wait_ms = ratelimit_take(srv->ratelimit, digest, uv_now(srv->loop));
    if (wait_ms > 0) {
        char s[24];
        snprintf(s, sizeof(s), "%" PRId64, (wait_ms + 999) / 1000);
        http_add_header(req, "retry-after", s);
        http_send_error(req, 429, "rate_limited", "too many requests with this key; slow down");
        return 0;
    }

    bool is_operator = is_operator_token(srv, token, token_len);
    if (!is_operator &&
        (token_len != API_KEY_LEN || memcmp(token, API_KEY_PREFIX, strlen(API_KEY_PREFIX)) != 0)) {
        ratelimit_take(srv->auth_failures, address, uv_now(srv->loop));
        send_unauthorized(req, "the API key is not valid or was revoked");
        return 0;
    }

    bool has_body =
        http_method_is(req, "POST") || http_method_is(req, "PATCH") || http_method_is(req, "PUT");
    if (has_body && !is_json_type(http_header(req, "content-type"))) {
        http_send_error(req, 415, "unsupported_media_type",
                        "send the body as Content-Type: application/json");
        return 0;
    }
    if (req->entity.len > API_BODY_MAX) {
        http_send_error(req, 413, "payload_too_large", "the body is larger than 64 KiB");
        return 0;
    }
    if (srv->stopping) {
        http_send_error(req, 503, "unavailable", "shutting down; retry later");
        return 0;
    }

    struct admin_job *job = xcalloc(1, sizeof(*job));
    struct api_call *call = &job->call;
    job->srv = srv;
    job->route = route;
    memcpy(job->address, address, sizeof(address));
    job->started_ms = uv_now(srv->loop);
    call->method = route->method;
    memcpy(call->ids, ids, sizeof(ids));
    call->nids = nids;
    call->keys = srv->keys;
    call->caller.is_operator = is_operator;
    call->caller.tenant_id = -1;
    call->caller.key_id = -1;
    snprintf(call->request_id, sizeof(call->request_id), "%s", http_request_id(req));
    memcpy(call->token, token, token_len);
    call->token_len = token_len;
    copy_idempotency_key(req, call);
    if (req->query_at != SIZE_MAX) {
        int rc = api_parse_query(call, req->path.base + req->query_at + 1,
                                 req->path.len - req->query_at - 1);
        if (rc != 0) {
            api_call_dispose(call);
            free(job);
            http_send_error(req, 400, "bad_request",
                            rc == HB_ETOOBIG ? "too many query parameters"
                                             : "the query string is not valid percent-encoding");
            return 0;
        }
    }
    if (has_body && req->entity.base != NULL) {
        call->body = xmalloc(req->entity.len + 1);
        memcpy(call->body, req->entity.base, req->entity.len);
        call->body[req->entity.len] = '\0';
        call->body_len = req->entity.len;
    }
    http_hold_init(&job->hold, req);
    job->work.data = job;
    srv->inflight++;
    uv_queue_work(srv->loop, &job->work, run_job, finish_job);
    return 0;
}

int admin_openapi(void *ctx, h2o_req_t *req)
{
    (void)ctx;
    if (!http_method_is(req, "GET") && !http_method_is(req, "HEAD")) {
        http_add_header(req, "allow", "GET, HEAD");
        http_send_error(req, 405, "method_not_allowed", "use GET");
        return 0;
    }
    http_send(req, 200, "OK", "application/yaml", api_openapi_yaml, api_openapi_yaml_len);
    return 0;
}
