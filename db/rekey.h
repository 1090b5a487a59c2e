/*
 * rekey.h - every sealed value hubbub stores, counted by key id and re-sealed
 * under the key that seals now (master key rotation).
 *
 * The sealed values live in four places, each opened for its own context
 * (lib/secretbox.h):
 *
 *   apps.verify_token_sealed       verify_token:<meta app id>
 *   app_secrets.secret_sealed      app_secret:<meta app id>
 *   accounts.access_token_sealed   access_token:<app id>:<ig id>
 *   jobs.payload.access_token_sealed  (unsubscribe jobs carry the token of an
 *                                  account that may be gone) same context
 *
 * Re-sealing runs while hubbub serves, in small transactions. Each row is
 * written with compare-and-set on its old sealed value, so a value the API
 * changed meanwhile wins and is never overwritten; a row whose account has a
 * running job is left for a later pass too (the job compares the token it
 * read with the row when it records its result). A value that no loaded key
 * opens is reported and left as it is.
 */
#ifndef HB_DB_REKEY_H
#define HB_DB_REKEY_H

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/secretbox.h"

#define DB_REKEY_NCOLUMNS 4

/* "apps.verify_token_sealed", ... in the order above. */
const char *db_rekey_column_name(int column);

struct db_rekey_result {
    int64_t resealed; /* written under the sealing key */
    int64_t failed;   /* no loaded key opens it, or not a sealed value */
    int64_t left;     /* still under an old key: changed meanwhile or in use until the end */
};

struct db_rekey_options {
    int batch;        /* rows per transaction */
    int64_t wait_ms;  /* how long to keep retrying rows changed meanwhile or in use */
    int64_t pause_ms; /* between passes that made no progress */
};

/* Re-seals every value of every column not sealed by sb's first key.
 * res[i] gets column i's counts. Rows that fail are named on report (table
 * and id, never a value). 0, or HB_EDB with err set (counts so far kept). */
int db_rekey_rotate(PGconn *c, const struct secretbox *sb, const struct db_rekey_options *opt,
                    struct db_rekey_result res[DB_REKEY_NCOLUMNS], FILE *report, char *err,
                    size_t errsz);

/* Calls cb once per (column, key id) with the number of values that key
 * seals; key_id is "-" for values that are not sealed values. 0 or HB_EDB. */
typedef void (*db_rekey_status_cb)(void *arg, int column, const char *key_id, int64_t count);
int db_rekey_status(PGconn *c, db_rekey_status_cb cb, void *arg, char *err, size_t errsz);

#endif
