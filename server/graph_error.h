/*
 * graph_error.h - what a Graph API answer means for the job that asked: the
 * error object parsed, the answer classified by PROTOCOL.md section 5, the
 * pause a rate limit asks for, the backoff before a retry, and the JSON a job
 * stores as its last error.
 *
 * Everything here is pure: no curl, no clock, no randomness of its own (the
 * caller passes a random number in), so the retry policy is tested as a table
 * in tests/unit/test_graph.c. The transport that produces the inputs is
 * server/graph.h. Any thread may call; nothing is shared.
 */
#ifndef HB_GRAPH_ERROR_H
#define HB_GRAPH_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Bytes kept of Meta's message (cut at a UTF-8 boundary), and of type and
 * fbtrace_id (a few dozen characters in practice). */
#define GRAPH_ERROR_MESSAGE_MAX 300
#define GRAPH_ERROR_TYPE_MAX 64
#define GRAPH_ERROR_TRACE_MAX 64

/* Meta's {"error":{...}} object. Absent numbers are 0 and absent strings ""
 * (Meta never uses code 0). */
struct graph_error {
    int64_t code;
    int64_t subcode; /* error_subcode */
    bool is_transient;
    char type[GRAPH_ERROR_TYPE_MAX + 1];
    char message[GRAPH_ERROR_MESSAGE_MAX + 1];
    char fbtrace_id[GRAPH_ERROR_TRACE_MAX + 1];
};

/* Whether body[0..len) is a JSON object whose "error" member is an object;
 * then its fields fill *e (a field of the wrong type counts as absent).
 * *e is written on every return: cleared when no error object was found.
 * Garbage, truncated JSON and {"error":"text"} are not error objects. */
bool graph_error_parse(const char *body, size_t len, struct graph_error *e);

enum graph_class {
    GRAPH_OK,                 /* 2xx and no error object */
    GRAPH_TEMPORARY,          /* retry with backoff */
    GRAPH_APP_RATE_LIMIT,     /* code 4: pause every call of the app */
    GRAPH_ACCOUNT_RATE_LIMIT, /* 17, 32, 613, 80001-80014: pause the account */
    GRAPH_POLICY_BLOCK,       /* 368: pause the account long, alert */
    GRAPH_TOKEN_INVALID,      /* 190 (and 102): hold the account's jobs for a new token */
    GRAPH_PERMANENT,          /* fail the job at once */
};

/* Classifies one attempt. http_status is 0 when no complete answer arrived;
 * is_timeout is the transport's timed-out flag; e is the parsed error object
 * or NULL when the body had none. The rules, in order:
 *   1. is_timeout, or no answer (http_status 0)          -> TEMPORARY
 *   2. an error object, by its code (whatever the HTTP status, even 200):
 *      190, 102, or subcode 463/467                       -> TOKEN_INVALID
 *      368                                                -> POLICY_BLOCK
 *      4                                                  -> APP_RATE_LIMIT
 *      17, 32, 613, 80001..80014                          -> ACCOUNT_RATE_LIMIT
 *      1, 2, 341, 1200                                    -> TEMPORARY
 *      is_transient true                                  -> TEMPORARY
 *      10 (any subcode, e.g. 2018278), 100, 200..299, 551 -> PERMANENT
 *      any other code: HTTP 5xx -> TEMPORARY, else          PERMANENT
 *   3. no error object: 2xx -> OK; 5xx, 408, 429 -> TEMPORARY; anything
 *      else (4xx, and 1xx/3xx since redirects are not followed) -> PERMANENT.
 * Choices beyond PROTOCOL.md's table: 341 ("application limit reached",
 * Meta says wait and retry) is TEMPORARY; is_transient is trusted over the
 * generic permanent codes but not over the rate-limit and token codes;
 * 408 and 429 without an error object are TEMPORARY. */
enum graph_class graph_classify(int http_status, bool is_timeout, const struct graph_error *e);

/* "ok", "temporary", "app_rate_limited", "rate_limited", "policy_blocked",
 * "token_invalid", "permanent"; "unknown" outside the enum. Static. */
const char *graph_class_name(enum graph_class c);

/* How long to pause after a rate limit (ms). buc_header is the value of
 * X-Business-Use-Case-Usage, {"<id>":[{"type":..,"call_count":N,
 * "total_cputime":N,"total_time":N,"estimated_time_to_regain_access":MIN},
 * ..],..}; app_usage_header the value of X-App-Usage; either may be NULL.
 * The answer is the largest estimated_time_to_regain_access (minutes) in
 * ms; when no entry gives one above 0, default_ms: Meta names no time then
 * (X-App-Usage never does), whether the percentages show the limit reached or
 * the headers are missing or malformed. Always capped at max_ms; negative
 * arguments count as 0. */
int64_t graph_usage_pause_ms(const char *buc_header, const char *app_usage_header,
                             int64_t default_ms, int64_t max_ms);

/* The highest call_count, total_cputime or total_time percentage in either
 * header, for logs and alerts (100 or more: the limit is reached); -1 when
 * neither header holds one. */
int64_t graph_usage_percent(const char *buc_header, const char *app_usage_header);

/* Delay before retry number attempt (1 = the first retry): base_ms *
 * 2^(attempt-1), capped at cap_ms, with "equal jitter": the upper half of
 * that delay is chosen by random, so the result lies in [ceil(d/2), d] for
 * the capped delay d. Never 0 and never above cap_ms (both at least 1); safe
 * for any attempt and random (attempt below 1 counts as 1). */
int64_t graph_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint64_t random);

/* Appends to out the JSON object a job stores as last_error and the API
 * shows:
 *   {"class":"temporary","http_status":500,"code":2,"subcode":..,
 *    "type":"..","message":"..","fbtrace_id":".."}
 * http_status is left out when 0 (no answer); code, subcode, type and
 * fbtrace_id when e is NULL or they are absent; "is_transient":true is added
 * when Meta said so. message is Meta's when there is one, else
 * transport_message (which must be curl's error text, never anything built
 * from the request, so no token can reach it), else a short sentence such as
 * "HTTP 502 without an error object". Strings are escaped by json.h's writer
 * and cut to GRAPH_ERROR_MESSAGE_MAX bytes. */
void graph_error_json(struct buf *out, int http_status, enum graph_class c,
                      const struct graph_error *e, const char *transport_message);

#endif
