/*
 * jobs.c - the worker pool's benchmark, run by tests/bench/run-jobs (the
 * third part of `make bench`): N reply jobs drained against the fake Graph
 * API, with one hubbub process and with two on the same database, and the
 * delay of one reply on an idle queue.
 *
 * It sets itself up as tests/integration/t_jobs_queue.c does: a scratch
 * database on HUBBUB_TEST_DATABASE_URL, a tenant, an app and an Instagram
 * account created through the API (the fake confirms its subscription), then
 * for each run the outbox and the queue are emptied (TRUNCATE), the hubbub
 * processes started and left idle, and N replies queued straight into the
 * outbox with SQL, as the API would queue them, in one INSERT (every message's
 * created_at is that transaction's start) followed by NOTIFY in the same
 * transaction. Replies go to R recipients in turn, so each conversation has
 * N/R replies that the queue must send one at a time and in order.
 *
 * Measured: the wall time from the INSERT's commit to the last send the fake
 * accepted (it records the wall clock of each; a send is accepted when it
 * arrives, the answer comes the fake's latency later), jobs/s, and per
 * message the delay from messages.created_at to its accepted send (each send
 * is joined to its message by Meta's message_id). In a burst the delay is
 * mostly queueing: its p99 is close to the whole drain. CPU time of hubbub,
 * PostgreSQL and this process (the fake runs in it) comes from /proc, and
 * PostgreSQL's transactions, WAL and WAL fsyncs from its statistics.
 *
 * Before the runs the claim itself is timed against the full queue: the same
 * N queued jobs, db_jobs_claim() (the statement the workers run) called in a
 * transaction that is rolled back, its plan captured once with auto_explain;
 * then with nothing claimable, to show what a claim pays to get past jobs
 * that cannot run (see claim_probe()).
 *
 * It fails (exit 1) only when the benchmark is broken: a send missing or made
 * twice, a job that did not succeed, a conversation out of order or with two
 * sends at once, a hubbub process that does not exit cleanly.
 *
 * Settings (environment; tests/bench/run-jobs documents them):
 *   BENCH_JOBS_N, BENCH_JOBS_RECIPIENTS, BENCH_JOBS_WORKERS,
 *   BENCH_JOBS_LATENCY_MS, BENCH_JOBS_PROCS ("1 2"), BENCH_JOBS_IDLE,
 *   BENCH_JOBS_TIMEOUT (seconds a drain may take), HUBBUB_* (passed on).
 * Output: readable sections, and one "BENCH key=value ..." line per run.
 */
#include <dirent.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/jobs.h"
#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define META_APP "5550000000009"
#define NODE "17841400000000901"
#define TOKEN "bench-token-0123456789"
#define RECIPIENT_BASE 7000000
#define MAX_PROCS 4
#define MAX_ENV 64
#define CLAIM_PROBES 50
#define CLAIM_HELD 10

extern char **environ;

struct settings {
    int n;
    int recipients;
    int workers;
    int latency_ms;
    int procs[MAX_PROCS];
    int nprocs;
    int idle;
    int timeout_s;
};

/* CPU ticks (user + system) of the parts that share the machine. */
struct cpu {
    long long hubbub;
    long long postgres;
    long long self;
    long long machine; /* every CPU, all states */
    long long idle;    /* idle + iowait */
};

struct pg_stats {
    long long xacts;
    long long wal_bytes;
    long long wal_syncs;
};

static struct h_db db;
static struct settings set;
static const char *env_entries[MAX_ENV];
static int broken; /* checks failed so far */

static int env_int(const char *name, int def, int min, int max)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < min || n > max) {
        fprintf(stderr, "bench-jobs: %s must be a whole number from %d to %d\n", name, min, max);
        exit(2);
    }
    return (int)n;
}

