/*
 * ingest.c - the group-commit writer; see ingest.h for the design.
 *
 * Parameters travel in PostgreSQL's binary array format: no escaping, no
 * parsing of numbers or bytea hex on the server, and a raw body that is not
 * even UTF-8 goes through untouched. Delivery ids are reserved from the
 * sequence ahead of time so that the one INSERT statement can fill both
 * tables without joining them back together.
 */
#include "db/ingest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/pool.h"
#include "lib/buf.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "lib/metrics.h"

#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25
#define OID_TIMESTAMPTZ 1184

/* Unix epoch to PostgreSQL epoch (2000-01-01) in microseconds. */
#define PG_EPOCH_OFFSET_US 946684800000000LL
#define BATCH_BYTES_MAX INGEST_BATCH_BYTES_MAX
#define ID_RESERVE 1024
#define DEADLOCK_RETRIES 3

enum { NPARAMS = 18 };

/* The events of a batch: their keys first, then the events whose key this
 * statement inserted. event_keys is the dedup across partitions (see
 * migrations/0004_partitions.sql); the items come sorted by (app, key) with
 * no key twice (build_params), so concurrent batches take key locks in one
 * order and the join below matches each won key once. */
#define EVENTS_CTES                                                                                \
    "u AS ("                                                                                       \
    " SELECT * FROM unnest($9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[],"        \
    "  $14::text[], $15::timestamptz[], $16::timestamptz[], $17::bytea[], $18::text[])"            \
    "  AS u(app_id, tenant_id, delivery_id, object, field, entry_id, entry_time, received_at,"     \
    "  dedup_key, payload)"                                                                        \
    "), k AS ("                                                                                    \
    " INSERT INTO event_keys (app_id, dedup_key) SELECT app_id, dedup_key FROM u"                  \
    " ON CONFLICT DO NOTHING RETURNING app_id, dedup_key"                                          \
    "), e AS ("                                                                                    \
    " INSERT INTO events (app_id, tenant_id, delivery_id, object, field, entry_id, entry_time,"    \
    "  received_at, dedup_key, payload)"                                                           \
    " SELECT u.app_id," /* An app's owner gets all its events; a shared app's event goes to the    \
                         * tenant whose account is its entry, or stays unrouted (NULL). */         \
    "  coalesce(u.tenant_id, (SELECT a.tenant_id FROM accounts a WHERE a.app_id = u.app_id"        \
    "   AND (a.ig_id = u.entry_id COLLATE \"C\" OR a.page_id = u.entry_id COLLATE \"C\")"          \
    "   ORDER BY a.id LIMIT 1)),"                                                                  \
    "  u.delivery_id, u.object, u.field, u.entry_id, u.entry_time, u.received_at, u.dedup_key,"    \
    "  u.payload::jsonb"                                                                           \
    " FROM u JOIN k ON k.app_id = u.app_id AND k.dedup_key = u.dedup_key"                          \
    " RETURNING id, delivery_id, tenant_id, field,"                                                \
    "  CASE WHEN field = 'message_echoes' THEN payload->'message'->>'mid' END AS echo_mid"         \
    "), m AS (" /* The echo of a reply we sent links to its outbox row (when the Send              \
                 * API answered first; else the worker links it when it stores the id). */         \
    " UPDATE messages SET echo_event_id = e.id FROM e"                                             \
    " WHERE e.echo_mid IS NOT NULL AND messages.meta_message_id = e.echo_mid"                      \
    "  AND messages.tenant_id = e.tenant_id AND messages.echo_event_id IS NULL"                    \
    ")"                                                                                            \
    " SELECT delivery_id, count(*), field FROM e GROUP BY delivery_id, field"

static const char INGEST_SQL[] =
    "WITH d AS ("
    " INSERT INTO deliveries (id, app_id, received_at, status, reject_reason, signature,"
    "  item_count, body)"
    " SELECT * FROM unnest($1::int8[], $2::int8[], $3::timestamptz[], $4::text[], $5::text[],"
    "  $6::text[], $7::int4[], $8::bytea[])"
    "), " EVENTS_CTES;

/* Replay: the deliveries are stored already (their ids and received_at come
 * in $1 and $3); a rejected one that split now becomes accepted. $5, $6 and
 * $8 are not used, but keep the parameters those of INGEST_SQL. */
