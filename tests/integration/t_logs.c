/*
 * t_logs.c - hubbub's log at debug level, through webhooks, the admin API
 * and a worker's Graph API calls: no secret, token or payload body appears in
 * it; every line is logfmt starting ts= level= msg=; request lines carry req=
 * (the proxy's X-Request-Id when well-formed, echoed in the answer) and app=
 * or tenant=; job lines carry job=, tenant= and app= (the Meta app id); and
 * the level follows HUBBUB_CONFIG_FILE on SIGHUP.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define APP "7880001"
#define APP_SECRET "zqAPPSECRETzq0123456789"
#define VERIFY_TOKEN "zqVERIFYTOKENzq0123"
#define ACCESS_TOKEN "zqACCESSTOKENzq0123456789"
#define BODY_MARKER "zqBODYMARKERzq"
#define REPLY_MARKER "zqREPLYTEXTzq"
#define IG_NODE "17841400000000951"

static struct h_db db;
static struct h_server srv;
static char config_path[64];

static void write_config(const char *level, const char *pool)
{
    FILE *f = fopen(config_path, "w");
    if (f == NULL)
        tap_bail("cannot write %s", config_path);
    fprintf(f, "# hubbub settings\nHUBBUB_LOG_LEVEL=\"%s\"\nHUBBUB_DB_POOL_SIZE=%s\n", level, pool);
    fclose(f);
}

/* One logfmt line: key=value pairs, values bare or double-quoted with \"
 * and \\ escapes. Fills keys (up to 32) and says whether it parsed. */
static bool parse_logfmt(const char *line, size_t len, char keys[][32], int *nkeys)
{
    size_t i = 0;
    *nkeys = 0;
    while (i < len) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t k = i;
        while (i < len && (isalnum((unsigned char)line[i]) || line[i] == '_'))
            i++;
        if (i == k || i == len || line[i] != '=' || i - k >= 32)
            return false;
        if (*nkeys < 32) {
            memcpy(keys[*nkeys], line + k, i - k);
            keys[*nkeys][i - k] = '\0';
            (*nkeys)++;
        }
        i++;
        if (i < len && line[i] == '"') {
            i++;
            while (i < len && line[i] != '"') {
                if (line[i] == '\\')
                    i++;
                i++;
            }
            if (i >= len)
                return false;
            i++;
        } else {
            while (i < len && line[i] != ' ') {
                if (line[i] == '"' || line[i] == '=')
                    return false;
                i++;
            }
        }
        if (i < len && line[i] != ' ')
            return false;
    }
    return true;
}

