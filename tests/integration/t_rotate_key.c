/*
 * t_rotate_key.c - the master key is rotated while hubbub serves: signed
 * deliveries go on getting 200 (and are stored) throughout; the key file
 * gains a new first key, SIGHUP, `hubbub keys rotate` re-seals every value
 * while the admin API writes new ones (through a signalled process, sealing
 * with the new key, and through one not signalled, still sealing with the
 * old); a final pass leaves every value under the new key; the old key
 * leaves the file, SIGHUP, and signatures, the verify handshake and the
 * workers' use of account tokens all still work; another run changes
 * nothing; and the process never signalled opens new-key values by reading
 * the file again when it meets an unknown key id. A value written while
 * `hubbub keys rotate` waits for its row is kept, in every column.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/secretbox.h"
#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define K_OLD "5f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define K_NEW "a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f"
#define K_STRAY "1111111111111111111111111111111111111111111111111111111111111111"
#define K_THIRD "2222222222222222333333333333333344444444444444445555555555555555"
#define APP1 "7770000000001"
#define APP2 "7770000000002"
#define SECRET1 "app-secret-one-0123456789"
#define SECRET1B "app-secret-one-b-0123456789"
#define SECRET1C "app-secret-one-c-0123456789"
#define SECRET2 "app-secret-two-0123456789"
#define VTOKEN1 "verify-one-0123456789"
#define VTOKEN2 "verify-two-0123456789"
#define IG1 "17841400000000601"
#define IG2 "17841400000000602"
#define IG3 "17841400000000603"
#define TOK1 "ig-token-one-0123456789"
#define TOK1B "ig-token-one-b-0123456789"
#define TOK2 "ig-token-two-0123456789"
#define TOK2B "ig-token-two-b-0123456789"
#define TOK3 "ig-token-three-0123456789"
#define BULK 3000

static struct h_db db;
static struct h_server a, b; /* a is signalled; b never is */
static char key_path[64], key_env[128], tkey[64];
static char old_id[9], new_id[9];

/* Every sealed value, in a fixed order, for "nothing changed" checks. */
static const char ALL_SEALED[] =
    "SELECT md5(string_agg(v, ',' ORDER BY v)) FROM ("
    " SELECT 'a' || id || verify_token_sealed v FROM apps"
    " UNION ALL SELECT 's' || id || secret_sealed FROM app_secrets"
    " UNION ALL SELECT 'c' || id || access_token_sealed FROM accounts"
    " UNION ALL SELECT 'j' || id || (payload->>'access_token_sealed') FROM jobs"
    "  WHERE payload ? 'access_token_sealed') x";

static long long not_under(const char *id)
{
    return h_db_int(&db,
                    "SELECT (SELECT count(*) FROM apps WHERE verify_token_sealed NOT LIKE "
                    "'hb1:%s:%%')"
                    " + (SELECT count(*) FROM app_secrets WHERE secret_sealed NOT LIKE 'hb1:%s:%%')"
                    " + (SELECT count(*) FROM accounts WHERE access_token_sealed NOT LIKE "
                    "'hb1:%s:%%')"
                    " + (SELECT count(*) FROM jobs WHERE payload ? 'access_token_sealed'"
                    "   AND payload->>'access_token_sealed' NOT LIKE 'hb1:%s:%%')",
                    id, id, id, id);
}

static void write_key_file(const char *first, const char *second)
{
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.tmp", key_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        tap_bail("cannot write the key file");
    fprintf(f, "%s\n", first);
    if (second != NULL)
        fprintf(f, "%s\n", second);
    fclose(f);
    chmod(tmp, 0600);
    if (rename(tmp, key_path) != 0)
        tap_bail("cannot rename the key file");
}

static void key_id(const char *hex, char out[9])
{
    struct secretbox sb;
    secretbox_init(&sb);
    if (secretbox_add_key_hex(&sb, hex, strlen(hex)) != 0)
        tap_bail("bad test key");
    memcpy(out, sb.keys[0].id, 9);
    secretbox_dispose(&sb);
}

static int run(const char *const *argv, char **out)
{
    const char *env[] = {"HUBBUB_MASTER_KEY=", key_env, NULL};
    return h_run(&db, argv, env, NULL, out);
}

