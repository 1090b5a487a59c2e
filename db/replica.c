/*
 * replica.c - the read replica's pool and its fallback; see replica.h.
 */
#include "db/replica.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"

#define FALLBACK_LOG_INTERVAL_MS 60000

struct db_replica {
    struct db_pool *pool;
    int64_t retry_ms;
    pthread_mutex_t mu;     /* guards what follows */
    uint64_t down_until_ms; /* 0: believed up */
    bool is_down;
    uint64_t fallbacks;
    struct log_throttle log;
    struct log_throttle conflict_log;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct db_replica *db_replica_new(const char *url, int size, int64_t statement_timeout_ms,
                                  int64_t retry_ms)
{
    struct db_replica *r = xcalloc(1, sizeof(*r));
    r->pool = db_pool_new(url, size);
    db_pool_set_statement_timeout(r->pool, statement_timeout_ms);
    r->retry_ms = retry_ms;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void db_replica_free(struct db_replica *r)
{
    if (r == NULL)
        return;
    db_pool_free(r->pool);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Under mu: counts one request sent to the primary, marks the replica down
 * and logs, throttled. */
static void fell_back(struct db_replica *r, const char *why)
{
    uint64_t now = now_ms();
    r->fallbacks++;
    r->down_until_ms = now + (uint64_t)r->retry_ms;
    r->is_down = true;
    uint64_t held;
    if (log_throttle_pass(&r->log, now, FALLBACK_LOG_INTERVAL_MS, &held))
        log_warn("read replica unavailable; event queries are answered by the primary",
                 "why=\"%s\" retry_ms=%" PRId64 " fallbacks_total=%" PRIu64
                 " similar_held_back=%" PRIu64,
                 why, r->retry_ms, r->fallbacks, held);
}

PGconn *db_replica_acquire(struct db_replica *r)
{
    pthread_mutex_lock(&r->mu);
    bool skip = r->is_down && now_ms() < r->down_until_ms;
    if (skip)
        r->fallbacks++;
    pthread_mutex_unlock(&r->mu);
    if (skip)
        return NULL;

    PGconn *c = db_pool_acquire(r->pool);
    pthread_mutex_lock(&r->mu);
    if (c == NULL) {
        fell_back(r, "cannot connect");
    } else if (r->is_down) {
        r->is_down = false;
        log_info("read replica reachable again; event queries go to it", "fallbacks_total=%" PRIu64,
                 r->fallbacks);
    }
    pthread_mutex_unlock(&r->mu);
    return c;
}

bool db_replica_release(struct db_replica *r, PGconn *c)
{
    bool is_ok = PQstatus(c) == CONNECTION_OK;
    db_pool_release(r->pool, c);
    if (!is_ok) {
        pthread_mutex_lock(&r->mu);
        fell_back(r, "connection lost during a query");
        pthread_mutex_unlock(&r->mu);
    }
    return is_ok;
}

bool db_replica_is_conflict(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0);
}

void db_replica_conflicted(struct db_replica *r)
{
    pthread_mutex_lock(&r->mu);
    r->fallbacks++;
    uint64_t held;
    if (log_throttle_pass(&r->conflict_log, now_ms(), FALLBACK_LOG_INTERVAL_MS, &held))
        log_warn("read replica cancelled a query (conflict with recovery); the primary answered it",
                 "fallbacks_total=%" PRIu64 " similar_held_back=%" PRIu64, r->fallbacks, held);
    pthread_mutex_unlock(&r->mu);
}

uint64_t db_replica_fallbacks(struct db_replica *r)
{
    pthread_mutex_lock(&r->mu);
    uint64_t n = r->fallbacks;
    pthread_mutex_unlock(&r->mu);
    return n;
}
