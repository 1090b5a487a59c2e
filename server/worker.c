/*
 * worker.c - the Graph API job pool; see worker.h.
 *
 * Waking: an idle worker sleeps on the pool's condition variable until the
 * dispatcher sees a NOTIFY (broadcast), a peer that just claimed a job passes
 * the wake-up on (so a burst spreads over all workers without every NOTIFY
 * waking all of them), the next queued job becomes due, or the poll interval
 * ends. A wake-up is a generation number, so one that comes while a worker
 * is still querying is not lost.
 */
#include "server/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "db/jobs.h"
#include "db/messages.h"
#include "db/pool.h"
#include "lib/hb.h"
#include "lib/log.h"
#include "server/job.h"

#define RESCUE_MIN_MS 50
#define CHECK_CADENCE_MAX_MS (60 * 1000)

struct worker {
    struct worker_pool *pool;
    uv_thread_t thread;
    int index;
    int64_t job_id, job_token; /* the job it runs (0: none); under the pool's mu */
};

struct worker_pool {
    const struct config *cfg;
    struct keyring *keys;
    char owner[128]; /* host:pid, plus the worker's index */

    uv_mutex_t mu; /* guards what follows */
    uv_cond_t cond;
    bool is_quiescing;
    uint64_t wakeups; /* generation of wake-ups */
    int running;      /* jobs being run */
    int alive;        /* threads not yet returned */

