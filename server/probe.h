/*
 * probe.h - a background thread that asks PostgreSQL, every interval, what
 * /readyz and /metrics need from it: whether it answers, whether the schema
 * is the one this binary embeds, and how many jobs are in each kind and state.
 *
 * The scrape and the readiness check then only read the latest snapshot, on
 * the loop, in memory: however often load balancers and Prometheus call, the
 * database sees one small round of queries per interval, and a database that
 * hangs holds this thread, never the loop or the API's pool. A snapshot that
 * grows old (the thread is stuck in a query) is itself a failed check.
 */
#ifndef HB_PROBE_H
#define HB_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROBE_JOB_ROWS 32
#define PROBE_TIMEOUT_MS 2000 /* statement timeout of the probe's queries */

struct probe_jobs {
    char kind[16];
    char state[16];
    int64_t count;
};

struct probe_snapshot {
    bool has_run;           /* at least one round finished */
    uint64_t ok_at_ms;      /* monotonic time of the last round the database answered; 0: never */
    bool is_db_ok;          /* the last round reached the database */
    bool is_schema_current; /* as of the last round that reached it */
    size_t njobs;
    struct probe_jobs jobs[PROBE_JOB_ROWS];
};

struct probe;

/* Starts the thread; url must outlive the probe. Never fails. */
struct probe *probe_start(const char *url, int64_t interval_ms);
/* Copies the latest snapshot. Any thread. */
void probe_read(struct probe *p, struct probe_snapshot *out);
/* Stops the thread; if it is stuck in a query for longer than wait_ms, it is
 * left behind (the process is exiting) rather than waited for, and false is
 * returned. */
bool probe_stop(struct probe *p, int64_t wait_ms);

uint64_t probe_now_ms(void); /* the monotonic clock snapshots use */

#endif
