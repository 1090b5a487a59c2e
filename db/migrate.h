/*
 * migrate.h - forward-only schema migrations.
 *
 * The migrations/NNNN_name.sql files are compiled into the binary
 * (ops/embed-migrations), so `hubbub migrate` needs nothing beside it. Each
 * is applied in its own transaction and recorded in schema_migrations with
 * the SHA-256 of its text. The whole run holds a session advisory lock, so two
 * processes migrating at once take turns and the second finds nothing to do.
 * A migration whose text changed after it was applied is an error that stops
 * start-up: landed migrations are never edited.
 */
#ifndef HB_DB_MIGRATE_H
#define HB_DB_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>

struct db_migration {
    const char *name; /* "0001_init.sql" */
    const char *sql;
    size_t len;
};

extern const struct db_migration db_migrations_embedded[];
extern const size_t db_migrations_embedded_count;

/* Applies every pending migration, printing one line per applied file to
 * report (may be NULL). 0, or an HB_E* code with err set. */
int db_migrate_apply(PGconn *c, const struct db_migration *m, size_t n, FILE *report, char *err,
                     size_t errsz);

/* 0 when every migration is applied and unchanged; otherwise HB_EINVAL with
 * err naming the first pending or changed one (or HB_EUNAVAILABLE/HB_EDB). */
int db_migrate_check(PGconn *c, const struct db_migration *m, size_t n, char *err, size_t errsz);

/* Prints one line per migration: applied (with time), pending or changed. */
int db_migrate_status(PGconn *c, const struct db_migration *m, size_t n, FILE *out, char *err,
                      size_t errsz);

#endif