static const char REPLAY_SQL[] =
    "WITH d AS ("
    " UPDATE deliveries SET status = 'accepted', reject_reason = NULL, item_count = v.n"
    " FROM unnest($1::int8[], $3::timestamptz[], $4::text[], $7::int4[]) AS v(id, at, st, n)"
    " WHERE deliveries.id = v.id AND deliveries.received_at = v.at AND v.st = 'accepted'"
    "  AND deliveries.status = 'rejected'"
    "), " EVENTS_CTES;

/* The parameters' types (arrays of int8, timestamptz, text, int4, bytea), for
 * REPLAY_SQL, which leaves some unused. */
static const Oid PARAM_TYPES[NPARAMS] = {1016, 1016, 1185, 1009, 1009, 1009, 1007, 1001, 1016,
                                         1016, 1016, 1009, 1009, 1009, 1185, 1185, 1001, 1009};

struct db_ingest {
    struct db_ingest_config cfg;
    char *url;
    void (*notify)(void *);
    void *notify_arg;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* work queued, or stopping */
    struct ingest_delivery *head, *tail;
    size_t queued, queued_bytes;
    int committing; /* writers with a batch in flight */
    bool stopping;

    struct ingest_delivery *done_head, *done_tail; /* under mu */

    atomic_bool db_down;
    atomic_int connected; /* writers with a connection */

    int nthreads;
    pthread_t *threads;
};

/* Per-writer state: its connection, reserved ids and reusable buffers. */
struct writer {
    struct db_ingest *ing;
    int index;
    PGconn *conn;
    int64_t *ids;
    size_t nids, ids_used;
    struct buf params[NPARAMS];
};

struct ingest_delivery *ingest_delivery_new(void)
{
    return xcalloc(1, sizeof(struct ingest_delivery));
}

static void free_events(struct ingest_delivery *d)
{
    for (size_t i = 0; i < d->nevents; i++) {
        free(d->events[i].field);
        free(d->events[i].entry_id);
        free(d->events[i].json);
    }
    free(d->events);
    d->events = NULL;
    d->nevents = 0;
}

void ingest_delivery_free(struct ingest_delivery *d)
{
    if (d == NULL)
        return;
    free_events(d);
    free(d->body);
    free(d->object);
    free(d->reject_reason);
    free(d);
}

/* Turns d into a rejected delivery: drops its events, keeps its raw body. */
static void reject(struct ingest_delivery *d, const char *reason)
{
    free_events(d);
    free(d->object);
    d->object = NULL;
    free(d->reject_reason);
    d->reject_reason = xstrdup(reason);
}

static size_t delivery_bytes(const struct ingest_delivery *d)
{
    size_t n = sizeof(*d) + d->body_len;
    for (size_t i = 0; i < d->nevents; i++)
        n += sizeof(d->events[i]) + d->events[i].json_len + 64;
    return n;
}

/* ---- binary array encoding ---- */

static void put32(struct buf *b, uint32_t v)
{
    v = htonl(v);
    buf_append(b, &v, 4);
}

static void put64(struct buf *b, uint64_t v)
{
    put32(b, (uint32_t)(v >> 32));
    put32(b, (uint32_t)v);
}

static void arr_begin(struct buf *b, uint32_t elem_oid, size_t count)
{
    buf_reset(b);
    put32(b, 1); /* dimensions */
    put32(b, 1); /* may hold NULLs; PostgreSQL reads the lengths anyway */
    put32(b, elem_oid);
    put32(b, (uint32_t)count);
    put32(b, 1); /* lower bound */
}

static void arr_null(struct buf *b)
{
    put32(b, 0xFFFFFFFFu);
}

static void arr_int8(struct buf *b, int64_t v)
{
    put32(b, 8);
    put64(b, (uint64_t)v);
}

static void arr_int4(struct buf *b, int32_t v)
{
    put32(b, 4);
    put32(b, (uint32_t)v);
}

static void arr_bytes(struct buf *b, const void *p, size_t n)
{
    put32(b, (uint32_t)n);
    buf_append(b, p, n);
}

static void arr_text(struct buf *b, const char *s)
{
    if (s == NULL)
        arr_null(b);
    else
        arr_bytes(b, s, strlen(s));
}

static void arr_time_us(struct buf *b, int64_t unix_us)
{
    arr_int8(b, unix_us - PG_EPOCH_OFFSET_US);
}