static void read_settings(void)
{
    set.n = env_int("BENCH_JOBS_N", 10000, 1, 1000000);
    set.recipients = env_int("BENCH_JOBS_RECIPIENTS", 1000, 1, 1000000);
    set.workers = env_int("BENCH_JOBS_WORKERS", 8, 1, 256);
    set.latency_ms = env_int("BENCH_JOBS_LATENCY_MS", 5, 0, 10000);
    set.idle = env_int("BENCH_JOBS_IDLE", 50, 0, 10000);
    set.timeout_s = env_int("BENCH_JOBS_TIMEOUT", 60, 1, 3600);
    if (set.recipients > set.n)
        set.recipients = set.n;
    const char *p = getenv("BENCH_JOBS_PROCS");
    if (p == NULL || p[0] == '\0')
        p = "1 2";
    char copy[64];
    snprintf(copy, sizeof(copy), "%s", p);
    char *save = NULL;
    for (char *t = strtok_r(copy, " ,", &save); t != NULL; t = strtok_r(NULL, " ,", &save)) {
        char *end;
        long k = strtol(t, &end, 10);
        if (*end != '\0' || k < 1 || k > MAX_PROCS || set.nprocs == MAX_PROCS) {
            fprintf(stderr, "bench-jobs: BENCH_JOBS_PROCS: up to %d counts from 1 to %d\n",
                    MAX_PROCS, MAX_PROCS);
            exit(2);
        }
        set.procs[set.nprocs++] = (int)k;
    }
}

/* The environment of every hubbub started: quiet logs, the fake Graph API,
 * the HUBBUB_* settings the bench was given, and its worker count. */
static void build_env(struct fg *ig)
{
    static char workers[48];
    int n = 0;
    env_entries[n++] = "HUBBUB_LOG_LEVEL=warn";
    for (char **e = environ; *e != NULL && n < MAX_ENV - 4; e++)
        if (strncmp(*e, "HUBBUB_", 7) == 0 && strncmp(*e, "HUBBUB_TEST_", 12) != 0 &&
            strncmp(*e, "HUBBUB_WORKERS=", 15) != 0)
            env_entries[n++] = *e;
    snprintf(workers, sizeof(workers), "HUBBUB_WORKERS=%d", set.workers);
    env_entries[n++] = workers;
    env_entries[n++] = fg_env(ig);
    env_entries[n] = NULL;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- CPU from /proc ---- */

/* utime + stime of pid (all its threads), and its parent; false when gone.
 * With children set, the CPU of its children that ended and were waited for
 * (cutime + cstime) is added. */
static bool proc_ticks_of(long pid, bool children, long long *ticks, long *ppid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t len = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[len] = '\0';
    const char *p = strrchr(line, ')'); /* the command may hold spaces */
    if (p == NULL)
        return false;
    long long utime = 0, stime = 0, cutime = 0, cstime = 0;
    long parent = 0;
    /* Fields after the command: state ppid ... utime (14th) stime cutime cstime. */
    if (sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld %lld %lld", &parent,
               &utime, &stime, &cutime, &cstime) != 5)
        return false;
    *ticks = utime + stime + (children ? cutime + cstime : 0);
    if (ppid != NULL)
        *ppid = parent;
    return true;
}

static bool proc_ticks(long pid, long long *ticks, long *ppid)
{
    return proc_ticks_of(pid, false, ticks, ppid);
}

static long postmaster_pid(void)
{
    static long pid = -1;
    if (pid < 0) {
        long backend = (long)h_db_int(&db, "SELECT pg_backend_pid()");
        long long t;
        if (!proc_ticks(backend, &t, &pid))
            pid = 0; /* not on this machine */
    }
    return pid;
}

static long long postgres_ticks(void)
{
    long master = postmaster_pid();
    if (master <= 0)
        return -1;
    long long sum = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        long long t;
        long parent;
        /* The postmaster's children that ended (autovacuum workers, say)
         * count in its own cutime. */
        if (*end != '\0' || pid <= 0 || !proc_ticks_of(pid, pid == master, &t, &parent))
            continue;
        if (pid == master || parent == master)
            sum += t;
    }
    closedir(d);
    return sum;
}

static void cpu_read(struct cpu *c, const struct h_server *servers, int nservers)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < nservers; i++) {
        long long t;
        if (proc_ticks(servers[i].pid, &t, NULL))
            c->hubbub += t;
    }
    c->postgres = postgres_ticks();
    proc_ticks(getpid(), &c->self, NULL);
    FILE *f = fopen("/proc/stat", "r");
    if (f != NULL) {
        long long v[10] = {0};
        if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            for (int i = 0; i < 8; i++)
                c->machine += v[i];
            c->idle = v[3] + v[4];
        }
        fclose(f);
    }
}

