/*
 * graph.h - the Graph API client: one blocking HTTPS call at a time on
 * libcurl's easy interface.
 *
 * A worker thread owns one graph_client for its lifetime, so the client's
 * CURL easy handle keeps its connections (and TLS sessions, DNS answers)
 * from one job to the next. A client is used by ONE thread at a time; it
 * holds no locks and shares nothing with other clients. graph_request()
 * blocks for up to the total timeout: never call it on the loop thread.
 *
 * The call knows nothing of jobs or error codes: it moves bytes and reports
 * what happened on the wire. What an answer means is server/graph_error.h.
 *
 * The access token travels only in an "Authorization: Bearer" header, never
 * in the URL: a URL is something people log. Nothing here logs; the error
 * text handed back is curl's error buffer, which never holds request headers.
 *
 * The process must call curl_global_init(CURL_GLOBAL_DEFAULT) once at start,
 * before any thread creates a client (and curl_global_cleanup() after the
 * last client is freed): it is not thread-safe, so the client never calls it.
 */
#ifndef HB_GRAPH_H
#define HB_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "lib/buf.h"

#define GRAPH_DEFAULT_MAX_RESPONSE (1024 * 1024)
#define GRAPH_DEFAULT_USER_AGENT "hubbub/0.1.0"
/* A usage header longer than this is dropped (treated as absent). */
#define GRAPH_USAGE_HEADER_MAX 8192

struct graph_options {
    int64_t connect_timeout_ms; /* 0: curl's default (300 s) */
    int64_t timeout_ms;         /* whole call; 0: none (do not) */
    size_t max_response_bytes;  /* 0: GRAPH_DEFAULT_MAX_RESPONSE */
    const char *user_agent;     /* NULL: GRAPH_DEFAULT_USER_AGENT; copied */
    const char *ca_file;        /* NULL: the system's CA store; copied (tests with TLS) */
};

struct graph_client;

/* Aborts when curl cannot make a handle (only out of memory does that). The
 * options are copied. Free with graph_client_free(); NULL is a no-op. */
struct graph_client *graph_client_new(const struct graph_options *opt);
void graph_client_free(struct graph_client *gc);

struct graph_response {
    int http_status;    /* status of a complete answer; 0 when none arrived */
    struct buf body;    /* the answer's body, always NUL-terminated; owned */
    char *app_usage;    /* X-App-Usage value, NULL when absent; owned */
    char *buc_usage;    /* X-Business-Use-Case-Usage value, NULL when absent; owned */
    CURLcode curl_code; /* CURLE_OK when a complete answer arrived */
    bool is_timeout;    /* the connect or total timeout struck */
    bool is_too_big;    /* the body exceeded max_response_bytes; the transfer was cut */
    /* The call failed, but after (part of) the request may have been sent:
     * Meta may have acted on it. Matters for sends, which are not
     * idempotent. False when the call failed before the request could leave
     * (DNS, connect, TLS handshake), and when a complete answer arrived. */
    bool is_maybe_delivered;
    char error[CURL_ERROR_SIZE]; /* curl's error text; "" when curl_code is CURLE_OK */
};

/* Disposes what graph_request() put in r; a zeroed struct is fine too. */
void graph_response_dispose(struct graph_response *r);

/* One HTTP call. method is "GET", "POST" or "DELETE"; url is complete
 * (scheme http or https, query included) and must not contain the token;
 * token, when not NULL, is sent only as "Authorization: Bearer <token>";
 * content_type and body (body_len bytes) may be NULL (a POST then sends an
 * empty body). Redirects are not followed; no "Expect: 100-continue".
 *
 * *out is initialised on every return and must be disposed. Returns 0 when
 * a complete answer arrived, whatever its HTTP status; HB_EIO when the
 * transfer failed (out says how: curl_code, error, is_timeout, is_too_big,
 * is_maybe_delivered); HB_EINVAL, with nothing sent, for an unknown method,
 * a token or content type holding control characters, or a URL that holds
 * the token. */
int graph_request(struct graph_client *gc, const char *method, const char *url, const char *token,
                  const char *content_type, const char *body, size_t body_len,
                  struct graph_response *out);

/* Appends s[0..n) to out percent-encoded for a query parameter value: every
 * byte but ALPHA, DIGIT, '-', '.', '_', '~' becomes %XX (uppercase hex), so
 * ',' is %2C and ' ' is %20. Pure; any thread. */
void graph_query_escape(struct buf *out, const char *s, size_t n);

#endif