/* ---- the writer ---- */

static void disconnect_writer(struct writer *w)
{
    PQfinish(w->conn);
    w->conn = NULL;
    atomic_fetch_sub(&w->ing->connected, 1);
}

static int connect_writer(struct writer *w)
{
    char err[512];
    w->conn = db_connect(w->ing->url, err, sizeof(err));
    if (w->conn == NULL) {
        char q[256];
        log_warn("ingest writer cannot connect", "writer=%d error=%s", w->index,
                 log_quote(q, sizeof(q), err, strlen(err)));
        return HB_EUNAVAILABLE;
    }
    atomic_fetch_add(&w->ing->connected, 1);
    if (w->ing->cfg.statement_timeout_ms > 0) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SET statement_timeout = %" PRId64,
                 w->ing->cfg.statement_timeout_ms);
        PGresult *t = PQexec(w->conn, sql);
        bool ok = PQresultStatus(t) == PGRES_COMMAND_OK;
        PQclear(t);
        if (!ok) {
            disconnect_writer(w);
            return HB_EUNAVAILABLE;
        }
    }
    PGresult *r = PQprepare(w->conn, "ingest", INGEST_SQL, NPARAMS, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : db_result_rc(w->conn, r);
    if (rc != 0) {
        const char *m = PQresultErrorMessage(r);
        char q[256];
        log_error("ingest writer cannot prepare", "writer=%d error=%s", w->index,
                  log_quote(q, sizeof(q), m, strlen(m)));
    }
    PQclear(r);
    if (rc != 0) {
        disconnect_writer(w);
        return rc;
    }
    w->nids = w->ids_used = 0;
    return 0;
}

/* Makes sure at least n delivery ids are reserved. */
static int reserve_ids(struct writer *w, size_t n)
{
    if (w->nids - w->ids_used >= n)
        return 0;
    size_t want = n > ID_RESERVE ? n : ID_RESERVE;
    char count[32];
    snprintf(count, sizeof(count), "%zu", want);
    const char *params[] = {count};
    PGresult *r = PQexecParams(
        w->conn, "SELECT nextval('deliveries_id_seq') FROM generate_series(1, $1::int)", 1, NULL,
        params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t)PQntuples(r) != want) {
        int rc = db_result_rc(w->conn, r);
        PQclear(r);
        return rc;
    }
    free(w->ids);
    w->ids = xmalloc(want * sizeof(*w->ids));
    for (size_t i = 0; i < want; i++)
        w->ids[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
    w->nids = want;
    w->ids_used = 0;
    PQclear(r);
    return 0;
}

struct sort_item {
    const struct ingest_delivery *d;
    const struct ingest_event *e;
};

static int cmp_event(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;
    if (x->d->app_id != y->d->app_id)
        return x->d->app_id < y->d->app_id ? -1 : 1;
    return memcmp(x->e->dedup_key, y->e->dedup_key, INGEST_KEY_LEN);
}

