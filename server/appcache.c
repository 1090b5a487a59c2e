/*
 * appcache.c - see appcache.h.
 *
 * A small chained hash table keyed by Meta app id. An entry may be "loading"
 * (a lookup is in flight, with its list of waiters) and may hold an app at the
 * same time (a refresh of a stale entry).
 */
#include "server/appcache.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/apps.h"
#include "lib/hb.h"
#include "lib/log.h"

#define NBUCKETS 1024

struct waiter {
    appcache_cb cb;
    void *arg;
    struct waiter *next;
};

struct entry {
    char meta_app_id[APP_ID_MAX + 1];
    struct app *app;    /* NULL until first loaded */
    uint64_t loaded_at; /* uv_now() */
    bool expired;       /* read again before use: the app was changed */
    bool loading;
    struct waiter *waiters;
    struct entry *next;
};

struct lookup {
    uv_work_t work;
    struct appcache *cache;
    char meta_app_id[APP_ID_MAX + 1];
    struct app *app; /* result */
    int rc;
};

struct appcache {
    uv_loop_t *loop;
    struct db_pool *pool;
    struct keyring *keys;
    uint64_t ttl_ms;
    size_t pending;
    struct entry *buckets[NBUCKETS];
};

static void app_free(struct app *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a->verify_token.data, a->verify_token.len);
    buf_dispose(&a->verify_token);
    for (size_t i = 0; i < a->nsecrets; i++) {
        OPENSSL_cleanse(a->secrets[i].data, a->secrets[i].len);
        buf_dispose(&a->secrets[i]);
    }
    free(a->secrets);
    free(a);
}

static size_t bucket_of(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)(h % NBUCKETS);
}

static struct entry **find_slot(struct appcache *c, const char *id)
{
    struct entry **e = &c->buckets[bucket_of(id)];
    while (*e != NULL && strcmp((*e)->meta_app_id, id) != 0)
        e = &(*e)->next;
    return e;
}

struct appcache *appcache_new(uv_loop_t *loop, struct db_pool *pool, struct keyring *keys,
                              int64_t ttl_ms)
{
    struct appcache *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->pool = pool;
    c->keys = keys;
    c->ttl_ms = (uint64_t)ttl_ms;
    return c;
}

/* Worker thread: query and decrypt. Touches nothing of the loop's. */
static void lookup_work(uv_work_t *w)
{
    struct lookup *l = w->data;
    struct db_app *row = NULL;
    PGconn *conn = db_pool_acquire(l->cache->pool);
    if (conn == NULL) {
        l->rc = HB_EUNAVAILABLE;
        return;
    }
    l->rc = db_app_get(conn, l->meta_app_id, &row);
    db_pool_release(l->cache->pool, conn);
    if (l->rc != 0)
        return;

    struct app *a = xcalloc(1, sizeof(*a));
    a->id = row->id;
    a->has_tenant = row->has_tenant;
    a->tenant_id = row->tenant_id;
    snprintf(a->meta_app_id, sizeof(a->meta_app_id), "%s", row->meta_app_id);
    buf_init(&a->verify_token);
    char context[64];
    snprintf(context, sizeof(context), "verify_token:%s", row->meta_app_id);
    int rc = keyring_open(l->cache->keys, context, row->verify_token_sealed, &a->verify_token);
    if (rc != 0) {
        log_error("cannot decrypt an app's verify token; is the master key right?",
                  "meta_app_id=%s error=\"%s\"", row->meta_app_id, hb_strerror(rc));
        l->rc = HB_ECRYPTO;
        app_free(a);
        db_app_free(row);
        return;
    }
    a->secrets = xcalloc(row->nsecrets ? row->nsecrets : 1, sizeof(*a->secrets));
    snprintf(context, sizeof(context), "app_secret:%s", row->meta_app_id);
    for (size_t i = 0; i < row->nsecrets; i++) {
        buf_init(&a->secrets[a->nsecrets]);
        rc =
            keyring_open(l->cache->keys, context, row->secrets_sealed[i], &a->secrets[a->nsecrets]);
        if (rc != 0) {
            /* One unreadable secret must not take the others down with it. */
            log_error("cannot decrypt an app secret; skipping it", "meta_app_id=%s error=\"%s\"",
                      row->meta_app_id, hb_strerror(rc));
            buf_dispose(&a->secrets[a->nsecrets]);
            continue;
        }
        a->nsecrets++;
    }
    db_app_free(row);
    l->app = a;
}

static void lookup_done(uv_work_t *w, int status)
{
    struct lookup *l = w->data;
    struct appcache *c = l->cache;
    c->pending--;
    if (status != 0 && l->rc == 0)
        l->rc = HB_EDB;

    struct entry **slot = find_slot(c, l->meta_app_id);
    struct entry *e = *slot;
    struct waiter *waiters = e->waiters;
    e->waiters = NULL;
    e->loading = false;
    e->expired = false;

    if (l->rc == 0) {
        app_free(e->app);
        e->app = l->app;
        e->loaded_at = uv_now(c->loop);
    } else if (l->rc == HB_ENOTFOUND) {
        app_free(e->app);
        e->app = NULL;
    } else if (e->app != NULL) {
        /* The database is down: the stale app stays usable (handshakes keep
         * working), and is tried again one TTL from now. */
        e->loaded_at = uv_now(c->loop);
    }

    const struct app *app = e->app;
    int rc = app != NULL ? 0 : (l->rc != 0 ? l->rc : HB_ENOTFOUND);
    if (e->app == NULL) {
        *slot = e->next;
        e->next = NULL;
    } else {
        e = NULL; /* stays in the table */
    }
    while (waiters != NULL) {
        struct waiter *next = waiters->next;
        waiters->cb(waiters->arg, app, rc);
        free(waiters);
        waiters = next;
    }
    free(e); /* only when removed from the table; its app is already gone */
    free(l);
}

static void start_lookup(struct appcache *c, struct entry *e)
{
    struct lookup *l = xcalloc(1, sizeof(*l));
    l->cache = c;
    l->work.data = l;
    snprintf(l->meta_app_id, sizeof(l->meta_app_id), "%s", e->meta_app_id);
    e->loading = true;
    c->pending++;
    int rc = uv_queue_work(c->loop, &l->work, lookup_work, lookup_done);
    if (rc != 0)
        abort(); /* only fails for a NULL callback */
}

const struct app *appcache_find(struct appcache *c, const char *meta_app_id)
{
    struct entry *e = *find_slot(c, meta_app_id);
    if (e == NULL || e->app == NULL || e->loading || e->expired ||
        uv_now(c->loop) - e->loaded_at >= c->ttl_ms)
        return NULL;
    return e->app;
}

void appcache_expire_all(struct appcache *c)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct entry *e = c->buckets[i]; e != NULL; e = e->next)
            e->expired = true;
}

void appcache_fetch(struct appcache *c, const char *meta_app_id, appcache_cb cb, void *arg)
{
    struct entry **slot = find_slot(c, meta_app_id);
    struct entry *e = *slot;
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        snprintf(e->meta_app_id, sizeof(e->meta_app_id), "%s", meta_app_id);
        *slot = e;
    }
    struct waiter *w = xmalloc(sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = e->waiters;
    e->waiters = w;
    if (!e->loading)
        start_lookup(c, e);
}

size_t appcache_pending(const struct appcache *c)
{
    return c->pending;
}

void appcache_free(struct appcache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct entry *e = c->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            app_free(e->app);
            free(e);
            e = next;
        }
    }
    free(c);
}