/* ---- PostgreSQL's statistics ---- */

static void pg_stats_read(struct pg_stats *s)
{
    h_db_exec(&db, "SELECT pg_stat_clear_snapshot()");
    s->xacts = h_db_int(&db, "SELECT xact_commit FROM pg_stat_database"
                             " WHERE datname = current_database()");
    s->wal_bytes = h_db_int(&db, "SELECT (pg_current_wal_lsn() - '0/0')::bigint");
    s->wal_syncs = h_db_int(&db, "SELECT wal_sync FROM pg_stat_wal");
}

/* Backends write their statistics when they end: wait until hubbub's are
 * gone (ours is the one left). */
static void wait_backends_gone(void)
{
    int64_t deadline = h_now_ms() + 5000;
    while (h_now_ms() < deadline &&
           h_db_int(&db, "SELECT count(*) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()") > 0)
        h_sleep_ms(20);
    h_sleep_ms(100);
}

/* ---- set-up ---- */

static long long setup_account(void)
{
    struct h_server s;
    h_server_start(&s, &db, env_entries);
    char key[64];
    h_api_tenant(&s, "bench", key);
    long status;
    long long acc = h_api_ig_account(&s, key, META_APP, "bench-secret-0123456789",
                                     "verify-0123456789", NODE, TOKEN, "messages", &status);
    if (status != 201)
        tap_bail("creating the account: %ld", status);
    if (!h_wait_sql(&db, "active", H_WAIT_MS, "SELECT sub_state FROM accounts WHERE id = %lld",
                    acc))
        tap_bail("the account was not subscribed");
    if (h_server_stop(&s, SIGTERM) != 0)
        tap_bail("the set-up server did not exit 0");
    unlink(s.log_path);
    return acc;
}

/* Queues n replies, message i to recipient (i - 1) % recipients, in one
 * transaction with its NOTIFY, as POST /v1/accounts/{id}/messages would
 * queue each. */
static void queue_replies(long long acc, int n, int recipients)
{
    h_db_exec(&db,
              "WITH m AS ("
              " INSERT INTO messages (tenant_id, account_id, recipient_id, request)"
              " SELECT a.tenant_id, a.id, (%d + (i - 1) %% %d)::text,"
              "  jsonb_build_object('recipient', jsonb_build_object('id',"
              "    (%d + (i - 1) %% %d)::text), 'messaging_type', 'RESPONSE',"
              "   'message', jsonb_build_object('text', 'b' || i))"
              " FROM accounts a, generate_series(1, %d) i"
              " WHERE a.id = %lld ORDER BY i RETURNING id, tenant_id, account_id, recipient_id"
              ")"
              " INSERT INTO jobs (kind, tenant_id, app_id, account_id, message_id, serial_key,"
              "  run_at)"
              " SELECT 'send', m.tenant_id, a.app_id, m.account_id, m.id,"
              "  'msg:' || m.account_id || ':' || m.recipient_id,"
              /* parked behind the first of their conversation, as
               * db_jobs_enqueue_send() queues them */
              "  CASE WHEN row_number() OVER (PARTITION BY m.recipient_id ORDER BY m.id) > 1"
              "  THEN 'infinity'::timestamptz ELSE now() END"
              " FROM m JOIN accounts a ON a.id = m.account_id ORDER BY m.id;"
              " NOTIFY " DB_JOBS_CHANNEL,
              RECIPIENT_BASE, recipients, RECIPIENT_BASE, recipients, n, acc);
}

static void empty_queue(void)
{
    h_db_exec(&db, "TRUNCATE jobs, messages");
}

/* ---- the claim on a full queue ---- */

