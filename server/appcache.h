/*
 * appcache.h - the apps the webhook endpoint serves, with their secrets and
 * verify token decrypted, cached on the loop thread.
 *
 * Every delivery needs its app's secrets before anything else, so they must
 * not cost a database round trip each time. An entry is used for ttl_ms;
 * after that the next request reads it again (and waits for that), so a
 * secret replaced in the database stops working within the TTL. While the
 * database is down, the old entry is used instead (so an outage does not stop
 * verification handshakes) and tried again one TTL later. A request for an
 * app not in the cache waits for the lookup, and concurrent lookups of one
 * app share a single query. Apps that do not exist are not cached: the cache
 * holds only real apps, so its size is bounded by the apps table, whatever ids
 * clients invent.
 *
 * Lookups run on libuv's thread pool with a connection from the db pool.
 * Everything here is called on the loop thread; an app pointer handed out is
 * valid until control returns to the loop.
 */
#ifndef HB_APPCACHE_H
#define HB_APPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db/pool.h"
#include "lib/buf.h"
#include "lib/keyring.h"

#define APP_ID_MAX 32

struct app {
    int64_t id;
    bool has_tenant;
    int64_t tenant_id;
    char meta_app_id[APP_ID_MAX + 1];
    struct buf verify_token;
    size_t nsecrets;
    struct buf *secrets;
};

struct appcache;

/* Called on the loop thread with the app, or with NULL and rc HB_ENOTFOUND,
 * HB_EUNAVAILABLE (database down) or HB_EDB / HB_ECRYPTO. */
typedef void (*appcache_cb)(void *arg, const struct app *app, int rc);

struct appcache *appcache_new(uv_loop_t *loop, struct db_pool *pool, struct keyring *keys,
                              int64_t ttl_ms);

/* The cached app, or NULL when it is not cached or must be read again
 * (older than the TTL, or expired): then call appcache_fetch. */
const struct app *appcache_find(struct appcache *c, const char *meta_app_id);

/* Makes every entry be read again before its next use: the admin API calls
 * this after changing or deleting an app, so this process applies the change
 * at once (other processes within their TTL). */
void appcache_expire_all(struct appcache *c);

/* Looks the app up in the database and calls cb later, on the loop. */
void appcache_fetch(struct appcache *c, const char *meta_app_id, appcache_cb cb, void *arg);

/* Lookups still running (they must finish before the loop closes). */
size_t appcache_pending(const struct appcache *c);

void appcache_free(struct appcache *c); /* no lookup may be pending */

#endif
