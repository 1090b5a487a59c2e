/*
 * worker.h - the pool of threads that runs Graph API jobs from the queue in
 * PostgreSQL (db/jobs.h): subscriptions and replies.
 *
 * Each worker thread owns one database connection and one Graph API client
 * (so HTTP connections to Meta are reused) and loops: claim a due job, run
 * it, record the outcome under its lease. One more thread, the dispatcher,
 * LISTENs for new jobs on its own connection and wakes idle workers, puts
 * jobs of workers that died back in the queue (lease expiry), and queues the
 * periodic subscription checks. Idle workers also look for work every
 * HUBBUB_JOB_POLL_INTERVAL, so a lost NOTIFY only delays a job.
 *
 * The event loop never waits on any of this: the pool shares nothing with it
 * but the configuration and the keyring, both read-only.
 */
#ifndef HB_SERVER_WORKER_H
#define HB_SERVER_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "lib/keyring.h"
#include "server/config.h"
#include "server/stats.h"

struct worker_pool;

/* Starts cfg->workers threads and the dispatcher. cfg, keys and stats (may
 * be NULL; Graph API calls are counted there) must outlive the pool. Never
 * fails: a database that is down is retried. */
struct worker_pool *worker_pool_start(const struct config *cfg, struct keyring *keys,
                                      struct stats *stats);

/* Workers holding a database connection now. Any thread. */
int worker_pool_connections(struct worker_pool *p);

/* Stops claiming jobs; running ones go on. Callable from any thread. */
void worker_pool_quiesce(struct worker_pool *p);

/* Waits up to timeout_ms for running jobs to finish, then frees the pool.
 * Returns the number of jobs still running at the deadline: they are put
 * back in the queue (db_jobs_release()), due at once, for another process
 * or the next start; if the database cannot be reached, their leases expire. */
int worker_pool_stop(struct worker_pool *p, int64_t timeout_ms);

#endif
