/*
 * retention.c - hubbub retention; see retention.h for the rules.
 *
 * Dropping a month is two transactions. The first detaches the month's
 * partitions of both tables: it needs the parents' exclusive lock, and every
 * insert queues behind it while it waits, so it waits at most LOCK_TIMEOUT,
 * then backs off to let ingest through and tries again (for up to
 * DETACH_GIVE_UP_MS). Once detached, nothing can be stored into them. The
 * second deletes the dedup keys of the detached events (row locks only) and
 * drops the tables. The keys deleted are then exactly those of the events
 * dropped, and a run stopped between the two leaves detached tables whose
 * events still have their keys: the next run finds them by name, deletes
 * their keys and drops them. Everything else is deleted BATCH rows at a
 * time, each batch its own transaction, so no lock is held long.
 */
#include "db/retention.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/pool.h"
#include "lib/buf.h"
#include "lib/hb.h"

#define BATCH 1000
#define LOCK_TIMEOUT "200ms"
#define BACKOFF_MIN_US 100000
#define BACKOFF_MAX_US 1000000
#define DETACH_GIVE_UP_MS 30000
#define PARTITION_LOCK "1751343728" /* the one hubbub_partitions_ensure() takes */
#define RUN_LOCK "1751343730"       /* one retention run at a time */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

/* Runs sql (params as text) expecting rows; *out the first row's columns as
 * numbers (up to n). */
static int query_ints(PGconn *c, const char *sql, int nparams, const char *const *params,
                      int64_t *out, int n, char *err, size_t errsz)
{
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = fail(c, r, "retention", err, errsz);
    else
        for (int i = 0; i < n; i++)
            out[i] = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, i), NULL, 10) : 0;
    PQclear(r);
    return rc;
}

/* ---- whole months ---- */

/* The tenant (name and days) that still keeps something in the month's
 * partitions (either may be NULL), or NULL (caller frees). */
static int month_keeper(PGconn *c, const char *ev, const char *dl, const char *days, char **who,
                        char *err, size_t errsz)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT t.name || ' (' || t.retention_days || ' days)' FROM tenants t"
                   " WHERE t.retention_days > $1::int AND (false");
    if (ev != NULL)
        buf_printf(&sql,
                   " OR EXISTS (SELECT 1 FROM %s e WHERE e.tenant_id = t.id"
                   "  AND e.received_at >= now() - make_interval(days => t.retention_days))",
                   ev);
    if (dl != NULL)
        buf_printf(&sql,
                   " OR EXISTS (SELECT 1 FROM %s d JOIN apps a ON a.id = d.app_id"
                   "  WHERE a.tenant_id = t.id"
                   "   AND d.received_at >= now() - make_interval(days => t.retention_days))",
                   dl);
    buf_puts(&sql, ") ORDER BY t.id LIMIT 1");
    const char *params[] = {days};
    PGresult *r = PQexecParams(c, sql.data, 1, NULL, params, NULL, NULL, 0);
    buf_dispose(&sql);
    int rc = 0;
    *who = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = fail(c, r, "checking a month's tenants", err, errsz);
    else if (PQntuples(r) > 0)
        *who = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* The month's partitions leave their parents: one short transaction that
 * needs the parents' exclusive lock (DETACH ... CONCURRENTLY is not allowed
 * beside a DEFAULT partition). While it waits for that lock every insert
 * queues behind it, so it waits at most LOCK_TIMEOUT, then lets ingest run
 * for a backoff and tries again, until DETACH_GIVE_UP_MS have passed. */