/* Keeps the first plan auto_explain sends (as a LOG message) in *arg. */
static void on_notice(void *arg, const char *message)
{
    char **plan = arg;
    if (*plan == NULL && strstr(message, "Query Text:") != NULL)
        *plan = strdup(message);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)(p * n + 0.999999) - 1; /* nearest rank */
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* Times count claims (sorted into t); returns how many claimed a job. */
static int time_claims(const char *owner, int count, double *t)
{
    int claimed = 0;
    for (int i = 0; i < count; i++) {
        struct job j;
        int64_t t0 = wall_us();
        int rc = db_jobs_claim(db.conn, owner, 60000, &j);
        t[i] = (double)(wall_us() - t0) / 1000;
        if (rc < 0)
            tap_bail("db_jobs_claim failed: %d %s", rc, PQerrorMessage(db.conn));
        if (rc == 1) {
            claimed++;
            db_job_dispose(&j);
        }
    }
    qsort(t, (size_t)count, sizeof(t[0]), cmp_double);
    return claimed;
}

/* The claim's cost against the full queue, in one transaction rolled back
 * at the end: while jobs are claimable at the head of the queue, when the
 * whole queue is held (its account paused by a rate limit), and when every
 * conversation's first reply is running (the rest wait behind them). The
 * last two claim nothing, so they show what a claim pays to get past jobs
 * that cannot run: every claim of every worker pays it while such jobs sit
 * ahead of the first claimable one. */
static void claim_probe(long long acc)
{
    empty_queue();
    queue_replies(acc, set.n, set.recipients);
    printf("\n== the claim (db_jobs_claim) against a full queue: %d queued send jobs,"
           " %d conversations\n",
           set.n, set.recipients);
    char *plan = NULL;
    PQnoticeProcessor old = PQsetNoticeProcessor(db.conn, on_notice, &plan);
    h_db_exec(&db, "BEGIN");
    h_db_exec(&db, "LOAD 'auto_explain'");
    h_db_exec(&db, "SET LOCAL auto_explain.log_min_duration = 0");
    h_db_exec(&db, "SET LOCAL auto_explain.log_analyze = on");
    h_db_exec(&db, "SET LOCAL auto_explain.log_buffers = on");
    h_db_exec(&db, "SET LOCAL client_min_messages = log");
    double first[1], t[CLAIM_PROBES], held[CLAIM_HELD], busy[CLAIM_HELD];
    time_claims("bench:plan", 1, first);
    h_db_exec(&db, "SET LOCAL auto_explain.log_min_duration = -1");
    h_db_exec(&db, "SET LOCAL client_min_messages = warning");
    int claimed = time_claims("bench:probe", CLAIM_PROBES, t);
    h_db_exec(&db, "UPDATE accounts SET paused_until = now() + interval '1 hour' WHERE id = %lld",
              acc);
    int claimed_held = time_claims("bench:held", CLAIM_HELD, held);
    h_db_exec(&db, "UPDATE accounts SET paused_until = NULL WHERE id = %lld", acc);
    h_db_exec(&db, "UPDATE jobs SET state = 'running' WHERE id IN (SELECT min(id) FROM jobs"
                   " WHERE state = 'queued' GROUP BY serial_key)");
    long long waiting = h_db_int(&db, "SELECT count(*) FROM jobs WHERE state = 'queued'");
    int claimed_busy = time_claims("bench:busy", CLAIM_HELD, busy);
    h_db_exec(&db, "ROLLBACK");
    PQsetNoticeProcessor(db.conn, old, NULL);
    printf("  %d claims, jobs claimable at the head: p50 %.2f ms, max %.2f ms"
           " (the first, under EXPLAIN ANALYZE, %.2f ms)\n",
           claimed, pct(t, CLAIM_PROBES, 0.5), t[CLAIM_PROBES - 1], first[0]);
    printf("  the account paused (all %d jobs held): p50 %.2f ms, max %.2f ms to claim %d\n", set.n,
           pct(held, CLAIM_HELD, 0.5), held[CLAIM_HELD - 1], claimed_held);
    printf("  every conversation's first reply running (%lld jobs wait behind them): p50 %.2f ms,"
           " max %.2f ms to claim %d\n",
           waiting, pct(busy, CLAIM_HELD, 0.5), busy[CLAIM_HELD - 1], claimed_busy);
    printf("  (a claim scans the queue in (run_at, id) order past every job that cannot run:"
           " the last two are what each claim of each worker pays while such jobs sit ahead)\n");
    /* The first claim took one conversation; each probe takes another. */
    int want = set.recipients - 1 < CLAIM_PROBES ? set.recipients - 1 : CLAIM_PROBES;
    if (claimed != want || claimed_held != 0 || claimed_busy != 0) {
        broken++;
        printf("  BROKEN: the claims did not claim what they should\n");
    }
    printf("BENCH run=claim n=%d claim_p50_ms=%.2f claim_max_ms=%.2f held_p50_ms=%.2f"
           " busy_p50_ms=%.2f\n",
           set.n, pct(t, CLAIM_PROBES, 0.5), t[CLAIM_PROBES - 1], pct(held, CLAIM_HELD, 0.5),
           pct(busy, CLAIM_HELD, 0.5));
    if (plan != NULL) {
        /* auto_explain's message: "LOG:  duration: ...\nQuery Text: ...\n<plan>". */
        const char *p = strstr(plan, "Query Parameters:");
        if (p == NULL)
            p = strstr(plan, "Query Text:");
        p = p != NULL ? strchr(p, '\n') : NULL;
        printf("  the plan of the first claim (auto_explain: ANALYZE, BUFFERS):\n");
        for (const char *l = p != NULL ? p + 1 : plan; *l != '\0';) {
            size_t k = strcspn(l, "\n");
            printf("  %.*s\n", (int)k, l);
            l += k + (l[k] == '\n');
        }
        free(plan);
    } else {
        printf("  (no plan: auto_explain did not report)\n");
    }
    empty_queue();
}

