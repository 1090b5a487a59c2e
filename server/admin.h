/*
 * admin.h - the admin REST API (/v1/...) and its OpenAPI document, served by
 * the same listener as the webhooks.
 *
 * Handlers run on libuv's thread pool with a connection from the db pool
 * (api/api.h); the loop thread only routes, rate-limits and answers.
 */
#ifndef HB_ADMIN_H
#define HB_ADMIN_H

#include <h2o.h>
#include <stddef.h>

#include "server/server.h"

#define ADMIN_PREFIX "/v1/"

/* Reads the operator's token from HUBBUB_ADMIN_TOKEN or the first line of
 * HUBBUB_ADMIN_TOKEN_FILE into out ("" when neither is set). HB_EINVAL or
 * HB_EIO with *why set when it is unreadable or too weak. */
int admin_load_token(const struct config *cfg, char *out, size_t outsz, const char **why);

/* Whether req carries the operator's token (Authorization: Bearer, compared
 * in constant time). If not, answers 401 (or 429 for an address that keeps
 * failing, as the admin API does) and returns false. Loop thread. */
bool admin_require_operator(struct server *srv, h2o_req_t *req);

int admin_handle(void *ctx, h2o_req_t *req);  /* http_route handler for ADMIN_PREFIX */
int admin_openapi(void *ctx, h2o_req_t *req); /* GET /openapi.yaml */

#endif