static int detach_month(PGconn *c, const char *ev, const char *dl, char *err, size_t errsz)
{
    struct buf sql;
    buf_init(&sql);
    buf_printf(&sql,
               "BEGIN; SET LOCAL lock_timeout = '" LOCK_TIMEOUT "';"
               " SELECT pg_advisory_xact_lock(" PARTITION_LOCK ");"
               " ALTER TABLE events DETACH PARTITION %s;",
               ev);
    if (dl != NULL)
        buf_printf(&sql, " ALTER TABLE deliveries DETACH PARTITION %s;", dl);
    buf_puts(&sql, " COMMIT");
    uint64_t start = now_ms();
    useconds_t backoff_us = BACKOFF_MIN_US;
    int rc;
    for (int attempt = 1;; attempt++) {
        PGresult *r = PQexec(c, sql.data);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        bool again = !ok && strcmp(db_sqlstate(r), "55P03") == 0; /* lock_not_available */
        rc = ok ? 0 : fail(c, r, "detaching a month", err, errsz);
        PQclear(r);
        if (PQtransactionStatus(c) != PQTRANS_IDLE)
            PQclear(PQexec(c, "ROLLBACK"));
        if (!again)
            break;
        if (now_ms() - start + backoff_us / 1000 >= DETACH_GIVE_UP_MS) {
            size_t n = strlen(err);
            snprintf(err + n, errsz - n, " (gave up after %d attempts)", attempt);
            break;
        }
        usleep(backoff_us);
        backoff_us = backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff_us * 2;
    }
    buf_dispose(&sql);
    return rc;
}

/* Deletes the dedup keys of a detached events partition's rows and drops it
 * (and the month's detached deliveries partition), in one transaction: a
 * run stopped anywhere leaves either the detached tables with all their
 * keys, which the next run finishes, or neither. Nothing else takes these
 * tables' locks any more, so ingest never waits for this. */
static int drop_detached(PGconn *c, const char *ev, const char *dl, char *err, size_t errsz)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "BEGIN;");
    if (ev != NULL)
        buf_printf(&sql,
                   " DELETE FROM event_keys k USING %s e"
                   " WHERE k.app_id = e.app_id AND k.dedup_key = e.dedup_key; DROP TABLE %s;",
                   ev, ev);
    if (dl != NULL)
        buf_printf(&sql, " DROP TABLE %s;", dl);
    buf_puts(&sql, " COMMIT");
    PGresult *r = PQexec(c, sql.data);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail(c, r, "dropping a month", err, errsz);
    PQclear(r);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    buf_dispose(&sql);
    return rc;
}

/* Detaches, then deletes the keys and drops. In between, the month's rows
 * are out of the parents: nothing can be stored into those partitions any
 * more (a replay of one of its deliveries that read it before the detach
 * stores its events into DEFAULT, with their keys, like any late row), so
 * the keys deleted are exactly those of the events dropped. */
static int drop_month(PGconn *c, const char *ev, const char *dl, char *err, size_t errsz)
{
    int rc = detach_month(c, ev, dl, err, errsz);
    return rc != 0 ? rc : drop_detached(c, ev, dl, err, errsz);
}

static char *ident(PGconn *c, const char *name)
{
    char *q = PQescapeIdentifier(c, name, strlen(name));
    if (q == NULL)
        abort();
    char *s = xstrdup(q);
    PQfreemem(q);
    return s;
}

/* Counts the rows of ev and dl (either may be NULL). */
static int count_rows(PGconn *c, const char *ev, const char *dl, int64_t counts[2], char *err,
                      size_t errsz)
{
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT ");
    if (ev != NULL)
        buf_printf(&sql, "(SELECT count(*) FROM %s), ", ev);
    else
        buf_puts(&sql, "0, ");
    if (dl != NULL)
        buf_printf(&sql, "(SELECT count(*) FROM %s)", dl);
    else
        buf_puts(&sql, "0");
    int rc = query_ints(c, sql.data, 0, NULL, counts, 2, err, errsz);
    buf_dispose(&sql);
    return rc;
}

/* Month partitions past the default retention that are no longer attached:
 * a run stopped after detaching them. Their keys are deleted and they are
 * dropped, as that run would have done, unless a tenant with a longer
 * retention keeps something there (a partition detached by hand). */