/* ---- one drain ---- */

/* Copies the fake's accepted sends into the temporary table fg_sent. */
static void load_sends(const struct fg_send *s, size_t n)
{
    h_db_exec(&db, "DROP TABLE IF EXISTS fg_sent");
    h_db_exec(&db, "CREATE TEMP TABLE fg_sent (seq bigint, mid text COLLATE \"C\","
                   " at_us bigint, recipient text, body text)");
    PGresult *r = PQexec(db.conn, "COPY fg_sent FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN)
        tap_bail("COPY fg_sent: %s", PQerrorMessage(db.conn));
    PQclear(r);
    for (size_t i = 0; i < n; i++) {
        char line[512];
        const char *f[] = {s[i].message_id, s[i].recipient, s[i].text};
        for (int k = 0; k < 3; k++)
            if (strpbrk(f[k], "\\\t\n\r") != NULL)
                tap_bail("an accepted send holds a character COPY would need escaped");
        int len = snprintf(line, sizeof(line), "%zu\t%s\t%" PRId64 "\t%s\t%s\n", i, s[i].message_id,
                           s[i].at_wall_us, s[i].recipient, s[i].text);
        if (len >= (int)sizeof(line) || PQputCopyData(db.conn, line, len) != 1)
            tap_bail("COPY fg_sent: %s", PQerrorMessage(db.conn));
    }
    if (PQputCopyEnd(db.conn, NULL) != 1)
        tap_bail("COPY fg_sent: %s", PQerrorMessage(db.conn));
    r = PQgetResult(db.conn);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        tap_bail("COPY fg_sent: %s", PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(db.conn)) != NULL)
        PQclear(r);
}

static void check(bool ok, const char *what, char *failed, size_t cap)
{
    if (ok)
        return;
    broken++;
    size_t len = strlen(failed);
    snprintf(failed + len, cap - len, "%s%s", len > 0 ? "; " : "", what);
}

/* Lines of the server log at level warn or worse, printed (up to a few). */
static int log_problems(const struct h_server *s)
{
    char *log = h_server_log(s);
    int count = 0;
    for (char *l = log; l != NULL && *l != '\0';) {
        size_t k = strcspn(l, "\n");
        if (k > 0) {
            if (count < 3)
                printf("  hubbub logged: %.*s\n", (int)(k > 300 ? 300 : k), l);
            count++;
        }
        l += k + (l[k] == '\n');
    }
    free(log);
    return count;
}

