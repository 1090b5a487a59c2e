/*
 * t_crash.c - SIGKILL under load loses nothing that was acknowledged.
 *
 * 16 keep-alive clients (libcurl multi) send 2 000 distinct signed
 * deliveries (64 and 20 000 under make test-reliability); hubbub is killed
 * with SIGKILL once 30 % of the answers have arrived. After a restart on the same database, every
 * delivery that got 200 must be in events. Then all 2 000 are sent again, as Meta retries whatever
 * failed: every one gets 200, the table holds exactly 2 000 events, and the
 * answers report as duplicates exactly the deliveries that were already
 * stored.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

#define APP_ID "17841400000000123"
#define SECRET "crash-secret-0123456789abcdef"
/* Bounds: HUBBUB_REL_CRASH_DELIVERIES, HUBBUB_REL_CRASH_CLIENTS (make
 * test-reliability sets HUBBUB_REL_FULL=1 for the larger ones). The kill
 * comes after 30 % of the answers. */
static int n_deliveries = 2000, n_parallel = 16, kill_after = 600;

static int bound(const char *name, int def, int full)
{
    const char *v = getenv(name), *f = getenv("HUBBUB_REL_FULL");
    if (v != NULL && v[0] != '\0')
        return atoi(v);
    return f != NULL && strcmp(f, "1") == 0 ? full : def;
}

/* One delivery and what became of its last attempt. */
struct post {
    int n;
    char *body;
    size_t len;
    char sig_header[100];
    long status; /* -1 not sent; 0 failed at the transport level; else the HTTP status */
    char error[CURL_ERROR_SIZE];
    char resp[512];
    size_t resp_len;
};

struct slot {
    CURL *easy;
    struct curl_slist *headers;
    struct post *post;
    char errbuf[CURL_ERROR_SIZE];
};

typedef bool (*post_done_fn)(void *arg, struct post *p);

static size_t on_resp(char *p, size_t size, size_t n, void *arg)
{
    struct post *post = arg;
    size_t add = size * n;
    size_t room = sizeof(post->resp) - 1 - post->resp_len;
    size_t take = add < room ? add : room;
    memcpy(post->resp + post->resp_len, p, take);
    post->resp_len += take;
    post->resp[post->resp_len] = '\0';
    return add;
}

static void slot_start(CURLM *m, struct slot *s, const char *url, struct post *p)
{
    s->post = p;
    p->status = 0;
    p->error[0] = '\0';
    p->resp_len = 0;
    p->resp[0] = '\0';
    s->errbuf[0] = '\0';
    s->headers = curl_slist_append(NULL, "Expect:");
    s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, p->sig_header);
    curl_easy_setopt(s->easy, CURLOPT_URL, url);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->len);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, p);
    curl_multi_add_handle(m, s->easy);
}

/* Sends posts[0..n) with `parallel` transfers in flight on keep-alive
 * connections. After each finished transfer, on_done (may be NULL) is called;
 * when it returns false no new transfer starts, and those never started keep
 * status -1. */
static void send_posts(const char *url, struct post *posts, int n, int parallel,
                       post_done_fn on_done, void *arg)
{
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)parallel + 4);
    struct slot *slots = calloc((size_t)parallel, sizeof(*slots));
    for (int i = 0; i < parallel; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_resp);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, slots[i].errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
        slots[i].easy = e;
    }
    for (int i = 0; i < n; i++)
        posts[i].status = -1;
    int next = 0, active = 0;
    bool go = true;
    while (active > 0 || (go && next < n)) {
        for (int i = 0; i < parallel && go && next < n; i++) {
            if (slots[i].post == NULL) {
                slot_start(m, &slots[i], url, &posts[next++]);
                active++;
            }
        }
        int still;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            struct post *p = s->post;
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &p->status);
            } else {
                p->status = 0;
                snprintf(p->error, sizeof(p->error), "%s",
                         s->errbuf[0] ? s->errbuf : curl_easy_strerror(msg->data.result));
            }
            curl_multi_remove_handle(m, s->easy);
            curl_slist_free_all(s->headers);
            s->headers = NULL;
            s->post = NULL;
            active--;
            if (on_done != NULL && !on_done(arg, p))
                go = false;
        }
        if (active > 0)
            curl_multi_poll(m, NULL, 0, 50, NULL);
    }
    for (int i = 0; i < parallel; i++)
        curl_easy_cleanup(slots[i].easy);
    free(slots);
    curl_multi_cleanup(m);
}

