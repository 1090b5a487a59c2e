/*
 * wrk-tls.c - LD_PRELOAD shim for wrk's TLS handshakes in tests/bench/run.
 *
 *   LD_PRELOAD=wrk-tls.so [WRK_TLS_FULL=1] [WRK_TLS_COUNT=FILE] wrk ...
 *
 * wrk ends a connection with SSL_shutdown() and SSL_clear() and reconnects
 * with the same SSL object, which keeps its session: every new connection
 * after the first offers that session (a TLS 1.3 ticket, a TLS 1.2 session
 * id), so a server that resumes sessions does abbreviated handshakes only.
 * This shim wraps SSL_connect() to count the handshakes the server resumed
 * and the full ones, and, with WRK_TLS_FULL=1, drops the kept session before
 * each new handshake so that every one is full. At exit it writes
 *   TLSHANDSHAKES full=N resumed=M
 * to WRK_TLS_COUNT (standard error without it). tests/bench/run builds it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong full, resumed;
static int (*real_connect)(SSL *);
static int force_full;

__attribute__((constructor)) static void init(void)
{
    *(void **)&real_connect = dlsym(RTLD_NEXT, "SSL_connect");
    const char *e = getenv("WRK_TLS_FULL");
    force_full = e != NULL && strcmp(e, "1") == 0;
}

int SSL_connect(SSL *ssl)
{
    if (real_connect == NULL)
        abort();
    if (force_full && SSL_in_before(ssl))
        SSL_set_session(ssl, NULL);
    int r = real_connect(ssl);
    if (r == 1)
        atomic_fetch_add(SSL_session_reused(ssl) ? &resumed : &full, 1);
    return r;
}

__attribute__((destructor)) static void report(void)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "TLSHANDSHAKES full=%lu resumed=%lu\n", atomic_load(&full),
                     atomic_load(&resumed));
    const char *path = getenv("WRK_TLS_COUNT");
    int fd = path != NULL ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : 2;
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n);
    (void)w; /* nothing more to do if it fails */
    if (fd != 2)
        close(fd);
}