static void drain(struct fg *ig, long long acc, int procs)
{
    int n = set.n;
    empty_queue();
    fg_reset_records(ig);
    struct h_server servers[MAX_PROCS];
    for (int i = 0; i < procs; i++)
        h_server_start(&servers[i], &db, env_entries);
    /* Let the workers settle in (each claims once, finds nothing, sleeps). */
    h_sleep_ms(300);
    printf("\n== %d hubbub process%s x %d workers: %d replies to %d recipients (%d each,"
           " one at a time and in order per recipient); the fake Send API answers in %d ms\n",
           procs, procs > 1 ? "es" : "", set.workers, n, set.recipients,
           (n + set.recipients - 1) / set.recipients, set.latency_ms);

    struct pg_stats ps0, ps1;
    struct cpu c0, c1;
    pg_stats_read(&ps0);
    cpu_read(&c0, servers, procs);
    int64_t begin_us = wall_us();
    queue_replies(acc, n, set.recipients);
    int64_t commit_us = wall_us();
    bool is_drained = fg_wait_sends(ig, n, set.timeout_s * 1000);
    cpu_read(&c1, servers, procs);
    bool is_done = is_drained && h_wait_sql(&db, "0", H_WAIT_MS,
                                            "SELECT count(*) FROM jobs WHERE kind = 'send'"
                                            " AND state IN ('queued', 'running')");
    int64_t done_us = wall_us();

    char failed[1024] = "";
    if (!is_drained) {
        char what[128];
        snprintf(what, sizeof(what), "only %ld of %d replies sent within %d s",
                 fg_sends(ig, NULL, NULL), n, set.timeout_s);
        check(false, what, failed, sizeof(failed));
    }
    h_sleep_ms(50); /* a send made twice would show now */
    size_t nsent = 0;
    struct fg_send *sent = fg_sent(ig, NULL, NULL, &nsent);
    int max_in_flight = fg_max_in_flight(ig, NULL, NULL);

    char *split = h_db_text(&db, "SELECT string_agg(n::text, ' + ' ORDER BY n DESC) FROM ("
                                 "SELECT count(*) n FROM jobs WHERE kind = 'send'"
                                 " GROUP BY split_part(lease_owner, ':', 2)) x");
    int warnings = 0;
    for (int i = 0; i < procs; i++) {
        warnings += log_problems(&servers[i]);
        if (h_server_stop(&servers[i], SIGTERM) != 0)
            check(false, "a hubbub process did not exit 0", failed, sizeof(failed));
    }
    wait_backends_gone();
    pg_stats_read(&ps1);

    /* Per message: the fake's accept time against messages.created_at. */
    load_sends(sent, nsent);
    char *row = h_db_text(
        &db, "SELECT count(*) || ' ' || count(m.id) || ' ' || count(DISTINCT f.mid) || ' ' ||"
             " coalesce(min(f.at_us), 0) || ' ' || coalesce(max(f.at_us), 0) || ' ' ||"
             " coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY d), 0) || ' ' ||"
             " coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY d), 0) || ' ' ||"
             " coalesce(max(d), 0) || ' ' || coalesce(min(m.created_us), 0)"
             " FROM fg_sent f LEFT JOIN (SELECT id, meta_message_id,"
             "  (extract(epoch FROM created_at) * 1000000)::bigint AS created_us FROM messages) m"
             "  ON m.meta_message_id = f.mid,"
             " LATERAL (SELECT f.at_us - m.created_us AS d) x");
    long long sends = 0, joined = 0, distinct = 0, first_us = 0, last_us = 0, p50 = 0, p99 = 0,
              dmax = 0, created_us = 0;
    sscanf(row, "%lld %lld %lld %lld %lld %lld %lld %lld %lld", &sends, &joined, &distinct,
           &first_us, &last_us, &p50, &p99, &dmax, &created_us);
    free(row);
    long long stored = h_db_int(&db, "SELECT count(DISTINCT meta_message_id) FROM messages");
    long long succeeded =
        h_db_int(&db, "SELECT count(*) FROM jobs WHERE kind = 'send' AND state = 'succeeded'");
    long long retried =
        h_db_int(&db, "SELECT count(*) FROM jobs WHERE kind = 'send' AND attempts > 1");
    /* Order: within each recipient, the message numbers rise with the fake's
     * accept order (fg_sent's order is the accept order). */
    long long out_of_order = h_db_int(
        &db, "SELECT count(*) FROM (SELECT substr(body, 2)::int AS i,"
             " lag(substr(body, 2)::int) OVER (PARTITION BY recipient ORDER BY seq) AS prev"
             " FROM fg_sent) x WHERE i < prev");
    fg_sent_free(sent, nsent);

    check(sends == n, "the fake did not accept exactly N sends", failed, sizeof(failed));
    check(distinct == n && joined == n && stored == n,
          "not every message has its own message_id stored", failed, sizeof(failed));
    check(succeeded == n, "not every job succeeded", failed, sizeof(failed));
    check(out_of_order == 0, "a conversation's replies arrived out of order", failed,
          sizeof(failed));
    check(max_in_flight <= 1, "a conversation had two sends at once", failed, sizeof(failed));
    check(is_done, "jobs still queued or running after the last send", failed, sizeof(failed));

    double wall_s = (double)(last_us - commit_us) / 1e6;
    double jobs_s = wall_s > 0 ? n / wall_s : 0;
    double insert_ms = (double)(commit_us - begin_us) / 1000;
    double first_ms = (double)(first_us - commit_us) / 1000;
    double done_s = (double)(done_us - commit_us) / 1e6;
    double worker_ms = wall_s * 1000 * procs * set.workers / n;
    double window = (double)(c1.machine - c0.machine);
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double to_pct = window > 0 ? 100.0 * ncpu / window : 0;
    double pg_pct = c1.postgres < 0 ? -1 : (double)(c1.postgres - c0.postgres) * to_pct;
    double hub_pct = (double)(c1.hubbub - c0.hubbub) * to_pct;
    double self_pct = (double)(c1.self - c0.self) * to_pct;
    double idle_pct = (double)(c1.idle - c0.idle) * to_pct;
    double other_pct = 100.0 * ncpu - idle_pct - hub_pct - (pg_pct < 0 ? 0 : pg_pct) - self_pct;

    printf("  INSERT of the %d messages and their jobs: %.0f ms (messages.created_at is its"
           " start)\n",
           n, insert_ms);
    printf("  first send %.1f ms after the commit, last %.2f s after: %.0f jobs/s;"
           " all jobs marked succeeded %.2f s after\n",
           first_ms, wall_s, jobs_s, done_s);
    printf("  delay from enqueue to accepted send, per message: p50 %.2f s, p99 %.2f s,"
           " max %.2f s\n",
           p50 / 1e6, p99 / 1e6, dmax / 1e6);
    printf("  a worker's time per job: %.1f ms, of which the fake Graph API's %d ms\n", worker_ms,
           set.latency_ms);
    if (pg_pct >= 0)
        printf("  CPU, %% of one core: hubbub %.0f, postgres %.0f, fake Graph API + bench %.0f,"
               " other %.0f; idle %.0f (of %d)\n",
               hub_pct, pg_pct, self_pct, other_pct < 0 ? 0 : other_pct, idle_pct, 100 * ncpu);
    printf("  PostgreSQL: %.2f transactions, %.2f WAL fsyncs, %.0f bytes of WAL per job\n",
           (double)(ps1.xacts - ps0.xacts) / n, (double)(ps1.wal_syncs - ps0.wal_syncs) / n,
           (double)(ps1.wal_bytes - ps0.wal_bytes) / n);
    if (procs > 1)
        printf("  jobs per process: %s\n", split);
    printf("  checks: %lld sends accepted, %lld distinct message_ids stored, %lld jobs succeeded"
           " (%lld retried), %lld out of order, at most %d send%s of a conversation at once%s\n",
           sends, stored, succeeded, retried, out_of_order, max_in_flight,
           max_in_flight == 1 ? "" : "s", warnings > 0 ? "; hubbub logged warnings (above)" : "");
    if (failed[0] != '\0')
        printf("  BROKEN: %s\n", failed);
    printf("BENCH run=drain procs=%d workers=%d n=%d latency_ms=%d wall_s=%.3f jobs_s=%.0f"
           " first_ms=%.1f p50_s=%.3f p99_s=%.3f max_s=%.3f insert_ms=%.0f worker_ms=%.2f"
           " cpu_hubbub=%.0f cpu_pg=%.0f cpu_self=%.0f cpu_other=%.0f cpu_idle=%.0f"
           " xacts_per_job=%.2f ok=%d\n",
           procs, set.workers, n, set.latency_ms, wall_s, jobs_s, first_ms, p50 / 1e6, p99 / 1e6,
           dmax / 1e6, insert_ms, worker_ms, hub_pct, pg_pct, self_pct,
           other_pct < 0 ? 0 : other_pct, idle_pct, (double)(ps1.xacts - ps0.xacts) / n,
           failed[0] == '\0');
    fflush(stdout);
    free(split);
    for (int i = 0; i < procs; i++) {
        if (failed[0] == '\0')
            unlink(servers[i].log_path);
        else
            printf("  hubbub's log is kept: %s\n", servers[i].log_path);
    }
}

