/*
 * harness.h - what every integration test shares: TAP output, a scratch
 * database per test, the real hubbub binary started on a free port, HTTP with
 * libcurl, and Meta-style signing.
 *
 * Environment (set by ops/run-tests):
 *   HUBBUB_TEST_DATABASE_URL  a PostgreSQL URL whose user may CREATE DATABASE
 *   HUBBUB_TEST_BINARY        the hubbub binary (default build/hubbub)
 * Each test creates its own database hubbub_t_<name>_<pid>, so test files
 * can run in parallel, and drops it at the end.
 */
#ifndef HB_TEST_HARNESS_H
#define HB_TEST_HARNESS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- TAP ---- */
void tap_plan(int n);
bool tap_ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool tap_is_int(long long got, long long want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool tap_is_str(const char *got, const char *want, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool tap_contains(const char *haystack, const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tap_bail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int tap_done(void); /* prints the plan if none was given; returns the exit status */

/* ---- database ---- */
struct h_db {
    char name[64];
    char *url;    /* for hubbub */
    PGconn *conn; /* for the test's own queries */
};

/* Creates a fresh database (tag: short [a-z0-9_] name of the test). */
void h_db_create(struct h_db *db, const char *tag);
void h_db_drop(struct h_db *db);
/* Runs a query; returns the first column of the first row as a number
 * (0 when there is no row); bails out on error. Printf-style. */
long long h_db_int(struct h_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, as text (caller frees; "" when there is no row or NULL). */
char *h_db_text(struct h_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void h_db_exec(struct h_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Builds the URL of database name on the server of url (caller frees). */
char *h_url_with_dbname(const char *url, const char *dbname);

/* ---- a private PostgreSQL cluster ----
 * For tests that stop, kill or restart PostgreSQL under hubbub: such a test
 * must not harm the shared cluster. ops/pg-local runs it (as the postgres
 * user when root), in /tmp/hubbub-<tag>-<pid>, its output appended to a log
 * beside it. */
struct h_cluster {
    char source_dir[256]; /* the checkout holding ops/pg-local */
    char dir[96];
    char log[128];
    bool is_created;
};

void h_cluster_init(struct h_cluster *c, const char *source_dir, const char *tag);
/* ops/pg-local CMD DIR [EXTRA]: its exit status (128 + signal if killed). */
int h_cluster_run(struct h_cluster *c, const char *cmd, const char *extra);
/* Starts it (fsync off), or bails out with the start of its log. */
void h_cluster_start_or_bail(struct h_cluster *c);
/* The URL of its database hubbub (caller frees); bails out on failure. */
char *h_cluster_url(const struct h_cluster *c);
/* Kills it and removes its directory and log; nothing if not created. */
void h_cluster_remove(struct h_cluster *c);

/* ---- processes ---- */
const char *h_binary(void);
const char *h_master_key(void); /* a random key, the same for the whole test */

/* Runs hubbub with argv (argv[0] is the subcommand) and extra "K=V"
 * environment entries (NULL-terminated, may be NULL), feeding stdin_data (may
 * be NULL). The environment always holds DATABASE_URL=db->url (unless db is
 * NULL) and HUBBUB_MASTER_KEY. Returns the exit status; *output (if not NULL)
 * gets stdout and stderr together (caller frees). */
int h_run(struct h_db *db, const char *const *argv, const char *const *env, const char *stdin_data,
          char **output);

/* The same for any program (a path, such as an ops/ script): argv holds
 * its arguments only, and the environment is the one h_run gives hubbub. */
int h_spawn(struct h_db *db, const char *program, const char *const *argv, const char *const *env,
            const char *stdin_data, char **output);

/* migrate, tenant add, app add: bails out on failure. */
void h_setup_app(struct h_db *db, const char *tenant, const char *app_id, const char *verify_token,
                 const char *secret);

struct h_server {
    pid_t pid;
    int port;
    char base[64];      /* http://127.0.0.1:PORT */
    char log_path[128]; /* stdout and stderr of the server */
};

/* Starts `hubbub serve` on a free port with the db's URL and extra env, and
 * waits until /healthz answers. Bails out if it does not come up. A server
 * still running when the test exits is killed. */
void h_server_start(struct h_server *s, struct h_db *db, const char *const *env);
/* The same on the given port (another hubbub may still be listening there:
 * hubbub listens with SO_REUSEPORT, and /healthz may be answered by either). */
void h_server_start_on(struct h_server *s, struct h_db *db, const char *const *env, int port);
/* A signed-able comments delivery, distinct for each n: its comment id is
 * "C<n>" (payload->'value'->>'id'). Caller frees. */
char *h_comment_delivery(int n, size_t *len);

/* Sends sig and waits for the process; returns its exit status, or 128+signal. */
int h_server_stop(struct h_server *s, int sig);
/* The server's log so far (caller frees). */
char *h_server_log(const struct h_server *s);
int h_free_port(void);

/* ---- checks ---- */
/* Lowercase hex SHA-256 of data, e.g. to compare with encode(sha256(body),'hex'). */
void h_sha256_hex(const void *data, size_t len, char out[65]);
/* The integer after "key": in a JSON answer, or -1. */
long long h_json_num(const char *body, const char *key);

/* ---- HTTP ---- */
struct h_resp {
    long status; /* 0 when the request failed at the transport level */
    char *body;
    size_t len;
    char *headers;
    char error[256];
};

/* headers: NULL-terminated "Name: value" strings, may be NULL. */
void h_http(struct h_resp *r, const char *method, const char *url, const char *const *headers,
            const void *body, size_t len);
void h_resp_free(struct h_resp *r);

/* "sha256=<hex>" of HMAC-SHA256(secret, body). */
void h_sign(const char *secret, const void *body, size_t len, char out[72]);

/* POSTs body to /webhooks/app_id with a valid signature. */
void h_post_signed(struct h_resp *r, const struct h_server *s, const char *app_id,
                   const char *secret, const void *body, size_t len);

/* ---- admin API ---- */
/* Every server the harness starts has this operator token unless the test
 * passes HUBBUB_ADMIN_TOKEN= itself. */
#define H_ADMIN_TOKEN "operator-token-for-tests-0123456789abcdef"

/* Calls the admin API: path may hold a query string; token NULL sends no
 * Authorization; json non-NULL is sent with Content-Type: application/json. */
void h_api(struct h_resp *r, const struct h_server *s, const char *token, const char *method,
           const char *path, const char *json);
/* The string value after "key": in a JSON answer, unescaped for \" and
 * \\ only (caller frees), or NULL. */
char *h_json_str(const char *body, const char *key);
/* Creates a tenant through the API as the operator and a key for it;
 * returns the tenant id and writes the key (bails out on failure). */
long long h_api_tenant(const struct h_server *s, const char *name, char key[64]);
/* With key, creates an app (meta_app_id, app_secret, verify_token; bails
 * out if refused) and an Instagram-Login account on it subscribed to one
 * field. Returns the account id (0 if refused); *status gets the account
 * POST's status. */
long long h_api_ig_account(const struct h_server *s, const char *key, const char *meta_app_id,
                           const char *app_secret, const char *verify_token, const char *ig_id,
                           const char *access_token, const char *field, long *status);

/* Reads a file under the source tree (tests/fixtures/...); caller frees. */
char *h_read_fixture(const char *relpath, size_t *len);

/* Monotonic milliseconds. */
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

#endif
