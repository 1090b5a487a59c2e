/*
 * rekey.c - see rekey.h.
 *
 * A pass walks a column by id (keyset, so a row that cannot be re-sealed
 * does not stop the walk) over the rows not sealed by the sealing key, a
 * batch per transaction. Passes repeat while some rows were changed meanwhile
 * or in use, until none is left or the wait runs out.
 */
#include "db/rekey.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "lib/hb.h"

struct column {
    const char *name;
    /* $1 after id, $2 LIKE pattern of values under the sealing key, $3 limit:
     * id, context, sealed value. */
    const char *select;
    /* $1 id, $2 old sealed value, $3 new one: one row when written. */
    const char *update;
    /* key id (or '-'), count. */
    const char *status;
};

#define KEY_ID_OF(x) "CASE WHEN " x " LIKE 'hb1:________:%' THEN substr(" x ", 5, 8) ELSE '-' END"

static const struct column COLUMNS[DB_REKEY_NCOLUMNS] = {
    {"apps.verify_token_sealed",
     "SELECT id, 'verify_token:' || meta_app_id, verify_token_sealed FROM apps"
     " WHERE id > $1::bigint AND verify_token_sealed NOT LIKE $2 ORDER BY id LIMIT $3::int",
     "UPDATE apps SET verify_token_sealed = $3 WHERE id = $1::bigint AND verify_token_sealed = $2",
     "SELECT " KEY_ID_OF("verify_token_sealed") ", count(*) FROM apps GROUP BY 1 ORDER BY 1"},
    {"app_secrets.secret_sealed",
     "SELECT s.id, 'app_secret:' || a.meta_app_id, s.secret_sealed"
     " FROM app_secrets s JOIN apps a ON a.id = s.app_id"
     " WHERE s.id > $1::bigint AND s.secret_sealed NOT LIKE $2 ORDER BY s.id LIMIT $3::int",
     "UPDATE app_secrets SET secret_sealed = $3 WHERE id = $1::bigint AND secret_sealed = $2",
     "SELECT " KEY_ID_OF("secret_sealed") ", count(*) FROM app_secrets GROUP BY 1 ORDER BY 1"},
    {"accounts.access_token_sealed",
     "SELECT id, 'access_token:' || app_id || ':' || ig_id, access_token_sealed FROM accounts"
     " WHERE id > $1::bigint AND access_token_sealed NOT LIKE $2 ORDER BY id LIMIT $3::int",
     "UPDATE accounts SET access_token_sealed = $3"
     " WHERE id = $1::bigint AND access_token_sealed = $2"
     "  AND NOT EXISTS (SELECT 1 FROM jobs WHERE account_id = $1::bigint AND state = 'running')",
     "SELECT " KEY_ID_OF("access_token_sealed") ", count(*) FROM accounts GROUP BY 1 ORDER BY 1"},
    {"jobs.payload.access_token_sealed",
     "SELECT id, 'access_token:' || app_id || ':' || coalesce(payload->>'ig_id', ''),"
     "  payload->>'access_token_sealed' FROM jobs"
     " WHERE id > $1::bigint AND payload ? 'access_token_sealed'"
     "  AND payload->>'access_token_sealed' NOT LIKE $2 ORDER BY id LIMIT $3::int",
     "UPDATE jobs SET payload = jsonb_set(payload, '{access_token_sealed}', to_jsonb($3::text))"
     " WHERE id = $1::bigint AND payload->>'access_token_sealed' = $2 AND state <> 'running'",
     "SELECT " KEY_ID_OF(
         "(payload->>'access_token_sealed')") ", count(*) FROM jobs"
                                              " WHERE payload ? 'access_token_sealed'"
                                              " GROUP BY 1 ORDER BY 1"},
};