static int finish_detached(PGconn *c, const char *days, bool is_dry_run, FILE *out,
                           struct db_retention_result *res, char *err, size_t errsz)
{
    const char *params[] = {days};
    PGresult *r = PQexecParams(
        c,
        "SELECT right(c.relname, 7),"
        " bool_or(c.relname LIKE 'events%'), bool_or(c.relname LIKE 'deliveries%')"
        " FROM pg_class c"
        " WHERE c.relkind = 'r' AND NOT c.relispartition AND pg_table_is_visible(c.oid)"
        "  AND c.relname ~ '^(events|deliveries)_p[0-9]{4}_[0-9]{2}$'"
        "  AND (to_date(right(c.relname, 7), 'YYYY_MM') + interval '1 month')"
        "   AT TIME ZONE 'UTC' <= now() - make_interval(days => $1::int)"
        " GROUP BY 1 ORDER BY 1",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "listing detached partitions", err, errsz);
        PQclear(r);
        return rc;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        const char *month = PQgetvalue(r, i, 0);
        char name[32];
        snprintf(name, sizeof(name), "events_p%s", month);
        char *ev = strcmp(PQgetvalue(r, i, 1), "t") == 0 ? ident(c, name) : NULL;
        snprintf(name, sizeof(name), "deliveries_p%s", month);
        char *dl = strcmp(PQgetvalue(r, i, 2), "t") == 0 ? ident(c, name) : NULL;
        char *who = NULL;
        int64_t counts[2] = {0, 0};
        rc = month_keeper(c, ev, dl, days, &who, err, errsz);
        if (rc == 0)
            rc = count_rows(c, ev, dl, counts, err, errsz);
        if (rc == 0 && who != NULL) {
            fprintf(out, "left detached month %s alone: tenant %s still keeps events there\n",
                    month, who);
        } else if (rc == 0 && (is_dry_run || (rc = drop_detached(c, ev, dl, err, errsz)) == 0)) {
            fprintf(out,
                    "%s month %s, detached by an earlier run: %" PRId64 " events and %" PRId64
                    " deliveries, with their dedup keys\n",
                    is_dry_run ? "would finish dropping" : "finished dropping", month, counts[0],
                    counts[1]);
            res->partitions_dropped++;
            res->events_dropped += counts[0];
            res->deliveries_dropped += counts[1];
        }
        free(who);
        free(ev);
        free(dl);
    }
    PQclear(r);
    return rc;
}

/* In a dry run, *dropped gets the month ("YYYY_MM") of every partition that
 * would go, comma-separated: they are still attached, and the row counts
 * that follow must not count their rows a second time. */
static int months(PGconn *c, const char *days, bool is_dry_run, FILE *out, struct buf *dropped,
                  struct db_retention_result *res, char *err, size_t errsz)
{
    const char *params[] = {days};
    PGresult *r =
        PQexecParams(c,
                     "SELECT right(c.relname, 7),"
                     " to_regclass('deliveries_p' || right(c.relname, 7)) IS NOT NULL"
                     " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                     " WHERE i.inhparent = 'events'::regclass"
                     "  AND c.relname ~ '^events_p[0-9]{4}_[0-9]{2}$'"
                     "  AND (to_date(right(c.relname, 7), 'YYYY_MM') + interval '1 month')"
                     "   AT TIME ZONE 'UTC' <= now() - make_interval(days => $1::int)"
                     " ORDER BY 1",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "listing partitions", err, errsz);
        PQclear(r);
        return rc;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        char name[32];
        snprintf(name, sizeof(name), "events_p%s", PQgetvalue(r, i, 0));
        char *ev = ident(c, name);
        snprintf(name, sizeof(name), "deliveries_p%s", PQgetvalue(r, i, 0));
        char *dl = strcmp(PQgetvalue(r, i, 1), "t") == 0 ? ident(c, name) : NULL;
        char *who = NULL;
        int64_t counts[2] = {0, 0};
        rc = month_keeper(c, ev, dl, days, &who, err, errsz);
        if (rc == 0)
            rc = count_rows(c, ev, dl, counts, err, errsz);
        if (rc == 0 && who != NULL) {
            fprintf(out, "kept month %s: tenant %s still keeps events there\n", PQgetvalue(r, i, 0),
                    who);
        } else if (rc == 0 && (is_dry_run || (rc = drop_month(c, ev, dl, err, errsz)) == 0)) {
            fprintf(out,
                    "%s month %s: partitions of %" PRId64 " events and %" PRId64
                    " deliveries, with their dedup keys\n",
                    is_dry_run ? "would drop" : "dropped", PQgetvalue(r, i, 0), counts[0],
                    counts[1]);
            res->partitions_dropped++;
            res->events_dropped += counts[0];
            res->deliveries_dropped += counts[1];
            if (is_dry_run)
                buf_printf(dropped, "%s%s", dropped->len > 0 ? "," : "", PQgetvalue(r, i, 0));
        }
        free(who);
        free(ev);
        free(dl);
    }
    PQclear(r);
    return rc;
}

