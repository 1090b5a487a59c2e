/*
 * r_jobs_drain.c - a job running when hubbub gets SIGTERM either finishes
 * within the drain time or goes back in the queue, so that the next process
 * runs it at once instead of waiting for its lease to expire.
 *
 *   1. A reply whose Send API call takes 300 ms, SIGTERM while it runs, a
 *      drain time of 3 s: the job finishes (succeeded) and hubbub exits 0.
 *   2. A reply whose call takes longer than the drain time of 1 s, with a
 *      lease of 10 minutes: hubbub exits 0 on time, the job is queued again
 *      with its lease cleared and its attempt given back, and a new hubbub
 *      sends it within seconds.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/fake_graph/fake_graph.h"
#include "tests/integration/harness.h"
#include "tests/integration/waitfor.h"

#define META_APP "5550000000009"
#define APP_SECRET "drain-app-secret-0123456789"
#define NODE "17841400000000609"
#define TOKEN "drain-token-0123456789-a"

static struct h_db db;
static struct fg *ig;
static char key[64];
static long long acc;

static long long post_msg(const struct h_server *s, const char *text)
{
    char url[256], auth[128], json[256];
    snprintf(url, sizeof(url), "%s/v1/accounts/%lld/messages", s->base, acc);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    snprintf(json, sizeof(json), "{\"recipient_id\":\"111\",\"text\":\"%s\"}", text);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    struct h_resp r;
    h_http(&r, "POST", url, headers, json, strlen(json));
    long long id = r.status == 202 ? h_json_num(r.body, "id") : -1;
    if (id < 0)
        tap_diag("posting a reply: %ld %s", r.status, r.body ? r.body : "");
    h_resp_free(&r);
    return id;
}

static int stop_timed(struct h_server *s, int64_t *took)
{
    int64_t t0 = h_now_ms();
    int st = h_server_stop(s, SIGTERM);
    *took = h_now_ms() - t0;
    return st;
}

int main(void)
{
    ig = fg_start(FG_INSTAGRAM, "v25.0");
    if (ig == NULL)
        tap_bail("cannot start the fake Graph API");
    fg_add_node(ig, NODE, TOKEN, META_APP);
    h_db_create(&db, "rel_jobs_drain");
    const char *argv[] = {"migrate", NULL};
    if (h_run(&db, argv, NULL, NULL, NULL) != 0)
        tap_bail("migrate failed");
    const char *env3[] = {fg_env(ig),
                          "HUBBUB_WORKERS=2",
                          "HUBBUB_JOB_LEASE=10m",
                          "HUBBUB_GRAPH_TIMEOUT=20s",
                          "HUBBUB_SHUTDOWN_TIMEOUT=3s",
                          "HUBBUB_API_RATE=10000",
                          "HUBBUB_API_BURST=10000",
                          NULL};
    struct h_server s;
    h_server_start(&s, &db, env3);
    h_api_tenant(&s, "drainer", key);
    long status;
    acc = h_api_ig_account(&s, key, META_APP, APP_SECRET, "verify-0123456789", NODE, TOKEN,
                           "messages", &status);
    if (status != 201)
        tap_bail("creating the account: %ld", status);
    if (!h_wait_sql(&db, "0", H_WAIT_MS,
                    "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"))
        tap_bail("the subscription job did not finish");

    /* ---- 1. a job that finishes within the drain time ---- */
    fg_set_latency_ms(ig, 300);
    long long m1 = post_msg(&s, "short");
    tap_ok(
        h_wait_sql(&db, "running", H_WAIT_MS, "SELECT state FROM jobs WHERE message_id = %lld", m1),
        "a reply's job is running (its Send API call takes 300 ms)");
    int64_t took;
    int st = stop_timed(&s, &took);
    tap_diag("SIGTERM while a 300 ms job ran: exit %d after %lld ms", st, (long long)took);
    tap_is_int(st, 0, "hubbub exits 0");
    tap_ok(took < 3000, "within the drain time of 3 s (%lld ms)", (long long)took);
    char *state = h_db_text(&db, "SELECT state FROM jobs WHERE message_id = %lld", m1);
    tap_is_str(state, "succeeded", "the job finished before the exit");
    free(state);

    /* ---- 2. a job that outlasts the drain time ---- */
    const char *env1[] = {fg_env(ig),
                          "HUBBUB_WORKERS=2",
                          "HUBBUB_JOB_LEASE=10m",
                          "HUBBUB_GRAPH_TIMEOUT=20s",
                          "HUBBUB_SHUTDOWN_TIMEOUT=1s",
                          "HUBBUB_API_RATE=10000",
                          "HUBBUB_API_BURST=10000",
                          NULL};
    h_server_start(&s, &db, env1);
    fg_set_latency_ms(ig, 8000);
    long long m2 = post_msg(&s, "long");
    tap_ok(
        h_wait_sql(&db, "running", H_WAIT_MS, "SELECT state FROM jobs WHERE message_id = %lld", m2),
        "a reply's job is running (its Send API call takes 8 s)");
    st = stop_timed(&s, &took);
    tap_diag("SIGTERM while an 8 s job ran: exit %d after %lld ms", st, (long long)took);
    tap_is_int(st, 0, "hubbub exits 0");
    tap_ok(took >= 900 && took < 2500, "at the drain time of 1 s (%lld ms)", (long long)took);
    char *row = h_db_text(&db,
                          "SELECT state || ' ' || (lease_expires_at IS NULL) || ' ' || attempts"
                          " || ' ' || (run_at <= now()) || ' ' || (last_error->>'class')"
                          " FROM jobs WHERE message_id = %lld",
                          m2);
    tap_is_str(row, "queued true 0 true released",
               "the job is queued again, due now, lease cleared, attempt given back");
    free(row);
    char *log = h_server_log(&s);
    tap_contains(log, "put back in the queue", "the log says so");
    free(log);

    fg_set_latency_ms(ig, 0);
    int64_t t0 = h_now_ms();
    h_server_start(&s, &db, env1);
    tap_ok(h_wait_sql(&db, "succeeded", H_WAIT_MS, "SELECT state FROM jobs WHERE message_id = %lld",
                      m2),
           "the next hubbub runs it");
    int64_t after = h_now_ms() - t0;
    tap_diag("the released job succeeded %lld ms after the new hubbub was started",
             (long long)after);
    tap_ok(after < 10000, "at once, not after the 10-minute lease (%lld ms)", (long long)after);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the new hubbub stops cleanly");
    fg_stop(ig);
    h_db_drop(&db);
    return tap_done();
}
