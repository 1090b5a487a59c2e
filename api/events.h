/*
 * events.h - /v1/events (a tenant's stored events, filtered and paged by
 * keyset) and /v1/deliveries (raw deliveries, for the operator).
 */
#ifndef HB_API_EVENTS_H
#define HB_API_EVENTS_H

#include "api/api.h"

void events_list(struct api_call *call, PGconn *c);
void events_get(struct api_call *call, PGconn *c);
void deliveries_list(struct api_call *call, PGconn *c);

#endif