    int nworkers;
    struct worker *workers;
    uv_thread_t dispatcher;
    int stop_pipe[2]; /* wakes the dispatcher's poll(2) */
    struct stats *stats;
    atomic_int connections; /* workers holding a database connection */
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static bool quiescing(struct worker_pool *p)
{
    uv_mutex_lock(&p->mu);
    bool q = p->is_quiescing;
    uv_mutex_unlock(&p->mu);
    return q;
}

/* Sleeps up to ms, or until quiescing, or (when is_wakeable) a wake-up
 * after generation gen. A worker waiting for the database is not wakeable:
 * new jobs change nothing for it. */
static void sleep_unless_woken(struct worker_pool *p, bool is_wakeable, uint64_t gen, int64_t ms)
{
    uint64_t deadline = now_ms() + (uint64_t)ms;
    uv_mutex_lock(&p->mu);
    while (!p->is_quiescing && (!is_wakeable || p->wakeups == gen)) {
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        uv_cond_timedwait(&p->cond, &p->mu, (deadline - now) * 1000000);
    }
    uv_mutex_unlock(&p->mu);
}

static uint64_t generation(struct worker_pool *p)
{
    uv_mutex_lock(&p->mu);
    uint64_t g = p->wakeups;
    uv_mutex_unlock(&p->mu);
    return g;
}

static void wake(struct worker_pool *p, bool all)
{
    uv_mutex_lock(&p->mu);
    p->wakeups++;
    if (all)
        uv_cond_broadcast(&p->cond);
    else
        uv_cond_signal(&p->cond);
    uv_mutex_unlock(&p->mu);
}

/* While the database is down every thread retries, with backoff; one
 * line per thread and interval says so, not one per attempt. */
#define DB_LOG_INTERVAL_MS 10000

/* name: the connection's name in pg_stat_activity, for operators. */
static PGconn *connect_db(struct worker_pool *p, const char *who, const char *name,
                          struct log_throttle *t)
{
    char err[256];
    uint64_t held;
    PGconn *c = db_connect_as(p->cfg->database_url, name, err, sizeof(err));
    char q[256];
    if (c == NULL && log_throttle_pass(t, now_ms(), DB_LOG_INTERVAL_MS, &held))
        log_warn("job queue: cannot connect to the database",
                 "thread=%s error=%s similar_held_back=%" PRIu64, who,
                 log_quote(q, sizeof(q), err, strlen(err)), held);
    return c;
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    struct worker_pool *p = w->pool;
    char owner[160], who[16];
    snprintf(owner, sizeof(owner), "%s:%d", p->owner, w->index);
    snprintf(who, sizeof(who), "worker-%d", w->index);
    struct graph_options go = {
        .connect_timeout_ms = p->cfg->graph_connect_timeout_ms,
        .timeout_ms = p->cfg->graph_timeout_ms,
    };
    struct job_env env = {
        .graph = graph_client_new(&go),
        .cfg = p->cfg,
        .keys = p->keys,
        .stats = p->stats,
        .rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)w->index) | 1,
    };
    int64_t backoff = 100;
    struct log_throttle db_log = {0, 0};
    bool counted = false; /* env.conn is in p->connections */
    while (!quiescing(p)) {
        uint64_t gen = generation(p);
        if (env.conn == NULL && (env.conn = connect_db(p, who, "hubbub worker", &db_log)) != NULL &&
            (db_jobs_prepare(env.conn) != 0 || db_messages_prepare(env.conn) != 0)) {
            PQfinish(env.conn);
            env.conn = NULL;
        } else if (env.conn != NULL && !counted) {
            atomic_fetch_add(&p->connections, 1);
            counted = true;
        }
        if (env.conn == NULL) {
            sleep_unless_woken(p, false, 0, backoff);
            backoff = backoff * 2 > p->cfg->db_retry_max_ms ? p->cfg->db_retry_max_ms : backoff * 2;
            continue;
        }
        backoff = 100;
        if (PQtransactionStatus(env.conn) != PQTRANS_IDLE)
            PQclear(PQexec(env.conn, "ROLLBACK")); /* never claim inside a leftover transaction */
        struct job j;
        int rc = db_jobs_claim(env.conn, owner, p->cfg->job_lease_ms, &j);
        if (rc == 1) {
            uv_mutex_lock(&p->mu);
            p->running++;
            w->job_id = j.id;
            w->job_token = j.lease_token;
            uv_mutex_unlock(&p->mu);
            wake(p, false); /* there may be more: pass it on */
            char f[JOB_LOG_FIELDS_MAX];
            log_debug("job claimed", "%s attempt=%d", job_log_fields(&j, f, sizeof(f)), j.attempts);
            job_run(&env, &j);
            db_job_dispose(&j);
            uv_mutex_lock(&p->mu);
            p->running--;
            w->job_id = 0;
            uv_cond_broadcast(&p->cond);
            uv_mutex_unlock(&p->mu);
            continue;
        }
        int64_t wait = p->cfg->job_poll_interval_ms, due;
        if (rc == 0 && db_jobs_next_due_ms(env.conn, &due) == 0 && due >= 0 && due < wait)
            wait = due + 1;
        bool is_lost = rc < 0 || PQstatus(env.conn) != CONNECTION_OK;
        if (is_lost) {
            uint64_t held;
            if (log_throttle_pass(&db_log, now_ms(), DB_LOG_INTERVAL_MS, &held))
                log_warn("job queue: claim failed", "thread=%s error=%s similar_held_back=%" PRIu64,
                         who, hb_strerror(rc), held);
            PQfinish(env.conn);
            env.conn = NULL;
            atomic_fetch_sub(&p->connections, 1);
            counted = false;
            wait = backoff;
        }
        sleep_unless_woken(p, !is_lost, gen, wait);
    }
    PQfinish(env.conn);
    if (counted)
        atomic_fetch_sub(&p->connections, 1);
    graph_client_free(env.graph);
    uv_mutex_lock(&p->mu);
    p->alive--;
    uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->mu);
}

