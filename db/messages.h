/*
 * messages.h - the outbox of replies (migrations/0003_jobs.sql): what the
 * send worker records, and the link from a sent reply to its echo webhook.
 *
 * Meta sends every reply back as a message_echoes webhook carrying the
 * reply's mid, which is the message_id the Send API answered. The link is
 * made by whichever is committed second: the ingest statement links an echo
 * to an already sent reply (db/ingest.c), the worker links a reply to an
 * already stored echo. When both commit at the same time neither sees the
 * other, so a sweep links what is left.
 *
 * All functions block on libpq: worker threads only.
 */
#ifndef HB_DB_MESSAGES_H
#define HB_DB_MESSAGES_H

#include <libpq-fe.h>
#include <stdint.h>

#include "db/jobs.h"

/* Prepares the statements below on a worker's connection, once after
 * connecting; every function below needs it. */
int db_messages_prepare(PGconn *c);

/* What sending message id needs, in this column order: request (the Send
 * API body), meta_message_id, ig_id, page_id, login_type,
 * access_token_sealed, app_id, graph_api_version. Caller PQclear()s. */
PGresult *db_messages_load(PGconn *c, int64_t id);

/* Stores Meta's message_id for message id (unless one is stored), with the
 * time, and links its echo if already received. Not fenced by a lease on
 * purpose: once stored, no worker sends the reply again. */
int db_messages_store_sent(PGconn *c, int64_t id, const char *meta_message_id);

/* A send succeeded: stores meta_message_id (as above) and ends job j, whose
 * message it is, in one commit. 1, 0 when j's lease was lost (the id is
 * stored all the same), or a negative HB_E* with neither done. */
int db_messages_sent(PGconn *c, const struct job *j, const char *meta_message_id);

/* Links replies sent in the last 10 minutes that have no echo yet to an
 * echo received meanwhile; *linked gets their number. */
int db_messages_link_echoes(PGconn *c, int *linked);

#endif
