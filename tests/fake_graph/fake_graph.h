/*
 * fake_graph.h - a strict, in-process stand-in for Meta's Graph API, for the
 * integration tests and the benchmark (Meta is unreachable from here).
 *
 * fg_start() opens an HTTP/1.1 server on 127.0.0.1 and a free port, with an
 * accept thread and one thread per connection: keep-alive, Content-Length
 * bodies (chunked bodies get 411), "Expect: 100-continue", query strings and
 * application/x-www-form-urlencoded or JSON bodies. Each instance plays one
 * host: FG_INSTAGRAM for https://graph.instagram.com, FG_FACEBOOK for
 * https://graph.facebook.com; point hubbub at fg_base_url() with
 * HUBBUB_GRAPH_INSTAGRAM_URL / HUBBUB_GRAPH_FACEBOOK_URL (fg_env() builds that
 * "K=V" entry). One API version is accepted, e.g. "v25.0".
 *
 * Endpoints (PROTOCOL.md sections 3 and 4), every answer with X-App-Usage:
 *   POST   /{ver}/{node}/subscribed_apps   subscribed_fields=a,b (query, form or
 *                                          JSON body) -> {"success":true}
 *   GET    /{ver}/{node}/subscribed_apps   -> {"data":[{"id","name","subscribed_fields"}]}
 *   DELETE /{ver}/{node}/subscribed_apps   -> {"success":true}
 *   POST   /{ver}/{node|me}/messages       JSON Send API body
 *                                          -> {"recipient_id","message_id"}
 * A node is an Instagram account id (FG_INSTAGRAM) or a Page id (FG_FACEBOOK)
 * registered with fg_add_node(); its one valid token may come as
 * "Authorization: Bearer X" or as access_token in the query or the body.
 * Errors are Meta's error objects with an fbtrace_id, HTTP 400 unless said
 * otherwise: no token 104; a token that is unknown or not the node's 190; a
 * wrong version or an unknown node 100 (subcode 33, GraphMethodException);
 * an unknown edge or extra path 2500; an invalid parameter 100.
 *
 * Checks run in this order, and an injected failure (fg_fail) only fires for a
 * request that passed all of them, i.e. one Meta would have accepted: path and
 * version, token present, token known, node known and the token its own, edge
 * and method, parameters.
 *
 * Everything is recorded for assertions (fg_requests, fg_sent, ...). Times
 * are CLOCK_MONOTONIC microseconds unless named _wall_. A request "finishes"
 * when its answer is about to be written (so that a client that reacts to an
 * answer can never look like an overlap), or when the client hung up first.
 *
 * Build: the Makefile compiles the .c files of tests/fake_graph into $(BUILD)/obj and
 * links them into every integration test (INTEG_LIB). Elsewhere (the
 * benchmark), link fake_graph.o before $(BUILD)/libhubbub.a (it uses
 * api/json and lib/buf) with -lpthread; it needs no other flags or libraries.
 *
 * Thread-safety: every function may be called from any thread while the
 * server runs, except fg_stop(), which must be the last call on fg.
 * Strings returned are copies the caller frees unless said otherwise. Tokens
 * are kept in test memory and never printed.
 */
#ifndef HB_FAKE_GRAPH_H
#define HB_FAKE_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fg_flavour {
    FG_INSTAGRAM, /* graph.instagram.com: Instagram-Login webhook field names */
    FG_FACEBOOK,  /* graph.facebook.com: the Page edge, Messenger field names */
};

/* What a request was taken for. FG_ANY matches every kind in a match. */
enum fg_kind {
    FG_ANY = 0,
    FG_SUBSCRIBE,      /* POST subscribed_apps */
    FG_SUBSCRIBED_GET, /* GET subscribed_apps */
    FG_UNSUBSCRIBE,    /* DELETE subscribed_apps */
    FG_SEND,           /* POST messages */
    FG_OTHER,          /* anything else (in records only) */
};

struct fg;

/* ---- life cycle ---- */

/* Starts a server of flavour accepting version (e.g. "v25.0"). NULL when the
 * socket or a thread cannot be had (errno set). */