static void build_params(struct buf *p, struct ingest_delivery **batch, size_t n)
{
    size_t nevents = 0;
    for (size_t i = 0; i < n; i++)
        nevents += batch[i]->nevents;

    arr_begin(&p[0], OID_INT8, n);
    arr_begin(&p[1], OID_INT8, n);
    arr_begin(&p[2], OID_TIMESTAMPTZ, n);
    arr_begin(&p[3], OID_TEXT, n);
    arr_begin(&p[4], OID_TEXT, n);
    arr_begin(&p[5], OID_TEXT, n);
    arr_begin(&p[6], OID_INT4, n);
    arr_begin(&p[7], OID_BYTEA, n);
    for (size_t i = 0; i < n; i++) {
        const struct ingest_delivery *d = batch[i];
        bool rejected = d->reject_reason != NULL;
        arr_int8(&p[0], d->delivery_id);
        arr_int8(&p[1], d->app_id);
        arr_time_us(&p[2], d->received_at_us);
        arr_text(&p[3], rejected ? "rejected" : "accepted");
        arr_text(&p[4], d->reject_reason);
        arr_text(&p[5], d->signature);
        arr_int4(&p[6], (int32_t)d->nevents);
        arr_bytes(&p[7], d->body, d->body_len);
    }

    /* Sorted by key so that concurrent batches lock index entries in one order. */
    struct sort_item *items = xmalloc((nevents ? nevents : 1) * sizeof(*items));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < batch[i]->nevents; j++)
            items[k++] = (struct sort_item){batch[i], &batch[i]->events[j]};
    qsort(items, nevents, sizeof(*items), cmp_event);
    /* A key twice in one batch (Meta retried while the first was queued)
     * is stored once: keep the first of each run. */
    size_t kept = 0;
    for (size_t i = 0; i < nevents; i++)
        if (kept == 0 || cmp_event(&items[kept - 1], &items[i]) != 0)
            items[kept++] = items[i];
    nevents = kept;

    static const uint32_t oids[] = {OID_INT8,  OID_INT8, OID_INT8,        OID_TEXT,
                                    OID_TEXT,  OID_TEXT, OID_TIMESTAMPTZ, OID_TIMESTAMPTZ,
                                    OID_BYTEA, OID_TEXT};
    for (int c = 0; c < 10; c++)
        arr_begin(&p[8 + c], oids[c], nevents);
    for (size_t i = 0; i < nevents; i++) {
        const struct ingest_delivery *d = items[i].d;
        const struct ingest_event *e = items[i].e;
        arr_int8(&p[8], d->app_id);
        if (d->has_tenant)
            arr_int8(&p[9], d->tenant_id);
        else
            arr_null(&p[9]);
        arr_int8(&p[10], d->delivery_id);
        arr_text(&p[11], d->object);
        arr_text(&p[12], e->field);
        arr_text(&p[13], e->entry_id);
        if (e->has_entry_time)
            arr_time_us(&p[14], e->entry_time_ms * 1000);
        else
            arr_null(&p[14]);
        arr_time_us(&p[15], d->received_at_us);
        arr_bytes(&p[16], e->dedup_key, INGEST_KEY_LEN);
        arr_bytes(&p[17], e->json, e->json_len);
    }
    free(items);
}

