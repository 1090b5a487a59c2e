/*
 * t_backup.c - ops/backup and ops/restore round-trip a database a real server
 * filled (tenants, keys, an app with a sealed secret, an account, its job,
 * deliveries and events): the checksum file matches the dump, the restored
 * database passes `hubbub migrate status` and has every table's row count,
 * and a server on it checks a delivery's signature with the original app
 * secret (the sealed secret opens with the same master key) and serves the
 * old events. A corrupted or truncated backup is refused before anything is
 * written, so is a non-empty target, and a backup that failed leaves no file.
 */
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define META_APP "1000000001"
#define APP_SECRET "backup-app-secret-0123456789"
#define EVENTS 5

static const char *const TABLES[] = {
    "tenants", "api_keys", "apps",       "app_secrets", "accounts",
    "jobs",    "events",   "deliveries", "messages",    "schema_migrations"};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len)
        tap_bail("cannot write %s", path);
    fclose(f);
}

/* Copies BACKUP and its .sha256 and .manifest to to, with the dump's bytes
 * passed through change (may be NULL). */
static void copy_backup(const char *from, const char *to, void (*change)(char *, size_t *))
{
    static const char *const sfx[] = {"", ".sha256", ".manifest"};
    for (size_t i = 0; i < 3; i++) {
        char a[512], b[512];
        snprintf(a, sizeof(a), "%s%s", from, sfx[i]);
        snprintf(b, sizeof(b), "%s%s", to, sfx[i]);
        size_t len;
        char *data = read_file(a, &len);
        if (data == NULL)
            tap_bail("cannot read %s", a);
        if (i == 0 && change != NULL)
            change(data, &len);
        write_file(b, data, len);
        free(data);
    }
}

static void flip_a_byte(char *data, size_t *len)
{
    data[*len / 2] ^= 0x01;
}

static void cut_the_end(char *data, size_t *len)
{
    (void)data;
    *len -= 100;
}

static int run_ops(struct h_db *db, const char *script, const char *const *argv, char **out)
{
    char path[512], binenv[600];
    snprintf(path, sizeof(path), "%s/ops/%s", HB_SOURCE_DIR, script);
    snprintf(binenv, sizeof(binenv), "HUBBUB_BINARY=%s", h_binary());
    const char *env[] = {binenv, NULL};
    return h_spawn(db, path, argv, env, NULL, out);
}

static long long relations(struct h_db *db)
{
    return h_db_int(db, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                        "c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r','p')");
}

/* The number of items of the answer's data array, read with jsonb. */
static long long data_count(struct h_db *db, const char *json)
{
    const char *params[] = {json};
    PGresult *r = PQexecParams(db->conn, "SELECT jsonb_array_length($1::jsonb->'data')", 1, NULL,
                               params, NULL, NULL, 0);
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0)
                      ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                      : -1;
    PQclear(r);
    return n;
}

