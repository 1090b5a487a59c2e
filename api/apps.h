/*
 * apps.h - /v1/apps: a tenant's Meta apps, and the shared apps the operator
 * runs for many tenants (readable by every tenant, changed by the operator).
 * Secrets and verify tokens are sealed before they reach the database and
 * only their hints ever leave it.
 */
#ifndef HB_API_APPS_H
#define HB_API_APPS_H

#include "api/api.h"

void apps_list(struct api_call *call, PGconn *c);
void apps_create(struct api_call *call, PGconn *c);
void apps_get(struct api_call *call, PGconn *c);
void apps_update(struct api_call *call, PGconn *c);
void apps_delete(struct api_call *call, PGconn *c);

#endif