struct fg *fg_start(enum fg_flavour flavour, const char *version);
/* Closes the listener and every connection (a delayed answer is cut short),
 * joins the threads, frees everything. fg may be NULL. */
void fg_stop(struct fg *fg);

/* "http://127.0.0.1:PORT", owned by fg. */
const char *fg_base_url(const struct fg *fg);
int fg_port(const struct fg *fg);
/* "HUBBUB_GRAPH_INSTAGRAM_URL=http://127.0.0.1:PORT" (or ..._FACEBOOK_URL=),
 * owned by fg: ready for an env array of h_server_start(). */
const char *fg_env(const struct fg *fg);

/* ---- registry ---- */

/* Adds node (digits) whose only valid token is token, subscribed to by Meta
 * app app_id; adding a node again replaces its token and app and keeps its
 * fields. */
void fg_add_node(struct fg *fg, const char *node_id, const char *token, const char *app_id);
/* Replaces the node's token; NULL invalidates it (every call then gets 190).
 * false when the node is unknown. */
bool fg_set_token(struct fg *fg, const char *node_id, const char *token);

/* The fields the node's app is subscribed to, as Meta holds them: "a,b" in
 * the order last written, or NULL when none (or no such node). */
char *fg_fields(struct fg *fg, const char *node_id);
/* Changes them behind hubbub's back (drift); NULL or "" clears. */
bool fg_set_fields(struct fg *fg, const char *node_id, const char *fields_csv);
/* Replaces the field names POST subscribed_apps accepts (comma list); NULL
 * restores the flavour's list. */
void fg_set_valid_fields(struct fg *fg, const char *fields_csv);

/* ---- behaviour ---- */

/* Every answer waits ms first (0: none, the default). For the benchmark. */
void fg_set_latency_ms(struct fg *fg, int ms);
/* call_count in X-App-Usage of ordinary answers (default 1; FG_ERR_4 sends 100). */
void fg_set_app_usage(struct fg *fg, int call_count);
/* Delay of FG_SLOW / FG_SLOW_ACCEPTED (default 3000 ms) and the
 * estimated_time_to_regain_access (minutes, default 1) of the rate-limit
 * modes, taken by each fg_fail() call when it is made. */
void fg_set_slow_ms(struct fg *fg, int ms);
void fg_set_regain_minutes(struct fg *fg, int minutes);

/* Which requests a failure applies to: kind (FG_ANY: all), and when not NULL
 * the node (after resolving "me") and, for sends, the recipient id. */
struct fg_match {
    enum fg_kind kind;
    const char *node;
    const char *recipient;
};

enum fg_mode {
    FG_HTTP_500,      /* HTTP 500, text/html body, no Graph error object */
    FG_ERR_1,         /* HTTP 500, code 1 "An unknown error has occurred.", is_transient */
    FG_ERR_2,         /* HTTP 500, code 2 "An unexpected error has occurred...", is_transient */
    FG_ERR_1200,      /* HTTP 500, code 1200 temporary send failure, is_transient */
    FG_ERR_4,         /* HTTP 403, code 4 application request limit; X-App-Usage 100 */
    FG_ERR_17,        /* code 17 subcode 2446079 user request limit; X-Business-Use-Case-Usage */
    FG_ERR_32,        /* code 32 page request limit; X-Business-Use-Case-Usage */
    FG_ERR_613,       /* code 613 rate limit; X-Business-Use-Case-Usage */
    FG_ERR_80002,     /* code 80002 Instagram account rate limit; X-Business-Use-Case-Usage */
    FG_ERR_190,       /* code 190 subcode 460 session invalidated (the token stays valid) */
    FG_ERR_200,       /* code 200 permission missing */
    FG_ERR_10_WINDOW, /* code 10 subcode 2018278: outside the allowed window */
    FG_ERR_100,       /* code 100 subcode 2018001 "No matching user found" */
    FG_ERR_368,       /* code 368 subcode 1390008 blocked for policy */
    FG_ERR_551,       /* code 551 subcode 1545041 person unavailable */
    FG_SLOW,          /* waits the slow delay, then HTTP 500 code 2; nothing done */
    FG_SLOW_ACCEPTED, /* done at once (a send recorded, its mid issued; a subscription
                         written), answered with success only after the slow delay */
};

