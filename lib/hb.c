/*
 * hb.c - error strings and the aborting allocators declared in hb.h.
 */
#include "lib/hb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *hb_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case HB_EINVAL:
        return "invalid input";
    case HB_ENOTFOUND:
        return "not found";
    case HB_EEXIST:
        return "already exists";
    case HB_EDB:
        return "database error";
    case HB_EUNAVAILABLE:
        return "database unavailable";
    case HB_EBUSY:
        return "busy";
    case HB_ETOOBIG:
        return "too large";
    case HB_EFORBIDDEN:
        return "forbidden";
    case HB_ECRYPTO:
        return "decryption failed";
    case HB_EIO:
        return "i/o error";
    }
    return "unknown error";
}

static void oom(size_t n)
{
    fprintf(stderr, "level=fatal msg=\"out of memory\" bytes=%zu\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}
