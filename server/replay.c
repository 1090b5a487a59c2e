/*
 * replay.c - hubbub replay; see replay.h.
 *
 * Deliveries are read BATCH at a time in id order (keyset on id), with their
 * app's owner, which is what the webhook's app lookup gives the writer; each
 * batch is stored in one transaction.
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
#define STR_(x) #x
#define STR(x) STR_(x)

static const char READ_SQL[] =
    "SELECT d.id::text, d.app_id::text, ((extract(epoch FROM d.received_at) * "
    "1000000)::int8)::text,"
    " a.tenant_id::text, d.status, d.body"
    " FROM deliveries d JOIN apps a ON a.id = d.app_id"
    " WHERE d.id > $1::int8 AND ($2::text IS NULL OR a.meta_app_id = $2)"
    "  AND ($3::timestamptz IS NULL OR d.received_at >= $3)"
    "  AND ($4::timestamptz IS NULL OR d.received_at < $4)"
    "  AND ($5 = 'all' OR d.status = $5) AND ($6::int8 IS NULL OR d.id = $6::int8)"
    " ORDER BY d.id LIMIT " STR(BATCH);

static int fail(PGconn *c, PGresult *r, char *err, size_t errsz)
{
    int rc = db_result_rc(c, r);
    snprintf(err, errsz, "%s", r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
        err[--n] = '\0';
    return rc;
}

int replay_run(PGconn *c, const struct config *cfg, const struct replay_options *o, FILE *out,
               struct replay_result *res, char *err, size_t errsz)
{
    memset(res, 0, sizeof(*res));
    char after[24] = "0";
    struct ingest_delivery *batch[BATCH];
    int rc = 0;
    for (;;) {
        const char *params[] = {after,    o->meta_app_id, o->since,
                                o->until, o->status,      o->delivery_id};
        PGresult *r = PQexecParams(c, READ_SQL, 6, NULL, params, NULL, NULL, 1);
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
            bool was_rejected = strcmp(PQgetvalue(r, i, 4), "rejected") == 0;
            webhook_split(d, PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5), cfg);
            res->deliveries++;
            res->events += (int64_t)d->nevents;
            if (d->reject_reason != NULL)
                res->rejected++;
            else if (was_rejected)
                res->now_accepted++;
            batch[i] = d;
        }
        if (n > 0)
            snprintf(after, sizeof(after), "%" PRId64, batch[n - 1]->delivery_id);
        PQclear(r);
        if (n > 0 && !o->is_dry_run) {
            rc = db_ingest_replay(c, batch, (size_t)n);
            if (rc != 0)
                fail(c, NULL, err, errsz);
            for (int i = 0; i < n; i++)
                res->events_new += (int64_t)batch[i]->nstored;
        }
        for (int i = 0; i < n; i++)
            ingest_delivery_free(batch[i]);
        if (rc != 0 || n < BATCH)
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
                " still rejected); events: %" PRId64 " new, %" PRId64 " already stored\n",
                res->deliveries, res->now_accepted, res->rejected, res->events_new,
                res->events - res->events_new);
    return rc;
}