static long api(const struct h_server *s, const char *method, const char *path, const char *json,
                char **body)
{
    struct h_resp r;
    h_api(&r, s, tkey, method, path, json);
    long st = r.status;
    if (body != NULL)
        *body = strdup(r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return st;
}

static bool wait_log(const struct h_server *s, const char *needle, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    do {
        char *log = h_server_log(s);
        bool found = strstr(log, needle) != NULL;
        free(log);
        if (found)
            return true;
        h_sleep_ms(10);
    } while (h_now_ms() < end);
    return false;
}

static long signed_post(const struct h_server *s, const char *app, const char *secret, int n)
{
    size_t len;
    char *body = h_comment_delivery(n, &len);
    struct h_resp r;
    h_post_signed(&r, s, app, secret, body, len);
    long st = r.status;
    h_resp_free(&r);
    free(body);
    return st;
}

static long handshake(const struct h_server *s, const char *app, const char *token, char **body)
{
    char url[256];
    snprintf(url, sizeof(url),
             "%s/webhooks/%s?hub.mode=subscribe&hub.challenge=4242&hub.verify_token=%s", s->base,
             app, token);
    struct h_resp r;
    h_http(&r, "GET", url, NULL, NULL, 0);
    long st = r.status;
    *body = strdup(r.body != NULL ? r.body : "");
    h_resp_free(&r);
    return st;
}

/* ---- deliveries sent all along ---- */

struct feeder {
    pthread_t thread;
    atomic_bool stop;
    atomic_long ok, bad, last_bad;
};

static struct feeder feed;

static void *feed_run(void *arg)
{
    (void)arg;
    for (int n = 1; !atomic_load(&feed.stop); n++) {
        long st = signed_post(&a, APP1, SECRET1, n);
        if (st == 200) {
            atomic_fetch_add(&feed.ok, 1);
        } else {
            atomic_fetch_add(&feed.bad, 1);
            atomic_store(&feed.last_bad, st);
        }
        h_sleep_ms(2); /* steady traffic, leaving the machine to the rest */
    }
    return NULL;
}

/* ---- API writes during the rotation ---- */

struct writer {
    pthread_t thread;
    long long app1, acc1, acc2;
    long st_secret_a, st_secret_b, st_token_a, st_token_b, st_app2;
    bool is_during; /* the rotation had started and not finished around the writes */
};

static void *write_run(void *arg)
{
    struct writer *w = arg;
    PGconn *c = PQconnectdb(db.url);
    char q[256];
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM accounts WHERE access_token_sealed LIKE 'hb1:%s:%%'", new_id);
    /* Wait until the rotation is under way. */
    int64_t end = h_now_ms() + H_WAIT_MS;
    long started = 0;
    while (h_now_ms() < end) {
        PGresult *r = PQexec(c, q);
        started = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : 0;
        PQclear(r);
        if (started > 0)
            break;
        h_sleep_ms(5);
    }
    char path[64], json[256];
    snprintf(path, sizeof(path), "/v1/apps/%lld", w->app1);
    w->st_secret_a = api(&a, "PATCH", path, "{\"add_app_secret\":\"" SECRET1B "\"}", NULL);
    w->st_secret_b = api(&b, "PATCH", path, "{\"add_app_secret\":\"" SECRET1C "\"}", NULL);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", w->acc1);
    w->st_token_a = api(&a, "PATCH", path, "{\"access_token\":\"" TOK1B "\"}", NULL);
    snprintf(path, sizeof(path), "/v1/accounts/%lld", w->acc2);
    w->st_token_b = api(&b, "PATCH", path, "{\"access_token\":\"" TOK2B "\"}", NULL);
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"" APP2 "\",\"app_secret\":\"" SECRET2 "\","
             "\"verify_token\":\"" VTOKEN2 "\"}");
    w->st_app2 = api(&a, "POST", "/v1/apps", json, NULL);
    /* Were bulk rows still under the old key after the writes? */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM accounts WHERE access_token_sealed LIKE 'hb1:%s:%%'", old_id);
    PGresult *r = PQexec(c, q);
    long left = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    w->is_during = started > 0 && left > 0;
    PQfinish(c);
    return NULL;
}

/* Runs ops/rotate-key on the two servers (or with --no-signal) with extra
 * "K=V" settings. */
static int script_how(const char *extra, bool is_signalling, char **out)
{
    char cmd[1024], how[64] = "--no-signal";
    if (is_signalling)
        snprintf(how, sizeof(how), "--pid %d --pid %d", (int)a.pid, (int)b.pid);
    snprintf(cmd, sizeof(cmd),
             "env -u HUBBUB_MASTER_KEY -u HUBBUB_MASTER_KEY_FILE DATABASE_URL='%s' %s "
             "%s/ops/rotate-key --key-file %s %s --hubbub %s --settle 0.3 2>&1",
             db.url, extra, HB_SOURCE_DIR, key_path, how, h_binary());
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        tap_bail("popen");
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0)
        len += n;
    buf[len] = '\0';
    *out = buf;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int script(const char *extra, char **out)
{
    return script_how(extra, true, out);
}

static char *open_as(const char *hex, const char *context, const char *sealed)
{
    struct secretbox sb;
    secretbox_init(&sb);
    secretbox_add_key_hex(&sb, hex, strlen(hex));
    struct buf out;
    buf_init(&out);
    char *plain = secretbox_open(&sb, context, sealed, &out) == 0 ? strdup(out.data) : NULL;
    buf_dispose(&out);
    secretbox_dispose(&sb);
    return plain;
}

