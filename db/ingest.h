/*
 * ingest.h - the group-commit writer: durable storage of verified deliveries.
 *
 * The event loop hands each verified delivery to db_ingest_submit() and
 * answers Meta only when the delivery comes back from
 * db_ingest_take_completed(): rc 0 there means the transaction holding the
 * delivery and all its events has committed with synchronous_commit on.
 *
 * Writer threads (each with its own connection) take everything that queued
 * up while their previous commit was in flight, up to batch_max deliveries,
 * and store it with a single INSERT statement built from binary arrays: one
 * round trip and one fsync for the whole batch, so throughput does not cost
 * an fsync per request. Events are inserted with ON CONFLICT DO NOTHING on
 * (app_id, dedup_key), which makes retried and re-batched items land once
 * even across processes; they are sorted by key so that concurrent batches
 * take row locks in one order.
 *
 * Failures: a lost connection, or a statement that runs past the statement
 * timeout (a database that hangs without dropping the connection, a lock
 * held by someone else), fails the batch with HB_EUNAVAILABLE (the HTTP
 * layer answers 503, Meta retries, dedup absorbs what did commit) and the
 * writer reconnects in the background with exponential backoff; while the
 * database is known to be down, submit refuses at once. If PostgreSQL refuses
 * a batch for its data, the batch is retried one delivery at a time so one
 * bad delivery cannot hold back others; a delivery refused on its own is
 * stored raw, marked rejected (reject_reason set), so nothing is lost.
 *
 * Threads: submit and take_completed may be called from any thread (in
 * practice the loop); notify() is called on a writer thread and must only
 * wake the loop (uv_async_send).
 */
#ifndef HB_DB_INGEST_H
#define HB_DB_INGEST_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INGEST_KEY_LEN 16
/* A batch's deliveries stop growing at this many bytes (a single bigger one
 * is a batch of its own): memory, and PostgreSQL's 1 GB parameter limit. */
#define INGEST_BATCH_BYTES_MAX (32u * 1024 * 1024)

struct ingest_event {
    char *field;    /* owned, never NULL */
    char *entry_id; /* owned, may be NULL */
    bool has_entry_time;
    int64_t entry_time_ms;
    char *json; /* owned: valid UTF-8 JSON text that jsonb accepts */
    size_t json_len;
    uint8_t dedup_key[INGEST_KEY_LEN];
};

struct ingest_delivery {
    /* set by the submitter; everything is owned by the delivery */
    int64_t app_id;
    bool has_tenant;
    int64_t tenant_id;
    int64_t received_at_us; /* Unix time in microseconds */
    char signature[72];     /* "sha256=<hex>" as verified */
    char *body;             /* raw bytes, any content */
    size_t body_len;
    char *object;        /* NULL for a rejected delivery */
    char *reject_reason; /* non-NULL: store raw only, marked rejected */
    struct ingest_event *events;
    size_t nevents;

    /* set by the writer before the delivery is completed */
    int rc;         /* 0 stored (rejected if reject_reason is set); HB_EUNAVAILABLE; HB_EDB */
    size_t nstored; /* events newly stored; the others were duplicates */
    int64_t delivery_id;

    /* for the submitter; the writer never touches it */
    void *data;

    struct ingest_delivery *next; /* owned by the queue while queued */
};

struct ingest_delivery *ingest_delivery_new(void);
void ingest_delivery_free(struct ingest_delivery *d);

struct metrics_histogram;

struct db_ingest_config {
    const char *url;
    int writers;
    int batch_max;
    size_t queue_limit;           /* bytes */
    int64_t retry_max_ms;         /* reconnect backoff cap */
    int64_t statement_timeout_ms; /* a commit taking longer fails with 503; 0: none */
    /* Optional (NULL): observed by the writers after each committed batch,
     * its number of deliveries and its time in microseconds. */
    struct metrics_histogram *batch_size;
    struct metrics_histogram *commit_us;
    /* Optional: called on a writer thread, after a commit, with the number
     * of events of one field that were new (not duplicates). */
    void (*on_stored)(void *arg, const char *field, uint64_t n);
    void *on_stored_arg;
};

struct db_ingest;

/* Starts the writers. They connect lazily; a database that is down at start
 * is treated like one that went down later. */
struct db_ingest *db_ingest_new(const struct db_ingest_config *cfg, void (*notify)(void *arg),
                                void *arg);

/* Queues d. 0: d now belongs to the writer until it comes back completed.
 * HB_EBUSY (queue over its limit) or HB_EUNAVAILABLE (database down, or
 * stopping): d was not queued and still belongs to the caller. */
int db_ingest_submit(struct db_ingest *ing, struct ingest_delivery *d);

/* Takes every completed delivery, oldest first, linked by next; NULL if none. */
struct ingest_delivery *db_ingest_take_completed(struct db_ingest *ing);

/* A moment's view of the queue, for /metrics and /readyz. Any thread. */
struct db_ingest_stats {
    size_t queued;              /* deliveries waiting for a writer */
    size_t queued_bytes;        /* their size as counted against queue_limit */
    int64_t oldest_received_us; /* received_at_us of the oldest waiting; 0 when none */
    int connected;              /* writers with an open connection */
    bool is_down;               /* the writers cannot reach the database */
};
void db_ingest_stats(struct db_ingest *ing, struct db_ingest_stats *out);

/* Stops accepting, lets the writers finish what is queued, joins them.
 * Deliveries completed meanwhile stay available to take_completed, and
 * notify is not called after this returns. */
void db_ingest_stop(struct db_ingest *ing);
void db_ingest_free(struct db_ingest *ing); /* stops first if needed */

/* Stores the events of deliveries that are stored already (hubbub replay),
 * with the routing and dedup of the writers, in one transaction on c (idle,
 * not in a transaction). Each d carries the stored delivery_id and
 * received_at_us, batch sorted by delivery_id; a d without reject_reason that
 * was stored rejected becomes accepted. Sets nstored on each. On failure
 * (HB_EUNAVAILABLE: the connection or the server; else the data was
 * refused) why gets the SQLSTATE and PostgreSQL's primary message, which
 * quotes no payload. Synchronous: never on the event loop. */
int db_ingest_replay(PGconn *c, struct ingest_delivery **batch, size_t n, char *why, size_t whysz);

#endif