static bool has_key(char keys[][32], int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

static long post_signed(const char *secret, const char *body, const char *request_id,
                        char **headers)
{
    char url[128], sig[72], sig_h[100], id_h[160];
    snprintf(url, sizeof(url), "%s/webhooks/%s", srv.base, APP);
    h_sign(secret, body, strlen(body), sig);
    snprintf(sig_h, sizeof(sig_h), "X-Hub-Signature-256: %s", sig);
    snprintf(id_h, sizeof(id_h), "X-Request-Id: %s", request_id != NULL ? request_id : "");
    const char *h[] = {"Content-Type: application/json", sig_h, request_id != NULL ? id_h : NULL,
                       NULL};
    struct h_resp r;
    h_http(&r, "POST", url, h, body, strlen(body));
    long st = r.status;
    if (headers != NULL)
        *headers = strdup(r.headers != NULL ? r.headers : "");
    h_resp_free(&r);
    return st;
}

static char *delivery(int n)
{
    char *b = malloc(512);
    snprintf(b, 512,
             "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":"
             "1700000000,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"LC%d\","
             "\"text\":\"" BODY_MARKER " %d\"}}]}]}",
             n, n);
    return b;
}

/* Lines of the log from offset on that contain needle. */
static int count_lines(const char *log, size_t from, const char *needle)
{
    int n = 0;
    for (const char *p = log + from; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool wait_log(const char *needle, size_t from, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    while (h_now_ms() < deadline) {
        char *log = h_server_log(&srv);
        bool found = strlen(log) > from && strstr(log + from, needle) != NULL;
        free(log);
        if (found)
            return true;
        h_sleep_ms(10);
    }
    return false;
}

static size_t log_len(void)
{
    char *log = h_server_log(&srv);
    size_t n = strlen(log);
    free(log);
    return n;
}

int main(void)
{
    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, IG_NODE, ACCESS_TOKEN, APP);
    snprintf(config_path, sizeof(config_path), "/tmp/hubbub-t-logs-%d.env", (int)getpid());
    write_config("debug", "4");

    h_db_create(&db, "logs");
    const char *migrate[] = {"migrate", NULL};
    if (h_run(&db, migrate, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    char cfg_env[96];
    snprintf(cfg_env, sizeof(cfg_env), "HUBBUB_CONFIG_FILE=%s", config_path);
    /* Empty in the environment: the file's level applies. */
    const char *env[] = {cfg_env,
                         "HUBBUB_LOG_LEVEL=",
                         fg_env(ig),
                         "HUBBUB_WORKERS=1",
                         "HUBBUB_JOB_POLL_INTERVAL=100ms",
                         "HUBBUB_JOB_BACKOFF=50ms",
                         "HUBBUB_JOB_BACKOFF_MAX=100ms",
                         NULL};
    h_server_start(&srv, &db, env);

    /* ---- the admin API, a worker, webhooks ---- */
    char key[64];
    h_api_tenant(&srv, "logsco", key);
    struct h_resp r;
    char json[512];
    long status;
    long long acc = h_api_ig_account(&srv, key, APP, APP_SECRET, VERIFY_TOKEN, IG_NODE,
                                     ACCESS_TOKEN, "comments", &status);
    tap_is_int(status, 201, "an account is created");
    tap_ok(h_wait_sql(&db, "succeeded", H_WAIT_MS,
                      "SELECT state FROM jobs WHERE account_id = %lld AND kind = 'subscribe'", acc),
           "its subscribe job runs on a worker");
    /* A reply whose first send fails with a temporary error: a send job's
     * lines, at info and debug, and a text that must not be logged. */
    fg_fail(ig, (struct fg_match){FG_SEND, NULL, NULL}, FG_ERR_2, 1);
    snprintf(json, sizeof(json), "/v1/accounts/%lld/messages", acc);
    h_api(&r, &srv, key, "POST", json, "{\"recipient_id\":\"1789\",\"text\":\"" REPLY_MARKER "\"}");
    tap_is_int(r.status, 202, "a reply is queued");
    long long msg = h_json_num(r.body, "id");
    h_resp_free(&r);
    tap_ok(h_wait_sql(&db, "succeeded 2", H_WAIT_MS,
                      "SELECT state || ' ' || attempts FROM jobs WHERE message_id = %lld", msg),
           "and sent on its second attempt");
    tap_ok(wait_log("msg=\"reply sent\"", 0, H_WAIT_MS), "which is logged");

    char url[256];
    snprintf(url, sizeof(url),
             "%s/webhooks/%s?hub.mode=subscribe&hub.verify_token=" VERIFY_TOKEN
             "&hub.challenge=zqCHALLENGEzq",
             srv.base, APP);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 200, "the verification handshake succeeds");
    h_resp_free(&r);
    snprintf(url, sizeof(url),
             "%s/webhooks/%s?hub.mode=subscribe&hub.verify_token=zqWRONGTOKENzq&hub.challenge=1",
             srv.base, APP);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 403, "a wrong verify token is refused");
    h_resp_free(&r);

    char *headers = NULL;
    char *d1 = delivery(1);
    tap_is_int(post_signed(APP_SECRET, d1, "proxy-id.42:a_b-c", &headers), 200,
               "a delivery with a proxy's X-Request-Id is stored");
    tap_contains(headers, "x-request-id: proxy-id.42:a_b-c", "and the id is echoed");
    free(headers);
    tap_ok(wait_log("req=proxy-id.42:a_b-c app=" APP, 0, H_WAIT_MS),
           "the delivery's log line carries the proxy's id and the app");
    char *d2 = delivery(2);
    tap_is_int(post_signed(APP_SECRET, d2, "bad id with spaces", &headers), 200,
               "a delivery with a malformed X-Request-Id is stored");
    char *id = strstr(headers, "x-request-id: ");
    bool generated = id != NULL && strspn(id + 14, "0123456789abcdef") == 16;
    tap_ok(generated, "and answered with an id of our own instead");
    if (generated) {
        char needle[64];
        snprintf(needle, sizeof(needle), "req=%.16s app=" APP, id + 14);
        tap_ok(wait_log(needle, 0, H_WAIT_MS), "which its log line carries");
    } else {
        tap_ok(false, "which its log line carries");
    }
    free(headers);
    char longid[200];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    tap_is_int(post_signed(APP_SECRET, d1, longid, &headers), 200, "a repeated delivery");
    tap_ok(strstr(headers, longid) == NULL, "an over-long X-Request-Id is not echoed");
    free(headers);
    tap_is_int(post_signed("zqNOTTHESECRETzq", d2, NULL, NULL), 403, "a forged delivery");
    tap_is_int(post_signed(APP_SECRET, "{\"" BODY_MARKER "\":true}", NULL, NULL), 400,
               "a signed non-envelope");
    h_api(&r, &srv, key, "GET", "/v1/events?limit=5", NULL);
    tap_is_int(r.status, 200, "the tenant lists its events");
    h_resp_free(&r);
    h_api(&r, &srv, "zqnotakeyzq", "GET", "/v1/events", NULL);
    tap_is_int(r.status, 401, "a bad key is refused");
    h_resp_free(&r);
    tap_ok(wait_log("level=debug msg=\"delivery stored\"", 0, H_WAIT_MS),
           "debug lines are written (level from the config file)");

    /* ---- what the log holds ---- */
    char *log = h_server_log(&srv);
    static const char *const secrets[] = {APP_SECRET,      VERIFY_TOKEN,       ACCESS_TOKEN,
                                          BODY_MARKER,     H_ADMIN_TOKEN,      "zqWRONGTOKENzq",
                                          "zqCHALLENGEzq", "zqNOTTHESECRETzq", REPLY_MARKER};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        tap_ok(strstr(log, secrets[i]) == NULL, "the log does not hold %.14s...", secrets[i]);
    tap_ok(strstr(log, key) == NULL && strstr(log, key + 8) == NULL, "nor the tenant's API key");
    tap_ok(strstr(log, h_master_key()) == NULL, "nor the master key");
    int lines = 0, bad = 0, admin_lines = 0, admin_bad = 0, webhook_lines = 0, webhook_bad = 0;
    int job_lines = 0, job_bad = 0, retry_lines = 0;
    for (char *p = log; *p != '\0';) {
        char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char keys[32][32];
        int nk;
        lines++;
        if (!parse_logfmt(p, len, keys, &nk) || nk < 3 || strcmp(keys[0], "ts") != 0 ||
            strcmp(keys[1], "level") != 0 || strcmp(keys[2], "msg") != 0) {
            bad++;
            tap_diag("not logfmt: %.*s", (int)len, p);
        } else if (strncmp(strstr(p, "msg="), "msg=\"admin request\"", 19) == 0) {
            admin_lines++;
            if (!has_key(keys, nk, "req") || !has_key(keys, nk, "tenant"))
                admin_bad++;
        } else if (strncmp(strstr(p, "msg="), "msg=\"delivery", 13) == 0 ||
                   strncmp(strstr(p, "msg="), "msg=\"verification", 17) == 0) {
            webhook_lines++;
            if (!has_key(keys, nk, "req") || !has_key(keys, nk, "app"))
                webhook_bad++, tap_diag("without req= or app=: %.*s", (int)len, p);
        } else if (has_key(keys, nk, "job")) {
            job_lines++;
            char line[1024];
            snprintf(line, sizeof(line), "%.*s ", (int)len, p);
            retry_lines += strstr(line, "msg=\"job will be retried\"") != NULL;
            const char *t = strstr(line, " tenant=");
            if (!has_key(keys, nk, "kind") || t == NULL || !isdigit((unsigned char)t[8]) ||
                strstr(line, " app=" APP " ") == NULL)
                job_bad++, tap_diag("without kind=, tenant= or app=: %.*s", (int)len, p);
        }
        p = eol != NULL ? eol + 1 : p + len;
    }
    tap_ok(lines > 10 && bad == 0, "all %d lines are logfmt with ts, level and msg first", lines);
    tap_ok(admin_lines >= 4 && admin_bad == 0,
           "all %d admin API lines carry req= and tenant=", admin_lines);
    tap_ok(webhook_lines >= 5 && webhook_bad == 0,
           "all %d webhook lines carry req= and app=", webhook_lines);
    tap_ok(job_lines >= 4 && retry_lines == 1 && job_bad == 0,
           "all %d job lines (%d of a retry) carry job=, kind=, the tenant and the app", job_lines,
           retry_lines);
    free(log);

    /* ---- SIGHUP ---- */
    size_t mark = log_len();
    write_config("info", "4");
    kill(srv.pid, SIGHUP);
    tap_ok(wait_log("msg=\"SIGHUP: log level changed\" from=debug to=info", mark, H_WAIT_MS),
           "SIGHUP after the file says info: the change is logged");
    char *d3 = delivery(3);
    tap_is_int(post_signed(APP_SECRET, d3, "after-info", NULL), 200, "a delivery at info level");
    h_api(&r, &srv, key, "GET", "/v1/events?limit=1", NULL);
    h_resp_free(&r);
    tap_ok(wait_log("admin request", mark, H_WAIT_MS), "info lines still appear");
    log = h_server_log(&srv);
    tap_is_int(count_lines(log, mark, "level=debug"), 0, "and no debug line does");
    free(log);

    mark = log_len();
    write_config("debug", "7");
    kill(srv.pid, SIGHUP);
    tap_ok(wait_log("from=info to=debug", mark, H_WAIT_MS), "back to debug on the next SIGHUP");
    tap_ok(wait_log("setting=HUBBUB_DB_POOL_SIZE", mark, H_WAIT_MS),
           "a setting that needs a restart is named");
    log = h_server_log(&srv);
    tap_contains(log + mark, "takes effect at the next start", "as such");
    tap_ok(strstr(log + mark, "=7") == NULL, "without its value");
    free(log);
    char *d4 = delivery(4);
    tap_is_int(post_signed(APP_SECRET, d4, "after-debug", NULL), 200, "a delivery at debug level");
    tap_ok(wait_log("level=debug msg=\"delivery stored\" req=after-debug", mark, H_WAIT_MS),
           "writes its debug line again");

    mark = log_len();
    FILE *f = fopen(config_path, "w");
    fputs("HUBBUB_LOG_LEVEL=loud\n", f);
    fclose(f);
    kill(srv.pid, SIGHUP);
    tap_ok(wait_log("settings not reloaded; keeping the running ones", mark, H_WAIT_MS),
           "a bad file on SIGHUP keeps the running settings");
    tap_ok(kill(srv.pid, 0) == 0, "and hubbub runs on");

    tap_is_int(h_server_stop(&srv, SIGTERM), 0, "hubbub exits cleanly");
    free(d1);
    free(d2);
    free(d3);
    free(d4);
    unlink(config_path);
    h_db_drop(&db);
    fg_stop(ig);
    return tap_done();
}
