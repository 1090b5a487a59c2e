/*
 * migrate.c - applies and checks the embedded migrations; see migrate.h.
 */
#include "db/migrate.h"

#include <openssl/sha.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db/pool.h"
#include "lib/hb.h"
#include "lib/hex.h"

/* Any constant works; this one spells "hubbub" in ASCII. */
#define MIGRATE_LOCK_KEY "114849796847970"

struct applied {
    int version;
    char checksum[65];
    char applied_at[40];
};

static void checksum_of(const struct db_migration *m, char out[65])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)m->sql, m->len, d);
    hex_encode(out, d, SHA256_DIGEST_LENGTH);
}

static int version_of(const char *name)
{
    return (int)strtol(name, NULL, 10);
}

static int fail(PGconn *c, PGresult *r, const char *what, char *err, size_t errsz)
{
    int rc = db_result_rc(c, r);
    snprintf(err, errsz, "%s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return rc;
}

static int ensure_table(PGconn *c, char *err, size_t errsz)
{
    PGresult *r = PQexec(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            " version integer PRIMARY KEY,"
                            " name text NOT NULL,"
                            " checksum text NOT NULL,"
                            " applied_at timestamptz NOT NULL DEFAULT now())");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = fail(c, r, "creating schema_migrations", err, errsz);
    PQclear(r);
    return rc;
}

/* Reads schema_migrations; *out is sorted by version (caller frees). A
 * missing table means nothing applied. */
static int read_applied(PGconn *c, struct applied **out, int *count, char *err, size_t errsz)
{
    *out = NULL;
    *count = 0;
    PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "reading schema_migrations", err, errsz);
        PQclear(r);
        return rc;
    }
    bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!exists)
        return 0;
    r = PQexec(c, "SELECT version, checksum, to_char(applied_at AT TIME ZONE 'UTC',"
                  " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations ORDER BY version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "reading schema_migrations", err, errsz);
        PQclear(r);
        return rc;
    }
    int n = PQntuples(r);
    struct applied *a = xcalloc((size_t)n, sizeof(*a));
    for (int i = 0; i < n; i++) {
        a[i].version = (int)strtol(PQgetvalue(r, i, 0), NULL, 10);
        snprintf(a[i].checksum, sizeof(a[i].checksum), "%s", PQgetvalue(r, i, 1));
        snprintf(a[i].applied_at, sizeof(a[i].applied_at), "%s", PQgetvalue(r, i, 2));
    }
    PQclear(r);
    *out = a;
    *count = n;
    return 0;
}

static const struct applied *find_applied(const struct applied *a, int n, int version)
{
    for (int i = 0; i < n; i++)
        if (a[i].version == version)
            return &a[i];
    return NULL;
}

/* Compares applied rows with the embedded files: changed checksums are errors. */
static int verify(const struct db_migration *m, size_t n, const struct applied *a, int na,
                  bool require_all, char *err, size_t errsz)
{
    for (size_t i = 0; i < n; i++) {
        const struct applied *ap = find_applied(a, na, version_of(m[i].name));
        if (ap == NULL) {
            if (require_all) {
                snprintf(err, errsz, "migration %s is not applied: run `hubbub migrate`",
                         m[i].name);
                return HB_EINVAL;
            }
            continue;
        }
        char sum[65];
        checksum_of(&m[i], sum);
        if (strcmp(sum, ap->checksum) != 0) {
            snprintf(err, errsz,
                     "migration %s changed after it was applied (checksum %.12s in the database,"
                     " %.12s now): applied migrations must never be edited; add a new one",
                     m[i].name, ap->checksum, sum);
            return HB_EINVAL;
        }
    }
    return 0;
}

static int apply_one(PGconn *c, const struct db_migration *m, char *err, size_t errsz)
{
    char what[128];
    snprintf(what, sizeof(what), "applying %s", m->name);
    PGresult *r = PQexec(c, "BEGIN");
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = fail(c, r, what, err, errsz);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    /* The embedded text is NUL-terminated; PQexec runs all its statements. */
    r = PQexec(c, m->sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = fail(c, r, what, err, errsz);
        goto rollback;
    }
    PQclear(r);
    char sum[65], version[16];
    checksum_of(m, sum);
    snprintf(version, sizeof(version), "%d", version_of(m->name));
    const char *params[] = {version, m->name, sum};
    r = PQexecParams(c,
                     "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                     3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = fail(c, r, what, err, errsz);
        goto rollback;
    }
    PQclear(r);
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = fail(c, r, what, err, errsz);
    PQclear(r);
    return rc;
rollback:
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

int db_migrate_apply(PGconn *c, const struct db_migration *m, size_t n, FILE *report, char *err,
                     size_t errsz)
{
    struct applied *a = NULL;
    int na = 0;
    PGresult *r = PQexec(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "taking the migration lock", err, errsz);
        PQclear(r);
        return rc;
    }
    PQclear(r);

    int rc = ensure_table(c, err, errsz);
    if (rc == 0)
        rc = read_applied(c, &a, &na, err, errsz);
    if (rc == 0)
        rc = verify(m, n, a, na, false, err, errsz);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (find_applied(a, na, version_of(m[i].name)) != NULL)
            continue;
        rc = apply_one(c, &m[i], err, errsz);
        if (rc == 0 && report != NULL)
            fprintf(report, "applied %s\n", m[i].name);
    }
    free(a);
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")"));
    return rc;
}

int db_migrate_check(PGconn *c, const struct db_migration *m, size_t n, char *err, size_t errsz)
{
    struct applied *a = NULL;
    int na = 0;
    int rc = read_applied(c, &a, &na, err, errsz);
    if (rc == 0)
        rc = verify(m, n, a, na, true, err, errsz);
    free(a);
    return rc;
}

int db_migrate_status(PGconn *c, const struct db_migration *m, size_t n, FILE *out, char *err,
                      size_t errsz)
{
    struct applied *a = NULL;
    int na = 0;
    int rc = read_applied(c, &a, &na, err, errsz);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const struct applied *ap = find_applied(a, na, version_of(m[i].name));
        char sum[65];
        checksum_of(&m[i], sum);
        if (ap == NULL)
            fprintf(out, "pending  %s\n", m[i].name);
        else if (strcmp(ap->checksum, sum) != 0)
            fprintf(out, "CHANGED  %s (applied %s, edited since)\n", m[i].name, ap->applied_at);
        else
            fprintf(out, "applied  %s (%s)\n", m[i].name, ap->applied_at);
    }
    for (int j = 0; j < na; j++) {
        bool known = false;
        for (size_t i = 0; i < n; i++)
            known = known || version_of(m[i].name) == a[j].version;
        if (!known)
            fprintf(out, "unknown  version %04d (applied %s by a newer hubbub)\n", a[j].version,
                    a[j].applied_at);
    }
    free(a);
    return 0;
}