struct rotate_run {
    pthread_t thread;
    int rc;
    char *out;
};

static void *rotate_run(void *arg)
{
    struct rotate_run *r = arg;
    const char *rotate[] = {"keys", "rotate", NULL};
    r->rc = run(rotate, &r->out);
    return NULL;
}

static char *seal_as(const char *hex, const char *context, const char *plain)
{
    struct secretbox sb;
    secretbox_init(&sb);
    secretbox_add_key_hex(&sb, hex, strlen(hex));
    char *sealed = secretbox_seal(&sb, context, plain, strlen(plain));
    secretbox_dispose(&sb);
    return sealed;
}

/* For each column: a row under the old key, then a write of a new value
 * (under the new key, as a signalled process's API writes it) that commits
 * while `hubbub keys rotate` waits for that row, between its read and its
 * write. The new value must win: the re-sealed old one must not overwrite
 * it. */
static void cas_rounds(long long app1)
{
    long long app2 = h_db_int(&db, "SELECT id FROM apps WHERE meta_app_id = '" APP2 "'");
    long long secret2 = h_db_int(&db, "SELECT min(s.id) FROM app_secrets s"
                                      " JOIN apps p ON p.id = s.app_id"
                                      " WHERE p.meta_app_id = '" APP2 "'");
    long long bulk7 = h_db_int(&db, "SELECT id FROM accounts WHERE ig_id = '9%015d'", 7);
    long long job = h_db_int(&db, "SELECT max(id) FROM jobs WHERE kind = 'unsubscribe'");
    long long job_app = h_db_int(&db, "SELECT app_id FROM jobs WHERE id = %lld", job);
    struct {
        const char *name, *table, *set, *set_end, *get;
        long long id;
        char context[96];
    } rounds[] = {
        {"apps.verify_token_sealed", "apps", "verify_token_sealed = '", "'", "verify_token_sealed",
         app2, "verify_token:" APP2},
        {"app_secrets.secret_sealed", "app_secrets", "secret_sealed = '", "'", "secret_sealed",
         secret2, "app_secret:" APP2},
        {"accounts.access_token_sealed", "accounts", "access_token_sealed = '", "'",
         "access_token_sealed", bulk7, ""},
        {"jobs.payload.access_token_sealed", "jobs",
         "payload = jsonb_set(payload, '{access_token_sealed}', to_jsonb('", "'::text))",
         "payload->>'access_token_sealed'", job, ""},
    };
    snprintf(rounds[2].context, sizeof(rounds[2].context), "access_token:%lld:9%015d", app1, 7);
    snprintf(rounds[3].context, sizeof(rounds[3].context), "access_token:%lld:" IG3, job_app);

    write_key_file(K_NEW, K_OLD);
    PGconn *x = PQconnectdb(db.url);
    if (PQstatus(x) != CONNECTION_OK)
        tap_bail("a second connection: %s", PQerrorMessage(x));
    for (size_t i = 0; i < sizeof(rounds) / sizeof(rounds[0]); i++) {
        char set[512], sql[1024];
        char *old = seal_as(K_OLD, rounds[i].context, "value-before");
        snprintf(set, sizeof(set), "%s%s%s", rounds[i].set, old, rounds[i].set_end);
        h_db_exec(&db, "UPDATE %s SET %s WHERE id = %lld", rounds[i].table, set, rounds[i].id);
        free(old);

        char *fresh = seal_as(K_NEW, rounds[i].context, "value-written-meanwhile");
        snprintf(set, sizeof(set), "%s%s%s", rounds[i].set, fresh, rounds[i].set_end);
        snprintf(sql, sizeof(sql), "BEGIN; UPDATE %s SET %s WHERE id = %lld", rounds[i].table, set,
                 rounds[i].id);
        PQclear(PQexec(x, sql));
        struct rotate_run r = {0};
        pthread_create(&r.thread, NULL, rotate_run, &r);
        bool waited = h_wait_sql(&db, "1", H_WAIT_MS,
                                 "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                 " current_database() AND wait_event_type = 'Lock'"
                                 " AND query LIKE 'UPDATE %%$3%%'");
        PQclear(PQexec(x, "COMMIT"));
        pthread_join(r.thread, NULL);
        tap_ok(waited, "%s: keys rotate read the row, then waited for the write", rounds[i].name);
        tap_is_int(r.rc, 0, "%s: keys rotate succeeds", rounds[i].name);
        char *now = h_db_text(&db, "SELECT %s FROM %s WHERE id = %lld", rounds[i].get,
                              rounds[i].table, rounds[i].id);
        char *plain = open_as(K_NEW, rounds[i].context, now);
        tap_is_str(plain != NULL ? plain : "(does not open)", "value-written-meanwhile",
                   "%s: the value written meanwhile is kept, not overwritten", rounds[i].name);
        free(plain);
        free(now);
        free(fresh);
        free(r.out);
    }
    PQfinish(x);
    write_key_file(K_NEW, NULL);
}

