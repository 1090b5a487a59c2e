/*
 * hb.h - the few definitions every hubbub module shares: error codes and the
 * allocation wrappers.
 *
 * Fallible functions return 0 or a negative HB_E* code, as libuv does; the
 * HTTP layer owns the single map from these codes to status codes.
 * Allocation failure is not an error we can answer usefully, so the x*
 * wrappers abort instead of returning NULL (h2o and redis do the same).
 */
#ifndef HB_H
#define HB_H

#include <stddef.h>

#define HB_EINVAL (-1)       /* input is malformed */
#define HB_ENOTFOUND (-2)    /* no such object */
#define HB_EEXIST (-3)       /* conflicts with an existing object */
#define HB_EDB (-4)          /* the database refused the statement */
#define HB_EUNAVAILABLE (-5) /* the database cannot be reached */
#define HB_EBUSY (-6)        /* a queue is full; try again later */
#define HB_ETOOBIG (-7)      /* input exceeds a configured limit */
#define HB_EFORBIDDEN (-8)   /* credentials or signature do not match */
#define HB_ECRYPTO (-9)      /* a ciphertext could not be opened */
#define HB_EIO (-10)         /* a file or socket operation failed */

const char *hb_strerror(int rc);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#define HB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