int main(void)
{
    struct h_db src, dst, bad, fail;
    struct h_server srv;
    struct h_resp r;
    char *out = NULL;
    char key_a[64], key_b[64], json[1024];

    h_db_create(&src, "backup");
    const char *migrate[] = {"migrate", NULL};
    if (h_run(&src, migrate, NULL, NULL, &out) != 0)
        tap_bail("hubbub migrate failed: %s", out);
    free(out);
    const char *senv[] = {"HUBBUB_API_RATE=100000", "HUBBUB_API_BURST=100000", NULL};
    h_server_start(&srv, &src, senv);

    /* ---- a database filled through the server ---- */
    long long ta = h_api_tenant(&srv, "acme", key_a);
    h_api_tenant(&srv, "globex", key_b);
    snprintf(json, sizeof(json),
             "{\"meta_app_id\":\"" META_APP "\",\"app_secret\":\"" APP_SECRET
             "\",\"verify_token\":\"verify-0123456789\",\"tenant_id\":%lld}",
             ta);
    h_api(&r, &srv, H_ADMIN_TOKEN, "POST", "/v1/apps", json);
    long long app = h_json_num(r.body, "id");
    if (r.status != 201 || app <= 0)
        tap_bail("POST /v1/apps: %ld %s", r.status, r.body);
    h_resp_free(&r);
    snprintf(json, sizeof(json),
             "{\"app_id\":%lld,\"ig_id\":\"17841400000000001\",\"username\":\"acme_ig\","
             "\"login_type\":\"instagram_login\",\"access_token\":\"EAAGbackupTOKEN1234\","
             "\"subscribed_fields\":[\"comments\"]}",
             app);
    h_api(&r, &srv, key_a, "POST", "/v1/accounts", json);
    if (r.status != 201)
        tap_bail("POST /v1/accounts: %ld %s", r.status, r.body);
    h_resp_free(&r);
    for (int i = 1; i <= EVENTS; i++) {
        size_t len;
        char *body = h_comment_delivery(i, &len);
        h_post_signed(&r, &srv, META_APP, APP_SECRET, body, len);
        if (r.status != 200)
            tap_bail("delivery %d: %ld %s", i, r.status, r.body);
        h_resp_free(&r);
        free(body);
    }
    tap_is_int(h_db_int(&src, "SELECT count(*) FROM events"), EVENTS, "the server stored %d events",
               EVENTS);
    tap_ok(h_db_int(&src, "SELECT count(*) FROM jobs") >= 1 &&
               h_db_int(&src, "SELECT count(*) FROM accounts") == 1 &&
               h_db_int(&src, "SELECT count(*) FROM app_secrets") >= 1,
           "and an account, its job and the app's sealed secret");

    char dir[] = "/tmp/hubbub-backup-XXXXXX";
    if (mkdtemp(dir) == NULL)
        tap_bail("mkdtemp failed");
    char file[256], path[512];
    snprintf(file, sizeof(file), "%s/hubbub.dump", dir);

    /* ---- a backup that fails leaves nothing ---- */
    h_db_create(&fail, "backup_nodb");
    char gone_url[600];
    snprintf(gone_url, sizeof(gone_url), "%s password='PWshouldNOTshow'", fail.url);
    h_db_drop(&fail);
    {
        const char *args[] = {"--database-url", gone_url, file, NULL};
        tap_is_int(run_ops(NULL, "backup", args, &out), 1, "backup of a missing database: exit 1");
        tap_ok(strstr(out, "PWshouldNOTshow") == NULL, "its error does not show the password");
        free(out);
        tap_ok(access(file, F_OK) != 0, "and no dump file was left");
        snprintf(path, sizeof(path), "%s.sha256", file);
        tap_ok(access(path, F_OK) != 0, "nor a checksum file");
    }
    {
        const char *args[] = {NULL};
        tap_is_int(run_ops(&src, "backup", args, &out), 2, "backup without OUTPUT: usage, exit 2");
        free(out);
    }

    /* ---- backup, with the server still serving ---- */
    {
        const char *args[] = {file, NULL};
        int rc = run_ops(&src, "backup", args, &out);
        if (!tap_is_int(rc, 0, "ops/backup: exit 0"))
            tap_diag("%s", out);
        free(out);
        tap_is_int(run_ops(&src, "backup", args, &out), 1,
                   "a second backup to the same file: refused");
        free(out);
    }
    size_t dlen;
    char *dump = read_file(file, &dlen);
    snprintf(path, sizeof(path), "%s.sha256", file);
    char *sumfile = read_file(path, NULL);
    tap_ok(dump != NULL && dlen > 1000 && memcmp(dump, "PGDMP", 5) == 0,
           "the dump is pg_dump's custom format");
    char hex[65] = "";
    if (dump != NULL)
        h_sha256_hex(dump, dlen, hex);
    tap_ok(sumfile != NULL && strncmp(sumfile, hex, 64) == 0 &&
               strcmp(sumfile + 64, "  hubbub.dump\n") == 0,
           "hubbub.dump.sha256 holds the dump's SHA-256 in sha256sum's format");
    free(dump);
    free(sumfile);
    snprintf(path, sizeof(path), "%s.manifest", file);
    char *manifest = read_file(path, NULL);
    tap_contains(manifest ? manifest : "", "\nrows.public.events=5\n",
                 "the manifest counts events");
    tap_contains(manifest ? manifest : "", "\nmigration=", "and names the migration version");
    tap_contains(manifest ? manifest : "", "\npg_dump=pg_dump (PostgreSQL) ",
                 "and pg_dump's version");
    tap_ok(manifest == NULL || strstr(manifest, "password") == NULL, "and no password");
    free(manifest);
    struct stat st;
    tap_ok(stat(file, &st) == 0 && (st.st_mode & 077) == 0,
           "the dump is readable by its owner only");

    /* ---- restore into a fresh database ---- */
    h_db_create(&dst, "backup_dst");
    {
        const char *args[] = {file, NULL};
        int rc = run_ops(&dst, "restore", args, &out);
        if (!tap_is_int(rc, 0, "ops/restore into an empty database: exit 0"))
            tap_diag("%s", out);
        tap_contains(out, "restored with the manifest's row counts",
                     "restore compared the row counts");
        tap_contains(out, "applied  0003_", "restore ran hubbub migrate status");
        free(out);
    }
    tap_is_int(h_run(&dst, (const char *[]){"migrate", "status", NULL}, NULL, NULL, &out), 0,
               "hubbub migrate status on the restored database: exit 0");
    free(out);
    bool same = true;
    for (size_t i = 0; i < sizeof(TABLES) / sizeof(TABLES[0]); i++) {
        long long a = h_db_int(&src, "SELECT count(*) FROM %s", TABLES[i]);
        long long b = h_db_int(&dst, "SELECT count(*) FROM %s", TABLES[i]);
        if (a != b) {
            tap_diag("%s: %lld rows, restored %lld", TABLES[i], a, b);
            same = false;
        }
    }
    tap_ok(same, "every table has the same number of rows in both databases");
    tap_is_int(h_db_int(&dst, "SELECT count(*) FROM events e JOIN deliveries d ON "
                              "d.id = e.delivery_id"),
               EVENTS, "and the events still point at their deliveries");
    h_server_stop(&srv, SIGTERM);

    /* ---- a server on the restored database ---- */
    h_server_start(&srv, &dst, senv);
    {
        size_t len;
        char *body = h_comment_delivery(EVENTS + 1, &len);
        h_post_signed(&r, &srv, META_APP, APP_SECRET, body, len);
        tap_is_int(r.status, 200,
                   "the restored server accepts a delivery signed with the original app secret");
        h_resp_free(&r);
        free(body);
        body = h_comment_delivery(EVENTS + 2, &len);
        h_post_signed(&r, &srv, META_APP, "not-the-app-secret", body, len);
        tap_is_int(r.status, 403, "and refuses one signed with another secret");
        h_resp_free(&r);
        free(body);
    }
    h_api(&r, &srv, key_a, "GET", "/v1/events?limit=100", NULL);
    tap_is_int(r.status, 200, "GET /v1/events with the tenant's old key: 200");
    tap_is_int(data_count(&dst, r.body ? r.body : ""), EVENTS + 1,
               "it lists the %d restored events and the new one", EVENTS);
    tap_contains(r.body ? r.body : "", "\"C1\"", "among them the first event backed up");
    h_resp_free(&r);
    h_server_stop(&srv, SIGTERM);

    /* ---- refusals ---- */
    h_db_create(&bad, "backup_bad");
    char copy[400];
    snprintf(copy, sizeof(copy), "%s/flipped.dump", dir);
    copy_backup(file, copy, flip_a_byte);
    {
        const char *args[] = {copy, NULL};
        tap_is_int(run_ops(&bad, "restore", args, &out), 1,
                   "a backup with one byte flipped: exit 1");
        tap_contains(out, "corrupt or truncated", "it says the backup is corrupt");
        free(out);
    }
    snprintf(copy, sizeof(copy), "%s/cut.dump", dir);
    copy_backup(file, copy, cut_the_end);
    {
        const char *args[] = {copy, NULL};
        tap_is_int(run_ops(&bad, "restore", args, &out), 1, "a truncated backup: exit 1");
        free(out);
    }
    tap_is_int(relations(&bad), 0, "and nothing was written to the target database");
    long long events_before = h_db_int(&dst, "SELECT count(*) FROM events");
    {
        const char *args[] = {file, NULL};
        tap_is_int(run_ops(&dst, "restore", args, &out), 1,
                   "restore into a database that has tables: exit 1");
        tap_contains(out, "is not empty", "it says the database is not empty");
        free(out);
    }
    tap_is_int(h_db_int(&dst, "SELECT count(*) FROM events"), events_before,
               "and left that database as it was");
    snprintf(copy, sizeof(copy), "%s/changed.dump", dir);
    copy_backup(file, copy, NULL);
    snprintf(path, sizeof(path), "%s.manifest", copy);
    {
        char *m = read_file(path, NULL);
        char *p = strstr(m, "rows.public.events=5");
        if (p == NULL)
            tap_bail("no events row count in the manifest");
        p[strlen("rows.public.events=")] = '9';
        write_file(path, m, strlen(m));
        free(m);
        const char *args[] = {copy, NULL};
        tap_is_int(run_ops(&bad, "restore", args, &out), 1,
                   "a restore whose row counts differ from the manifest: exit 1");
        tap_contains(out, "-rows.public.events=9", "it names the table that differs");
        free(out);
    }

    static const char *const names[] = {"hubbub.dump", "flipped.dump", "cut.dump", "changed.dump"};
    static const char *const sfx[] = {"", ".sha256", ".manifest"};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++) {
            snprintf(path, sizeof(path), "%s/%s%s", dir, names[i], sfx[j]);
            unlink(path);
        }
    rmdir(dir);
    h_db_drop(&bad);
    h_db_drop(&dst);
    h_db_drop(&src);
    return tap_done();
}
