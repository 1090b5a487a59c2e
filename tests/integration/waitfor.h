/*
 * waitfor.h - waiting, in tests, for something the server does in the
 * background (a job, a subscription) to show in the database, without
 * sleeping longer than it takes.
 */
#ifndef HB_TEST_WAITFOR_H
#define HB_TEST_WAITFOR_H

#include <stdbool.h>

#include "tests/integration/harness.h"

/* Runs the query every 10 ms until its first value is want (NULL: the query
 * answers no row or NULL), or timeout_ms passes. true when it matched; when
 * not, the last value is printed as a TAP diagnostic. */
bool h_wait_sql(struct h_db *db, const char *want, int timeout_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Stall guard for background work in tests: generous, since a loaded 2-core
 * CI machine can be slow; a passing run never waits for it. */
#define H_WAIT_MS 20000

#endif