/* ---- one reply at a time ---- */

static void idle_replies(struct fg *ig, long long acc)
{
    int n = set.idle;
    empty_queue();
    fg_reset_records(ig);
    struct h_server s;
    h_server_start(&s, &db, env_entries);
    h_sleep_ms(300);
    printf("\n== one reply at a time on an idle queue: %d replies, 1 hubbub process x %d"
           " workers, the fake answering in %d ms\n",
           n, set.workers, set.latency_ms);
    char failed[256] = "";
    for (int i = 1; i <= n; i++) {
        queue_replies(acc, 1, 1);
        if (!fg_wait_sends(ig, i, set.timeout_s * 1000)) {
            check(false, "a reply was not sent", failed, sizeof(failed));
            break;
        }
        /* Its job marked done before the next: the queue is idle again. */
        if (!h_wait_sql(&db, "0", H_WAIT_MS,
                        "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")) {
            check(false, "a job did not finish", failed, sizeof(failed));
            break;
        }
    }
    if (h_server_stop(&s, SIGTERM) != 0)
        check(false, "hubbub did not exit 0", failed, sizeof(failed));
    size_t nsent = 0;
    struct fg_send *sent = fg_sent(ig, NULL, NULL, &nsent);
    load_sends(sent, nsent);
    fg_sent_free(sent, nsent);
    char *row = h_db_text(
        &db, "SELECT count(m.id) || ' ' ||"
             " coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY d), 0) || ' ' ||"
             " coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY d), 0) || ' ' ||"
             " coalesce(max(d), 0) FROM fg_sent f JOIN (SELECT id, meta_message_id,"
             "  (extract(epoch FROM created_at) * 1000000)::bigint AS created_us FROM messages) m"
             " ON m.meta_message_id = f.mid, LATERAL (SELECT f.at_us - m.created_us AS d) x");
    long long joined = 0, p50 = 0, p99 = 0, dmax = 0;
    sscanf(row, "%lld %lld %lld %lld", &joined, &p50, &p99, &dmax);
    free(row);
    check(joined == n && (long long)nsent == n, "not every reply was sent once", failed,
          sizeof(failed));
    printf("  delay from enqueue to accepted send: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
           p50 / 1e3, p99 / 1e3, dmax / 1e3);
    if (failed[0] != '\0')
        printf("  BROKEN: %s\n", failed);
    printf("BENCH run=idle n=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f ok=%d\n", n, p50 / 1e3,
           p99 / 1e3, dmax / 1e3, failed[0] == '\0');
    if (failed[0] == '\0')
        unlink(s.log_path);
    else
        printf("  hubbub's log is kept: %s\n", s.log_path);
}

int main(void)
{
    read_settings();
    setvbuf(stdout, NULL, _IOLBF, 0);
    h_db_create(&db, "bench_jobs");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    if (db_jobs_prepare(db.conn) != 0)
        tap_bail("preparing the claim: %s", PQerrorMessage(db.conn));
    struct fg *ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, NODE, TOKEN, META_APP);
    build_env(ig);
    long long acc = setup_account();
    fg_set_latency_ms(ig, set.latency_ms);

    claim_probe(acc);
    for (int i = 0; i < set.nprocs; i++)
        drain(ig, acc, set.procs[i]);
    if (set.idle > 0)
        idle_replies(ig, acc);

    fg_stop(ig);
    h_db_drop(&db);
    return broken > 0 ? 1 : 0;
}
