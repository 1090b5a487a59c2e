/*
 * t_dedup.c - a retried or re-batched item is stored once: sent again, sent
 * concurrently, re-spaced, re-batched with other items, after a restart, and
 * through two hubbub processes on one database. Distinct events that share a
 * mid (react, unreact, react) stay distinct.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define APP "5550001"
#define SECRET "dedup-secret-0123456789"

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POSTs each body signed, all at once over separate connections; fills
 * statuses. urls[i] says which server gets body i. */
static void post_concurrently(const char *const *urls, const char *const *bodies, int n,
                              long *statuses)
{
    CURLM *m = curl_multi_init();
    CURL **easy = calloc((size_t)n, sizeof(*easy));
    struct curl_slist **lists = calloc((size_t)n, sizeof(*lists));
    for (int i = 0; i < n; i++) {
        char sig[72], header[100];
        h_sign(SECRET, bodies[i], strlen(bodies[i]), sig);
        snprintf(header, sizeof(header), "X-Hub-Signature-256: %s", sig);
        lists[i] = curl_slist_append(NULL, header);
        lists[i] = curl_slist_append(lists[i], "Content-Type: application/json");
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, urls[i]);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, lists[i]);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_wait(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < n; i++) {
        statuses[i] = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &statuses[i]);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        curl_slist_free_all(lists[i]);
    }
    curl_multi_cleanup(m);
    free(easy);
    free(lists);
}

static long post(const struct h_server *s, const char *body, char **resp_body)
{
    struct h_resp r;
    h_post_signed(&r, s, APP, SECRET, body, strlen(body));
    long st = r.status;
    if (resp_body != NULL)
        *resp_body = strdup(r.body);
    h_resp_free(&r);
    return st;
}

static long long events_with(struct h_db *db, const char *marker)
{
    return h_db_int(db, "SELECT count(*) FROM events WHERE payload::text LIKE '%%%s%%'", marker);
}

