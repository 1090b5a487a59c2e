/*
 * tenants.h - /v1/tenants and their API keys: operator-only routes.
 */
#ifndef HB_API_TENANTS_H
#define HB_API_TENANTS_H

#include "api/api.h"

void tenants_list(struct api_call *call, PGconn *c);
void tenants_create(struct api_call *call, PGconn *c);
void tenants_get(struct api_call *call, PGconn *c);
void tenants_update(struct api_call *call, PGconn *c);
void tenants_delete(struct api_call *call, PGconn *c);

void keys_list(struct api_call *call, PGconn *c);
void keys_create(struct api_call *call, PGconn *c);
void keys_get(struct api_call *call, PGconn *c);
void keys_revoke(struct api_call *call, PGconn *c);

#endif
