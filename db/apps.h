/*
 * apps.h - Meta apps and their secrets. Secrets and verify tokens arrive and
 * leave sealed (lib/secretbox.h): this module never sees them in clear.
 * Synchronous libpq: for the command line and worker threads.
 */
#ifndef HB_DB_APPS_H
#define HB_DB_APPS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db_app {
    int64_t id;
    bool has_tenant;
    int64_t tenant_id;
    char *meta_app_id;
    char *verify_token_sealed;
    size_t nsecrets;
    char **secrets_sealed; /* oldest first */
};

void db_app_free(struct db_app *a);

/* Adds an app with its first secret, in one transaction. tenant_id < 0 means
 * no owner (a shared app). HB_EEXIST when the Meta app id is taken. */
int db_app_add(PGconn *c, int64_t tenant_id, const char *meta_app_id,
               const char *verify_token_sealed, const char *secret_sealed, const char *hint,
               int64_t *id);

/* Adds another live secret to an app. HB_ENOTFOUND for an unknown app. */
int db_app_add_secret(PGconn *c, const char *meta_app_id, const char *secret_sealed,
                      const char *hint);

/* Loads an app by Meta app id: 0 and *out (free with db_app_free),
 * HB_ENOTFOUND, or another HB_E* code. */
int db_app_get(PGconn *c, const char *meta_app_id, struct db_app **out);

#endif
