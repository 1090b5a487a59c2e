/*
 * routes.c - the admin API's route table. docs/openapi.yaml documents each
 * entry; tests/unit/test_openapi.c fails when the two disagree.
 */
#include "api/accounts.h"
#include "api/api.h"
#include "api/apps.h"
#include "api/events.h"
#include "api/jobs.h"
#include "api/messages.h"
#include "api/tenants.h"
#include "lib/hb.h"

static const struct api_route ROUTES[] = {
    {"GET", "/v1/tenants", API_OPERATOR, tenants_list},
    {"POST", "/v1/tenants", API_OPERATOR, tenants_create},
    {"GET", "/v1/tenants/{id}", API_ANY, tenants_get},
    {"PATCH", "/v1/tenants/{id}", API_OPERATOR, tenants_update},
    {"DELETE", "/v1/tenants/{id}", API_OPERATOR, tenants_delete},
    {"GET", "/v1/tenants/{id}/keys", API_OPERATOR, keys_list},
    {"POST", "/v1/tenants/{id}/keys", API_OPERATOR, keys_create},
    {"GET", "/v1/tenants/{id}/keys/{key_id}", API_OPERATOR, keys_get},
    {"DELETE", "/v1/tenants/{id}/keys/{key_id}", API_OPERATOR, keys_revoke},

    {"GET", "/v1/apps", API_ANY, apps_list},
    {"POST", "/v1/apps", API_ANY, apps_create},
    {"GET", "/v1/apps/{id}", API_ANY, apps_get},
    {"PATCH", "/v1/apps/{id}", API_ANY, apps_update},
    {"DELETE", "/v1/apps/{id}", API_ANY, apps_delete},

    {"GET", "/v1/accounts", API_ANY, accounts_list},
    {"POST", "/v1/accounts", API_ANY, accounts_create},
    {"GET", "/v1/accounts/{id}", API_ANY, accounts_get},
    {"PATCH", "/v1/accounts/{id}", API_ANY, accounts_update},
    {"DELETE", "/v1/accounts/{id}", API_ANY, accounts_delete},
    {"PUT", "/v1/accounts/{id}/subscribed_fields", API_ANY, accounts_put_fields},
    {"GET", "/v1/accounts/{id}/messages", API_ANY, messages_list},
    {"POST", "/v1/accounts/{id}/messages", API_ANY, messages_create},
    {"GET", "/v1/messages/{id}", API_ANY, messages_get},
    {"POST", "/v1/messages/{id}/retry", API_ANY, messages_retry},

    {"GET", "/v1/events", API_ANY, events_list},
    {"GET", "/v1/events/{id}", API_ANY, events_get},
    {"GET", "/v1/deliveries", API_OPERATOR, deliveries_list},
    {"GET", "/v1/jobs", API_OPERATOR, jobs_list},
};

/* Listings only: GET /v1/events/{id} stays on the primary, so that an id
 * seen in a listing answered by the primary (while the replica was down) is
 * never a 404 because the replica lags. */
static const api_handler_fn REPLICA_READS[] = {events_list, deliveries_list};

bool api_route_is_replica_read(const struct api_route *route)
{
    for (size_t i = 0; i < HB_ARRAY_SIZE(REPLICA_READS); i++)
        if (route->handler == REPLICA_READS[i])
            return true;
    return false;
}

const struct api_route *api_routes(size_t *count)
{
    *count = HB_ARRAY_SIZE(ROUTES);
    return ROUTES;
}