static struct ingest_delivery *find_by_id(struct ingest_delivery **batch, size_t n, int64_t id)
{
    /* Ids were handed out in increasing order within a batch. */
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (batch[mid]->delivery_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && batch[lo]->delivery_id == id ? batch[lo] : NULL;
}

/* One attempt to store the whole batch in one statement (one transaction). */
/* A shared app's events are routed by its accounts (INGEST_SQL), and
 * api/accounts.c takes this per-app advisory lock exclusively while it adds
 * an account and routes the app's earlier unrouted events to it. Holding it
 * shared from before the insert until the commit means that either the
 * insert sees the new account or the account's backfill sees the inserted
 * events: none stays unrouted by racing the other. */
#define ACCOUNT_LOCK_CLASS 1751343727

static int compare_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Starts a transaction holding the shared-app locks, when the batch has
 * deliveries of shared apps; *in_tx says whether it did. */
static int begin_shared_apps(PGconn *c, struct ingest_delivery **batch, size_t n, bool *in_tx)
{
    *in_tx = false;
    int64_t *apps = xmalloc(n * sizeof(*apps));
    size_t napps = 0;
    for (size_t i = 0; i < n; i++)
        if (!batch[i]->has_tenant && batch[i]->reject_reason == NULL)
            apps[napps++] = batch[i]->app_id;
    if (napps == 0) {
        free(apps);
        return 0;
    }
    qsort(apps, napps, sizeof(*apps), compare_int64); /* one order: no deadlocks */
    struct buf sql;
    buf_init(&sql);
    buf_puts(&sql, "BEGIN; SELECT 1");
    for (size_t i = 0; i < napps; i++)
        if (i == 0 || apps[i] != apps[i - 1])
            buf_printf(&sql, ", pg_advisory_xact_lock_shared(%d, %d)", ACCOUNT_LOCK_CLASS,
                       (int)(apps[i] & 0x7fffffff));
    free(apps);
    PGresult *r = PQexec(c, sql.data);
    buf_dispose(&sql);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : db_result_rc(c, r);
    PQclear(r);
    *in_tx = PQtransactionStatus(c) != PQTRANS_IDLE;
    return rc;
}

static void end_transaction(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    PQclear(r);
}

static int store_once(struct writer *w, struct ingest_delivery **batch, size_t n,
                      const char **sqlstate_out, char *errmsg, size_t errsz)
{
    int rc = reserve_ids(w, n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        batch[i]->delivery_id = w->ids[w->ids_used++];
        batch[i]->nstored = 0;
    }
    build_params(w->params, batch, n);

    const char *values[NPARAMS];
    int lengths[NPARAMS], formats[NPARAMS];
    for (int i = 0; i < NPARAMS; i++) {
        values[i] = w->params[i].data;
        lengths[i] = (int)w->params[i].len;
        formats[i] = 1;
    }
    bool in_tx;
    if ((rc = begin_shared_apps(w->conn, batch, n, &in_tx)) != 0) {
        if (in_tx)
            end_transaction(w->conn, "ROLLBACK");
        *sqlstate_out = "";
        snprintf(errmsg, errsz, "cannot take the shared-app locks");
        return rc;
    }
    PGresult *r = PQexecPrepared(w->conn, "ingest", NPARAMS, values, lengths, formats, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && in_tx) {
        PGresult *c = PQexec(w->conn, "COMMIT");
        if (PQresultStatus(c) != PGRES_COMMAND_OK) {
            PQclear(r);
            r = c;
        } else {
            PQclear(c);
        }
        in_tx = false;
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (in_tx)
            end_transaction(w->conn, "ROLLBACK");
        rc = db_result_rc(w->conn, r);
        static _Thread_local char state[6];
        snprintf(state, sizeof(state), "%s", db_sqlstate(r));
        *sqlstate_out = state;
        /* The primary message only: DETAIL and CONTEXT may quote the
         * payload (a JSON parse error shows the text around the fault). */
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(errmsg, errsz, "%s", primary != NULL ? primary : PQerrorMessage(w->conn));
        size_t len = strlen(errmsg);
        while (len > 0 && errmsg[len - 1] == '\n')
            errmsg[--len] = '\0';
        PQclear(r);
        return rc;
    }
    /* One row per delivery and field with new events: committed now. */
    for (int i = 0; i < PQntuples(r); i++) {
        struct ingest_delivery *d = find_by_id(batch, n, strtoll(PQgetvalue(r, i, 0), NULL, 10));
        uint64_t count = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        if (d != NULL)
            d->nstored += (size_t)count;
        if (w->ing->cfg.on_stored != NULL)
            w->ing->cfg.on_stored(w->ing->cfg.on_stored_arg, PQgetvalue(r, i, 2), count);
    }
    PQclear(r);
    return 0;
}

/* A deadlock or serialization failure, or 23514: a row routed to a DEFAULT
 * partition just as partition upkeep attached the partition of its month
 * (the statement planned before the attach; run again, it routes there). No
 * CHECK constraint of the ingest tables fails for the values written here. */
static bool is_retryable(const char *state)
{
    return strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0 ||
           strcmp(state, "23514") == 0;
}

static int store_batch(struct writer *w, struct ingest_delivery **batch, size_t n);

/* PostgreSQL refused the batch for its data: find the delivery at fault. */
static int store_one_by_one(struct writer *w, struct ingest_delivery **batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rc = store_batch(w, &batch[i], 1);
        if (rc == HB_EUNAVAILABLE) {
            for (size_t j = i; j < n; j++)
                batch[j]->rc = HB_EUNAVAILABLE;
            return rc;
        }
    }
    return 0;
}

/* Stores batch[0..n); sets rc on every delivery. Returns HB_EUNAVAILABLE
 * when the connection is gone, 0 otherwise. */
static int store_batch(struct writer *w, struct ingest_delivery **batch, size_t n)
{
    const char *state = "";
    char errmsg[512] = "";
    int rc = HB_EDB;
    for (int attempt = 0; attempt <= DEADLOCK_RETRIES; attempt++) {
        rc = store_once(w, batch, n, &state, errmsg, sizeof(errmsg));
        if (rc == 0 || rc == HB_EUNAVAILABLE || !is_retryable(state))
            break;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            batch[i]->rc = 0;
        return 0;
    }
    if (rc == HB_EUNAVAILABLE) {
        for (size_t i = 0; i < n; i++)
            batch[i]->rc = HB_EUNAVAILABLE;
        return rc;
    }
    if (n > 1)
        return store_one_by_one(w, batch, n);

    struct ingest_delivery *d = batch[0];
    if (d->reject_reason != NULL) {
        /* Even the raw row was refused: nothing more we can do here. */
        char q[256];
        log_error("ingest cannot store delivery", "app_id=%lld sqlstate=%s error=%s",
                  (long long)d->app_id, state, log_quote(q, sizeof(q), errmsg, strlen(errmsg)));
        d->rc = HB_EDB;
        return 0;
    }
    char q[256];
    log_error("ingest refused items; storing delivery raw as rejected",
              "app_id=%lld sqlstate=%s error=%s", (long long)d->app_id, state,
              log_quote(q, sizeof(q), errmsg, strlen(errmsg)));
    char reason[128];
    snprintf(reason, sizeof(reason), "the database refused its items (SQLSTATE %s)", state);
    reject(d, reason);
    return store_batch(w, batch, 1);
}

