/*
 * pool.c - connections and the blocking pool; see pool.h.
 */
#include "db/pool.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hb.h"
#include "lib/log.h"

/* Server notices (warnings on shutdown, for instance) go to our log, in our
 * format, instead of raw to stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char quoted[512];
    size_t n = strlen(message);
    while (n > 0 && message[n - 1] == '\n')
        n--;
    log_warn("postgresql notice", "message=%s", log_quote(quoted, sizeof(quoted), message, n));
}

PGconn *db_connect(const char *url, char *err, size_t errsz)
{
    return db_connect_as(url, "hubbub", err, errsz);
}

PGconn *db_connect_as(const char *url, const char *name, char *err, size_t errsz)
{
    /* Later keywords override what the URL says, so only defaults go here. */
    const char *keys[] = {"dbname",     "connect_timeout", "application_name",
                          "keepalives", "keepalives_idle", NULL};
    const char *vals[] = {url, "5", name, "1", "30", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c == NULL) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errsz, "%s", PQerrorMessage(c));
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    /* 200 means committed: never let a server default weaken that. Times
     * leave the database as UTC, whatever the server's zone. */
    PGresult *r = PQexec(c, "SET synchronous_commit = on; SET client_min_messages = warning;"
                            " SET TimeZone = 'UTC'");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(err, errsz, "%s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

bool db_conn_alive(PGconn *c)
{
    if (c == NULL || PQstatus(c) != CONNECTION_OK)
        return false;
    struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
    if (p.fd < 0)
        return false;
    if (poll(&p, 1, 0) <= 0)
        return true; /* nothing pending: as alive as we can tell */
    /* Readable while idle: a notice, or the server going away. */
    return PQconsumeInput(c) == 1 && PQstatus(c) == CONNECTION_OK;
}

const char *db_sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

int db_result_rc(PGconn *c, const PGresult *res)
{
    const char *state = db_sqlstate(res);
    if (PQstatus(c) != CONNECTION_OK || state[0] == '\0' || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0 || strcmp(state, "53300") == 0 || strcmp(state, "57014") == 0)
        return HB_EUNAVAILABLE;
    if (strcmp(state, "23505") == 0)
        return HB_EEXIST;
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return HB_EINVAL;
    return HB_EDB;
}

struct db_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *url;
    int size;
    int in_use; /* handed out */
    int nidle;
    PGconn **idle;
    int64_t statement_timeout_ms; /* 0: the server's default */
    uint64_t waits;
};

struct db_pool *db_pool_new(const char *url, int size)
{
    struct db_pool *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->url = xstrdup(url);
    p->size = size;
    p->idle = xcalloc((size_t)size, sizeof(*p->idle));
    return p;
}

void db_pool_set_statement_timeout(struct db_pool *p, int64_t ms)
{
    p->statement_timeout_ms = ms;
}

void db_pool_free(struct db_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i]);
    free(p->idle);
    free(p->url);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

PGconn *db_pool_acquire(struct db_pool *p)
{
    PGconn *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->nidle == 0 && p->in_use == p->size)
        p->waits++;
    while (p->nidle == 0 && p->in_use == p->size)
        pthread_cond_wait(&p->cv, &p->mu);
    p->in_use++;
    if (p->nidle > 0)
        c = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->mu);
    if (c != NULL && db_conn_alive(c))
        return c;
    PQfinish(c);

    char err[512];
    c = db_connect(p->url, err, sizeof(err));
    if (c != NULL && p->statement_timeout_ms > 0) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SET statement_timeout = %" PRId64, p->statement_timeout_ms);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            PQfinish(c);
            c = NULL;
        }
        PQclear(r);
    }
    if (c == NULL) {
        pthread_mutex_lock(&p->mu);
        p->in_use--;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    return c;
}

void db_pool_release(struct db_pool *p, PGconn *c)
{
    if (c != NULL && (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE)) {
        PQfinish(c);
        c = NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->in_use--;
    if (c != NULL)
        p->idle[p->nidle++] = c;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void db_pool_stats(struct db_pool *p, struct db_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    out->size = p->size;
    out->in_use = p->in_use;
    out->idle = p->nidle;
    out->waits = p->waits;
    pthread_mutex_unlock(&p->mu);
}
