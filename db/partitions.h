/*
 * partitions.h - upkeep of the monthly partitions of events and deliveries
 * (migrations/0004_partitions.sql). Synchronous libpq: for the command line
 * and background threads, never the event loop.
 */
#ifndef HB_DB_PARTITIONS_H
#define HB_DB_PARTITIONS_H

#include <libpq-fe.h>
#include <stdint.h>

/* Creates the partitions of this month and the months_ahead coming ones
 * that are missing, and moves rows that landed in a DEFAULT partition into
 * their month's. Idempotent; several processes may run it at once. When
 * lock_timeout_ms > 0 it gives up (HB_EDB) rather than wait longer for the
 * tables' locks, so that ingest never queues behind it for long. *created
 * gets the number of partitions created. */
int db_partitions_ensure(PGconn *c, int months_ahead, int64_t lock_timeout_ms, int *created);

#endif
