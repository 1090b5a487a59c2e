/*
 * api.h - one call of the admin API (/v1/...), as a resource handler sees it,
 * and the route table.
 *
 * The HTTP layer (server/admin.c) matches the route on the loop thread,
 * checks the bearer token's shape and rate limit, copies what the handler
 * needs into a struct api_call, and runs the handler on a worker thread with
 * a database connection. Handlers therefore never touch h2o: they read the
 * call's copies and write status, body and Location into it. Authentication
 * of tenant keys is a database lookup, so it happens on the worker too,
 * before the handler runs (api_authenticate()).
 *
 * Output JSON comes from PostgreSQL's json_build_object() or from
 * json_write_string(); user data is never pasted into JSON text.
 */
#ifndef HB_API_H
#define HB_API_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/json.h"
#include "lib/buf.h"
#include "lib/keyring.h"

#define API_BODY_MAX (64 * 1024)
#define API_LIMIT_DEFAULT 50
#define API_LIMIT_MAX 1000
#define API_MAX_PARAMS 64
#define API_KEY_PREFIX "hb_"
#define API_KEY_LEN 46          /* "hb_" + 43 base64url characters (32 bytes) */
#define API_KEY_SHOWN_PREFIX 12 /* characters of a key listings show */

struct api_caller {
    bool is_operator;
    int64_t tenant_id; /* the key's tenant; -1 for the operator */
    int64_t key_id;    /* -1 for the operator */
};

struct api_param {
    char *name;  /* percent-decoded, NUL-terminated */
    char *value; /* percent-decoded, NUL-terminated (may hold no NUL bytes) */
};

struct api_call {
    /* Input: owned by the call, read-only for handlers. */
    const char *method; /* "GET", "POST", ... (static) */
    int64_t ids[2];     /* path parameters in order: {id}, then {key_id} */
    size_t nids;
    struct api_param params[API_MAX_PARAMS]; /* query string, in order */
    size_t nparams;
    char *body; /* NUL-terminated copy; NULL when the request had none */
    size_t body_len;
    char token[128]; /* the bearer token as sent (wiped after authentication) */
    size_t token_len;
    struct api_caller caller;
    struct keyring *keys;
    /* The Idempotency-Key header, NUL-terminated. has_idempotency_key with
     * an empty key means one was sent but empty, over 255 bytes or twice:
     * the routes that read it answer 400. Other routes ignore it. */
    char idempotency_key[256];
    bool has_idempotency_key;
    char request_id[72]; /* for log lines: req=<id> */

    /* Output. status 0 means the handler set nothing: a 500. */
    int status;
    struct buf out;     /* JSON body; empty for 204 */
    char location[128]; /* Location header for a 201, or "" */
    int retry_after;    /* seconds, for 429 and 503; 0 for none */
    char sqlstate[6];   /* of a statement that failed (api_db_error), or "" */
    bool is_on_replica; /* runs on the read replica, which the primary backs up */
};

/* "req=<id> tenant=<id|operator|none>" for a log line about call. */
void api_log_context(const struct api_call *call, char *out, size_t outsz);

typedef void (*api_handler_fn)(struct api_call *call, PGconn *c);

enum api_access {
    API_OPERATOR, /* the operator only; tenant keys get 404 */
    API_ANY,      /* a tenant key, or the operator acting on any tenant */
};

struct api_route {
    const char *method;
    const char *pattern; /* "/v1/tenants/{id}/keys/{key_id}" as documented */
    enum api_access access;
    api_handler_fn handler;
};

/* Every route, in match order (api/routes.c). */
const struct api_route *api_routes(size_t *count);

/* true for the routes that run on the read replica when one is set
 * (HUBBUB_READ_DATABASE_URL): reads whose answer may lag the primary a
 * little (the event and delivery listings). */
bool api_route_is_replica_read(const struct api_route *route);

/* Matches method and path (no query string) against the table. Returns the
 * route and fills ids/nids; NULL and *path_known = true when the path matches
 * some route but not with this method (a 405), false when no route matches
 * (a 404). allow gets "GET, POST" for a 405. */
const struct api_route *api_match(const char *method, const char *path, size_t path_len,
                                  int64_t ids[2], size_t *nids, bool *path_known, char *allow,
                                  size_t allowsz);

/* Splits and percent-decodes a query string (without '?'). 0, or HB_EINVAL
 * for bad percent-encoding or a NUL byte, HB_ETOOBIG for too many params. */
