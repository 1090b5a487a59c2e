/*
 * t_migrate.c - forward-only migrations: serve refuses a database that is
 * behind, two processes migrating at once are safe, and an applied
 * migration whose text changed stops start-up with a clear error.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/harness.h"

int main(void)
{
    struct h_db db;
    h_db_create(&db, "migrate");
    char *out = NULL;
    const char *serve[] = {"serve", NULL};
    const char *migrate[] = {"migrate", NULL};
    const char *status[] = {"migrate", "status", NULL};
    const char *listen[] = {"HUBBUB_LISTEN=127.0.0.1:1", NULL};

    tap_is_int(h_run(&db, serve, listen, NULL, &out), 1, "serve refuses an unmigrated database");
    tap_contains(out, "run `hubbub migrate`", "and says what to do");
    free(out);
    tap_is_int(h_run(&db, status, NULL, NULL, &out), 1, "migrate status fails while behind");
    tap_contains(out, "pending  0001_init.sql", "and lists the pending migration");
    free(out);

    /* Two processes at once: the advisory lock makes them take turns. */
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        fflush(stdout);
        kids[i] = fork();
        if (kids[i] == 0)
            _exit(h_run(&db, migrate, NULL, NULL, NULL));
    }
    int ok = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    tap_is_int(ok, 2, "two concurrent migrate runs both succeed");
    long long applied = h_db_int(&db, "SELECT count(*) FROM schema_migrations");
    tap_is_int(h_db_int(&db, "SELECT count(DISTINCT version) FROM schema_migrations"), applied,
               "each migration is recorded once");
    tap_ok(applied >= 1, "migrations are recorded (%lld)", applied);
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM schema_migrations WHERE checksum ~ '^[0-9a-f]{64}$'"),
               applied, "each with a SHA-256 checksum");
    tap_is_int(h_db_int(&db, "SELECT count(*) FROM pg_tables WHERE tablename IN"
                             " ('tenants','apps','app_secrets','deliveries','events')"),
               5, "the first schema's tables exist");

    tap_is_int(h_run(&db, migrate, NULL, NULL, &out), 0, "migrating again is a no-op");
    tap_ok(strstr(out, "applied 0001") == NULL, "and applies nothing");
    free(out);
    tap_is_int(h_run(&db, status, NULL, NULL, &out), 0, "migrate status succeeds when current");
    tap_contains(out, "applied  0001_init.sql", "and shows the applied migration");
    free(out);

    struct h_server s;
    h_server_start(&s, &db, NULL);
    tap_ok(s.pid > 0, "serve starts on a current schema");
    tap_is_int(h_server_stop(&s, SIGTERM), 0, "and stops cleanly");

    /* An applied migration edited afterwards. */
    h_db_exec(&db, "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1");
    tap_is_int(h_run(&db, serve, listen, NULL, &out), 1, "serve refuses an edited migration");
    tap_contains(out, "0001_init.sql changed after it was applied",
                 "and names the migration that changed");
    free(out);
    tap_is_int(h_run(&db, migrate, NULL, NULL, &out), 1, "migrate refuses it too");
    tap_contains(out, "must never be edited", "and explains why");
    free(out);
    tap_is_int(h_run(&db, status, NULL, NULL, &out), 1, "status fails on an edited migration");
    tap_contains(out, "CHANGED  0001_init.sql", "and marks it CHANGED");
    free(out);

    h_db_exec(&db, "INSERT INTO schema_migrations (version, name, checksum)"
                   " VALUES (9999, '9999_future.sql', repeat('a', 64))");
    h_run(&db, status, NULL, NULL, &out);
    tap_contains(out, "unknown  version 9999", "status reports migrations from a newer hubbub");
    free(out);

    h_db_drop(&db);
    return tap_done();
}
