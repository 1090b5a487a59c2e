/*
 * probe.c - the readiness and job-count thread; see probe.h.
 */
#include "server/probe.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/migrate.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"

struct probe {
    const char *url;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool is_stopping, has_exited;
    struct probe_snapshot snap; /* under mu */
};

uint64_t probe_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static PGconn *connect_probe(const char *url)
{
    char err[256];
    PGconn *c = db_connect_as(url, "hubbub probe", err, sizeof(err));
    if (c == NULL)
        return NULL;
    char sql[64];
    snprintf(sql, sizeof(sql), "SET statement_timeout = %d", PROBE_TIMEOUT_MS);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* One round on c into snap; false when the database did not answer. */
static bool run_round(PGconn *c, struct probe_snapshot *snap)
{
    char err[256] = "";
    int rc =
        db_migrate_check(c, db_migrations_embedded, db_migrations_embedded_count, err, sizeof(err));
    if (rc == HB_EUNAVAILABLE || PQstatus(c) != CONNECTION_OK)
        return false;
    snap->is_schema_current = rc == 0; /* err names the migration; /readyz does not show it */

    PGresult *r = PQexec(c, "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state"
                            " ORDER BY kind, state");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        bool gone = PQstatus(c) != CONNECTION_OK || db_result_rc(c, r) == HB_EUNAVAILABLE;
        PQclear(r);
        snap->njobs = 0; /* no jobs table yet (schema not current) */
        return !gone;
    }
    int n = PQntuples(r);
    snap->njobs = 0;
    for (int i = 0; i < n && snap->njobs < PROBE_JOB_ROWS; i++) {
        struct probe_jobs *j = &snap->jobs[snap->njobs++];
        snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(r, i, 0));
        snprintf(j->state, sizeof(j->state), "%s", PQgetvalue(r, i, 1));
        j->count = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    return true;
}

static void *probe_main(void *arg)
{
    struct probe *p = arg;
    PGconn *c = NULL;
    struct probe_snapshot snap;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        snap = p->snap;
        bool stop = p->is_stopping;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;

        if (c != NULL && !db_conn_alive(c)) {
            PQfinish(c);
            c = NULL;
        }
        if (c == NULL)
            c = connect_probe(p->url);
        bool ok = c != NULL && run_round(c, &snap);
        if (!ok && c != NULL) {
            PQfinish(c);
            c = NULL;
        }
        snap.has_run = true;
        snap.is_db_ok = ok;
        if (ok)
            snap.ok_at_ms = probe_now_ms();

        pthread_mutex_lock(&p->mu);
        p->snap = snap;
        if (!p->is_stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + (p->interval_ms % 1000) * 1000000;
            ts.tv_sec += (time_t)(p->interval_ms / 1000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        pthread_mutex_unlock(&p->mu);
    }
    PQfinish(c);
    pthread_mutex_lock(&p->mu);
    p->has_exited = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct probe *probe_start(const char *url, int64_t interval_ms)
{
    struct probe *p = xcalloc(1, sizeof(*p));
    p->url = url;
    p->interval_ms = interval_ms;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, probe_main, p) != 0)
        abort();
    return p;
}

void probe_read(struct probe *p, struct probe_snapshot *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->snap;
    pthread_mutex_unlock(&p->mu);
}

bool probe_stop(struct probe *p, int64_t wait_ms)
{
    if (p == NULL)
        return true;
    uint64_t deadline = probe_now_ms() + (uint64_t)wait_ms;
    pthread_mutex_lock(&p->mu);
    p->is_stopping = true;
    pthread_cond_broadcast(&p->cv);
    while (!p->has_exited && probe_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    bool exited = p->has_exited;
    pthread_mutex_unlock(&p->mu);
    if (!exited) {
        log_warn("readiness probe stuck in a query at shutdown; leaving it", "%s", "");
        pthread_detach(p->thread);
        return false; /* the thread still uses p */
    }
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return true;
}