const char *db_rekey_column_name(int column)
{
    return column >= 0 && column < DB_REKEY_NCOLUMNS ? COLUMNS[column].name : "?";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int fail(PGconn *c, PGresult *r, const char *what, char *err, size_t errsz)
{
    snprintf(err, errsz, "%s: %s", what, PQerrorMessage(c));
    PQclear(r);
    return HB_EDB;
}

static bool command_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

struct pass {
    int64_t resealed, failed, skipped;
};

/* One batch of column after *after: re-seals what it can in one
 * transaction. *n gets the number of rows looked at (0: the pass is done). */
static int batch(PGconn *c, const struct secretbox *sb, const struct column *col, int limit,
                 int64_t *after, int *n, bool is_first_pass, struct pass *p, FILE *report,
                 char *err, size_t errsz)
{
    char after_s[24], limit_s[16], pattern[32];
    snprintf(after_s, sizeof(after_s), "%" PRId64, *after);
    snprintf(limit_s, sizeof(limit_s), "%d", limit);
    snprintf(pattern, sizeof(pattern), "hb1:%s:%%", sb->keys[0].id);
    const char *sp[] = {after_s, pattern, limit_s};
    PGresult *rows = PQexecParams(c, col->select, 3, NULL, sp, NULL, NULL, 0);
    if (PQresultStatus(rows) != PGRES_TUPLES_OK)
        return fail(c, rows, col->name, err, errsz);
    *n = PQntuples(rows);
    if (*n == 0) {
        PQclear(rows);
        return 0;
    }
    if (!command_ok(c, "BEGIN"))
        return fail(c, rows, "BEGIN", err, errsz);
    struct buf plain;
    buf_init(&plain);
    struct pass got = {0, 0, 0};
    int rc = 0;
    for (int i = 0; i < *n; i++) {
        const char *id = PQgetvalue(rows, i, 0), *context = PQgetvalue(rows, i, 1),
                   *old = PQgetvalue(rows, i, 2);
        int orc = secretbox_open(sb, context, old, &plain);
        if (orc != 0) {
            got.failed++;
            if (is_first_pass && report != NULL) {
                char kid[9];
                fprintf(report, "%s id %s: %s%s%s; left as it is\n", col->name, id,
                        orc == HB_ENOTFOUND ? "sealed by key " : "cannot be opened",
                        orc == HB_ENOTFOUND ? secretbox_key_id_of(old, kid) : "",
                        orc == HB_ENOTFOUND ? ", which is not loaded"
                        : orc == HB_EINVAL  ? " (not a sealed value)"
                                            : " (wrong key or context, or altered)");
            }
            continue;
        }
        char *fresh = secretbox_seal(sb, context, plain.data, plain.len);
        OPENSSL_cleanse(plain.data, plain.len);
        const char *up[] = {id, old, fresh};
        PGresult *r = PQexecParams(c, col->update, 3, NULL, up, NULL, NULL, 0);
        free(fresh);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = fail(c, r, col->name, err, errsz);
            break;
        }
        if (strcmp(PQcmdTuples(r), "1") == 0)
            got.resealed++;
        else
            got.skipped++; /* changed meanwhile, or in use: a later pass */
        PQclear(r);
    }
    buf_dispose(&plain);
    *after = strtoll(PQgetvalue(rows, *n - 1, 0), NULL, 10);
    PQclear(rows);
    if (rc != 0) {
        command_ok(c, "ROLLBACK");
        return rc;
    }
    if (!command_ok(c, "COMMIT"))
        return fail(c, NULL, "COMMIT", err, errsz);
    p->resealed += got.resealed;
    p->failed += got.failed;
    p->skipped += got.skipped;
    return 0;
}

int db_rekey_rotate(PGconn *c, const struct secretbox *sb, const struct db_rekey_options *opt,
                    struct db_rekey_result res[DB_REKEY_NCOLUMNS], FILE *report, char *err,
                    size_t errsz)
{
    memset(res, 0, DB_REKEY_NCOLUMNS * sizeof(*res));
    int limit = opt->batch > 0 ? opt->batch : 100;
    for (int k = 0; k < DB_REKEY_NCOLUMNS; k++) {
        int64_t deadline = now_ms() + opt->wait_ms;
        for (int pass_no = 0;; pass_no++) {
            struct pass p = {0, 0, 0};
            int64_t after = 0;
            int n;
            do {
                int rc = batch(c, sb, &COLUMNS[k], limit, &after, &n, pass_no == 0, &p, report, err,
                               errsz);
                if (rc != 0)
                    return rc;
            } while (n > 0);
            res[k].resealed += p.resealed;
            res[k].failed = p.failed;
            res[k].left = p.skipped;
            if (p.skipped == 0 || now_ms() >= deadline)
                break;
            if (p.resealed == 0)
                sleep_ms(opt->pause_ms > 0 ? opt->pause_ms : 200);
        }
    }
    return 0;
}

int db_rekey_status(PGconn *c, db_rekey_status_cb cb, void *arg, char *err, size_t errsz)
{
    for (int k = 0; k < DB_REKEY_NCOLUMNS; k++) {
        PGresult *r = PQexec(c, COLUMNS[k].status);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            return fail(c, r, COLUMNS[k].name, err, errsz);
        for (int i = 0; i < PQntuples(r); i++)
            cb(arg, k, PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10));
        PQclear(r);
    }
    return 0;
}