/* A directory of wrappers for the commands ops/rotate-key runs, each
 * logging its command line to log before running the real one: a key must
 * never be on a command line, where every user of the host can read it. */
static void spy_dir(const char *dir, const char *log)
{
    static const char *const CMDS[] = {"sed", "tr",    "grep",  "head", "cat",   "cp",   "mv",
                                       "rm",  "chmod", "chown", "sync", "sleep", "date", "dirname"};
    if (mkdir(dir, 0700) != 0)
        tap_bail("mkdir %s", dir);
    for (size_t i = 0; i < sizeof(CMDS) / sizeof(CMDS[0]); i++) {
        char real[64], path[160];
        snprintf(real, sizeof(real), "/usr/bin/%s", CMDS[i]);
        if (access(real, X_OK) != 0)
            snprintf(real, sizeof(real), "/bin/%s", CMDS[i]);
        if (access(real, X_OK) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, CMDS[i]);
        FILE *f = fopen(path, "w");
        if (f == NULL)
            tap_bail("cannot write %s", path);
        fprintf(f, "#!/bin/sh\nprintf '%%s\\n' \"$0 $*\" >>%s\nexec %s \"$@\"\n", log, real);
        fclose(f);
        chmod(path, 0700);
    }
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Whether s holds 64 hex characters in a row: a key. */
static bool has_key_text(const char *s)
{
    for (size_t run = 0; *s != '\0'; s++) {
        run = strchr("0123456789abcdefABCDEF", *s) != NULL ? run + 1 : 0;
        if (run >= 64)
            return true;
    }
    return false;
}

int main(void)
{
    key_id(K_OLD, old_id);
    key_id(K_NEW, new_id);
    snprintf(key_path, sizeof(key_path), "/tmp/hubbub-rotate-%d.keys", (int)getpid());
    snprintf(key_env, sizeof(key_env), "HUBBUB_MASTER_KEY_FILE=%s", key_path);
    write_key_file(K_OLD, NULL);

    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, IG1, TOK1, APP1);
    fg_add_node(ig, IG2, TOK2, APP1);
    fg_add_node(ig, IG3, TOK3, APP1);

    h_db_create(&db, "rotate_key");
    const char *migrate[] = {"migrate", NULL};
    if (run(migrate, NULL) != 0)
        tap_bail("migrate failed");
    const char *env_a[] = {"HUBBUB_MASTER_KEY=",
                           key_env,
                           fg_env(ig),
                           "HUBBUB_WORKERS=2",
                           "HUBBUB_JOB_BACKOFF=100ms",
                           "HUBBUB_JOB_BACKOFF_MAX=400ms",
                           "HUBBUB_JOB_POLL_INTERVAL=200ms",
                           "HUBBUB_APP_CACHE_TTL=100ms",
                           NULL};
    const char *env_b[] = {"HUBBUB_MASTER_KEY=", key_env, "HUBBUB_WORKERS=0",
                           "HUBBUB_APP_CACHE_TTL=100ms", NULL};
    h_server_start(&a, &db, env_a);
    h_server_start(&b, &db, env_b);
    h_api_tenant(&a, "rot", tkey);

    /* ---- before: an app, accounts, an unsubscribe job, many rows ---- */
    char *body = NULL;
    if (api(&a, "POST", "/v1/apps",
            "{\"meta_app_id\":\"" APP1 "\",\"app_secret\":\"" SECRET1 "\","
            "\"verify_token\":\"" VTOKEN1 "\"}",
            &body) != 201)
        tap_bail("creating the app: %s", body);
    struct writer w = {.app1 = h_json_num(body, "id")};
    free(body);
    char json[512], path[128];
    long long acc[4];
    const char *igs[] = {IG1, IG2, IG3}, *toks[] = {TOK1, TOK2, TOK3};
    for (int i = 0; i < 3; i++) {
        snprintf(json, sizeof(json),
                 "{\"app_id\":%lld,\"ig_id\":\"%s\",\"login_type\":\"instagram_login\","
                 "\"access_token\":\"%s\",\"subscribed_fields\":[\"comments\"]}",
                 w.app1, igs[i], toks[i]);
        if (api(&a, "POST", "/v1/accounts", json, &body) != 201)
            tap_bail("creating an account: %s", body);
        acc[i] = h_json_num(body, "id");
        free(body);
        tap_ok(h_wait_sql(&db, "active", H_WAIT_MS,
                          "SELECT sub_state FROM accounts WHERE id = %lld", acc[i]),
               "account %d subscribed with its token", i + 1);
    }
    w.acc1 = acc[0];
    w.acc2 = acc[1];
    /* The third account goes: its unsubscribe job carries its sealed token. */
    snprintf(path, sizeof(path), "/v1/accounts/%lld", acc[2]);
    tap_is_int(api(&a, "DELETE", path, NULL, NULL), 204, "third account deleted");
    tap_ok(h_wait_sql(&db, "succeeded", H_WAIT_MS,
                      "SELECT state FROM jobs WHERE kind = 'unsubscribe' ORDER BY id DESC LIMIT 1"),
           "its unsubscribe job ran, opening the token from its payload");
    /* Enough rows that the rotation takes a while. */
    struct secretbox old;
    secretbox_init(&old);
    secretbox_add_key_hex(&old, K_OLD, strlen(K_OLD));
    size_t cap = (size_t)BULK * 300 + 512, len = 0;
    char *sql = malloc(cap);
    len += (size_t)snprintf(sql, cap,
                            "INSERT INTO accounts (tenant_id, app_id, ig_id, login_type,"
                            " access_token_sealed, access_token_hint) SELECT tenant_id, id, v.ig,"
                            " 'instagram_login', v.sealed, '' FROM apps, (VALUES ");
    for (int i = 0; i < BULK; i++) {
        char ig_id[24], context[96], tok[48];
        snprintf(ig_id, sizeof(ig_id), "9%015d", i);
        snprintf(context, sizeof(context), "access_token:%lld:%s", w.app1, ig_id);
        snprintf(tok, sizeof(tok), "bulk-token-%d", i);
        char *sealed = secretbox_seal(&old, context, tok, strlen(tok));
        len += (size_t)snprintf(sql + len, cap - len, "%s('%s', '%s')", i > 0 ? "," : "", ig_id,
                                sealed);
        free(sealed);
    }
    snprintf(sql + len, cap - len, ") v (ig, sealed) WHERE apps.id = %lld", w.app1);
    PGresult *res = PQexec(db.conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        tap_bail("bulk insert: %s", PQerrorMessage(db.conn));
    PQclear(res);
    free(sql);
    secretbox_dispose(&old);
    tap_is_int(not_under(old_id), 0, "before: every value is sealed by the old key");

    char *out = NULL;
    const char *status[] = {"keys", "status", NULL};
    tap_is_int(run(status, &out), 0, "keys status: exit 0 while the sealing key seals all");
    tap_contains(out, old_id, "keys status names the old key id");
    tap_ok(strstr(out, K_OLD) == NULL, "keys status never prints a key");
    free(out);

    /* ---- deliveries from now until the end ---- */
    tap_is_int(signed_post(&a, APP1, SECRET1, 0), 200, "a signed delivery before the rotation");
    pthread_create(&feed.thread, NULL, feed_run, NULL);
    h_sleep_ms(100);

    /* ---- the new key first, SIGHUP to a only ---- */
    write_key_file(K_NEW, K_OLD);
    kill(a.pid, SIGHUP);
    char want[128];
    snprintf(want, sizeof(want), "cause=SIGHUP sealing=%s keys=%s,%s", new_id, new_id, old_id);
    tap_ok(wait_log(&a, want, H_WAIT_MS), "SIGHUP: the signalled process seals with the new key");
    tap_is_int(run(status, &out), 1, "keys status: exit 1 while values are under the old key");
    free(out);

    /* ---- the rotation, with API writes during it ---- */
    pthread_create(&w.thread, NULL, write_run, &w);
    const char *rotate[] = {"keys", "rotate", NULL};
    int rc = run(rotate, &out);
    pthread_join(w.thread, NULL);
    tap_is_int(rc, 0, "keys rotate succeeds");
    tap_contains(out, "accounts.access_token_sealed", "keys rotate prints counts per column");
    const char *line = strstr(out, "accounts.access_token_sealed");
    long long resealed = -1;
    if (line != NULL)
        sscanf(line + strlen("accounts.access_token_sealed"), "%lld", &resealed);
    tap_ok(resealed >= BULK && resealed <= BULK + 2, "the accounts were re-sealed (%lld)",
           resealed);
    tap_ok(strstr(out, K_OLD) == NULL && strstr(out, K_NEW) == NULL, "no key in its output");
    tap_diag("%s", out);
    free(out);
    tap_ok(w.is_during, "the API writes happened while the rotation ran");
    tap_is_int(w.st_secret_a, 200, "during: an app secret added through the signalled process");
    tap_is_int(w.st_secret_b, 200, "during: an app secret added through the unsignalled one");
    tap_is_int(w.st_token_a, 200, "during: an account token replaced (signalled process)");
    tap_is_int(w.st_token_b, 200, "during: an account token replaced (unsignalled process)");
    tap_is_int(w.st_app2, 201, "during: a new app created");
    fg_set_token(ig, IG1, TOK1B);
    fg_set_token(ig, IG2, TOK2B);

    /* The unsignalled process sealed with the old key: the final pass. */
    rc = run(rotate, &out);
    tap_is_int(rc, 0, "the final pass succeeds");
    free(out);
    tap_is_int(not_under(new_id), 0, "every sealed value now carries the new key id");
    tap_is_int(run(status, &out), 0, "keys status: exit 0 afterwards");
    tap_ok(strstr(out, old_id) == NULL, "keys status shows nothing under the old key id");
    free(out);
    char *bulk =
        h_db_text(&db, "SELECT access_token_sealed FROM accounts WHERE ig_id = '9%015d'", 7);
    char ctx[96];
    snprintf(ctx, sizeof(ctx), "access_token:%lld:9%015d", w.app1, 7);
    char *plain = open_as(K_NEW, ctx, bulk);
    tap_is_str(plain != NULL ? plain : "(does not open)", "bulk-token-7",
               "a re-sealed value opens with the new key alone, unchanged");
    free(plain);
    free(bulk);
    char *secrets =
        h_db_text(&db, "SELECT string_agg(s.secret_sealed, ' ') FROM app_secrets s"
                       " JOIN apps p ON p.id = s.app_id WHERE p.meta_app_id = '" APP1 "'");
    bool found = false;
    for (char *save = NULL, *t = strtok_r(secrets, " ", &save); t != NULL;
         t = strtok_r(NULL, " ", &save)) {
        plain = open_as(K_NEW, "app_secret:" APP1, t);
        found = found || (plain != NULL && strcmp(plain, SECRET1C) == 0);
        free(plain);
    }
    tap_ok(found, "the secret written with the old key during the rotation is under the new one");
    free(secrets);

    /* A second run is a no-op. */
    char *before = h_db_text(&db, ALL_SEALED);
    rc = run(rotate, &out);
    char *after = h_db_text(&db, ALL_SEALED);
    tap_is_int(rc, 0, "a second rotation succeeds");
    tap_is_str(after, before, "and changes nothing");
    tap_ok(strstr(out, "     0 re-sealed") != NULL && strstr(out, "     1 re-sealed") == NULL,
           "it reports nothing re-sealed");
    free(out);
    free(before);
    free(after);

    /* ---- the old key leaves the file; SIGHUP ---- */
    write_key_file(K_NEW, NULL);
    kill(a.pid, SIGHUP);
    snprintf(want, sizeof(want), "cause=SIGHUP sealing=%s keys=%s\n", new_id, new_id);
    tap_ok(wait_log(&a, want, H_WAIT_MS), "SIGHUP: the old key is gone from the process");
    h_sleep_ms(300); /* past the app cache's TTL: apps are opened again */
    tap_is_int(signed_post(&a, APP1, SECRET1, 100001), 200, "old app: its first secret verifies");
    tap_is_int(signed_post(&a, APP1, SECRET1B, 100002), 200,
               "old app: the secret added during the rotation verifies");
    tap_is_int(signed_post(&a, APP1, SECRET1C, 100003), 200,
               "old app: the secret the unsignalled process added verifies");
    tap_is_int(signed_post(&a, APP2, SECRET2, 100004), 200, "new app: its secret verifies");
    tap_is_int(signed_post(&a, APP1, "not-the-secret-0123456789", 100005), 403,
               "a wrong secret is still refused");
    char *hs = NULL;
    tap_is_int(handshake(&a, APP1, VTOKEN1, &hs), 200, "old app: verify handshake");
    tap_is_str(hs, "4242", "old app: the challenge is echoed");
    free(hs);
    tap_is_int(handshake(&a, APP2, VTOKEN2, &hs), 200, "new app: verify handshake");
    free(hs);

    /* Workers open the account tokens (re-sealed, and written during). */
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/v1/accounts/%lld", acc[i]);
        tap_is_int(
            api(&a, "PATCH", path, "{\"subscribed_fields\":[\"comments\",\"messages\"]}", NULL),
            200, "account %d: fields changed", i + 1);
        tap_ok(fg_wait_fields(ig, igs[i], "comments,messages", H_WAIT_MS),
               "account %d: the worker subscribed with the token written during the rotation",
               i + 1);
    }

    /* A key file that does not load keeps the keys. */
    FILE *f = fopen(key_path, "w");
    fputs("not a key\n", f);
    fclose(f);
    kill(a.pid, SIGHUP);
    tap_ok(wait_log(&a, "master keys not reloaded; keeping the old ones", H_WAIT_MS),
           "a bad key file: the reload is refused and logged");
    write_key_file(K_NEW, NULL);
    h_sleep_ms(300);
    tap_is_int(handshake(&a, APP1, VTOKEN1, &hs), 200, "and the process goes on with its keys");
    free(hs);

    /* ---- the deliveries ---- */
    tap_ok(atomic_load(&feed.ok) > 0, "deliveries were sent all along");
    atomic_store(&feed.stop, true);
    pthread_join(feed.thread, NULL);
    tap_is_int(atomic_load(&feed.bad), 0, "every delivery got 200 (last other status %ld)",
               atomic_load(&feed.last_bad));
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries d JOIN apps p ON p.id = d.app_id"
                             " WHERE p.meta_app_id = '" APP1 "'"),
               atomic_load(&feed.ok) + 4, "every delivery that got 200 is stored");
    tap_diag("%ld deliveries during the rotation", atomic_load(&feed.ok));

    /* ---- the process never signalled ---- */
    tap_is_int(handshake(&b, APP2, VTOKEN2, &hs), 200,
               "unsignalled process: opens a value sealed with the new key");
    tap_is_str(hs, "4242", "and answers the challenge");
    free(hs);
    tap_ok(wait_log(&b, "cause=unknown_key_id", 1000), "by reading the key file again");
    tap_is_int(signed_post(&b, APP1, SECRET1C, 100006), 200,
               "unsignalled process: verifies the old app's re-sealed secrets");

    /* A value no loaded key opens: reported, left as it is, exit 1. */
    char stray_id[9];
    key_id(K_STRAY, stray_id);
    struct secretbox stray;
    secretbox_init(&stray);
    secretbox_add_key_hex(&stray, K_STRAY, strlen(K_STRAY));
    char *lost = secretbox_seal(&stray, "app_secret:" APP2, "lost", 4);
    secretbox_dispose(&stray);
    long long lost_id = h_db_int(&db,
                                 "INSERT INTO app_secrets (app_id, secret_sealed, hint)"
                                 " SELECT id, '%s', '' FROM apps WHERE meta_app_id = '" APP2 "'"
                                 " RETURNING id",
                                 lost);
    rc = run(rotate, &out);
    tap_is_int(rc, 1, "keys rotate fails when a value opens with no loaded key");
    snprintf(want, sizeof(want), "app_secrets.secret_sealed id %lld: sealed by key %s", lost_id,
             stray_id);
    tap_contains(out, want, "and names the row and the key id it needs");
    free(out);
    char *still = h_db_text(&db, "SELECT secret_sealed FROM app_secrets WHERE id = %lld", lost_id);
    tap_is_str(still, lost, "that row is left as it was");
    free(still);
    free(lost);
    h_db_exec(&db, "DELETE FROM app_secrets WHERE id = %lld", lost_id);

    cas_rounds(w.app1);

    const char *generate[] = {"keys", "generate", NULL};
    tap_is_int(run(generate, &out), 0, "keys generate");
    tap_ok(strlen(out) == 65 && strspn(out, "0123456789abcdef") == 64, "prints 64 hex characters");
    free(out);

    /* ---- ops/rotate-key, re-run after a crash just after its step (a) ---- */
    char cmd[1024], backup[96];
    snprintf(backup, sizeof(backup), "%s.pre-rotate", key_path);
    write_key_file(K_NEW, NULL);
    snprintf(cmd, sizeof(cmd), "cp -p %s %s", key_path, backup);
    tap_is_int(system(cmd), 0, "a backup as step (a) leaves it");
    write_key_file(K_THIRD, K_NEW);
    char spy[96], spy_log[128], spy_path[256];
    snprintf(spy, sizeof(spy), "/tmp/hubbub-rotate-%d.bin", (int)getpid());
    snprintf(spy_log, sizeof(spy_log), "%s.log", spy);
    snprintf(spy_path, sizeof(spy_path), "PATH=%s:\"$PATH\"", spy);
    spy_dir(spy, spy_log);
    rc = script(spy_path, &out);
    tap_is_int(rc, 0, "ops/rotate-key finishes the interrupted rotation");
    tap_contains(out, "continuing with the new key already first",
                 "it goes on with the key it had written");
    tap_ok(strstr(out, K_NEW) == NULL && strstr(out, K_THIRD) == NULL, "and prints no key");
    tap_diag("%s", out);
    free(out);
    char third_id[9];
    key_id(K_THIRD, third_id);
    tap_is_int(not_under(third_id), 0, "every value is under that key");
    snprintf(cmd, sizeof(cmd), "test \"$(grep -c . %s)\" = 1 && grep -qx %s %s", key_path, K_THIRD,
             key_path);
    tap_is_int(system(cmd), 0, "the key file holds that key alone");
    struct stat st;
    tap_ok(stat(key_path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
    tap_ok(access(backup, F_OK) != 0, "the backup is gone once it succeeded");
    snprintf(cmd, sizeof(cmd), "grep -qx %s %s.retired-*", K_NEW, key_path);
    tap_is_int(system(cmd), 0, "and the old key is kept aside for older database backups");
    snprintf(want, sizeof(want), "cause=SIGHUP sealing=%s keys=%s\n", third_id, third_id);
    tap_ok(wait_log(&a, want, H_WAIT_MS) && wait_log(&b, want, H_WAIT_MS),
           "both processes were signalled and hold the new key alone");
    h_sleep_ms(300);
    tap_is_int(signed_post(&a, APP1, SECRET1, 100007), 200, "signatures verify after it");
    tap_is_int(handshake(&b, APP1, VTOKEN1, &hs), 200, "the handshake works after it");
    free(hs);
    /* A fresh run from the start: a new random key. The file is readable by
     * its group (as for a service reading it through its group) and, by
     * mistake, by others. */
    chmod(key_path, 0644);
    rc = script(spy_path, &out);
    tap_is_int(rc, 0, "ops/rotate-key from the start");
    tap_contains(out, "a new key first, then the old ones", "it generated a new key");
    free(out);
    tap_ok(stat(key_path, &st) == 0 && (st.st_mode & 0777) == 0640,
           "the group keeps its access to the key file, others lose theirs (mode %o)",
           (unsigned)(st.st_mode & 0777));
    snprintf(cmd, sizeof(cmd), "test \"$(grep -c . %s)\" = 1 && ! grep -qx %s %s", key_path,
             K_THIRD, key_path);
    tap_is_int(system(cmd), 0, "the key file holds one key, a new one");
    tap_is_int(run(status, &out), 0, "every value is sealed by it");
    tap_ok(strstr(out, third_id) == NULL, "none by the previous key");
    free(out);
    char *spied = read_all(spy_log);
    tap_ok(spied != NULL && strstr(spied, "/sed ") != NULL,
           "the commands ops/rotate-key ran were seen");
    tap_ok(spied != NULL && !has_key_text(spied), "no key was ever on a command line");
    if (spied != NULL && has_key_text(spied))
        tap_diag("%s", spied);
    free(spied);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", spy, spy_log);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", spy);
    /* --no-signal: no process was told to stop sealing with the old key, so
     * it stays in the file; a signalling run finishes. */
    rc = script_how("", false, &out);
    tap_is_int(rc, 0, "ops/rotate-key --no-signal re-seals");
    tap_contains(out, "The old keys stay in", "and says the old keys stay");
    free(out);
    snprintf(cmd, sizeof(cmd), "test \"$(grep -c . %s)\" = 2 && sed -n 2p %s | cmp -s - %s",
             key_path, key_path, backup);
    tap_is_int(system(cmd), 0, "--no-signal: the old key is still in the file, after the new");
    tap_ok(access(backup, F_OK) == 0, "--no-signal: the backup is kept");
    rc = script("", &out);
    tap_is_int(rc, 0, "a signalling run then finishes the rotation");
    tap_contains(out, "continuing with the new key already first", "with the same new key");
    free(out);
    snprintf(cmd, sizeof(cmd), "test \"$(grep -c . %s)\" = 1", key_path);
    tap_is_int(system(cmd), 0, "and the old key leaves the file");
    tap_is_int(run(status, &out), 0, "every value is sealed by the key left");
    free(out);

    /* Without a database nothing starts: no new key in the file, no backup. */
    snprintf(cmd, sizeof(cmd), "cp -p %s %s.before", key_path, key_path);
    if (system(cmd) != 0)
        tap_bail("copying the key file");
    rc = script("DATABASE_URL=", &out);
    tap_is_int(rc, 1, "ops/rotate-key without a database exits 1");
    tap_contains(out, "nothing changed", "and says that nothing changed");
    free(out);
    snprintf(cmd, sizeof(cmd), "cmp -s %s %s.before && test ! -e %s.pre-rotate", key_path, key_path,
             key_path);
    tap_is_int(system(cmd), 0, "the key file is as it was and no rotation began");

    rc = script("HUBBUB_MASTER_KEY=" K_THIRD, &out);
    tap_is_int(rc, 1, "ops/rotate-key refuses a key given in the environment");
    tap_contains(out, "Rotation needs the file form", "and says what to do instead");
    free(out);

    char *log_a = h_server_log(&a), *log_b = h_server_log(&b);
    tap_ok(strstr(log_a, K_OLD) == NULL && strstr(log_a, K_NEW) == NULL &&
               strstr(log_b, K_OLD) == NULL && strstr(log_b, K_NEW) == NULL,
           "no key in either log");
    free(log_a);
    free(log_b);

    tap_is_int(h_server_stop(&a, SIGTERM), 0, "signalled process exits 0");
    tap_is_int(h_server_stop(&b, SIGTERM), 0, "unsignalled process exits 0");
    fg_stop(ig);
    snprintf(cmd, sizeof(cmd), "rm -f %s.retired-* %s.before", key_path, key_path);
    if (system(cmd) != 0)
        tap_diag("could not remove %s.retired-*", key_path);
    unlink(key_path);
    h_db_drop(&db);
    return tap_done();
}
