/*
 * upkeep.c - the partition upkeep thread; see upkeep.h.
 *
 * The DDL gives up after LOCK_TIMEOUT_MS rather than queue in front of the
 * ingest writers behind some long query; a failed round is tried again
 * sooner than the interval.
 */
#include "server/upkeep.h"

#include <stdbool.h>
#include <stdlib.h>
#include <uv.h>

#include "db/partitions.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"

#define LOCK_TIMEOUT_MS 2000
#define RETRY_MS (60 * 1000)

struct upkeep {
    const struct config *cfg;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cond;
    bool is_stopping;
    bool is_done; /* the thread has returned from its last database call */
};

static int round_once(struct upkeep *u, PGconn **c)
{
    if (*c != NULL && PQstatus(*c) != CONNECTION_OK) {
        PQfinish(*c);
        *c = NULL;
    }
    if (*c == NULL) {
        char err[256];
        if ((*c = db_connect_as(u->cfg->database_url, "hubbub partition upkeep", err,
                                sizeof(err))) == NULL)
            return HB_EUNAVAILABLE;
    }
    int created = 0;
    int rc = db_partitions_ensure(*c, u->cfg->partition_months_ahead, LOCK_TIMEOUT_MS, &created);
    if (rc == 0 && created > 0)
        log_info("partitions created", "count=%d", created);
    return rc;
}

static void upkeep_main(void *arg)
{
    struct upkeep *u = arg;
    PGconn *c = NULL;
    uv_mutex_lock(&u->mu);
    while (!u->is_stopping) {
        uv_mutex_unlock(&u->mu);
        int rc = round_once(u, &c);
        if (rc != 0)
            log_warn("partition upkeep failed; trying again later", "error=%s", hb_strerror(rc));
        int64_t wait = u->cfg->partition_upkeep_interval_ms;
        if (rc != 0 && wait > RETRY_MS)
            wait = RETRY_MS;
        uv_mutex_lock(&u->mu);
        if (!u->is_stopping)
            uv_cond_timedwait(&u->cond, &u->mu, (uint64_t)wait * 1000000);
    }
    uv_mutex_unlock(&u->mu);
    PQfinish(c);
    uv_mutex_lock(&u->mu);
    u->is_done = true;
    uv_cond_signal(&u->cond);
    uv_mutex_unlock(&u->mu);
}

struct upkeep *upkeep_start(const struct config *cfg)
{
    struct upkeep *u = xcalloc(1, sizeof(*u));
    u->cfg = cfg;
    uv_mutex_init(&u->mu);
    uv_cond_init(&u->cond);
    if (uv_thread_create(&u->thread, upkeep_main, u) != 0)
        abort();
    return u;
}

bool upkeep_stop(struct upkeep *u, int64_t timeout_ms)
{
    if (u == NULL)
        return true;
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000;
    uv_mutex_lock(&u->mu);
    u->is_stopping = true;
    uv_cond_signal(&u->cond);
    while (!u->is_done) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        uv_cond_timedwait(&u->cond, &u->mu, deadline - now);
    }
    bool is_done = u->is_done;
    uv_mutex_unlock(&u->mu);
    if (!is_done) {
        /* Stuck on an unresponsive database: the process is exiting, so the
         * thread is left to it rather than freed under it. */
        log_warn("partition upkeep still waiting on the database at shutdown", "%s", "");
        return false;
    }
    uv_thread_join(&u->thread);
    uv_cond_destroy(&u->cond);
    uv_mutex_destroy(&u->mu);
    free(u);
    return true;
}