static PGconn *listen_db(struct worker_pool *p, struct log_throttle *t)
{
    PGconn *c = connect_db(p, "dispatcher", "hubbub dispatcher", t);
    if (c == NULL)
        return NULL;
    PGresult *r = PQexec(c, "LISTEN " DB_JOBS_CHANNEL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void periodic(struct worker_pool *p, PGconn *c, uint64_t *next_rescue, uint64_t *next_check)
{
    const struct config *cfg = p->cfg;
    uint64_t now = now_ms();
    if (now >= *next_rescue) {
        int n = 0, rc = db_jobs_rescue(c, &n);
        if (rc == 0 && n > 0)
            log_warn("jobs whose worker stopped were queued again", "count=%d", n);
        else if (rc != 0)
            log_warn("job queue: rescuing expired leases failed", "error=%s", hb_strerror(rc));
        if (rc == 0 && (rc = db_messages_link_echoes(c, &n)) == 0 && n > 0)
            log_debug("echoes linked by the sweep", "count=%d", n);

        int64_t every = cfg->job_lease_ms / 2 < cfg->job_poll_interval_ms
                            ? cfg->job_lease_ms / 2
                            : cfg->job_poll_interval_ms;
        *next_rescue = now + (uint64_t)(every < RESCUE_MIN_MS ? RESCUE_MIN_MS : every);
    }
    if (now >= *next_check) {
        /* A backstop, so at the slower cadence: it reads every job parked
         * at 'infinity'. */
        int n = 0, rc = db_jobs_release_held(c, &n);
        if (rc == 0 && n > 0)
            log_warn("jobs released that nothing held any more", "count=%d", n);
        rc = db_jobs_enqueue_checks(c, cfg->subscription_check_interval_ms, &n);
        if (rc == 0 && n > 0)
            log_info("subscription checks queued", "count=%d", n);
        else if (rc != 0)
            log_warn("job queue: queueing subscription checks failed", "error=%s", hb_strerror(rc));
        int64_t every = cfg->subscription_check_interval_ms < CHECK_CADENCE_MAX_MS
                            ? cfg->subscription_check_interval_ms
                            : CHECK_CADENCE_MAX_MS;
        *next_check = now + (uint64_t)every;
    }
}

static void dispatcher_main(void *arg)
{
    struct worker_pool *p = arg;
    PGconn *c = NULL;
    uint64_t next_rescue = 0, next_check = 0;
    int64_t backoff = 100;
    struct log_throttle db_log = {0, 0};
    while (!quiescing(p)) {
        if (c == NULL && (c = listen_db(p, &db_log)) == NULL) {
            struct pollfd pf = {p->stop_pipe[0], POLLIN, 0};
            poll(&pf, 1, (int)backoff);
            backoff = backoff * 2 > p->cfg->db_retry_max_ms ? p->cfg->db_retry_max_ms : backoff * 2;
            continue;
        }
        backoff = 100;
        periodic(p, c, &next_rescue, &next_check);
        if (PQstatus(c) != CONNECTION_OK) {
            /* Lost while running the periodic work: its socket is gone, so
             * poll() would never tell. */
            log_warn("job queue: lost the LISTEN connection; reconnecting", "%s", "");
            PQfinish(c);
            c = NULL;
            wake(p, true);
            continue;
        }
        uint64_t now = now_ms();
        uint64_t until = next_rescue < next_check ? next_rescue : next_check;
        int timeout = until > now ? (int)(until - now) : 0;
        struct pollfd pf[2] = {{PQsocket(c), POLLIN, 0}, {p->stop_pipe[0], POLLIN, 0}};
        if (poll(pf, 2, timeout) < 0 && errno != EINTR)
            break;
        if (pf[0].revents == 0)
            continue;
        if (PQconsumeInput(c) == 0) {
            log_warn("job queue: lost the LISTEN connection; reconnecting", "%s", "");
            PQfinish(c);
            c = NULL;
            wake(p, true); /* jobs may have been queued meanwhile */
            continue;
        }
        int n = 0;
        PGnotify *note;
        while ((note = PQnotifies(c)) != NULL) {
            n++;
            PQfreemem(note);
        }
        if (n > 0)
            wake(p, true);
    }
    PQfinish(c);
    uv_mutex_lock(&p->mu);
    p->alive--;
    uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->mu);
}

struct worker_pool *worker_pool_start(const struct config *cfg, struct keyring *keys,
                                      struct stats *stats)
{
    struct worker_pool *p = xcalloc(1, sizeof(*p));
    p->cfg = cfg;
    p->keys = keys;
    p->stats = stats;
    atomic_init(&p->connections, 0);
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(p->owner, sizeof(p->owner), "%s:%d", host, (int)getpid());
    uv_mutex_init(&p->mu);
    uv_cond_init(&p->cond);
    if (pipe(p->stop_pipe) != 0)
        abort();
    p->nworkers = cfg->workers;
    p->workers = xcalloc((size_t)p->nworkers, sizeof(*p->workers));
    p->alive = p->nworkers + 1;
    for (int i = 0; i < p->nworkers; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i;
        if (uv_thread_create(&p->workers[i].thread, worker_main, &p->workers[i]) != 0)
            abort();
    }
    if (uv_thread_create(&p->dispatcher, dispatcher_main, p) != 0)
        abort();
    log_info("job workers started", "workers=%d owner=%s", p->nworkers, p->owner);
    return p;
}

static void release_jobs(struct worker_pool *p, const int64_t *ids, const int64_t *tokens, int n)
{
    if (n == 0)
        return;
    char err[256];
    int released = 0;
    PGconn *c = db_connect(p->cfg->database_url, err, sizeof(err));
    for (int i = 0; c != NULL && i < n; i++)
        if (db_jobs_release(c, ids[i], tokens[i]) == 1)
            released++;
    if (c == NULL)
        log_warn("jobs still running at shutdown; cannot release them, their leases will expire",
                 "running=%d error=\"%s\"", n, err);
    else
        log_warn("jobs still running at shutdown were put back in the queue",
                 "running=%d released=%d", n, released);
    PQfinish(c);
}

int worker_pool_connections(struct worker_pool *p)
{
    return atomic_load(&p->connections);
}

void worker_pool_quiesce(struct worker_pool *p)
{
    uv_mutex_lock(&p->mu);
    bool was = p->is_quiescing;
    p->is_quiescing = true;
    uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->mu);
    if (!was) {
        ssize_t n = write(p->stop_pipe[1], "x", 1);
        (void)n;
    }
}

