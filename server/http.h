/*
 * http.h - hubbub's HTTP front on libh2o: the listener, the routes, and what
 * every handler uses to answer.
 *
 * One loop thread runs h2o. Handlers never block: work that needs the
 * database goes to other threads and the answer is sent later from a loop
 * callback. Between the two, the request may be disposed (an HTTP/2 client
 * that gave up), so a handler that answers later keeps an http_hold: a slot in
 * req->pool whose dispose hook clears the hold, and answers only if
 * http_hold_release() still returns the request.
 *
 * Errors are JSON, {"error":{"code":"...","message":"..."}}, and
 * http_status_of() is the one map from HB_E* codes to HTTP status codes.
 */
#ifndef HB_HTTP_H
#define HB_HTTP_H

#include <h2o.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct http;

typedef int (*http_handler_fn)(void *ctx, h2o_req_t *req);

/* request_timeout_ms bounds the time a client may take to send one request
 * (header and body) and the time a keep-alive connection may stay idle. */
struct http *http_new(uv_loop_t *loop, size_t body_limit, int64_t request_timeout_ms);
void http_free(struct http *h);

/* Routes requests whose path starts with prefix ("/webhooks/") or equals it
 * exactly when exact is set. Routes are matched in the order added; anything
 * unmatched gets a JSON 404. Call before http_listen. */
void http_route(struct http *h, const char *prefix, bool exact, http_handler_fn fn, void *ctx);

#define HTTP_MAX_LISTENERS 4

/* Binds host:port and starts accepting: plain HTTP when ssl is NULL, else
 * HTTPS with that context (HTTP/2 by ALPN; http takes its own reference).
 * client_verified says the context checks client certificates in the
 * handshake. Returns the listener's index, or HB_EIO with err set. */
int http_listen(struct http *h, const char *listen, SSL_CTX *ssl, bool client_verified, char *err,
                size_t errsz);
/* New connections on listener use ssl from now on; open ones keep theirs. */
void http_replace_ssl(struct http *h, int listener, SSL_CTX *ssl);
/* Whether req came over a connection whose client certificate the
 * handshake verified (a listener made with client_verified). */
bool http_client_verified(const struct http *h, h2o_req_t *req);

/* Graceful shutdown, step 1: take the connections already in the listeners'
 * backlogs, stop accepting, and turn keep-alive off (every answer from now
 * on says Connection: close). */
void http_stop_accepting(struct http *h);
/* Whether some connection holds part of a request not yet handed to a
 * handler: closing it now would drop a request its client has sent. */
bool http_has_partial_request(const struct http *h);
/* Step 2, once no request is waiting on work and none is partly read:
 * close idle connections. */
void http_close_idle(struct http *h);
size_t http_connection_count(const struct http *h);

struct http_hold {
    h2o_req_t *req; /* NULL once the request was disposed */
    void *slot;
};

void http_hold_init(struct http_hold *hold, h2o_req_t *req);
/* Detaches the hold; returns the request if it is still there to answer. */
h2o_req_t *http_hold_release(struct http_hold *hold);

/* Answers with the given status and body (copied), content type and length. */
void http_send(h2o_req_t *req, int status, const char *reason, const char *content_type,
               const char *body, size_t len);
void http_send_json(h2o_req_t *req, int status, const char *json, size_t len);
/* {"error":{"code":code,"message":message}}; both are escaped. */
void http_send_error(h2o_req_t *req, int status, const char *code, const char *message);
/* name must be a string literal (h2o keeps the pointer); value is copied. */
void http_add_header(h2o_req_t *req, const char *name, const char *value);

/* Called when each request is done (its pool is disposed), on the loop, with
 * the prefix of the route that took it (NULL: none did) and the time from
 * its first byte to its end in microseconds. */
typedef void (*http_observer_fn)(void *ctx, const char *route, uint64_t us);
void http_set_observer(struct http *h, http_observer_fn fn, void *ctx);

/* The request's id: the X-Request-Id a proxy sent when it is 1 to
 * HTTP_REQUEST_ID_MAX characters of [A-Za-z0-9._:-], else one made here (16
 * hex digits). Every answer carries it in X-Request-Id, and log lines about
 * the request say req=<id>. Valid while req is. */
#define HTTP_REQUEST_ID_MAX 64
const char *http_request_id(h2o_req_t *req);

/* Bodies h2o refused with 413 before any route saw them (over body_limit). */
uint64_t http_too_large_count(const struct http *h);

int http_status_of(int hb_rc);
const char *http_reason(int status);

/* The value of request header name (lower case), or NULL. */
const h2o_iovec_t *http_header(h2o_req_t *req, const char *name);

/* Finds query parameter name and percent-decodes it into req->pool.
 * 1 found, 0 absent, HB_EINVAL when the query string is malformed.
 * The first occurrence wins. */
int http_query(h2o_req_t *req, const char *name, h2o_iovec_t *out);

bool http_method_is(h2o_req_t *req, const char *method);

#endif