int api_parse_query(struct api_call *call, const char *q, size_t len);
void api_call_dispose(struct api_call *call);

/* Checks the bearer token against api_keys (tenant keys) unless the HTTP
 * layer already recognised the operator's. false with a 401 set otherwise. */
bool api_authenticate(struct api_call *call, PGconn *c);

/* ---- for handlers ---- */

/* The caller's tenant as a query parameter for a tenant scope written
 * "($n::bigint IS NULL OR tenant_id = $n)": NULL for the operator, who sees
 * every tenant. buf holds the digits. */
const char *api_scope(const struct api_call *call, char buf[24]);

/* A positive id query parameter: 0 absent, 1 present (out gets its
 * digits), -1 with a 400 set. */
int api_query_id(struct api_call *call, const char *name, char out[24]);

/* The first value of query parameter name, or NULL. */
const char *api_param(const struct api_call *call, const char *name);
/* false with a 400 set for a parameter not in allowed (NULL-terminated), or
 * given twice unless it is the repeatable one (may be NULL): a misspelt
 * filter must not silently widen a list. */
bool api_params_only(struct api_call *call, const char *const *allowed, const char *repeatable);

/* Sets status and a JSON error body. 422s name the offending input. */
void api_error(struct api_call *call, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void api_invalid(struct api_call *call, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void api_not_found(struct api_call *call, const char *what); /* "no tenant with this id" */
/* Maps a failed libpq result: 503 for a lost database, 409 for a unique
 * violation (with conflict_msg), 500 otherwise (logged without parameters). */
void api_db_error(struct api_call *call, PGconn *c, const PGresult *r, const char *conflict_msg);

/* Zeroes the request body at once, as soon as a handler has read the
 * secrets in it (the call also wipes it when disposed). */
void api_wipe_body(struct api_call *call);

/* Parses the body as a JSON object. false with a 400 set otherwise. */
bool api_body_object(struct api_call *call, struct json_doc *doc);
/* Rejects members of the body object not in allowed (NULL-terminated):
 * false with a 422 naming the first unknown member. */
bool api_body_only(struct api_call *call, const struct json_doc *doc, const char *const *allowed);
/* String member key: 1 and the decoded value in out, 0 when absent or null,
 * -1 (422 set) when not a string, empty while required, or longer than max. */
int api_body_string(struct api_call *call, const struct json_doc *doc, const char *key, size_t max,
                    struct buf *out);

/* limit (default 50, 1..1000): false with a 400 set when malformed. */
bool api_limit(struct api_call *call, int *limit);
/* order=desc|asc: true for asc. false with a 400 set when malformed. */
bool api_order_asc(struct api_call *call, bool *asc);

/* Opaque cursors: two int64 values (a time in microseconds and an id, or an
 * id and 0) in base64url. decode: 0 absent, 1 present, -1 with 400 set. */
void api_cursor_encode(int64_t a, int64_t b, char out[32]);
int api_cursor_decode(struct api_call *call, int64_t *a, int64_t *b);

/* A time query parameter (RFC 3339 or Unix seconds) as microseconds since
 * the Unix epoch: 0 absent, 1 present, -1 with 400 set. */
int api_time_param(struct api_call *call, const char *name, int64_t *us);

/* Renders a list: {"data":[rows...],"next_cursor":...}. rows are JSON texts
 * in column row_col of r; when r holds more than limit rows the extra row is
 * dropped and next_cursor is built from columns ca and cb of the last row
 * kept (cb < 0: use 0). Sets status 200. */
void api_reply_list(struct api_call *call, const PGresult *r, int row_col, int limit, int ca,
                    int cb);
/* Sets status and the body to the single JSON text of row 0, column 0. */
void api_reply_row(struct api_call *call, int status, const PGresult *r);

/* Transactions: begin and commit set the error answer and return false when
 * PostgreSQL refuses; rollback ends an open transaction, if any (after an
 * error or a refusal of ours). */
bool api_begin(struct api_call *call, PGconn *c);
bool api_commit(struct api_call *call, PGconn *c);
void api_rollback(PGconn *c);

/* Runs a parameterised statement; text parameters (NULL for SQL NULL). */
PGresult *api_exec(PGconn *c, const char *sql, int n, const char *const *params);

/* Hint shown for a secret: "…" and its last 4 characters (nothing for
 * secrets under 12 characters, which would give away too much). */
void api_secret_hint(const char *secret, size_t len, char out[16]);

#endif
