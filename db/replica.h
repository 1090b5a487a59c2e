/*
 * replica.h - an optional streaming read replica (HUBBUB_READ_DATABASE_URL)
 * for queries that may read slightly old data: the admin API's event and
 * delivery listings.
 *
 * The replica is a second db_pool. It is never required: when a connection
 * to it cannot be made, or breaks while in use, the caller answers from the
 * primary instead, and the replica is left alone for retry_ms before it is
 * tried again, so that a replica behind a dead address costs one connect
 * timeout per retry_ms rather than one per request. Falling back is logged
 * as a warning at most once a minute (with how many were held back); coming
 * back is logged once. Thread-safe: worker threads share one.
 */
#ifndef HB_DB_REPLICA_H
#define HB_DB_REPLICA_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

struct db_replica;

struct db_replica *db_replica_new(const char *url, int size, int64_t statement_timeout_ms,
                                  int64_t retry_ms);
void db_replica_free(struct db_replica *r); /* NULL is a no-op; all connections released */

/* A replica connection, or NULL: the replica is down (or was, less than
 * retry_ms ago) and the caller should use the primary. */
PGconn *db_replica_acquire(struct db_replica *r);

/* Gives c back. false when c broke while in use (the replica went away
 * mid-query): whatever it answered must be redone on the primary. */
bool db_replica_release(struct db_replica *r, PGconn *c);

/* Whether a statement that failed on the replica with sqlstate was
 * cancelled by WAL replay (a recovery conflict: 40001 "canceling statement
 * due to conflict with recovery", or 40P01 for a buffer-pin deadlock with
 * replay). A read on a hot standby fails so for no other reason, and the
 * primary can answer it. */
bool db_replica_is_conflict(const char *sqlstate);

/* Counts a request answered by the primary after a recovery conflict; logs
 * it at most once a minute. The replica is not marked down: it answers the
 * next request. */
void db_replica_conflicted(struct db_replica *r);

/* Requests answered by the primary because the replica was unavailable, or
 * cancelled the query. */
uint64_t db_replica_fallbacks(struct db_replica *r);

#endif
