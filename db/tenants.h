/*
 * tenants.h - the tenants table. Synchronous libpq: for the command line and
 * worker threads, never the event loop.
 */
#ifndef HB_DB_TENANTS_H
#define HB_DB_TENANTS_H

#include <libpq-fe.h>
#include <stdint.h>

/* Adds a tenant; HB_EEXIST when the name is taken, HB_EINVAL when the name
 * is not 1-63 of [A-Za-z0-9._-] starting with a letter or digit. */
int db_tenant_add(PGconn *c, const char *name, int64_t *id);

/* HB_ENOTFOUND when there is no tenant of that name. */
int db_tenant_find(PGconn *c, const char *name, int64_t *id);

#endif