/* The next count requests (count < 0: all until fg_clear_faults) that match
 * m and would otherwise succeed get mode instead. Rules are tried in the
 * order they were added; the first with count left fires. */
void fg_fail(struct fg *fg, struct fg_match m, enum fg_mode mode, int count);
void fg_clear_faults(struct fg *fg);
/* Requests the rules added so far may still fail (counting an endless rule
 * as INT32_MAX). */
int fg_faults_left(struct fg *fg);

/* ---- recording ---- */

enum fg_token_where { FG_TOKEN_NONE, FG_TOKEN_HEADER, FG_TOKEN_QUERY, FG_TOKEN_BODY };

struct fg_request {
    long seq;          /* arrival order from 0 */
    enum fg_kind kind; /* from method and path, whatever the outcome */
    char *method;
    char *path;    /* without the query */
    char *query;   /* raw, without '?'; "" when none */
    char *headers; /* raw header lines as received, "\r\n"-separated */
    char *body;    /* NUL-terminated copy; body_len bytes */
    size_t body_len;
    char *token; /* as presented, or NULL */
    enum fg_token_where token_where;
    char *node;              /* the node addressed ("me" resolved when possible), or NULL */
    char *recipient;         /* sends: recipient.id when present, or NULL */
    char *message_id;        /* sends that were accepted, or NULL */
    int64_t arrived_us;      /* the whole request was read */
    int64_t arrived_wall_us; /* the same, CLOCK_REALTIME */
    int64_t finished_us;     /* the answer was decided; 0 while in flight */
    int status;              /* HTTP status; 0 in flight or when the client hung up first */
    int error_code;          /* Graph error code answered, 0 for none */
    bool is_injected;        /* answered by an fg_fail rule */
};

/* A copy of every request recorded so far; *n gets their number. */
struct fg_request *fg_requests(struct fg *fg, size_t *n);
void fg_requests_free(struct fg_request *r, size_t n);
/* Recorded requests matching m (finished or not). */
long fg_count(struct fg *fg, struct fg_match m);
/* Forgets records, sends and maxima (not nodes, fields or faults). */
void fg_reset_records(struct fg *fg);

/* Accepted sends (a message_id issued), in the order they were accepted. */
struct fg_send {
    char *node;
    char *recipient;
    char *text; /* message.text, or "<type>:<url>" for an attachment */
    char *message_id;
    long seq; /* the request's seq */
    int64_t at_us;
    int64_t at_wall_us;
};

/* Accepted sends to node and recipient (each NULL: any). */
long fg_sends(struct fg *fg, const char *node, const char *recipient);
struct fg_send *fg_sent(struct fg *fg, const char *node, const char *recipient, size_t *n);
void fg_sent_free(struct fg_send *s, size_t n);
/* Their texts joined with '\n' ("" when none), handy for order checks. */
char *fg_sent_texts(struct fg *fg, const char *node, const char *recipient);

/* Most send requests to (node, recipient) in flight at once (each NULL: the
 * most for any pair). Counted from a request's arrival to its finish. */
int fg_max_in_flight(struct fg *fg, const char *node, const char *recipient);
/* Most requests of any kind in flight at once. */
int fg_max_concurrency(struct fg *fg);

/* ---- waiting (true when the condition held before timeout_ms) ---- */

/* At least n accepted sends in all, or to (node, recipient) (each NULL: any). */
bool fg_wait_sends(struct fg *fg, long n, int timeout_ms);
bool fg_wait_sends_to(struct fg *fg, const char *node, const char *recipient, long n,
                      int timeout_ms);
/* At least n finished requests matching m. */
bool fg_wait_requests(struct fg *fg, struct fg_match m, long n, int timeout_ms);
/* The node's fields equal fields_csv as a set (NULL or "": none). */
bool fg_wait_fields(struct fg *fg, const char *node_id, const char *fields_csv, int timeout_ms);

#endif