static void complete(struct db_ingest *ing, struct ingest_delivery **batch, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&ing->mu);
    for (size_t i = 0; i < n; i++) {
        batch[i]->next = NULL;
        if (ing->done_tail != NULL)
            ing->done_tail->next = batch[i];
        else
            ing->done_head = batch[i];
        ing->done_tail = batch[i];
    }
    pthread_mutex_unlock(&ing->mu);
    ing->notify(ing->notify_arg);
}

/* Waits up to ms, or until stopping. Called with mu held. */
static void wait_ms(struct db_ingest *ing, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&ing->cv, &ing->mu, &ts);
}

/* Fails everything queued with HB_EUNAVAILABLE (the database went away). */
static void fail_queued(struct db_ingest *ing, struct ingest_delivery ***batch, size_t *cap)
{
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&ing->mu);
        while (ing->head != NULL) {
            if (n == *cap) {
                *cap *= 2;
                *batch = xrealloc(*batch, *cap * sizeof(**batch));
            }
            struct ingest_delivery *d = ing->head;
            ing->head = d->next;
            ing->queued--;
            ing->queued_bytes -= delivery_bytes(d);
            d->rc = HB_EUNAVAILABLE;
            (*batch)[n++] = d;
        }
        ing->tail = NULL;
        pthread_mutex_unlock(&ing->mu);
        if (n == 0)
            return;
        complete(ing, *batch, n);
    }
}

/* Reconnects with exponential backoff, failing whatever queues meanwhile.
 * Returns 0 when connected, HB_EUNAVAILABLE when told to stop first. */
static int reconnect(struct writer *w, struct ingest_delivery ***batch, size_t *cap)
{
    struct db_ingest *ing = w->ing;
    int64_t delay = 50;
    for (;;) {
        if (connect_writer(w) == 0) {
            if (atomic_exchange(&ing->db_down, false))
                log_info("database reachable again", "writer=%d", w->index);
            return 0;
        }
        if (!atomic_exchange(&ing->db_down, true))
            log_error("database unreachable; answering 503 until it is back", "writer=%d",
                      w->index);
        fail_queued(ing, batch, cap);
        pthread_mutex_lock(&ing->mu);
        if (!ing->stopping)
            wait_ms(ing, delay);
        bool stop = ing->stopping;
        pthread_mutex_unlock(&ing->mu);
        if (stop)
            return HB_EUNAVAILABLE;
        delay = delay * 2 > ing->cfg.retry_max_ms ? ing->cfg.retry_max_ms : delay * 2;
    }
}

/* Whether a writer should take a batch now. Commits serialise on the WAL
 * flush anyway, so while one is in flight a second writer would only halve
 * the batches (measured: 30k deliveries/s with one commit at a time, 22k
 * with two). A second writer starts only when a full batch is waiting, which
 * is when one writer cannot keep up. Called with mu held. */