int main(void)
{
    struct h_db db;
    struct h_server s, s2;
    h_db_create(&db, "dedup");
    h_setup_app(&db, "acme", APP, "token", SECRET);
    h_server_start(&s, &db, NULL);

    /* 1. The same delivery five times in a row. */
    const char *one = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\","
                      "\"time\":1700000001,\"changes\":[{\"field\":\"comments\",\"value\":"
                      "{\"id\":\"seq-1\",\"text\":\"first \\ud83d\\udc51\"}}]}]}";
    int ok = 0;
    char *resp = NULL;
    for (int i = 0; i < 5; i++) {
        free(resp);
        ok += post(&s, one, &resp) == 200;
    }
    tap_is_int(ok, 5, "a delivery sent five times is answered 200 each time");
    tap_contains(resp, "\"duplicates\":1", "a retry is reported as a duplicate");
    free(resp);
    tap_is_int(events_with(&db, "seq-1"), 1, "and stored as one event");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM deliveries WHERE status = 'accepted'"), 5,
               "each POST is kept as a delivery of its own");

    /* 2. Five copies at the same moment. */
    const char *conc = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\","
                       "\"time\":1700000002,\"changes\":[{\"field\":\"comments\",\"value\":"
                       "{\"id\":\"conc-1\",\"text\":\"concurrent\"}}]}]}";
    char url[128];
    snprintf(url, sizeof(url), "%s/webhooks/" APP, s.base);
    const char *urls[16], *bodies[16];
    long statuses[16];
    for (int i = 0; i < 16; i++) {
        urls[i] = url;
        bodies[i] = conc;
    }
    post_concurrently(urls, bodies, 16, statuses);
    ok = 0;
    for (int i = 0; i < 16; i++)
        ok += statuses[i] == 200;
    tap_is_int(ok, 16, "sixteen concurrent copies are all answered 200");
    tap_is_int(events_with(&db, "conc-1"), 1, "and stored as one event");

    /* 3. A retry re-spaced and with its keys in another order. */
    const char *respaced = "{ \"entry\": [ { \"changes\": [ { \"value\": { \"text\": \"first "
                           "\\ud83d\\udc51\", \"id\": \"seq-1\" }, \"field\": \"comments\" } ],\n"
                           "  \"time\": 1700000001, \"id\": \"17841400000000001\" } ],\n"
                           "  \"object\": \"instagram\" }";
    tap_is_int(post(&s, respaced, NULL), 200, "a re-spaced, re-ordered retry gets 200");
    tap_is_int(events_with(&db, "seq-1"), 1, "and adds no event");

    /* 4. Re-batching: items X, Y in one delivery, then Y, Z in another. */
    const char *xy = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":"
                     "1700000003,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"rb-X\"}},"
                     "{\"field\":\"comments\",\"value\":{\"id\":\"rb-Y\"}}]}]}";
    const char *yz = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":"
                     "1700000099,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"rb-Y\"}},"
                     "{\"field\":\"comments\",\"value\":{\"id\":\"rb-Z\"}}]}]}";
    tap_is_int(post(&s, xy, NULL), 200, "a batch of X and Y gets 200");
    tap_is_int(post(&s, yz, &resp), 200, "a re-batch of Y and Z gets 200");
    tap_contains(resp, "\"events\":2,\"duplicates\":1", "the re-batch reports Y as a duplicate");
    free(resp);
    tap_is_int(events_with(&db, "rb-"), 3, "X, Y and Z are stored once each");

    /* 5. React, unreact, react: one mid, three events. */
    const char *reactions[] = {
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":1700000004000,"
        "\"messaging\":[{\"sender\":{\"id\":\"IGSID1\"},\"recipient\":{\"id\":\"17841400000000001\"},"
        "\"timestamp\":1700000004000,\"reaction\":{\"mid\":\"aWdfZAG1faXRlbTpre-mid-1\","
        "\"action\":\"react\",\"reaction\":\"love\",\"emoji\":\"\\u2764\"}}]}]}",
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":1700000005000,"
        "\"messaging\":[{\"sender\":{\"id\":\"IGSID1\"},\"recipient\":{\"id\":\"17841400000000001\"},"
        "\"timestamp\":1700000005000,\"reaction\":{\"mid\":\"aWdfZAG1faXRlbTpre-mid-1\","
        "\"action\":\"unreact\"}}]}]}",
        "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":1700000006000,"
        "\"messaging\":[{\"sender\":{\"id\":\"IGSID1\"},\"recipient\":{\"id\":\"17841400000000001\"},"
        "\"timestamp\":1700000006000,\"reaction\":{\"mid\":\"aWdfZAG1faXRlbTpre-mid-1\","
        "\"action\":\"react\",\"reaction\":\"love\",\"emoji\":\"\\u2764\"}}]}]}",
    };
    ok = 0;
    for (int i = 0; i < 3; i++)
        ok += post(&s, reactions[i], NULL) == 200;
    tap_is_int(ok, 3, "react, unreact and react again get 200");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM events WHERE field = 'message_reactions'"
                             " AND payload->'reaction'->>'mid' = 'aWdfZAG1faXRlbTpre-mid-1'"),
               3, "and are three events although they share a mid");

    /* 6. The same item under another account is another event. */
    const char *other = "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000002\","
                        "\"time\":1700000001,\"changes\":[{\"field\":\"comments\",\"value\":"
                        "{\"id\":\"seq-1\",\"text\":\"first \\ud83d\\udc51\"}}]}]}";
    tap_is_int(post(&s, other, NULL), 200, "the same item for another entry id gets 200");
    tap_is_int(events_with(&db, "seq-1"), 2, "and is stored as an event of its own");

    /* 7. After a restart, and through two processes on one database. */
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the first server stops cleanly");
    h_server_start(&s, &db, NULL);
    tap_is_int(post(&s, one, NULL), 200, "a retry after a restart gets 200");
    tap_is_int(events_with(&db, "seq-1"), 2, "and adds no event");

    h_server_start(&s2, &db, NULL);
    snprintf(url, sizeof(url), "%s/webhooks/" APP, s.base); /* the restart moved it */
    char url2[128];
    snprintf(url2, sizeof(url2), "%s/webhooks/" APP, s2.base);
    char *many[16];
    for (int i = 0; i < 16; i++) {
        many[i] = malloc(512);
        /* Eight distinct items, each sent once to each process. */
        snprintf(many[i], 512,
                 "{\"object\":\"instagram\",\"entry\":[{\"id\":\"17841400000000001\",\"time\":"
                 "1700000010,\"changes\":[{\"field\":\"comments\",\"value\":{\"id\":\"two-%d\"}}]}]}",
                 i % 8);
        urls[i] = i < 8 ? url : url2;
        bodies[i] = many[i];
    }
    post_concurrently(urls, bodies, 16, statuses);
    ok = 0;
    for (int i = 0; i < 16; i++)
        ok += statuses[i] == 200;
    tap_is_int(ok, 16, "two processes answer all sixteen deliveries with 200");
    tap_is_int(events_with(&db, "two-"), 8, "and store each of the eight items once");
    for (int i = 0; i < 16; i++)
        free(many[i]);

    tap_is_int(h_server_stop(&s2, SIGTERM), 0, "the second server stops cleanly");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the first server stops cleanly again");
    h_db_drop(&db);
    return tap_done();
}
