/*
 * replay.h - hubbub replay: splits stored deliveries again with the current
 * splitter and stores their events through the writers' statement and dedup
 * (db_ingest_replay), so a delivery rejected before a fix becomes accepted
 * with its events, and replaying twice stores nothing the second time.
 * Command line only (synchronous libpq).
 */
#ifndef HB_REPLAY_H
#define HB_REPLAY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "server/config.h"

struct replay_options {
    const char *meta_app_id; /* NULL: every app */
    const char *since;       /* timestamptz text, inclusive; NULL: no bound */
    const char *until;       /* exclusive */
    const char *status;      /* "rejected", "accepted" or "all" */
    const char *delivery_id; /* NULL: any */
    bool is_dry_run;
};

struct replay_result {
    int64_t deliveries;   /* read */
    int64_t now_accepted; /* rejected ones that split now */
    int64_t rejected;     /* that still do not split */
    int64_t events;       /* split */
    int64_t events_new;   /* stored now (0 in a dry run) */
    int64_t refused;      /* deliveries whose events the database refused: skipped */
    int64_t events_refused;
    int64_t transactions; /* tried */
};

/* 0, or HB_E* with err set. Prints a summary to out. */
int replay_run(PGconn *c, const struct config *cfg, const struct replay_options *o, FILE *out,
               struct replay_result *res, char *err, size_t errsz);

#endif
