/*
 * pool.h - opening PostgreSQL connections with hubbub's session settings, the
 * map from SQLSTATE to HB_E* codes, and a small blocking connection pool.
 *
 * The pool is for worker threads (never the event loop): db_pool_acquire()
 * blocks until a connection is free, connects lazily, and a connection that
 * broke is closed on release so the next user reconnects. A database that is
 * down therefore costs one failed connect per acquire, which is what turns
 * into a 503 upstream.
 */
#ifndef HB_DB_POOL_H
#define HB_DB_POOL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connects to url. On failure returns NULL and writes libpq's message (which
 * never holds the password) into err. */
PGconn *db_connect(const char *url, char *err, size_t errsz);
/* The same, named in pg_stat_activity from its first moment (application_name,
 * which wins over the URL's), so operators and tests can tell threads apart. */
PGconn *db_connect_as(const char *url, const char *name, char *err, size_t errsz);

/* false when an idle connection is known to be dead: the server closed it
 * (a restart, an idle timeout) while we were not using it. Costs one poll(2);
 * checked before use so that a restart while idle does not cost a 503. */
bool db_conn_alive(PGconn *c);

/* HB_E* code for a failed result: HB_EUNAVAILABLE when the connection is
 * gone, the server is shutting down or the statement timed out, HB_EEXIST for unique violations,
 * HB_EINVAL for other integrity and data errors, HB_EDB otherwise. */
int db_result_rc(PGconn *c, const PGresult *res);

/* SQLSTATE of a failed result, or "" */
const char *db_sqlstate(const PGresult *res);

struct db_pool;

struct db_pool *db_pool_new(const char *url, int size);
void db_pool_free(struct db_pool *p); /* all connections must be released */
/* Queries on connections opened from now on are cancelled after ms. */
void db_pool_set_statement_timeout(struct db_pool *p, int64_t ms);

/* Blocks until a connection is available. NULL when connecting failed. */
PGconn *db_pool_acquire(struct db_pool *p);
void db_pool_release(struct db_pool *p, PGconn *c);

/* A moment's view of the pool, for /metrics. Any thread. */
struct db_pool_stats {
    int size;
    int in_use;     /* handed out, connected or connecting */
    int idle;       /* open and waiting to be handed out */
    uint64_t waits; /* acquires that found every connection in use, since start */
};
void db_pool_stats(struct db_pool *p, struct db_pool_stats *out);

#endif