/* ---- rows, in batches ---- */

/* Deletes (or counts) the events matching who ($2 when it names a tenant)
 * older than $1 days, with their keys, then the deliveries matching dwho. A
 * dry run counts nothing in the months of dropped (see months()), which a
 * real run has dropped by then. */
static int rows(PGconn *c, const char *who, const char *dwho, const char *days, const char *tenant,
                const char *dropped, bool is_dry_run, int64_t *events, int64_t *deliveries,
                char *err, size_t errsz)
{
    const char *params[] = {days, tenant};
    int nparams = tenant != NULL ? 2 : 1;
    struct buf sql;
    buf_init(&sql);
    int rc = 0;
    *events = *deliveries = 0;
    if (is_dry_run) {
        int64_t n[2];
        char *list = PQescapeLiteral(c, dropped, strlen(dropped));
        if (list == NULL)
            abort();
        buf_printf(&sql,
                   "WITH gone AS (SELECT oid FROM pg_class WHERE oid IN (SELECT"
                   "  to_regclass(t || '_p' || m) FROM unnest(string_to_array(%s, ',')) m,"
                   "  unnest(ARRAY['events', 'deliveries']) t))"
                   " SELECT (SELECT count(*) FROM events WHERE %s"
                   "  AND received_at < now() - make_interval(days => $1::int)"
                   "  AND tableoid NOT IN (SELECT oid FROM gone)),"
                   " (SELECT count(*) FROM deliveries WHERE %s"
                   "  AND received_at < now() - make_interval(days => $1::int)"
                   "  AND tableoid NOT IN (SELECT oid FROM gone))",
                   list, who, dwho);
        PQfreemem(list);
        rc = query_ints(c, sql.data, nparams, params, n, 2, err, errsz);
        *events = n[0];
        *deliveries = n[1];
        buf_dispose(&sql);
        return rc;
    }
    buf_printf(&sql,
               "WITH v AS (SELECT id, received_at FROM events WHERE %s"
               "  AND received_at < now() - make_interval(days => $1::int) LIMIT %d),"
               " e AS (DELETE FROM events x USING v WHERE x.id = v.id"
               "  AND x.received_at = v.received_at RETURNING x.app_id, x.dedup_key),"
               " k AS (DELETE FROM event_keys k USING e WHERE k.app_id = e.app_id"
               "  AND k.dedup_key = e.dedup_key RETURNING 1)"
               " SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM k)",
               who, BATCH);
    for (;;) {
        int64_t n[2];
        if ((rc = query_ints(c, sql.data, nparams, params, n, 2, err, errsz)) != 0)
            break;
        *events += n[0];
        if (n[0] < BATCH)
            break;
    }
    buf_reset(&sql);
    buf_printf(&sql,
               "WITH v AS (SELECT id, received_at FROM deliveries WHERE %s"
               "  AND received_at < now() - make_interval(days => $1::int) LIMIT %d),"
               " d AS (DELETE FROM deliveries x USING v WHERE x.id = v.id"
               "  AND x.received_at = v.received_at RETURNING 1)"
               " SELECT count(*) FROM d",
               dwho, BATCH);
    while (rc == 0) {
        int64_t n;
        if ((rc = query_ints(c, sql.data, nparams, params, &n, 1, err, errsz)) != 0)
            break;
        *deliveries += n;
        if (n < BATCH)
            break;
    }
    buf_dispose(&sql);
    return rc;
}

