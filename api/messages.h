/*
 * messages.h - the outbox of replies: POST and GET /v1/accounts/{id}/messages
 * GET /v1/messages/{id}, and POST /v1/messages/{id}/retry (a failed or
 * dead reply sent again). A reply is stored with the exact Send API body
 * the worker will post and a "send" job queued in the same transaction; its
 * state is read from that job.
 */
#ifndef HB_API_MESSAGES_H
#define HB_API_MESSAGES_H

#include "api/api.h"

void messages_create(struct api_call *call, PGconn *c);
void messages_list(struct api_call *call, PGconn *c);
void messages_get(struct api_call *call, PGconn *c);
void messages_retry(struct api_call *call, PGconn *c);

#endif