static bool may_take(const struct db_ingest *ing)
{
    if (ing->head == NULL)
        return false;
    return ing->committing == 0 || ing->queued >= (size_t)ing->cfg.batch_max ||
           ing->queued_bytes >= BATCH_BYTES_MAX;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct db_ingest *ing = w->ing;
    size_t cap = 64;
    struct ingest_delivery **batch = xmalloc(cap * sizeof(*batch));

    for (;;) {
        size_t n = 0, bytes = 0;
        pthread_mutex_lock(&ing->mu);
        while (!may_take(ing) && !ing->stopping)
            pthread_cond_wait(&ing->cv, &ing->mu);
        if (ing->head == NULL && ing->stopping) {
            pthread_mutex_unlock(&ing->mu);
            break;
        }
        while (ing->head != NULL && n < (size_t)ing->cfg.batch_max &&
               (n == 0 || bytes < BATCH_BYTES_MAX)) {
            if (n == cap) {
                cap *= 2;
                batch = xrealloc(batch, cap * sizeof(*batch));
            }
            struct ingest_delivery *d = ing->head;
            ing->head = d->next;
            if (ing->head == NULL)
                ing->tail = NULL;
            size_t sz = delivery_bytes(d);
            ing->queued--;
            ing->queued_bytes -= sz;
            bytes += sz;
            batch[n++] = d;
        }
        ing->committing++;
        /* A full batch left over: another writer may start on it now. */
        if (may_take(ing))
            pthread_cond_signal(&ing->cv);
        pthread_mutex_unlock(&ing->mu);

        if (w->conn != NULL && !db_conn_alive(w->conn))
            disconnect_writer(w);
        int rc = w->conn != NULL ? 0 : connect_writer(w);
        if (rc == 0) {
            uint64_t t0 = now_us();
            rc = store_batch(w, batch, n);
            if (rc == 0 && ing->cfg.commit_us != NULL)
                metrics_histogram_observe(ing->cfg.commit_us, now_us() - t0);
            if (rc == 0 && ing->cfg.batch_size != NULL)
                metrics_histogram_observe(ing->cfg.batch_size, n);
        } else
            for (size_t i = 0; i < n; i++)
                batch[i]->rc = HB_EUNAVAILABLE;
        complete(ing, batch, n);
        pthread_mutex_lock(&ing->mu);
        ing->committing--;
        if (may_take(ing))
            pthread_cond_signal(&ing->cv);
        pthread_mutex_unlock(&ing->mu);
        if (rc == HB_EUNAVAILABLE) {
            if (w->conn != NULL)
                disconnect_writer(w);
            if (reconnect(w, &batch, &cap) != 0)
                fail_queued(ing, &batch, &cap);
        }
    }
    free(batch);
    if (w->conn != NULL)
        disconnect_writer(w);
    for (int p = 0; p < NPARAMS; p++)
        buf_dispose(&w->params[p]);
    free(w->ids);
    free(w);
    return NULL;
}

struct db_ingest *db_ingest_new(const struct db_ingest_config *cfg, void (*notify)(void *arg),
                                void *arg)
{
    struct db_ingest *ing = xcalloc(1, sizeof(*ing));
    ing->cfg = *cfg;
    ing->url = xstrdup(cfg->url);
    ing->cfg.url = ing->url;
    ing->notify = notify;
    ing->notify_arg = arg;
    pthread_mutex_init(&ing->mu, NULL);
    pthread_cond_init(&ing->cv, NULL);
    atomic_init(&ing->db_down, false);
    atomic_init(&ing->connected, 0);
    ing->nthreads = cfg->writers;
    ing->threads = xcalloc((size_t)cfg->writers, sizeof(pthread_t));
    for (int i = 0; i < cfg->writers; i++) {
        struct writer *w = xcalloc(1, sizeof(*w));
        w->ing = ing;
        w->index = i;
        for (int p = 0; p < NPARAMS; p++)
            buf_init(&w->params[p]);
        if (pthread_create(&ing->threads[i], NULL, writer_main, w) != 0)
            abort();
    }
    return ing;
}

int db_ingest_submit(struct db_ingest *ing, struct ingest_delivery *d)
{
    if (atomic_load(&ing->db_down))
        return HB_EUNAVAILABLE;
    size_t sz = delivery_bytes(d);
    pthread_mutex_lock(&ing->mu);
    int rc = 0;
    if (ing->stopping)
        rc = HB_EUNAVAILABLE;
    else if (ing->queued_bytes + sz > ing->cfg.queue_limit && ing->head != NULL)
        rc = HB_EBUSY;
    if (rc == 0) {
        d->next = NULL;
        d->rc = 0;
        if (ing->tail != NULL)
            ing->tail->next = d;
        else
            ing->head = d;
        ing->tail = d;
        ing->queued++;
        ing->queued_bytes += sz;
        if (may_take(ing))
            pthread_cond_signal(&ing->cv);
    }
    pthread_mutex_unlock(&ing->mu);
    return rc;
}

