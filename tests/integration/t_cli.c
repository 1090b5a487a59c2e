/*
 * t_cli.c - the administrative commands: settings checked with clear
 * messages, tenants and apps added, secrets read from the environment or
 * standard input and stored only sealed, never printed or logged.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/integration/harness.h"

#define SECRET "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define TOKEN "verify-me-please-42"

int main(void)
{
    struct h_db db;
    h_db_create(&db, "cli");
    char *out = NULL;

    const char *check[] = {"config", "check", NULL};
    const char *bad_limit[] = {"HUBBUB_BODY_LIMIT=lots", NULL};
    tap_is_int(h_run(&db, check, bad_limit, NULL, &out), 1, "config check fails on a bad value");
    tap_contains(out, "HUBBUB_BODY_LIMIT: expected a size", "and names the setting and the form");
    free(out);
    const char *pw_url[] = {"DATABASE_URL=postgresql://app:hunter2@db.invalid/x", NULL};
    tap_is_int(h_run(&db, check, pw_url, NULL, &out), 0, "config check passes on good settings");
    tap_contains(out, "HUBBUB_LISTEN", "and prints every setting");
    tap_ok(strstr(out, "hunter2") == NULL, "without the database password");
    tap_ok(strstr(out, h_master_key()) == NULL, "or the master key");
    free(out);
    const char *nokey[] = {"HUBBUB_MASTER_KEY=", NULL};
    const char *serve[] = {"serve", NULL};
    tap_is_int(h_run(&db, serve, nokey, NULL, &out), 1, "serve refuses to start without a master key");
    tap_contains(out, "no master key", "and says so");
    free(out);
    const char *shortkey[] = {"HUBBUB_MASTER_KEY=abcd", NULL};
    tap_is_int(h_run(&db, serve, shortkey, NULL, &out), 1, "serve refuses a malformed master key");
    tap_contains(out, "64 hex characters", "and says what a key looks like");
    free(out);

    const char *migrate[] = {"migrate", NULL};
    tap_is_int(h_run(&db, migrate, NULL, NULL, NULL), 0, "migrate succeeds");
    const char *tadd[] = {"tenant", "add", "acme", NULL};
    tap_is_int(h_run(&db, tadd, NULL, NULL, &out), 0, "tenant add succeeds");
    tap_contains(out, "tenant acme added", "and reports it");
    free(out);
    tap_is_int(h_run(&db, tadd, NULL, NULL, &out), 1, "adding the same tenant again fails");
    tap_contains(out, "already exists", "with a clear message");
    free(out);
    const char *tadd_if[] = {"tenant", "add", "acme", "--if-missing", NULL};
    tap_is_int(h_run(&db, tadd_if, NULL, NULL, NULL), 0, "--if-missing makes it idempotent");
    const char *tbad[] = {"tenant", "add", "no spaces please", NULL};
    tap_is_int(h_run(&db, tbad, NULL, NULL, &out), 1, "a tenant name with spaces is refused");
    tap_contains(out, "letters, digits", "with the rule");
    free(out);

    /* The secret comes from standard input, never from the command line. */
    const char *aadd[] = {"app", "add", "--tenant", "acme", "--app-id", "7770001",
                          "--verify-token", TOKEN, NULL};
    tap_is_int(h_run(&db, aadd, NULL, SECRET "\n", &out), 0, "app add reads the secret from stdin");
    tap_contains(out, "/webhooks/7770001", "and prints the callback path");
    tap_ok(strstr(out, SECRET) == NULL, "without printing the secret");
    tap_contains(out, "...e1f0", "but with a hint to tell secrets apart");
    free(out);
    tap_is_int(h_run(&db, aadd, NULL, SECRET "\n", &out), 1, "the same app id twice fails");
    tap_contains(out, "already exists", "with a clear message");
    free(out);
    const char *aadd2[] = {"app", "add", "--tenant", "acme", "--app-id", "7770002",
                           "--verify-token", TOKEN, NULL};
    tap_is_int(h_run(&db, aadd2, NULL, "", &out), 1, "app add without a secret fails");
    tap_contains(out, "HUBBUB_APP_SECRET", "and says where the secret comes from");
    free(out);
    const char *envsecret[] = {"HUBBUB_APP_SECRET=second-secret-abcdef-1234", NULL};
    tap_is_int(h_run(&db, aadd2, envsecret, NULL, NULL), 0, "app add reads HUBBUB_APP_SECRET");
    const char *anobody[] = {"app", "add", "--tenant", "nobody", "--app-id", "7770003",
                             "--verify-token", TOKEN, NULL};
    tap_is_int(h_run(&db, anobody, envsecret, NULL, &out), 1, "app add for an unknown tenant fails");
    tap_contains(out, "no tenant named nobody", "and names the tenant");
    free(out);
    const char *abadid[] = {"app", "add", "--tenant", "acme", "--app-id", "12ab",
                            "--verify-token", TOKEN, NULL};
    tap_is_int(h_run(&db, abadid, envsecret, NULL, &out), 2, "a non-numeric app id is a usage error");
    free(out);
    const char *asecret[] = {"app", "add-secret", "--app-id", "7770001", NULL};
    const char *third[] = {"HUBBUB_APP_SECRET=rotated-secret-9876543210", NULL};
    tap_is_int(h_run(&db, asecret, third, NULL, NULL), 0, "app add-secret adds a live secret");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets s JOIN apps a ON a.id = s.app_id"
                             " WHERE a.meta_app_id = '7770001'"),
               2, "the app now has two secrets");

    /* Nothing in the database holds a secret or the verify token in clear. */
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM (SELECT row_to_json(a)::text t FROM apps a"
                             " UNION ALL SELECT row_to_json(s)::text FROM app_secrets s) x"
                             " WHERE t LIKE '%%" SECRET "%%' OR t LIKE '%%" TOKEN "%%'"
                             " OR t LIKE '%%second-secret%%' OR t LIKE '%%rotated-secret%%'"),
               0, "no row holds a secret or verify token in clear");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM app_secrets WHERE secret_sealed LIKE 'hb1:%%'"),
               3, "every secret is sealed");

    /* The wrong master key cannot open them: the app is not served, and the
     * log says why without leaking anything. */
    struct h_server s;
    const char *other_key[] = {"HUBBUB_MASTER_KEY="
                               "1111111111111111111111111111111111111111111111111111111111111111",
                               NULL};
    h_server_start(&s, &db, other_key);
    char url[256];
    snprintf(url, sizeof(url), "%s/webhooks/7770001?hub.mode=subscribe&hub.challenge=1"
             "&hub.verify_token=" TOKEN, s.base);
    struct h_resp r;
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 500, "with the wrong master key the app cannot be served");
    h_resp_free(&r);
    h_server_stop(&s, SIGTERM);
    char *log = h_server_log(&s);
    tap_contains(log, "cannot decrypt", "the log says the key is wrong");
    tap_ok(strstr(log, SECRET) == NULL && strstr(log, TOKEN) == NULL,
           "and holds no secret or token");
    free(log);

    h_server_start(&s, &db, NULL);
    snprintf(url, sizeof(url), "%s/webhooks/7770001?hub.mode=subscribe&hub.challenge=31337"
             "&hub.verify_token=" TOKEN, s.base);
    h_http(&r, "GET", url, NULL, NULL, 0);
    tap_is_int(r.status, 200, "with the right key the handshake succeeds");
    tap_is_str(r.body, "31337", "and echoes the challenge");
    h_resp_free(&r);
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "the server stops cleanly");
    log = h_server_log(&s);
    tap_ok(strstr(log, SECRET) == NULL && strstr(log, TOKEN) == NULL, "its log holds no secret");
    free(log);

    const char *usage[] = {"frobnicate", NULL};
    tap_is_int(h_run(&db, usage, NULL, NULL, &out), 2, "an unknown command is a usage error");
    tap_contains(out, "usage: hubbub", "and prints the usage");
    free(out);

    h_db_drop(&db);
    return tap_done();
}
