/*
 * retention.h - drops and deletes events and deliveries past their
 * retention (hubbub retention). Synchronous libpq: for the command line.
 *
 * A tenant keeps its events for tenants.retention_days, or the operator's
 * default when that is NULL; unrouted events and the deliveries of shared
 * apps follow the default, a tenant's own apps' deliveries the tenant's.
 * First, every month partition (events and deliveries of one UTC month)
 * whose whole month is older than the default is detached and dropped, with
 * its events' dedup keys, unless it holds something a tenant with a longer
 * retention still keeps (month partitions a stopped run left detached are
 * finished first; see retention.c for the order of the steps). Then, per tenant, what is older than
 * its own retention goes in small batches (a tenant whose retention is shorter than the default,
 * and the rest of a kept partition), keys with events. The current and future months are never
 * dropped.
 */
#ifndef HB_DB_RETENTION_H
#define HB_DB_RETENTION_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct db_retention_result {
    int partitions_dropped; /* month partitions of events and deliveries */
    int64_t events_dropped; /* rows in them */
    int64_t deliveries_dropped;
    int64_t events_deleted; /* rows deleted in batches */
    int64_t deliveries_deleted;
};

/* Applies the retention, default_days for tenants without their own; with
 * is_dry_run counts what it would do and changes nothing. Prints one line
 * per step to out. 0, or HB_E* with err set. */
int db_retention_run(PGconn *c, int default_days, bool is_dry_run, FILE *out,
                     struct db_retention_result *res, char *err, size_t errsz);

#endif
