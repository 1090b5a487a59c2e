/*
 * t_handshake.c - Meta's GET verification on /webhooks/{app-id}, and the
 * routing around it: unknown apps, odd paths, wrong methods, huge queries.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

static long get(const struct h_server *s, const char *path_and_query, char **body)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", s->base, path_and_query);
    struct h_resp r;
    h_http(&r, "GET", url, NULL, NULL, 0);
    if (body != NULL)
        *body = strdup(r.body);
    long st = r.status;
    h_resp_free(&r);
    return st;
}

int main(void)
{
    struct h_db db;
    struct h_server s;
    h_db_create(&db, "handshake");
    h_setup_app(&db, "acme", "1234567890", "meaty hamhock/&=", "secret-one-1234567890");
    h_server_start(&s, &db, NULL);

    char *body = NULL;
    struct h_resp r;
    char url[512];

    /* The token is percent-encoded the way Meta sends it. */
    snprintf(url, sizeof(url), "%s/webhooks/1234567890?hub.mode=subscribe&hub.challenge=1158201444"
             "&hub.verify_token=meaty+hamhock%%2F%%26%%3D", s.base);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 200, "the right verify token gets 200");
    tap_is_str(r.body, "1158201444", "the body is exactly the challenge");
    tap_contains(r.headers, "content-type: text/plain", "the challenge is sent as text/plain");
    h_resp_free(&r);

    tap_is_int(get(&s, "/webhooks/1234567890?hub.mode=subscribe&hub.challenge=5"
                       "&hub.verify_token=wrong", &body), 403, "a wrong verify token gets 403");
    tap_ok(strstr(body, "5") == NULL || strstr(body, "\"error\"") != NULL,
           "a refused handshake does not echo the challenge");
    tap_contains(body, "\"error\"", "the refusal is a JSON error");
    free(body);
    tap_is_int(get(&s, "/webhooks/1234567890?hub.mode=unsubscribe&hub.challenge=5"
                       "&hub.verify_token=meaty+hamhock%2F%26%3D", NULL), 403,
               "a mode other than subscribe gets 403");
    tap_is_int(get(&s, "/webhooks/1234567890?hub.challenge=5&hub.verify_token=meaty+hamhock%2F%26%3D",
                   NULL), 403, "a missing mode gets 403");
    tap_is_int(get(&s, "/webhooks/1234567890?hub.mode=subscribe"
                       "&hub.verify_token=meaty+hamhock%2F%26%3D", NULL), 400,
               "a missing challenge gets 400");
    tap_is_int(get(&s, "/webhooks/1234567890?hub.mode=subscribe&hub.challenge=5&hub.verify_token=%zz",
                   NULL), 400, "malformed percent-encoding gets 400");
    tap_is_int(get(&s, "/webhooks/999?hub.mode=subscribe&hub.challenge=5&hub.verify_token=x", &body),
               404, "an unknown app gets 404");
    tap_contains(body, "\"not_found\"", "the 404 is a JSON error");
    free(body);
    tap_is_int(get(&s, "/webhooks/12ab", NULL), 404, "a non-numeric app id gets 404");
    tap_is_int(get(&s, "/webhooks/", NULL), 404, "an empty app id gets 404");
    tap_is_int(get(&s, "/webhooks/1234567890/", NULL), 404, "a trailing segment gets 404");
    tap_is_int(get(&s, "/webhooks/..%2f..%2fetc%2fpasswd", NULL), 404,
               "path traversal in the app id gets 404");
    tap_is_int(get(&s, "/webhooks/../webhooks/1234567890?hub.mode=subscribe&hub.challenge=7"
                       "&hub.verify_token=meaty+hamhock%2F%26%3D", NULL), 200,
               "dot segments are normalised before routing");
    tap_is_int(get(&s, "/webhooks/123456789012345678901234567890123", NULL), 404,
               "an app id longer than 32 digits gets 404");
    tap_is_int(get(&s, "/nothing-here", &body), 404, "an unknown path gets 404");
    tap_contains(body, "\"error\"", "unknown paths get JSON errors too");
    free(body);
    tap_is_int(get(&s, "/healthz", &body), 200, "/healthz answers 200");
    tap_contains(body, "ok", "/healthz says ok");
    free(body);

    const char *methods[] = {"PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        snprintf(url, sizeof(url), "%s/webhooks/1234567890", s.base);
        h_http(&r, methods[i], url, NULL, NULL, 0);
        tap_is_int(r.status, 405, "%s gets 405", methods[i]);
        tap_contains(r.headers, "allow: GET, POST", "%s's 405 names the allowed methods",
                     methods[i]);
        h_resp_free(&r);
    }

    /* A 100 KB query string: refused with a clear status, and the server lives on. */
    size_t big = 100 * 1024;
    char *long_url = malloc(big + 256);
    int n = snprintf(long_url, big + 256, "%s/webhooks/1234567890?hub.mode=subscribe&x=", s.base);
    memset(long_url + n, 'a', big);
    long_url[n + big] = '\0';
    h_http(&r, "GET", long_url, NULL, NULL, 0);
    tap_is_int(r.status, 414, "a 100 KB query string gets 414");
    tap_contains(r.body, "uri_too_long", "the 414 is a JSON error");
    h_resp_free(&r);
    free(long_url);
    tap_is_int(get(&s, "/healthz", NULL), 200, "the server still answers after the huge query");

    /* A flood of refused handshakes is logged at most once a second. */
    for (int i = 0; i < 50; i++)
        get(&s, "/webhooks/1234567890?hub.mode=subscribe&hub.challenge=5&hub.verify_token=forged",
            NULL);
    char *log = h_server_log(&s);
    tap_ok(strstr(log, "meaty") == NULL, "the verify token never appears in the log");
    int lines = 0;
    for (const char *p = log; (p = strstr(p, "wrong verify token")) != NULL; p++)
        lines++;
    tap_ok(lines >= 1 && lines <= 3, "51 refused handshakes make 1-3 log lines, not 51 (%d)", lines);
    tap_ok(strstr(log, "not loaded") == NULL, "with the right master key, no key is missing");
    free(log);

    tap_is_int(h_server_stop(&s, SIGTERM), 0, "SIGTERM stops the server with status 0");

    /* A master key that opens none of the stored secrets is said at start,
     * by key id, not only as 500s. */
    const char *wrong_key[] = {
        "HUBBUB_MASTER_KEY=0000000000000000000000000000000000000000000000000000000000000001", NULL};
    h_server_start(&s, &db, wrong_key);
    tap_is_int(get(&s, "/webhooks/1234567890?hub.mode=subscribe&hub.challenge=5"
                       "&hub.verify_token=meaty+hamhock%2F%26%3D", NULL), 500,
               "with another master key the handshake cannot be answered");
    log = h_server_log(&s);
    tap_contains(log, "sealed by a master key that is not loaded",
                 "and the start said that stored secrets need a key it does not have");
    tap_contains(log, "column=apps.verify_token_sealed", "naming the column");
    tap_contains(log, "column=app_secrets.secret_sealed", "for each column");
    free(log);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "that server stops with status 0 too");
    h_db_drop(&db);
    return tap_done();
}