static int run(PGconn *c, int default_days, bool is_dry_run, FILE *out,
               struct db_retention_result *res, char *err, size_t errsz)
{
    char days[16];
    snprintf(days, sizeof(days), "%d", default_days);
    struct buf dropped;
    buf_init(&dropped);
    buf_puts(&dropped, "");
    int rc = finish_detached(c, days, is_dry_run, out, res, err, errsz);
    if (rc == 0)
        rc = months(c, days, is_dry_run, out, &dropped, res, err, errsz);
    if (rc != 0) {
        buf_dispose(&dropped);
        return rc;
    }

    const char *params[] = {days};
    PGresult *t = PQexecParams(c,
                               "SELECT id, name, coalesce(retention_days, $1::int),"
                               " retention_days IS NOT NULL FROM tenants ORDER BY id",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(t) != PGRES_TUPLES_OK) {
        rc = fail(c, t, "listing tenants", err, errsz);
        PQclear(t);
        buf_dispose(&dropped);
        return rc;
    }
    const char *verb = is_dry_run ? "would delete" : "deleted";
    for (int i = 0; rc == 0 && i < PQntuples(t); i++) {
        int64_t ne, nd;
        rc = rows(c, "tenant_id = $2::int8",
                  "app_id IN (SELECT id FROM apps WHERE tenant_id = $2::int8)", PQgetvalue(t, i, 2),
                  PQgetvalue(t, i, 0), dropped.data, is_dry_run, &ne, &nd, err, errsz);
        if (rc == 0 && (ne > 0 || nd > 0))
            fprintf(out, "tenant %s (%s days%s): %s %" PRId64 " events, %" PRId64 " deliveries\n",
                    PQgetvalue(t, i, 1), PQgetvalue(t, i, 2),
                    strcmp(PQgetvalue(t, i, 3), "t") == 0 ? "" : ", the default", verb, ne, nd);
        res->events_deleted += ne;
        res->deliveries_deleted += nd;
    }
    PQclear(t);
    if (rc == 0) {
        int64_t ne, nd;
        rc = rows(c, "tenant_id IS NULL",
                  "app_id NOT IN (SELECT id FROM apps WHERE tenant_id IS NOT NULL)", days, NULL,
                  dropped.data, is_dry_run, &ne, &nd, err, errsz);
        if (rc == 0 && (ne > 0 || nd > 0))
            fprintf(out,
                    "unrouted events and shared apps' deliveries (%s days): %s %" PRId64
                    " events, %" PRId64 " deliveries\n",
                    days, verb, ne, nd);
        res->events_deleted += ne;
        res->deliveries_deleted += nd;
    }
    if (rc == 0)
        fprintf(out,
                "%s: %d month(s) dropped (%" PRId64 " events, %" PRId64 " deliveries); %" PRId64
                " events and %" PRId64 " deliveries deleted\n",
                is_dry_run ? "dry run, nothing changed" : "done", res->partitions_dropped,
                res->events_dropped, res->deliveries_dropped, res->events_deleted,
                res->deliveries_deleted);
    buf_dispose(&dropped);
    return rc;
}

int db_retention_run(PGconn *c, int default_days, bool is_dry_run, FILE *out,
                     struct db_retention_result *res, char *err, size_t errsz)
{
    memset(res, 0, sizeof(*res));
    if (default_days < 1) {
        snprintf(err, errsz, "the retention must be at least one day");
        return HB_EINVAL;
    }
    if (is_dry_run)
        return run(c, default_days, is_dry_run, out, res, err, errsz);
    /* One run at a time: two would both try to finish the same detached
     * month, and the second would fail half-way. */
    PGresult *r = PQexec(c, "SELECT pg_try_advisory_lock(" RUN_LOCK ")");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, "taking the retention lock", err, errsz);
        PQclear(r);
        return rc;
    }
    bool is_mine = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!is_mine) {
        snprintf(err, errsz, "another retention run is in progress; try again when it ends");
        return HB_EBUSY;
    }
    int rc = run(c, default_days, is_dry_run, out, res, err, errsz);
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" RUN_LOCK ")"));
    return rc;
}