int worker_pool_stop(struct worker_pool *p, int64_t timeout_ms)
{
    worker_pool_quiesce(p);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    uv_mutex_lock(&p->mu);
    while (p->alive > 0) {
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        uv_cond_timedwait(&p->cond, &p->mu, (deadline - now) * 1000000);
    }
    int running = p->running, alive = p->alive;
    int64_t *ids = xcalloc((size_t)p->nworkers, sizeof(*ids));
    int64_t *tokens = xcalloc((size_t)p->nworkers, sizeof(*tokens));
    int n = 0;
    for (int i = 0; i < p->nworkers && n < running; i++) {
        if (p->workers[i].job_id != 0) {
            ids[n] = p->workers[i].job_id;
            tokens[n++] = p->workers[i].job_token;
        }
    }
    uv_mutex_unlock(&p->mu);
    if (alive > 0) {
        /* A job is stuck in a call: put it back in the queue, so that another
         * process runs it now rather than when its lease expires. The lease
         * token fences out whatever the call here still records. The process
         * is exiting, so the pool is not freed under the thread. */
        release_jobs(p, ids, tokens, n);
        free(ids);
        free(tokens);
        return running > 0 ? running : 1;
    }
    free(ids);
    free(tokens);
    for (int i = 0; i < p->nworkers; i++)
        uv_thread_join(&p->workers[i].thread);
    uv_thread_join(&p->dispatcher);
    close(p->stop_pipe[0]);
    close(p->stop_pipe[1]);
    uv_cond_destroy(&p->cond);
    uv_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
    return 0;
}
