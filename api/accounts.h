/*
 * accounts.h - /v1/accounts: the Instagram professional accounts a tenant
 * receives events for, with their sealed access tokens and the webhook
 * fields they want (checked against api/fields.h).
 */
#ifndef HB_API_ACCOUNTS_H
#define HB_API_ACCOUNTS_H

#include "api/api.h"

void accounts_list(struct api_call *call, PGconn *c);
void accounts_create(struct api_call *call, PGconn *c);
void accounts_get(struct api_call *call, PGconn *c);
void accounts_update(struct api_call *call, PGconn *c);
void accounts_delete(struct api_call *call, PGconn *c);
void accounts_put_fields(struct api_call *call, PGconn *c);

#endif
