/*
 * webhook.h - Meta's callback URL, /webhooks/{app-id}.
 *
 * GET is the verification handshake (hub.mode, hub.verify_token,
 * hub.challenge). POST is an event notification: its X-Hub-Signature-256 is
 * checked against every live secret of the app before anything is stored;
 * then the body is split into events and handed to the group-commit writer,
 * and the answer waits for the commit. 200 therefore always means committed;
 * a database that is down gives 503, which Meta retries.
 *
 * A signed body that is not a Meta envelope is still stored, raw and marked
 * rejected, and answered 400: nothing Meta sent is lost.
 */
#ifndef HB_WEBHOOK_H
#define HB_WEBHOOK_H

#include <h2o.h>

#include "db/ingest.h"
#include "server/server.h"

#define WEBHOOK_PREFIX "/webhooks/"

/* Route handler for WEBHOOK_PREFIX; ctx is the struct server. */
int webhook_handle(void *ctx, h2o_req_t *req);

/* Answers the request behind a delivery the writer has finished with, and
 * frees the delivery. Loop thread. */
void webhook_on_completed(struct server *srv, struct ingest_delivery *d);

/* Splits body[0..len) into d's object and events, or sets d->reject_reason
 * when it is not a Meta delivery: what ingest does with every delivery, and
 * hubbub replay with stored ones. Any thread. */
void webhook_split(struct ingest_delivery *d, const char *body, size_t len,
                   const struct config *cfg);

#endif
