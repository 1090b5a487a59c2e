/*
 * server.h - what the running server's handlers share. main.c builds one
 * struct server for `hubbub serve` and owns everything in it; handlers only
 * borrow it. Every field is used on the loop thread only.
 */
#ifndef HB_SERVER_H
#define HB_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "db/ingest.h"
#include "db/pool.h"
#include "db/replica.h"
#include "lib/log.h"
#include "lib/keyring.h"
#include "server/appcache.h"
#include "server/config.h"
#include "server/http.h"
#include "server/mtls.h"
#include "server/probe.h"
#include "server/ratelimit.h"
#include "server/stats.h"
#include "server/tls.h"

struct worker_pool;

struct server {
    uv_loop_t *loop;
    const struct config *cfg;
    struct keyring *keys;
    struct db_pool *pool;
    struct db_replica *replica; /* NULL: no read replica; thread-safe */
    struct db_ingest *ingest;
    struct appcache *apps;
    struct http *http;
    struct ratelimit *ratelimit;     /* admin API requests per key */
    struct ratelimit *auth_failures; /* failed authentications per client address */
    char admin_token[128];           /* the operator's; "" when operator access is off */
    size_t inflight;                 /* requests waiting on a lookup or a commit */
    struct log_throttle refusal_log; /* wrong signatures and verify tokens */
    struct mtls_policy mtls;         /* who may reach the webhooks */
    struct tls_stats tls_stats;      /* refused TLS handshakes */
    struct stats *stats;             /* what /metrics shows */
    struct probe *probe;             /* the database as /readyz and /metrics see it */
    struct worker_pool *workers;     /* NULL with HUBBUB_WORKERS=0 */
    bool stopping;
};

#endif
