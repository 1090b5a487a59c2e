/*
 * replay.c - hubbub replay; see replay.h.
 *
 * Deliveries are read in id order (keyset on id), with their app's owner,
 * which is what the webhook's app lookup gives the writer, a batch at a
 * time: at most BATCH deliveries whose bodies stay within BATCH_BYTES_MAX
 * (the writers' cap; their sizes are read first), or a single bigger one,
 * so memory and the statement's parameters stay bounded. Each batch is
 * stored in one transaction; a batch the database refuses for its data is
 * stored one delivery at a time, and a delivery refused on its own is
 * reported and skipped, as the writers do.
 */
#include "server/replay.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "db/ingest.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "server/webhook.h"

#define BATCH 200
#define BATCH_BYTES_MAX INGEST_BATCH_BYTES_MAX

/* The selection, shared by both queries; $1 is the id to start after. */
#define FILTER                                                                                     \
    " FROM deliveries d JOIN apps a ON a.id = d.app_id"                                            \
    " WHERE d.id > $1::int8 AND ($2::text IS NULL OR a.meta_app_id = $2)"                          \
    "  AND ($3::timestamptz IS NULL OR d.received_at >= $3)"                                       \
    "  AND ($4::timestamptz IS NULL OR d.received_at < $4)"                                        \
    "  AND ($5 = 'all' OR d.status = $5) AND ($6::int8 IS NULL OR d.id = $6::int8)"

/* The next deliveries' sizes (octet_length reads no body), to choose a batch. */
static const char SIZES_SQL[] =
    "SELECT d.id, octet_length(d.body)" FILTER " ORDER BY d.id LIMIT %d";

/* Then the chosen ones: up to $7 of them, none past id $8. */
static const char READ_SQL[] =
    "SELECT d.id::text, d.app_id::text, ((extract(epoch FROM d.received_at) * "
    "1000000)::int8)::text,"
    " a.tenant_id::text, d.status, d.body" FILTER " AND d.id <= $8::int8"
    " ORDER BY d.id LIMIT $7::int";

static int fail(PGconn *c, PGresult *r, char *err, size_t errsz)
{
    int rc = db_result_rc(c, r);
    snprintf(err, errsz, "%s", r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return rc;
}

/* How many of the next deliveries make a batch: up to BATCH of them, whose
 * bodies together stay within BATCH_BYTES_MAX, and at least one however big
 * it is; *last_id the last one's id. 0 when none is left. */
static int choose_batch(PGconn *c, const char *const *params, int64_t *last_id, char *err,
                        size_t errsz)
{
    char sql[sizeof(SIZES_SQL) + 16];
    snprintf(sql, sizeof(sql), SIZES_SQL, BATCH);
    PGresult *r = PQexecParams(c, sql, 6, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = fail(c, r, err, errsz);
        PQclear(r);
        return rc;
    }
    int n = 0;
    uint64_t bytes = 0;
    for (; n < PQntuples(r); n++) {
        uint64_t len = strtoull(PQgetvalue(r, n, 1), NULL, 10);
        if (n > 0 && bytes + len > BATCH_BYTES_MAX)
            break;
        bytes += len;
        *last_id = strtoll(PQgetvalue(r, n, 0), NULL, 10);
    }
    PQclear(r);
    return n;
}

/* Stores batch[0..n) in one transaction; when PostgreSQL refuses it for its
 * data, one delivery at a time, and a delivery refused on its own is
 * reported and skipped (it stays stored as it was). HB_E* only when the
 * database is unavailable, which ends the run. */
static int store(PGconn *c, struct ingest_delivery **batch, const bool *was_rejected, int n,
                 FILE *out, struct replay_result *res, char *err, size_t errsz)
{
    char why[256];
    int rc = db_ingest_replay(c, batch, (size_t)n, why, sizeof(why));
    res->transactions++;
    if (rc == HB_EUNAVAILABLE) {
        snprintf(err, errsz, "%s", why);
        return rc;
    }
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            res->events_new += (int64_t)batch[i]->nstored;
        return 0;
    }
    if (n > 1) {
        for (int i = 0; i < n; i++)
            if ((rc = store(c, &batch[i], &was_rejected[i], 1, out, res, err, errsz)) != 0)
                return rc;
        return 0;
    }
    fprintf(out, "delivery %" PRId64 " skipped: the database refused its events (%s)\n",
            batch[0]->delivery_id, why);
    res->refused++;
    res->events_refused += (int64_t)batch[0]->nevents;
    if (was_rejected[0] && batch[0]->reject_reason == NULL)
        res->now_accepted--; /* it stays rejected */
    return 0;
}

int replay_run(PGconn *c, const struct config *cfg, const struct replay_options *o, FILE *out,
               struct replay_result *res, char *err, size_t errsz)
{
    memset(res, 0, sizeof(*res));
    char after[24] = "0", limit[16], last[24];
    struct ingest_delivery *batch[BATCH];
    bool was_rejected[BATCH];
    int rc = 0;
    for (;;) {
        const char *params[] = {after,     o->meta_app_id, o->since, o->until,
                                o->status, o->delivery_id, limit,    last};
        int64_t last_id = 0;
        int want = choose_batch(c, params, &last_id, err, errsz);
        if (want <= 0) {
            rc = want;
            break;
        }
        snprintf(limit, sizeof(limit), "%d", want);
        snprintf(last, sizeof(last), "%" PRId64, last_id);
        PGresult *r = PQexecParams(c, READ_SQL, 8, NULL, params, NULL, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            rc = fail(c, r, err, errsz);
            PQclear(r);
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            struct ingest_delivery *d = ingest_delivery_new();
            d->delivery_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            d->app_id = strtoll(PQgetvalue(r, i, 1), NULL, 10);
            d->received_at_us = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            d->has_tenant = !PQgetisnull(r, i, 3);
            if (d->has_tenant)
                d->tenant_id = strtoll(PQgetvalue(r, i, 3), NULL, 10);
            was_rejected[i] = strcmp(PQgetvalue(r, i, 4), "rejected") == 0;
            webhook_split(d, PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5), cfg);
            res->deliveries++;
            res->events += (int64_t)d->nevents;
            if (d->reject_reason != NULL)
                res->rejected++;
            else if (was_rejected[i])
                res->now_accepted++;
            batch[i] = d;
        }
        PQclear(r);
        /* Past the chosen ones even if some vanished meanwhile. */
        snprintf(after, sizeof(after), "%" PRId64, last_id);
        if (n > 0 && !o->is_dry_run)
            rc = store(c, batch, was_rejected, n, out, res, err, errsz);
        for (int i = 0; i < n; i++)
            ingest_delivery_free(batch[i]);
        if (rc != 0)
            break;
    }
    if (rc == 0 && o->is_dry_run)
        fprintf(out,
                "dry run, nothing changed: %" PRId64 " deliveries read, %" PRId64
                " events split (%" PRId64 " rejected deliveries would be accepted, %" PRId64
                " still do not split)\n",
                res->deliveries, res->events, res->now_accepted, res->rejected);
    else if (rc == 0)
        fprintf(out,
                "%" PRId64 " deliveries read (%" PRId64 " rejected ones now accepted, %" PRId64
                " still rejected); events: %" PRId64 " new, %" PRId64 " already stored; %" PRId64
                " deliveries refused by the database and skipped; %" PRId64 " transactions\n",
                res->deliveries, res->now_accepted, res->rejected, res->events_new,
                res->events - res->events_new - res->events_refused, res->refused,
                res->transactions);
    return rc;
}