void db_ingest_stats(struct db_ingest *ing, struct db_ingest_stats *out)
{
    pthread_mutex_lock(&ing->mu);
    out->queued = ing->queued;
    out->queued_bytes = ing->queued_bytes;
    out->oldest_received_us = ing->head != NULL ? ing->head->received_at_us : 0;
    pthread_mutex_unlock(&ing->mu);
    out->connected = atomic_load(&ing->connected);
    out->is_down = atomic_load(&ing->db_down);
}

struct ingest_delivery *db_ingest_take_completed(struct db_ingest *ing)
{
    pthread_mutex_lock(&ing->mu);
    struct ingest_delivery *list = ing->done_head;
    ing->done_head = ing->done_tail = NULL;
    pthread_mutex_unlock(&ing->mu);
    return list;
}

void db_ingest_stop(struct db_ingest *ing)
{
    pthread_mutex_lock(&ing->mu);
    bool already = ing->stopping && ing->threads == NULL;
    ing->stopping = true;
    pthread_cond_broadcast(&ing->cv);
    pthread_mutex_unlock(&ing->mu);
    if (already || ing->threads == NULL)
        return;
    for (int i = 0; i < ing->nthreads; i++)
        pthread_join(ing->threads[i], NULL);
    free(ing->threads);
    ing->threads = NULL;
}

void db_ingest_free(struct db_ingest *ing)
{
    if (ing == NULL)
        return;
    db_ingest_stop(ing);
    struct ingest_delivery *d = db_ingest_take_completed(ing);
    while (d != NULL) {
        struct ingest_delivery *next = d->next;
        ingest_delivery_free(d);
        d = next;
    }
    pthread_cond_destroy(&ing->cv);
    pthread_mutex_destroy(&ing->mu);
    free(ing->url);
    free(ing);
}

int db_ingest_replay(PGconn *c, struct ingest_delivery **batch, size_t n, char *why, size_t whysz)
{
    snprintf(why, whysz, "%s", "");
    struct buf params[NPARAMS];
    for (int i = 0; i < NPARAMS; i++)
        buf_init(&params[i]);
    for (size_t i = 0; i < n; i++)
        batch[i]->nstored = 0;
    build_params(params, batch, n);
    const char *values[NPARAMS];
    int lengths[NPARAMS], formats[NPARAMS];
    for (int i = 0; i < NPARAMS; i++) {
        values[i] = params[i].data;
        lengths[i] = (int)params[i].len;
        formats[i] = 1;
    }
    int rc = HB_EDB;
    for (int attempt = 0; attempt <= DEADLOCK_RETRIES; attempt++) {
        bool in_tx;
        rc = begin_shared_apps(c, batch, n, &in_tx);
        PGresult *r = NULL;
        if (rc == 0) {
            r = PQexecParams(c, REPLAY_SQL, NPARAMS, PARAM_TYPES, values, lengths, formats, 0);
            if (PQresultStatus(r) == PGRES_TUPLES_OK && in_tx) {
                PGresult *cr = PQexec(c, "COMMIT");
                if (PQresultStatus(cr) != PGRES_COMMAND_OK) {
                    PQclear(r);
                    r = cr;
                } else {
                    PQclear(cr);
                }
                in_tx = false;
            }
            rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : db_result_rc(c, r);
        }
        if (in_tx)
            end_transaction(c, "ROLLBACK");
        if (rc == 0)
            for (int i = 0; i < PQntuples(r); i++) {
                struct ingest_delivery *d =
                    find_by_id(batch, n, strtoll(PQgetvalue(r, i, 0), NULL, 10));
                if (d != NULL)
                    d->nstored += (size_t)strtoull(PQgetvalue(r, i, 1), NULL, 10);
            }
        bool retry = rc != 0 && r != NULL && is_retryable(db_sqlstate(r));
        if (rc != 0) {
            const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
            snprintf(why, whysz, "SQLSTATE %s: %s", r != NULL ? db_sqlstate(r) : "",
                     primary != NULL ? primary : PQerrorMessage(c));
            size_t len = strlen(why);
            while (len > 0 && why[len - 1] == '\n')
                why[--len] = '\0';
        }
        PQclear(r);
        if (!retry)
            break;
    }
    for (int i = 0; i < NPARAMS; i++)
        buf_dispose(&params[i]);
    return rc;
}