/* Marks seen[n] for every event "C<n>" in the table; returns the number of
 * events, and *dups the number of ids present more than once, *alien the
 * number of ids that are no delivery of ours. */
static int stored_ids(struct h_db *db, bool *seen, int max, int *dups, int *alien)
{
    memset(seen, 0, (size_t)max * sizeof(*seen));
    *dups = *alien = 0;
    PGresult *r = PQexec(db->conn, "SELECT payload->'value'->>'id' FROM events");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        tap_bail("cannot read events: %s", PQresultErrorMessage(r));
    int rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        const char *id = PQgetvalue(r, i, 0);
        char *end;
        long n = id[0] == 'C' ? strtol(id + 1, &end, 10) : -1;
        if (n < 0 || n >= max || *end != '\0') {
            (*alien)++;
            continue;
        }
        if (seen[n])
            (*dups)++;
        seen[n] = true;
    }
    PQclear(r);
    return rows;
}

struct killer {
    struct h_server *s;
    int answered;
    bool killed;
};

static bool kill_partway(void *arg, struct post *p)
{
    struct killer *k = arg;
    if (p->status != 0)
        k->answered++;
    if (!k->killed && k->answered >= kill_after) {
        kill(k->s->pid, SIGKILL);
        k->killed = true;
    }
    return !k->killed;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    tap_plan(13);
    n_deliveries = bound("HUBBUB_REL_CRASH_DELIVERIES", 2000, 20000);
    n_parallel = bound("HUBBUB_REL_CRASH_CLIENTS", 16, 64);
    kill_after = n_deliveries * 3 / 10;

    struct h_db db;
    struct h_server s;
    h_db_create(&db, "crash");
    h_setup_app(&db, "crashco", APP_ID, "crash-verify-token", SECRET);
    const char *env[] = {"HUBBUB_LOG_LEVEL=info", "HUBBUB_INGEST_WRITERS=2", NULL};
    h_server_start(&s, &db, env);

    struct post *posts = calloc((size_t)n_deliveries, sizeof(*posts));
    for (int i = 0; i < n_deliveries; i++) {
        char sig[72];
        posts[i].n = i;
        posts[i].body = h_comment_delivery(i, &posts[i].len);
        h_sign(SECRET, posts[i].body, posts[i].len, sig);
        snprintf(posts[i].sig_header, sizeof(posts[i].sig_header), "X-Hub-Signature-256: %s", sig);
    }

    /* ---- round 1: SIGKILL partway ---- */
    char url[128];
    snprintf(url, sizeof(url), "%s/webhooks/%s", s.base, APP_ID);
    struct killer k = {&s, 0, false};
    int64_t t0 = h_now_ms();
    send_posts(url, posts, n_deliveries, n_parallel, kill_partway, &k);
    int64_t t_round1 = h_now_ms() - t0;
    int status = h_server_stop(&s, SIGKILL);
    tap_diag("round 1: %d deliveries from %d clients, SIGKILL after %d answers, %lld ms in all",
             n_deliveries, n_parallel, k.answered, (long long)t_round1);

    int n200 = 0, ntransport = 0, nother = 0, nunsent = 0;
    bool *acked = calloc((size_t)n_deliveries, sizeof(*acked));
    for (int i = 0; i < n_deliveries; i++) {
        if (posts[i].status == 200) {
            n200++;
            acked[i] = true;
        } else if (posts[i].status == 0) {
            ntransport++;
        } else if (posts[i].status < 0) {
            nunsent++;
        } else {
            if (nother++ < 5)
                tap_diag("delivery %d got %ld: %.200s", i, posts[i].status, posts[i].resp);
        }
    }
    tap_diag("round 1 (%lld ms): %d got 200, %d failed at the transport level, %d other "
             "statuses, %d never sent",
             (long long)t_round1, n200, ntransport, nother, nunsent);
    for (int i = 0, shown = 0; i < n_deliveries && shown < 3; i++) {
        if (posts[i].status == 0) {
            tap_diag("transport error example: delivery %d: %s", i, posts[i].error);
            shown++;
        }
    }
    tap_ok(k.killed && n200 >= kill_after, "about %d deliveries were acknowledged before the kill",
           kill_after);
    tap_is_int(nother, 0, "before the kill, every answer was 200");
    tap_is_int(status, 128 + SIGKILL, "hubbub died of the SIGKILL (it had not exited before)");

    /* ---- restart on the same database ---- */
    h_server_start(&s, &db, env);
    bool *seen = calloc((size_t)n_deliveries, sizeof(*seen));
    int dups, alien;
    int rows = stored_ids(&db, seen, n_deliveries, &dups, &alien);
    int lost = 0, unacked_stored = 0, stored_unsent = 0;
    for (int i = 0; i < n_deliveries; i++) {
        if (acked[i] && !seen[i]) {
            if (lost++ < 10)
                tap_diag("acknowledged but not stored: delivery %d (C%d), answer %.200s", i, i,
                         posts[i].resp);
        }
        if (!acked[i] && seen[i])
            unacked_stored++;
        if (seen[i] && posts[i].status < 0)
            stored_unsent++;
    }
    tap_diag("after the restart: %d events stored; %d of them were never acknowledged (committed, "
             "answer lost in the kill)",
             rows, unacked_stored);
    /* A failure here is a durability bug: 200 for a delivery that never committed. */
    tap_is_int(lost, 0, "every delivery that got 200 is in the database after the crash");
    tap_is_int(dups, 0, "no delivery is stored twice");
    tap_is_int(alien + stored_unsent, 0, "only deliveries that were sent are stored");
    int stored_before_resend = rows;

    /* ---- round 2: Meta retries everything ---- */
    bool *stored_before = seen;
    snprintf(url, sizeof(url), "%s/webhooks/%s", s.base, APP_ID);
    t0 = h_now_ms();
    send_posts(url, posts, n_deliveries, n_parallel, NULL, NULL);
    int64_t t_round2 = h_now_ms() - t0;
    int ok200 = 0, failed = 0, wrong_dup = 0;
    for (int i = 0; i < n_deliveries; i++) {
        if (posts[i].status == 200)
            ok200++;
        else if (failed++ < 5)
            tap_diag("resend of delivery %d got %ld %s %.200s", i, posts[i].status, posts[i].error,
                     posts[i].resp);
        const char *want = stored_before[i] ? "\"duplicates\":1" : "\"duplicates\":0";
        if (posts[i].status == 200 && strstr(posts[i].resp, want) == NULL) {
            if (wrong_dup++ < 5)
                tap_diag("delivery %d (stored before: %s) answered %.200s", i,
                         stored_before[i] ? "yes" : "no", posts[i].resp);
        }
    }
    tap_diag("round 2: %d deliveries resent in %lld ms", n_deliveries, (long long)t_round2);
    tap_is_int(ok200, n_deliveries, "after the restart, all %d resent deliveries get 200",
               n_deliveries);
    tap_is_int(wrong_dup, 0,
               "a resent delivery is reported as a duplicate exactly when it was already stored");

    bool *seen2 = calloc((size_t)n_deliveries, sizeof(*seen2));
    rows = stored_ids(&db, seen2, n_deliveries, &dups, &alien);
    int missing = 0;
    for (int i = 0; i < n_deliveries; i++)
        if (!seen2[i])
            missing++;
    tap_is_int(rows, n_deliveries, "there are exactly %d events", n_deliveries);
    tap_is_int(missing, 0, "every delivery has its event");
    tap_is_int(dups, 0, "dedup: the events stored before the resend were not duplicated");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries WHERE status <> 'accepted'"), 0,
               "no delivery was stored as rejected");
    tap_diag("deliveries rows: %lld (%d from the first round, %d from the resend)",
             h_db_int(&db, "SELECT count(*) FROM deliveries"), stored_before_resend, n_deliveries);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the restarted hubbub stops cleanly on SIGTERM");

    for (int i = 0; i < n_deliveries; i++)
        free(posts[i].body);
    free(posts);
    free(acked);
    free(seen);
    free(seen2);
    h_db_drop(&db);
    curl_global_cleanup();
    return tap_done();
}
